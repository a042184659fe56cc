//! The Python OpenTelemetry SDK (a client nobody here wrote) sends vLLM-shaped traces over
//! gRPC and over HTTP; `slo query` must return one request per trace with the right split.

use std::collections::HashMap;
use std::process::Command;

use crate::support::Server;

fn python() -> String {
    std::env::var("SLO_TEST_PYTHON").expect("SLO_TEST_PYTHON is not set: run scripts/test, which makes the pinned venv")
}

fn send(endpoint: &str, protocol: &str, traces: usize) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_traces.py");
    let out = Command::new(python())
        .args([script, "--endpoint", endpoint, "--protocol", protocol, "--traces", &traces.to_string()])
        .output()
        .expect("run the Python SDK");
    assert!(
        out.status.success(),
        "python sender failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(protocol: &str) {
    let mut server = Server::start();
    let endpoint = if protocol == "grpc" { server.grpc.clone() } else { server.http.clone() };
    let traces = 40;
    let sent = send(&endpoint, protocol, traces);
    assert_eq!(sent["acked_spans"], 2 * traces);
    server.wait_count("SELECT count(*) FROM requests", traces as i64);
    assert_eq!(server.count("SELECT count(*) FROM spans"), 2 * traces as i64);
    let rows = server.query(
        "SELECT trace_id, service, namespace, pod, node, model, duration_ms, queue_ms, compute_ms, other_ms, ttft_ms, \
         input_tokens, split_source FROM requests",
    );
    let by_id: HashMap<&str, &serde_json::Value> = rows.iter().map(|r| (r["trace_id"].as_str().unwrap(), r)).collect();
    for want in sent["requests"].as_array().unwrap() {
        let id = want["trace_id"].as_str().unwrap();
        let got = by_id.get(id).unwrap_or_else(|| panic!("no request row for trace {id}"));
        assert_eq!(got["split_source"], "attributes");
        assert_eq!(got["service"], "vllm");
        assert_eq!(got["namespace"], "inference");
        assert_eq!(got["pod"], "llama-70b-7d9f-abcde");
        assert_eq!(got["node"], "gpu-node-1");
        assert_eq!(got["model"], "llama-70b");
        assert!(got["input_tokens"].as_i64().unwrap() >= 100);
        for col in ["duration_ms", "queue_ms", "compute_ms", "ttft_ms"] {
            let (g, w) = (got[col].as_f64().unwrap(), want[col].as_f64().unwrap());
            assert!((g - w).abs() < 0.01, "{id} {col}: got {g}, want {w}");
        }
        let other = got["other_ms"].as_f64().unwrap();
        let expect_other = want["duration_ms"].as_f64().unwrap()
            - want["queue_ms"].as_f64().unwrap()
            - want["compute_ms"].as_f64().unwrap();
        assert!((other - expect_other).abs() < 0.01, "{id} other_ms: got {other}, want {expect_other}");
    }
    // Self-observability: what came in and what was redacted is counted.
    let metrics = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { reqwest::get(format!("{}/metrics", server.web)).await.unwrap().text().await.unwrap() });
    let transport = if protocol == "grpc" { "grpc" } else { "http" };
    let accepted = format!("slo_collector_spans_accepted_total{{transport=\"{transport}\"}} {}", 2 * traces);
    assert!(metrics.contains(&accepted), "no {accepted:?} in /metrics:\n{metrics}");
    assert!(metrics.contains(&format!("slo_collector_redacted_attributes_total {traces}")), "{metrics}");
    assert!(metrics.contains("slo_store_wal_append_seconds_count"), "{metrics}");
    // Where memory goes: each budget's use, next to the process's RSS.
    let gauge = |name: &str| -> i64 {
        let line = metrics.lines().find(|l| l.split(' ').next() == Some(name));
        line.and_then(|l| l.split(' ').nth(1)?.parse().ok()).unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(gauge("process_resident_memory_bytes") > 10 << 20);
    assert_eq!(gauge("slo_collector_receive_bytes"), 0, "no export is being received");
    assert_eq!(gauge("slo_collector_queue_bytes"), 0, "every export was written: none is queued");
    assert_eq!(gauge("slo_store_memory_rows") > 0, gauge("slo_store_memory_bytes") > 0);
    assert_eq!(gauge("slo_collector_assembly_pending_spans") > 0, gauge("slo_collector_assembly_pending_bytes") > 0);
    // The prompt never reaches storage: not queryable, and not in any file once flushed.
    assert_eq!(server.count("SELECT count(*) FROM spans WHERE attributes['gen_ai.prompt'] IS NOT NULL"), 0);
    let dir = server.data_dir.clone();
    assert!(server.stop().success(), "clean shutdown");
    let mut files = vec![dir];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.windows(16).any(|w| w == b"my secret prompt"), "prompt text in {}", p.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "expected WAL, manifest and segments, saw {checked} files");
}

#[test]
fn python_sdk_over_grpc_splits_queue_from_compute() {
    check("grpc");
}

#[test]
fn python_sdk_over_http_splits_queue_from_compute() {
    check("http");
}
