//! The command line (README). Exit codes: 0 ok, 1 runtime failure, 2 usage or
//! bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// An error that knows its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    /// 1 runtime, 2 usage or bad input.
    pub code: u8,
    /// What to tell the user.
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad input: exit 2.
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure { code: 2, error: error.into() }
    }

    /// Bad input described by a message: exit 2.
    pub(crate) fn usage_msg(msg: String) -> Self {
        Failure { code: 2, error: anyhow::anyhow!(msg) }
    }
}

impl Failure {
    /// A server's error answer (`{"error": "..."}` or text): the client's fault (exit 2)
    /// for 4xx, a runtime failure otherwise.
    pub(crate) fn from_server(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let msg = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).to_string());
        let err = anyhow::anyhow!("{status}: {msg}");
        if status.is_client_error() { Failure::usage(err) } else { err.into() }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure { code: 1, error: e.into() }
    }
}

/// Observability and SLO analysis for AI inference on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "slo", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See it work: slo serve and a simulated GPU cluster with a fault, explained as it happens.
    Demo(crate::demo::DemoArgs),
    /// Run the collector, store and web API (OTLP gRPC :4317, OTLP HTTP :4318, web :8080).
    Serve(ServeArgs),
    /// Run one read-only SQL query over the tables `requests`, `spans`, `samples` and `changes`.
    Query(QueryArgs),
    /// Import files into a data dir: OTLP traces (protobuf, JSON, JSON lines), Kubernetes Events
    /// and watch streams, Prometheus text; gzipped or not.
    Import(ImportArgs),
    /// Why a service's p99 regressed: the change point and its causes, ranked with evidence.
    Explain(crate::explain::ExplainArgs),
    /// Prometheus recording and alerting rules (burn rates, absent data, p99 regression) from the SLOs.
    Rules(crate::rules::RulesArgs),
    /// Grafana dashboards (SLO overview, inference latency, GPU by workload) as JSON files.
    Dashboards(crate::dashboards::DashboardsArgs),
    /// Score `slo explain` against the load generator's ground truth (scenarios x seeds).
    Eval(crate::eval::EvalArgs),
    /// GPU inference load generator: a simulated cluster with known faults, or load against a real endpoint.
    Loadgen(crate::loadgen::LoadgenArgs),
}

/// `slo serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// YAML config file (see README); flags and SLO_* variables override it.
    #[arg(long, env = "SLO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./slo-data].
    #[arg(long, env = "SLO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "SLO_OTLP_GRPC")]
    pub otlp_grpc: Option<String>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "SLO_OTLP_HTTP")]
    pub otlp_http: Option<String>,
    /// Web and API listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "SLO_HTTP")]
    pub http: Option<String>,
    /// Watch the Kubernetes cluster of this kubeconfig (in a cluster, the service account
    /// is used without this flag).
    #[arg(long, env = "SLO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Time the watch by `wall` (this machine's clock) or `data` (the cluster's own
    /// timestamps: for the load generator's simulated cluster) [default: wall].
    #[arg(long, value_name = "wall|data", value_parser = parse_clock)]
    pub kube_clock: Option<slo_collector::kube::watch::ClockKind>,
    /// Scrape this Prometheus `/metrics` URL (repeatable; adds to the config's targets).
    #[arg(long = "scrape", value_name = "URL")]
    pub scrape: Vec<String>,
    /// `collector` (the default) or `query`: serve the dashboard, API, analyzer and alerts
    /// over the object store the collectors upload to (`store.object_store.url`).
    #[arg(long, value_enum, env = "SLO_ROLE")]
    pub role: Option<crate::config::Role>,
    /// Check the config (and its SLOs, tokens, TLS files, alert forwards), print what it
    /// sets up, and exit: 0 when it would start, 2 naming the problem otherwise.
    #[arg(long)]
    pub check_config: bool,
}

/// Output formats of `slo query`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned text table.
    Table,
    /// JSON array of row objects.
    Json,
    /// CSV with a header.
    Csv,
}

/// Output of commands that report (text for people, JSON for programs).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// `slo query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Data directory to read (segments plus unflushed WAL) [default: ./slo-data].
    #[arg(long, env = "SLO_DATA_DIR", conflicts_with_all = ["server", "bucket"])]
    pub data_dir: Option<PathBuf>,
    /// A running server to ask instead (e.g. http://127.0.0.1:8080).
    #[arg(long, env = "SLO_SERVER", conflicts_with = "bucket")]
    pub server: Option<String>,
    /// An object store the collectors upload to (`s3://bucket/prefix`: every collector's
    /// prefix below it); endpoint, region and credentials from the `AWS_*` environment.
    #[arg(long, env = "SLO_BUCKET")]
    pub bucket: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// The SQL statement.
    pub sql: String,
    /// Token and TLS for --server.
    #[command(flatten)]
    pub client: crate::client::ClientArgs,
}

/// `slo import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Data directory to import into [default: ./slo-data].
    #[arg(long, env = "SLO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// YAML config file (the collector section applies: redaction, split rules).
    #[arg(long, env = "SLO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Files to import (the kind is told by the extension, else by the content).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Parses the command line and runs the command.
pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    crate::telemetry::init(match cli.command {
        Command::Serve(_) => crate::telemetry::SERVE,
        Command::Demo(_) => crate::telemetry::DEMO,
        _ => crate::telemetry::ONE_SHOT,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("slo-worker").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => crate::serve::run(args).await,
            Command::Query(args) => crate::query::run(args).await,
            Command::Import(args) => crate::import::run(args).await,
            Command::Loadgen(args) => crate::loadgen::run(args).await,
            Command::Explain(args) => crate::explain::run(args).await,
            Command::Eval(args) => crate::eval::run(args).await,
            Command::Rules(args) => crate::rules::run(args).await,
            Command::Dashboards(args) => crate::dashboards::run(args).await,
            Command::Demo(args) => crate::demo::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", chain_text(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// An error and its causes, `a: b: c`, leaving out a cause whose text an outer one already
/// quotes (DataFusion's errors repeat their source in their own message, so `{:#}` printed
/// one schema error five times).
pub(crate) fn chain_text(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn parse_clock(s: &str) -> Result<slo_collector::kube::watch::ClockKind, String> {
    match s {
        "wall" => Ok(slo_collector::kube::watch::ClockKind::Wall),
        "data" => Ok(slo_collector::kube::watch::ClockKind::Data),
        other => Err(format!("{other:?} is not a clock: wall or data")),
    }
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    #[test]
    fn a_cause_the_message_already_quotes_is_printed_once() {
        let inner = anyhow::anyhow!("No field named from_value.");
        let e = inner.context("Schema error: No field named from_value.").context("query failed");
        assert_eq!(chain_text(&e), "query failed: Schema error: No field named from_value.");
        let plain = anyhow::anyhow!("disk full").context("writing segment");
        assert_eq!(chain_text(&plain), "writing segment: disk full");
    }
}
