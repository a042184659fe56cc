//! The built-in scenarios, written in the scenario file format.
//!
//! All share one cluster: a pool of four 4-GPU H100 nodes (autoscaling to
//! six), `llama-70b` (6 pods, 36 req/s, HPA on in-flight requests per pod)
//! and a small `embedder` (2 pods). Faults land at 12m of a 30m run, so the
//! analyzer has a long baseline before and a long regression after.

use super::Scenario;

const CLUSTER: &str = r#"
service: llama-70b
duration: 30m
pools:
  - { name: gpu-h100, nodes: 4, max_nodes: 6, gpus_per_node: 4, provision: 4m }
models:
  - name: llama-70b
    model: meta-llama/Llama-3.1-70B-Instruct
    replicas: 6
    hpa: { min: 2, max: 12, target: 25 }
    traffic: { rate: 36, prompt_tokens: "lognormal:800,0.6", output_tokens: "lognormal:150,0.5" }
  - name: embedder
    model: BAAI/bge-large-en-v1.5
    image: vllm/vllm-openai:v0.11.0
    replicas: 2
    server: { max_num_seqs: 256, kv_cache_tokens: 200000, prefill_us_per_token: 4, decode_step_ms: 3, decode_us_per_seq: 10, decode_ns_per_kv_token: 0, model_load: 20s, warmup: 5s }
    hpa: { min: 2, max: 4, target: 16 }
    traffic: { rate: 30, prompt_tokens: "lognormal:200,0.5", output_tokens: 1, api: completions }
"#;

/// (name, description, actions YAML).
pub const BUILTIN: &[(&str, &str, &str)] = &[
    ("control", "nothing changes: steady traffic, no faults (the false-positive check)", "[]"),
    (
        "slow-deploy",
        "llama-70b rolls out a version whose per-token compute is 1.6x slower",
        "[{ at: 12m, deploy: { deployment: llama-70b, compute_factor: 1.6 } }]",
    ),
    (
        "hpa-scale-down",
        "the llama-70b HPA target is raised under steady load; it scales 6 -> 4 and the queue grows",
        "[{ at: 8m, set_hpa: { deployment: llama-70b, target: 40 } }]",
    ),
    (
        "cold-start-storm",
        "llama-70b traffic surges 2.5x; new pods need minutes of image pull and model load, nodes must be provisioned",
        "[{ at: 12m, traffic: { deployment: llama-70b, factor: 2.5, ramp: 1m } }]",
    ),
    (
        "gpu-node-lost",
        "node gpu-h100-2 (two llama-70b pods) stops answering; its pods fail, then are evicted",
        "[{ at: 12m, node_lost: { node: gpu-h100-2 } }]",
    ),
    (
        "gpu-throttle",
        "the GPUs of node gpu-h100-2 overheat and throttle to 1100 MHz; pods there compute slower",
        "[{ at: 12m, gpu_throttle: { node: gpu-h100-2, clock_mhz: 1100, reason: thermal } }]",
    ),
    (
        "long-prompts",
        "llama-70b prompts shift from a median of 800 to 3000 tokens (workload shift)",
        r#"[{ at: 12m, workload: { deployment: llama-70b, prompt_tokens: "lognormal:3000,0.5" } }]"#,
    ),
    (
        "oom-kill-loop",
        "three llama-70b pods are OOM-killed a minute after each restart (crash loop)",
        "[{ at: 12m, oom_loop: { deployment: llama-70b, pods: 3, after: 60s } }]",
    ),
    (
        "deploy-with-decoy",
        "a harmless embedder rollout at 10m, then the slow llama-70b rollout at 12m",
        "[{ at: 10m, causal: false, deploy: { deployment: embedder } },
          { at: 12m, deploy: { deployment: llama-70b, compute_factor: 1.6 } }]",
    ),
    (
        "scale-down-with-decoy",
        "the llama-70b HPA scale-down, with a harmless embedder rollout a minute before it",
        "[{ at: 8m, set_hpa: { deployment: llama-70b, target: 40 } },
          { at: 12m, causal: false, deploy: { deployment: embedder } }]",
    ),
    (
        "throttle-with-decoy",
        "GPU throttling on gpu-h100-2 (dcgm-exporter without pod labels), with a node added and an embedder scale-up nearby",
        "[{ at: 11m, causal: false, add_node: { pool: gpu-h100 } },
          { at: 12m, gpu_throttle: { node: gpu-h100-2, clock_mhz: 1100, reason: thermal } },
          { at: 13m, causal: false, scale: { deployment: embedder, replicas: 3 } }]",
    ),
];

/// The YAML text of a built-in scenario.
pub fn builtin_yaml(name: &str) -> Option<String> {
    let (n, desc, actions) = BUILTIN.iter().find(|b| b.0 == name)?;
    let mut cluster = CLUSTER.trim().to_string();
    if *n == "throttle-with-decoy" {
        // dcgm-exporter without pod labels: GPU -> pod attribution must come from elsewhere.
        cluster = cluster.replace("provision: 4m }", "provision: 4m, dcgm_pod_labels: false }");
    }
    Some(format!("name: {n}\ndescription: \"{desc}\"\n{cluster}\nactions: {actions}\n"))
}

/// A built-in scenario by name.
pub fn builtin(name: &str) -> Option<Scenario> {
    let text = builtin_yaml(name)?;
    // The built-ins are tested to parse; a failure here is a bug in this file.
    Scenario::from_yaml(&text).ok()
}
