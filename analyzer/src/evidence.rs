//! Before/after comparisons over request detail: which pods, ReplicaSets or nodes got
//! slower, and how the slow tail's latency splits into queue and compute.

use std::collections::BTreeSet;

use crate::source::Request;
use crate::stats;

/// Compute milliseconds per generated token (plus one, so single-token requests count):
/// comparable across requests of different lengths.
pub(crate) fn compute_per_token(r: &Request) -> f64 {
    r.compute / (r.output_tokens + 1.0)
}

/// How the slow tail's latency changed: mean duration, queue and compute of the requests
/// at or above each window's p99, before and after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TailShift {
    /// Mean tail duration before, ms.
    pub duration_before: f64,
    /// ... after.
    pub duration_after: f64,
    /// Share of the increase that is queue time.
    pub queue_share: f64,
    /// Share that is compute time.
    pub compute_share: f64,
}

fn tail(rs: &[&Request]) -> Option<(f64, f64, f64)> {
    if rs.len() < 20 {
        return None;
    }
    let mut d: Vec<f64> = rs.iter().map(|r| r.duration).collect();
    d.sort_by(f64::total_cmp);
    let threshold = crate::stats::quantile_sorted(&d, 0.99)?;
    let t: Vec<&&Request> = rs.iter().filter(|r| r.duration >= threshold).collect();
    let n = t.len() as f64;
    Some((
        t.iter().map(|r| r.duration).sum::<f64>() / n,
        t.iter().map(|r| r.queue).sum::<f64>() / n,
        t.iter().map(|r| r.compute).sum::<f64>() / n,
    ))
}

/// The tail shift between two sets of requests; `None` when either is too small or the
/// tail did not grow.
pub(crate) fn tail_shift(before: &[&Request], after: &[&Request]) -> Option<TailShift> {
    let (db, qb, cb) = tail(before)?;
    let (da, qa, ca) = tail(after)?;
    let dd = da - db;
    if dd <= 0.0 {
        return None;
    }
    Some(TailShift {
        duration_before: db,
        duration_after: da,
        queue_share: ((qa - qb) / dd).clamp(-1.0, 2.0),
        compute_share: ((ca - cb) / dd).clamp(-1.0, 2.0),
    })
}

/// A comparison of one group of requests against the rest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupComparison {
    /// The group's name (a ReplicaSet, a node).
    pub group: String,
    /// Median compute per token in the group, ms.
    pub group_median: f64,
    /// ... in the rest.
    pub rest_median: f64,
    /// Mann-Whitney two-sided p-value.
    pub p_value: f64,
    /// Requests in the group.
    pub n: usize,
}

impl GroupComparison {
    /// `group_median / rest_median`.
    pub(crate) fn ratio(&self) -> f64 {
        if self.rest_median > 0.0 { self.group_median / self.rest_median } else { 1.0 }
    }

    /// Whether the group is slower: clearly (p < 0.01) and by at least 10%.
    pub(crate) fn slower(&self) -> bool {
        self.p_value < 0.01 && self.ratio() > 1.10
    }
}

/// Compares compute per token of the requests `in_group` says yes to against the others.
/// Samples at most 2,000 a side (deterministically, every k-th) to bound the cost.
pub(crate) fn compare(rs: &[&Request], group: &str, in_group: impl Fn(&Request) -> bool) -> Option<GroupComparison> {
    let (g, rest): (Vec<f64>, Vec<f64>) = {
        let mut g = Vec::new();
        let mut rest = Vec::new();
        for r in rs {
            if in_group(r) { g.push(compute_per_token(r)) } else { rest.push(compute_per_token(r)) }
        }
        (g, rest)
    };
    if g.len() < 10 || rest.len() < 10 {
        return None;
    }
    let (gs, ress) = (thin(&g, 2000), thin(&rest, 2000));
    let (p, _) = stats::mann_whitney(&gs, &ress)?;
    Some(GroupComparison {
        group: group.to_string(),
        group_median: stats::median(&g)?,
        rest_median: stats::median(&rest)?,
        p_value: p,
        n: g.len(),
    })
}

/// Compares one node's requests against other nodes' requests *of the same ReplicaSet*,
/// for every ReplicaSet with enough requests on both sides, and keeps the comparison least
/// against the node: a slow node is slow for every version it serves, while a rollout that
/// puts the new (slower) version's pods on some nodes first makes those nodes look slow
/// only when versions are mixed. `None` when no ReplicaSet runs both on it and elsewhere.
pub(crate) fn compare_node(rs: &[&Request], node: &str) -> Option<GroupComparison> {
    // Requests without a ReplicaSet (pods not named by one) are one group of their own.
    let sets: BTreeSet<&str> = rs.iter().map(|r| &*r.replicaset).collect();
    let mut least: Option<GroupComparison> = None;
    for set in sets {
        let mine: Vec<&Request> = rs.iter().copied().filter(|r| &*r.replicaset == set).collect();
        let Some(c) = compare(&mine, node, |r| &*r.node == node) else { continue };
        if least.as_ref().is_none_or(|l| c.ratio() < l.ratio()) {
            least = Some(c);
        }
    }
    least
}

fn thin(x: &[f64], max: usize) -> Vec<f64> {
    if x.len() <= max {
        return x.to_vec();
    }
    let step = x.len().div_ceil(max);
    x.iter().step_by(step).copied().collect()
}

/// Distinct non-empty values of a field.
pub(crate) fn distinct<'a>(rs: &'a [&Request], f: impl Fn(&'a Request) -> &'a str) -> BTreeSet<&'a str> {
    rs.iter().map(|r| f(r)).filter(|s| !s.is_empty()).collect()
}
