//! Candidates from the `changes` table: grouped (the steps of one HPA, the pods of one
//! deployment), each with its scope (the service's own object or not) and the strength of
//! its kind's before/after test.

use std::collections::{BTreeMap, BTreeSet};

use super::{Candidate, Context, MINUTE, compare_fact};
use crate::evidence;
use crate::source::{Change, Request};
use crate::text::hm;

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

/// How much the change's object is the service's own: 1 for its deployment, its HPA or
/// ScaledObject (by target or name), its pods and the nodes that served it.
pub(crate) fn scope(ctx: &Context<'_>, c: &Change) -> f64 {
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
