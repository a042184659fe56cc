//! Building the cluster at time 0 and applying the scenario's injected
//! changes, each written to the ground truth when it takes effect.

use super::traffic::ModelState;
use super::{Ev, PodPhase, Sim};

const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;
/// The cluster runs this long before time 0, unrecorded, so the scenario starts
/// in steady state (batches full, HPA history filled), as a real cluster would.
const WARMUP: i64 = 180 * SEC;
/// Autoscalers start this long into the warm-up: while the first requests fill empty
/// batches the in-flight count overshoots, and an HPA acting on that transient would
/// scale up and then, one stabilization window into the recorded run, back down — a
/// change no scenario asked for.
const HPA_START: i64 = 150 * SEC;
/// The metric adapter serves a one-minute average, so the HPA's first decision has a full
/// minute of samples behind it: sampling starts this long before `HPA_START`.
const HPA_SAMPLING: i64 = 45 * SEC;

impl Sim {
    /// The steady state before the scenario starts: nodes Ready, every initial
    /// pod scheduled and serving, no Events for that history.
    pub(crate) fn bootstrap(&mut self) {
        self.quiet = true;
        self.now = -WARMUP;
        for ns in [self.scenario.namespace.clone(), "gpu-operator".into(), "default".into()] {
            self.emit_namespace(&ns);
        }
        for pool in 0..self.scenario.pools.len() {
            for _ in 0..self.scenario.pools[pool].nodes {
                self.add_node(pool, true, -20 * DAY);
            }
        }
        for m in 0..self.scenario.models.len() {
            let spec = self.scenario.models[m].clone();
            self.models.push(ModelState::new(spec.clone()));
            let r = self.new_replicaset(m, spec.image.clone(), 1.0, -7 * DAY);
            self.replicasets[r].replicas = spec.replicas;
            for _ in 0..spec.replicas {
                let p = self.create_pod(r);
                self.pods[p].created = -2 * 3600 * SEC;
                if self.try_schedule(p) {
                    let pod = &mut self.pods[p];
                    pod.phase = PodPhase::Ready;
                    pod.scheduled_at = Some(-2 * 3600 * SEC);
                    pod.started = Some(-2 * 3600 * SEC + 60 * SEC);
                    pod.ready_since = Some(-2 * 3600 * SEC + 200 * SEC);
                    pod.epoch += 1;
                    pod.vllm.created_unix_s = (self.start_unix_ns - 2 * 3600 * SEC + 60 * SEC) as f64 / 1e9;
                    if let Some(n) = pod.node
                        && !self.nodes[n].images.contains(&spec.image)
                    {
                        self.nodes[n].images.push(spec.image.clone());
                    }
                }
                self.emit_pod(p);
            }
            if spec.hpa.is_some() {
                // The recommendation history says the current size held until just before the
                // first decision, as it does for an HPA that has run for days: a stabilization
                // window starts full, not empty. (Dated at the warm-up's start, it had expired
                // by the first sync, and a first noisy reading scaled down at once.)
                self.models[m].hpa_recs.push_back((-WARMUP + HPA_START - SEC, spec.replicas));
            }
            self.emit_replicaset(r);
            self.emit_deployment(m);
            self.emit_hpa(m);
            self.schedule_arrival(m);
            if self.models[m].hpa.is_some() {
                self.at(-WARMUP + HPA_START - HPA_SAMPLING + m as i64 * 3 * SEC, Ev::HpaSync(m));
            }
        }
        self.at(-WARMUP, Ev::GpuTick);
        for i in 0..self.scenario.actions.len() {
            let t = self.scenario.actions[i].at.as_nanos_i64();
            self.at(t, Ev::Action(i));
        }
        self.run_until(-1);
        self.out.requests.clear();
        self.out.progress.clear();
        self.completed = 0;
        self.quiet = false;
    }

    fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.spec.name == name)
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub(crate) fn on_action(&mut self, i: usize) {
        let a = self.scenario.actions[i].clone();
        let causal = a.causal;
        if let Some(d) = &a.deploy
            && let Some(m) = self.model_index(&d.deployment)
        {
            let old = self.models[m].replicasets.last().map(|&r| self.replicasets[r].image.clone()).unwrap_or_default();
            let image = d.image.clone().unwrap_or_else(|| bump_tag(&old, self.models[m].replicasets.len()));
            let r = self.new_replicaset(m, image.clone(), d.compute_factor, self.now());
            self.models[m].deploy_changes += 1;
            self.push_truth(
                "deploy",
                format!("deployment/{}", d.deployment),
                causal,
                Some(format!("image {old} -> {image}; new replicaset {}", self.replicasets[r].name)),
            );
            self.reconcile_deployment(m);
        }
        if let Some(h) = &a.set_hpa
            && let Some(m) = self.model_index(&h.deployment)
            && let Some(spec) = self.models[m].hpa.as_mut()
        {
            if let Some(t) = h.target {
                spec.target = t;
            }
            if let Some(v) = h.min {
                spec.min = v;
            }
            if let Some(v) = h.max {
                spec.max = v;
            }
            self.models[m].hpa_pending_truth = Some(causal);
            self.emit_hpa(m);
        }
        if let Some(s) = &a.scale
            && let Some(m) = self.model_index(&s.deployment)
        {
            let before = self.models[m].replicas;
            self.models[m].replicas = s.replicas;
            self.models[m].deploy_changes += 1;
            let kind = if s.replicas < before { "scale_down" } else { "scale_up" };
            self.push_truth(
                kind,
                format!("deployment/{}", s.deployment),
                causal,
                Some(format!("replicas {before}->{}", s.replicas)),
            );
            self.reconcile_deployment(m);
        }
        if let Some(t) = &a.traffic
            && let Some(m) = self.model_index(&t.deployment)
        {
            let now = self.now();
            let st = &mut self.models[m];
            let from = st.rate_changes.last().map(|c| c.3).unwrap_or(1.0);
            st.rate_changes.push((now, t.ramp.as_nanos_i64(), from, from * t.factor));
            self.push_truth(
                "traffic_surge",
                format!("deployment/{}", t.deployment),
                causal,
                Some(format!("request rate x{}", t.factor)),
            );
        }
        if let Some(w) = &a.workload
            && let Some(m) = self.model_index(&w.deployment)
        {
            let mut detail = Vec::new();
            let ramp = w.ramp.as_nanos_i64();
            if ramp > 0 {
                let st = &self.models[m];
                self.models[m].workload_ramp = Some((self.now, ramp, st.prompt.clone(), st.output.clone()));
                detail.push(format!("over {}", w.ramp));
            }
            if let Some(p) = &w.prompt_tokens {
                detail.push(format!("prompt tokens {} -> {p}", self.models[m].prompt));
                self.models[m].prompt = p.clone();
            }
            if let Some(o) = &w.output_tokens {
                detail.push(format!("output tokens {} -> {o}", self.models[m].output));
                self.models[m].output = o.clone();
            }
            self.push_truth("workload_shift", format!("deployment/{}", w.deployment), causal, Some(detail.join("; ")));
        }
        if let Some(n) = &a.node_lost
            && let Some(k) = self.node_index(&n.node)
        {
            self.push_truth("node_lost", format!("node/{}", n.node), causal, None);
            self.node_lost(k);
        }
        if let Some(p) = &a.add_node
            && let Some(pool) = self.scenario.pools.iter().position(|q| q.name == p.pool)
        {
            let n = self.add_node(pool, false, self.now());
            let name = self.nodes[n].name.clone();
            self.push_truth("node_added", format!("node/{name}"), causal, None);
            self.on_node_ready(n);
        }
        if let Some(g) = &a.gpu_throttle
            && let Some(n) = self.node_index(&g.node)
        {
            self.nodes[n].throttle_causal = Some(causal);
            for gpu in self.nodes[n].gpus.iter_mut() {
                if g.gpus.as_ref().is_none_or(|list| list.contains(&gpu.index)) {
                    gpu.throttle = Some((g.clock_mhz, g.reason, false));
                }
            }
        }
        if let Some(o) = &a.oom_loop
            && let Some(m) = self.model_index(&o.deployment)
        {
            let mut targets: Vec<usize> =
                self.models[m].pods.iter().copied().filter(|&p| self.pods[p].is_serving()).collect();
            targets.sort_unstable();
            for (k, p) in targets.into_iter().take(o.pods as usize).enumerate() {
                self.pods[p].oom_after = Some(o.after.as_nanos_i64());
                self.pods[p].oom_causal = causal;
                let e = self.pods[p].epoch;
                self.at(self.now() + SEC + k as i64 * 15 * SEC, Ev::Lifecycle(p, e, super::cluster::Stage::Oom));
            }
        }
    }

    /// First throttled GPU of a node: the fault takes effect.
    pub(crate) fn on_throttle_started(&mut self, key: &str) {
        let Some(n) = key.split('/').next().and_then(|s| s.parse::<usize>().ok()) else { return };
        if let Some(causal) = self.nodes[n].throttle_causal.take() {
            let node = &self.nodes[n];
            let g = node.gpus.iter().find(|g| g.throttle.is_some() && g.reasons != 0);
            let detail = g.map(|g| {
                let why = if g.reasons & super::gpu::REASON_SW_POWER_CAP != 0 { "power cap" } else { "thermal" };
                format!("SM clock {} -> {} MHz ({why}, {:.0} C)", g.max_clock_mhz, g.clock_mhz, g.temp_c)
            });
            let name = node.name.clone();
            self.push_truth("gpu_throttle", format!("node/{name}"), causal, detail);
        }
    }
}

/// `vllm/vllm-openai:v0.11.0` -> `vllm/vllm-openai:v0.11.0-r2`.
fn bump_tag(image: &str, revision: usize) -> String {
    let base = image.split("-r").next().unwrap_or(image);
    format!("{base}-r{}", revision + 1)
}
