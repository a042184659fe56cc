//! `slo loadgen`: the simulator's files import, its live OTLP lands in `slo serve` with the
//! split from `gen_ai.latency.*`, its `/metrics` and Kubernetes API answer like the real
//! thing, the same seed gives the same bytes, and target mode agrees with the server side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, Sim, http_get as get, http_post as post, slo};

/// "... 1234 requests (0 errors ..." -> 1234
fn summary_requests(summary: &str) -> i64 {
    let words: Vec<&str> = summary.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "requests").unwrap_or_else(|| panic!("no requests in {summary:?}"));
    words[i - 1].parse().unwrap()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

const SCENARIO: &str = r#"
name: it-faults
description: a node lost and a slow rollout, short
service: llama-70b
duration: 4m
pools: [{ name: gpu, nodes: 3, gpus_per_node: 4 }]
models:
  - name: llama-70b
    model: meta-llama/Llama-3.1-70B-Instruct
    replicas: 4
    server: { image_pull: 10s, model_load: 20s, warmup: 5s }
    hpa: { min: 2, max: 8, target: 25 }
    traffic: { rate: 20 }
actions:
  - { at: 1m, node_lost: { node: gpu-2 } }
  - { at: 2m, causal: false, deploy: { deployment: llama-70b, compute_factor: 1.0 } }
"#;

#[test]
fn scenarios_are_listed_and_shown() {
    let out = slo(&["loadgen", "scenarios"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "control",
        "slow-deploy",
        "hpa-scale-down",
        "cold-start-storm",
        "gpu-node-lost",
        "gpu-throttle",
        "long-prompts",
        "oom-kill-loop",
        "deploy-with-decoy",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name) && l.len() > name.len() + 10), "{name} missing in:\n{text}");
    }
    let out = slo(&["loadgen", "scenarios", "--show", "control"]);
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("name: control") && yaml.contains("llama-70b"), "{yaml}");
    let out = slo(&["loadgen", "scenarios", "--show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = slo(&["loadgen", "simulate", "--scenario", "nope", "--out", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built-ins: control"));
}

#[test]
fn files_same_seed_same_bytes_and_they_import() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("s.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let run = |seed: &str, dir: &str| {
        let out = slo(&[
            "loadgen",
            "simulate",
            "--scenario",
            scenario.to_str().unwrap(),
            "--seed",
            seed,
            "--start",
            "2026-01-01T00:00:00Z",
            "--out",
            tmp.path().join(dir).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        summary_requests(&String::from_utf8_lossy(&out.stderr))
    };
    let n = run("5", "a");
    assert_eq!(run("5", "b"), n);
    run("6", "c");
    let (a, b) = (files(&tmp.path().join("a")), files(&tmp.path().join("b")));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 20, "{a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.strip_prefix(tmp.path().join("a")).unwrap(), y.strip_prefix(tmp.path().join("b")).unwrap());
        if x.ends_with("run.json") {
            continue; // wall-clock timings
        }
        assert!(std::fs::read(x).unwrap() == std::fs::read(y).unwrap(), "{} differs", x.display());
    }
    let trace = |d: &str| std::fs::read(tmp.path().join(d).join("traces/000001.pb")).unwrap();
    assert_ne!(trace("a"), trace("c"), "another seed gives other data");

    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("a/truth.json")).unwrap()).unwrap();
    let injected = truth["injected"].as_array().unwrap();
    assert_eq!(injected[0]["kind"], "node_lost");
    assert_eq!(injected[0]["object"], "node/gpu-2");
    assert_eq!(injected[0]["causal"], true);
    assert_eq!(injected[1]["kind"], "deploy");
    assert_eq!(injected[1]["causal"], false);
    let watch = std::fs::read_to_string(tmp.path().join("a/kube/watch.jsonl")).unwrap();
    assert!(watch.contains("NodeNotReady") && watch.contains("ScalingReplicaSet"), "watch events miss the changes");
    let scrape =
        files(&tmp.path().join("a/metrics")).into_iter().find(|p| p.to_string_lossy().contains("node_gpu-1")).unwrap();
    let scrape_ms = |_: &str| scrape.file_stem().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(&scrape).unwrap();
    let ms = scrape_ms(&text);
    let samples: Vec<&str> = text.lines().filter(|l| l.starts_with("DCGM_FI_DEV_SM_CLOCK{")).collect();
    assert_eq!(samples.len(), 4, "{text}");
    assert!(samples.iter().all(|l| l.rsplit(' ').next() == Some(ms.as_str())), "{samples:?} lack timestamp {ms}");

    let data = tmp.path().join("data");
    let mut args = vec!["import".to_string(), "--data-dir".into(), data.to_str().unwrap().into()];
    args.extend(files(&tmp.path().join("a/traces")).iter().map(|p| p.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = slo(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let q = |sql: &str| {
        let out = slo(&["query", "--data-dir", data.to_str().unwrap(), "--format", "json", sql]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let rows = q("SELECT count(*) n, sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) e, \
        sum(CASE WHEN split_source = 'attributes' THEN 1 ELSE 0 END) a FROM requests");
    assert_eq!(rows[0]["n"], n);
    assert!(rows[0]["e"].as_i64().unwrap() > 0, "the lost node fails requests: {rows:?}");
    assert_eq!(rows[0]["a"].as_i64().unwrap() + rows[0]["e"].as_i64().unwrap(), n, "{rows:?}");
    let rows = q(
        "SELECT count(DISTINCT pod) p, min(namespace) ns, count(DISTINCT replicaset) rs FROM requests WHERE status = 'ok'",
    );
    assert_eq!(rows[0]["ns"], "inference");
    assert!(rows[0]["rs"].as_i64().unwrap() >= 2, "the rollout shows: {rows:?}");

    // The watch stream and the scrapes import too: each injected change once, samples at
    // the scrape's own timestamps, attributed to the pod or node the file is for.
    let mut args = vec!["import".to_string(), "--data-dir".into(), data.to_str().unwrap().into()];
    args.push(tmp.path().join("a/kube/watch.jsonl").to_str().unwrap().into());
    args.extend(files(&tmp.path().join("a/metrics")).iter().map(|p| p.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = slo(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for t in injected {
        let sql = format!("SELECT count(*) n FROM changes WHERE kind = {} AND object = {}", t["kind"], t["object"]);
        let rows = q(&sql.replace('"', "'"));
        assert_eq!(rows[0]["n"], 1, "{t}: {:?}", q("SELECT kind, object, key FROM changes"));
    }
    let rows = q(&format!(
        "SELECT count(*) n FROM samples WHERE metric = 'DCGM_FI_DEV_SM_CLOCK' AND node = 'gpu-1' AND CAST(time AS BIGINT) = {ms}000000"
    ));
    assert_eq!(rows[0]["n"], 4, "one per GPU of gpu-1 at the scrape's timestamp");
    let rows = q(
        "SELECT count(*) n FROM samples WHERE metric = 'vllm:num_requests_running' AND attribution = 'target' AND pod IS NOT NULL",
    );
    assert!(rows[0]["n"].as_i64().unwrap() > 0);
    // Again: nothing new.
    let out =
        slo(&["import", "--data-dir", data.to_str().unwrap(), tmp.path().join("a/kube/watch.jsonl").to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.lines().any(|l| l.starts_with("0 Kubernetes change(s) stored")), "{said}");
}

#[test]
fn live_otlp_lands_in_serve_with_the_vllm_split() {
    let server = Server::start();
    let sim = Sim::start(&["--scenario", "control", "--duration", "30s", "--speed", "3", "--otlp", &server.grpc]);
    // While it runs: the pages a scraper and a Kubernetes client would read.
    let (code, status) = get(&format!("{}/slo-sim/status", sim.base));
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let targets: Vec<String> =
        status["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let pod = targets.iter().find(|t| t.starts_with("/pods/inference/llama-70b-")).unwrap();
    let (code, page) = get(&format!("{}{pod}", sim.base));
    assert_eq!(code, 200);
    assert!(page.contains("# TYPE vllm:num_requests_running gauge"));
    assert!(
        page.lines().any(|l| l.starts_with("vllm:e2e_request_latency_seconds_count{") && !l.ends_with(" 0.0")),
        "no requests counted"
    );
    let node = targets.iter().find(|t| t.starts_with("/nodes/")).unwrap();
    let (code, page) = get(&format!("{}{node}", sim.base));
    assert_eq!(code, 200);
    assert!(page.lines().any(|l| l.starts_with("DCGM_FI_DEV_GPU_UTIL{") && l.contains("pod=\"llama-70b-")));
    let (code, pods) = get(&format!("{}/api/v1/namespaces/inference/pods?limit=3", sim.base));
    assert_eq!(code, 200);
    let pods: serde_json::Value = serde_json::from_str(&pods).unwrap();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"].as_array().unwrap().len(), 3);
    assert!(pods["metadata"]["continue"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(post(&format!("{}/slo-sim/expire", sim.base)), 200);
    let (code, gone) = get(&format!("{}/api/v1/pods?watch=1&resourceVersion=1&timeoutSeconds=1", sim.base));
    assert_eq!(code, 200);
    assert!(gone.contains("\"code\":410"), "{gone}");

    let summary = sim.wait(Duration::from_secs(60));
    let n = summary_requests(&summary);
    assert!(n > 500, "{summary}");
    assert!(summary.contains("(0 dropped)"), "{summary}");
    server.wait_count("SELECT count(*) FROM requests", n);
    let rows = server.query(
        "SELECT count(*) n, sum(CASE WHEN split_source = 'attributes' THEN 1 ELSE 0 END) a, \
         max(abs(duration_ms - queue_ms - compute_ms - other_ms)) gap, min(other_ms) o, \
         sum(CASE WHEN pod LIKE 'llama-70b-%' AND node LIKE 'gpu-h100-%' AND deployment = 'llama-70b' THEN 1 ELSE 0 END) k8s \
         FROM requests WHERE service = 'llama-70b'",
    );
    let r = &rows[0];
    assert_eq!(r["a"], r["n"], "{r}");
    assert_eq!(r["k8s"], r["n"], "{r}");
    assert!(r["gap"].as_f64().unwrap() < 0.01, "{r}");
    assert!(r["o"].as_f64().unwrap() >= 0.0, "{r}");
}

#[test]
fn target_mode_agrees_with_the_server_side() {
    // Two processes export parts of each trace (the client span is batched for up to 5 s):
    // give trace assembly the idle time a real deployment has.
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        &tmp.path().join("data"),
        "collector:\n  assembly:\n    idle_ms: 6000\n    max_wait_ms: 20000\nstore:\n  flush_interval_s: 2\n",
    );
    let sim =
        Sim::start(&["--scenario", "control", "--duration", "40s", "--traffic-scale", "0", "--otlp", &server.grpc]);
    let report = tmp.path().join("report.json");
    let out = slo(&[
        "loadgen",
        "target",
        "--url",
        &sim.base,
        "--rps",
        "4",
        "--arrival",
        "constant",
        "--duration",
        "8s",
        "--model",
        "meta-llama/Llama-3.1-70B-Instruct",
        "--prompt-tokens",
        "200",
        "--output-tokens",
        "24",
        "--otlp",
        &server.grpc,
        "--out",
        report.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let ok = report["counts"]["ok"].as_i64().unwrap();
    assert_eq!(ok, 32, "{report}");
    assert_eq!(report["counts"]["errors"], 0, "{report}");
    // SIGTERM: the simulation stops early and flushes its spans.
    Command::new("kill").args(["-TERM", &sim.child.id().to_string()]).status().unwrap();
    sim.wait(Duration::from_secs(20));
    server.wait_count("SELECT count(*) FROM requests WHERE service = 'llama-70b'", ok);
    let rows = server.query(
        "SELECT approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_ms + compute_ms) server, \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) ttft, avg(output_tokens) toks FROM requests",
    );
    let server_p50 = rows[0]["server"].as_f64().unwrap();
    let client_p50 = report["latency_ms"]["p50"].as_f64().unwrap();
    let client_ttft = report["ttft_ms"]["p50"].as_f64().unwrap();
    let server_ttft = rows[0]["ttft"].as_f64().unwrap();
    // The client adds loopback HTTP and the simulation's 5 ms tick, never less than the server saw.
    assert!(
        client_p50 >= server_p50 - 2.0 && client_p50 <= server_p50 + 60.0,
        "client {client_p50} vs server {server_p50}"
    );
    assert!(
        client_ttft >= server_ttft - 2.0 && client_ttft <= server_ttft + 60.0,
        "client {client_ttft} vs server {server_ttft}"
    );
    assert_eq!(rows[0]["toks"].as_f64().unwrap(), 24.0);
    // The client's spans joined the simulated traces (W3C traceparent).
    let joined = server.count("SELECT count(DISTINCT s.trace_id) FROM spans s JOIN requests r ON s.trace_id = r.trace_id WHERE s.service = 'slo-loadgen'");
    assert_eq!(joined, ok);
}
