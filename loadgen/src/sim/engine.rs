//! One model server's engine, modelled on vLLM's continuous batching.
//!
//! Each engine step admits waiting requests first-come-first-served while
//! there is room — at most `max_num_seqs` running, their prompts within the
//! step's `max_batched_tokens` prefill budget, and enough free KV cache — then
//! runs one forward pass: prefill of the admitted prompts plus one decode
//! token for every running sequence. The step costs
//! `prefill_tokens x prefill_cost + decode_step + running x per_seq + kv_held x per_kv_token`,
//! times the pod's slowdown (GPU clock, model version). Every request in the
//! step gains one token; finished requests free their KV blocks. When the KV
//! cache overflows (sequences grow by a token per step), the most recently
//! admitted request is preempted and recomputed later, as vLLM v1 does. So
//! under load the batch grows first (time per token rises: compute), and once
//! the batch or KV cache is full requests wait (queue time rises).

use std::collections::VecDeque;

use crate::scenario::ServerSpec;

/// A request inside the simulated cluster.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub id: u64,
    pub model: usize,
    /// Gateway receive time (ns since the scenario start).
    pub arrival: i64,
    /// Arrival at the model server.
    pub pod_arrival: i64,
    pub prompt: u32,
    pub output: u32,
    pub generated: u32,
    /// First time the engine admitted it (end of queue time).
    pub scheduled: Option<i64>,
    pub first_token: Option<i64>,
    /// Tokens to prefill when next admitted (prompt, or prompt + generated after a preemption).
    pub recompute: u32,
    /// KV tokens held while running.
    pub held: u64,
    pub prefilling: bool,
    pub preemptions: u32,
    /// Set for requests that came in through the OpenAI API (live mode).
    pub external: Option<u64>,
    pub stream: bool,
    /// W3C trace context the client sent (trace id, parent span id).
    pub trace_parent: Option<(u128, u64)>,
    /// Came in as `/v1/chat/completions` (else `/v1/completions`).
    pub chat: bool,
}

impl Req {
    pub(crate) fn new(id: u64, model: usize, arrival: i64, prompt: u32, output: u32) -> Req {
        Req {
            id,
            model,
            arrival,
            pod_arrival: arrival,
            prompt,
            output,
            generated: 0,
            scheduled: None,
            first_token: None,
            recompute: prompt,
            held: 0,
            prefilling: false,
            preemptions: 0,
            external: None,
            stream: false,
            trace_parent: None,
            chat: true,
        }
    }
}

/// Counters a vLLM server exports, kept since the pod started.
#[derive(Debug, Clone, Default)]
pub(crate) struct EngineCounters {
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    /// Prompt and generated tokens prefilled again after a preemption.
    pub recomputed_tokens: u64,
    pub finished: u64,
    pub aborted: u64,
    /// Time spent in forward passes (GPU busy), ns.
    pub busy_ns: i64,
    /// Sum over steps of running sequences x step time (for mean batch size).
    pub batch_ns: f64,
}

/// The engine of one pod.
#[derive(Debug, Default)]
pub(crate) struct Engine {
    pub waiting: VecDeque<Req>,
    pub running: Vec<Req>,
    pub kv_used: u64,
    pub kv_capacity: u64,
    /// A step is in flight (its end event is queued).
    pub stepping: bool,
    /// Bumped when the engine is reset (crash), so stale step events are ignored.
    pub epoch: u64,
    pub step_started: i64,
    pub step_len: i64,
    pub counters: EngineCounters,
}

/// What a finished step produced.
#[derive(Debug, Default)]
pub(crate) struct StepResult {
    pub finished: Vec<Req>,
    /// Sequences that produced a token in this step, and how long the step took.
    pub tokens: usize,
    pub len: i64,
}

impl Engine {
    pub(crate) fn new(spec: &ServerSpec) -> Engine {
        Engine { kv_capacity: spec.kv_cache_tokens, ..Engine::default() }
    }

    pub(crate) fn kv_usage(&self) -> f64 {
        if self.kv_capacity == 0 { 0.0 } else { (self.kv_used as f64 / self.kv_capacity as f64).min(1.0) }
    }

    /// Starts a step at `now` if there is work; returns its length in ns.
    pub(crate) fn start_step(
        &mut self,
        now: i64,
        spec: &ServerSpec,
        slowdown: f64,
        rejected: &mut Vec<Req>,
    ) -> Option<i64> {
        let mut budget = spec.max_batched_tokens as u64;
        let mut prefill_tokens = 0u64;
        let mut admitted = 0usize;
        while let Some(front) = self.waiting.front() {
            let need = u64::from(front.recompute);
            if need + 1 > self.kv_capacity {
                if let Some(r) = self.waiting.pop_front() {
                    rejected.push(r);
                }
                continue;
            }
            if self.running.len() >= spec.max_num_seqs as usize || self.kv_used + need + 1 > self.kv_capacity {
                break;
            }
            if need > budget && admitted > 0 {
                break;
            }
            let Some(mut r) = self.waiting.pop_front() else { break };
            r.scheduled.get_or_insert(now);
            r.prefilling = true;
            r.held = need;
            self.kv_used += need;
            budget = budget.saturating_sub(need);
            prefill_tokens += need;
            admitted += 1;
            self.running.push(r);
        }
        if self.running.is_empty() {
            self.stepping = false;
            return None;
        }
        let decoding = (self.running.len() - admitted) as f64;
        let mut ms = prefill_tokens as f64 * spec.prefill_us_per_token / 1000.0;
        if decoding > 0.0 || admitted > 0 {
            ms += spec.decode_step_ms
                + self.running.len() as f64 * spec.decode_us_per_seq / 1000.0
                + self.kv_used as f64 * spec.decode_ns_per_kv_token / 1e6;
        }
        let len = ((ms * slowdown) * 1e6).round().max(1000.0) as i64;
        self.stepping = true;
        self.step_started = now;
        self.step_len = len;
        Some(len)
    }

    /// Ends the step started by [`Engine::start_step`] at `now`.
    pub(crate) fn finish_step(&mut self, now: i64) -> StepResult {
        let mut out = StepResult { len: self.step_len, ..StepResult::default() };
        self.counters.busy_ns += self.step_len;
        self.counters.batch_ns += self.running.len() as f64 * self.step_len as f64;
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            if r.prefilling {
                r.prefilling = false;
                self.counters.prompt_tokens += u64::from(r.recompute);
                if r.preemptions > 0 {
                    self.counters.recomputed_tokens += u64::from(r.recompute);
                }
                r.first_token.get_or_insert(now);
            }
            r.generated += 1;
            r.held += 1;
            self.kv_used += 1;
            self.counters.generation_tokens += 1;
            out.tokens += 1;
            if r.generated >= r.output {
                let r = self.running.remove(i);
                self.kv_used -= r.held;
                self.counters.finished += 1;
                out.finished.push(r);
            } else {
                i += 1;
            }
        }
        while self.kv_used > self.kv_capacity {
            let Some(mut r) = self.running.pop() else { break };
            self.kv_used -= r.held;
            r.held = 0;
            r.recompute = r.prompt + r.generated;
            r.preemptions += 1;
            self.counters.preemptions += 1;
            self.waiting.push_front(r);
        }
        self.stepping = false;
        out
    }

    /// The server died: every request it held is returned (they fail).
    pub(crate) fn crash(&mut self) -> Vec<Req> {
        self.epoch += 1;
        self.stepping = false;
        self.kv_used = 0;
        let mut lost: Vec<Req> = self.running.drain(..).collect();
        lost.extend(self.waiting.drain(..));
        self.counters.aborted += lost.len() as u64;
        lost
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.running.len() + self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec { max_num_seqs: 4, kv_cache_tokens: 2000, ..ServerSpec::default() }
    }

    fn run(e: &mut Engine, spec: &ServerSpec) -> (i64, Vec<Req>) {
        let mut now = 0;
        let mut done = Vec::new();
        let mut rej = Vec::new();
        while let Some(len) = e.start_step(now, spec, 1.0, &mut rej) {
            now += len;
            done.extend(e.finish_step(now).finished);
        }
        (now, done)
    }

    #[test]
    fn single_request_costs_prefill_then_one_step_per_token() {
        let s = spec();
        let mut e = Engine::new(&s);
        e.waiting.push_back(Req::new(1, 0, 0, 100, 10));
        let (end, done) = run(&mut e, &s);
        assert_eq!(done.len(), 1);
        let r = &done[0];
        assert_eq!(r.generated, 10);
        assert_eq!(r.scheduled, Some(0));
        // prefill 100 x 40us = 4ms plus one step for the first token
        let first = r.first_token.unwrap();
        assert!(first > 15_000_000 && first < 25_000_000, "{first}");
        assert!(end > first + 9 * 15_000_000, "{end}");
        assert_eq!(e.kv_used, 0);
        assert_eq!(e.counters.generation_tokens, 10);
    }

    #[test]
    fn batch_cap_makes_requests_wait() {
        let s = spec();
        let mut e = Engine::new(&s);
        for i in 0..8 {
            e.waiting.push_back(Req::new(i, 0, 0, 50, 20));
        }
        let (_, done) = run(&mut e, &s);
        assert_eq!(done.len(), 8);
        let queued: Vec<i64> = done.iter().map(|r| r.scheduled.unwrap()).collect();
        assert_eq!(queued.iter().filter(|&&q| q == 0).count(), 4, "{queued:?}");
        assert!(queued.iter().filter(|&&q| q > 0).all(|&q| q > 15_000_000 * 19), "{queued:?}");
    }

    #[test]
    fn kv_overflow_preempts_and_recomputes() {
        let s = ServerSpec { max_num_seqs: 16, kv_cache_tokens: 1100, ..ServerSpec::default() };
        let mut e = Engine::new(&s);
        for i in 0..2 {
            e.waiting.push_back(Req::new(i, 0, 0, 500, 200));
        }
        let (_, done) = run(&mut e, &s);
        assert_eq!(done.len(), 2);
        assert!(e.counters.preemptions >= 1);
        assert!(done.iter().all(|r| r.generated == 200));
        assert_eq!(e.kv_used, 0);
    }

    #[test]
    fn oversized_prompt_is_rejected_not_stuck() {
        let s = spec();
        let mut e = Engine::new(&s);
        e.waiting.push_back(Req::new(1, 0, 0, 5000, 10));
        let mut rej = Vec::new();
        assert!(e.start_step(0, &s, 1.0, &mut rej).is_none());
        assert_eq!(rej.len(), 1);
    }
}
