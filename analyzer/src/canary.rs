//! The canary table: p99, queue and compute per ReplicaSet, node and pod, before and
//! after the onset, side by side — during a rollout, the old ReplicaSet against the new
//! one. Computed from the request detail explain reads around the onset (at most
//! `DETAIL_PER_SIDE` (explain/chain.rs) requests a side), exact quantiles of those.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::source::Request;

/// Nodes listed at most (the slowest after the onset first).
pub(crate) const MAX_NODES: usize = 8;
/// Pods listed at most (the slowest after the onset first).
pub(crate) const MAX_PODS: usize = 10;

/// One side's figures of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Requests.
    pub requests: usize,
    /// p99 of duration, ms.
    pub p99_ms: f64,
    /// p99 of queue time, ms.
    pub queue_p99_ms: f64,
    /// p99 of compute time, ms.
    pub compute_p99_ms: f64,
}

/// One ReplicaSet, node or pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `replicaset`, `node` or `pod`.
    pub by: String,
    /// Its name.
    pub value: String,
    /// Before the onset (`None`: it served nothing then, a new ReplicaSet's pods).
    pub before: Option<Side>,
    /// Since the onset (`None`: it served nothing since, a ReplicaSet scaled away).
    pub after: Option<Side>,
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    (crate::stats::quantile_sorted(&v, 0.99).unwrap_or(0.0) * 100.0).round() / 100.0
}

fn side(rs: &[&Request]) -> Option<Side> {
    (!rs.is_empty()).then(|| Side {
        requests: rs.len(),
        p99_ms: p99(rs.iter().map(|r| r.duration).collect()),
        queue_p99_ms: p99(rs.iter().map(|r| r.queue).collect()),
        compute_p99_ms: p99(rs.iter().map(|r| r.compute).collect()),
    })
}

fn rows(by: &str, before: &[&Request], after: &[&Request], key: fn(&Request) -> &str, max: usize) -> Vec<Row> {
    let mut groups: BTreeMap<&str, (Vec<&Request>, Vec<&Request>)> = BTreeMap::new();
    for r in before {
        groups.entry(key(r)).or_default().0.push(r);
    }
    for r in after {
        groups.entry(key(r)).or_default().1.push(r);
    }
    let mut out: Vec<Row> = groups
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, (b, a))| Row { by: by.into(), value: name.into(), before: side(&b), after: side(&a) })
        .collect();
    let slowest = |r: &Row| r.after.as_ref().map_or(-1.0, |s| s.p99_ms);
    out.sort_by(|x, y| slowest(y).total_cmp(&slowest(x)).then_with(|| x.value.cmp(&y.value)));
    out.truncate(max);
    out
}

/// Every ReplicaSet, the slowest nodes and the slowest pods, before and after.
pub(crate) fn table(before: &[&Request], after: &[&Request]) -> Vec<Row> {
    let mut out = rows("replicaset", before, after, |r| &r.replicaset, usize::MAX);
    out.extend(rows("node", before, after, |r| &r.node, MAX_NODES));
    out.extend(rows("pod", before, after, |r| &r.pod, MAX_PODS));
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn req(rs: &str, pod: &str, node: &str, duration: f64) -> Request {
        Request {
            time: 0,
            pod: Arc::from(pod),
            replicaset: Arc::from(rs),
            deployment: Arc::from("llama"),
            namespace: Arc::from("inference"),
            node: Arc::from(node),
            duration,
            queue: duration / 10.0,
            compute: duration * 0.9,
            input_tokens: 100.0,
            output_tokens: 100.0,
            error: false,
        }
    }

    #[test]
    fn old_and_new_replicasets_stand_side_by_side() {
        let before: Vec<Request> = (0..200).map(|i| req("old", "old-a", "n1", 1000.0 + i as f64)).collect();
        let mut after: Vec<Request> = (0..100).map(|i| req("old", "old-a", "n1", 1000.0 + i as f64)).collect();
        after.extend((0..100).map(|i| req("new", &format!("new-{}", i % 3), "n2", 3000.0 + i as f64)));
        let (b, a): (Vec<&Request>, Vec<&Request>) = (before.iter().collect(), after.iter().collect());
        let t = table(&b, &a);
        let rs: Vec<&Row> = t.iter().filter(|r| r.by == "replicaset").collect();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].value, "new", "the slowest first");
        assert_eq!(rs[0].before, None, "the new ReplicaSet served nothing before");
        let new = rs[0].after.as_ref().unwrap();
        assert_eq!((new.requests, new.p99_ms), (100, 3098.0));
        let old = rs[1].before.as_ref().unwrap();
        assert_eq!((old.requests, old.p99_ms, old.queue_p99_ms), (200, 1197.0, 119.7));
        assert_eq!(t.iter().filter(|r| r.by == "node").count(), 2);
        assert_eq!(t.iter().filter(|r| r.by == "pod").count(), 4);
        assert!(table(&[], &[]).is_empty());
    }
}
