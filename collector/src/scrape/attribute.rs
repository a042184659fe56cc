//! Which pod a sample is about, and how sure that is.
//!
//! A model server's own `/metrics` is about the pod it was scraped from (`target`). A
//! dcgm-exporter's GPU series are not about the exporter's pod: they name the workload
//! pod in `pod`/`namespace`/`container` labels (or `exported_*` after a Prometheus
//! relabel), and those are often empty (the kubelet pod-resources socket is not mounted,
//! the GPU is shared, MIG, NVIDIA/dcgm-exporter #150, #188, #342, #411, #477) or stale (the
//! pod is gone). So the labels are checked against the pods the Kubernetes watch sees, and
//! when they are missing the GPU pods on the node decide:
//!
//! | `attribution`            | meaning                                                          |
//! |--------------------------|------------------------------------------------------------------|
//! | `target`                 | the target is the pod (model server metrics)                     |
//! | `exporter_labels`        | dcgm labels name a pod the watch sees on that node               |
//! | `exporter_labels_unverified` | dcgm labels name a pod; no watch data to check them against  |
//! | `allocation`             | no labels; the only pod holding GPUs on the node                 |
//! | `ambiguous`              | no (or stale) labels; several GPU pods on the node: pod left empty, candidates in `labels` |
//! | `idle`                   | no labels and no GPU pod on the node: the GPU is not allocated   |
//! | `none`                   | no way to tell (no labels, no watch data)                        |

use std::collections::HashMap;

/// A pod holding GPUs, as the Kubernetes watch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPod {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub gpus: i64,
}

/// What the Kubernetes watch knows that attribution needs; empty without a watch.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Whether there is watch data at all (empty maps then mean "nothing there").
    pub known: bool,
    /// GPU pods by node.
    pub gpu_pods: HashMap<String, Vec<GpuPod>>,
}

/// The identity a sample gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub node: String,
    pub attribution: &'static str,
    /// For `ambiguous`: the candidate pods, `ns/pod` comma-separated.
    pub candidates: String,
}

fn label<'a>(labels: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| labels.iter().find(|(k, v)| k == n && !v.is_empty()).map(|(_, v)| v.as_str()))
}

/// The identity of a GPU (dcgm) sample scraped from an exporter on `node` (the exporter's
/// node if known, else the `Hostname` label).
pub fn gpu_sample(labels: &[(String, String)], node: Option<&str>, placement: &Placement) -> Identity {
    let node = node.or_else(|| label(labels, &["Hostname", "hostname", "node"])).unwrap_or("").to_string();
    let named_pod = label(labels, &["exported_pod", "pod"]);
    let named_ns = label(labels, &["exported_namespace", "namespace"]);
    let named_container = label(labels, &["exported_container", "container"]);
    let on_node = placement.gpu_pods.get(&node).map(Vec::as_slice).unwrap_or_default();
    if let Some(pod) = named_pod {
        let ns = named_ns.unwrap_or("");
        if !placement.known {
            return Identity {
                namespace: ns.into(),
                pod: pod.into(),
                container: named_container.unwrap_or("").into(),
                node,
                attribution: "exporter_labels_unverified",
                candidates: String::new(),
            };
        }
        if on_node.iter().any(|p| p.pod == pod && (ns.is_empty() || p.namespace == ns)) {
            return Identity {
                namespace: ns.into(),
                pod: pod.into(),
                container: named_container.unwrap_or("").into(),
                node,
                attribution: "exporter_labels",
                candidates: String::new(),
            };
        }
        // Stale or wrong labels: fall through to allocation.
    }
    if !placement.known {
        return Identity { node, attribution: "none", ..Identity::default() };
    }
    match on_node {
        [] => Identity { node, attribution: "idle", ..Identity::default() },
        [only] => Identity {
            namespace: only.namespace.clone(),
            pod: only.pod.clone(),
            container: only.container.clone().unwrap_or_default(),
            node,
            attribution: "allocation",
            candidates: String::new(),
        },
        many => Identity {
            node,
            attribution: "ambiguous",
            candidates: many.iter().map(|p| format!("{}/{}", p.namespace, p.pod)).collect::<Vec<_>>().join(","),
            ..Identity::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn placement(pods: &[(&str, &str)]) -> Placement {
        let mut p = Placement { known: true, ..Placement::default() };
        for (node, pod) in pods {
            p.gpu_pods.entry(node.to_string()).or_default().push(GpuPod {
                namespace: "ml".into(),
                pod: pod.to_string(),
                container: Some("vllm".into()),
                gpus: 1,
            });
        }
        p
    }

    #[test]
    fn labels_are_checked_and_allocation_fills_in() {
        let with = l(&[("gpu", "0"), ("Hostname", "n1"), ("namespace", "ml"), ("pod", "a"), ("container", "vllm")]);
        let without = l(&[("gpu", "1"), ("Hostname", "n1"), ("namespace", ""), ("pod", "")]);
        let one = placement(&[("n1", "a")]);
        let id = gpu_sample(&with, None, &one);
        assert_eq!((id.pod.as_str(), id.node.as_str(), id.attribution), ("a", "n1", "exporter_labels"));
        let id = gpu_sample(&without, None, &one);
        assert_eq!((id.pod.as_str(), id.attribution), ("a", "allocation"));
        // Stale label: the named pod is not on the node any more.
        let moved = placement(&[("n1", "b"), ("n1", "c")]);
        let id = gpu_sample(&with, None, &moved);
        assert_eq!((id.pod.as_str(), id.attribution, id.candidates.as_str()), ("", "ambiguous", "ml/b,ml/c"));
        assert_eq!(gpu_sample(&without, Some("n2"), &one).attribution, "idle");
        assert_eq!(gpu_sample(&without, None, &Placement::default()).attribution, "none");
        assert_eq!(gpu_sample(&with, None, &Placement::default()).attribution, "exporter_labels_unverified");
        // A Prometheus relabel's exported_* names win over the exporter's own pod.
        let relabeled =
            l(&[("Hostname", "n1"), ("pod", "dcgm-exporter-x"), ("exported_pod", "a"), ("exported_namespace", "ml")]);
        assert_eq!(gpu_sample(&relabeled, None, &one).attribution, "exporter_labels");
    }
}
