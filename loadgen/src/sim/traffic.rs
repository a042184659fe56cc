//! Traffic: the arrival process per model, the gateway's routing to ready
//! pods (round robin over the Service's endpoints), the engine's steps, and
//! finished or failed requests turned into records.

use std::collections::VecDeque;

use rand::Rng;
use rand_distr::{Distribution, Exp};

use super::engine::Req;
use super::{Ev, RequestRecord, ServerTimes, Sim};
use crate::dist::TokenDist;
use crate::scenario::{Arrival, ModelSpec};

const SEC: i64 = 1_000_000_000;

/// Per-model state: the Deployment's desired replicas, its ReplicaSets and pods,
/// the HPA's memory and the current traffic shape.
#[derive(Debug, Clone)]
pub(crate) struct ModelState {
    pub spec: ModelSpec,
    pub replicas: u32,
    pub replicasets: Vec<usize>,
    pub pods: Vec<usize>,
    pub hpa: Option<crate::scenario::HpaSpec>,
    pub hpa_recs: VecDeque<(i64, u32)>,
    pub hpa_removed: VecDeque<(i64, u32)>,
    pub hpa_last_scale: Option<i64>,
    pub hpa_metric: f64,
    pub hpa_samples: VecDeque<f64>,
    /// Set by a set_hpa action: the next rescale goes into the ground truth.
    pub hpa_pending_truth: Option<bool>,
    /// Rate multiplier changes: (start, ramp, from, to).
    pub rate_changes: Vec<(i64, i64, f64, f64)>,
    pub prompt: TokenDist,
    pub output: TokenDist,
    /// A workload change being ramped in: (start, ramp, old prompt, old output).
    pub workload_ramp: Option<(i64, i64, TokenDist, TokenDist)>,
    pub endpoints: Vec<usize>,
    pub endpoints_dirty: bool,
    pub rr: usize,
    /// Spec changes of the Deployment (for metadata.generation).
    pub deploy_changes: u64,
}

impl ModelState {
    pub(crate) fn new(spec: ModelSpec) -> ModelState {
        ModelState {
            replicas: spec.replicas,
            hpa: spec.hpa.clone(),
            prompt: spec.traffic.prompt_tokens.clone(),
            output: spec.traffic.output_tokens.clone(),
            spec,
            replicasets: Vec::new(),
            pods: Vec::new(),
            hpa_recs: VecDeque::new(),
            hpa_removed: VecDeque::new(),
            hpa_last_scale: None,
            hpa_metric: 0.0,
            hpa_samples: VecDeque::new(),
            hpa_pending_truth: None,
            rate_changes: Vec::new(),
            workload_ramp: None,
            endpoints: Vec::new(),
            endpoints_dirty: true,
            rr: 0,
            deploy_changes: 0,
        }
    }

    /// Requests per second at simulated time `t`.
    pub(crate) fn rate(&self, t: i64) -> f64 {
        let tr = &self.spec.traffic;
        let mut r = tr.rate;
        if let Some(d) = &tr.diurnal {
            let period = d.period.0.as_secs_f64().max(1.0);
            r *= 1.0 + d.amplitude * (2.0 * std::f64::consts::PI * (t as f64 / 1e9) / period).sin();
        }
        if let Some(b) = &tr.bursts {
            let every = b.every.as_nanos_i64().max(1);
            if t.rem_euclid(every) < b.length.as_nanos_i64() {
                r *= b.factor;
            }
        }
        let mut factor = 1.0;
        for &(start, ramp, from, to) in &self.rate_changes {
            if t >= start + ramp {
                factor = to;
            } else if t >= start {
                factor = from + (to - from) * ((t - start) as f64 / ramp.max(1) as f64);
            }
        }
        (r * factor).max(0.0)
    }
}

/// A request from outside the simulation (the OpenAI API in live mode).
#[derive(Debug, Clone)]
pub struct Injected<'a> {
    /// A Deployment name or the served model id.
    pub model: &'a str,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    /// Caller's id; progress and the finished record carry it.
    pub external: u64,
    pub stream: bool,
    pub chat: bool,
    pub trace_parent: Option<(u128, u64)>,
}

impl Sim {
    pub(crate) fn schedule_arrival(&mut self, m: usize) {
        let rate = self.models[m].rate(self.now) * self.traffic_scale;
        if rate <= 0.0 {
            self.at(self.now + SEC, Ev::Arrival(m, false));
            return;
        }
        let gap_s = match self.models[m].spec.traffic.arrival {
            Arrival::Constant => 1.0 / rate,
            Arrival::Poisson => Exp::new(rate).map(|d| d.sample(&mut self.rng)).unwrap_or(1.0 / rate),
        };
        let gap = ((gap_s * 1e9) as i64).max(1);
        // A Poisson process is memoryless: past a second, look again at the (maybe changed)
        // rate instead of committing to a long gap.
        if gap > SEC && self.models[m].spec.traffic.arrival == Arrival::Poisson {
            self.at(self.now + SEC, Ev::Arrival(m, false));
            return;
        }
        self.at(self.now + gap, Ev::Arrival(m, true));
    }

    pub(crate) fn on_arrival(&mut self, m: usize, real: bool) {
        if real {
            let st = &self.models[m];
            let (mut prompt_dist, mut output_dist) = (&st.prompt, &st.output);
            if let Some((start, ramp, old_prompt, old_output)) = &st.workload_ramp
                && self.now < start + ramp
            {
                let new_share = (self.now - start) as f64 / (*ramp).max(1) as f64;
                if self.rng.random::<f64>() >= new_share {
                    (prompt_dist, output_dist) = (old_prompt, old_output);
                }
            }
            let prompt = prompt_dist.sample(&mut self.rng);
            let output = output_dist.sample(&mut self.rng);
            let id = self.next_req;
            self.next_req += 1;
            let mut r = Req::new(id, m, self.now, prompt, output);
            r.chat = self.models[m].spec.traffic.api == "chat";
            self.route(r);
        }
        self.schedule_arrival(m);
    }

    /// Injects a request from outside (the OpenAI API); returns its id.
    pub fn inject(&mut self, req: Injected<'_>) -> Option<u64> {
        let m = self.models.iter().position(|s| s.spec.name == req.model || s.spec.model == req.model)?;
        let id = self.next_req;
        self.next_req += 1;
        let mut r = Req::new(id, m, self.now, req.prompt_tokens.max(1), req.max_tokens.max(1));
        r.external = Some(req.external);
        r.stream = req.stream;
        r.chat = req.chat;
        r.trace_parent = req.trace_parent;
        self.route(r);
        Some(id)
    }

    fn refresh_endpoints(&mut self, m: usize) {
        if !self.models[m].endpoints_dirty {
            return;
        }
        let mut eps: Vec<usize> =
            self.models[m].pods.iter().copied().filter(|&p| self.pods[p].phase == super::PodPhase::Ready).collect();
        eps.sort_unstable();
        self.models[m].endpoints = eps;
        self.models[m].endpoints_dirty = false;
    }

    /// The gateway: round robin over the Service's ready endpoints.
    fn route(&mut self, mut r: Req) {
        let m = r.model;
        self.refresh_endpoints(m);
        let n = self.models[m].endpoints.len();
        if n == 0 {
            let t = self.now + 2_000_000;
            self.at(t, Ev::Fail(Box::new(r), 503));
            return;
        }
        let i = self.models[m].rr % n;
        self.models[m].rr = self.models[m].rr.wrapping_add(1);
        let p = self.models[m].endpoints[i];
        let net = 300_000 + self.rng.random_range(0..1_200_000);
        r.pod_arrival = self.now + net;
        self.at(r.pod_arrival, Ev::Deliver(p, Box::new(r)));
    }

    pub(crate) fn on_deliver(&mut self, p: usize, r: Req) {
        let pod = &mut self.pods[p];
        if pod.dead {
            let t = self.now + super::cluster::CONNECT_TIMEOUT;
            self.at(t, Ev::Fail(Box::new(r), 503));
            return;
        }
        if !matches!(pod.phase, super::PodPhase::Ready | super::PodPhase::Terminating) {
            // Connection refused: the gateway answers 503 at once.
            self.fail(r, 503);
            return;
        }
        pod.engine.waiting.push_back(r);
        if !pod.engine.stepping {
            self.start_step(p);
        }
    }

    fn start_step(&mut self, p: usize) {
        let m = self.pods[p].model;
        let slow = self.pod_slowdown(p);
        let mut rejected = Vec::new();
        let now = self.now;
        let spec = &self.scenario.models[m].server;
        let len = self.pods[p].engine.start_step(now, spec, slow, &mut rejected);
        for r in rejected {
            self.fail(r, 400);
        }
        if let Some(len) = len {
            let e = self.pods[p].engine.epoch;
            self.at(now + len, Ev::StepEnd(p, e));
        }
    }

    pub(crate) fn on_step_end(&mut self, p: usize, epoch: u64) {
        if self.pods[p].engine.epoch != epoch || !self.pods[p].engine.stepping {
            return;
        }
        let now = self.now;
        let res = self.pods[p].engine.finish_step(now);
        let info = self.pods[p].info.clone();
        let tpot = res.len;
        self.observe_step(p, tpot, res.tokens);
        for r in &self.pods[p].engine.running {
            if let Some(x) = r.external {
                self.out.progress.push(super::Progress { external: x, generated: r.generated });
            }
        }
        for r in res.finished {
            let back = 300_000 + self.rng.random_range(0..1_200_000);
            let server = ServerTimes {
                arrival: self.unix(r.pod_arrival),
                scheduled: self.unix(r.scheduled.unwrap_or(r.pod_arrival)),
                first_token: self.unix(r.first_token.unwrap_or(now)),
                finish: self.unix(now),
                preemptions: r.preemptions,
            };
            self.observe_request(p, &r, now);
            if let Some(x) = r.external {
                self.out.progress.push(super::Progress { external: x, generated: r.generated });
            }
            self.completed += 1;
            self.out.requests.push(RequestRecord {
                id: r.id,
                model: r.model,
                start: self.unix(r.arrival),
                end: self.unix(now + back),
                server: Some(server),
                pod: info.clone(),
                prompt_tokens: r.prompt,
                output_tokens: r.generated,
                status: 200,
                external: r.external,
                trace_parent: r.trace_parent,
                chat: r.chat,
            });
        }
        if self.pods[p].phase == super::PodPhase::Terminating && self.pods[p].engine.in_flight() == 0 {
            let e = self.pods[p].epoch;
            self.at(now, Ev::Lifecycle(p, e, super::cluster::Stage::Killed));
        }
        self.start_step(p);
    }

    /// A request that failed at the gateway (no endpoints, upstream died, timeout).
    pub(crate) fn fail(&mut self, r: Req, status: u16) {
        self.completed += 1;
        self.out.requests.push(RequestRecord {
            id: r.id,
            model: r.model,
            start: self.unix(r.arrival),
            end: self.unix(self.now.max(r.arrival + 1_000_000)),
            server: None,
            pod: None,
            prompt_tokens: r.prompt,
            output_tokens: r.generated,
            status,
            external: r.external,
            trace_parent: r.trace_parent,
            chat: r.chat,
        });
        if let Some(x) = r.external {
            self.out.progress.push(super::Progress { external: x, generated: r.generated });
        }
    }
}
