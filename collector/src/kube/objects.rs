//! What the watcher keeps of each watched object: a small summary with only the fields
//! that changes are computed from, so that memory per object stays in the hundreds of
//! bytes and the baseline can be saved and restored across restarts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::normalize::{s, ts};

/// The object kinds the watcher diffs (Events are handled apart: they are changes
/// already, not state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Watched {
    Deployment,
    ReplicaSet,
    HorizontalPodAutoscaler,
    Node,
    Pod,
    /// KEDA's ScaledObject (a CRD: watched only where it is installed).
    ScaledObject,
}

impl Watched {
    /// Every kind, in the order the watcher starts them.
    pub const ALL: [Watched; 6] = [
        Watched::Node,
        Watched::Deployment,
        Watched::ReplicaSet,
        Watched::HorizontalPodAutoscaler,
        Watched::Pod,
        Watched::ScaledObject,
    ];

    /// The Kubernetes `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Watched::Deployment => "Deployment",
            Watched::ReplicaSet => "ReplicaSet",
            Watched::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Watched::Node => "Node",
            Watched::Pod => "Pod",
            Watched::ScaledObject => "ScaledObject",
        }
    }

    /// The kind of an object's `kind` field, if watched.
    pub fn from_kind(kind: &str) -> Option<Watched> {
        Watched::ALL.into_iter().find(|w| w.kind() == kind)
    }

    /// API group, version and plural, for list/watch URLs and RBAC.
    pub fn api(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Watched::Deployment => ("apps", "v1", "deployments"),
            Watched::ReplicaSet => ("apps", "v1", "replicasets"),
            Watched::HorizontalPodAutoscaler => ("autoscaling", "v2", "horizontalpodautoscalers"),
            Watched::Node => ("", "v1", "nodes"),
            Watched::Pod => ("", "v1", "pods"),
            Watched::ScaledObject => ("keda.sh", "v1alpha1", "scaledobjects"),
        }
    }
}

/// Identity shared by every summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `metadata.creationTimestamp`, ns.
    pub created: i64,
}

/// A summary of one watched object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Summary {
    Deployment {
        meta: Meta,
        replicas: i64,
        generation: i64,
        /// Rollout progress: `status.updatedReplicas`, `readyReplicas`, `availableReplicas`.
        #[serde(default)]
        progress: (i64, i64, i64),
    },
    ReplicaSet(ReplicaSetSummary),
    Hpa(HpaSummary),
    Node(NodeSummary),
    Pod(PodSummary),
    ScaledObject(ScaledObjectSummary),
}

/// A KEDA ScaledObject: whether its triggers are active (KEDA scales 0 <-> min itself;
/// beyond that its `keda-hpa-<name>` HPA does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaledObjectSummary {
    pub meta: Meta,
    /// `spec.scaleTargetRef.name`.
    pub target: String,
    /// The `Active` condition: `True`, `False` or `Unknown`.
    pub active: String,
    /// When `Active` last changed, ns.
    pub active_since: Option<i64>,
    /// `spec.minReplicaCount` (KEDA's default 0).
    pub min: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetSummary {
    pub meta: Meta,
    /// The owning Deployment's name.
    pub deployment: Option<String>,
    pub hash: String,
    /// `deployment.kubernetes.io/revision`.
    pub revision: i64,
    pub image: String,
    pub model: Option<String>,
    pub replicas: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HpaSummary {
    pub meta: Meta,
    /// `spec.scaleTargetRef.name` (a Deployment, usually).
    pub target: String,
    pub desired: i64,
    pub current: i64,
    pub min: i64,
    pub max: i64,
    /// `status.lastScaleTime`, ns.
    pub last_scale: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    pub meta: Meta,
    /// The `Ready` condition's status: `True`, `False` or `Unknown`.
    pub ready: String,
    /// When `Ready` last changed, ns.
    pub ready_since: Option<i64>,
    /// Allocatable `nvidia.com/gpu`.
    pub gpus: i64,
    /// How many times `gpus` changed while watched (part of those changes' keys).
    #[serde(default)]
    pub gpu_changes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSummary {
    pub meta: Meta,
    pub node: Option<String>,
    pub replicaset: Option<String>,
    pub deployment: Option<String>,
    /// `nvidia.com/gpu` limits summed over containers.
    pub gpus: i64,
    /// The GPU-using container (first one with a GPU limit), for attribution.
    pub gpu_container: Option<String>,
    pub ready: bool,
    /// When `Ready` last changed, ns.
    pub ready_since: Option<i64>,
    /// Container terminations by the OOM killer: (container, finishedAt ns, restartCount).
    pub ooms: Vec<(String, i64, i64)>,
    pub phase: String,
    /// `status.podIP`.
    #[serde(default)]
    pub ip: Option<String>,
    /// Where its metrics are: (scheme, port, path), from the `prometheus.io/*` annotations
    /// or, for dcgm-exporter and vLLM pods without them, their default ports.
    #[serde(default)]
    pub scrape: Option<(String, u16, String)>,
}

fn i(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_i64().or_else(|| cur.as_str().and_then(|x| x.parse().ok()))
}

fn meta(obj: &Value) -> Result<Meta, String> {
    let uid = s(obj, &["metadata", "uid"]).ok_or("object has no metadata.uid")?;
    let name = s(obj, &["metadata", "name"]).ok_or("object has no metadata.name")?;
    Ok(Meta {
        uid: uid.to_string(),
        namespace: s(obj, &["metadata", "namespace"]).unwrap_or("").to_string(),
        name: name.to_string(),
        created: s(obj, &["metadata", "creationTimestamp"]).and_then(ts).unwrap_or(0),
    })
}

fn owner<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find_map(|o| (o.get("kind")?.as_str()? == kind).then(|| o.get("name")?.as_str()).flatten())
}

/// The model a container serves: `--model X`, `--model=X`, or vLLM's positional
/// `serve X`.
fn model_of(container: &Value) -> Option<String> {
    let args: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| container.get(k)?.as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (n, a) in args.iter().enumerate() {
        if let Some(m) = a.strip_prefix("--model=") {
            return Some(m.to_string());
        }
        if (*a == "--model" || *a == "serve") && n + 1 < args.len() && !args[n + 1].starts_with('-') {
            return Some(args[n + 1].to_string());
        }
    }
    None
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn gpu_limit(container: &Value) -> i64 {
    ["limits", "requests"].iter().filter_map(|k| i(container, &["resources", k, "nvidia.com/gpu"])).next().unwrap_or(0)
}

/// Where a pod's metrics are, if it should be scraped.
fn scrape_hint(obj: &Value, containers: &[Value]) -> Option<(String, u16, String)> {
    let ann = |k: &str| s(obj, &["metadata", "annotations", k]);
    let label = |k: &str| s(obj, &["metadata", "labels", k]);
    let first_port = || {
        containers.iter().filter_map(|c| c.get("ports")?.as_array()).flatten().find_map(|p| i(p, &["containerPort"]))
    };
    let scheme = ann("prometheus.io/scheme").unwrap_or("http").to_string();
    let path = ann("prometheus.io/path").unwrap_or("/metrics").to_string();
    match ann("prometheus.io/scrape") {
        Some("false") => return None,
        Some("true") => {
            let port = ann("prometheus.io/port").and_then(|p| p.parse().ok()).or_else(first_port)?;
            return Some((scheme, u16::try_from(port).ok()?, path));
        }
        _ => {}
    }
    let dcgm = label("app") == Some("nvidia-dcgm-exporter") || label("app.kubernetes.io/name") == Some("dcgm-exporter");
    let vllm = label("app.kubernetes.io/name") == Some("vllm");
    let default = if dcgm {
        9400
    } else if vllm {
        8000
    } else {
        return None;
    };
    Some((scheme, u16::try_from(first_port().unwrap_or(default)).ok()?, path))
}

impl Summary {
    /// Summarizes an object of a watched kind; Err names what is missing.
    pub fn of(kind: Watched, obj: &Value) -> Result<Summary, String> {
        let meta = meta(obj)?;
        Ok(match kind {
            Watched::Deployment => Summary::Deployment {
                meta,
                replicas: i(obj, &["spec", "replicas"]).unwrap_or(1),
                generation: i(obj, &["metadata", "generation"]).unwrap_or(0),
                progress: (
                    i(obj, &["status", "updatedReplicas"]).unwrap_or(0),
                    i(obj, &["status", "readyReplicas"]).unwrap_or(0),
                    i(obj, &["status", "availableReplicas"]).unwrap_or(0),
                ),
            },
            Watched::ReplicaSet => {
                let container = obj.pointer("/spec/template/spec/containers/0");
                Summary::ReplicaSet(ReplicaSetSummary {
                    deployment: owner(obj, "Deployment").map(str::to_string),
                    hash: s(obj, &["metadata", "labels", "pod-template-hash"]).unwrap_or("").to_string(),
                    revision: i(obj, &["metadata", "annotations", "deployment.kubernetes.io/revision"]).unwrap_or(0),
                    image: container.and_then(|c| s(c, &["image"])).unwrap_or("").to_string(),
                    model: container.and_then(model_of),
                    replicas: i(obj, &["spec", "replicas"]).unwrap_or(0),
                    meta,
                })
            }
            Watched::HorizontalPodAutoscaler => Summary::Hpa(HpaSummary {
                target: s(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or("").to_string(),
                desired: i(obj, &["status", "desiredReplicas"]).unwrap_or(0),
                current: i(obj, &["status", "currentReplicas"]).unwrap_or(0),
                min: i(obj, &["spec", "minReplicas"]).unwrap_or(1),
                max: i(obj, &["spec", "maxReplicas"]).unwrap_or(0),
                last_scale: s(obj, &["status", "lastScaleTime"]).and_then(ts),
                meta,
            }),
            Watched::Node => {
                let ready = condition(obj, "Ready");
                Summary::Node(NodeSummary {
                    ready: ready.and_then(|c| s(c, &["status"])).unwrap_or("Unknown").to_string(),
                    ready_since: ready.and_then(|c| s(c, &["lastTransitionTime"])).and_then(ts),
                    gpus: i(obj, &["status", "allocatable", "nvidia.com/gpu"]).unwrap_or(0),
                    gpu_changes: 0,
                    meta,
                })
            }
            Watched::ScaledObject => {
                let active = condition(obj, "Active");
                Summary::ScaledObject(ScaledObjectSummary {
                    target: s(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or("").to_string(),
                    active: active.and_then(|c| s(c, &["status"])).unwrap_or("Unknown").to_string(),
                    active_since: active.and_then(|c| s(c, &["lastTransitionTime"])).and_then(ts),
                    min: i(obj, &["spec", "minReplicaCount"]).unwrap_or(0),
                    meta,
                })
            }
            Watched::Pod => {
                let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
                let containers = containers.map(Vec::as_slice).unwrap_or_default();
                let gpu_container = containers.iter().find(|c| gpu_limit(c) > 0);
                let ready = condition(obj, "Ready");
                let mut ooms = Vec::new();
                let statuses = obj.pointer("/status/containerStatuses").and_then(Value::as_array);
                for st in statuses.map(Vec::as_slice).unwrap_or_default() {
                    let name = s(st, &["name"]).unwrap_or("");
                    for state in ["lastState", "state"] {
                        let Some(t) = st.get(state).and_then(|x| x.get("terminated")) else { continue };
                        if s(t, &["reason"]) == Some("OOMKilled") {
                            let at = s(t, &["finishedAt"]).and_then(ts).unwrap_or(0);
                            ooms.push((name.to_string(), at, i(st, &["restartCount"]).unwrap_or(0)));
                        }
                    }
                }
                ooms.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
                let replicaset = owner(obj, "ReplicaSet").map(str::to_string);
                let hash = s(obj, &["metadata", "labels", "pod-template-hash"]);
                let deployment = match (&replicaset, hash) {
                    (Some(rs), Some(h)) => rs.strip_suffix(&format!("-{h}")).map(str::to_string),
                    _ => None,
                };
                Summary::Pod(PodSummary {
                    node: s(obj, &["spec", "nodeName"]).map(str::to_string),
                    replicaset,
                    deployment,
                    gpus: containers.iter().map(gpu_limit).sum(),
                    gpu_container: gpu_container.and_then(|c| s(c, &["name"])).map(str::to_string),
                    ready: ready.and_then(|c| s(c, &["status"])) == Some("True"),
                    ready_since: ready.and_then(|c| s(c, &["lastTransitionTime"])).and_then(ts),
                    ooms,
                    phase: s(obj, &["status", "phase"]).unwrap_or("").to_string(),
                    ip: s(obj, &["status", "podIP"]).map(str::to_string),
                    scrape: scrape_hint(obj, containers),
                    meta,
                })
            }
        })
    }

    /// The identity of the summarized object.
    pub fn meta(&self) -> &Meta {
        match self {
            Summary::Deployment { meta, .. } => meta,
            Summary::ReplicaSet(r) => &r.meta,
            Summary::Hpa(h) => &h.meta,
            Summary::Node(n) => &n.meta,
            Summary::Pod(p) => &p.meta,
            Summary::ScaledObject(o) => &o.meta,
        }
    }
}
