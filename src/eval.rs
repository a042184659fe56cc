//! `slo eval`: the analyzer scored against the load generator's ground truth, at the
//! moments an on-call engineer would ask.
//!
//! For every scenario and seed: simulate in file mode, import the files (traces, the watch
//! stream, every scrape) into a fresh data directory through the collector's own path, then
//! run `slo explain` as a user would — the default window, `--at` a minute at a time from
//! the onset to the end of the run — and compare each answer with `truth.json`: is the
//! injected causal change ranked first (kind and object), in the top three, did a decoy win,
//! and does a run without a cause (controls, improvements) stay quiet at every moment. The
//! onset is found in the data: the first minute at or after the causal change whose p99 is
//! at least [`ONSET_RATIO`] times the median minute before it (the change's own time where
//! no minute is). How an answer changes from one minute to the next is counted as flips.
//!
//! A run with two causal changes (two causes at once) is timed from the earlier one; its
//! top-1 is right when either is ranked first, its top-3 only when both are in the first
//! three.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use slo_analyzer::MINUTE_NS;
use slo_analyzer::Source;
use slo_analyzer::text::{parse_window, rfc3339};
use slo_analyzer::{Query, Report};
use slo_loadgen::{BUILTIN, GroundTruth, TruthEntry};
use slo_loadgen::{Sim, SimOptions};
use slo_loadgen::{TraceFormat, run_files};

use crate::cli::{Failure, Format};
use crate::config::ServeConfig;

mod table;

pub(crate) use table::Table;

/// A minute is the onset when its p99 is at least this times the median minute before
/// the causal change.
pub(crate) const ONSET_RATIO: f64 = 1.2;
/// Minutes after the onset the table reports (the end of the run is added).
pub(crate) const OFFSETS_MIN: [i64; 5] = [1, 2, 3, 5, 10];

/// `slo eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// Scenarios to run (built-in names or YAML files) [default: every built-in].
    #[arg(long = "scenario", value_name = "NAME|FILE")]
    pub scenarios: Vec<String>,
    /// Seeds per scenario (1..=N).
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Fail (exit 1) when top-1 accuracy at the end of the runs with a cause is below this.
    #[arg(long, default_value_t = 0.99)]
    pub min_top1: f64,
    /// ... when top-1 accuracy three minutes after the onset is below this.
    #[arg(long, default_value_t = 0.9)]
    pub min_top1_3m: f64,
    /// ... when top-1 accuracy five minutes after the onset is below this.
    #[arg(long, default_value_t = 0.95)]
    pub min_top1_5m: f64,
    /// ... when the answer changes more often than this per run, on average.
    #[arg(long, default_value_t = 1.0)]
    pub max_flips: f64,
    /// The window each explanation looks at, as `slo explain --window`.
    #[arg(long, default_value = "1h")]
    pub window: String,
    /// Keep each run's files and data directory under DIR (default: a temporary directory).
    /// A run already imported there from the same scenario text and seed is explained
    /// again, not simulated again (a changed scenario is simulated afresh; a changed
    /// simulator needs a fresh DIR).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One answer of a run, at one moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    /// Seconds after the onset (the end of the run for the last point).
    pub offset_s: i64,
    /// The `--at` asked.
    pub at: String,
    /// A regression was detected.
    pub detected: bool,
    /// A causal change is ranked first.
    pub top1: bool,
    /// Every causal change (at most three) is among the first three.
    pub top3: bool,
    /// A decoy (causal: false) was ranked first.
    pub decoy_first: bool,
    /// What was ranked first.
    pub ranked_first: Option<String>,
    /// The onset reported.
    pub onset: Option<String>,
    /// The answer's confidence level, with a regression.
    pub confidence: Option<String>,
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    /// Scenario.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Whether the truth has a causal change.
    pub has_cause: bool,
    /// Whether the causal change measurably moved p99 (a minute after it at least
    /// [`ONSET_RATIO`] x the median minute before it). A fault without an effect is
    /// scored apart: finding no regression there is a right answer, not a miss.
    pub effect: bool,
    /// Whether a regression was detected at the end of the run.
    pub detected: bool,
    /// Top-ranked cause is a causal one, at the end of the run.
    pub top1: bool,
    /// Every causal one is among the first three, at the end of the run.
    pub top3: bool,
    /// A decoy (causal: false) was ranked first at the end of the run.
    pub decoy_first: bool,
    /// |reported onset - the earliest causal change's time| at the end of the run, seconds.
    pub onset_error_s: Option<f64>,
    /// What was ranked first at the end of the run.
    pub ranked_first: Option<String>,
    /// The onset the offsets count from.
    pub onset: String,
    /// `data` (the first minute over [`ONSET_RATIO`] x the baseline median), `truth` (the
    /// causal change's time: no minute was), or `action` (a run without a cause: its first
    /// injected change, or 40% into the run).
    pub onset_from: &'static str,
    /// Every answer, a minute apart from the onset, and at the end.
    pub timeline: Vec<Point>,
    /// A run without a cause reported a regression at some moment.
    pub false_alarm: bool,
    /// Seconds after the onset of the first answer with the cause ranked first.
    pub first_top1_s: Option<i64>,
    /// How often the answer (detected, first cause, onset moved by more than a minute)
    /// changed from one minute to the next.
    pub flips: usize,
    /// Wall time of the explain at the end of the run, ms.
    pub explain_ms: f64,
    /// Wall time of simulate + import, s.
    pub prepare_s: f64,
}

/// Runs the command.
pub(crate) async fn run(args: EvalArgs) -> Result<(), Failure> {
    let names: Vec<String> = if args.scenarios.is_empty() {
        BUILTIN.iter().map(|b| b.name.to_string()).collect()
    } else {
        args.scenarios.clone()
    };
    if args.seeds == 0 {
        return Err(Failure::usage(anyhow::anyhow!("--seeds must be at least 1")));
    }
    let window = parse_window(&args.window).map_err(|e| Failure::usage(anyhow::anyhow!("--window: {e}")))?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut outcomes = Vec::new();
    for name in &names {
        for seed in args.first_seed..args.first_seed + args.seeds {
            let dir = root.join(format!("{}-{seed}", name.replace(['/', '.'], "_")));
            let o = run_one(name, seed, &dir, window).await?;
            eprintln!("{}", progress(&o));
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
    let failures = table.failures(&args);
    if !failures.is_empty() {
        return Err(anyhow::anyhow!("{}", failures.join("; ")).into());
    }
    Ok(())
}

fn progress(o: &Outcome) -> String {
    let verdict = if !o.has_cause {
        if o.false_alarm { "FALSE ALARM" } else { "quiet" }
    } else if !o.effect {
        "no effect in the data"
    } else if o.top1 {
        "top-1"
    } else if o.top3 {
        "top-3"
    } else {
        "MISS"
    };
    let line: Vec<String> = o
        .timeline
        .iter()
        .map(|p| match (p.detected, p.top1) {
            (false, _) => '.',
            (true, true) => '+',
            (true, false) if o.has_cause => 'x',
            (true, false) => '!',
        })
        .map(String::from)
        .collect();
    format!(
        "{:<22} seed {:>3}: {verdict} ({}), minutes from onset {} [{}], flips {}, explain {:.0} ms",
        o.scenario,
        o.seed,
        o.ranked_first.as_deref().unwrap_or("nothing ranked"),
        o.onset_from,
        line.concat(),
        o.flips,
        o.explain_ms
    )
}

fn ns(rfc: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .with_context(|| format!("bad time {rfc:?} in truth.json"))
}

/// A fixed start so that a seed always gives the same data.
const START: &str = "2026-11-22T14:00:00Z";

async fn run_one(name: &str, seed: u64, dir: &Path, window: i64) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let out = dir.join("run");
    let mut cfg = ServeConfig::load(None).map_err(Failure::usage)?;
    cfg.data_dir = dir.join("data");
    // The marker holds what the run was made from: a kept run of another scenario text
    // (a built-in edited since, a file changed) is not explained as if it were this one.
    let imported = dir.join("imported");
    let made_from = format!("seed {seed}\n{}", scenario_text(name)?);
    if std::fs::read_to_string(&imported).ok().as_deref() != Some(made_from.as_str()) {
        simulate_and_import(name, seed, &out, &cfg).await?;
        std::fs::write(&imported, &made_from).with_context(|| format!("writing {}", imported.display()))?;
    }
    let truth = GroundTruth::read(&out.join("truth.json")).map_err(anyhow::Error::from)?;
    let prepare_s = started.elapsed().as_secs_f64();
    let source = crate::explain::open_local(&cfg.data_dir).await?;
    let (start, end) = (ns(&truth.start)?, ns(&truth.end)?);
    let (onset, onset_from) = onset(&source, &truth, start, end).await?;
    let mut timeline = Vec::new();
    let mut at = onset + MINUTE_NS;
    while at < end {
        let query = Query::new(Some(truth.service.clone()), Some(at), window);
        let report = crate::explain::explain_with(&source, &query).await?;
        timeline.push(point(&truth, (at - onset) / 1_000_000_000, at, &report));
        at += MINUTE_NS;
    }
    let query = Query::new(Some(truth.service.clone()), Some(end), window.max(end - start));
    let t = Instant::now();
    let report = crate::explain::explain_with(&source, &query).await?;
    let explain_ms = t.elapsed().as_secs_f64() * 1e3;
    timeline.push(point(&truth, (end - onset) / 1_000_000_000, end, &report));
    Ok(score(name, seed, &truth, &report, timeline, (rfc3339(onset), onset_from), explain_ms, prepare_s)?)
}

/// The text a scenario is made from: a built-in's YAML, or the file's.
fn scenario_text(name: &str) -> Result<String, Failure> {
    match slo_loadgen::builtin_yaml(name) {
        Some(text) => Ok(text),
        None => {
            std::fs::read_to_string(name).with_context(|| format!("reading scenario {name}")).map_err(Failure::usage)
        }
    }
}

/// The run's files under `out`, imported into `cfg.data_dir`; the traces and scrapes are
/// removed once imported (the truth and the watch stream stay).
async fn simulate_and_import(name: &str, seed: u64, out: &Path, cfg: &ServeConfig) -> Result<(), Failure> {
    let scenario = slo_loadgen::load_scenario(name).map_err(Failure::usage)?;
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(&cfg.data_dir);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let opts = SimOptions { seed, start_unix_ns: ns(START)?, metrics_port: None, traffic_scale: Some(1.0) };
    let sim = Sim::new(scenario, opts);
    let out2 = out.to_path_buf();
    tokio::task::spawn_blocking(move || run_files(sim, &out2, TraceFormat::Pb)).await.context("simulation task")??;
    let mut files = list(&out.join("traces"))?;
    files.push(out.join("kube").join("watch.jsonl"));
    files.extend(list(&out.join("metrics"))?);
    let (_, failed) = crate::import::import(cfg, &files).await?;
    if let Some(e) = failed {
        return Err(anyhow::anyhow!("importing {name} seed {seed}: {e}").into());
    }
    let _ = std::fs::remove_dir_all(out.join("traces"));
    let _ = std::fs::remove_dir_all(out.join("metrics"));
    Ok(())
}

/// When the trouble began, by the data: see [`ONSET_RATIO`].
async fn onset(source: &Source, truth: &GroundTruth, start: i64, end: i64) -> Result<(i64, &'static str), Failure> {
    let Some(causal) = first_causal(truth) else {
        let t = match truth.injected.first() {
            Some(i) => ns(&i.time)?,
            None => start + (end - start) * 2 / 5,
        };
        return Ok((t, "action"));
    };
    let fault = ns(&causal.time)?;
    let minutes = source.rollups(Some(&truth.service), start, end).await.map_err(anyhow::Error::from)?.minutes(
        &truth.service,
        None,
        start,
        end,
    );
    let p99 = |c: &slo_analyzer::Cell| c.duration.quantile(0.99).unwrap_or(0.0);
    let before: Vec<f64> = minutes.range(..fault.div_euclid(MINUTE_NS) * MINUTE_NS).map(|(_, c)| p99(c)).collect();
    let Some(median) = slo_analyzer::median(&before) else { return Ok((fault, "truth")) };
    let first = minutes
        .range(fault.div_euclid(MINUTE_NS) * MINUTE_NS..)
        .find(|(_, c)| p99(c) >= ONSET_RATIO * median)
        .map(|(m, _)| *m);
    Ok(match first {
        Some(m) => (m, "data"),
        None => (fault, "truth"),
    })
}

/// The earliest causal change (by its time: the truth lists them in order of the actions).
fn first_causal(truth: &GroundTruth) -> Option<&TruthEntry> {
    truth.injected.iter().filter(|i| i.causal).min_by_key(|i| ns(&i.time).unwrap_or(i64::MAX))
}

fn point(truth: &GroundTruth, offset_s: i64, at: i64, r: &Report) -> Point {
    let causal: Vec<&TruthEntry> = truth.injected.iter().filter(|i| i.causal).collect();
    let is = |c: &slo_analyzer::Cause, i: &TruthEntry| c.kind == i.kind && c.object == i.object;
    let first3 = &r.causes[..r.causes.len().min(3)];
    Point {
        offset_s,
        at: rfc3339(at),
        detected: r.regression.detected,
        top1: r.causes.first().is_some_and(|c| causal.iter().any(|i| is(c, i))),
        top3: !causal.is_empty() && causal.iter().take(3).all(|i| first3.iter().any(|c| is(c, i))),
        decoy_first: r.causes.first().is_some_and(|c| truth.injected.iter().any(|i| !i.causal && is(c, i))),
        ranked_first: r.causes.first().map(|c| format!("{} {}", c.kind, c.object)),
        onset: r.regression.onset.clone(),
        confidence: r.confidence.as_ref().map(|c| c.level.clone()),
    }
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

/// Changes of the answer from one moment to the next: detected or not, the first cause,
/// or the onset moved by more than a minute.
pub(crate) fn flips(timeline: &[Point]) -> usize {
    let onset = |p: &Point| p.onset.as_deref().and_then(|o| ns(o).ok());
    timeline
        .windows(2)
        .filter(|w| {
            let moved = match (onset(&w[0]), onset(&w[1])) {
                (Some(a), Some(b)) => (a - b).abs() > MINUTE_NS,
                (a, b) => a.is_some() != b.is_some(),
            };
            w[0].detected != w[1].detected || w[0].ranked_first != w[1].ranked_first || moved
        })
        .count()
}

#[allow(clippy::too_many_arguments)]
fn score(
    name: &str,
    seed: u64,
    truth: &GroundTruth,
    r: &Report,
    timeline: Vec<Point>,
    onset: (String, &'static str),
    explain_ms: f64,
    prepare_s: f64,
) -> anyhow::Result<Outcome> {
    let causal = first_causal(truth);
    let end = timeline.last().cloned().context("a run has at least its end")?;
    let onset_error_s = match (causal, &r.regression.onset) {
        (Some(i), Some(onset)) => Some(((ns(onset)? - ns(&i.time)?) as f64 / 1e9).abs()),
        _ => None,
    };
    Ok(Outcome {
        scenario: name.to_string(),
        seed,
        has_cause: causal.is_some(),
        effect: causal.is_some() && onset.1 == "data",
        detected: end.detected,
        top1: end.top1,
        top3: end.top3,
        decoy_first: end.decoy_first,
        onset_error_s,
        ranked_first: end.ranked_first.clone(),
        onset: onset.0,
        onset_from: onset.1,
        false_alarm: causal.is_none() && timeline.iter().any(|p| p.detected),
        first_top1_s: timeline.iter().find(|p| p.top1).map(|p| p.offset_s),
        flips: flips(&timeline),
        timeline,
        explain_ms,
        prepare_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(detected: bool, first: Option<&str>, onset: Option<&str>) -> Point {
        Point {
            offset_s: 0,
            at: String::new(),
            detected,
            top1: false,
            top3: false,
            decoy_first: false,
            ranked_first: first.map(str::to_string),
            onset: onset.map(str::to_string),
            confidence: None,
        }
    }

    #[test]
    fn flips_count_changes_of_the_answer_not_small_onset_moves() {
        let a = Some("2026-11-22T14:12:00Z");
        let a_minute_later = Some("2026-11-22T14:13:00Z");
        let later = Some("2026-11-22T14:15:00Z");
        let s = Some("scale_down hpa/x");
        let timeline = vec![
            p(false, None, None),
            p(true, s, a),
            p(true, s, a_minute_later),
            p(true, s, later),
            p(true, Some("deploy deployment/x"), later),
            p(true, Some("deploy deployment/x"), later),
        ];
        // detected, onset moved by 2 minutes, first cause changed.
        assert_eq!(flips(&timeline), 3);
        assert_eq!(flips(&timeline[..1]), 0);
    }

    /// A fault that never moved p99 is counted apart, not as a miss: there explain is right
    /// to find nothing.
    #[test]
    fn faults_without_an_effect_are_left_out_of_top1() {
        let run = |seed: u64, effect: bool, top1: bool| {
            let mut pt = p(top1, top1.then_some("scale_down hpa/x"), None);
            pt.top1 = top1;
            Outcome {
                scenario: "s".into(),
                seed,
                has_cause: true,
                effect,
                detected: top1,
                top1,
                top3: top1,
                decoy_first: false,
                onset_error_s: None,
                ranked_first: None,
                onset: String::new(),
                onset_from: if effect { "data" } else { "truth" },
                timeline: vec![pt],
                false_alarm: false,
                first_top1_s: top1.then_some(0),
                flips: 0,
                explain_ms: 1.0,
                prepare_s: 1.0,
            }
        };
        let table = Table::of(&[run(1, true, true), run(2, true, true), run(3, false, false)]);
        let text = table.render();
        let row = text.lines().find(|l| l.starts_with("all ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        // +1..+10 min and the end: 100% over the two runs with an effect; one without.
        assert!(cells[2..8].iter().all(|c| *c == "100%"), "{text}");
        assert_eq!(cells[11], "1", "{text}");
        let table = Table::of(&[run(1, true, true), run(2, true, false)]);
        assert!(table.render().lines().find(|l| l.starts_with("all ")).unwrap().contains("50%"));
    }
}
