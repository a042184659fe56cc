//! `slo demo`: the product working on one machine, with nothing to start by hand.
//!
//! It runs `slo serve` (in this process) on a data directory of its own and the load
//! generator's simulated GPU cluster in live mode against it, over the same protocols a
//! real cluster uses: OTLP/gRPC for the traces, the Kubernetes API behind a kubeconfig for
//! the watch (timed by the cluster's own clock, as `--kube-clock data`), and scrapes of the
//! simulator's `/metrics` pages found through that API. The simulated cluster runs
//! accelerated (`--speed`, 20x by default: a 30-minute scenario in 90 s), and its
//! progress line says what it is doing and when each injected change lands. Every few
//! seconds the demo asks the server's `/api/v1/explain` what it sees, and prints the
//! answer whenever the verdict changes, as an on-call engineer would see it. When the
//! scenario ends the server keeps serving until Ctrl-C, which stops everything; the data
//! directory is kept, and nothing else is written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use slo_analyzer::Report;

use crate::cli::{Failure, ServeArgs};

/// `slo demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The scenario the simulated cluster plays (a built-in name or a YAML file).
    #[arg(long, default_value = "deploy-with-decoy", value_name = "NAME|FILE")]
    pub scenario: String,
    /// Simulated seconds per wall second.
    #[arg(long, default_value_t = 20.0, value_name = "X")]
    pub speed: f64,
    /// Seed of the simulation (the same seed gives the same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the demo's data, config and kubeconfig [default: a new directory
    /// under the system's temporary directory]. Kept when the demo stops.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Web and API listen address.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub http: String,
    /// Seconds between the demo's questions to `/api/v1/explain`.
    #[arg(long, default_value_t = 5, value_name = "S")]
    pub every: u64,
}

/// The server's settings for the demo: scrapes once a wall second (20 simulated seconds
/// at 20x, close to a real 15 s interval), requests assembled from their spans within a
/// second of the last, rows flushed every 10 s.
const CONFIG: &str = "\
collector:
  assembly: { idle_ms: 1000, max_wait_ms: 5000 }
store:
  flush_interval_s: 10
scrape:
  interval_s: 1
";

/// A free loopback port, by binding one and letting it go.
fn free_port() -> Result<u16, Failure> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr().context("reading a bound port")?.port())
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs the demo until Ctrl-C (or until a part of it fails).
pub(crate) async fn run(args: DemoArgs) -> Result<(), Failure> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        return Err(Failure::usage_msg(format!("--speed {}: must be a number above 0", args.speed)));
    }
    let scenario = slo_loadgen::load_scenario(&args.scenario).map_err(Failure::usage)?;
    // The one port a user picks: refused before anything is written.
    drop(
        std::net::TcpListener::bind(&args.http)
            .with_context(|| format!("--http {}: cannot listen there", args.http))
            .map_err(Failure::usage)?,
    );
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
            std::env::temp_dir().join(format!("slo-demo-{secs}"))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display())).map_err(Failure::usage)?;
    let (api_port, grpc_port, otlp_http_port) = (free_port()?, free_port()?, free_port()?);
    let (config, kube) = (dir.join("slo.yaml"), dir.join("sim.kubeconfig"));
    write(&config, CONFIG)?;
    // The server reads it at start; the simulator listens there a moment later (the watch
    // retries until then) and writes the same file again.
    slo_loadgen::write_kubeconfig(&kube, &format!("http://127.0.0.1:{api_port}"), &scenario.namespace)
        .map_err(|e| Failure::from(anyhow::Error::new(e)))?;

    let cancel = crate::loadgen::ctrl_c();
    let serve_args = ServeArgs {
        config: Some(config),
        data_dir: Some(dir.join("data")),
        otlp_grpc: Some(format!("127.0.0.1:{grpc_port}")),
        otlp_http: Some(format!("127.0.0.1:{otlp_http_port}")),
        http: Some(args.http.clone()),
        kubeconfig: Some(kube.clone()),
        kube_clock: Some(slo_collector::kube::watch::ClockKind::Data),
        role: None,
        scrape: Vec::new(),
        check_config: false,
    };
    let mut server = tokio::spawn(crate::serve::run(serve_args));
    let web = format!("http://{}", args.http);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().context("HTTP client")?;
    tokio::select! {
        ready = wait_ready(&client, &web) => ready?,
        ended = &mut server => return Err(stopped(ended)),
    }

    let duration = scenario.duration.as_nanos_i64() / 1_000_000_000;
    let now = chrono::Utc::now().timestamp();
    // Simulated time runs ahead of the wall clock: start a run's length back, so that its
    // data stays behind the wall clock to the end.
    let start = chrono::DateTime::from_timestamp((now - duration) / 60 * 60, 0).context("the start time")?;
    let sim_args = slo_loadgen::SimulateArgs {
        scenario: args.scenario.clone(),
        speed: args.speed,
        seed: args.seed,
        duration: None,
        otlp: Some(format!("http://127.0.0.1:{grpc_port}")),
        otlp_protocol: slo_loadgen::OtlpProtocol::Grpc,
        otlp_auth: Default::default(),
        truth: Some(dir.join("truth.json")),
        out: None,
        format: slo_loadgen::TraceFormat::Pb,
        start: Some(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        listen: format!("127.0.0.1:{api_port}"),
        kubeconfig: kube,
        traffic_scale: 1.0,
    };
    let service = scenario.service.clone();
    let explain_url = format!("{web}/api/v1/explain?service={service}");
    println!(
        "slo demo: scenario {} ({}), seed {}, {}x: {} min of cluster time in about {:.0} s\n  \
         dashboard: {web}/services/{service}\n  \
         explain: {explain_url}\n  \
         or:      slo explain --server {web} --service {service}\n  \
         data:    {} (kept; Ctrl-C stops the demo)",
        scenario.name,
        scenario.description,
        args.seed,
        args.speed,
        duration / 60,
        duration as f64 / args.speed,
        dir.display(),
    );
    let sim_cancel = cancel.clone();
    let mut sim = tokio::spawn(async move { slo_loadgen::run_simulate(sim_args, sim_cancel).await });
    let mut shown: Option<String> = None;
    let mut sim_done = false;
    let mut tick = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ended = &mut server => return Err(stopped(ended)),
            done = &mut sim, if !sim_done => {
                sim_done = true;
                match done {
                    Ok(Ok(summary)) => eprintln!("{}", summary.render()),
                    Ok(Err(e)) => eprintln!("slo demo: the simulated cluster stopped: {e}"),
                    Err(e) => eprintln!("slo demo: the simulation task failed: {e}"),
                }
                if !cancel.is_cancelled() {
                    println!(
                        "slo demo: the scenario is over; slo keeps serving at {web} until Ctrl-C \
                         (the run's ground truth: {})",
                        dir.join("truth.json").display()
                    );
                }
            }
            _ = tick.tick() => {
                if let Some(report) = ask(&client, &explain_url).await {
                    let key = verdict(&report);
                    if shown.as_ref() != Some(&key) {
                        println!("\nslo demo: {key}\n{}", indent(&slo_analyzer::render_text(&report)));
                        shown = Some(key);
                    }
                }
            }
        }
    }
    // Ctrl-C: the server flushes and stops on the same signal; wait for it.
    if !sim_done {
        let _ = sim.await;
    }
    match server.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("server task: {e}").into()),
    }
}

/// Why the server task ended before the demo did: its error, or that it stopped.
fn stopped(ended: Result<Result<(), Failure>, tokio::task::JoinError>) -> Failure {
    match ended {
        Ok(Err(e)) => e,
        Ok(Ok(())) => anyhow::anyhow!("the server stopped").into(),
        Err(e) => anyhow::anyhow!("server task: {e}").into(),
    }
}

/// Waits for `/readyz` (the store open and the WAL replayed), up to a minute.
async fn wait_ready(client: &reqwest::Client, web: &str) -> Result<(), Failure> {
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{web}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("the server at {web} was not ready within a minute").into())
}

/// The server's explanation now, or nothing while it has none to give (no requests yet).
async fn ask(client: &reqwest::Client, url: &str) -> Option<Report> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<Report>().await.ok()
}

/// What the on-call engineer acts on: regressed or not, and the likely cause.
fn verdict(r: &Report) -> String {
    let g = &r.regression;
    match (g.detected, r.causes.first()) {
        (true, Some(c)) => format!(
            "{}: p99 regressed from {}; likely cause {} {}",
            r.service,
            g.onset.as_deref().and_then(|o| o.get(11..19)).unwrap_or("?"),
            c.kind,
            c.object
        ),
        (true, None) => format!("{}: p99 regressed; no candidate cause yet", r.service),
        (false, _) if g.reason.as_deref().is_some_and(|w| w.starts_with("watching")) => {
            format!("{}: watching a rise in p99", r.service)
        }
        (false, _) => format!("{}: no p99 regression", r.service),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}
