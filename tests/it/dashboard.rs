//! The dashboard end to end: a simulated incident (`deploy-with-decoy`, file mode,
//! imported) served by `slo serve`, every page loaded in headless Chromium (Debian's, over
//! WebDriver from the pinned Python venv): no console errors, no failed or off-origin
//! requests, charts drawn with data, a deploy marker at the injected rollout, the explain
//! panel naming it as the API does; a screenshot of each page kept under
//! `target/test-artifacts/dashboard/`. Bad names and parameters answer 4xx with a message
//! and the server keeps serving.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Server, http_get, slo};

const CONFIG: &str = "store:\n  retention_hours: 0\nslos:\n  - { name: llama-70b-latency, service: llama-70b, objective: 99%, window: 28d,\n      latency: { metric: duration, threshold: 20s } }\n";

/// Simulates the scenario into `dir/files` and imports its traces, watch stream and scrapes into
/// `dir/data`; returns the truth.
fn incident(dir: &Path) -> serde_json::Value {
    let files = dir.join("files");
    let out = slo(&[
        "loadgen",
        "simulate",
        "--scenario",
        "deploy-with-decoy",
        "--seed",
        "1",
        "--start",
        "2026-11-22T14:00:00Z",
        "--out",
        files.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut args: Vec<String> = vec!["import".into(), "--data-dir".into(), dir.join("data").display().to_string()];
    let mut traces: Vec<PathBuf> =
        std::fs::read_dir(files.join("traces")).unwrap().map(|e| e.unwrap().path()).collect();
    traces.sort();
    args.extend(traces.iter().map(|p| p.display().to_string()));
    args.push(files.join("kube").join("watch.jsonl").display().to_string());
    // The scrapes (dcgm-exporter and vLLM pages): one directory per target.
    let mut scrapes: Vec<PathBuf> = Vec::new();
    for target in std::fs::read_dir(files.join("metrics")).unwrap() {
        scrapes.extend(std::fs::read_dir(target.unwrap().path()).unwrap().map(|e| e.unwrap().path()));
    }
    scrapes.sort();
    args.extend(scrapes.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = slo(&refs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(files.join("truth.json")).unwrap()).unwrap()
}

fn browser_present() -> bool {
    let present = Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !present {
        assert!(
            std::env::var_os("SLO_REQUIRE_BROWSER").is_none(),
            "chromium and chromium-driver are not installed (.ci/run installs them)"
        );
        eprintln!("chromium not installed; the browser part of the dashboard test is skipped");
    }
    present
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("SLO_TEST_ARTIFACTS")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts"), PathBuf::from)
        .join("dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_dashboard_shows_the_incident_and_its_cause_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let truth = incident(tmp.path());
    let deploy = truth["injected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["causal"] == true)
        .expect("a causal change in the truth")
        .clone();
    assert_eq!(deploy["object"], "deployment/llama-70b");
    let deploy_ms = slo_analyzer::text::parse_time(deploy["time"].as_str().unwrap()).unwrap() / 1_000_000;
    let mut server = Server::start_in(&tmp.path().join("data"), CONFIG);
    let web = server.web.clone();

    // The API first: the verdict every page must agree with.
    let (code, body) = http_get(&format!("{web}/api/v1/explain?service=llama-70b"));
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["regression"]["detected"], true, "{report:#}");
    assert_eq!(report["causes"][0]["object"], "deployment/llama-70b", "{report:#}");
    // What the slow requests have in common: the rollout's new ReplicaSet, named by the truth.
    let new_rs = deploy["detail"].as_str().unwrap().rsplit("new replicaset ").next().unwrap().to_string();
    assert_eq!(report["common"][0]["attribute"], "replicaset", "{report:#}");
    assert_eq!(report["common"][0]["value"], new_rs.as_str(), "{report:#}");
    assert!(report["common"][0]["slow_share"].as_f64().unwrap() > 0.9, "{report:#}");
    assert_eq!(report["common"][0]["baseline_share"], 0.0, "{report:#}");
    // The canary table: since the onset the new ReplicaSet's p99 is far above the old one's.
    let sets: Vec<&serde_json::Value> =
        report["canary"].as_array().unwrap().iter().filter(|r| r["by"] == "replicaset").collect();
    let p99_after = |new: bool| {
        sets.iter().find(|r| (r["value"] == new_rs.as_str()) == new).unwrap()["after"]["p99_ms"].as_f64().unwrap()
    };
    assert!(p99_after(true) > 1.5 * p99_after(false), "{sets:#?}");
    let (code, body) = http_get(&format!("{web}/api/v1/services"));
    assert_eq!(code, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = overview["services"].as_array().unwrap().iter().find(|r| r["service"] == "llama-70b").unwrap().clone();
    assert_eq!(row["verdict"]["top_cause"], "deploy deployment/llama-70b", "{row:#}");
    assert!(row["slos"][0]["budget_remaining"].is_number(), "{row:#}");
    let (code, body) = http_get(&format!("{web}/api/v1/series?service=llama-70b&window=1h"));
    assert_eq!(code, 200, "{body}");
    let series: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series["points"].as_array().unwrap().len(), 60);
    let (code, body) = http_get(&format!("{web}/api/v1/changes?kind=deploy&object=llama-70b"));
    assert_eq!(code, 200, "{body}");
    let changes: serde_json::Value = serde_json::from_str(&body).unwrap();
    let shown: Vec<i64> = changes["changes"].as_array().unwrap().iter().map(|c| c["t_ms"].as_i64().unwrap()).collect();
    assert!(shown.iter().any(|t| (t - deploy_ms).abs() <= 1000), "deploy at {deploy_ms} not in {shown:?}");

    // Bad input: a 4xx that names the problem, as a page and as JSON.
    for (path, status, words) in [
        ("/services/no-such-svc", 404, "no-such-svc"),
        ("/slos/no-such-slo", 404, "llama-70b-latency"),
        ("/services/llama-70b?window=2x", 400, "window"),
        ("/services/llama-70b?at=yesterday", 400, "at"),
        ("/?colour=red", 400, "colour"),
        ("/changes?window=400d", 400, "longest"),
        ("/nowhere", 404, "nowhere"),
        ("/api/v1/series", 400, "service"),
        ("/api/v1/services?window=0m", 400, "window"),
        ("/api/v1/slos/nope", 404, "nope"),
        ("/api/v1/services/llama-70b?window=1h&window=2h", 400, "twice"),
        ("/services/llama-70b?at=1677-09-21T00:12:44Z", 400, "between 1970 and 2200"),
        ("/api/v1/explain?service=llama-70b&at=2262-04-11T23:47:16Z", 400, "between 1970 and 2200"),
    ] {
        let (code, body) = http_get(&format!("{web}{path}"));
        assert_eq!(code, status, "{path}: {body}");
        assert!(body.contains(words), "{path}: {body}");
        if !path.starts_with("/api/") {
            assert!(body.contains("<h1 class=\"bad\">"), "{path} is a page: {body}");
        }
    }
    let (code, _) = http_get(&format!("{web}/healthz"));
    assert_eq!(code, 200, "the server keeps serving");

    // An alert from Alertmanager four minutes after the rollout: explained at its start
    // (long past), and listed on the overview and the service page with what slo found.
    let starts = chrono::DateTime::from_timestamp_millis(deploy_ms + 4 * 60_000).unwrap().to_rfc3339();
    let note = serde_json::json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "SLOErrorBudgetBurn", "service": "llama-70b", "slo": "llama-70b-latency",
            "severity": "page", "burnrate_tier": "page-fast"},
        "annotations": {"summary": "burning"}, "startsAt": starts, "fingerprint": "dash1"}]});
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        ::reqwest::Client::new().post(format!("{web}/api/v1/alerts")).json(&note).send().await.unwrap().status()
    });
    assert_eq!(status.as_u16(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = http_get(&format!("{web}/api/v1/alerts"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["alerts"][0]["explanation"] != "pending" {
            assert_eq!(v["alerts"][0]["report"]["causes"][0]["object"], "deployment/llama-70b", "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the alert was not explained: {body}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, html) = http_get(&format!("{web}/"));
    assert!(
        html.contains("Firing alerts") && html.contains("likely cause: deploy deployment&#x2F;llama-70b"),
        "{html}"
    );

    if !browser_present() {
        server.stop();
        return;
    }
    let out_dir = artifacts();
    let python = std::env::var("SLO_TEST_PYTHON").expect("SLO_TEST_PYTHON is not set: run scripts/test");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/browse.py");
    let paths = [
        "/",
        "/services/llama-70b",
        "/services/llama-70b?window=6h",
        "/changes",
        "/slos",
        "/slos/llama-70b-latency",
        "/services/no-such-svc",
    ];
    let mut cmd = Command::new("timeout");
    cmd.args(["120", &python, script, &web, out_dir.to_str().unwrap()]).args(paths);
    let out = cmd.output().expect("run the browser");
    assert!(out.status.success(), "browse.py: {}", String::from_utf8_lossy(&out.stderr));
    let pages: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pages.len(), paths.len());
    for p in &pages {
        let path = p["path"].as_str().unwrap();
        assert_eq!(p["off_origin"], serde_json::json!([]), "{path}: requests left the origin");
        assert!(std::fs::metadata(p["screenshot"].as_str().unwrap()).unwrap().len() > 10_000, "{path}: screenshot");
        if path == "/services/no-such-svc" {
            assert!(p["error_text"].as_str().unwrap().contains("no-such-svc"), "{p:#}");
            assert_eq!(p["failed"].as_array().unwrap().len(), 1, "only the page's own 404: {p:#}");
            continue;
        }
        assert_eq!(p["console"], serde_json::json!([]), "{path}: console errors");
        assert_eq!(p["failed"], serde_json::json!([]), "{path}: failed requests");
        assert!(p["error_text"].is_null(), "{p:#}");
    }
    let overview = &pages[0];
    assert_eq!(overview["badges"][0], "deploy deployment/llama-70b", "{overview:#}");
    // Half an hour of data: 30 one-minute buckets an hour wide, 6 five-minute ones in 6h.
    for (service, least) in pages[1..3].iter().zip([30, 6]) {
        for id in ["latency", "split", "ttft", "traffic", "tokens"] {
            assert!(service["charts"][id].as_i64().unwrap() >= least, "{id} drawn with data: {service:#}");
        }
        assert_eq!(service["causes"][0], "deployment/llama-70b", "the explain panel as the API: {service:#}");
        let canary = service["canary"].as_array().unwrap();
        assert!(
            canary.iter().any(|r| r.as_str().unwrap().starts_with(&format!("replicaset {new_rs} "))),
            "the new ReplicaSet beside the old in the canary table: {canary:?}"
        );
        let gpus = service["gpus"].as_array().unwrap();
        assert!(
            gpus.iter().any(|g| g.as_str().unwrap().contains(" llama-70b-") && g.as_str().unwrap().contains(" MHz")),
            "the GPU panel shows the GPUs of llama-70b's pods: {gpus:?}"
        );
        let first = service["common"][0].as_str().unwrap_or_default();
        assert!(first.starts_with(&format!("replicaset {new_rs} ")), "what the slow requests share: {service:#}");
        assert!(service["verdict"].as_str().unwrap().starts_with("p99 regression"), "{service:#}");
        let markers = service["markers"].as_array().unwrap();
        assert!(
            markers.iter().any(|m| m["kind"] == "deploy" && (m["t"].as_i64().unwrap() - deploy_ms).abs() <= 1000),
            "a deploy marker at the rollout ({deploy_ms}): {markers:?}"
        );
        let bytes = service["bytes"].as_i64().unwrap();
        eprintln!("{}: {bytes} bytes over the wire", service["path"]);
        assert!(bytes < 300_000, "page weight {bytes} bytes");
    }
    assert_eq!(pages[5]["charts"]["budget"].as_i64().map(|n| n > 0), Some(true), "{:#}", pages[5]);
    server.stop();
}
