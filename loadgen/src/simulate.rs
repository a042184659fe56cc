//! `slo loadgen simulate`: run a scenario on the simulated cluster, live
//! (real time or `--speed X`, serving the OpenAI API, `/metrics`, the
//! Kubernetes API and exporting OTLP) or into files (`--out DIR`).

mod files;
mod live;
mod openai;
mod progress;
pub(crate) mod spans;

use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use files::{TraceFormat, run_files};
pub(crate) use live::{LiveOptions, run_live};

use crate::duration::Dur;
use crate::endpoint::OtlpProtocol;
use crate::error::{Error, Result};
use crate::sim::{RequestRecord, Sim, SimOptions};

/// `slo loadgen simulate` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// A built-in scenario (see `slo loadgen scenarios`) or a scenario YAML file
    #[arg(long, value_name = "NAME|FILE")]
    pub scenario: String,
    /// Run X times faster than real time; timestamps stay in simulated time (live mode)
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub speed: f64,
    /// Seed of every random choice: the same seed gives the same data
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time to run (default: the scenario's duration)
    #[arg(long, value_name = "D")]
    pub duration: Option<Dur>,
    /// Export traces over OTLP to this endpoint (e.g. http://127.0.0.1:4317) (live mode)
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// OTLP transport
    #[arg(long, value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,
    /// Token and CA for --otlp
    #[command(flatten)]
    pub otlp_auth: crate::otlp::OtlpAuthArgs,
    /// Write the ground truth JSON here
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Write everything as files under DIR instead of serving it live (fast, no network)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Trace file encoding with --out
    #[arg(long, value_enum, default_value_t = TraceFormat::Pb)]
    pub format: TraceFormat,
    /// Simulated start time, RFC 3339 (default: now when live; now minus the duration with --out)
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Address of the OpenAI API, /metrics pages and Kubernetes API (live mode)
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: String,
    /// Where to write the kubeconfig that points at the simulated API server (live mode)
    #[arg(long, default_value = "slo-sim.kubeconfig", value_name = "FILE")]
    pub kubeconfig: PathBuf,
    /// Multiply the scenario's own traffic (0: only requests sent to the OpenAI API)
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub traffic_scale: f64,
}

/// What a run did (printed at the end, `run.json` with --out).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub scenario: String,
    pub seed: u64,
    pub start: String,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub spans: u64,
    pub spans_dropped: u64,
    pub kube_events: u64,
    pub scrapes: u64,
    /// Finished requests per wall-clock second.
    pub requests_per_s: f64,
    /// Simulated seconds per wall-clock second (live: reaches --speed when the generator keeps up).
    pub speed_achieved: f64,
}

impl RunSummary {
    pub(crate) fn count(&mut self, r: &RequestRecord) {
        self.requests += 1;
        if r.status >= 400 {
            self.errors += 1;
        }
    }

    pub(crate) fn finish(&mut self, sim: &Sim) {
        self.scenario = sim.scenario.name.clone();
        self.seed = sim.seed;
        self.start = crate::sim::rfc3339(sim.start_unix_ns);
        self.simulated_s = sim.now() as f64 / 1e9;
        self.requests_per_s = if self.wall_s > 0.0 { self.requests as f64 / self.wall_s } else { 0.0 };
        self.speed_achieved = if self.wall_s > 0.0 { self.simulated_s / self.wall_s } else { 0.0 };
    }

    pub fn render(&self) -> String {
        format!(
            "scenario {} (seed {}): {:.0}s simulated in {:.1}s wall (x{:.1}); {} requests ({} errors, {:.0}/s), {} spans ({} dropped), {} Kubernetes watch events, {} scrapes",
            self.scenario,
            self.seed,
            self.simulated_s,
            self.wall_s,
            self.speed_achieved,
            self.requests,
            self.errors,
            self.requests_per_s,
            self.spans,
            self.spans_dropped,
            self.kube_events,
            self.scrapes
        )
    }
}

/// The ground truth (`--truth`; README, "The load generator").
pub(crate) fn truth_json(sim: &Sim) -> String {
    crate::truth::GroundTruth::of(sim).to_json()
}

fn parse_start(s: &str) -> Result<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| Error::Invalid(format!("--start {s:?}: not an RFC 3339 time ({e})")))?;
    t.timestamp_nanos_opt().ok_or_else(|| Error::Invalid(format!("--start {s:?}: out of range")))
}

/// Runs `slo loadgen simulate`.
pub async fn run(args: SimulateArgs, cancel: CancellationToken) -> Result<RunSummary> {
    let mut scenario = crate::scenario::load(&args.scenario)?;
    if let Some(d) = args.duration {
        if d.0.is_zero() {
            return Err(Error::Invalid("--duration must be > 0".into()));
        }
        scenario.duration = d;
    }
    if !(args.speed.is_finite() && args.speed > 0.0 && args.speed <= 10_000.0) {
        return Err(Error::Invalid(format!("--speed {}: must be in (0, 10000]", args.speed)));
    }
    if !(args.traffic_scale.is_finite() && (0.0..=1000.0).contains(&args.traffic_scale)) {
        return Err(Error::Invalid(format!("--traffic-scale {}: must be in 0..=1000", args.traffic_scale)));
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let start = match &args.start {
        Some(s) => parse_start(s)?,
        // Files end "now", rounded to the minute, so they look like the last half hour.
        None if args.out.is_some() => {
            let end = now - now.rem_euclid(60_000_000_000);
            end - scenario.duration.as_nanos_i64()
        }
        None => now,
    };
    let opts = SimOptions {
        seed: args.seed,
        start_unix_ns: start,
        metrics_port: None,
        traffic_scale: Some(args.traffic_scale),
    };
    let summary = match &args.out {
        Some(dir) => {
            if args.otlp.is_some() {
                return Err(Error::Invalid("--otlp and --out cannot be combined: --out writes files instead".into()));
            }
            let sim = Sim::new(scenario, opts);
            let dir = dir.clone();
            let format = args.format;
            let (summary, truth) = tokio::task::spawn_blocking(move || {
                let truth_path = dir.join("truth.json");
                run_files(sim, &dir, format).map(|s| (s, truth_path))
            })
            .await
            .map_err(|e| Error::Network(format!("simulation task failed: {e}")))??;
            if let Some(t) = &args.truth {
                std::fs::copy(&truth, t).map_err(|e| Error::io(format!("writing {}", t.display()), e))?;
            }
            summary
        }
        None => {
            let live = LiveOptions {
                speed: args.speed,
                listen: args.listen.clone(),
                kubeconfig: args.kubeconfig.clone(),
                otlp: args.otlp.clone(),
                otlp_protocol: args.otlp_protocol,
                otlp_auth: args.otlp_auth.load()?,
                truth: args.truth.clone(),
            };
            run_live(scenario, opts, live, cancel).await?
        }
    };
    Ok(summary)
}
