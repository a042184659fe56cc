//! Kubernetes behaviour: nodes and the cluster autoscaler, the scheduler,
//! the kubelet's pod lifecycle (image pull, model load, warm-up, readiness,
//! OOM kills with crash-loop back-off) and node loss. The controllers are in
//! `controllers.rs`, the HPA in `hpa.rs`.

use std::sync::Arc;

use super::engine::Engine;
use super::gpu::Gpu;
use super::{Ev, PodInfo, Sim, names};

pub(crate) const SEC: i64 = 1_000_000_000;
/// How long a terminating pod may drain before its requests are aborted.
const TERMINATION_GRACE: i64 = 30 * SEC;
/// node-monitor-grace-period: a silent node is marked NotReady after this.
const NODE_GRACE: i64 = 40 * SEC;
/// Default toleration of `node.kubernetes.io/unreachable` before eviction.
const EVICT_AFTER: i64 = 300 * SEC;
pub(crate) const HPA_SYNC: i64 = 15 * SEC;
/// The gateway's route timeout: requests stuck on a dead upstream fail after this.
pub(super) const GATEWAY_TIMEOUT: i64 = 60 * SEC;
/// The gateway's connect timeout to an upstream that does not answer.
pub(super) const CONNECT_TIMEOUT: i64 = 5 * SEC;
pub(crate) const HPA_TOLERANCE: f64 = 0.1;
/// The custom metric the HPA reads (through a Prometheus adapter).
pub(super) const HPA_METRIC: &str = "vllm_requests_in_flight";

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub name: String,
    pub uid: String,
    pub pool: usize,
    pub gpus: Vec<Gpu>,
    pub ready: bool,
    /// The kubelet stopped answering (node lost); `ready` flips after the grace period.
    pub lost: bool,
    pub created: i64,
    pub images: Vec<String>,
    pub throttle_causal: Option<bool>,
}

impl Node {
    pub(crate) fn free_gpus(&self) -> usize {
        self.gpus.iter().filter(|g| g.pod.is_none()).count()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ReplicaSet {
    pub name: String,
    pub uid: String,
    pub model: usize,
    pub hash: String,
    pub revision: u32,
    pub image: String,
    pub compute_factor: f64,
    pub replicas: u32,
    pub created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PodPhase {
    /// Not scheduled yet.
    Pending,
    /// Scheduled; pulling the image.
    Pulling,
    /// Container started; loading the model and warming up.
    Loading,
    /// Passing its readiness probe; in the Service's endpoints.
    Ready,
    /// Container died; waiting out the crash-loop back-off.
    BackOff,
    /// Being deleted; draining.
    Terminating,
    Gone,
}

/// Kubelet stages, scheduled as events.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Pulled,
    Ready,
    Oom,
    Restart,
    Killed,
}

#[derive(Debug)]
pub(crate) struct Pod {
    pub name: String,
    pub uid: String,
    pub info: Option<Arc<PodInfo>>,
    pub rs: usize,
    pub model: usize,
    pub node: Option<usize>,
    pub gpus: Vec<u32>,
    pub phase: PodPhase,
    pub created: i64,
    pub scheduled_at: Option<i64>,
    pub started: Option<i64>,
    pub ready_since: Option<i64>,
    pub engine: Engine,
    pub vllm: crate::exposition::VllmPod,
    pub restarts: u32,
    pub last_oom: Option<i64>,
    /// Lifecycle epoch: stale stage events carry an older one.
    pub epoch: u64,
    /// OOM-kill this long after each Ready (the oom_loop action).
    pub oom_after: Option<i64>,
    pub oom_causal: bool,
    pub deletion: Option<i64>,
    /// Its node was lost: requests to it hang and fail.
    pub dead: bool,
    pub failed_scheduling: u32,
}

impl Pod {
    /// Accepting requests from the gateway.
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == PodPhase::Ready && !self.dead
    }
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.phase, PodPhase::Terminating | PodPhase::Gone)
    }
}

impl Sim {
    pub(crate) fn add_node(&mut self, pool: usize, ready: bool, created: i64) -> usize {
        let p = &self.scenario.pools[pool];
        let k = self.nodes.iter().filter(|n| n.pool == pool).count() + 1;
        let name = format!("{}-{k}", p.name);
        let gpus = (0..p.gpus_per_node).map(|i| Gpu::new(&name, i, p.sm_clock_mhz)).collect();
        self.uid_seq += 1;
        let uid = names::uid(&name, self.uid_seq);
        self.nodes.push(Node {
            name,
            uid,
            pool,
            gpus,
            ready,
            lost: false,
            created,
            images: Vec::new(),
            throttle_causal: None,
        });
        let n = self.nodes.len() - 1;
        self.emit_node(n);
        self.emit_dcgm_pod(n);
        n
    }

    pub(crate) fn new_replicaset(&mut self, m: usize, image: String, compute_factor: f64, created: i64) -> usize {
        let revision = self.replicasets.iter().filter(|r| r.model == m).count() as u32 + 1;
        let name = self.models[m].spec.name.clone();
        let hash = names::template_hash(&[&name, &revision.to_string(), &image, &compute_factor.to_string()]);
        self.uid_seq += 1;
        let rs = ReplicaSet {
            name: format!("{name}-{hash}"),
            uid: names::uid(&format!("{name}-{hash}"), self.uid_seq),
            model: m,
            hash,
            revision,
            image,
            compute_factor,
            replicas: 0,
            created,
        };
        self.replicasets.push(rs);
        let r = self.replicasets.len() - 1;
        self.models[m].replicasets.push(r);
        self.emit_replicaset(r);
        r
    }

    pub(crate) fn create_pod(&mut self, r: usize) -> usize {
        let m = self.replicasets[r].model;
        let name = format!("{}-{}", self.replicasets[r].name, names::suffix(&mut self.rng));
        self.uid_seq += 1;
        let uid = names::uid(&name, self.uid_seq);
        let spec = &self.scenario.models[m].server;
        self.pods.push(Pod {
            name: name.clone(),
            uid,
            info: None,
            rs: r,
            model: m,
            node: None,
            gpus: Vec::new(),
            phase: PodPhase::Pending,
            created: self.now(),
            scheduled_at: None,
            started: None,
            ready_since: None,
            engine: Engine::new(spec),
            vllm: super::stats::new_vllm(&self.scenario.models[m].model, 0.0, spec.kv_cache_tokens),
            restarts: 0,
            last_oom: None,
            epoch: 0,
            oom_after: None,
            oom_causal: true,
            deletion: None,
            dead: false,
            failed_scheduling: 0,
        });
        let p = self.pods.len() - 1;
        self.models[m].pods.push(p);
        let rs_name = self.replicasets[r].name.clone();
        self.event(
            "ReplicaSet",
            &rs_name,
            "SuccessfulCreate",
            &format!("Created pod: {name}"),
            false,
            "replicaset-controller",
        );
        self.emit_pod(p);
        p
    }

    /// Places a pending pod on the ready node with the most free GPUs in its pool.
    pub(crate) fn try_schedule(&mut self, p: usize) -> bool {
        let m = self.pods[p].model;
        let need = self.scenario.models[m].gpus_per_pod as usize;
        let pool = self.pool_of(m);
        let best = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].pool == pool && self.nodes[n].ready && !self.nodes[n].lost)
            .filter(|&n| self.nodes[n].free_gpus() >= need)
            .max_by_key(|&n| (self.nodes[n].free_gpus(), std::cmp::Reverse(n)));
        let Some(n) = best else {
            self.failed_scheduling(p, pool);
            return false;
        };
        let mut gpus = Vec::new();
        for g in self.nodes[n].gpus.iter_mut().filter(|g| g.pod.is_none()).take(need) {
            g.pod = Some(p);
            gpus.push(g.index);
        }
        let model = &self.scenario.models[m];
        let rs = &self.replicasets[self.pods[p].rs];
        let info = PodInfo {
            namespace: self.scenario.namespace.clone(),
            deployment: model.name.clone(),
            replicaset: rs.name.clone(),
            pod: self.pods[p].name.clone(),
            node: self.nodes[n].name.clone(),
            model: model.model.clone(),
            uid: self.pods[p].uid.clone(),
        };
        let image = rs.image.clone();
        let pod = &mut self.pods[p];
        pod.info = Some(Arc::new(info));
        pod.node = Some(n);
        pod.gpus = gpus;
        pod.phase = PodPhase::Pulling;
        pod.scheduled_at = Some(self.now);
        let epoch = pod.epoch;
        let name = pod.name.clone();
        let ns = self.scenario.namespace.clone();
        let node_name = self.nodes[n].name.clone();
        self.event(
            "Pod",
            &name,
            "Scheduled",
            &format!("Successfully assigned {ns}/{name} to {node_name}"),
            false,
            "default-scheduler",
        );
        let cached = self.nodes[n].images.contains(&image);
        let pull = if cached {
            self.event(
                "Pod",
                &name,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
                false,
                "kubelet",
            );
            0
        } else {
            self.event("Pod", &name, "Pulling", &format!("Pulling image \"{image}\""), false, "kubelet");
            let base = self.scenario.models[m].server.image_pull.as_nanos_i64();
            base + (base as f64 * 0.1 * rand::Rng::random::<f64>(&mut self.rng)) as i64
        };
        self.at(self.now + pull, Ev::Lifecycle(p, epoch, Stage::Pulled));
        self.emit_pod(p);
        true
    }

    fn failed_scheduling(&mut self, p: usize, pool: usize) {
        self.pods[p].failed_scheduling += 1;
        let total = self.nodes.iter().filter(|n| !n.lost).count();
        let in_pool: Vec<&Node> = self.nodes.iter().filter(|n| n.pool == pool && n.ready && !n.lost).collect();
        let others = total - in_pool.len();
        let mut parts = Vec::new();
        if others > 0 {
            parts.push(format!("{others} node(s) didn't match Pod's node affinity/selector"));
        }
        if !in_pool.is_empty() {
            parts.push(format!("{} Insufficient nvidia.com/gpu", in_pool.len()));
        }
        let msg = format!(
            "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {} No preemption victims found for incoming pod.",
            parts.join(", "),
            total
        );
        let name = self.pods[p].name.clone();
        self.event("Pod", &name, "FailedScheduling", &msg, true, "default-scheduler");
        self.cluster_autoscale(pool, p);
    }

    /// The cluster autoscaler: one more node when pods are unschedulable and the pool can grow.
    fn cluster_autoscale(&mut self, pool: usize, p: usize) {
        let spec = &self.scenario.pools[pool];
        let max = spec.max_nodes.unwrap_or(spec.nodes);
        let have = self.nodes.iter().filter(|n| n.pool == pool && !n.lost).count() as u32;
        let provisioning = self.nodes.iter().filter(|n| n.pool == pool && !n.ready && !n.lost).count();
        let pending =
            self.pods.iter().filter(|q| q.phase == PodPhase::Pending && self.pool_of(q.model) == pool).count();
        let per_node = spec.gpus_per_node as usize;
        if have >= max || provisioning * per_node >= pending {
            return;
        }
        let delay = spec.provision.as_nanos_i64();
        let name = spec.name.clone();
        let n = self.add_node(pool, false, self.now);
        let pod = self.pods[p].name.clone();
        self.event(
            "Pod",
            &pod,
            "TriggeredScaleUp",
            &format!("pod triggered scale-up: [{{{name} {have}->{} (max: {max})}}]", have + 1),
            false,
            "cluster-autoscaler",
        );
        self.at(self.now + delay, Ev::NodeReady(n));
    }

    pub(crate) fn pool_of(&self, m: usize) -> usize {
        match &self.scenario.models[m].pool {
            Some(p) => self.scenario.pools.iter().position(|q| &q.name == p).unwrap_or(0),
            None => 0,
        }
    }

    pub(crate) fn schedule_pending(&mut self) {
        let pending: Vec<usize> = (0..self.pods.len()).filter(|&p| self.pods[p].phase == PodPhase::Pending).collect();
        for p in pending {
            self.try_schedule(p);
        }
    }

    pub(crate) fn on_node_ready(&mut self, n: usize) {
        if self.nodes[n].lost {
            return;
        }
        self.nodes[n].ready = true;
        let name = self.nodes[n].name.clone();
        self.event_cluster(
            "Node",
            &name,
            "RegisteredNode",
            &format!("Node {name} event: Registered Node {name} in Controller"),
            false,
            "node-controller",
        );
        self.event_cluster(
            "Node",
            &name,
            "NodeReady",
            &format!("Node {name} status is now: NodeReady"),
            false,
            "kubelet",
        );
        self.emit_node(n);
        self.schedule_pending();
    }

    pub(crate) fn on_lifecycle(&mut self, p: usize, epoch: u64, stage: Stage) {
        if self.pods[p].epoch != epoch || self.pods[p].phase == PodPhase::Gone {
            return;
        }
        let m = self.pods[p].model;
        let name = self.pods[p].name.clone();
        let spec = self.scenario.models[m].server.clone();
        match stage {
            Stage::Pulled => {
                if self.pods[p].dead {
                    return;
                }
                let image = self.replicasets[self.pods[p].rs].image.clone();
                if let Some(n) = self.pods[p].node
                    && !self.nodes[n].images.contains(&image)
                {
                    let secs = (self.now - self.pods[p].scheduled_at.unwrap_or(self.now)) as f64 / 1e9;
                    self.nodes[n].images.push(image.clone());
                    self.event("Pod", &name, "Pulled", &format!("Successfully pulled image \"{image}\" in {secs:.3}s ({secs:.3}s including waiting). Image size: 9876543210 bytes."), false, "kubelet");
                }
                self.container_start(p, &spec);
            }
            Stage::Ready => {
                if self.pods[p].phase != PodPhase::Loading || self.pods[p].dead {
                    return;
                }
                self.pods[p].phase = PodPhase::Ready;
                self.pods[p].ready_since = Some(self.now);
                if let Some(after) = self.pods[p].oom_after {
                    let e = self.pods[p].epoch;
                    self.at(self.now + after, Ev::Lifecycle(p, e, Stage::Oom));
                }
                self.models[m].endpoints_dirty = true;
                self.emit_pod(p);
                self.reconcile_deployment(m);
            }
            Stage::Oom => {
                if self.pods[p].phase != PodPhase::Ready {
                    return;
                }
                self.oom_kill(p);
            }
            Stage::Restart => {
                if self.pods[p].phase == PodPhase::BackOff {
                    self.container_start(p, &spec);
                }
            }
            Stage::Killed => self.finish_termination(p),
        }
    }

    fn container_start(&mut self, p: usize, spec: &crate::scenario::ServerSpec) {
        let name = self.pods[p].name.clone();
        self.pods[p].phase = PodPhase::Loading;
        self.pods[p].started = Some(self.now);
        self.pods[p].engine = Engine::new(spec);
        let model = self.scenario.models[self.pods[p].model].model.clone();
        let created = self.unix(self.now) as f64 / 1e9;
        self.pods[p].vllm = super::stats::new_vllm(&model, created, spec.kv_cache_tokens);
        self.event("Pod", &name, "Created", "Created container: vllm", false, "kubelet");
        self.event("Pod", &name, "Started", "Started container vllm", false, "kubelet");
        let load = spec.model_load.as_nanos_i64();
        let jitter = (load as f64 * 0.1 * rand::Rng::random::<f64>(&mut self.rng)) as i64;
        let e = self.pods[p].epoch;
        self.at(self.now + load + jitter + spec.warmup.as_nanos_i64(), Ev::Lifecycle(p, e, Stage::Ready));
        self.emit_pod(p);
    }

    fn oom_kill(&mut self, p: usize) {
        let name = self.pods[p].name.clone();
        let m = self.pods[p].model;
        if self.pods[p].last_oom.is_none() && self.truth.iter().all(|t| t.kind != "oom_kill" || !t.causal) {
            let causal = self.pods[p].oom_causal;
            self.push_truth(
                "oom_kill",
                format!("pod/{name}"),
                causal,
                Some(format!("deployment/{}", self.scenario.models[m].name)),
            );
        }
        self.pods[p].last_oom = Some(self.now);
        self.pods[p].restarts += 1;
        self.pods[p].epoch += 1;
        self.pods[p].phase = PodPhase::BackOff;
        self.pods[p].ready_since = None;
        let lost = self.pods[p].engine.crash();
        for r in lost {
            self.fail(r, 502);
        }
        self.models[m].endpoints_dirty = true;
        let backoff = (10 * SEC) << (self.pods[p].restarts.saturating_sub(1)).min(5);
        let backoff = backoff.min(300 * SEC);
        self.event(
            "Pod",
            &name,
            "BackOff",
            &format!(
                "Back-off restarting failed container vllm in pod {name}_{}({})",
                self.scenario.namespace, self.pods[p].uid
            ),
            true,
            "kubelet",
        );
        let e = self.pods[p].epoch;
        self.at(self.now + backoff, Ev::Lifecycle(p, e, Stage::Restart));
        self.emit_pod(p);
        self.reconcile_deployment(m);
    }

    /// Starts deleting a pod: out of the endpoints, drain, then gone.
    pub(crate) fn delete_pod(&mut self, p: usize) {
        if !self.pods[p].is_live() {
            return;
        }
        let m = self.pods[p].model;
        let was_pending = self.pods[p].phase == PodPhase::Pending;
        self.pods[p].phase = PodPhase::Terminating;
        self.pods[p].deletion = Some(self.now);
        self.pods[p].epoch += 1;
        self.models[m].endpoints_dirty = true;
        let name = self.pods[p].name.clone();
        if !was_pending && !self.pods[p].dead {
            self.event("Pod", &name, "Killing", "Stopping container vllm", false, "kubelet");
        }
        self.emit_pod(p);
        let wait = if was_pending || self.pods[p].dead || self.pods[p].engine.in_flight() == 0 {
            SEC
        } else {
            TERMINATION_GRACE
        };
        let e = self.pods[p].epoch;
        self.at(self.now + wait, Ev::Lifecycle(p, e, Stage::Killed));
    }

    fn finish_termination(&mut self, p: usize) {
        let lost = self.pods[p].engine.crash();
        for r in lost {
            self.fail(r, 502);
        }
        self.pods[p].phase = PodPhase::Gone;
        if let Some(n) = self.pods[p].node {
            for g in self.nodes[n].gpus.iter_mut().filter(|g| g.pod == Some(p)) {
                g.pod = None;
            }
        }
        let m = self.pods[p].model;
        self.models[m].pods.retain(|&q| q != p);
        let name = self.pods[p].name.clone();
        let ns = self.scenario.namespace.clone();
        // Long live runs churn pods: forget what was kept to deduplicate their updates and Events.
        self.emitted.remove(&format!("pod/{ns}/{name}"));
        let prefix = format!("Pod/{ns}/{name}/");
        self.event_counts.retain(|k, _| !k.starts_with(&prefix));
        self.out.objects.push(super::ObjectChange::Delete {
            api_version: "v1",
            kind: "Pod",
            namespace: Some(ns),
            name,
        });
        self.schedule_pending();
    }

    pub(crate) fn node_lost(&mut self, n: usize) {
        self.nodes[n].lost = true;
        let pods: Vec<usize> =
            (0..self.pods.len()).filter(|&p| self.pods[p].node == Some(n) && self.pods[p].is_live()).collect();
        for p in pods {
            self.pods[p].dead = true;
            let lost = self.pods[p].engine.crash();
            let now = self.now;
            for r in lost {
                // The connection hangs until the gateway's route timeout.
                let at = (r.arrival + GATEWAY_TIMEOUT).max(now + SEC);
                self.at(at, Ev::Fail(Box::new(r), 504));
            }
        }
        self.at(self.now + NODE_GRACE, Ev::NodeNotReady(n));
    }

    pub(crate) fn on_node_not_ready(&mut self, n: usize) {
        self.nodes[n].ready = false;
        let name = self.nodes[n].name.clone();
        self.event_cluster(
            "Node",
            &name,
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
            true,
            "node-controller",
        );
        self.emit_node(n);
        let pods: Vec<usize> =
            (0..self.pods.len()).filter(|&p| self.pods[p].node == Some(n) && self.pods[p].is_live()).collect();
        for p in pods {
            if self.pods[p].phase == PodPhase::Ready {
                self.pods[p].phase = PodPhase::Loading;
                self.pods[p].epoch += 1;
            }
            let m = self.pods[p].model;
            self.models[m].endpoints_dirty = true;
            let pod = self.pods[p].name.clone();
            self.event("Pod", &pod, "NodeNotReady", "Node is not ready", true, "node-controller");
            self.emit_pod(p);
            self.reconcile_deployment(m);
        }
        self.at(self.now + EVICT_AFTER, Ev::NodeEvict(n));
    }

    pub(crate) fn on_node_evict(&mut self, n: usize) {
        let pods: Vec<usize> =
            (0..self.pods.len()).filter(|&p| self.pods[p].node == Some(n) && self.pods[p].is_live()).collect();
        let ns = self.scenario.namespace.clone();
        let mut models = Vec::new();
        for p in pods {
            let pod = self.pods[p].name.clone();
            self.event(
                "Pod",
                &pod,
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {ns}/{pod}"),
                false,
                "taint-eviction-controller",
            );
            self.delete_pod(p);
            models.push(self.pods[p].model);
        }
        models.dedup();
        for m in models {
            let rss = self.models[m].replicasets.clone();
            for r in rss {
                self.reconcile_rs(r);
            }
        }
    }
}
