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

use std::collections::{BTreeMap, BTreeSet};

use crate::evidence::{self, GroupComparison, TailShift};
use crate::source::{Change, NodeThrottle, Request, reason_names};
use crate::text::ms;
use crate::text::{hm, p_text};

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

/// The deployment a pod belongs to, by the change's attribute or the pod name's prefix.
fn deployment_of<'a>(pod: &str, attrs: &'a BTreeMap<String, String>, known: &'a BTreeSet<String>) -> Option<&'a str> {
    if let Some(d) = attrs.get("deployment") {
        return Some(d);
    }
    known.iter().find(|d| pod.strip_prefix(d.as_str()).is_some_and(|rest| rest.starts_with('-'))).map(|s| s.as_str())
}

/// Groups changes into candidates: one per (kind, object), except that pod-level changes of
/// one deployment are one candidate (named after the earliest pod), and an HPA's steps are
/// one candidate at the step nearest before the onset.
pub(crate) fn from_changes(ctx: &Context<'_>, changes: &[Change]) -> Vec<Candidate> {
    let tol = ctx.width;
    let mut groups: BTreeMap<(String, String), Vec<&Change>> = BTreeMap::new();
    // An Event-only row (no `from`) beside the watch's row of the same step is one fact.
    let twin = |c: &Change| {
        c.from.is_empty()
            && changes.iter().any(|o| {
                !o.from.is_empty()
                    && o.kind == c.kind
                    && o.object == c.object
                    && (o.time - c.time).abs() <= 5_000_000_000
            })
    };
    for c in changes.iter().filter(|c| !twin(c)) {
        let key_object = match c.object.strip_prefix("pod/") {
            Some(pod) => match deployment_of(pod, &c.attributes, &ctx.deployments) {
                Some(d) => format!("pods-of/{d}"),
                None => c.object.clone(),
            },
            None => c.object.clone(),
        };
        groups.entry((c.kind.clone(), key_object)).or_default().push(c);
    }
    let mut out = Vec::new();
    for ((kind, _), members) in groups {
        // The member the candidate is about: the last one at or before onset + tolerance,
        // else the first after. Pod groups are about their first member.
        let pod_group = members[0].object.starts_with("pod/");
        let lead = if pod_group {
            members[0]
        } else {
            members.iter().rev().find(|c| c.time <= ctx.onset + tol).copied().unwrap_or(members[0])
        };
        let mut cand = Candidate {
            kind: kind.clone(),
            object: lead.object.clone(),
            time: lead.time,
            namespace: lead.namespace.clone(),
            source: "changes",
            evidence: Vec::new(),
            timing: 0.0,
            scope: 0.0,
            mechanism: 0.0,
            strength: 0.0,
            local_ratio: None,
            began: None,
            score: 0.0,
        };
        cand.scope = scope(ctx, lead);
        let (strength, facts, local_ratio) = strength_of_change(ctx, lead, &members, changes);
        cand.strength = strength;
        cand.local_ratio = local_ratio;
        cand.evidence = facts;
        if kind == "node_lost" {
            cand.began = node_went_silent(ctx, lead);
            if let Some(t) = cand.began {
                let node = lead.object.trim_start_matches("node/");
                cand.evidence.push(format!(
                    "{node} stopped serving at {}, {:.0} s before it was marked lost",
                    hm(t),
                    (lead.time - t) as f64 / 1e9
                ));
            }
        }
        out.push(cand);
    }
    out
}

fn scope(ctx: &Context<'_>, c: &Change) -> f64 {
    let (kind, name) = c.object.split_once('/').unwrap_or(("", c.object.as_str()));
    let nodes_before = evidence::distinct(&ctx.before, |r| &*r.node);
    match kind {
        "deployment" => {
            if ctx.deployments.contains(name) {
                1.0
            } else {
                0.1
            }
        }
        "hpa" | "scaledobject" => {
            let target = c.attributes.get("target").map(String::as_str).unwrap_or(name);
            if ctx.deployments.contains(target) || ctx.deployments.contains(name) { 1.0 } else { 0.1 }
        }
        "pod" => {
            let served = ctx.before.iter().chain(&ctx.after).any(|r| &*r.pod == name);
            if served
                || deployment_of(name, &c.attributes, &ctx.deployments).is_some_and(|d| ctx.deployments.contains(d))
            {
                1.0
            } else {
                0.1
            }
        }
        "node" => {
            if nodes_before.contains(name) {
                1.0
            } else if c.kind == "node_added" {
                0.3
            } else {
                0.2
            }
        }
        _ => 0.2,
    }
}

fn strength_of_change(
    ctx: &Context<'_>,
    lead: &Change,
    members: &[&Change],
    changes: &[Change],
) -> (f64, Vec<String>, Option<f64>) {
    let mut facts = Vec::new();
    let mut local_ratio = None;
    let what = |c: &Change| {
        let mut s = format!("{} {}", c.kind, c.object);
        if !c.from.is_empty() || !c.to.is_empty() {
            s.push_str(&format!(" {}->{}", c.from, c.to));
        }
        s.push_str(&format!(" at {}", hm(c.time)));
        if !c.reason.is_empty() && c.reason != "SuccessfulRescale" {
            s.push_str(&format!(" ({})", c.reason));
        }
        s
    };
    let strength = match lead.kind.as_str() {
        "deploy" => {
            facts.push(what(lead));
            let after: Vec<&Request> = ctx.after.iter().copied().filter(|r| r.time >= lead.time).collect();
            let new_rs = lead.attributes.get("to_replicaset").cloned().or_else(|| {
                let old = evidence::distinct(&ctx.before, |r| &*r.replicaset);
                evidence::distinct(&after, |r| &*r.replicaset)
                    .into_iter()
                    .find(|rs| !old.contains(rs))
                    .map(str::to_string)
            });
            match new_rs.and_then(|rs| evidence::compare(&after, &rs, |r| *r.replicaset == *rs)) {
                Some(cmp) => {
                    facts.insert(0, compare_fact("new ReplicaSet", &cmp, "the old one"));
                    local_ratio = Some(cmp.ratio());
                    if cmp.slower() { 1.0 } else { 0.2 }
                }
                None => 0.4,
            }
        }
        "scale_down" => {
            facts.push(what(lead));
            for c in members
                .iter()
                .filter(|c| !std::ptr::eq(**c, lead) && c.time <= lead.time && c.time >= lead.time - 900_000_000_000)
            {
                facts.push(format!("earlier: {}", what(c)));
            }
            // A later step of the same object before the onset (an HPA flapping at its
            // tolerance) gave the capacity back only if its pods were serving by then: a
            // 70B model's new pod needs minutes to load.
            let from = lead.from.parse::<f64>().ok();
            let to = lead.to.parse::<f64>().ok();
            let back_up = changes.iter().filter(|c| {
                c.object == lead.object && c.kind == "scale_up" && c.time > lead.time && c.time < ctx.onset
            });
            let given_back = match (back_up.max_by_key(|c| c.time), from) {
                (Some(step), Some(f)) if step.to.parse::<f64>().is_ok_and(|t| t >= f) => {
                    // Pods serving after the scale-down (a removed pod stops getting new
                    // requests when it leaves the endpoints) against the minute before it.
                    let after_it = pods_serving(ctx, (lead.time + 5_000_000_000).max(ctx.onset - MINUTE), ctx.onset);
                    match (pods_serving(ctx, lead.time - MINUTE, lead.time), after_it) {
                        (Some(then), Some(now)) if now >= then => {
                            facts.push(format!(
                                "then {}; {now} pods served after it up to the onset, {then} in the minute before it",
                                what(step)
                            ));
                            true
                        }
                        _ => {
                            facts.push(format!("then {}, its new pods not yet serving at the onset", what(step)));
                            false
                        }
                    }
                }
                _ => false,
            };
            match (from, to) {
                _ if given_back => 0.05,
                (Some(f), Some(t)) if f > t && f > 0.0 => 0.5 + 0.5 * ((f - t) / f * 4.0).min(1.0),
                _ => 0.5,
            }
        }
        "node_lost" | "eviction" => {
            facts.push(what(lead));
            let node = lead.object.strip_prefix("node/").unwrap_or("");
            let before = ctx.before.iter().filter(|r| &*r.node == node).count();
            let after = ctx.after.iter().filter(|r| &*r.node == node && r.time > lead.time + 60_000_000_000).count();
            if !node.is_empty() && before > 0 {
                facts.insert(0, format!("{node} served {before} requests before, {after} after"));
                if after * 10 < before.max(1) { 1.0 } else { 0.5 }
            } else {
                0.5
            }
        }
        "oom_kill" => {
            let pods: BTreeSet<&str> = members.iter().map(|c| c.object.as_str()).collect();
            facts.push(format!(
                "{} OOM kill(s) of {} pod(s), first {} at {}",
                members.len(),
                pods.len(),
                lead.object,
                hm(lead.time)
            ));
            let total = evidence::distinct(&ctx.before, |r| &*r.pod).len().max(1);
            0.5 + 0.5 * (pods.len() as f64 / total as f64 * 3.0).min(1.0)
        }
        "cold_start" => {
            let pods: BTreeSet<&str> = members.iter().map(|c| c.object.as_str()).collect();
            facts.push(format!("{} pod(s) started cold from {}", pods.len(), hm(lead.time)));
            0.3
        }
        "scheduling_failure" => {
            facts.push(what(lead));
            0.5
        }
        _ => {
            facts.push(what(lead));
            0.1
        }
    };
    (strength, facts, local_ratio)
}

/// Pods that began serving a request of the service in `[from, to)`; None when the detail
/// rows have none there.
fn pods_serving(ctx: &Context<'_>, from: i64, to: i64) -> Option<usize> {
    let rows = ctx.before.iter().chain(&ctx.after).filter(|r| r.time >= from && r.time < to);
    let pods: BTreeSet<&str> = rows.map(|r| &*r.pod).collect();
    (!pods.is_empty()).then_some(pods.len())
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

/// Kubernetes marks a node NotReady when its kubelet has not reported for
/// `node-monitor-grace-period` (40 s; 50 s from 1.32): the node stopped serving up to that
/// long before the recorded change. When the node served requests right up to some moment
/// in that span and none after it, that moment is when the loss began.
fn node_went_silent(ctx: &Context<'_>, lead: &Change) -> Option<i64> {
    const GRACE: i64 = 60_000_000_000;
    let node = lead.object.strip_prefix("node/")?;
    let on_node = || ctx.before.iter().chain(&ctx.after).filter(|r| &*r.node == node);
    let last = on_node().filter(|r| r.time <= lead.time).map(|r| r.time).max()?;
    let silent_after = on_node().all(|r| r.time <= last || r.time > lead.time + GRACE);
    // Served at least once a second before going silent: the gap is the failure, not thin traffic.
    let busy = on_node().filter(|r| r.time > last - 60_000_000_000 && r.time <= last).count() >= 60;
    (silent_after && busy && lead.time - last > 5_000_000_000 && lead.time - last <= GRACE).then_some(last)
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

/// Candidates the data itself suggests: traffic surge, token mix shift, a node whose
/// compute slowed (with the GPU throttle reasons it reported, when scraped).
pub(crate) fn from_metrics(
    ctx: &Context<'_>,
    throttle: &[NodeThrottle],
    rate_onset: Option<i64>,
    token_onset: Option<i64>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let deployment = ctx.deployments.iter().next().cloned().unwrap_or_else(|| ctx.service.to_string());
    let mk = |kind: &str, object: String, time: i64, strength: f64, evidence: Vec<String>| Candidate {
        kind: kind.into(),
        object,
        time,
        namespace: ctx.namespace.clone(),
        source: "metrics",
        evidence,
        timing: 0.0,
        scope: 1.0,
        mechanism: 0.0,
        strength,
        local_ratio: None,
        began: None,
        score: 0.0,
    };
    let (rb, ra) = ctx.rate;
    if rb > 0.0 && ra / rb > 1.15 {
        let r = ra / rb;
        out.push(mk(
            "traffic_surge",
            format!("deployment/{deployment}"),
            rate_onset.unwrap_or(ctx.onset),
            ((r - 1.0) / 0.5).min(1.0),
            vec![format!("request rate {rb:.1}/s -> {ra:.1}/s (x{r:.2})")],
        ));
    }
    let (ib, ia) = ctx.input_tokens;
    let (ob, oa) = ctx.output_tokens;
    let ri = if ib > 0.0 { ia / ib } else { 1.0 };
    let ro = if ob > 0.0 { oa / ob } else { 1.0 };
    if ri > 1.25 || ro > 1.25 {
        let r = ri.max(ro);
        let mut ev = Vec::new();
        if ri > 1.25 {
            ev.push(format!("median prompt {ib:.0} -> {ia:.0} tokens (x{ri:.2})"));
        }
        if ro > 1.25 {
            ev.push(format!("median output {ob:.0} -> {oa:.0} tokens (x{ro:.2})"));
        }
        out.push(mk(
            "workload_shift",
            format!("deployment/{deployment}"),
            token_onset.unwrap_or(ctx.onset),
            ((r - 1.0) / 0.5).min(1.0),
            ev,
        ));
    }
    // A node slower than the others after the onset but not before.
    let nodes = evidence::distinct(&ctx.after, |r| &*r.node);
    let mut slow: Vec<(GroupComparison, f64)> = Vec::new();
    for n in nodes {
        let Some(after) = evidence::compare_node(&ctx.after, n) else { continue };
        let before_ratio = evidence::compare_node(&ctx.before, n).map_or(1.0, |b| b.ratio());
        if after.slower() && after.ratio() / before_ratio > 1.10 {
            slow.push((after, before_ratio));
        }
    }
    slow.sort_by(|a, b| b.0.ratio().total_cmp(&a.0.ratio()).then(a.0.group.cmp(&b.0.group)));
    if let Some((cmp, before_ratio)) = slow.first() {
        let node = cmp.group.clone();
        let mut ev =
            vec![format!("{} (x{:.2} before the onset)", compare_fact("node", cmp, "the other nodes"), before_ratio)];
        let mut time = ctx.onset;
        // The run of throttled minutes the onset falls in (or that starts just after it).
        let minutes: Vec<&NodeThrottle> = throttle.iter().filter(|m| m.node == node).collect();
        let hot = |m: &&NodeThrottle| m.gpus > 0;
        let at_onset = minutes.iter().rposition(|m| m.minute <= ctx.onset + ctx.width).filter(|&k| hot(&minutes[k]));
        let start = match at_onset {
            Some(mut k) => {
                while k > 0 && hot(&minutes[k - 1]) && minutes[k - 1].minute == minutes[k].minute - MINUTE {
                    k -= 1;
                }
                Some(k)
            }
            None => minutes.iter().position(|m| m.minute > ctx.onset && m.minute <= ctx.onset + 5 * MINUTE && hot(m)),
        };
        if let Some(k) = start {
            time = minutes[k].minute;
            let reasons = minutes[k..].iter().fold(0, |a, m| a | m.reasons);
            let gpus = minutes[k..].iter().map(|m| m.gpus).max().unwrap_or(0);
            ev.push(format!(
                "GPU clock-event reasons on {node} from {}: {} ({gpus} GPU(s))",
                hm(time),
                reason_names(reasons).join(", ")
            ));
        }
        // Without clock-event reasons a slower node is a weaker lead: pods restarting or
        // warming up there, or a neighbour, slow a node's requests too.
        let strength = if start.is_some() { 1.0 } else { 0.6 };
        let mut c = mk("gpu_throttle", format!("node/{node}"), time, strength, ev);
        c.local_ratio = Some(cmp.ratio() / before_ratio);
        out.push(c);
    }
    out
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

#[cfg(test)]
mod tests;
