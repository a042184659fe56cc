//! Writing a [`VllmPod`] as vLLM's `/metrics` page.

use std::fmt::Write as _;

use super::super::{Histogram, end_sample, write_header, write_label, write_py_float};
use super::{SleepState, VllmPod};

/// The label a series has besides `engine` and `model_name`.
#[derive(Clone, Copy)]
enum Extra<'a> {
    None,
    Str(&'static str, &'a str),
    Le(f64),
}

impl Extra<'_> {
    fn name(&self) -> &'static str {
        match self {
            Extra::None => "",
            Extra::Str(name, _) => name,
            Extra::Le(_) => "le",
        }
    }

    fn write(&self, out: &mut String) {
        match *self {
            Extra::None => {}
            Extra::Str(name, value) => write_label(out, name, value),
            Extra::Le(le) => {
                out.push_str("le=\"");
                write_py_float(out, le);
                out.push('"');
            }
        }
    }
}

struct Page<'a> {
    out: &'a mut String,
    pod: &'a VllmPod,
    ts: Option<i64>,
}

impl Page<'_> {
    /// One sample line: `name{engine="…",<extra>,model_name="…"} value`,
    /// labels sorted by name as `prometheus_client` writes them.
    fn sample(&mut self, name: &str, suffix: &str, extra: Extra<'_>, value: f64) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push_str(suffix);
        out.push('{');
        write_label(out, "engine", &self.pod.engine);
        let before = !matches!(extra, Extra::None) && extra.name() < "model_name";
        if before {
            out.push(',');
            extra.write(out);
        }
        out.push(',');
        write_label(out, "model_name", &self.pod.model_name);
        if !before && !matches!(extra, Extra::None) {
            out.push(',');
            extra.write(out);
        }
        out.push_str("} ");
        write_py_float(out, value);
        end_sample(out, self.ts);
    }

    fn header(&mut self, name: &str, suffix: &str, help: &str, kind: &str) {
        let out = &mut *self.out;
        out.push_str("# HELP ");
        out.push_str(name);
        out.push_str(suffix);
        out.push(' ');
        out.push_str(help);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push_str(suffix);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }

    fn gauge(&mut self, name: &str, help: &str, series: &[(Extra<'_>, f64)]) {
        self.header(name, "", help, "gauge");
        for &(extra, v) in series {
            self.sample(name, "", extra, v);
        }
    }

    /// A counter as `prometheus_client` exposes it in format 0.0.4: the
    /// `_total` family, then a `_created` gauge family.
    fn counter(&mut self, base: &str, help: &str, series: &[(Extra<'_>, f64)]) {
        self.header(base, "_total", help, "counter");
        for &(extra, v) in series {
            self.sample(base, "_total", extra, v);
        }
        self.created(base, help, series.iter().map(|s| s.0));
    }

    fn created<'e>(&mut self, base: &str, help: &str, extras: impl Iterator<Item = Extra<'e>>) {
        self.header(base, "_created", help, "gauge");
        let created = self.pod.created_unix_s;
        for extra in extras {
            self.sample(base, "_created", extra, created);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "", help, "histogram");
        for (le, cumulative) in h.cumulative() {
            self.sample(name, "_bucket", Extra::Le(le), cumulative as f64);
        }
        self.sample(name, "_count", Extra::None, h.count as f64);
        self.sample(name, "_sum", Extra::None, h.sum);
        self.created(name, help, std::iter::once(Extra::None));
    }

    fn unlabelled(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        write_header(self.out, name, help, kind);
        self.out.push_str(name);
        self.out.push(' ');
        write_py_float(self.out, value);
        end_sample(self.out, self.ts);
    }

    fn cache_config_info(&mut self) {
        let c = &self.pod.cache_config;
        let name = "vllm:cache_config_info";
        write_header(self.out, name, "Information of the LLMEngine CacheConfig", "gauge");
        let out = &mut *self.out;
        out.push_str(name);
        let _ = write!(
            out,
            "{{block_size=\"{}\",cache_dtype=\"auto\",calculate_kv_scales=\"False\",\
             cpu_kvcache_space_bytes=\"None\",cpu_offload_gb=\"0\",cpu_offload_params=\"set()\",\
             enable_prefix_caching=\"{}\",",
            c.block_size,
            if c.enable_prefix_caching { "True" } else { "False" },
        );
        write_label(out, "engine", &self.pod.engine);
        out.push_str(",gpu_memory_utilization=\"");
        write_py_float(out, c.gpu_memory_utilization);
        let _ = write!(
            out,
            "\",is_attention_free=\"False\",kv_cache_memory_bytes=\"None\",kv_offloading_backend=\"native\",\
             kv_offloading_size=\"None\",kv_sharing_fast_prefill=\"False\",mamba_block_size=\"None\",\
             mamba_cache_dtype=\"auto\",mamba_cache_mode=\"none\",mamba_page_size_padded=\"None\",\
             mamba_ssm_cache_dtype=\"auto\",num_cpu_blocks=\"None\",num_gpu_blocks=\"{}\",\
             num_gpu_blocks_override=\"None\",prefix_caching_hash_algo=\"sha256\",sliding_window=\"None\",\
             swap_space=\"",
            c.num_gpu_blocks
        );
        write_py_float(out, c.swap_space_gib);
        out.push_str("\"} 1.0");
        end_sample(out, self.ts);
    }
}

/// Appends `pod`'s `/metrics` page to `out`, as vLLM v1 writes it. With
/// `Some(ts)` every sample ends in that millisecond timestamp.
pub(crate) fn render_vllm(out: &mut String, pod: &VllmPod, timestamp_ms: Option<i64>) {
    let mut p = Page { out, pod, ts: timestamp_ms };
    if let Some(proc) = &pod.process {
        p.unlabelled(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            proc.virtual_memory_bytes,
        );
        let rss = proc.resident_memory_bytes;
        p.unlabelled("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", rss);
        let start = proc.start_time_unix_s;
        let help = "Start time of the process since unix epoch in seconds.";
        p.unlabelled("process_start_time_seconds", help, "gauge", start);
        let help = "Total user and system CPU time spent in seconds.";
        p.unlabelled("process_cpu_seconds_total", help, "counter", proc.cpu_seconds_total);
        p.unlabelled("process_open_fds", "Number of open file descriptors.", "gauge", proc.open_fds as f64);
        p.unlabelled("process_max_fds", "Maximum number of open file descriptors.", "gauge", proc.max_fds as f64);
    }
    let one = |v: f64| [(Extra::None, v)];
    let help = "Estimated number of floating point operations per GPU (for Model Flops Utilization calculations).";
    p.counter("vllm:estimated_flops_per_gpu", help, &one(pod.estimated_flops_per_gpu_total));
    let help = "Estimated number of bytes read from memory per GPU (for Model Flops Utilization calculations).";
    p.counter("vllm:estimated_read_bytes_per_gpu", help, &one(pod.estimated_read_bytes_per_gpu_total));
    let help = "Estimated number of bytes written to memory per GPU (for Model Flops Utilization calculations).";
    p.counter("vllm:estimated_write_bytes_per_gpu", help, &one(pod.estimated_write_bytes_per_gpu_total));

    let help = "Number of requests in model execution batches.";
    p.gauge("vllm:num_requests_running", help, &one(pod.num_requests_running as f64));
    let help = "Number of requests waiting to be processed.";
    p.gauge("vllm:num_requests_waiting", help, &one(pod.num_requests_waiting as f64));
    let state = |s: SleepState| if pod.sleep_state == s { 1.0 } else { 0.0 };
    p.gauge(
        "vllm:engine_sleep_state",
        "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; \
         weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
        &[
            (Extra::Str("sleep_state", "awake"), state(SleepState::Awake)),
            (Extra::Str("sleep_state", "weights_offloaded"), state(SleepState::WeightsOffloaded)),
            (Extra::Str("sleep_state", "discard_all"), state(SleepState::DiscardAll)),
        ],
    );
    let help = "KV-cache usage. 1 means 100 percent usage.";
    p.gauge("vllm:kv_cache_usage_perc", help, &one(pod.kv_cache_usage_perc));

    let counters: [(&str, &str, u64); 7] = [
        (
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            pod.prefix_cache_queries_total,
        ),
        (
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            pod.prefix_cache_hits_total,
        ),
        (
            "vllm:external_prefix_cache_queries",
            "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.",
            pod.external_prefix_cache_queries_total,
        ),
        (
            "vllm:external_prefix_cache_hits",
            "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.",
            pod.external_prefix_cache_hits_total,
        ),
        (
            "vllm:mm_cache_queries",
            "Multi-modal cache queries, in terms of number of queried items.",
            pod.mm_cache_queries_total,
        ),
        ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.", pod.mm_cache_hits_total),
        ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", pod.num_preemptions_total),
    ];
    for (name, help, v) in counters {
        p.counter(name, help, &one(v as f64));
    }
    p.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", &one(pod.prompt_tokens_total as f64));
    let src = &pod.prompt_tokens_by_source_total;
    p.counter(
        "vllm:prompt_tokens_by_source",
        "Number of prompt tokens by source.",
        &[
            (Extra::Str("source", "local_compute"), src.local_compute as f64),
            (Extra::Str("source", "local_cache_hit"), src.local_cache_hit as f64),
            (Extra::Str("source", "external_kv_transfer"), src.external_kv_transfer as f64),
        ],
    );
    let help = "Number of cached prompt tokens (local + external).";
    p.counter("vllm:prompt_tokens_cached", help, &one(pod.prompt_tokens_cached_total as f64));
    let help = "Number of cached tokens recomputed for forward pass.";
    p.counter("vllm:prompt_tokens_recomputed", help, &one(pod.prompt_tokens_recomputed_total as f64));
    let help = "Number of generation tokens processed.";
    p.counter("vllm:generation_tokens", help, &one(pod.generation_tokens_total as f64));
    let ok = &pod.request_success_total;
    let reason = |r| Extra::Str("finished_reason", r);
    p.counter(
        "vllm:request_success",
        "Count of successfully processed requests.",
        &[
            (reason("stop"), ok.stop as f64),
            (reason("length"), ok.length as f64),
            (reason("abort"), ok.abort as f64),
            (reason("error"), ok.error as f64),
            (reason("repetition"), ok.repetition as f64),
        ],
    );

    let histograms: [(&str, &str, &Histogram); 15] = [
        ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", &pod.request_prompt_tokens),
        ("vllm:request_generation_tokens", "Number of generation tokens processed.", &pod.request_generation_tokens),
        ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", &pod.iteration_tokens),
        (
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            &pod.request_max_num_generation_tokens,
        ),
        ("vllm:request_params_n", "Histogram of the n request parameter.", &pod.request_params_n),
        (
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            &pod.request_params_max_tokens,
        ),
        (
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &pod.time_to_first_token_seconds,
        ),
        (
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &pod.inter_token_latency_seconds,
        ),
        (
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            &pod.request_time_per_output_token_seconds,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &pod.e2e_request_latency_seconds,
        ),
        (
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            &pod.request_queue_time_seconds,
        ),
        (
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            &pod.request_inference_time_seconds,
        ),
        (
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            &pod.request_prefill_time_seconds,
        ),
        (
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            &pod.request_decode_time_seconds,
        ),
        (
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            &pod.request_prefill_kv_computed_tokens,
        ),
    ];
    for (name, help, h) in histograms {
        p.histogram(name, help, h);
    }
    p.cache_config_info();
}
