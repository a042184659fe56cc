//! The Kubernetes watch and the scraper against the simulator's Kubernetes API and
//! `/metrics` (through its kubeconfig, with the real kube client): a rollout, an HPA
//! scale-down, a node loss and an OOM kill each appear once in `changes`, although the
//! collector is killed (-9) mid-scenario and the watch is expired with 410; and the scraped
//! samples are attributed to pods.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{FAST_CONFIG, Server, Sim, http_post, slo};

const SCENARIO: &str = r#"
name: kube-e2e
description: "a rollout, an HPA scale-down, a node loss and an OOM kill, a minute apart"
service: llama-70b
duration: 7m
pools:
  - { name: gpu-h100, nodes: 4, max_nodes: 5, gpus_per_node: 4, provision: 1m }
models:
  - name: llama-70b
    model: meta-llama/Llama-3.1-70B-Instruct
    replicas: 6
    hpa: { min: 2, max: 12, target: 25, scale_down_window: 20s }
    traffic: { rate: 36, prompt_tokens: "lognormal:800,0.6", output_tokens: "lognormal:150,0.5" }
  - name: embedder
    model: BAAI/bge-large-en-v1.5
    image: vllm/vllm-openai:v0.11.0
    replicas: 2
    server: { max_num_seqs: 256, kv_cache_tokens: 200000, prefill_us_per_token: 4, decode_step_ms: 3, decode_us_per_seq: 10, decode_ns_per_kv_token: 0, model_load: 20s, warmup: 5s }
    traffic: { rate: 30, prompt_tokens: "lognormal:200,0.5", output_tokens: 1, api: completions }
actions:
  - { at: 40s, deploy: { deployment: embedder } }
  - { at: 1m, set_hpa: { deployment: llama-70b, target: 40 } }
  - { at: 2m30s, node_lost: { node: gpu-h100-2 } }
  - { at: 3m30s, oom_loop: { deployment: llama-70b, pods: 1, after: 20s } }
"#;

fn changes(server: &Server) -> Vec<Value> {
    server.query(
        "SELECT kind, object, \"from\", \"to\", reason, key, CAST(time AS BIGINT) AS t FROM changes ORDER BY time, key",
    )
}

fn has(rows: &[Value], kind: &str, object_prefix: &str) -> bool {
    rows.iter().any(|r| r["kind"] == kind && r["object"].as_str().is_some_and(|o| o.starts_with(object_prefix)))
}

fn wait_for(server: &Server, what: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = changes(server);
        if until(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}; changes: {rows:#?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The simulator running [`SCENARIO`] at 8x live, writing its truth into `dir`.
pub(crate) fn start_sim(dir: &std::path::Path) -> (Sim, std::path::PathBuf) {
    let truth_path = dir.join("truth.json");
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let args = ["--scenario", scenario.to_str().unwrap(), "--speed", "8", "--seed", "11"];
    let sim = Sim::start(&[&args[..], &["--truth", truth_path.to_str().unwrap()]].concat());
    (sim, truth_path)
}

#[test]
fn each_change_is_stored_once_across_a_kill_and_a_410() {
    let tmp = tempfile::tempdir().unwrap();
    let (sim, truth_path) = start_sim(tmp.path());
    let data = tmp.path().join("data");
    let kubeconfig = sim.kubeconfig.to_str().unwrap().to_string();
    let config = format!("{FAST_CONFIG}scrape:\n  interval_s: 1\n");
    let mut server = Server::start_with(&data, &config, &["--kubeconfig", &kubeconfig]);

    // The rollout is in; kill -9 before the HPA scale-down is stored.
    wait_for(&server, "the embedder rollout", |r| has(r, "deploy", "deployment/embedder"));
    server.kill9();
    std::thread::sleep(Duration::from_secs(4));
    let server = Server::start_with(&data, &config, &["--kubeconfig", &kubeconfig]);
    wait_for(&server, "the node loss", |r| has(r, "node_lost", "node/gpu-h100-2"));
    // Every watch gets 410 Gone and relists.
    assert_eq!(http_post(&format!("{}/slo-sim/expire", sim.base)), 200);
    wait_for(&server, "the OOM kill", |r| has(r, "oom_kill", "pod/llama-70b"));
    sim.wait(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(7));
    let rows = changes(&server);

    assert_each_fact_once(&rows);
    assert_each_injected_change(&rows, &truth_path);

    // The scraper found the pods and the exporters through the watch.
    let vllm = server.count("SELECT count(*) FROM samples WHERE metric = 'vllm:num_requests_waiting' AND attribution = 'target' AND pod LIKE 'llama-70b-%'");
    assert!(vllm > 0, "no vLLM samples attributed to their pods");
    let gpu = server.count(
        "SELECT count(*) FROM samples WHERE metric = 'DCGM_FI_DEV_GPU_UTIL' AND attribution = 'exporter_labels' AND pod IS NOT NULL",
    );
    assert!(gpu > 0, "no GPU samples attributed through the exporter's labels");
    // Rollout progress of the embedder's rollout, as samples.
    let progress = server.count(
        "SELECT count(*) FROM samples WHERE metric = 'kube_deployment_status_replicas_updated' AND labels['deployment'] = 'embedder'",
    );
    assert!(progress > 0, "no rollout progress samples");
    let up = server.count("SELECT count(*) FROM samples WHERE metric = 'up' AND value = 1");
    assert!(up > 0);
    let out = slo(&["query", "--server", &server.web, "SELECT 1"]);
    assert!(out.status.success());
}

/// No key, and no (kind, object, time), in two of `rows` (`changes` rows with `key` and `t`).
/// What one occurrence is, to tell the same one under two keys: kind, object, time, and
/// whether an Event or the watch recorded it (a pod's `Pulling` Event and the watch's cold
/// start of that pod can share a time; they are two records by design).
pub(crate) fn fact_of(r: &Value) -> String {
    let event = r["key"].as_str().is_some_and(|k| k.starts_with("event/"));
    format!("{} {} {} event={event}", r["kind"], r["object"], r["t"])
}

pub(crate) fn assert_each_fact_once(rows: &[Value]) {
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "duplicate keys in {rows:#?}");
    let fact = fact_of;
    let twice: Vec<&Value> = rows.iter().filter(|r| rows.iter().filter(|o| fact(o) == fact(r)).count() > 1).collect();
    assert!(twice.is_empty(), "the same fact stored twice: {twice:#?}");
}

/// Every change the simulator injected (its truth file) is in `rows`: the rollout, the
/// scale-down and the node loss once, the OOM kill at least once.
pub(crate) fn assert_each_injected_change(rows: &[Value], truth_path: &std::path::Path) {
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(truth_path).unwrap()).unwrap();
    let injected = truth["injected"].as_array().unwrap();
    assert_eq!(injected.len(), 4, "{truth:#}");
    for t in injected {
        let (kind, object) = (t["kind"].as_str().unwrap(), t["object"].as_str().unwrap());
        let matching: Vec<&Value> = rows.iter().filter(|r| r["kind"] == kind && r["object"] == object).collect();
        let detail = t["detail"].as_str().unwrap_or("");
        match kind {
            "deploy" => {
                assert_eq!(matching.len(), 1, "{kind} {object}: {rows:#?}");
                let (from, to) = (matching[0]["from"].as_str().unwrap(), matching[0]["to"].as_str().unwrap());
                assert!(detail.starts_with(&format!("image {from} -> {to}")), "{detail} vs {from} -> {to}");
            }
            "scale_down" => {
                // The injected step exactly once; the HPA may scale down again later on its own.
                let at = t["time"].as_str().unwrap();
                let at_ns = chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp_nanos_opt().unwrap();
                let matching: Vec<&&Value> = matching
                    .iter()
                    .filter(|r| r["t"].as_i64().is_some_and(|x| (x - at_ns).abs() <= 1_000_000_000))
                    .collect();
                assert_eq!(matching.len(), 1, "{kind} {object} at {at}: {rows:#?}");
                let r = matching[0];
                assert_eq!(format!("replicas {}->{}", r["from"].as_str().unwrap(), r["to"].as_str().unwrap()), detail);
                // From the HPA's own status (its reason), not from its Event alone.
                assert_eq!(r["reason"], "All metrics below target");
            }
            "node_lost" => assert_eq!(matching.len(), 1, "{kind} {object}: {rows:#?}"),
            "oom_kill" => assert!(!matching.is_empty(), "{kind} {object}: {rows:#?}"),
            other => panic!("unexpected truth kind {other}"),
        }
    }
}
