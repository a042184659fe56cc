//! The built-in scenarios, written in the scenario file format.
//!
//! Two clusters. `H100`, the one the first eleven share: a pool of four 4-GPU H100 nodes
//! (autoscaling to six), `llama-70b` (6 pods, 36 req/s, HPA on in-flight requests per pod)
//! and a small `embedder` (2 pods); faults land at 12m of a 30m run. `SERVING`, unlike it
//! in every name and size, so that nothing keyed to the first helps: namespace `serving`,
//! two pools (five 4-GPU L40S nodes shared by `qwen-32b` and `gemma-9b`, three 8-GPU A100
//! nodes filled by `mixtral-8x7b` at 4 GPUs a pod), other rates and HPA targets. Its scenarios
//! cover what the first do not: traffic that breathes (diurnal, bursts) with no fault, an
//! improvement, too little traffic, power throttling in the second pool, a decoy 20 s
//! from the cause, a slow drift, a surge against a pool already at its maximum, and two
//! causes at once.
//!
//! Each HPA's target is set so that, with no fault, its steady in-flight per pod stays inside
//! the 10% tolerance with room for the noise (measured with replicas pinned: llama-70b at 6
//! pods reads 21-29, so 28; qwen-32b at 8 reads 14-19, so 18; gemma-9b at 2 sits at its
//! minimum). A target on the tolerance's edge makes the HPA rescale on noise every few
//! minutes, a change no scenario asked for (test `the_built_in_clusters_hold_steady_...`).

use super::Scenario;

const H100: &str = r#"
service: llama-70b
duration: 30m
pools:
  - { name: gpu-h100, nodes: 4, max_nodes: 6, gpus_per_node: 4, provision: 4m }
models:
  - name: llama-70b
    model: meta-llama/Llama-3.1-70B-Instruct
    replicas: 6
    hpa: { min: 2, max: 12, target: 28 }
    traffic: { rate: 36, prompt_tokens: "lognormal:800,0.6", output_tokens: "lognormal:150,0.5" }
  - name: embedder
    model: BAAI/bge-large-en-v1.5
    image: vllm/vllm-openai:v0.11.0
    replicas: 2
    server: { max_num_seqs: 256, kv_cache_tokens: 200000, prefill_us_per_token: 4, decode_step_ms: 3, decode_us_per_seq: 10, decode_ns_per_kv_token: 0, model_load: 20s, warmup: 5s }
    hpa: { min: 2, max: 4, target: 16 }
    traffic: { rate: 30, prompt_tokens: "lognormal:200,0.5", output_tokens: 1, api: completions }
"#;

const SERVING: &str = r#"
service: qwen-32b
namespace: serving
duration: 30m
pools:
  - { name: l40s, nodes: 5, max_nodes: 7, gpus_per_node: 4, gpu_model: NVIDIA L40S, sm_clock_mhz: 2520, power_limit_w: 350, provision: 3m }
  - { name: a100, nodes: 3, gpus_per_node: 8, gpu_model: NVIDIA A100-SXM4-80GB, sm_clock_mhz: 1410, power_limit_w: 400, provision: 5m }
models:
  - name: qwen-32b
    model: Qwen/Qwen2.5-32B-Instruct
    replicas: 8
    pool: l40s
    hpa: { min: 4, max: 12, target: 18 }
    traffic: { rate: 44, prompt_tokens: "lognormal:600,0.7", output_tokens: "lognormal:120,0.6" }
  - name: gemma-9b
    model: google/gemma-2-9b-it
    replicas: 2
    pool: l40s
    server: { max_num_seqs: 128, prefill_us_per_token: 20, decode_step_ms: 12, decode_us_per_seq: 40 }
    hpa: { min: 2, max: 4, target: 30 }
    traffic: { rate: 25, prompt_tokens: "lognormal:400,0.5", output_tokens: "lognormal:80,0.5" }
  - name: mixtral-8x7b
    model: mistralai/Mixtral-8x7B-Instruct-v0.1
    replicas: 6
    gpus_per_pod: 4
    pool: a100
    hpa: { min: 3, max: 6, target: 20 }
    traffic: { rate: 24, prompt_tokens: "lognormal:1000,0.5", output_tokens: "lognormal:200,0.5" }
"#;

/// One built-in scenario: a cluster, edits to it, and the injected changes.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its `--scenario` name.
    pub name: &'static str,
    /// One line on what happens.
    pub description: &'static str,
    cluster: &'static str,
    /// `(from, to)` text replacements in the cluster.
    edits: &'static [(&'static str, &'static str)],
    actions: &'static str,
}

/// Every built-in, in the order `slo loadgen scenarios` lists them.
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "control",
        description: "nothing changes: steady traffic, no faults (the false-positive check)",
        cluster: H100,
        edits: &[],
        actions: "[]",
    },
    Builtin {
        name: "slow-deploy",
        description: "llama-70b rolls out a version whose per-token compute is 1.6x slower",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 12m, deploy: { deployment: llama-70b, compute_factor: 1.6 } }]",
    },
    Builtin {
        name: "hpa-scale-down",
        description: "the llama-70b HPA target is raised under steady load; it scales 6 -> 4 and the queue grows",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 8m, set_hpa: { deployment: llama-70b, target: 40 } }]",
    },
    Builtin {
        name: "cold-start-storm",
        description: "llama-70b traffic surges 2.5x; new pods need minutes of image pull and model load, nodes must be provisioned",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 12m, traffic: { deployment: llama-70b, factor: 2.5, ramp: 1m } }]",
    },
    Builtin {
        name: "gpu-node-lost",
        description: "node gpu-h100-2 (two llama-70b pods) stops answering; its pods fail, then are evicted",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 12m, node_lost: { node: gpu-h100-2 } }]",
    },
    Builtin {
        name: "gpu-throttle",
        description: "the GPUs of node gpu-h100-2 overheat and throttle to 1100 MHz; pods there compute slower",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 12m, gpu_throttle: { node: gpu-h100-2, clock_mhz: 1100, reason: thermal } }]",
    },
    Builtin {
        name: "long-prompts",
        description: "llama-70b prompts shift from a median of 800 to 3000 tokens (workload shift)",
        cluster: H100,
        edits: &[],
        actions: r#"[{ at: 12m, workload: { deployment: llama-70b, prompt_tokens: "lognormal:3000,0.5" } }]"#,
    },
    Builtin {
        name: "oom-kill-loop",
        description: "three llama-70b pods are OOM-killed a minute after each restart (crash loop)",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 12m, oom_loop: { deployment: llama-70b, pods: 3, after: 60s } }]",
    },
    Builtin {
        name: "deploy-with-decoy",
        description: "a harmless embedder rollout at 10m, then the slow llama-70b rollout at 12m",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 10m, causal: false, deploy: { deployment: embedder } },
          { at: 12m, deploy: { deployment: llama-70b, compute_factor: 1.6 } }]",
    },
    Builtin {
        name: "scale-down-with-decoy",
        description: "the llama-70b HPA scale-down, with a harmless embedder rollout a minute before it",
        cluster: H100,
        edits: &[],
        actions: "[{ at: 8m, set_hpa: { deployment: llama-70b, target: 40 } },
          { at: 12m, causal: false, deploy: { deployment: embedder } }]",
    },
    Builtin {
        name: "throttle-with-decoy",
        description: "GPU throttling on gpu-h100-2 (dcgm-exporter without pod labels), with a node added and an embedder scale-up nearby",
        cluster: H100,
        edits: &[("provision: 4m }", "provision: 4m, dcgm_pod_labels: false }")],
        actions: "[{ at: 11m, causal: false, add_node: { pool: gpu-h100 } },
          { at: 12m, gpu_throttle: { node: gpu-h100-2, clock_mhz: 1100, reason: thermal } },
          { at: 13m, causal: false, scale: { deployment: embedder, replicas: 3 } }]",
    },
    Builtin {
        name: "diurnal",
        description: "no fault: qwen-32b traffic swings +-45% over 20 minutes and the HPA follows it (the right answer is no regression)",
        cluster: SERVING,
        edits: &[("traffic: { rate: 44,", "traffic: { rate: 44, diurnal: { amplitude: 0.45, period: 20m },")],
        actions: "[]",
    },
    Builtin {
        name: "bursty",
        description: "no fault: qwen-32b traffic doubles for 40 s every 4 minutes (the right answer is no regression)",
        cluster: SERVING,
        edits: &[("traffic: { rate: 44,", "traffic: { rate: 44, bursts: { every: 4m, length: 40s, factor: 2 },")],
        actions: "[]",
    },
    Builtin {
        name: "faster-deploy",
        description: "qwen-32b rolls out a version whose compute is 0.6x the old one (an improvement, not a regression)",
        cluster: SERVING,
        edits: &[],
        actions: "[{ at: 12m, causal: false, deploy: { deployment: qwen-32b, compute_factor: 0.6 } }]",
    },
    Builtin {
        name: "low-traffic",
        description: "qwen-32b at 0.3 requests/s with a slow rollout: too little data for a p99 a minute (the right answer says so)",
        cluster: SERVING,
        edits: &[("rate: 44,", "rate: 0.3,"), ("replicas: 8", "replicas: 2"), ("min: 4, max: 12", "min: 1, max: 4")],
        actions: "[{ at: 12m, causal: false, deploy: { deployment: qwen-32b, compute_factor: 1.6 } }]",
    },
    Builtin {
        name: "power-throttle",
        description: "the GPUs of a100-1 hit their power cap and drop to 900 MHz; mixtral-8x7b pods there compute slower",
        cluster: SERVING,
        edits: &[("service: qwen-32b", "service: mixtral-8x7b")],
        actions: "[{ at: 12m, gpu_throttle: { node: a100-1, clock_mhz: 900, reason: power } }]",
    },
    Builtin {
        name: "decoy-20s",
        description: "a harmless gemma-9b rollout 20 s before the slow qwen-32b rollout",
        cluster: SERVING,
        edits: &[],
        actions: "[{ at: 11m40s, causal: false, deploy: { deployment: gemma-9b } },
          { at: 12m, deploy: { deployment: qwen-32b, compute_factor: 1.7 } }]",
    },
    Builtin {
        name: "slow-drift",
        description: "qwen-32b prompts lengthen from a median of 600 to 2400 tokens over 15 minutes",
        cluster: SERVING,
        edits: &[],
        actions: r#"[{ at: 10m, workload: { deployment: qwen-32b, prompt_tokens: "lognormal:2400,0.6", ramp: 15m } }]"#,
    },
    Builtin {
        name: "surge-at-max",
        description: "qwen-32b traffic rises 1.8x while its pool is full and cannot grow: new pods stay Pending",
        cluster: SERVING,
        // Three nodes (12 GPUs) hold the 8 qwen-32b and 2 gemma-9b pods with two GPUs to
        // spare: the HPA's answer to the surge (about six more pods) mostly stays Pending.
        // (With five nodes, 10 GPUs were free and the HPA absorbed the surge within two
        // minutes in most seeds.)
        edits: &[("nodes: 5, max_nodes: 7", "nodes: 3, max_nodes: 3")],
        actions: "[{ at: 12m, traffic: { deployment: qwen-32b, factor: 1.8, ramp: 30s } }]",
    },
    Builtin {
        name: "two-causes",
        description: "one upgrade ships a 1.4x slower qwen-32b and raises its HPA target 18 -> 45: the rollout and the scale-down both slow it",
        cluster: SERVING,
        edits: &[],
        actions: "[{ at: 12m, deploy: { deployment: qwen-32b, compute_factor: 1.4 } },
          { at: 12m, set_hpa: { deployment: qwen-32b, target: 45 } }]",
    },
];

/// The YAML text of a built-in scenario.
pub fn builtin_yaml(name: &str) -> Option<String> {
    let b = BUILTIN.iter().find(|b| b.name == name)?;
    let mut cluster = b.cluster.trim().to_string();
    for (from, to) in b.edits {
        cluster = cluster.replace(from, to);
    }
    Some(format!("name: {}\ndescription: \"{}\"\n{cluster}\nactions: {}\n", b.name, b.description, b.actions))
}

/// A built-in scenario by name.
pub(crate) fn builtin(name: &str) -> Option<Scenario> {
    let text = builtin_yaml(name)?;
    // The built-ins are tested to parse; a failure here is a bug in this file.
    Scenario::from_yaml(&text).ok()
}
