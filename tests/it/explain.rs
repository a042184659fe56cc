//! `slo eval` and `slo explain` end to end: the simulator's files imported through the
//! collector, the regression and its cause found, the control quiet, the text fitting one
//! screen (a snapshot), the server's JSON equal to the data directory's, bad flags named.

use std::path::Path;

use crate::support::{Server, slo};

const AT: &str = "2026-11-22T14:30:00Z";
const SNAPSHOT: &str = "tests/it/snapshots/explain-hpa-scale-down.txt";

fn explain(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    let out = slo(&all);
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn eval_finds_the_scale_down_and_the_control_stays_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().to_str().unwrap();
    let out = slo(&[
        "eval",
        "--scenario",
        "hpa-scale-down",
        "--scenario",
        "control",
        "--seeds",
        "1",
        "--keep",
        keep,
        "--format",
        "json",
        "--min-top1",
        "1.0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["scenario"], "hpa-scale-down");
    assert_eq!(runs[0]["top1"], true, "{}", runs[0]);
    assert!(runs[0]["onset_error_s"].as_f64().unwrap() <= 180.0, "{}", runs[0]);
    assert_eq!(runs[1]["scenario"], "control");
    assert_eq!(runs[1]["detected"], false, "{}", runs[1]);

    let data = tmp.path().join("hpa-scale-down-1").join("data");
    let data = data.to_str().unwrap();
    let base = ["--data-dir", data, "--service", "llama-70b", "--at", AT, "--window", "30m"];

    // JSON: the DESIGN shape.
    let (code, json, err) = explain(&[&base[..], &["--format", "json"]].concat());
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["service"], "llama-70b");
    assert_eq!(r["regression"]["detected"], true);
    assert!(
        r["regression"]["p99_after_ms"].as_f64().unwrap() > 1.1 * r["regression"]["p99_before_ms"].as_f64().unwrap()
    );
    assert!(r["regression"]["p_value"].as_f64().unwrap() < 0.001);
    assert!(
        r["regression"]["queue_share"].as_f64().unwrap() > r["regression"]["compute_share"].as_f64().unwrap(),
        "a scale-down shows up as queue time: {}",
        r["regression"]
    );
    assert_eq!(r["causes"][0]["rank"], 1);
    assert_eq!(r["causes"][0]["kind"], "scale_down");
    assert_eq!(r["causes"][0]["object"], "hpa/llama-70b");
    assert!(!r["causes"][0]["evidence"].as_array().unwrap().is_empty());

    // Text: one screen, and exactly the reviewed snapshot (the same data gives the same words).
    let (code, text, err) = explain(&base);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 24, "{} lines:\n{text}", lines.len());
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "a line is wider than 100 columns:\n{text}");
    assert!(lines[0].starts_with("llama-70b: p99 "), "verdict first:\n{text}");
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT);
    if std::env::var_os("SLO_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &text).unwrap();
    }
    let want = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(text, want, "explain text differs from {SNAPSHOT} (SLO_UPDATE_SNAPSHOTS=1 rewrites it after review)");
    let (_, again, _) = explain(&base);
    assert_eq!(again, text, "deterministic");

    // An SLO: its service explained, its budget and burn rates reported, in text and JSON.
    let cfg = tmp.path().join("slos.yaml");
    std::fs::write(
        &cfg,
        "slos:\n  - { name: llama-latency, service: llama-70b, objective: 99%, window: 7d, latency: { metric: duration, threshold: 20s } }\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let slo_args = ["--data-dir", data, "--slo", "llama-latency", "--config", cfg, "--at", AT, "--window", "30m"];
    let (code, json, err) = explain(&[&slo_args[..], &["--format", "json"]].concat());
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(s["service"], "llama-70b");
    assert_eq!(s["slo"]["name"], "llama-latency");
    let burn_5m = s["slo"]["burn"].as_array().unwrap().iter().find(|b| b["window"] == "5m").unwrap().clone();
    let total = burn_5m["total"].as_f64().unwrap();
    assert!(total > 5000.0, "{burn_5m}");
    assert!(s["slo"]["budget_remaining"].as_f64().unwrap() < 1.0);
    let (code, text, err) = explain(&slo_args);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("SLO llama-latency: 99.00% of duration_ms <= 20000 ms over 7d"),
        "{text}"
    );
    let (code, _, err) = explain(&["--data-dir", data, "--slo", "nope", "--config", cfg]);
    assert_eq!(code, 2);
    assert!(err.contains("\"nope\"") && err.contains("llama-latency"), "{err}");

    // The same question to a server on that data answers the same JSON.
    let mut server = Server::start_in(Path::new(data), "store:\n  retention_hours: 0\n");
    let (code, remote, err) = explain(&[
        "--server",
        &server.web,
        "--service",
        "llama-70b",
        "--at",
        AT,
        "--window",
        "30m",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&remote).unwrap(), r);
    let (code, _, err) = explain(&["--server", &server.web, "--service", "nope", "--at", AT, "--window", "30m"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"nope\"") && err.contains("llama-70b"), "{err}");
    server.stop();

    // Bad flags are named; exit 2.
    for (args, needle) in [
        (vec!["--data-dir", data, "--window", "5x"], "--window"),
        (vec!["--data-dir", data, "--at", "yesterday"], "--at"),
        (vec!["--data-dir", data, "--service", "nope", "--at", AT], "nope"),
        (vec!["--data-dir", "/nonexistent/slo-data"], "/nonexistent/slo-data"),
    ] {
        let (code, _, err) = explain(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
