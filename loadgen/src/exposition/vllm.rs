//! vLLM v1 `/metrics`, as Python `prometheus_client` writes it.
//!
//! Families, HELP texts, label names and bucket sets follow the real capture
//! `tests/fixtures/vllm/vllm-v1_qwen2.5-0.5b_idle_kops.prom`, in its order.
//! Left out on purpose: `python_gc_*`, `python_info` (the Python runtime) and
//! `http_request*` (the API server's per-handler HTTP metrics); every `vllm:`
//! family is rendered.

use super::Histogram;

/// The engine's sleep level (`vllm:engine_sleep_state`, one-hot over
/// `sleep_state="awake|weights_offloaded|discard_all"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SleepState {
    /// Serving.
    #[default]
    Awake,
    /// Sleep level 1: weights offloaded to CPU memory.
    WeightsOffloaded,
    /// Sleep level 2: weights and KV cache discarded.
    DiscardAll,
}

/// `vllm:request_success_total` per `finished_reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FinishedReasonCounts {
    /// Finished on a stop token or string.
    pub stop: u64,
    /// Finished at `max_tokens` or the model length.
    pub length: u64,
    /// Aborted (client went away, cancelled).
    pub abort: u64,
    /// Failed inside the engine.
    pub error: u64,
    /// Stopped by the repetition detector.
    pub repetition: u64,
}

/// `vllm:prompt_tokens_by_source_total` per `source`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PromptTokenSources {
    /// Prompt tokens computed by this engine's prefill.
    pub local_compute: u64,
    /// Prompt tokens served from the local prefix cache.
    pub local_cache_hit: u64,
    /// Prompt tokens received from another instance through a KV connector.
    pub external_kv_transfer: u64,
}

/// The labels of `vllm:cache_config_info` that vary between deployments;
/// the others are rendered with the capture's values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VllmCacheConfig {
    /// Tokens per KV-cache block.
    pub block_size: u32,
    /// Fraction of GPU memory vLLM may use (`--gpu-memory-utilization`).
    pub gpu_memory_utilization: f64,
    /// KV-cache blocks on the GPU.
    pub num_gpu_blocks: u64,
    /// Whether automatic prefix caching is on.
    pub enable_prefix_caching: bool,
    /// CPU swap space in GiB.
    pub swap_space_gib: f64,
}

impl Default for VllmCacheConfig {
    /// The capture's values.
    fn default() -> Self {
        VllmCacheConfig {
            block_size: 16,
            gpu_memory_utilization: 0.9,
            num_gpu_blocks: 101_625,
            enable_prefix_caching: true,
            swap_space_gib: 4.0,
        }
    }
}

/// The `process_*` families of the server process (rendered when present).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// Virtual memory size.
    pub virtual_memory_bytes: f64,
    /// Resident memory size.
    pub resident_memory_bytes: f64,
    /// Process start, seconds since the Unix epoch (a restart shows here).
    pub start_time_unix_s: f64,
    /// User plus system CPU time.
    pub cpu_seconds_total: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// File descriptor limit.
    pub max_fds: u64,
}

/// The state of one vLLM v1 engine, as its `/metrics` page shows it.
/// Counters are cumulative since `created_unix_s`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VllmPod {
    /// `model_name` label, e.g. `Qwen/Qwen2.5-0.5B-Instruct`.
    pub model_name: String,
    /// `engine` label: the engine index, `"0"` for a single engine.
    pub engine: String,
    /// When the metrics were registered, seconds since the Unix epoch: the
    /// value of every `*_created` series.
    pub created_unix_s: f64,
    /// Process metrics; `None` leaves the `process_*` families out.
    pub process: Option<ProcessStats>,

    /// Requests in model execution batches.
    pub num_requests_running: u64,
    /// Requests waiting to be scheduled.
    pub num_requests_waiting: u64,
    /// KV-cache usage, 0..=1 (1 = full).
    pub kv_cache_usage_perc: f64,
    /// Sleep state of the engine.
    pub sleep_state: SleepState,

    /// Estimated floating point operations per GPU (for MFU).
    pub estimated_flops_per_gpu_total: f64,
    /// Estimated bytes read from memory per GPU.
    pub estimated_read_bytes_per_gpu_total: f64,
    /// Estimated bytes written to memory per GPU.
    pub estimated_write_bytes_per_gpu_total: f64,
    /// Prefix-cache queries, in queried tokens.
    pub prefix_cache_queries_total: u64,
    /// Prefix-cache hits, in cached tokens.
    pub prefix_cache_hits_total: u64,
    /// External (KV connector) prefix-cache queries, in tokens.
    pub external_prefix_cache_queries_total: u64,
    /// External (KV connector) prefix-cache hits, in tokens.
    pub external_prefix_cache_hits_total: u64,
    /// Multi-modal cache queries, in items.
    pub mm_cache_queries_total: u64,
    /// Multi-modal cache hits, in items.
    pub mm_cache_hits_total: u64,
    /// Preemptions by the scheduler.
    pub num_preemptions_total: u64,
    /// Prefill tokens processed.
    pub prompt_tokens_total: u64,
    /// Prompt tokens by source.
    pub prompt_tokens_by_source_total: PromptTokenSources,
    /// Cached prompt tokens (local + external).
    pub prompt_tokens_cached_total: u64,
    /// Cached tokens recomputed for the forward pass.
    pub prompt_tokens_recomputed_total: u64,
    /// Generation tokens processed.
    pub generation_tokens_total: u64,
    /// Finished requests by reason.
    pub request_success_total: FinishedReasonCounts,

    /// Prompt tokens per request.
    pub request_prompt_tokens: Histogram,
    /// Generated tokens per request.
    pub request_generation_tokens: Histogram,
    /// Tokens per engine step (`vllm:iteration_tokens_total`).
    pub iteration_tokens: Histogram,
    /// Maximum requested generation tokens per request.
    pub request_max_num_generation_tokens: Histogram,
    /// The `n` request parameter.
    pub request_params_n: Histogram,
    /// The `max_tokens` request parameter.
    pub request_params_max_tokens: Histogram,
    /// Time to first token, seconds.
    pub time_to_first_token_seconds: Histogram,
    /// Inter-token latency, seconds (one observation per output token).
    pub inter_token_latency_seconds: Histogram,
    /// Time per output token, seconds (one observation per request).
    pub request_time_per_output_token_seconds: Histogram,
    /// End-to-end request latency, seconds.
    pub e2e_request_latency_seconds: Histogram,
    /// Time in the WAITING phase, seconds.
    pub request_queue_time_seconds: Histogram,
    /// Time in the RUNNING phase (prefill + decode), seconds.
    pub request_inference_time_seconds: Histogram,
    /// Time in the PREFILL phase, seconds.
    pub request_prefill_time_seconds: Histogram,
    /// Time in the DECODE phase, seconds.
    pub request_decode_time_seconds: Histogram,
    /// New KV tokens computed in prefill (excluding cached tokens).
    pub request_prefill_kv_computed_tokens: Histogram,

    /// `vllm:cache_config_info` labels.
    pub cache_config: VllmCacheConfig,
}

impl VllmPod {
    /// An idle engine serving `model_name`, with vLLM's bucket sets;
    /// `max_model_len` sets the top of the token-count buckets.
    pub(crate) fn new(model_name: impl Into<String>, max_model_len: u32, created_unix_s: f64) -> Self {
        let tokens = Histogram::vllm_tokens(max_model_len);
        let latency = Histogram::vllm_request_latency();
        VllmPod {
            model_name: model_name.into(),
            engine: "0".to_owned(),
            created_unix_s,
            process: None,
            num_requests_running: 0,
            num_requests_waiting: 0,
            kv_cache_usage_perc: 0.0,
            sleep_state: SleepState::Awake,
            estimated_flops_per_gpu_total: 0.0,
            estimated_read_bytes_per_gpu_total: 0.0,
            estimated_write_bytes_per_gpu_total: 0.0,
            prefix_cache_queries_total: 0,
            prefix_cache_hits_total: 0,
            external_prefix_cache_queries_total: 0,
            external_prefix_cache_hits_total: 0,
            mm_cache_queries_total: 0,
            mm_cache_hits_total: 0,
            num_preemptions_total: 0,
            prompt_tokens_total: 0,
            prompt_tokens_by_source_total: PromptTokenSources::default(),
            prompt_tokens_cached_total: 0,
            prompt_tokens_recomputed_total: 0,
            generation_tokens_total: 0,
            request_success_total: FinishedReasonCounts::default(),
            request_prompt_tokens: tokens.clone(),
            request_generation_tokens: tokens.clone(),
            iteration_tokens: Histogram::vllm_iteration_tokens(),
            request_max_num_generation_tokens: tokens.clone(),
            request_params_n: Histogram::vllm_params_n(),
            request_params_max_tokens: tokens.clone(),
            time_to_first_token_seconds: Histogram::vllm_ttft(),
            inter_token_latency_seconds: Histogram::vllm_inter_token(),
            request_time_per_output_token_seconds: Histogram::vllm_inter_token(),
            e2e_request_latency_seconds: latency.clone(),
            request_queue_time_seconds: latency.clone(),
            request_inference_time_seconds: latency.clone(),
            request_prefill_time_seconds: latency.clone(),
            request_decode_time_seconds: latency,
            request_prefill_kv_computed_tokens: tokens,
            cache_config: VllmCacheConfig::default(),
        }
    }
}

mod render;

pub(crate) use render::render_vllm;
