//! `slo explain`: why a service's p99 regressed, from a data directory or a running server.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use slo_analyzer::Source;
use slo_analyzer::text::{parse_time, parse_window};
use slo_analyzer::{Query, Report, explain};
use slo_collector::CollectorConfig;
use slo_store::Store;

use crate::cli::{Failure, Format};

/// `slo explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
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
    /// The service (the `service` of its requests) [default: the one whose p99 rose most].
    #[arg(long, conflicts_with = "slo")]
    pub service: Option<String>,
    /// An SLO of the config file: explains its service and reports its error budget, burn
    /// rates and alert conditions.
    #[arg(long)]
    pub slo: Option<String>,
    /// File with the SLOs (`slo serve`'s config with a `slos:` section, or OpenSLO v1
    /// documents).
    #[arg(long, env = "SLO_CONFIG")]
    pub config: Option<PathBuf>,
    /// End of the window: RFC 3339 (`2026-11-22T14:30:00Z`) [default: the newest request].
    #[arg(long)]
    pub at: Option<String>,
    /// Length of the window looked at (`30m`, `2h`, `1d`).
    #[arg(long, default_value = "1h")]
    pub window: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Token and TLS for --server.
    #[command(flatten)]
    pub client: crate::client::ClientArgs,
}

/// Runs the command.
pub(crate) async fn run(args: ExplainArgs) -> Result<(), Failure> {
    let at =
        args.at.as_deref().map(parse_time).transpose().map_err(|e| Failure::usage(anyhow::anyhow!("--at: {e}")))?;
    let window = parse_window(&args.window).map_err(|e| Failure::usage(anyhow::anyhow!("--window: {e}")))?;
    let mut query = Query::new(args.service.clone(), at, window);
    if let (Some(name), None) = (&args.slo, &args.server) {
        let path = args
            .config
            .as_deref()
            .ok_or_else(|| Failure::usage(anyhow::anyhow!("--slo {name:?} needs --config FILE with the SLOs")))?;
        let slos = slo_analyzer::spec::load(path).map_err(Failure::usage)?;
        let names: Vec<&str> = slos.iter().map(|s| s.name.as_str()).collect();
        let slo = slos.iter().find(|s| &s.name == name).ok_or_else(|| {
            Failure::usage(anyhow::anyhow!(
                "--slo {name:?}: {} has no such SLO (it has {})",
                path.display(),
                names.join(", ")
            ))
        })?;
        query.slo = Some(slo.clone());
    }
    let report = match (&args.server, &args.bucket) {
        (Some(server), _) => remote(server, &args).await?,
        (None, Some(bucket)) => {
            explain_with(&Source::new(crate::bucket::open(bucket).await?.snapshot()), &query).await?
        }
        (None, None) => local(args.data_dir.as_deref().unwrap_or(Path::new("./slo-data")), &query).await?,
    };
    let body = match args.format {
        Format::Json => serde_json::to_string_pretty(&report).context("encoding the report")? + "\n",
        Format::Text => slo_analyzer::render_text(&report),
    };
    std::io::stdout().lock().write_all(body.as_bytes()).context("writing the report")?;
    Ok(())
}

/// Explains over a data directory (segments and the unflushed WAL, read-only).
pub(crate) async fn local(dir: &Path, query: &Query) -> Result<Report, Failure> {
    let source = open_local(dir).await?;
    explain_with(&source, query).await
}

/// What the analyzer reads from a data directory (segments and the unflushed WAL,
/// read-only), to explain it many times over.
pub(crate) async fn open_local(dir: &Path) -> Result<Source, Failure> {
    let store = Store::open_read_only(dir).map_err(Failure::usage)?;
    let replay_store = store.clone();
    tokio::task::spawn_blocking(move || slo_collector::read_unflushed(&replay_store, &CollectorConfig::default()))
        .await
        .context("replaying the WAL")??;
    Ok(Source::new(store.snapshot()))
}

/// One explanation over an open source; a user error (no such service, no data) exits 2.
pub(crate) async fn explain_with(source: &Source, query: &Query) -> Result<Report, Failure> {
    explain(source, query).await.map_err(|e| if e.is_user_error() { Failure::usage(e) } else { e.into() })
}

async fn remote(server: &str, args: &ExplainArgs) -> Result<Report, Failure> {
    let url = format!("{}/api/v1/explain", server.trim_end_matches('/'));
    let mut params = vec![("window", args.window.clone())];
    if let Some(s) = &args.service {
        params.push(("service", s.clone()));
    }
    if let Some(s) = &args.slo {
        params.push(("slo", s.clone()));
    }
    if let Some(a) = &args.at {
        params.push(("at", a.clone()));
    }
    let resp = args.client.client()?.get(&url).query(&params).send().await.with_context(|| format!("asking {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
    if status.is_success() {
        return Ok(serde_json::from_slice(&body).with_context(|| format!("decoding the answer of {url}"))?);
    }
    Err(Failure::from_server(status, &body))
}
