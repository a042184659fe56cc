//! The alert rules in `alerts/`: what is committed is what `slo rules` generates, and it is
//! valid and tested with the real promtool (`promtool check rules`, `promtool test rules`
//! on `alerts/slo-rules.test.yaml`).

use std::path::Path;
use std::process::Command;

use crate::support::{promtool, promtool_ok, slo};

const REGENERATE: &[&str] = &["rules", "--config", "alerts/slo.yaml", "--url", "http://slo.monitoring:8080"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated(args: &[&str]) -> String {
    let out = Command::new(crate::support::BIN).args(args).current_dir(root()).output().unwrap();
    assert!(out.status.success(), "slo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn committed_rules_are_what_slo_rules_generates() {
    let committed = std::fs::read_to_string(root().join("alerts/slo-rules.yaml")).unwrap();
    assert!(
        generated(REGENERATE) == committed,
        "alerts/slo-rules.yaml is stale: run `slo {} > alerts/slo-rules.yaml`",
        REGENERATE.join(" ")
    );
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    promtool_ok(promtool, &["check", "rules", "alerts/slo-rules.yaml"], root());
    promtool_ok(promtool, &["test", "rules", "alerts/slo-rules.test.yaml"], root());
}

#[test]
fn the_example_alertmanager_config_is_valid() {
    let Some(amtool) = ["/usr/bin/amtool"].into_iter().find(|p| Path::new(p).exists()) else {
        assert!(std::env::var_os("SLO_REQUIRE_PROMETHEUS").is_none(), "amtool is not installed (.ci/run installs it)");
        return;
    };
    let out =
        Command::new(amtool).args(["check-config", "alerts/alertmanager.yaml"]).current_dir(root()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Its inhibitions name labels the generated rules set.
    let rules = std::fs::read_to_string(root().join("alerts/slo-rules.yaml")).unwrap();
    for label in ["sloth_id:", "burnrate_tier: page-fast", "burnrate_tier: page-slow", "alert: SLOTrafficAbsent"] {
        assert!(rules.contains(label), "the rules have no {label}");
    }
}

#[test]
fn the_prometheus_operator_form_holds_the_same_groups() {
    let mut args = REGENERATE.to_vec();
    args.extend(["--format", "prometheus-operator", "--namespace", "monitoring"]);
    let op: serde_yaml::Value = serde_yaml::from_str(&generated(&args)).unwrap();
    let plain: serde_yaml::Value = serde_yaml::from_str(&generated(REGENERATE)).unwrap();
    assert_eq!(op["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(op["kind"], "PrometheusRule");
    assert_eq!(op["metadata"]["namespace"], "monitoring");
    assert_eq!(op["spec"]["groups"], plain["groups"]);
}

#[test]
fn bad_slo_files_are_refused_naming_the_field_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("slo.yaml");
    std::fs::write(
        &p,
        "slos:\n  - { name: a, service: s, objective: 99%, errors: {}, alerting: { disable: [page-medium] } }\n",
    )
    .unwrap();
    let out = slo(&["rules", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slos[0].alerting.disable") && err.contains("page-medium"), "{err}");
    std::fs::write(&p, "slos:\n  - { name: a, service: s, objective: 99%, window: 1d, errors: {} }\n").unwrap();
    let out = slo(&["rules", "--config", p.to_str().unwrap(), "--scrape-interval", "1m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scrape-interval"));
}

/// POST `body` as JSON: status and body.
fn post(url: &str, body: &[u8]) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = ::reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn notification(alerts: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"version": "4", "status": "firing", "receiver": "slo", "groupKey": "g",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts}))
    .unwrap()
}

fn firing(i: usize) -> serde_json::Value {
    serde_json::json!({"status": "firing", "labels": {"alertname": "SLOErrorBudgetBurn", "service": "nowhere", "n": i.to_string()},
        "annotations": {}, "startsAt": "2026-11-22T14:15:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": format!("f{i}")})
}

/// Hostile or broken input to the receiver costs nothing else: malformed payloads get 400
/// naming the field and keep nothing; a flood past the queue gets 503 and keeps nothing;
/// an unreachable forward URL is recorded as such; repeats are kept once; the alerts
/// survive a restart; the server serves throughout.
#[test]
fn the_receiver_refuses_bad_payloads_and_floods_and_keeps_serving() {
    use crate::support::{FAST_CONFIG, Server, http_get};
    let tmp = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "{FAST_CONFIG}alerts: {{ queue: 3, retries: 2, timeout_s: 1, forward: [{{ url: 'http://{dead}/hook', format: slack }}] }}\n"
    );
    let data = tmp.path().join("data");
    let mut server = Server::start_in(&data, &config);
    let url = format!("{}/api/v1/alerts", server.web);
    for (body, says) in [
        (b"{\"version\": \"4\", \"alerts\": [{\"status\": \"firing\"}]}".to_vec(), "alerts[0].labels"),
        (
            notification(vec![serde_json::json!({"status": "firing", "labels": {"a": "b"}, "startsAt": "noon"})]),
            "alerts[0].startsAt",
        ),
        (b"{\"version\": \"5\", \"alerts\": []}".to_vec(), "version"),
        (b"\x00\x01garbage".to_vec(), "not JSON"),
    ] {
        let (status, text) = post(&url, &body);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(says), "{says:?} not in {text}");
    }
    let (status, _) = post(&url, &vec![b' '; 2 << 20]);
    assert_eq!(status, 413, "a body over 1 MiB");
    // One that fits, twice in one notification and sent twice (Alertmanager repeats
    // groups): kept and explained once.
    let one = notification(vec![firing(1), firing(1)]);
    assert_eq!(post(&url, &one).0, 200);
    assert_eq!(post(&url, &one).0, 200);
    // Its forward goes nowhere: two attempts (1 s timeout, 1 s apart), then recorded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, list) = http_get(&url);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        if v["alerts"][0]["forwarded"].as_array().is_some_and(|f| !f.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never forwarded: {list}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Long enough for a second explanation and forward, had the alert been queued twice.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let kept: serde_json::Value = serde_json::from_str(&http_get(&url).1).unwrap();
    let alerts = kept["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{kept}");
    assert_eq!(alerts[0]["forwarded"].as_array().unwrap().len(), 1, "explained and forwarded once: {kept}");
    let forwarded = alerts[0]["forwarded"][0].as_str().unwrap();
    assert!(forwarded.contains("failed") && forwarded.contains("2 attempts"), "{forwarded}");
    // No requests for the service: kept unexplained, saying why.
    assert_eq!(alerts[0]["explanation"], "unexplained");
    assert!(alerts[0]["note"].as_str().unwrap().contains("no requests"), "{kept}");
    // A flood. Each alert keeps the worker over a second (two attempts 1 s apart), so
    // after three new ones (one taken, two waiting) the queue of three has room for one:
    // two more are refused whole, nothing kept, for Alertmanager to send again.
    assert_eq!(post(&url, &notification((10..13).map(firing).collect())).0, 200);
    let (status, text) = post(&url, &notification((20..22).map(firing).collect()));
    assert_eq!(status, 503, "{text}");
    assert!(!http_get(&format!("{url}?limit=1000")).1.contains("\"f20\""), "a refused notification kept nothing");
    // More new alerts in one notification than the queue can ever hold: once it has room,
    // three are explained and the rest kept unexplained, saying why (refusing it would
    // be for ever).
    let flood = notification((100..150).map(firing).collect());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while post(&url, &flood).0 == 503 {
        assert!(std::time::Instant::now() < deadline, "the queue never drained");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (_, list) = http_get(&format!("{url}?limit=1000"));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let flooded: Vec<&serde_json::Value> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["fingerprint"].as_str().unwrap().starts_with("f1") && a["fingerprint"].as_str().unwrap().len() == 4
        })
        .collect();
    assert_eq!(flooded.len(), 50, "{list}");
    let told =
        flooded.iter().filter(|a| a["note"].as_str().is_some_and(|n| n.contains("alerts.queue explains 3"))).count();
    assert_eq!(told, 47, "{list}");
    assert_eq!(http_get(&format!("{url}?limit=10")).1.matches("\"fingerprint\"").count(), 10, "limit");
    let (status, text) = http_get(&format!("{url}?colour=red"));
    assert!(status == 400 && text.contains("colour"), "{text}");
    assert_eq!(http_get(&format!("{}/healthz", server.web)).0, 200);
    // The alert survives a restart.
    server.stop();
    let server = Server::start_in(&data, &config);
    let (_, list) = http_get(&format!("{}/api/v1/alerts", server.web));
    assert!(list.contains("\"fingerprint\":\"f1\""), "{list}");
}
