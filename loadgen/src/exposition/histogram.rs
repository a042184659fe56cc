//! A Prometheus histogram as plain data, with the bucket sets of vLLM v1.

/// A classic Prometheus histogram. Buckets are stored per bucket
/// (non-cumulative) and made cumulative only when rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// Upper bounds (`le`) of the finite buckets, strictly increasing.
    pub bounds: Vec<f64>,
    /// Observations per bucket, non-cumulative: `counts[i]` holds the values
    /// in `(bounds[i-1], bounds[i]]`; the last entry (`bounds.len()`) is the
    /// `+Inf` bucket. Always `bounds.len() + 1` long.
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: f64,
    /// Number of observations (the `+Inf` cumulative count).
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with the given finite upper bounds (sorted, deduplicated).
    pub(crate) fn new(bounds: impl Into<Vec<f64>>) -> Self {
        let mut bounds: Vec<f64> = bounds.into();
        bounds.retain(|b| b.is_finite());
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Histogram { bounds, counts, sum: 0.0, count: 0 }
    }

    /// Records one value. A value equal to a bound falls in that bound's
    /// bucket (`le` is inclusive). NaN is ignored.
    pub(crate) fn observe(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < v);
        if self.counts.len() != self.bounds.len() + 1 {
            self.counts.resize(self.bounds.len() + 1, 0);
        }
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Cumulative counts for `bounds` followed by `+Inf`, as exposed in
    /// `_bucket` series.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let les = self.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        les.zip(self.counts.iter().chain(std::iter::repeat(&0))).scan(0u64, |acc, (le, c)| {
            *acc += c;
            Some((le, *acc))
        })
    }

    /// vLLM's `time_to_first_token_seconds` buckets.
    pub(crate) fn vllm_ttft() -> Self {
        Histogram::new([
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
            80.0, 160.0, 640.0, 2560.0,
        ])
    }

    /// vLLM's `inter_token_latency_seconds` and
    /// `request_time_per_output_token_seconds` buckets.
    pub(crate) fn vllm_inter_token() -> Self {
        Histogram::new([
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
        ])
    }

    /// vLLM's request-phase latency buckets: `e2e_request_latency_seconds`,
    /// `request_queue_time_seconds`, `request_inference_time_seconds`,
    /// `request_prefill_time_seconds`, `request_decode_time_seconds`.
    pub(crate) fn vllm_request_latency() -> Self {
        Histogram::new([
            0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0, 1920.0, 7680.0,
        ])
    }

    /// vLLM's per-request token-count buckets (`request_prompt_tokens`,
    /// `request_generation_tokens`, `request_max_num_generation_tokens`,
    /// `request_params_max_tokens`, `request_prefill_kv_computed_tokens`):
    /// 1, 2, 5, 10, 20, 50, … up to `max_model_len` (vLLM's
    /// `build_1_2_5_buckets`). The capture's engine had a `max_model_len`
    /// between 5000 and 9999, giving 1 … 5000.
    pub(crate) fn vllm_tokens(max_model_len: u32) -> Self {
        let mut bounds = Vec::new();
        let mut scale = 1u64;
        'outer: loop {
            for m in [1, 2, 5] {
                let v = m * scale;
                if v > u64::from(max_model_len) {
                    break 'outer;
                }
                bounds.push(v as f64);
            }
            scale *= 10;
        }
        Histogram::new(bounds)
    }

    /// vLLM's `iteration_tokens_total` buckets (tokens per engine step).
    pub(crate) fn vllm_iteration_tokens() -> Self {
        Histogram::new([1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0])
    }

    /// vLLM's `request_params_n` buckets.
    pub(crate) fn vllm_params_n() -> Self {
        Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0])
    }
}
