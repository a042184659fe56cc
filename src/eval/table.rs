//! `slo eval`'s figures: per scenario and over all runs, at each moment after the onset.

use serde::Serialize;

use super::{EvalArgs, OFFSETS_MIN, Outcome, Point};

/// Per-scenario and overall figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Table {
    rows: Vec<Row>,
    total: Row,
    /// Per confidence level: answers that named a cause (every minute of every run whose
    /// fault moved p99) and how many of them were right (top-1).
    confidence: Vec<Level>,
}

/// How often an answer of one confidence level was right.
#[derive(Debug, Clone, Serialize)]
struct Level {
    level: String,
    answers: usize,
    right: usize,
}

impl Level {
    fn of(outcomes: &[Outcome]) -> Vec<Level> {
        ["high", "medium", "low"]
            .iter()
            .map(|level| {
                let points = outcomes
                    .iter()
                    .filter(|o| o.has_cause && o.effect)
                    .flat_map(|o| &o.timeline)
                    .filter(|p| p.detected && p.ranked_first.is_some() && p.confidence.as_deref() == Some(*level));
                let (answers, right) = points.fold((0, 0), |(n, r), p| (n + 1, r + usize::from(p.top1)));
                Level { level: level.to_string(), answers, right }
            })
            .collect()
    }
}

/// One scenario's figures (or all runs').
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    runs: usize,
    with_cause: usize,
    /// Runs with a cause where a regression was detected, at each offset then at the end.
    detected: Vec<usize>,
    /// Top-1 accuracy over the runs with a cause at each offset (minutes after the onset:
    /// [`OFFSETS_MIN`]) then at the end of the run.
    top1: Vec<f64>,
    /// Top-3 at the end.
    top3: f64,
    decoy_first: usize,
    /// Runs without a cause that reported a regression at any moment.
    false_alarms: usize,
    /// Runs with a cause that did not measurably move p99 (left out of the top-1 figures).
    no_effect: usize,
    /// Seconds after the onset of the first correct answer: median, p90 (over the runs
    /// that gave one).
    first_top1_s: Option<[i64; 2]>,
    /// Runs with a cause never ranked first at any moment.
    never_top1: usize,
    mean_flips: f64,
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

/// The point of a run `minutes` after its onset, or its end when the run ended sooner.
fn at_offset(o: &Outcome, minutes: Option<i64>) -> &Point {
    let last = o.timeline.last().expect("a run has at least its end");
    match minutes {
        Some(m) => o.timeline.iter().find(|p| p.offset_s >= m * 60).unwrap_or(last),
        None => last,
    }
}

fn offsets() -> impl Iterator<Item = Option<i64>> {
    OFFSETS_MIN.iter().map(|m| Some(*m)).chain(std::iter::once(None))
}

impl Row {
    fn of(scenario: &str, runs: &[&Outcome]) -> Row {
        let caused: Vec<&Outcome> = runs.iter().copied().filter(|o| o.has_cause && o.effect).collect();
        let share = |n: usize| if caused.is_empty() { 0.0 } else { n as f64 / caused.len() as f64 };
        let mut firsts: Vec<i64> = caused.iter().filter_map(|o| o.first_top1_s).collect();
        firsts.sort_unstable();
        let pick = |q: f64| firsts[((firsts.len() as f64 * q).ceil() as usize).clamp(1, firsts.len()) - 1];
        Row {
            scenario: scenario.to_string(),
            runs: runs.len(),
            with_cause: caused.len(),
            detected: offsets().map(|m| caused.iter().filter(|o| at_offset(o, m).detected).count()).collect(),
            top1: offsets().map(|m| share(caused.iter().filter(|o| at_offset(o, m).top1).count())).collect(),
            top3: share(caused.iter().filter(|o| o.top3).count()),
            decoy_first: runs.iter().filter(|o| o.decoy_first).count(),
            false_alarms: runs.iter().filter(|o| o.false_alarm).count(),
            no_effect: runs.iter().filter(|o| o.has_cause && !o.effect).count(),
            first_top1_s: (!firsts.is_empty()).then(|| [pick(0.5), pick(0.9)]),
            never_top1: caused.iter().filter(|o| o.first_top1_s.is_none()).count(),
            mean_flips: runs.iter().map(|o| o.flips as f64).sum::<f64>() / runs.len().max(1) as f64,
            median_onset_error_s: median(runs.iter().filter_map(|o| o.onset_error_s).collect()),
            median_explain_ms: median(runs.iter().map(|o| o.explain_ms).collect()).unwrap_or(0.0),
        }
    }
}

impl Table {
    /// The figures of these runs.
    pub(crate) fn of(outcomes: &[Outcome]) -> Table {
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
        Table { rows, total: Row::of("all", &outcomes.iter().collect::<Vec<_>>()), confidence: Level::of(outcomes) }
    }

    /// What falls short of the thresholds in `args`, one sentence each.
    pub(crate) fn failures(&self, args: &EvalArgs) -> Vec<String> {
        let t = &self.total;
        let mut out = Vec::new();
        if t.false_alarms > 0 {
            out.push(format!("{} false regression(s) on runs without a cause", t.false_alarms));
        }
        if t.with_cause > 0 {
            let idx = |m: i64| OFFSETS_MIN.iter().position(|x| *x == m).expect("an offset the table has");
            for (value, min, when) in [
                (t.top1[idx(3)], args.min_top1_3m, "3 minutes after the onset"),
                (t.top1[idx(5)], args.min_top1_5m, "5 minutes after the onset"),
                (t.top1[OFFSETS_MIN.len()], args.min_top1, "at the end of the runs"),
            ] {
                if value < min {
                    out.push(format!("top-1 {:.1}% {when} is below {:.1}%", value * 100.0, min * 100.0));
                }
            }
        }
        if t.mean_flips > args.max_flips {
            out.push(format!("{:.2} flips per run is above {:.2}", t.mean_flips, args.max_flips));
        }
        out
    }

    /// The text table.
    pub(crate) fn render(&self) -> String {
        let mut o = format!("{:<22} {:>4} ", "scenario", "runs");
        for m in OFFSETS_MIN {
            o.push_str(&format!("{:>6}", format!("+{m}m")));
        }
        o.push_str(&format!(
            " {:>6} {:>6} {:>5} {:>5} {:>6} {:>13} {:>6} {:>6} {:>8}\n",
            "end", "top-3", "decoy", "false", "no eff", "1st top-1 s", "never", "flips", "expl ms"
        ));
        for r in self.rows.iter().chain(std::iter::once(&self.total)) {
            let acc = |v: f64| if r.with_cause == 0 { "-".to_string() } else { format!("{:.0}%", v * 100.0) };
            o.push_str(&format!("{:<22} {:>4} ", r.scenario, r.runs));
            for v in &r.top1[..OFFSETS_MIN.len()] {
                o.push_str(&format!("{:>6}", acc(*v)));
            }
            o.push_str(&format!(
                " {:>6} {:>6} {:>5} {:>5} {:>6} {:>13} {:>6} {:>6.2} {:>8.0}\n",
                acc(r.top1[OFFSETS_MIN.len()]),
                acc(r.top3),
                r.decoy_first,
                r.false_alarms,
                r.no_effect,
                r.first_top1_s.map_or("-".into(), |[a, b]| format!("{a} / {b}")),
                r.never_top1,
                r.mean_flips,
                r.median_explain_ms
            ));
        }
        o.push_str(
            "top-1 at minutes after the onset and at the end, over the runs whose fault moved p99 (no eff: \
             those whose did not, left out); 1st top-1: median / p90 seconds after the onset\n",
        );
        let levels: Vec<String> = self
            .confidence
            .iter()
            .filter(|l| l.answers > 0)
            .map(|l| {
                format!("{} {} of {} ({:.1}%)", l.level, l.right, l.answers, 100.0 * l.right as f64 / l.answers as f64)
            })
            .collect();
        if !levels.is_empty() {
            o.push_str(&format!("answers right (top-1) by their confidence, every minute: {}\n", levels.join(", ")));
        }
        o
    }
}
