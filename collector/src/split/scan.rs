//! What a request row reads from its request span's attributes and its resource, found in
//! one pass over each rather than one search per key: a vLLM span carries ~18 attributes
//! and a row reads ~20 keys, most of which a span does not have (GPU ids, the alternate
//! names of token counts), so a search per key read every attribute ~30 times.
//!
//! Each key keeps the first attribute of that name, as a search would find it.

use crate::config::LatencyAttribute;

/// The Kubernetes keys a row's identity comes from: slots 0 to 4.
#[cfg(test)]
const K8S: [&str; 5] =
    ["k8s.namespace.name", "k8s.deployment.name", "k8s.replicaset.name", "k8s.pod.name", "k8s.node.name"];
/// A GPU's id, the first of these present: slots 5 to 8.
pub(super) const GPU_KEYS: [&str; 4] = ["gpu.uuid", "nvidia.gpu.uuid", "k8s.gpu.uuid", "gpu.id"];
/// The model, the response's before the request's: slots 9 and 10.
pub(super) const MODEL: [&str; 2] = ["gen_ai.response.model", "gen_ai.request.model"];
/// The operation: slot 11.
pub(super) const OPERATION: usize = 11;
/// HTTP status codes, current and older convention: slots 12 and 13.
pub(super) const HTTP_STATUS: [&str; 2] = ["http.response.status_code", "http.status_code"];
/// Token counts, current and older convention: slots 14 and 15 (input), 16 and 17 (output).
pub(super) const INPUT_TOKENS: [&str; 2] = ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
#[cfg(test)]
const OUTPUT_TOKENS: [&str; 2] = ["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"];

const SLOTS: usize = 18;
pub(super) const K8S_AT: usize = 0;
pub(super) const GPU_AT: usize = 5;
pub(super) const MODEL_AT: usize = 9;
pub(super) const HTTP_AT: usize = 12;
pub(super) const INPUT_AT: usize = 14;
pub(super) const OUTPUT_AT: usize = 16;

/// The slot of a key a row reads.
fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "k8s.namespace.name" => 0,
        "k8s.deployment.name" => 1,
        "k8s.replicaset.name" => 2,
        "k8s.pod.name" => 3,
        "k8s.node.name" => 4,
        "gpu.uuid" => 5,
        "nvidia.gpu.uuid" => 6,
        "k8s.gpu.uuid" => 7,
        "gpu.id" => 8,
        "gen_ai.response.model" => 9,
        "gen_ai.request.model" => 10,
        "gen_ai.operation.name" => 11,
        "http.response.status_code" => 12,
        "http.status_code" => 13,
        "gen_ai.usage.input_tokens" => 14,
        "gen_ai.usage.prompt_tokens" => 15,
        "gen_ai.usage.output_tokens" => 16,
        "gen_ai.usage.completion_tokens" => 17,
        _ => return None,
    })
}

/// Latency attributes whose values a scan keeps (more configured are searched for).
const MAX_LATENCY: usize = 8;

/// The configured latency attributes, as a scan looks for them.
#[derive(Debug, Clone)]
pub(super) struct LatencyNames {
    names: Vec<String>,
    /// For each configured attribute, the index of the first configured with its name.
    first: Vec<usize>,
}

impl LatencyNames {
    pub(super) fn new(attributes: &[LatencyAttribute]) -> LatencyNames {
        let names: Vec<String> = attributes.iter().map(|a| a.name.clone()).collect();
        let first = names.iter().map(|n| names.iter().position(|m| m == n).unwrap_or(0)).collect();
        LatencyNames { names, first }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.names.iter().position(|n| n == key)
    }
}

/// The keys a row reads, found in one pass over some attributes.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Found<'a> {
    values: [Option<&'a str>; SLOTS],
}

impl<'a> Found<'a> {
    /// The keys among `attributes`.
    pub(super) fn of<'k>(attributes: impl IntoIterator<Item = (&'k str, &'a str)>) -> Found<'a> {
        let mut f = Found::default();
        for (k, v) in attributes {
            if let Some(s) = slot(k) {
                f.values[s].get_or_insert(v);
            }
        }
        f
    }

    /// The value of slot `s`.
    pub(super) fn get(&self, s: usize) -> Option<&'a str> {
        self.values[s]
    }
}

/// A request span's attributes, scanned once: the keys a row reads, the configured latency
/// attributes' values, and which attributes are latency attributes.
#[derive(Debug)]
pub(super) struct SpanScan<'a> {
    pub(super) found: Found<'a>,
    latency: [Option<&'a str>; MAX_LATENCY],
    /// Bit `i`: the span's attribute `i` (of the first 64) is a configured latency attribute.
    latency_mask: u64,
}

impl<'a> SpanScan<'a> {
    pub(super) fn of(attributes: &[(&str, &'a str)], names: &LatencyNames) -> SpanScan<'a> {
        let mut found = Found::default();
        let mut latency = [None; MAX_LATENCY];
        let mut latency_mask = 0u64;
        for (i, &(k, v)) in attributes.iter().enumerate() {
            if let Some(s) = slot(k) {
                found.values[s].get_or_insert(v);
            }
            if let Some(j) = names.position(k) {
                if i < 64 {
                    latency_mask |= 1 << i;
                }
                if j < MAX_LATENCY {
                    latency[j].get_or_insert(v);
                }
            }
        }
        SpanScan { found, latency, latency_mask }
    }

    /// The value of configured latency attribute `j` on the span (`attributes`, the span's,
    /// searched when more are configured than a scan keeps).
    pub(super) fn latency(&self, j: usize, names: &LatencyNames, attributes: &[(&str, &'a str)]) -> Option<&'a str> {
        let first = names.first[j];
        if first < MAX_LATENCY {
            return self.latency[first];
        }
        let name = names.names[j].as_str();
        attributes.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Whether the span's attribute `i` (named `key`) is a configured latency attribute.
    pub(super) fn is_latency(&self, i: usize, key: &str, names: &LatencyNames) -> bool {
        if i < 64 { self.latency_mask & (1 << i) != 0 } else { names.position(key).is_some() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SplitConfig;

    #[test]
    fn every_key_has_its_slot() {
        let at = |keys: &[&str], first: usize| {
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(slot(k), Some(first + i), "{k}");
            }
        };
        at(&K8S, K8S_AT);
        at(&GPU_KEYS, GPU_AT);
        at(&MODEL, MODEL_AT);
        at(&["gen_ai.operation.name"], OPERATION);
        at(&HTTP_STATUS, HTTP_AT);
        at(&INPUT_TOKENS, INPUT_AT);
        at(&OUTPUT_TOKENS, OUTPUT_AT);
        assert_eq!(OUTPUT_AT + 2, SLOTS);
    }

    #[test]
    fn a_scan_finds_what_a_search_would() {
        let names = LatencyNames::new(&SplitConfig::default().attributes);
        let attrs = [
            ("k8s.pod.name", "p1"),
            ("gen_ai.latency.time_in_queue", "0.5"),
            ("k8s.pod.name", "p2"),
            ("http.route", "/v1"),
            ("gen_ai.latency.time_in_queue", "0.9"),
        ];
        let scan = SpanScan::of(&attrs, &names);
        assert_eq!(scan.found.get(K8S_AT + 3), Some("p1"), "the first of a name");
        assert_eq!(scan.found.get(GPU_AT), None);
        assert_eq!(scan.latency(0, &names, &attrs), Some("0.5"));
        assert_eq!(scan.latency(1, &names, &attrs), None);
        let marked: Vec<bool> = attrs.iter().enumerate().map(|(i, (k, _))| scan.is_latency(i, k, &names)).collect();
        assert_eq!(marked, [false, true, false, false, true]);
        // More latency attributes configured than a scan keeps, one named twice.
        let mut many = SplitConfig::default().attributes;
        for i in 0..MAX_LATENCY {
            let mut a = many[0].clone();
            a.name = format!("x.{i}");
            many.insert(0, a);
        }
        many.push(many[MAX_LATENCY].clone());
        let names = LatencyNames::new(&many);
        let scan = SpanScan::of(&attrs, &names);
        assert_eq!(scan.latency(MAX_LATENCY, &names, &attrs), Some("0.5"), "searched");
        assert_eq!(scan.latency(many.len() - 1, &names, &attrs), Some("0.5"), "named twice");
        assert!(scan.is_latency(4, "gen_ai.latency.time_in_queue", &names));
    }
}
