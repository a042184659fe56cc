//! `slo eval` and `slo explain` end to end: the simulator's files imported through the
//! collector, the regression and its cause found, the control quiet, the text fitting one
//! screen (a snapshot), the server's JSON equal to the data directory's, bad flags named.

use std::path::Path;

use crate::support::{Server, files_under, slo};

const AT: &str = "2026-11-22T14:30:00Z";
const SNAPSHOT: &str = "tests/it/snapshots/explain-hpa-scale-down.txt";

fn explain(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    let out = slo(&all);
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `slo eval ARGS --format json`, which must succeed: its report.
fn eval(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    all.extend(["--format", "json"]);
    let out = slo(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_finds_the_scale_down_and_the_control_stays_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().to_str().unwrap();
    let v = eval(&[
        "--scenario",
        "hpa-scale-down",
        "--scenario",
        "control",
        "--scenario",
        "slow-deploy",
        "--seeds",
        "1",
        "--keep",
        keep,
        "--min-top1",
        "1.0",
    ]);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["scenario"], "hpa-scale-down");
    assert_eq!(runs[0]["top1"], true, "{}", runs[0]);
    assert!(runs[0]["onset_error_s"].as_f64().unwrap() <= 180.0, "{}", runs[0]);
    assert_eq!(runs[1]["scenario"], "control");
    assert_eq!(runs[1]["detected"], false, "{}", runs[1]);

    // A window inside a regression that began before it (the slow rollout at 14:12, a
    // 12-minute window ending at 14:30) shows no change; the regression is still reported,
    // found by looking further back, with a note of what the window alone showed.
    let slow = tmp.path().join("slow-deploy-1").join("data");
    let (code, json, err) = explain(&[
        "--data-dir",
        slow.to_str().unwrap(),
        "--service",
        "llama-70b",
        "--window",
        "12m",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["regression"]["detected"], true, "{r:#}");
    assert_eq!(r["regression"]["onset"], "2026-11-22T14:12:00Z", "{r:#}");
    let note = r["regression"]["note"].as_str().unwrap_or_default();
    assert!(note.starts_with("began 18 min before the end of the 12m window asked about"), "{r:#}");
    assert_eq!(r["causes"][0]["object"], "deployment/llama-70b", "{r:#}");

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

/// The verdict a user acts on: detected, onset, and the likely cause (kind, object). The
/// less likely ones below it may differ: live, a Deployment's scale can reach the watch
/// before the HPA change that made it, on a clock (the cluster's own) that read an earlier
/// document's time, and be kept as a change of its own.
fn verdict(r: &serde_json::Value) -> String {
    let top = &r["causes"][0];
    format!(
        "detected={} onset={} ongoing={} cause={} {}",
        r["regression"]["detected"], r["regression"]["onset"], r["regression"]["ongoing"], top["kind"], top["object"]
    )
}

/// The README's live flow and the file mode give the same answer: the same scenario and
/// seed simulated live against `slo serve` (OTLP, the Kubernetes API behind the kubeconfig,
/// scrapes of the simulator's `/metrics`) and written with `--out` then imported, explained
/// at the same moments, minutes into the incident and at its end.
#[test]
fn a_live_run_explains_as_its_files_do() {
    let tmp = tempfile::tempdir().unwrap();
    // Live timestamps run ahead of the wall clock: start far enough back to stay behind it.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let start_s = (now - 40 * 60) / 60 * 60;
    let iso = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let start = iso(start_s);
    let run = ["--scenario", "hpa-scale-down", "--seed", "1", "--start", &start, "--duration", "20m"];

    // The server first, its kubeconfig pointing where the simulator will listen, so that
    // it watches from the simulator's first moment and receives its first span.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = tmp.path().join("kubeconfig");
    let cluster = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sim",
        "clusters": [{"name": "sim", "cluster": {"server": format!("http://127.0.0.1:{port}")}}],
        "users": [{"name": "sim", "user": {}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim", "namespace": "inference"}}],
    });
    std::fs::write(&kubeconfig, cluster.to_string()).unwrap();
    let config = format!("{}scrape:\n  interval_s: 1\n", crate::support::FAST_CONFIG);
    let live_data = tmp.path().join("live");
    let server = Server::start_with(
        &live_data,
        &config,
        &["--kubeconfig", kubeconfig.to_str().unwrap(), "--kube-clock", "data"],
    );
    let sim = crate::support::Sim::start_on(
        &format!("127.0.0.1:{port}"),
        &[&run[..], &["--speed", "40", "--otlp", &server.grpc]].concat(),
    );
    let summary = sim.wait(std::time::Duration::from_secs(120));
    assert!(summary.contains("took effect") && summary.contains("the cause"), "no progress line: {summary}");
    assert!(!summary.contains(" 0 scrapes"), "the server scraped the simulator's pages: {summary}");
    let n: i64 = summary
        .split(" requests (")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {summary}"));
    server.wait_count("SELECT count(*) FROM requests", n);

    let out = tmp.path().join("files");
    let made = slo(&[&["loadgen", "simulate"][..], &run[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let file_data = tmp.path().join("imported");
    let mut import = vec!["import".to_string(), "--data-dir".into(), file_data.to_str().unwrap().into()];
    import.extend(files_under(&out.join("traces")));
    import.push(out.join("kube").join("watch.jsonl").to_str().unwrap().into());
    import.extend(files_under(&out.join("metrics")));
    let imported = slo(&import.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    for minutes in [16, 19] {
        let at = iso(start_s + minutes * 60);
        let ask = |from: &[&str]| {
            let (code, json, err) =
                explain(&[from, &["--service", "llama-70b", "--at", &at, "--format", "json"]].concat());
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        };
        let live = ask(&["--server", &server.web]);
        let file = ask(&["--data-dir", file_data.to_str().unwrap()]);
        assert_eq!(verdict(&live), verdict(&file), "at {at}: live\n{live:#}\nfiles\n{file:#}");
        assert_eq!(live["causes"][0]["object"], "hpa/llama-70b", "at {at}: {live:#}");
        assert_eq!(live["causes"][0]["kind"], "scale_down");
    }
}

/// `slo eval --keep` explains a kept run again only when it was made from the same
/// scenario text and seed: an edited scenario file is simulated afresh.
#[test]
fn eval_keep_simulates_again_when_the_scenario_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("keep");
    let file = tmp.path().join("quiet.yaml");
    let shown = slo(&["loadgen", "scenarios", "--show", "control"]);
    let text = String::from_utf8(shown.stdout).unwrap().replace("duration: 30m", "duration: 12m");
    std::fs::write(&file, &text).unwrap();
    let run = || {
        let out = slo(&[
            "eval",
            "--scenario",
            file.to_str().unwrap(),
            "--seeds",
            "1",
            "--keep",
            keep.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["runs"][0].clone()
    };
    // The one run directory (named by the scenario argument and the seed).
    let marker = || {
        let run = std::fs::read_dir(&keep).unwrap().next().unwrap().unwrap().path();
        std::fs::read_to_string(run.join("imported")).unwrap()
    };
    run();
    let first = marker();
    assert!(first.starts_with("seed 1\n") && first.contains("duration: 12m"), "{first}");
    run();
    assert_eq!(marker(), first, "the same text: explained again");
    std::fs::write(&file, text.replace("duration: 12m", "duration: 11m")).unwrap();
    let again = run();
    assert!(marker().contains("duration: 11m"), "an edited scenario is simulated again");
    assert_eq!(again["timeline"].as_array().unwrap().last().unwrap()["at"], "2026-11-22T14:11:00Z", "{again}");
}

/// Traffic that breathes stays quiet at every moment where it once alarmed: in `diurnal`
/// seed 19 the HPA scaled 12 -> 5 in the trough and p99 led the next rise's scale-up by a
/// few minutes, 1.3x: the autoscaler catching up with load served before, said so. (The
/// faster rollout's dip, the other control that alarmed, is the rollout verdict's unit
/// test: a second simulated run would double this test's time.)
#[test]
fn traffic_that_breathes_stays_quiet_at_every_moment() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().to_str().unwrap();
    let v = eval(&["--scenario", "diurnal", "--first-seed", "19", "--seeds", "1", "--keep", keep]);
    let run = &v["runs"][0];
    assert_eq!((&run["scenario"], &run["seed"]), (&"diurnal".into(), &19.into()), "{v:#}");
    assert_eq!(run["false_alarm"], false, "{run:#}");
    let data = tmp.path().join("diurnal-19").join("data");
    let at = ["--service", "qwen-32b", "--at", "2026-11-22T14:24:00Z", "--format", "json"];
    let (code, json, err) = explain(&[&["--data-dir", data.to_str().unwrap()][..], &at].concat());
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["regression"]["detected"], false, "{r:#}");
    let why = r["regression"]["reason"].as_str().unwrap();
    assert!(why.contains("hpa/qwen-32b is scaling up") && why.contains("the autoscaler catching up"), "{why}");
}
