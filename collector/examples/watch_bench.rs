//! Benchmark of the Kubernetes change path: watch frames handled per second (JSON decode,
//! summary, diff, keys) and memory per watched object.
//!
//! `cargo run --release -p slo-collector --example watch_bench [pods]`
//!
//! A synthetic cluster of `pods` GPU pods (default 20,000) over pods/8 nodes is listed,
//! then every pod is updated 5 times (readiness flips, restarts with OOM kills) and
//! 50,000 Events (HPA rescales, FailedScheduling) arrive, as watch frames in JSON text,
//! the form they come in from the API server. Memory per object is the growth of the
//! process's resident set over the baseline divided by the objects, after the list.

use std::time::Instant;

use serde_json::{Value, json};
use slo_collector::kube::{Tracker, Watched};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn rfc(s: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0).unwrap_or_default().to_rfc3339()
}

fn pod(i: usize, nodes: usize, ready: bool, restarts: i64, t: i64) -> String {
    let last = if restarts > 0 {
        json!({"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": rfc(t - 5)}})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("llama-70b-7c9f-{i:06}"), "namespace": "ml", "uid": format!("pod-{i}"), "resourceVersion": t.to_string(),
            "creationTimestamp": rfc(1_764_000_000), "labels": {"app": "llama-70b", "pod-template-hash": "7c9f"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "llama-70b-7c9f", "uid": "rs-1", "controller": true}]},
        "spec": {"nodeName": format!("gpu-{}", i % nodes), "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
            "args": ["--model", "meta-llama/Llama-3.1-70B-Instruct"], "ports": [{"containerPort": 8000}],
            "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "16", "memory": "200Gi"}}}]},
        "status": {"phase": "Running", "podIP": format!("10.1.{}.{}", i / 250, i % 250),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": rfc(t)}],
            "containerStatuses": [{"name": "vllm", "ready": ready, "restartCount": restarts, "lastState": last, "image": "vllm/vllm-openai:v0.11.0"}]}})
    .to_string()
}

fn main() {
    let pods: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let nodes = (pods / 8).max(1);
    let base = rss_kib();
    let mut tracker = Tracker::new();
    let t0 = 1_764_000_000;
    // The list.
    let list: Vec<String> = (0..pods).map(|i| pod(i, nodes, true, 0, t0)).collect();
    let started = Instant::now();
    tracker.begin_list(Watched::Pod);
    for text in &list {
        let v: Value = serde_json::from_str(text).unwrap();
        tracker.apply(Watched::Pod, &v, t0 * 1_000_000_000).unwrap();
    }
    tracker.end_list(Watched::Pod, t0 * 1_000_000_000);
    let list_s = started.elapsed().as_secs_f64();
    let bytes: usize = list.iter().map(String::len).sum();
    drop(list);
    let after = rss_kib();
    // Updates: 5 rounds; every third round restarts pods after an OOM kill.
    let mut frames = Vec::new();
    for round in 1..=5i64 {
        for i in 0..pods {
            let restarts = if round % 3 == 0 { round } else { 0 };
            frames.push(pod(i, nodes, round % 2 == 0, restarts, t0 + round * 60));
        }
    }
    for k in 0..50_000 {
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": format!("e{k}"), "namespace": "ml", "uid": format!("ev-{k}")},
            "involvedObject": {"kind": if k % 2 == 0 { "HorizontalPodAutoscaler" } else { "Pod" }, "name": "llama-70b", "namespace": "ml"},
            "reason": if k % 2 == 0 { "SuccessfulRescale" } else { "FailedScheduling" },
            "message": if k % 2 == 0 { "New size: 4; reason: All metrics below target".to_string() } else { "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.".to_string() },
            "source": {"component": "horizontal-pod-autoscaler"}, "count": 1, "lastTimestamp": rfc(t0 + 400)});
        frames.push(ev.to_string());
    }
    let started = Instant::now();
    let mut changes = 0;
    for (n, text) in frames.iter().enumerate() {
        let v: Value = serde_json::from_str(text).unwrap();
        let now = (t0 + 600) * 1_000_000_000;
        if v["kind"] == "Event" {
            tracker.event(&v, now).unwrap();
        } else {
            tracker.apply(Watched::Pod, &v, now).unwrap();
        }
        if n % 1000 == 0 {
            changes += tracker.take(now).len();
        }
    }
    changes += tracker.take(i64::MAX / 2).len();
    let update_s = started.elapsed().as_secs_f64();
    let state = tracker.save();
    println!("objects                {pods} pods on {nodes} nodes");
    println!(
        "list                   {:.0} objects/s ({:.1} MB of JSON in {:.2} s)",
        pods as f64 / list_s,
        bytes as f64 / 1e6,
        list_s
    );
    println!(
        "updates + events       {:.0} frames/s ({} frames in {:.2} s), {changes} changes",
        frames.len() as f64 / update_s,
        frames.len(),
        update_s
    );
    println!(
        "memory per object      {:.0} bytes resident ({} KiB over baseline)",
        (after.saturating_sub(base)) as f64 * 1024.0 / pods as f64,
        after.saturating_sub(base)
    );
    println!("saved baseline         {:.0} bytes per object ({} bytes)", state.len() as f64 / pods as f64, state.len());
}
