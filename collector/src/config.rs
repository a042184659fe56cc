//! Configuration of the collector: limits, trace assembly, the split rules and redaction.
//!
//! Every section has defaults that suit a vLLM fleet; a config file only names what it
//! changes. Unknown keys are errors, so a typo is caught at startup.

use serde::{Deserialize, Serialize};

/// All collector settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Limits on OTLP payloads.
    pub otlp: OtlpLimits,
    /// How spans are grouped into traces before requests are derived.
    pub assembly: AssemblyConfig,
    /// How a request's latency is split into queue, compute and other.
    pub split: SplitConfig,
    /// What is removed from spans before anything is stored.
    pub redaction: RedactionConfig,
    /// Ingest queue settings.
    pub ingest: IngestConfig,
    /// Which traces' raw spans are stored (every trace gives its request rows).
    pub sampling: SamplingConfig,
}

/// Tail sampling of `spans`, decided per trace after assembly (see `sample.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Share of ordinary traces (neither slow nor failed) whose spans are stored, 0 to 1;
    /// 1 stores every span. Slow and failed traces are always stored.
    pub keep_share: f64,
    /// A trace is slow when one of its requests took longer than this quantile of its
    /// service's recent requests.
    pub slow_quantile: f64,
    /// How far back "recent" reaches, in seconds.
    pub recent_s: u64,
    /// A service with fewer recent requests than this has every trace stored: there is no
    /// quantile to judge by yet (a new or a low-traffic service). With several ingest
    /// shards each judges by its own share of the requests, so each needs
    /// `min_recent / shards` of them.
    pub min_recent: usize,
    /// The SLO thresholds `slo serve` was given: a request over one is slow. Not read from
    /// the config file (the SLO specs are).
    #[serde(skip)]
    pub slo_thresholds: Vec<SloThreshold>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            keep_share: 0.1,
            slow_quantile: 0.99,
            recent_s: 300,
            min_recent: 1000,
            slo_thresholds: Vec::new(),
        }
    }
}

impl SamplingConfig {
    /// Whether every span is stored (`keep_share` 1): then its row is built as it is
    /// received, spread over the receiving threads, as before sampling.
    pub fn stores_every_span(&self) -> bool {
        self.keep_share >= 1.0
    }

    /// Every setting in range, or what is not.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.keep_share) {
            return Err(format!("collector.sampling.keep_share: {} is not between 0 and 1", self.keep_share));
        }
        if !(self.slow_quantile > 0.0 && self.slow_quantile < 1.0) {
            return Err(format!("collector.sampling.slow_quantile: {} is not between 0 and 1", self.slow_quantile));
        }
        if self.recent_s == 0 {
            return Err("collector.sampling.recent_s: must be at least 1".into());
        }
        Ok(())
    }
}

/// An SLO's threshold on one latency of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct SloThreshold {
    /// The service.
    pub service: String,
    /// Which latency.
    pub metric: crate::sli::SliMetric,
    /// Requests slower than this are bad for the SLO.
    pub threshold_ms: f64,
}

/// Limits on OTLP payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpLimits {
    /// Largest request body accepted, as sent (compressed or not). Larger: 413 / RESOURCE_EXHAUSTED.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression.
    pub max_decompressed_bytes: usize,
    /// Nesting depth of array/map attribute values kept; deeper levels are cut and marked.
    pub max_attribute_depth: usize,
    /// Spans that started longer ago than this are refused (`partial_success`); 0 takes
    /// the store's retention (`slo serve`), so nothing is acknowledged only to be removed.
    pub max_span_age_s: u64,
    /// Spans that start further in the future than this are refused; 0: no bound.
    pub max_span_ahead_s: u64,
    /// Distinct hours of start time one export may touch (each hour is a Parquet segment
    /// per table at the next flush); spans beyond are refused; 0: no bound.
    pub max_hours_per_export: usize,
}

impl Default for OtlpLimits {
    fn default() -> Self {
        OtlpLimits {
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_attribute_depth: 8,
            max_span_age_s: 0,
            max_span_ahead_s: 3_600,
            max_hours_per_export: 48,
        }
    }
}

impl OtlpLimits {
    /// The time rules, with `retention` standing in for an unset `max_span_age_s`.
    pub fn time_rules(&self, retention: Option<std::time::Duration>) -> crate::timegate::TimeRules {
        let secs = |s: u64| (s > 0).then(|| std::time::Duration::from_secs(s));
        crate::timegate::TimeRules {
            max_age: secs(self.max_span_age_s).or(retention),
            max_ahead: secs(self.max_span_ahead_s),
            max_hours_per_export: self.max_hours_per_export,
        }
    }
}

/// Trace assembly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssemblyConfig {
    /// A trace whose entry span has arrived is complete after this long without new spans.
    /// Should exceed the exporters' batch delay (5 s for the OTel SDKs' batch processor).
    pub idle_ms: u64,
    /// A trace is emitted this long after its first span at the latest, complete or not.
    pub max_wait_ms: u64,
    /// Spans held while waiting; beyond it the oldest traces are emitted early (counted in
    /// `slo_collector_traces_emitted_total{reason="forced"}`).
    pub max_pending_spans: usize,
    /// Bytes the held spans may take (their text and fields, plus the entries of their
    /// traces in the assembler's tables and queues, as
    /// `slo_collector_assembly_pending_bytes` shows); beyond it the oldest traces are
    /// emitted early, as beyond `max_pending_spans`. Large spans whose parents never come
    /// are bounded by this, not by their count.
    pub max_pending_bytes: usize,
    /// Trace ids remembered after emission, to recognise (and count) late spans.
    pub remember_emitted: usize,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            idle_ms: 6_000,
            max_wait_ms: 30_000,
            max_pending_spans: 2_000_000,
            max_pending_bytes: 512 << 20,
            remember_emitted: 200_000,
        }
    }
}

/// What an attribute measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Time waiting in the server's queue.
    Queue,
    /// Model time, prefill plus decode.
    Compute,
    /// Prefill time (added to decode when there is no compute attribute).
    Prefill,
    /// Decode time.
    Decode,
    /// Time to first token.
    Ttft,
    /// End-to-end time inside the server.
    E2e,
}

/// Unit of a latency attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds (vLLM).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
}

impl Unit {
    /// Factor to milliseconds.
    pub fn to_ms(self) -> f64 {
        match self {
            Unit::S => 1000.0,
            Unit::Ms => 1.0,
            Unit::Us => 0.001,
        }
    }
}

/// A span attribute that measures part of a request's latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyAttribute {
    /// Attribute key.
    pub name: String,
    /// What it measures.
    pub role: Role,
    /// Its unit.
    pub unit: Unit,
}

/// The queue/compute split rules (README, "How a request's latency is split"), in order of trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Rule 1: attributes that measure it. Defaults are vLLM's `gen_ai.latency.*`.
    pub attributes: Vec<LatencyAttribute>,
    /// Rule 2: child spans whose name matches one of these (case-insensitive regex) are
    /// queue time.
    pub queue_span_patterns: Vec<String>,
    /// Rule 2: child spans whose name matches one of these are compute time.
    pub compute_span_patterns: Vec<String>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        let a = |name: &str, role, unit| LatencyAttribute { name: name.into(), role, unit };
        SplitConfig {
            attributes: vec![
                a("gen_ai.latency.time_in_queue", Role::Queue, Unit::S),
                a("gen_ai.latency.time_in_model_inference", Role::Compute, Unit::S),
                a("gen_ai.latency.time_in_model_prefill", Role::Prefill, Unit::S),
                a("gen_ai.latency.time_in_model_decode", Role::Decode, Unit::S),
                a("gen_ai.latency.time_to_first_token", Role::Ttft, Unit::S),
                a("gen_ai.latency.e2e", Role::E2e, Unit::S),
            ],
            queue_span_patterns: vec![
                "queue".into(),
                "wait".into(),
                "schedul".into(),
                "pending".into(),
                "backlog".into(),
            ],
            compute_span_patterns: vec![
                "inference".into(),
                "infer\\b".into(),
                "forward".into(),
                "prefill".into(),
                "decode".into(),
                "generat".into(),
                "predict".into(),
                "execute".into(),
            ],
        }
    }
}

/// What redaction does with a content attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactionMode {
    /// Remove the attribute.
    Drop,
    /// Replace the value with `sha256:<first 16 hex digits>` (equal texts stay equal).
    Hash,
    /// Keep the content (opt-in; prompts then sit on disk).
    Keep,
}

/// Redaction of prompt and completion content before storage (README, "Configuration").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionConfig {
    /// What to do with content attributes.
    pub mode: RedactionMode,
    /// Attribute keys that hold content; a key matches itself and anything below it
    /// (`gen_ai.prompt` matches `gen_ai.prompt.0.content`), case ignored. Keys of the
    /// content families (`*.messages`, `*.prompt*`, `*.input`, ...: see `redact.rs`) are
    /// content whether listed or not.
    pub keys: Vec<String>,
    /// Keys never redacted, even when a content family matches them (exact, case ignored).
    pub keep_keys: Vec<String>,
    /// Span status messages (stored as `otel.status_description`; an exception's text
    /// can quote a prompt): `keep` (default), `hash` or `drop`.
    pub status_messages: RedactionMode,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        let keys = [
            "gen_ai.prompt",
            "gen_ai.completion",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.call.arguments",
            "gen_ai.tool.call.result",
            "gen_ai.content",
            "gen_ai.request.messages",
            "gen_ai.tool.definitions",
            "llm.prompts",
            "llm.completions",
            "llm.input_messages",
            "llm.output_messages",
            "llm.prompt_template",
            "llm.request.functions",
            "input.value",
            "output.value",
            "traceloop.entity.input",
            "traceloop.entity.output",
            "retrieval.documents",
            "reranker.query",
            "reranker.input_documents",
            "reranker.output_documents",
            "embedding.embeddings",
            "tool.parameters",
            "ai.prompt",
            "ai.response.text",
            "ai.response.object",
            "ai.response.toolCalls",
            "ai.toolCall.args",
            "ai.toolCall.result",
            "mlflow.spanInputs",
            "mlflow.spanOutputs",
            "langfuse.observation.input",
            "langfuse.observation.output",
            "langfuse.trace.input",
            "langfuse.trace.output",
        ];
        RedactionConfig {
            mode: RedactionMode::Drop,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            keep_keys: Vec::new(),
            status_messages: RedactionMode::Keep,
        }
    }
}

/// The ingest queue between the receivers and the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Bytes of decoded spans queued at most; beyond it exports are shed.
    pub queue_bytes: usize,
    /// Bytes of OTLP/HTTP bodies being received and decoded at once (compressed and
    /// decompressed); beyond it exports are shed before they are read further.
    pub receive_bytes: usize,
    /// Most export requests written to the WAL in one group commit.
    pub max_group: usize,
    /// Pipeline shards: each a thread with its own WAL, trace assembly and rows, every
    /// trace's spans routed to one by the trace id (ARCHITECTURE.md, invariants of the
    /// store and the collector). One pipeline thread does about half of a span's server
    /// CPU, so with every core busy about half of them run pipelines. `0` (the default):
    /// one per two cores the process may use ([`std::thread::available_parallelism`],
    /// which follows CPU affinity and cgroup quotas), rounded up, at most [`AUTO_SHARDS`].
    /// On 2 cores a second shard cost 9-25% more CPU a span for 0.87-1.05x the
    /// throughput (BENCHMARKS.md). Changing it (or the cores) replays the WAL with the old
    /// count once at the next start.
    pub shards: usize,
}

/// Most shards `shards: 0` picks.
pub(crate) const AUTO_SHARDS: usize = 8;

/// Most pipeline shards.
pub(crate) const MAX_SHARDS: usize = 64;

/// The shards `shards: 0` runs on `cores` cores: one per two, rounded up.
fn auto_shards(cores: usize) -> usize {
    cores.div_ceil(2).clamp(1, AUTO_SHARDS)
}

impl IngestConfig {
    /// Every setting in range, or what is not.
    pub fn check(&self) -> Result<(), String> {
        if self.shards > MAX_SHARDS {
            return Err(format!(
                "collector.ingest.shards: {} is more than {MAX_SHARDS} (0: one per two cores)",
                self.shards
            ));
        }
        Ok(())
    }

    /// The pipeline shards to run: `shards`, or for 0 one per two cores (at most
    /// [`AUTO_SHARDS`]).
    pub fn shard_count(&self) -> usize {
        match self.shards {
            0 => auto_shards(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n.min(MAX_SHARDS),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { queue_bytes: 256 << 20, receive_bytes: 256 << 20, max_group: 1024, shards: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_shards_are_one_per_two_cores_rounded_up_and_capped() {
        let got: Vec<usize> = [1, 2, 3, 4, 5, 8, 16, 17, 64].into_iter().map(auto_shards).collect();
        assert_eq!(got, [1, 1, 2, 2, 3, 4, 8, 8, 8]);
        assert_eq!(IngestConfig { shards: 3, ..Default::default() }.shard_count(), 3);
        assert_eq!(IngestConfig { shards: 100, ..Default::default() }.shard_count(), MAX_SHARDS);
    }
}
