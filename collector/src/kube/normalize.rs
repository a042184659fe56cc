//! Events -> changes. Each rule names the controller message it parses; the
//! formats are Kubernetes' own (`New size: 4; reason: All metrics below
//! target`, `Scaled up replica set X from 1 to 3`, `0/3 nodes are available:
//! 2 Insufficient nvidia.com/gpu. ...`), checked against real captures in the
//! tests.

use serde::Serialize;
use serde_json::Value;

/// The cause taxonomy (the `changes.kind` values of the README's "Tables").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Deploy,
    ScaleUp,
    ScaleDown,
    ColdStart,
    NodeLost,
    NodeAdded,
    GpuThrottle,
    OomKill,
    Eviction,
    SchedulingFailure,
    TrafficSurge,
    WorkloadShift,
    None,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::ScaleUp => "scale_up",
            ChangeKind::ScaleDown => "scale_down",
            ChangeKind::ColdStart => "cold_start",
            ChangeKind::NodeLost => "node_lost",
            ChangeKind::NodeAdded => "node_added",
            ChangeKind::GpuThrottle => "gpu_throttle",
            ChangeKind::OomKill => "oom_kill",
            ChangeKind::Eviction => "eviction",
            ChangeKind::SchedulingFailure => "scheduling_failure",
            ChangeKind::TrafficSurge => "traffic_surge",
            ChangeKind::WorkloadShift => "workload_shift",
            ChangeKind::None => "none",
        }
    }
}

/// One normalized change: a row of the `changes` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Data time (the event's last occurrence), ns since the epoch.
    pub time_unix_nano: i64,
    pub kind: ChangeKind,
    pub namespace: String,
    pub object_kind: String,
    pub object: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: String,
    pub message: String,
    /// The reporting component (`horizontal-pod-autoscaler`, `kubelet`, ...).
    pub source: String,
    /// The Event's uid and count: together they identify an occurrence (dedupe key).
    pub uid: String,
    pub count: u64,
}

pub(crate) fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|x| !x.is_empty())
}

pub(crate) fn ts(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok()?.timestamp_nanos_opt()
}

/// The number after `word ` in `text` (`"from 1 to 3"`, `"from"` -> 1).
fn number_after(text: &str, word: &str) -> Option<u64> {
    let i = text.find(&format!("{word} "))? + word.len() + 1;
    let digits: String = text[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// What [`classify`] found: the kind, the object when it is not the event's own
/// (`replicaset/...` for a Deployment's scaling), and from/to.
pub type Classified = (ChangeKind, Option<String>, Option<String>, Option<String>);

/// What an event means, from the object kind, reason and message; None if it is
/// not a change the analyzer weighs. Returns (kind, object override, from, to).
pub fn classify(object_kind: &str, reason: &str, message: &str) -> Option<Classified> {
    let lower = message.to_ascii_lowercase();
    match (object_kind, reason) {
        // horizontal-pod-autoscaler: "New size: 4; reason: All metrics below target"
        ("HorizontalPodAutoscaler", "SuccessfulRescale") => {
            let to = number_after(message, "New size:").map(|n| n.to_string());
            let why = message.split("reason:").nth(1).unwrap_or("").trim().to_ascii_lowercase();
            let kind = if why.contains("below target") || why.contains("above spec.maxreplicas") {
                ChangeKind::ScaleDown
            } else {
                ChangeKind::ScaleUp
            };
            Some((kind, None, None, to))
        }
        // deployment-controller: "Scaled up replica set web-5d9c7b from 1 to 3" (1.30+) or "... to 3"
        ("Deployment", "ScalingReplicaSet") => {
            let up = lower.starts_with("scaled up");
            let rs = message.split("replica set ").nth(1)?.split_whitespace().next()?.to_string();
            let to = number_after(message, "to").map(|n| n.to_string());
            let from =
                if message.contains(" from ") { number_after(message, "from").map(|n| n.to_string()) } else { None };
            let kind = if up { ChangeKind::ScaleUp } else { ChangeKind::ScaleDown };
            Some((kind, Some(format!("replicaset/{rs}")), from, to))
        }
        // default-scheduler: "0/3 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: ..."
        ("Pod", "FailedScheduling") => Some((ChangeKind::SchedulingFailure, None, None, None)),
        // node-problem-detector / kernel monitor
        (_, "OOMKilling") => Some((ChangeKind::OomKill, None, None, None)),
        ("Pod", "Evicted" | "TaintManagerEviction" | "Preempted" | "Preempting") => {
            Some((ChangeKind::Eviction, None, None, None))
        }
        ("Pod", "Pulling") => Some((ChangeKind::ColdStart, None, None, None)),
        ("Pod", "TriggeredScaleUp") => {
            // cluster-autoscaler: "pod triggered scale-up: [{pool 2->3 (max: 8)}]"
            let inner = message.split('{').nth(1).and_then(|x| x.split('}').next()).unwrap_or("");
            let arrow = inner.split_whitespace().find(|w| w.contains("->"));
            let (from, to) = match arrow.and_then(|a| a.split_once("->")) {
                Some((f, t)) => (Some(f.to_string()), Some(t.to_string())),
                None => (None, None),
            };
            let pool = inner.split_whitespace().next().map(|p| format!("nodepool/{p}"));
            Some((ChangeKind::NodeAdded, pool, from, to))
        }
        ("Node", "NodeNotReady" | "RemovingNode" | "NodeShutdown") => Some((ChangeKind::NodeLost, None, None, None)),
        ("Node", "RegisteredNode") => Some((ChangeKind::NodeAdded, None, None, None)),
        ("Node", _) if lower.contains("xid") => Some((ChangeKind::GpuThrottle, None, None, None)),
        _ => None,
    }
}

/// The `kind/` prefix of `changes.object` for a Kubernetes kind: `hpa` for
/// HorizontalPodAutoscaler (as people write it), the lower-case kind otherwise.
pub fn object_prefix(kind: &str) -> String {
    match kind {
        "HorizontalPodAutoscaler" => "hpa".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

/// A core/v1 or events.k8s.io/v1 Event as a change; Ok(None) when it is not one.
/// Err names what is missing.
pub fn from_event(ev: &Value) -> Result<Option<Change>, String> {
    let core = ev.get("involvedObject").is_some();
    let regarding = if core { ev.get("involvedObject") } else { ev.get("regarding") };
    let regarding = regarding.ok_or("event has neither involvedObject nor regarding")?;
    let object_kind = s(regarding, &["kind"]).ok_or("event object has no kind")?;
    let name = s(regarding, &["name"]).ok_or("event object has no name")?;
    let reason = s(ev, &["reason"]).unwrap_or("");
    let message = if core { s(ev, &["message"]) } else { s(ev, &["note"]) }.unwrap_or("");
    let Some((kind, object, from, to)) = classify(object_kind, reason, message) else { return Ok(None) };
    // core/v1: lastTimestamp (the recorder's aggregate), then the newer fields;
    // events.k8s.io/v1: the series' last observation, then eventTime, then the deprecated copies.
    let order: &[&[&str]] = if core {
        &[
            &["lastTimestamp"],
            &["series", "lastObservedTime"],
            &["eventTime"],
            &["firstTimestamp"],
            &["metadata", "creationTimestamp"],
        ]
    } else {
        &[
            &["series", "lastObservedTime"],
            &["eventTime"],
            &["deprecatedLastTimestamp"],
            &["metadata", "creationTimestamp"],
        ]
    };
    let time = order.iter().filter_map(|p| s(ev, p)).find_map(ts).ok_or("event has no valid timestamp")?;
    let source = if core {
        s(ev, &["source", "component"]).or_else(|| s(ev, &["reportingComponent"]))
    } else {
        s(ev, &["reportingController"]).or_else(|| s(ev, &["deprecatedSource", "component"]))
    }
    .unwrap_or("");
    let series = ev.get("series").and_then(|x| x.get("count")).and_then(Value::as_u64);
    let count = if core {
        ev.get("count").and_then(Value::as_u64).or(series)
    } else {
        series.or_else(|| ev.get("deprecatedCount").and_then(Value::as_u64))
    }
    .unwrap_or(1);
    let namespace = s(regarding, &["namespace"]).or_else(|| s(ev, &["metadata", "namespace"])).unwrap_or("");
    Ok(Some(Change {
        time_unix_nano: time,
        kind,
        namespace: namespace.to_string(),
        object_kind: object_kind.to_string(),
        object: object.unwrap_or_else(|| format!("{}/{name}", object_prefix(object_kind))),
        from,
        to,
        reason: reason.to_string(),
        message: message.to_string(),
        source: source.to_string(),
        uid: s(ev, &["metadata", "uid"]).unwrap_or("").to_string(),
        count,
    }))
}

/// The Deployment a ReplicaSet belongs to: its name minus the pod-template hash.
fn deployment_of(replicaset: &str) -> Option<&str> {
    let rs = replicaset.strip_prefix("replicaset/")?;
    rs.rsplit_once('-').map(|(d, _)| d)
}

/// Rollouts among ReplicaSet scalings (sorted by time): a scale-up of one ReplicaSet of a
/// Deployment followed, within `window_ns`, by a scale-down of another ReplicaSet of the same
/// Deployment is a `deploy` from the old ReplicaSet to the new one, at the scale-up's time.
pub fn rollouts(changes: &[Change], window_ns: i64) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for (i, up) in changes.iter().enumerate() {
        if up.kind != ChangeKind::ScaleUp || up.object_kind != "Deployment" {
            continue;
        }
        let Some(dep) = deployment_of(&up.object) else { continue };
        let down = changes[i + 1..].iter().find(|c| {
            c.kind == ChangeKind::ScaleDown
                && c.namespace == up.namespace
                && c.object != up.object
                && deployment_of(&c.object) == Some(dep)
                && c.time_unix_nano - up.time_unix_nano <= window_ns
        });
        let Some(down) = down else { continue };
        let already =
            out.iter().any(|d| d.namespace == up.namespace && d.to.as_deref() == up.object.strip_prefix("replicaset/"));
        if already {
            continue;
        }
        out.push(Change {
            kind: ChangeKind::Deploy,
            object: format!("deployment/{dep}"),
            from: down.object.strip_prefix("replicaset/").map(str::to_string),
            to: up.object.strip_prefix("replicaset/").map(str::to_string),
            reason: "Rollout".into(),
            message: format!("rollout: {} scaled up, {} scaled down", up.object, down.object),
            ..up.clone()
        });
    }
    out
}

#[cfg(test)]
mod tests;
