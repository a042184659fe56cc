//! `slo eval`: the analyzer scored against the load generator's ground truth.
//!
//! For every scenario and seed: simulate in file mode, import the files (traces, the watch
//! stream, every scrape) into a fresh data directory through the collector's own path, run
//! `slo explain` over the run's window, and compare with `truth.json`: is the injected
//! causal change ranked first (kind and object), in the top three, how far is the detected
//! onset from it, did a decoy win, and does the no-fault control stay quiet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use slo_analyzer::explain::{Query, Report};
use slo_loadgen::scenario::BUILTIN;
use slo_loadgen::sim::{Sim, SimOptions};
use slo_loadgen::simulate::{TraceFormat, run_files};

use crate::cli::{Failure, Format};
use crate::config::ServeConfig;

/// `slo eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Scenarios to run (built-in names or YAML files) [default: every built-in].
    #[arg(long = "scenario", value_name = "NAME|FILE")]
    pub scenarios: Vec<String>,
    /// Seeds per scenario (1..=N).
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Fail (exit 1) when top-1 accuracy over the scenarios with a cause is below this.
    #[arg(long, default_value_t = 0.9)]
    pub min_top1: f64,
    /// Keep each run's files and data directory under DIR (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Scenario.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Whether the truth has a causal change.
    pub has_cause: bool,
    /// Whether a regression was detected.
    pub detected: bool,
    /// Top-ranked cause is the causal one.
    pub top1: bool,
    /// The causal one is among the first three.
    pub top3: bool,
    /// A decoy (causal: false) was ranked first.
    pub decoy_first: bool,
    /// |onset - causal change time|, seconds.
    pub onset_error_s: Option<f64>,
    /// What was ranked first.
    pub ranked_first: Option<String>,
    /// Wall time of the explain, ms.
    pub explain_ms: f64,
    /// Wall time of simulate + import, s.
    pub prepare_s: f64,
}

/// Runs the command.
pub async fn run(args: EvalArgs) -> Result<(), Failure> {
    let names: Vec<String> = if args.scenarios.is_empty() {
        BUILTIN.iter().map(|b| b.0.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    if args.seeds == 0 {
        return Err(Failure::usage(anyhow::anyhow!("--seeds must be at least 1")));
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut outcomes = Vec::new();
    for name in &names {
        for seed in args.first_seed..args.first_seed + args.seeds {
            let dir = root.join(format!("{}-{seed}", name.replace(['/', '.'], "_")));
            let o = run_one(name, seed, &dir).await?;
            eprintln!(
                "{:<22} seed {:>3}: {} ({}), explain {:.0} ms",
                o.scenario,
                o.seed,
                if !o.has_cause {
                    if o.detected { "FALSE ALARM" } else { "quiet" }
                } else if o.top1 {
                    "top-1"
                } else if o.top3 {
                    "top-3"
                } else {
                    "MISS"
                },
                o.ranked_first.as_deref().unwrap_or("nothing ranked"),
                o.explain_ms
            );
            if args.keep.is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            outcomes.push(o);
        }
    }
    let table = Table::of(&outcomes);
    let body = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({ "runs": outcomes, "summary": table }))
                .context("encoding")?
                + "\n"
        }
        Format::Text => table.render(),
    };
    std::io::stdout().lock().write_all(body.as_bytes()).context("writing")?;
    let total = &table.total;
    if total.false_alarms > 0 {
        return Err(anyhow::anyhow!("{} false regression(s) on runs without a fault", total.false_alarms).into());
    }
    if total.with_cause > 0 && total.top1 < args.min_top1 {
        return Err(anyhow::anyhow!(
            "top-1 accuracy {:.1}% is below --min-top1 {:.1}%",
            total.top1 * 100.0,
            args.min_top1 * 100.0
        )
        .into());
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Truth {
    service: String,
    start: String,
    end: String,
    injected: Vec<Injected>,
}

#[derive(serde::Deserialize)]
struct Injected {
    kind: String,
    object: String,
    time: String,
    causal: bool,
}

fn ns(rfc: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .with_context(|| format!("bad time {rfc:?} in truth.json"))
}

/// A fixed start so that a seed always gives the same data.
const START: &str = "2026-11-22T14:00:00Z";

async fn run_one(name: &str, seed: u64, dir: &Path) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let scenario = slo_loadgen::scenario::load(name).map_err(Failure::usage)?;
    let out = dir.join("run");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let opts = SimOptions { seed, start_unix_ns: ns(START)?, metrics_port: None, traffic_scale: Some(1.0) };
    let sim = Sim::new(scenario, opts);
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || run_files(sim, &out2, TraceFormat::Pb)).await.context("simulation task")??;
    let truth: Truth = serde_json::from_slice(&std::fs::read(out.join("truth.json")).context("reading truth.json")?)
        .context("decoding truth.json")?;
    let mut files = list(&out.join("traces"))?;
    files.push(out.join("kube").join("watch.jsonl"));
    files.extend(list(&out.join("metrics"))?);
    let mut cfg = ServeConfig::load(None).map_err(Failure::usage)?;
    cfg.data_dir = dir.join("data");
    let (_, failed) = crate::import::import(&cfg, &files).await?;
    if let Some(e) = failed {
        return Err(anyhow::anyhow!("importing {name} seed {seed}: {e}").into());
    }
    let _ = std::fs::remove_dir_all(out.join("traces"));
    let _ = std::fs::remove_dir_all(out.join("metrics"));
    let prepare_s = started.elapsed().as_secs_f64();
    let (start, end) = (ns(&truth.start)?, ns(&truth.end)?);
    let query = Query::new(Some(truth.service.clone()), Some(end), end - start);
    let t = Instant::now();
    let report = crate::explain::local(&cfg.data_dir, &query).await?;
    let explain_ms = t.elapsed().as_secs_f64() * 1e3;
    Ok(score(name, seed, &truth, &report, explain_ms, prepare_s)?)
}

fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    Ok(out)
}

fn score(name: &str, seed: u64, truth: &Truth, r: &Report, explain_ms: f64, prepare_s: f64) -> anyhow::Result<Outcome> {
    let causal = truth.injected.iter().find(|i| i.causal);
    let is = |c: &slo_analyzer::explain::Cause, i: &Injected| c.kind == i.kind && c.object == i.object;
    let top1 = causal.is_some_and(|i| r.causes.first().is_some_and(|c| is(c, i)));
    let top3 = causal.is_some_and(|i| r.causes.iter().take(3).any(|c| is(c, i)));
    let decoy_first = r.causes.first().is_some_and(|c| truth.injected.iter().any(|i| !i.causal && is(c, i)));
    let onset_error_s = match (causal, &r.regression.onset) {
        (Some(i), Some(onset)) => Some(((ns(onset)? - ns(&i.time)?) as f64 / 1e9).abs()),
        _ => None,
    };
    Ok(Outcome {
        scenario: name.to_string(),
        seed,
        has_cause: causal.is_some(),
        detected: r.regression.detected,
        top1,
        top3,
        decoy_first,
        onset_error_s,
        ranked_first: r.causes.first().map(|c| format!("{} {}", c.kind, c.object)),
        explain_ms,
        prepare_s,
    })
}

/// Per-scenario and overall figures.
#[derive(Debug, Clone, Serialize)]
struct Table {
    rows: Vec<Row>,
    total: Row,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    runs: usize,
    with_cause: usize,
    detected: usize,
    top1: f64,
    top3: f64,
    decoy_first: usize,
    false_alarms: usize,
    median_onset_error_s: Option<f64>,
    median_explain_ms: f64,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

impl Row {
    fn of(scenario: &str, runs: &[&Outcome]) -> Row {
        let with_cause = runs.iter().filter(|o| o.has_cause).count();
        let frac = |f: fn(&Outcome) -> bool| {
            if with_cause == 0 {
                0.0
            } else {
                runs.iter().filter(|o| o.has_cause && f(o)).count() as f64 / with_cause as f64
            }
        };
        Row {
            scenario: scenario.to_string(),
            runs: runs.len(),
            with_cause,
            detected: runs.iter().filter(|o| o.detected).count(),
            top1: frac(|o| o.top1),
            top3: frac(|o| o.top3),
            decoy_first: runs.iter().filter(|o| o.decoy_first).count(),
            false_alarms: runs.iter().filter(|o| !o.has_cause && o.detected).count(),
            median_onset_error_s: median(runs.iter().filter_map(|o| o.onset_error_s).collect()),
            median_explain_ms: median(runs.iter().map(|o| o.explain_ms).collect()).unwrap_or(0.0),
        }
    }
}

impl Table {
    fn of(outcomes: &[Outcome]) -> Table {
        let mut names: Vec<&str> = Vec::new();
        for o in outcomes {
            if !names.contains(&o.scenario.as_str()) {
                names.push(&o.scenario);
            }
        }
        let rows = names
            .iter()
            .map(|n| Row::of(n, &outcomes.iter().filter(|o| o.scenario == *n).collect::<Vec<_>>()))
            .collect();
        Table { rows, total: Row::of("all", &outcomes.iter().collect::<Vec<_>>()) }
    }

    fn render(&self) -> String {
        let mut o = format!(
            "{:<22} {:>4} {:>8} {:>6} {:>6} {:>6} {:>11} {:>12} {:>12}\n",
            "scenario", "runs", "detected", "top-1", "top-3", "decoy", "false alarm", "onset err s", "explain ms"
        );
        for r in self.rows.iter().chain(std::iter::once(&self.total)) {
            let acc = |v: f64| if r.with_cause == 0 { "-".to_string() } else { format!("{:.0}%", v * 100.0) };
            o.push_str(&format!(
                "{:<22} {:>4} {:>8} {:>6} {:>6} {:>6} {:>11} {:>12} {:>12.0}\n",
                r.scenario,
                r.runs,
                r.detected,
                acc(r.top1),
                acc(r.top3),
                r.decoy_first,
                r.false_alarms,
                r.median_onset_error_s.map_or("-".into(), |v| format!("{v:.0}")),
                r.median_explain_ms
            ));
        }
        o
    }
}
