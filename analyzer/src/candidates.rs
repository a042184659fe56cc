//! Candidate causes of a regression, and how each is scored.
//!
//! Candidates come from the `changes` table (grouped: the steps of one HPA, the pods of one
//! deployment) and from the data itself (a traffic surge, a prompt/output token shift, a
//! node whose compute slowed against the others, with the GPU throttle reasons it reported). Each gets four
//! factors in [0, 1] and a score `timing x scope x (0.3 mechanism + 0.7 strength)`:
//!
//! - **timing**: the cause must precede the onset (within the bucket resolution) by no more
//!   than a plausible lag for its kind; one inside the onset bucket is at the onset when the
//!   bucket's requests before it were not slow yet, else as likely an effect; a lost node
//!   is timed from when it stopped serving, not from when it was marked NotReady;
//! - **scope**: the object is the service's own deployment, HPA, pod or one of the nodes
//!   that served it;
//! - **mechanism**: capacity causes show up as queue time, compute causes as compute time;
//! - **strength**: the kind-specific before/after test (new vs old ReplicaSet pods, one
//!   node vs the others, the replica ratio, the rate or token ratio). A scale-down that a
//!   step back up undid before the onset, its pods serving again, explains nothing.

use std::collections::BTreeSet;

use crate::evidence::{GroupComparison, TailShift};
use crate::source::Request;
use crate::text::{ms, p_text};

mod changes;
mod metrics;

pub(crate) use changes::{from_changes, scope};
pub(crate) use metrics::from_metrics;

const MINUTE: i64 = 60_000_000_000;

/// What the scoring knows about the regression.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    /// The service.
    pub service: &'a str,
    /// Its deployments (from its requests).
    pub deployments: BTreeSet<String>,
    /// Its namespace (from its requests).
    pub namespace: String,
    /// When the regression began, ns.
    pub onset: i64,
    /// Bucket width, ns.
    pub width: i64,
    /// The slow tail's split.
    pub tail: Option<TailShift>,
    /// Requests of the baseline window.
    pub before: Vec<&'a Request>,
    /// Requests of the regressed window.
    pub after: Vec<&'a Request>,
    /// Request rate before and after, per second.
    pub rate: (f64, f64),
    /// Median prompt tokens before and after.
    pub input_tokens: (f64, f64),
    /// Median output tokens before and after.
    pub output_tokens: (f64, f64),
}

/// One candidate cause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    /// Taxonomy kind.
    pub kind: String,
    /// `hpa/x`, `deployment/x`, `node/x`, `pod/x`.
    pub object: String,
    /// When it happened, ns.
    pub time: i64,
    /// Its namespace (empty when not namespaced).
    pub namespace: String,
    /// `changes` or `metrics`.
    pub source: &'static str,
    /// Facts, most telling first.
    pub evidence: Vec<String>,
    /// Factors.
    pub timing: f64,
    /// Scope factor.
    pub scope: f64,
    /// Mechanism factor.
    pub mechanism: f64,
    /// Strength of the kind-specific test.
    pub strength: f64,
    /// How much slower (compute per token) the requests this cause touched got than the
    /// others, when a group comparison measured it (new ReplicaSet, one node).
    pub local_ratio: Option<f64>,
    /// When the data says it began, ns, where that is earlier than the recorded time (a
    /// node stops serving before the node controller marks it NotReady). Timing uses it.
    pub began: Option<i64>,
    /// The score.
    pub score: f64,
}

const CAPACITY: [&str; 7] =
    ["scale_down", "cold_start", "node_lost", "traffic_surge", "oom_kill", "eviction", "scheduling_failure"];
const COMPUTE: [&str; 3] = ["deploy", "gpu_throttle", "workload_shift"];

fn max_lag_s(kind: &str) -> f64 {
    match kind {
        "gpu_throttle" | "traffic_surge" | "workload_shift" => 300.0,
        _ => 600.0,
    }
}

fn compare_fact(group: &str, c: &GroupComparison, rest: &str) -> String {
    format!(
        "{group} {}: compute {:.1} ms/token vs {:.1} on {rest} (x{:.2}, Mann-Whitney p={})",
        c.group,
        c.group_median,
        c.rest_median,
        c.ratio(),
        p_text(c.p_value)
    )
}

/// Fills timing, mechanism and score; sorts best first (ties: earlier, then by object).
pub(crate) fn score(ctx: &Context<'_>, cands: &mut [Candidate]) {
    // The onset is a bucket's start: a change inside that bucket is at the onset.
    let tol_s = ctx.width as f64 / 1e9;
    let (qs, cs) = ctx.tail.map_or((0.5, 0.5), |t| (t.queue_share.clamp(0.0, 1.0), t.compute_share.clamp(0.0, 1.0)));
    // Computed once, and only when some candidate lands inside the onset bucket.
    let in_bucket = |c: &Candidate| (-tol_s..0.0).contains(&((ctx.onset - c.began.unwrap_or(c.time)) as f64 / 1e9));
    let p99 = if cands.iter().any(in_bucket) { baseline_p99(ctx) } else { None };
    for c in cands.iter_mut() {
        let lag = (ctx.onset - c.began.unwrap_or(c.time)) as f64 / 1e9;
        let max = max_lag_s(&c.kind);
        c.timing = if lag < -tol_s {
            0.05
        } else if lag < 0.0 {
            // Inside the onset bucket but after its start: as likely an effect as a cause,
            // unless the bucket's requests that began before it were not slow yet.
            match slow_before_in_bucket(ctx, p99, c.began.unwrap_or(c.time)) {
                Some((n, slow)) if slow * 20 <= n => {
                    c.evidence.push(format!(
                        "the onset minute's {n} requests before it were not slow yet ({slow} over the baseline p99)"
                    ));
                    1.0
                }
                _ => 0.7,
            }
        } else if lag <= max {
            1.0 - 0.4 * lag.max(0.0) / max
        } else {
            0.6 * (-(lag - max) / max).exp()
        };
        c.mechanism = if CAPACITY.contains(&c.kind.as_str()) {
            0.5 + 0.5 * qs
        } else if COMPUTE.contains(&c.kind.as_str()) {
            0.5 + 0.5 * cs
        } else {
            0.3
        };
        // Where the cause's own requests got slower to compute (a new ReplicaSet, one node),
        // that is its mechanism, whatever queueing it caused downstream.
        if let Some(r) = c.local_ratio.filter(|r| *r > 1.1) {
            c.mechanism = c.mechanism.max((0.5 + 0.5 * (r - 1.0)).min(1.0));
        }
        c.score = c.timing * c.scope * (0.3 * c.mechanism + 0.7 * c.strength);
        let when = if lag.abs() < 1.0 {
            "at the onset".to_string()
        } else if lag > 0.0 {
            format!("{lag:.0} s before the onset")
        } else {
            format!("{:.0} s after the onset began", -lag)
        };
        c.evidence.push(when);
        if let Some(t) = ctx.tail {
            let s = if CAPACITY.contains(&c.kind.as_str()) {
                Some(format!(
                    "queue time is {:.0}% of the slow tail's increase ({} -> {})",
                    t.queue_share * 100.0,
                    ms(t.duration_before),
                    ms(t.duration_after)
                ))
            } else if COMPUTE.contains(&c.kind.as_str()) {
                Some(format!(
                    "compute time is {:.0}% of the slow tail's increase ({} -> {})",
                    t.compute_share * 100.0,
                    ms(t.duration_before),
                    ms(t.duration_after)
                ))
            } else {
                None
            };
            c.evidence.extend(s);
        }
    }
    cands.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.time.cmp(&b.time)).then(a.object.cmp(&b.object)));
}

/// For a change inside the onset bucket: how many of the bucket's requests that began
/// before it, and how many of those were over the baseline p99. None below 20 requests.
fn slow_before_in_bucket(ctx: &Context<'_>, p99: Option<f64>, t: i64) -> Option<(usize, usize)> {
    let p99 = p99?;
    let pre: Vec<&&Request> = ctx.after.iter().filter(|r| r.time >= ctx.onset && r.time < t).collect();
    let slow = pre.iter().filter(|r| r.duration > p99).count();
    (pre.len() >= 20).then_some((pre.len(), slow))
}

/// The baseline's p99 duration; None under 100 requests.
fn baseline_p99(ctx: &Context<'_>) -> Option<f64> {
    let mut base: Vec<f64> = ctx.before.iter().map(|r| r.duration).collect();
    if base.len() < 100 {
        return None;
    }
    let k = (base.len() - 1) * 99 / 100;
    Some(*base.select_nth_unstable_by(k, f64::total_cmp).1)
}

#[cfg(test)]
mod tests;
