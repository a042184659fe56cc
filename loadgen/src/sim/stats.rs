//! What each pod's `/metrics` reports: vLLM's per-request histograms and
//! counters, fed as requests finish and steps run.

use super::Sim;
use super::engine::Req;

/// Cumulative-bucket histogram with fixed bounds (seconds or tokens).
#[derive(Debug, Clone, Default)]
pub struct Hist {
    pub bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one is +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Hist {
    pub fn new(bounds: &'static [f64]) -> Hist {
        Hist { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }
    pub fn observe_n(&mut self, v: f64, n: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += n;
        self.sum += v * n as f64;
        self.count += n;
    }
}

pub const LATENCY_S: &[f64] =
    &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
pub const TTFT_S: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0,
    640.0, 2560.0,
];
pub const ITL_S: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
pub const TOKENS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0];

/// Per-pod vLLM metrics state.
#[derive(Debug, Clone)]
pub struct PodStats {
    pub e2e: Hist,
    pub queue: Hist,
    pub ttft: Hist,
    pub itl: Hist,
    pub prefill: Hist,
    pub decode: Hist,
    pub inference: Hist,
    pub prompt_tokens: Hist,
    pub generation_tokens: Hist,
    pub success_stop: u64,
    pub success_length: u64,
}

impl Default for PodStats {
    fn default() -> Self {
        PodStats {
            e2e: Hist::new(LATENCY_S),
            queue: Hist::new(LATENCY_S),
            ttft: Hist::new(TTFT_S),
            itl: Hist::new(ITL_S),
            prefill: Hist::new(LATENCY_S),
            decode: Hist::new(LATENCY_S),
            inference: Hist::new(LATENCY_S),
            prompt_tokens: Hist::new(TOKENS),
            generation_tokens: Hist::new(TOKENS),
            success_stop: 0,
            success_length: 0,
        }
    }
}

impl Sim {
    pub(crate) fn observe_step(&mut self, p: usize, len_ns: i64, tokens: usize) {
        if tokens > 0 {
            self.pods[p].stats.itl.observe_n(len_ns as f64 / 1e9, tokens as u64);
        }
    }

    pub(crate) fn observe_request(&mut self, p: usize, r: &Req, now: i64) {
        let s = &mut self.pods[p].stats;
        let sec = |a: i64, b: i64| (b - a).max(0) as f64 / 1e9;
        let sched = r.scheduled.unwrap_or(r.pod_arrival);
        let first = r.first_token.unwrap_or(now);
        s.e2e.observe_n(sec(r.pod_arrival, now), 1);
        s.queue.observe_n(sec(r.pod_arrival, sched), 1);
        s.ttft.observe_n(sec(r.pod_arrival, first), 1);
        s.prefill.observe_n(sec(sched, first), 1);
        s.decode.observe_n(sec(first, now), 1);
        s.inference.observe_n(sec(sched, now), 1);
        s.prompt_tokens.observe_n(f64::from(r.prompt), 1);
        s.generation_tokens.observe_n(f64::from(r.generated), 1);
        // Load generators fix the output length (max_tokens, ignore_eos): vLLM reports "length".
        if r.external.is_some() {
            s.success_stop += 1;
        } else {
            s.success_length += 1;
        }
    }
}
