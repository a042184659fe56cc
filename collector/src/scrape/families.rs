//! Which scraped series matter for inference, i.e. what goes into the `samples` table.
//!
//! A series is kept when its full name (e.g. `vllm:e2e_request_latency_seconds_bucket`)
//! matches an allow pattern and no deny pattern: deny wins. The patterns are regular
//! expressions (Rust `regex` syntax, unanchored unless written with `^`/`$`).
//!
//! The default allow-list ([`DEFAULT_ALLOW`]) covers:
//! - dcgm-exporter: utilization (GPU, memory copy, SM active/occupancy, graphics engine,
//!   tensor pipe, DRAM), framebuffer used/free, power, clocks, temperatures, throttle and
//!   clock-event reasons, violation counters, XID errors, ECC and row-remap health, PCIe
//!   and NVLink traffic;
//! - vLLM (`vllm:`): running/waiting/swapped requests, KV and prefix cache, the latency
//!   histograms (e2e, TTFT, TPOT, inter-token, queue, prefill, decode, inference), token
//!   counters and histograms, preemptions, request success, cache config, LoRA info;
//! - Triton: every `nv_inference_*` series, and `nv_gpu_*` utilization, memory and power;
//! - TGI: every `tgi_*` series;
//! - `up`.
//!
//! The default deny-list ([`DEFAULT_DENY`]) drops `*_created` series (a start time, not a
//! measurement), and the `python_`/`process_` runtime families model servers expose.
//! [`FilterConfig`] adds patterns to both lists.

use std::collections::HashMap;

use regex::RegexSet;
use serde::{Deserialize, Serialize};

use super::parse::Parsed;

/// The default allow patterns (see the module documentation).
pub const DEFAULT_ALLOW: &[&str] = &[
    r"^up$",
    concat!(
        r"^DCGM_FI_DEV_(GPU_UTIL|MEM_COPY_UTIL|FB_USED|FB_FREE|POWER_USAGE|TOTAL_ENERGY_CONSUMPTION",
        r"|SM_CLOCK|MEM_CLOCK|GPU_TEMP|MEMORY_TEMP|XID_ERRORS|CLOCK_THROTTLE_REASONS|CLOCKS_EVENT_REASONS",
        r"|(POWER|THERMAL|SYNC_BOOST|BOARD_LIMIT|LOW_UTIL|RELIABILITY)_VIOLATION",
        r"|ECC_(SBE|DBE)_VOL_TOTAL|ROW_REMAP_FAILURE|UNCORRECTABLE_REMAPPED_ROWS",
        r"|NVLINK_BANDWIDTH_TOTAL)$"
    ),
    concat!(
        r"^DCGM_FI_PROF_(SM_ACTIVE|SM_OCCUPANCY|GR_ENGINE_ACTIVE|PIPE_TENSOR_ACTIVE|DRAM_ACTIVE",
        r"|PIPE_FP(16|32|64)_ACTIVE|PCIE_(TX|RX)_BYTES|NVLINK_(TX|RX)_BYTES)$"
    ),
    r"^DCGM_EXP_(XID_ERRORS_COUNT|CLOCK_EVENTS_COUNT|GPU_HEALTH_STATUS)$",
    concat!(
        r"^vllm:(num_requests_(running|waiting|swapped)|(kv|gpu|cpu)_cache_usage_perc",
        r"|(gpu_|cpu_)?prefix_cache_(queries|hits|hit_rate)|e2e_request_latency_seconds",
        r"|time_to_first_token_seconds|(request_)?time_per_output_token_seconds",
        r"|inter_token_latency_seconds|request_(queue|prefill|decode|inference)_time_seconds",
        r"|prompt_tokens|generation_tokens|request_(prompt|generation)_tokens|iteration_tokens_total",
        r"|num_preemptions|request_success|cache_config_info|lora_requests_info)",
        r"(_total|_bucket|_sum|_count)?$"
    ),
    r"^nv_inference_",
    r"^nv_gpu_(utilization|memory_used_bytes|memory_total_bytes|power_usage|power_limit)$",
    r"^tgi_",
];

/// The default deny patterns (see the module documentation).
pub const DEFAULT_DENY: &[&str] = &[r"_created$", r"^python_", r"^process_"];

/// Patterns added to the default lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Extra allow patterns (regular expressions on the series name).
    pub allow: Vec<String>,
    /// Extra deny patterns; deny wins over allow.
    pub deny: Vec<String>,
}

/// The compiled allow and deny lists.
#[derive(Debug, Clone)]
pub struct FamilyFilter {
    allow: RegexSet,
    deny: RegexSet,
}

impl Default for FamilyFilter {
    /// The default lists alone.
    fn default() -> Self {
        Self::from_patterns(DEFAULT_ALLOW, DEFAULT_DENY).expect("the default patterns compile (tested)")
    }
}

impl FamilyFilter {
    /// The default lists plus `config`'s patterns. The error names the bad pattern.
    pub fn new(config: &FilterConfig) -> Result<Self, String> {
        let allow: Vec<&str> = DEFAULT_ALLOW.iter().copied().chain(config.allow.iter().map(String::as_str)).collect();
        let deny: Vec<&str> = DEFAULT_DENY.iter().copied().chain(config.deny.iter().map(String::as_str)).collect();
        Self::from_patterns(&allow, &deny)
    }

    /// Exactly these lists, without the defaults. The error names the bad pattern.
    pub fn from_patterns(allow: &[&str], deny: &[&str]) -> Result<Self, String> {
        Ok(Self { allow: compile(allow, "allow")?, deny: compile(deny, "deny")? })
    }

    /// Whether the series named `series` is kept.
    pub fn keeps(&self, series: &str) -> bool {
        self.allow.is_match(series) && !self.deny.is_match(series)
    }

    /// Drops the samples of `parsed` that are not kept, deciding once per series name.
    pub fn retain(&self, parsed: &mut Parsed<'_>) {
        let mut decided: HashMap<&str, bool> = HashMap::new();
        parsed.samples.retain(|s| *decided.entry(s.name).or_insert_with(|| self.keeps(s.name)));
    }
}

fn compile(patterns: &[&str], list: &str) -> Result<RegexSet, String> {
    for p in patterns {
        regex::Regex::new(p).map_err(|e| format!("scrape filter {list} pattern {p:?}: {e}"))?;
    }
    RegexSet::new(patterns).map_err(|e| format!("scrape filter {list} patterns: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_compile_and_deny_wins() {
        let f = FamilyFilter::default();
        for kept in [
            "up",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_PROF_SM_ACTIVE",
            "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
            "vllm:num_requests_waiting",
            "vllm:e2e_request_latency_seconds_bucket",
            "vllm:prompt_tokens_total",
            "vllm:iteration_tokens_total_bucket",
            "nv_inference_queue_duration_us",
            "nv_gpu_utilization",
            "tgi_request_queue_duration_bucket",
        ] {
            assert!(f.keeps(kept), "{kept}");
        }
        for dropped in [
            "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
            "DCGM_FI_DEV_GPU_UTILX",
            "vllm:prompt_tokens_created",
            "vllm:e2e_request_latency_seconds_created",
            "vllm:engine_sleep_state",
            "python_gc_objects_collected_total",
            "process_cpu_seconds_total",
            "http_requests_total",
            "tgi_request_count_created",
        ] {
            assert!(!f.keeps(dropped), "{dropped}");
        }
    }

    #[test]
    fn extra_patterns_and_bad_pattern() {
        let cfg = FilterConfig { allow: vec!["^sglang:".into()], deny: vec!["^tgi_batch_".into()] };
        let f = FamilyFilter::new(&cfg).unwrap();
        assert!(f.keeps("sglang:num_running_reqs"));
        assert!(!f.keeps("tgi_batch_current_size"));
        assert!(f.keeps("tgi_queue_size"));
        let err = FamilyFilter::new(&FilterConfig { allow: vec!["(".into()], deny: vec![] }).unwrap_err();
        assert!(err.contains("allow pattern \"(\""), "{err}");
    }
}
