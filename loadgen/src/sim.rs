//! The simulated GPU inference cluster: a deterministic discrete-event
//! simulation.
//!
//! State: GPU nodes in pools (with a cluster autoscaler), one Deployment per
//! model with its ReplicaSets and pods (each pod a vLLM-like [`engine`]), an
//! HPA per model, and the traffic. Time is simulated nanoseconds since the
//! scenario start; nothing reads the wall clock, so the same scenario and seed
//! give the same output. Drivers (files, live) call [`Sim::run_until`] and
//! drain [`Output`]: finished requests (turned into spans), Kubernetes object
//! changes (fed to the API server or written as watch events) and the ground
//! truth.

mod actions;
mod cluster;
mod controllers;
pub(crate) mod engine;
mod gpu;
mod hpa;
pub(crate) mod names;
mod objects;
mod stats;
#[cfg(test)]
mod tests;
mod traffic;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::Scenario;
pub(crate) use crate::truth::TruthEntry;
pub(crate) use cluster::{Node, Pod, PodPhase, ReplicaSet};
pub(crate) use engine::Req;

/// RFC 3339 (seconds, UTC) of a unix-ns time.
pub(crate) fn rfc3339(unix_ns: i64) -> String {
    names::rfc3339(unix_ns, false)
}
pub(crate) use traffic::Injected;
pub(crate) use traffic::ModelState;

/// Identity of a pod, shared by every request it served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodInfo {
    pub namespace: String,
    pub deployment: String,
    pub replicaset: String,
    pub pod: String,
    pub node: String,
    pub model: String,
    pub uid: String,
}

/// A request that finished (or failed) in the simulated cluster.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: u64,
    pub model: usize,
    /// Gateway receive and response times (unix ns).
    pub start: i64,
    pub end: i64,
    /// The model-server part, when the request reached a server and finished there.
    pub server: Option<ServerTimes>,
    pub pod: Option<Arc<PodInfo>>,
    pub prompt_tokens: u32,
    pub output_tokens: u32,
    /// HTTP status the gateway answered.
    pub status: u16,
    pub external: Option<u64>,
    pub trace_parent: Option<(u128, u64)>,
    pub chat: bool,
}

/// vLLM's per-request timestamps (unix ns).
#[derive(Debug, Clone, Copy)]
pub struct ServerTimes {
    pub arrival: i64,
    pub scheduled: i64,
    pub first_token: i64,
    pub finish: i64,
    pub preemptions: u32,
}

/// A change to a Kubernetes object.
#[derive(Debug, Clone)]
pub enum ObjectChange {
    Apply(serde_json::Value),
    Delete { api_version: &'static str, kind: &'static str, namespace: Option<String>, name: String },
}

/// Progress of a request that came in through the OpenAI API (live mode).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub external: u64,
    pub generated: u32,
}

/// What the simulation produced since the last drain.
#[derive(Debug, Default)]
pub struct Output {
    pub requests: Vec<RequestRecord>,
    pub objects: Vec<ObjectChange>,
    pub progress: Vec<Progress>,
}

#[derive(Debug)]
pub(crate) enum Ev {
    /// Next arrival for a model; `false` = only look at the rate again.
    Arrival(usize, bool),
    Deliver(usize, Box<Req>),
    StepEnd(usize, u64),
    Lifecycle(usize, u64, cluster::Stage),
    HpaSync(usize),
    NodeReady(usize),
    NodeNotReady(usize),
    NodeEvict(usize),
    GpuTick,
    Action(usize),
    Fail(Box<Req>, u16),
}

#[derive(Debug)]
struct Timed {
    t: i64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Timed {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// The simulated cluster.
pub struct Sim {
    pub scenario: Scenario,
    pub seed: u64,
    /// Unix ns of simulated time 0.
    pub start_unix_ns: i64,
    pub(crate) now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<Timed>>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) models: Vec<ModelState>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) replicasets: Vec<ReplicaSet>,
    pub(crate) out: Output,
    pub(crate) truth: Vec<TruthEntry>,
    pub(crate) next_req: u64,
    /// Multiplies every model's own traffic (0 = only OpenAI API requests).
    pub traffic_scale: f64,
    pub(crate) uid_seq: u64,
    /// Requests the simulation has finished, for benchmarks.
    pub completed: u64,
    /// Port of the live metrics server, written into the pods' scrape annotations.
    pub metrics_port: Option<u16>,
    pub(crate) quiet: bool,
    pub(crate) emitted: std::collections::HashMap<String, serde_json::Value>,
    pub(crate) event_counts: std::collections::HashMap<String, (String, u32, i64, u64)>,
}

/// How to start a simulation.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    pub seed: u64,
    /// Unix ns of simulated time 0.
    pub start_unix_ns: i64,
    /// Port of the live metrics server (for the pods' `prometheus.io/port` annotations).
    pub metrics_port: Option<u16>,
    /// Multiplies the scenario's traffic (default 1).
    pub traffic_scale: Option<f64>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("scenario", &self.scenario.name).field("now", &self.now).finish()
    }
}

impl Sim {
    /// Builds the cluster at time 0, steady: every initial pod Ready.
    pub fn new(scenario: Scenario, opts: SimOptions) -> Sim {
        let mut sim = Sim {
            seed: opts.seed,
            start_unix_ns: opts.start_unix_ns,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng: ChaCha8Rng::seed_from_u64(opts.seed),
            models: Vec::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            replicasets: Vec::new(),
            out: Output::default(),
            truth: Vec::new(),
            next_req: 1,
            traffic_scale: opts.traffic_scale.unwrap_or(1.0),
            uid_seq: 0,
            completed: 0,
            metrics_port: opts.metrics_port,
            quiet: false,
            emitted: Default::default(),
            event_counts: Default::default(),
            scenario,
        };
        sim.bootstrap();
        sim
    }

    /// Simulated ns since the start.
    pub fn now(&self) -> i64 {
        self.now
    }

    pub fn now_unix_ns(&self) -> i64 {
        self.start_unix_ns + self.now
    }

    pub fn end(&self) -> i64 {
        self.scenario.duration.as_nanos_i64()
    }

    pub(crate) fn at(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Timed { t: t.max(self.now), seq: self.seq, ev }));
    }

    /// Runs every event up to and including simulated time `t`.
    pub fn run_until(&mut self, t: i64) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.t > t {
                break;
            }
            let Some(Reverse(Timed { t: et, ev, .. })) = self.queue.pop() else { break };
            self.now = et;
            self.dispatch(ev);
        }
        self.now = self.now.max(t);
    }

    /// Takes what was produced since the last call.
    pub fn drain(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    /// The ground truth so far.
    pub fn truth(&self) -> &[TruthEntry] {
        &self.truth
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival(m, real) => self.on_arrival(m, real),
            Ev::Deliver(p, r) => self.on_deliver(p, *r),
            Ev::StepEnd(p, epoch) => self.on_step_end(p, epoch),
            Ev::Lifecycle(p, epoch, stage) => self.on_lifecycle(p, epoch, stage),
            Ev::HpaSync(m) => self.on_hpa_sync(m),
            Ev::NodeReady(n) => self.on_node_ready(n),
            Ev::NodeNotReady(n) => self.on_node_not_ready(n),
            Ev::NodeEvict(n) => self.on_node_evict(n),
            Ev::GpuTick => self.on_gpu_tick(),
            Ev::Action(i) => self.on_action(i),
            Ev::Fail(r, code) => self.fail(*r, code),
        }
    }

    pub(crate) fn unix(&self, t: i64) -> i64 {
        self.start_unix_ns + t
    }

    pub(crate) fn rfc3339(&self, t: i64) -> String {
        names::rfc3339(self.unix(t), false)
    }

    pub(crate) fn push_truth(&mut self, kind: &str, object: String, causal: bool, detail: Option<String>) {
        let time = names::rfc3339(self.unix(self.now), true);
        self.truth.push(TruthEntry { kind: kind.into(), object, time, causal, detail });
    }
}
