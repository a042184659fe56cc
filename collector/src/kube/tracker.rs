//! Watched objects and Events -> changes, exactly once.
//!
//! The tracker keeps a [`Summary`] of every watched object (the baseline) and turns each
//! update into the changes it means: a new ReplicaSet of a Deployment is a rollout, an
//! HPA's `desiredReplicas` moving is a scale, a Node's `Ready` going `Unknown` is a node
//! loss, a container's `OOMKilled` termination is an OOM kill, a pod turning ready ends a
//! cold start. Every change gets a key derived from the object's own state (uid plus a
//! timestamp or revision), so recomputing it after a restart or a relist yields the same
//! key and the watcher stores it once.
//!
//! One fact, one row: an HPA rescale is seen three times (the HPA's status, its
//! `SuccessfulRescale` Event, the Deployment's `spec.replicas`). The HPA change is held
//! briefly to take the Event's reason; the Deployment's scale is dropped when an HPA
//! made it. Events about what the watched objects already show (`ScalingReplicaSet`,
//! `NodeNotReady`, ...) are not stored twice once those objects are watched; Events from
//! before the watch began are kept, whatever their age.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slo_store::{Attr, ChangeRecord, SampleRecord};

use super::normalize::{Change, ChangeKind, from_event};
use super::objects::{NodeSummary, PodSummary, ReplicaSetSummary, ScaledObjectSummary, Summary, Watched};

const SEC: i64 = 1_000_000_000;
/// How long an HPA change waits for its `SuccessfulRescale` Event (for the reason), and a
/// Deployment scale for the HPA change that explains it.
pub const HOLD_NS: i64 = 5 * SEC;
/// How long a `SuccessfulRescale` Event waits for the HPA status that it belongs to.
const STASH_NS: i64 = 30 * SEC;
/// Facts with their own timestamps found on the first list (rollouts, cold starts) are
/// reported back this far: as long as the API server keeps Events.
pub const LOOKBACK_NS: i64 = 3600 * SEC;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum HeldFor {
    /// An HPA change waiting for the Event's reason.
    Reason { namespace: String, hpa: String, to: String },
    /// A Deployment scale, dropped if an HPA scaled it.
    Hpa { namespace: String, deployment: String, to: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Held {
    change: ChangeRecord,
    until: i64,
    what: HeldFor,
}

/// A `SuccessfulRescale` Event not yet matched to an HPA change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stashed {
    change: ChangeRecord,
    until: i64,
}

/// What survives a restart: the baseline, when each kind was first listed, and what is
/// being held.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerState {
    objects: BTreeMap<String, Summary>,
    since: BTreeMap<Watched, i64>,
    held: Vec<Held>,
    stashed: Vec<Stashed>,
    /// HPA changes of the last minute: (namespace, deployment, to, time).
    recent_hpa: Vec<(String, String, String, i64)>,
    /// Keys of Events merged into HPA changes in the last two minutes, with when: the same
    /// Event's copy from the other Event API is that change too.
    #[serde(default)]
    merged_events: Vec<(String, i64)>,
}

/// The diff engine. Not thread-safe: the watcher owns it.
#[derive(Debug, Default)]
pub struct Tracker {
    st: TrackerState,
    listing: BTreeMap<Watched, HashSet<String>>,
    out: Vec<ChangeRecord>,
    samples: Vec<SampleRecord>,
    dirty: bool,
}

fn key_of(kind: Watched, uid: &str) -> String {
    format!("{}/{uid}", kind.kind())
}

/// A change row: `what` is (namespace, object kind, object), `why` (reason, message).
fn record(
    time: i64,
    kind: ChangeKind,
    (namespace, object_kind, object): (&str, &str, String),
    (from, to): (String, String),
    (reason, message): (&str, String),
    key: String,
) -> ChangeRecord {
    ChangeRecord {
        time_unix_nano: time,
        kind: kind.as_str().to_string(),
        namespace: namespace.to_string(),
        object_kind: object_kind.to_string(),
        object,
        from,
        to,
        reason: reason.to_string(),
        message,
        source: format!("watch/{object_kind}"),
        key,
        attributes: Vec::new(),
    }
}

fn scale_kind(from: i64, to: i64) -> ChangeKind {
    if to < from { ChangeKind::ScaleDown } else { ChangeKind::ScaleUp }
}

/// An Event as a change row, keyed by its uid and count.
pub fn event_record(c: &Change) -> ChangeRecord {
    ChangeRecord {
        time_unix_nano: c.time_unix_nano,
        kind: c.kind.as_str().to_string(),
        namespace: c.namespace.clone(),
        object_kind: c.object_kind.clone(),
        object: c.object.clone(),
        from: c.from.clone().unwrap_or_default(),
        to: c.to.clone().unwrap_or_default(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        source: format!("event/{}", c.source),
        key: format!("event/{}/{}", c.uid, c.count),
        attributes: Vec::new(),
    }
}

impl Tracker {
    /// A tracker with no baseline.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// A tracker from a saved state; an unreadable state starts from scratch (the next list
    /// is then a first list: no object diffs, Events and timestamped facts still come).
    pub fn restore(bytes: &[u8]) -> Result<Tracker, String> {
        let st = serde_json::from_slice(bytes).map_err(|e| format!("watch state unreadable: {e}"))?;
        Ok(Tracker { st, ..Tracker::default() })
    }

    /// The state to save (only after the changes taken so far are durable).
    pub fn save(&mut self) -> Vec<u8> {
        self.dirty = false;
        serde_json::to_vec(&self.st).unwrap_or_default()
    }

    /// Whether the state changed since the last save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Objects in the baseline.
    pub fn objects(&self) -> usize {
        self.st.objects.len()
    }

    /// Whether a kind has been listed completely at least once.
    pub fn watching(&self, kind: Watched) -> bool {
        self.st.since.contains_key(&kind)
    }

    /// The pods of a node with GPUs, for GPU attribution.
    pub fn gpu_pods_on(&self, node: &str) -> Vec<&PodSummary> {
        self.st
            .objects
            .values()
            .filter_map(|s| match s {
                Summary::Pod(p) if p.gpus > 0 && p.node.as_deref() == Some(node) && p.phase != "Succeeded" => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The pods to scrape and where the GPU pods are, for the scraper.
    pub fn discovery(&self) -> crate::scrape::Discovery {
        let mut d = crate::scrape::Discovery::default();
        d.placement.known = self.watching(Watched::Pod);
        for s in self.st.objects.values() {
            let Summary::Pod(p) = s else { continue };
            if p.phase != "Running" {
                continue;
            }
            if let (Some(ip), Some((scheme, port, path))) = (&p.ip, &p.scrape) {
                let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
                let pod = crate::scrape::PodRef {
                    namespace: p.meta.namespace.clone(),
                    pod: p.meta.name.clone(),
                    node: p.node.clone(),
                };
                d.targets.push(crate::scrape::Target::new(format!("{scheme}://{host}:{port}{path}"), Some(pod)));
            }
            if p.gpus > 0
                && let Some(node) = &p.node
            {
                d.placement.gpu_pods.entry(node.clone()).or_default().push(crate::scrape::attribute::GpuPod {
                    namespace: p.meta.namespace.clone(),
                    pod: p.meta.name.clone(),
                    container: p.gpu_container.clone(),
                    gpus: p.gpus,
                });
            }
        }
        d.targets.sort_by(|a, b| a.url.cmp(&b.url));
        d
    }

    /// A (re)list of a kind begins: objects not seen again before [`Tracker::end_list`]
    /// were deleted meanwhile.
    pub fn begin_list(&mut self, kind: Watched) {
        self.listing.insert(kind, HashSet::new());
    }

    /// A (re)list is complete.
    pub fn end_list(&mut self, kind: Watched, now: i64) {
        let seen = self.listing.remove(&kind).unwrap_or_default();
        let gone: Vec<Summary> = self
            .st
            .objects
            .iter()
            .filter(|(k, s)| k.starts_with(&format!("{}/", kind.kind())) && !seen.contains(&s.meta().uid))
            .map(|(_, s)| s.clone())
            .collect();
        for s in gone {
            self.removed(kind, &s, now);
        }
        if let std::collections::btree_map::Entry::Vacant(e) = self.st.since.entry(kind) {
            e.insert(now);
            if kind == Watched::ReplicaSet {
                self.recent_rollouts(now);
            }
        }
        self.dirty = true;
    }

    /// An object was added or modified.
    pub fn apply(&mut self, kind: Watched, obj: &Value, now: i64) -> Result<(), String> {
        let mut new = Summary::of(kind, obj)?;
        let key = key_of(kind, &new.meta().uid);
        if let (Some(Summary::Node(a)), Summary::Node(b)) = (self.st.objects.get(&key), &mut new) {
            b.gpu_changes = a.gpu_changes + u32::from(a.gpus != b.gpus);
        }
        if let Some(seen) = self.listing.get_mut(&kind) {
            seen.insert(new.meta().uid.clone());
        }
        let old = self.st.objects.get(&key).cloned();
        if old.as_ref() == Some(&new) {
            return Ok(());
        }
        let watching = self.watching(kind);
        if let Summary::Deployment { meta, replicas, progress, .. } = &new {
            self.rollout_progress(meta, *replicas, *progress, now);
        }
        match (&old, &new) {
            (
                Some(Summary::Deployment { replicas: a, .. }),
                Summary::Deployment { meta, replicas: b, generation, .. },
            ) if a != b => {
                let mut c = record(
                    now,
                    scale_kind(*a, *b),
                    (&meta.namespace, "Deployment", format!("deployment/{}", meta.name)),
                    (a.to_string(), b.to_string()),
                    ("ReplicasChanged", format!("spec.replicas {a} -> {b}")),
                    // The generation and new size name the scale, whatever baseline saw it.
                    format!("deployment/{}/replicas/->{b}@g{generation}", meta.uid),
                );
                c.attributes.push(Attr::new("time_source", "observed"));
                let what = HeldFor::Hpa {
                    namespace: meta.namespace.clone(),
                    deployment: meta.name.clone(),
                    to: b.to_string(),
                };
                self.st.held.push(Held { change: c, until: now + HOLD_NS, what });
            }
            (None, Summary::ReplicaSet(rs)) if watching => self.rollout(rs, "NewReplicaSet"),
            (Some(Summary::ReplicaSet(a)), Summary::ReplicaSet(b)) if b.revision > a.revision => {
                self.rollout(b, "RevisionChanged")
            }
            (Some(Summary::Hpa(a)), Summary::Hpa(b)) if a.desired != b.desired => self.hpa_scaled(a, b, now),
            (None, Summary::Node(n)) if watching => {
                let c = record(
                    if n.meta.created > 0 { n.meta.created } else { now },
                    ChangeKind::NodeAdded,
                    ("", "Node", format!("node/{}", n.meta.name)),
                    (String::new(), format!("{} GPUs", n.gpus)),
                    ("NodeAdded", format!("node {} joined with {} allocatable nvidia.com/gpu", n.meta.name, n.gpus)),
                    format!("node/{}/added", n.meta.uid),
                );
                self.out.push(c);
            }
            (Some(Summary::Node(a)), Summary::Node(b)) => self.node_changed(a, b, now),
            (Some(Summary::ScaledObject(a)), Summary::ScaledObject(b)) if a.active != b.active => {
                self.activation(a, b, now)
            }
            (old, Summary::Pod(p)) => {
                let old = match old {
                    Some(Summary::Pod(o)) => Some(o),
                    _ => None,
                };
                self.pod_changed(old, p, now);
            }
            _ => {}
        }
        self.st.objects.insert(key, new);
        self.dirty = true;
        Ok(())
    }

    /// An object was deleted.
    pub fn delete(&mut self, kind: Watched, obj: &Value, now: i64) -> Result<(), String> {
        let gone = Summary::of(kind, obj)?;
        let key = key_of(kind, &gone.meta().uid);
        let last = self.st.objects.get(&key).cloned().unwrap_or(gone);
        self.removed(kind, &last, now);
        Ok(())
    }

    fn removed(&mut self, kind: Watched, last: &Summary, now: i64) {
        self.st.objects.remove(&key_of(kind, &last.meta().uid));
        self.dirty = true;
        // A node that was still ready is lost now; one already NotReady was lost then.
        if let Summary::Node(n) = last
            && n.ready == "True"
        {
            let c = record(
                now,
                ChangeKind::NodeLost,
                ("", "Node", format!("node/{}", n.meta.name)),
                (format!("{} GPUs", n.gpus), "deleted".into()),
                ("NodeDeleted", format!("node {} was removed from the cluster", n.meta.name)),
                format!("node/{}/deleted", n.meta.uid),
            );
            self.out.push(c);
        }
    }

    /// A Kubernetes Event (either API).
    pub fn event(&mut self, ev: &Value, now: i64) -> Result<(), String> {
        let Some(c) = from_event(ev)? else { return Ok(()) };
        let covered_by = match (c.object_kind.as_str(), c.reason.as_str()) {
            ("Deployment", "ScalingReplicaSet") => Some(Watched::ReplicaSet),
            ("Node", "NodeNotReady" | "NodeReady" | "RegisteredNode" | "RemovingNode" | "NodeShutdown") => {
                Some(Watched::Node)
            }
            ("HorizontalPodAutoscaler", "SuccessfulRescale") => Some(Watched::HorizontalPodAutoscaler),
            _ => None,
        };
        let since = covered_by.and_then(|k| self.st.since.get(&k).copied());
        let record = event_record(&c);
        match (covered_by, since) {
            (Some(Watched::HorizontalPodAutoscaler), Some(t)) if c.time_unix_nano >= t - SEC => {
                if self.st.merged_events.iter().any(|(k, _)| *k == record.key) {
                    return Ok(());
                }
                if !self.merge_reason(&record) {
                    self.st.stashed.push(Stashed { change: record, until: now + STASH_NS });
                    self.dirty = true;
                }
            }
            (Some(_), Some(t)) if c.time_unix_nano >= t - SEC => {}
            _ => self.out.push(record),
        }
        Ok(())
    }

    /// Releases what was held past its time; returns every change ready to store.
    pub fn take(&mut self, now: i64) -> Vec<ChangeRecord> {
        let (mut due, keep): (Vec<Held>, Vec<Held>) =
            std::mem::take(&mut self.st.held).into_iter().partition(|h| h.until <= now);
        self.st.held = keep;
        // HPA changes first, so that the Deployment scales they made are recognized.
        due.sort_by_key(|h| matches!(h.what, HeldFor::Hpa { .. }));
        for h in due {
            self.dirty = true;
            match &h.what {
                HeldFor::Reason { .. } => self.release_hpa(h.change),
                HeldFor::Hpa { namespace, deployment, to } => {
                    if !self.scaled_by_hpa(namespace, deployment, to, h.change.time_unix_nano) {
                        self.out.push(h.change);
                    }
                }
            }
        }
        let (due, keep): (Vec<Stashed>, Vec<Stashed>) =
            std::mem::take(&mut self.st.stashed).into_iter().partition(|s| s.until <= now);
        self.st.stashed = keep;
        for s in due {
            self.dirty = true;
            self.out.push(s.change);
        }
        self.st.recent_hpa.retain(|r| r.3 > now - 120 * SEC);
        self.st.merged_events.retain(|r| r.1 > now - 120 * SEC);
        std::mem::take(&mut self.out)
    }

    /// Rollout progress as samples (as kube-state-metrics names them), when it moved.
    pub fn take_samples(&mut self) -> Vec<SampleRecord> {
        std::mem::take(&mut self.samples)
    }

    fn rollout_progress(&mut self, meta: &super::objects::Meta, replicas: i64, progress: (i64, i64, i64), now: i64) {
        let values = [
            ("kube_deployment_spec_replicas", replicas),
            ("kube_deployment_status_replicas_updated", progress.0),
            ("kube_deployment_status_replicas_ready", progress.1),
            ("kube_deployment_status_replicas_available", progress.2),
        ];
        for (metric, value) in values {
            self.samples.push(SampleRecord {
                time_unix_nano: now,
                metric: metric.to_string(),
                value: value as f64,
                target: "kubernetes".to_string(),
                namespace: meta.namespace.clone(),
                attribution: "target".to_string(),
                labels: vec![Attr::new("deployment", meta.name.clone())],
                ..Default::default()
            });
        }
    }

    /// The newest other ReplicaSet of the same Deployment (the one rolled from).
    fn previous_rs(&self, rs: &ReplicaSetSummary) -> Option<&ReplicaSetSummary> {
        self.st
            .objects
            .values()
            .filter_map(|s| match s {
                Summary::ReplicaSet(o)
                    if o.meta.namespace == rs.meta.namespace
                        && o.deployment == rs.deployment
                        && o.meta.uid != rs.meta.uid
                        && (rs.revision == 0 || o.revision < rs.revision)
                        && (rs.revision != 0 || o.meta.created <= rs.meta.created) =>
                {
                    Some(o)
                }
                _ => None,
            })
            .max_by_key(|o| (o.revision, o.meta.created))
    }

    fn rollout(&mut self, rs: &ReplicaSetSummary, reason: &str) {
        let Some(dep) = &rs.deployment else { return };
        let Some(prev) = self.previous_rs(rs).cloned() else { return };
        let describe = |r: &ReplicaSetSummary| if r.image.is_empty() { r.meta.name.clone() } else { r.image.clone() };
        let mut c = record(
            rs.meta.created,
            ChangeKind::Deploy,
            (&rs.meta.namespace, "Deployment", format!("deployment/{dep}")),
            (describe(&prev), describe(rs)),
            (
                reason,
                format!("rollout: replicaset {} (revision {}) replaces {}", rs.meta.name, rs.revision, prev.meta.name),
            ),
            format!(
                "deploy/{}/{}/{}",
                rs.meta.namespace,
                dep,
                if rs.hash.is_empty() { &rs.meta.uid } else { &rs.hash }
            ),
        );
        if reason == "RevisionChanged" {
            c.key = format!("{}/r{}", c.key, rs.revision);
        }
        c.attributes.push(Attr::new("from_replicaset", prev.meta.name.clone()));
        c.attributes.push(Attr::new("to_replicaset", rs.meta.name.clone()));
        c.attributes.push(Attr::new("revision", rs.revision.to_string()));
        for (k, v) in [("from_model", &prev.model), ("to_model", &rs.model)] {
            if let Some(v) = v {
                c.attributes.push(Attr::new(k, v.clone()));
            }
        }
        self.out.push(c);
    }

    /// On the first list: rollouts that began within the lookback (their ReplicaSets say
    /// when), since the Events that told of them may already be gone.
    fn recent_rollouts(&mut self, now: i64) {
        let newest: Vec<ReplicaSetSummary> = self
            .st
            .objects
            .values()
            .filter_map(|s| match s {
                Summary::ReplicaSet(r) if r.deployment.is_some() && r.meta.created >= now - LOOKBACK_NS => {
                    Some(r.clone())
                }
                _ => None,
            })
            .collect();
        for rs in newest {
            self.rollout(&rs, "NewReplicaSet");
        }
    }

    /// KEDA activates a ScaledObject (0 -> its minimum, at least 1) when a trigger fires,
    /// and deactivates it (-> 0) when none does.
    fn activation(&mut self, a: &ScaledObjectSummary, b: &ScaledObjectSummary, now: i64) {
        let (was, is) = (a.active == "True", b.active == "True");
        if was == is {
            return;
        }
        let at = b.active_since.unwrap_or(now);
        let up = b.min.max(1).to_string();
        let (kind, from, to, reason) = if is {
            (ChangeKind::ScaleUp, "0".to_string(), up, "KEDAScaledObjectActivated")
        } else {
            (ChangeKind::ScaleDown, up, "0".to_string(), "KEDAScaledObjectDeactivated")
        };
        let mut c = record(
            at,
            kind,
            (&b.meta.namespace, "ScaledObject", format!("scaledobject/{}", b.meta.name)),
            (from, to.clone()),
            (reason, format!("KEDA ScaledObject {} Active {} -> {}", b.meta.name, a.active, b.active)),
            format!("scaledobject/{}/active={}@{at}", b.meta.uid, b.active),
        );
        c.attributes.push(Attr::new("target", b.target.clone()));
        // The Deployment's own 0 <-> N scale is this activation.
        self.st.recent_hpa.push((b.meta.namespace.clone(), b.target.clone(), to, at));
        self.out.push(c);
    }

    fn node_changed(&mut self, a: &NodeSummary, b: &NodeSummary, now: i64) {
        let name = &b.meta.name;
        if a.ready != b.ready {
            let lost = b.ready != "True";
            if lost != (a.ready != "True") {
                let at = b.ready_since.unwrap_or(now);
                let (kind, reason) =
                    if lost { (ChangeKind::NodeLost, "NodeNotReady") } else { (ChangeKind::NodeAdded, "NodeReady") };
                let c = record(
                    at,
                    kind,
                    ("", "Node", format!("node/{name}")),
                    (format!("Ready={}", a.ready), format!("Ready={}", b.ready)),
                    (reason, format!("node {name} Ready {} -> {} ({} GPUs)", a.ready, b.ready, b.gpus)),
                    format!("node/{}/ready={}@{at}", b.meta.uid, b.ready),
                );
                self.out.push(c);
            }
        }
        if a.gpus != b.gpus {
            let kind = if b.gpus < a.gpus { ChangeKind::NodeLost } else { ChangeKind::NodeAdded };
            let c = record(
                now,
                kind,
                ("", "Node", format!("node/{name}")),
                (format!("{} GPUs", a.gpus), format!("{} GPUs", b.gpus)),
                ("GPUCapacityChanged", format!("node {name} allocatable nvidia.com/gpu {} -> {}", a.gpus, b.gpus)),
                format!("node/{}/gpus/{}->{}#{}", b.meta.uid, a.gpus, b.gpus, b.gpu_changes),
            );
            self.out.push(c);
        }
    }

    fn pod_changed(&mut self, old: Option<&PodSummary>, p: &PodSummary, now: i64) {
        let object = format!("pod/{}", p.meta.name);
        for (container, at, restarts) in &p.ooms {
            if old.is_some_and(|o| o.ooms.iter().any(|x| x.0 == *container && x.1 == *at)) {
                continue;
            }
            let mut c = record(
                if *at > 0 { *at } else { now },
                ChangeKind::OomKill,
                (&p.meta.namespace, "Pod", object.clone()),
                (String::new(), "OOMKilled".into()),
                (
                    "OOMKilled",
                    format!("container {container} of pod {} was OOM-killed (restart {restarts})", p.meta.name),
                ),
                format!("pod/{}/{container}/oom@{at}", p.meta.uid),
            );
            c.attributes.push(Attr::new("container", container.clone()));
            c.attributes.push(Attr::new("restart_count", restarts.to_string()));
            if let Some(d) = &p.deployment {
                c.attributes.push(Attr::new("deployment", d.clone()));
            }
            if let Some(n) = &p.node {
                c.attributes.push(Attr::new("node", n.clone()));
            }
            self.out.push(c);
        }
        let became_ready = p.ready && old.is_none_or(|o| !o.ready);
        let Some(ready_at) = p.ready_since.filter(|_| became_ready) else { return };
        // A transition seen (or recomputed from the baseline), or a pod first seen ready
        // recently enough that its cold start may matter.
        if old.is_none() && ready_at < now - LOOKBACK_NS {
            return;
        }
        let began = match old {
            Some(o) if !o.ready => o.ready_since.filter(|t| *t > p.meta.created).unwrap_or(p.meta.created),
            _ => p.meta.created,
        };
        let began = if began > 0 && began <= ready_at { began } else { ready_at };
        let secs = (ready_at - began) as f64 / 1e9;
        let mut c = record(
            began,
            ChangeKind::ColdStart,
            (&p.meta.namespace, "Pod", object),
            ("not ready".into(), "ready".into()),
            ("PodReady", format!("pod {} became ready after {secs:.0}s", p.meta.name)),
            format!("pod/{}/ready@{ready_at}", p.meta.uid),
        );
        c.attributes.push(Attr::new("cold_start_seconds", format!("{secs:.3}")));
        c.attributes.push(Attr::new("ready_at_unix_nano", ready_at.to_string()));
        for (k, v) in [("deployment", &p.deployment), ("node", &p.node)] {
            if let Some(v) = v {
                c.attributes.push(Attr::new(k, v.clone()));
            }
        }
        self.out.push(c);
    }
}

mod hpa;
#[cfg(test)]
mod tests;
