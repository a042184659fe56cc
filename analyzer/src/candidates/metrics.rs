//! Candidates the data itself suggests: a traffic surge, a shift in prompt or output
//! length, a node whose compute slowed against the others (with the GPU throttle reasons
//! it reported).

use super::{Candidate, Context, MINUTE, compare_fact};
use crate::evidence::{self, GroupComparison};
use crate::source::{NodeThrottle, reason_names};
use crate::text::hm;

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
