//! What the slow requests have in common: for each attribute of a request (pod, node,
//! ReplicaSet, prompt and output length bands, status), the values whose share among the
//! slow tail since the onset differs most from their share before it — Honeycomb's
//! BubbleUp, on the requests explain already reads around the onset.
//!
//! The slow tail is every request after the onset slower than the p99 of the requests
//! before it; the baseline is every request before it. A value is listed when it holds at
//! least [`MIN_SHARE`] of the slow tail and its share there exceeds its baseline share by
//! at least [`MIN_LIFT`]; at most [`MAX_LISTED`], largest difference first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::source::Request;

/// Least share of the slow tail a value must hold to be listed.
pub(crate) const MIN_SHARE: f64 = 0.10;
/// Least difference between its slow and baseline shares.
pub(crate) const MIN_LIFT: f64 = 0.10;
/// Values listed at most.
pub(crate) const MAX_LISTED: usize = 6;
/// A slow tail smaller than this says nothing.
pub(crate) const MIN_SLOW: usize = 20;

/// One value over-represented in the slow tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Common {
    /// `pod`, `node`, `replicaset`, `input_tokens`, `output_tokens`, `status`.
    pub attribute: String,
    /// The value (`llama-70b-x8b7569rl5`, `1k-4k`, `error`).
    pub value: String,
    /// Its share of the slow tail.
    pub slow_share: f64,
    /// Its share of the baseline.
    pub baseline_share: f64,
    /// Slow requests (the tail's size) and baseline requests compared.
    pub of: [usize; 2],
}

/// A token count's band: `<256`, `256-1k`, `1k-4k`, `4k-16k`, `>=16k` (`unknown` at 0).
pub(crate) fn token_band(n: f64) -> &'static str {
    match n {
        n if n <= 0.0 => "unknown",
        n if n < 256.0 => "<256",
        n if n < 1024.0 => "256-1k",
        n if n < 4096.0 => "1k-4k",
        n if n < 16384.0 => "4k-16k",
        _ => ">=16k",
    }
}

type Attr = (&'static str, fn(&Request) -> String);

const ATTRIBUTES: [Attr; 6] = [
    ("replicaset", |r| r.replicaset.to_string()),
    ("pod", |r| r.pod.to_string()),
    ("node", |r| r.node.to_string()),
    ("input_tokens", |r| token_band(r.input_tokens).to_string()),
    ("output_tokens", |r| token_band(r.output_tokens).to_string()),
    ("status", |r| if r.error { "error".into() } else { "ok".into() }),
];

/// The values most over-represented among the slow requests after the onset.
pub(crate) fn common(before: &[&Request], after: &[&Request]) -> Vec<Common> {
    let mut durations: Vec<f64> = before.iter().map(|r| r.duration).collect();
    if durations.len() < 100 {
        return Vec::new();
    }
    durations.sort_by(f64::total_cmp);
    let Some(p99) = crate::stats::quantile_sorted(&durations, 0.99) else { return Vec::new() };
    let slow: Vec<&Request> = after.iter().copied().filter(|r| r.duration > p99).collect();
    if slow.len() < MIN_SLOW {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, value_of) in ATTRIBUTES {
        let share = |rs: &[&Request]| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for r in rs {
                *counts.entry(value_of(r)).or_default() += 1;
            }
            counts
        };
        let (s, b) = (share(&slow), share(before));
        for (value, n) in &s {
            let slow_share = *n as f64 / slow.len() as f64;
            let baseline_share = *b.get(value).unwrap_or(&0) as f64 / before.len() as f64;
            if value.is_empty() || slow_share < MIN_SHARE || slow_share - baseline_share < MIN_LIFT {
                continue;
            }
            out.push(Common {
                attribute: name.to_string(),
                value: value.clone(),
                slow_share: crate::explain::round(slow_share, 3),
                baseline_share: crate::explain::round(baseline_share, 3),
                of: [slow.len(), before.len()],
            });
        }
    }
    out.sort_by(|a, b| {
        (b.slow_share - b.baseline_share)
            .total_cmp(&(a.slow_share - a.baseline_share))
            .then_with(|| a.attribute.cmp(&b.attribute))
            .then_with(|| a.value.cmp(&b.value))
    });
    out.truncate(MAX_LISTED);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn req(pod: &str, node: &str, duration: f64, input: f64) -> Request {
        Request {
            time: 0,
            pod: Arc::from(pod),
            replicaset: Arc::from(pod.rsplit_once('-').map_or(pod, |(rs, _)| rs)),
            deployment: Arc::from("llama"),
            namespace: Arc::from("inference"),
            node: Arc::from(node),
            duration,
            queue: 0.0,
            compute: duration,
            input_tokens: input,
            output_tokens: 100.0,
            error: false,
        }
    }

    #[test]
    fn the_new_replicaset_and_its_node_stand_out_in_the_slow_tail() {
        let mut before = Vec::new();
        for i in 0..2000 {
            let pod = if i % 2 == 0 { "llama-old-a" } else { "llama-old-b" };
            before.push(req(pod, if i % 2 == 0 { "n1" } else { "n2" }, 1000.0 + (i % 100) as f64, 500.0));
        }
        let mut after = Vec::new();
        for i in 0..2000 {
            // Half the traffic on the new pod on n3, all of it slow; the old pods as before.
            let (pod, node, d) = if i % 2 == 0 { ("llama-new-a", "n3", 5000.0) } else { ("llama-old-b", "n2", 1000.0) };
            after.push(req(pod, node, d, 500.0));
        }
        let (b, a): (Vec<&Request>, Vec<&Request>) = (before.iter().collect(), after.iter().collect());
        let found = common(&b, &a);
        let names: Vec<(&str, &str)> = found.iter().map(|c| (c.attribute.as_str(), c.value.as_str())).collect();
        assert_eq!(names, vec![("node", "n3"), ("pod", "llama-new-a"), ("replicaset", "llama-new")], "{found:#?}");
        assert_eq!(found[0].slow_share, 1.0);
        assert_eq!(found[0].baseline_share, 0.0);
        assert_eq!(found[0].of, [1000, 2000]);
        // The prompt band is the same on both sides: not listed.
        assert!(!found.iter().any(|c| c.attribute == "input_tokens"));
    }

    #[test]
    fn nothing_is_listed_without_a_slow_tail_or_a_baseline() {
        let before: Vec<Request> = (0..2000).map(|i| req("p-a", "n1", 1000.0 + i as f64, 10.0)).collect();
        let b: Vec<&Request> = before.iter().collect();
        assert!(common(&b, &b).is_empty(), "the same requests on both sides: nothing stands out");
        assert!(common(&b[..50], &b).is_empty(), "too small a baseline");
        let fast: Vec<Request> = (0..2000).map(|_| req("p-a", "n1", 10.0, 10.0)).collect();
        let f: Vec<&Request> = fast.iter().collect();
        assert!(common(&b, &f).is_empty(), "no request after is slower than the baseline p99");
        assert_eq!(token_band(3000.0), "1k-4k");
        assert_eq!(token_band(0.0), "unknown");
    }
}
