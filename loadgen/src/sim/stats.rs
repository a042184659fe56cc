//! What each pod's and node's `/metrics` page shows: vLLM's per-request
//! histograms and counters (fed as steps run and requests finish) and
//! dcgm-exporter's per-GPU fields, rendered with [`crate::exposition`].

use super::Sim;
use super::engine::Req;
use crate::exposition::{DcgmGpu, VllmPod, render_dcgm, render_vllm};

/// vLLM's `max_model_len` for the simulated models (token bucket tops).
const MAX_MODEL_LEN: u32 = 32768;

pub(crate) fn new_vllm(model: &str, created_unix_s: f64, kv_tokens: u64) -> VllmPod {
    let mut v = VllmPod::new(model, MAX_MODEL_LEN, created_unix_s);
    v.cache_config.num_gpu_blocks = kv_tokens / u64::from(v.cache_config.block_size.max(1));
    v
}

impl Sim {
    pub(crate) fn observe_step(&mut self, p: usize, len_ns: i64, tokens: usize) {
        let v = &mut self.pods[p].vllm;
        let secs = len_ns as f64 / 1e9;
        for _ in 0..tokens {
            v.inter_token_latency_seconds.observe(secs);
        }
        v.iteration_tokens.observe(tokens as f64);
    }

    pub(crate) fn observe_request(&mut self, p: usize, r: &Req, now: i64) {
        let v = &mut self.pods[p].vllm;
        let sec = |a: i64, b: i64| (b - a).max(0) as f64 / 1e9;
        let sched = r.scheduled.unwrap_or(r.pod_arrival);
        let first = r.first_token.unwrap_or(now);
        v.e2e_request_latency_seconds.observe(sec(r.pod_arrival, now));
        v.request_queue_time_seconds.observe(sec(r.pod_arrival, sched));
        v.time_to_first_token_seconds.observe(sec(r.pod_arrival, first));
        v.request_prefill_time_seconds.observe(sec(sched, first));
        v.request_decode_time_seconds.observe(sec(first, now));
        v.request_inference_time_seconds.observe(sec(sched, now));
        if r.generated > 1 {
            v.request_time_per_output_token_seconds.observe(sec(first, now) / f64::from(r.generated - 1));
        }
        v.request_prompt_tokens.observe(f64::from(r.prompt));
        v.request_generation_tokens.observe(f64::from(r.generated));
        v.request_max_num_generation_tokens.observe(f64::from(r.output));
        v.request_params_max_tokens.observe(f64::from(r.output));
        v.request_params_n.observe(1.0);
        v.request_prefill_kv_computed_tokens.observe(f64::from(r.prompt));
        // Load generators fix the output length (max_tokens, ignore_eos): vLLM reports "length".
        v.request_success_total.length += 1;
    }

    /// The `/metrics` page of a model-server pod, or None if no such pod is running.
    pub fn render_pod_metrics(&self, namespace: &str, name: &str, timestamp_ms: Option<i64>) -> Option<String> {
        if namespace != self.scenario.namespace {
            return None;
        }
        let p = self.pods.iter().position(|p| p.name == name && p.started.is_some() && p.is_live() && !p.dead)?;
        let pod = &self.pods[p];
        let e = &pod.engine;
        let mut v = pod.vllm.clone();
        v.num_requests_running = e.running.len() as u64;
        v.num_requests_waiting = e.waiting.len() as u64;
        v.kv_cache_usage_perc = e.kv_usage();
        v.num_preemptions_total = e.counters.preemptions;
        v.prompt_tokens_total = e.counters.prompt_tokens;
        v.prompt_tokens_by_source_total.local_compute = e.counters.prompt_tokens;
        v.generation_tokens_total = e.counters.generation_tokens;
        v.prompt_tokens_recomputed_total = e.counters.recomputed_tokens;
        v.request_success_total.abort = e.counters.aborted;
        let mut out = String::with_capacity(24 * 1024);
        render_vllm(&mut out, &v, timestamp_ms);
        Some(out)
    }

    /// The dcgm-exporter `/metrics` page of a node, or None if the node is gone or silent.
    pub fn render_node_metrics(&self, node: &str, timestamp_ms: Option<i64>) -> Option<String> {
        let n = self.nodes.iter().position(|x| x.name == node && !x.lost && x.ready)?;
        let node = &self.nodes[n];
        let pool = &self.scenario.pools[node.pool];
        let gpus: Vec<DcgmGpu> = node
            .gpus
            .iter()
            .map(|g| {
                let pod = g.pod.map(|p| &self.pods[p]).filter(|p| p.is_live() && pool.dcgm_pod_labels);
                DcgmGpu {
                    gpu: g.index,
                    uuid: g.uuid.clone(),
                    pci_bus_id: g.pci_bus_id.clone(),
                    device: format!("nvidia{}", g.index),
                    model_name: pool.gpu_model.clone(),
                    hostname: node.name.clone(),
                    driver_version: "580.105.08".into(),
                    container: pod.map(|_| "vllm".to_string()),
                    namespace: pod.map(|_| self.scenario.namespace.clone()),
                    pod: pod.map(|p| p.name.clone()),
                    pod_uid: None,
                    sm_clock_mhz: g.clock_mhz,
                    mem_clock_mhz: 2619,
                    memory_temp_c: (g.temp_c + 4.0).round() as u32,
                    gpu_temp_c: g.temp_c.round() as u32,
                    power_usage_w: (g.power_w * 1000.0).round() / 1000.0,
                    total_energy_consumption_mj: g.energy_mj as u64 + 9_000_000_000,
                    gpu_util_pct: (g.util * 100.0).round() as u32,
                    mem_copy_util_pct: (g.dram_active * 100.0).round() as u32,
                    xid_errors: Some(0),
                    power_violation_ns_total: Some(g.power_violation_us * 1000),
                    thermal_violation_ns_total: Some(g.thermal_violation_us * 1000),
                    clocks_event_reasons: Some(g.reasons),
                    fb_free_mib: (g.fb_total_mib - g.fb_used_mib - 530.0).max(0.0) as u64,
                    fb_used_mib: g.fb_used_mib as u64,
                    fb_reserved_mib: 530,
                    gr_engine_active_ratio: g.util * 0.98,
                    sm_active_ratio: Some(g.sm_active),
                    sm_occupancy_ratio: Some(g.sm_occupancy),
                    pipe_tensor_active_ratio: g.tensor_active,
                    dram_active_ratio: g.dram_active,
                    pcie_tx_bytes_per_s: (g.util * 2.1e8) as u64,
                    pcie_rx_bytes_per_s: (g.util * 3.4e8) as u64,
                    ..DcgmGpu::default()
                }
            })
            .collect();
        let mut out = String::with_capacity(16 * 1024);
        render_dcgm(&mut out, &gpus, timestamp_ms);
        Some(out)
    }

    /// How many pods of model `name` serve requests now.
    pub fn serving_pods(&self, name: &str) -> usize {
        self.scenario
            .models
            .iter()
            .position(|m| m.name == name)
            .map_or(0, |m| self.models[m].pods.iter().filter(|&&p| self.pods[p].is_serving()).count())
    }

    /// Scrape targets of the moment: (path, namespace/pod or node) for every page.
    pub fn metrics_targets(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .pods
            .iter()
            .filter(|p| p.started.is_some() && p.is_live() && !p.dead)
            .map(|p| format!("/pods/{}/{}/metrics", self.scenario.namespace, p.name))
            .collect();
        t.extend(self.nodes.iter().filter(|n| !n.lost && n.ready).map(|n| format!("/nodes/{}/metrics", n.name)));
        t
    }
}
