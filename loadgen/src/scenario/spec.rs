//! The scenario document: serde structs with a doc comment per field (they are
//! the reference for scenario files) and validation that names the field.

use serde::{Deserialize, Serialize};

use crate::dist::TokenDist;
use crate::duration::Dur;

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (`--scenario NAME`, the ground truth's `scenario`).
    pub name: String,
    /// One line saying what happens.
    #[serde(default)]
    pub description: String,
    /// The service the ground truth is about (a model's `name`).
    pub service: String,
    /// Simulated time the scenario covers (`--duration` overrides it).
    #[serde(default = "defaults::duration")]
    pub duration: Dur,
    /// Namespace of the model Deployments.
    #[serde(default = "defaults::namespace")]
    pub namespace: String,
    /// How often metrics are written in `--out` mode (live mode serves them on demand).
    #[serde(default = "defaults::scrape_interval")]
    pub scrape_interval: Dur,
    /// GPU node pools.
    pub pools: Vec<PoolSpec>,
    /// Model servers, one Deployment (and optional HPA) each.
    pub models: Vec<ModelSpec>,
    /// Changes injected at known times.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// A GPU node pool with a cluster autoscaler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    /// Nodes at the start.
    pub nodes: u32,
    /// The autoscaler adds nodes up to this many when pods cannot be scheduled (default: `nodes`).
    #[serde(default)]
    pub max_nodes: Option<u32>,
    #[serde(default = "defaults::gpus_per_node")]
    pub gpus_per_node: u32,
    #[serde(default = "defaults::gpu_model")]
    pub gpu_model: String,
    /// Time from the autoscaler's decision to a Ready node.
    #[serde(default = "defaults::provision")]
    pub provision: Dur,
    /// Maximum SM clock (MHz); throttling lowers it and slows compute in proportion.
    #[serde(default = "defaults::sm_clock")]
    pub sm_clock_mhz: u32,
    /// Board power limit (W).
    #[serde(default = "defaults::tdp")]
    pub power_limit_w: f64,
    /// dcgm-exporter maps GPUs to pods (`pod`/`namespace`/`container` labels); false
    /// leaves them out, as when the exporter's Kubernetes mapping is off or broken.
    #[serde(default = "defaults::yes")]
    pub dcgm_pod_labels: bool,
}

/// One model served by a Deployment of vLLM-like pods.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Deployment name, HPA name and the spans' `service.name`.
    pub name: String,
    /// The model id served (`gen_ai.response.model`, `model_name` label).
    pub model: String,
    #[serde(default = "defaults::image")]
    pub image: String,
    /// Replicas at the start (all Ready).
    pub replicas: u32,
    #[serde(default = "defaults::one")]
    pub gpus_per_pod: u32,
    /// Pool to schedule on (default: the first).
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub hpa: Option<HpaSpec>,
    pub traffic: TrafficSpec,
}

/// Model-server dynamics (vLLM-like continuous batching).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSpec {
    /// Most sequences in one batch (vLLM `--max-num-seqs`).
    pub max_num_seqs: u32,
    /// KV-cache capacity in tokens; running requests hold prompt + generated tokens.
    pub kv_cache_tokens: u64,
    /// Prefill tokens per engine step (vLLM `--max-num-batched-tokens`).
    pub max_batched_tokens: u32,
    /// Prefill cost per prompt token (µs).
    pub prefill_us_per_token: f64,
    /// Fixed cost of one decode step (ms).
    pub decode_step_ms: f64,
    /// Extra decode-step cost per running sequence (µs).
    pub decode_us_per_seq: f64,
    /// Extra decode-step cost per KV-cache token held (ns; attention reads).
    pub decode_ns_per_kv_token: f64,
    /// Image pull on a node that does not have the image.
    pub image_pull: Dur,
    /// Model load after the container starts, before the server listens.
    pub model_load: Dur,
    /// Warm-up (CUDA graphs, first requests) before the readiness probe passes.
    pub warmup: Dur,
}

/// A HorizontalPodAutoscaler on the average of running + waiting requests per pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaSpec {
    pub min: u32,
    pub max: u32,
    /// Target of `vllm:num_requests_running + vllm:num_requests_waiting` per pod.
    pub target: f64,
    /// Scale-down stabilization window (Kubernetes default 5m).
    #[serde(default = "defaults::down_window")]
    pub scale_down_window: Dur,
    /// Scale-up stabilization window (Kubernetes default 0).
    #[serde(default)]
    pub scale_up_window: Dur,
    /// At most this many pods removed per minute (default: no limit).
    #[serde(default)]
    pub scale_down_pods_per_minute: Option<u32>,
}

/// Traffic to one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// Mean requests per second.
    pub rate: f64,
    #[serde(default)]
    pub arrival: Arrival,
    #[serde(default = "defaults::prompt_tokens")]
    pub prompt_tokens: TokenDist,
    #[serde(default = "defaults::output_tokens")]
    pub output_tokens: TokenDist,
    /// Daily pattern: the rate swings by `amplitude` (0..1) over `period`.
    #[serde(default)]
    pub diurnal: Option<Diurnal>,
    /// Bursts: every `every`, for `length`, the rate is multiplied by `factor`.
    #[serde(default)]
    pub bursts: Option<Bursts>,
    /// `chat` (default) or `completions`: the API the gateway span names.
    #[serde(default = "defaults::api")]
    pub api: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    #[default]
    Poisson,
    Constant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diurnal {
    pub amplitude: f64,
    pub period: Dur,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    pub every: Dur,
    pub length: Dur,
    pub factor: f64,
}

/// One injected change. Exactly one of the change fields is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// When, from the start of the scenario.
    pub at: Dur,
    /// False marks a decoy: a real change that does not cause the regression.
    #[serde(default = "defaults::yes")]
    pub causal: bool,
    /// Roll out a new version of a Deployment (new pod-template hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// Change an HPA's target or bounds; the ground truth records the rescale it causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_hpa: Option<SetHpa>,
    /// `kubectl scale`: set a Deployment's replicas by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// Multiply a model's request rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficChange>,
    /// Change a model's prompt or output token distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// A node stops answering (kubelet gone): its pods fail, then are evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_lost: Option<NodeRef>,
    /// A node joins a pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_node: Option<PoolRef>,
    /// GPUs of a node throttle (thermal or power): SM clock drops, compute slows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_throttle: Option<GpuThrottle>,
    /// Pods of a Deployment are OOM-killed repeatedly (restart, model reload, killed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_loop: Option<OomLoop>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub deployment: String,
    /// New image (default: the old one with the version bumped).
    #[serde(default)]
    pub image: Option<String>,
    /// Per-token compute cost of the new version relative to the old (1.0 = same speed).
    #[serde(default = "defaults::one_f")]
    pub compute_factor: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHpa {
    pub deployment: String,
    #[serde(default)]
    pub target: Option<f64>,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub deployment: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficChange {
    pub deployment: String,
    /// New rate = old rate x factor.
    pub factor: f64,
    /// The change ramps linearly over this long (default: at once).
    #[serde(default)]
    pub ramp: Dur,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub deployment: String,
    #[serde(default)]
    pub prompt_tokens: Option<TokenDist>,
    #[serde(default)]
    pub output_tokens: Option<TokenDist>,
    /// Over this long, a growing share of requests (0 at the action, all at its end) draws
    /// from the new distributions: a drift rather than a step.
    #[serde(default)]
    pub ramp: Dur,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    /// Node name (`<pool>-<n>`, numbered from 1).
    pub node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRef {
    pub pool: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuThrottle {
    pub node: String,
    /// GPU indexes on the node (default: all).
    #[serde(default)]
    pub gpus: Option<Vec<u32>>,
    /// SM clock while throttled (MHz).
    #[serde(default = "defaults::throttled_clock")]
    pub clock_mhz: u32,
    /// `thermal` (temperature climbs past the slowdown threshold) or `power` (power cap).
    #[serde(default)]
    pub reason: ThrottleReason,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleReason {
    #[default]
    Thermal,
    Power,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OomLoop {
    pub deployment: String,
    /// How many of its pods are affected.
    #[serde(default = "defaults::one")]
    pub pods: u32,
    /// A pod is killed this long after it becomes Ready.
    #[serde(default = "defaults::oom_after")]
    pub after: Dur,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            max_num_seqs: 64,
            kv_cache_tokens: 48_000,
            max_batched_tokens: 8192,
            prefill_us_per_token: 40.0,
            decode_step_ms: 15.0,
            decode_us_per_seq: 120.0,
            decode_ns_per_kv_token: 20.0,
            image_pull: Dur::secs(60),
            model_load: Dur::secs(90),
            warmup: Dur::secs(20),
        }
    }
}

pub(crate) mod defaults {
    use super::*;
    pub(crate) fn duration() -> Dur {
        Dur::secs(30 * 60)
    }
    pub(crate) fn namespace() -> String {
        "inference".into()
    }
    pub(crate) fn scrape_interval() -> Dur {
        Dur::secs(15)
    }
    pub(crate) fn gpus_per_node() -> u32 {
        4
    }
    pub(crate) fn gpu_model() -> String {
        "NVIDIA H100 80GB HBM3".into()
    }
    pub(crate) fn provision() -> Dur {
        Dur::secs(240)
    }
    pub(crate) fn sm_clock() -> u32 {
        1980
    }
    pub(crate) fn tdp() -> f64 {
        700.0
    }
    pub(crate) fn image() -> String {
        "vllm/vllm-openai:v0.11.0".into()
    }
    pub(crate) fn one() -> u32 {
        1
    }
    pub(crate) fn one_f() -> f64 {
        1.0
    }
    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) fn down_window() -> Dur {
        Dur::secs(300)
    }
    pub(crate) fn prompt_tokens() -> TokenDist {
        TokenDist::LogNormal(800.0, 0.6)
    }
    pub(crate) fn output_tokens() -> TokenDist {
        TokenDist::LogNormal(150.0, 0.5)
    }
    pub(crate) fn api() -> String {
        "chat".into()
    }
    pub(crate) fn throttled_clock() -> u32 {
        1200
    }
    pub(crate) fn oom_after() -> Dur {
        Dur::secs(60)
    }
}
