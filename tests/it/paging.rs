//! A fault pages someone, explained, through real components: the simulator (live,
//! accelerated) drives `slo serve`; a real Prometheus (Debian's) scrapes its `/metrics`
//! and evaluates the rules `slo rules` generates; a real Alertmanager routes the alerts to
//! `slo serve`'s receiver, which explains each and forwards it to a webhook this test
//! runs. On `hpa-scale-down` the page arrives naming the HPA; on `control` nothing pages.
//! Every process is started on loopback and stopped by its id.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{BIN, Launch, Server};

/// A queue-time SLO over 12 hours: its page-fast windows scale to one minute, ten
/// simulated minutes at 10x.
const SLO: &str = "slos:\n  - name: llama-70b-queue\n    service: llama-70b\n    objective: 99%\n    window: 12h\n    \
                   latency: { metric: queue, threshold: 2s }\n    alerting: { absent: 'off' }\n";

/// SLOs of every other shape `slo rules` writes (errors, traffic-aware, TTFT and compute
/// thresholds off the default buckets, absent data), for grafana.rs to check that each
/// rule returns data. Loose enough never to fire on these runs; their alerts are dropped
/// before Alertmanager either way (`alert_relabel_configs`), so only the SLO above pages.
const CHECK_SLOS: &str = "  - { name: check-errors, service: llama-70b, objective: 90%, window: 1d, errors: {}, \
                          alerting: { traffic_aware: true, absent: 'off' } }\n  \
                          - { name: check-ttft, service: llama-70b, objective: 50%, window: 1d, \
                          latency: { metric: ttft, threshold: 170s }, alerting: { absent: 'off' } }\n  \
                          - { name: check-compute, service: llama-70b, objective: 50%, window: 1d, \
                          latency: { metric: compute, threshold: 170s }, alerting: { absent: 10m } }\n";

fn binary(names: &[&'static str]) -> Option<&'static str> {
    let found = names.iter().copied().find(|p| Path::new(p).exists());
    if found.is_none() {
        assert!(std::env::var_os("SLO_REQUIRE_PROMETHEUS").is_none(), "{names:?} not installed (.ci/run installs it)");
        eprintln!("{names:?} not installed; skipping");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process stopped (by its id) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A webhook: every POST body, as JSON, down a channel.
fn sink() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                let _ = tx.send(v);
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

/// Keeps a Prometheus file_sd file of the simulator's `/metrics` targets (its live pods and
/// nodes, from its status page) until dropped.
struct SimTargets(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl SimTargets {
    fn start(sim: String, file: std::path::PathBuf) -> SimTargets {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let client = reqwest::Client::new();
            let url = format!("http://{sim}/slo-sim/status");
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Nothing answers before the simulator starts, nor after it ends.
                let fetch =
                    async { client.get(&url).timeout(Duration::from_secs(2)).send().await.ok()?.json().await.ok() };
                if let Some(status) = rt.block_on(fetch).filter(|s: &serde_json::Value| s["targets"].is_array()) {
                    let groups: Vec<serde_json::Value> = status["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .map(|path| {
                            // The labels Kubernetes service discovery would give: the pod
                            // (or node) and a distinct instance.
                            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
                            let mut labels = serde_json::json!({ "__metrics_path__": path, "instance": path });
                            match parts.as_slice() {
                                ["pods", ns, pod, _] => {
                                    labels["namespace"] = (*ns).into();
                                    labels["pod"] = (*pod).into();
                                }
                                ["nodes", node, _] => labels["node"] = (*node).into(),
                                _ => {}
                            }
                            serde_json::json!({ "targets": [sim], "labels": labels })
                        })
                        .collect();
                    let tmp = file.with_extension("tmp");
                    if std::fs::write(&tmp, serde_json::to_string(&groups).unwrap()).is_ok() {
                        let _ = std::fs::rename(&tmp, &file);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        SimTargets(stop)
    }
}

impl Drop for SimTargets {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// slo serve, Prometheus, Alertmanager and the simulator, wired together.
struct Stack {
    sim: Proc,
    _refresher: SimTargets,
    _prometheus: Proc,
    _alertmanager: Proc,
    server: Server,
    prometheus: String,
    hooks: mpsc::Receiver<serde_json::Value>,
    sim_started: Instant,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(scenario: &str, speed: &str) -> Option<Stack> {
        let prometheus = binary(&["/usr/bin/prometheus"])?;
        let alertmanager = binary(&["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"])?;
        let dir = tempfile::tempdir().unwrap();
        let (hook, hooks) = sink();
        let api_port = free_port();
        let kube = dir.path().join("sim.kubeconfig");
        let namespace = slo_loadgen::load_scenario(scenario).unwrap().namespace;
        slo_loadgen::write_kubeconfig(&kube, &format!("http://127.0.0.1:{api_port}"), &namespace).unwrap();
        let config = format!(
            "collector: {{ assembly: {{ idle_ms: 1000, max_wait_ms: 5000 }} }}\nstore: {{ flush_interval_s: 5 }}\n\
             scrape: {{ interval_s: 1 }}\nanalyze_every_s: 3\nshutdown_grace_s: 10\n\
             alerts: {{ forward: [{{ url: '{hook}', format: json }}], retries: 2, timeout_s: 2 }}\n{SLO}{CHECK_SLOS}"
        );
        let server = Server::launch(
            &dir.path().join("data"),
            &config,
            Launch { extra: &["--kubeconfig", kube.to_str().unwrap(), "--kube-clock", "data"], ..Default::default() },
        );
        let web = server.web.trim_start_matches("http://").to_string();

        let rules = Command::new(BIN)
            .args(["rules", "--config", dir.path().join("data.yaml").to_str().unwrap(), "--scrape-interval", "1s"])
            .output()
            .unwrap();
        assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stderr));
        std::fs::write(dir.path().join("rules.yaml"), &rules.stdout).unwrap();
        let (am_port, prom_port) = (free_port(), free_port());
        // Prometheus also scrapes the simulator's exporters (dcgm per node, vLLM per pod) as
        // it would in a cluster, from a file the refresher keeps up with the live pods.
        let targets = dir.path().join("sim-targets.json");
        std::fs::write(&targets, "[]").unwrap();
        let refresher = SimTargets::start(format!("127.0.0.1:{api_port}"), targets.clone());
        std::fs::write(
            dir.path().join("am.yaml"),
            format!(
                "route: {{ receiver: slo, group_by: [alertname, slo, service, burnrate_tier, cause_kind], \
                 group_wait: 1s, group_interval: 1s, repeat_interval: 1h }}\n\
                 receivers: [{{ name: slo, webhook_configs: [{{ url: 'http://{web}/api/v1/alerts', send_resolved: true }}] }}]\n"
            ),
        )
        .unwrap();
        let am = Command::new(alertmanager)
            .arg(format!("--config.file={}", dir.path().join("am.yaml").display()))
            .arg(format!("--storage.path={}", dir.path().join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Alertmanager");
        std::fs::write(
            dir.path().join("prometheus.yaml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [rules.yaml]\n\
                 alerting:\n  alertmanagers: [{{ static_configs: [{{ targets: ['127.0.0.1:{am_port}'] }}] }}]\n  \
                 alert_relabel_configs:\n  - {{ source_labels: [slo], regex: 'check-.*', action: drop }}\n  \
                 - {{ source_labels: [alertname], regex: SLOTrafficAbsent, action: drop }}\n\
                 scrape_configs:\n- {{ job_name: slo, static_configs: [{{ targets: ['{web}'] }}] }}\n\
                 - {{ job_name: sim, file_sd_configs: [{{ files: ['{}'], refresh_interval: 1s }}] }}\n",
                targets.display()
            ),
        )
        .unwrap();
        let prom = Command::new(prometheus)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yaml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("prom").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Prometheus");
        // Both ready before the first request: a counter born before Prometheus's first scrape
        // of it loses what it counted until then (increase() starts at the first sample).
        for url in [format!("http://127.0.0.1:{prom_port}/-/ready"), format!("http://127.0.0.1:{am_port}/-/ready")] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while crate::support::reqwest::blocking_get(&url) != Ok(200) {
                assert!(Instant::now() < deadline, "{url} not ready in 30 s");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Simulated time starts a run's length back, so that the data stays behind the clock.
        let start = (chrono::Utc::now() - chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M:00Z").to_string();
        let sim = Command::new(BIN)
            .args(["loadgen", "simulate", "--scenario", scenario, "--speed", speed, "--start", &start])
            .args(["--otlp", &server.grpc, "--listen", &format!("127.0.0.1:{api_port}")])
            .arg("--kubeconfig")
            .arg(&kube)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator");
        Some(Stack {
            sim: Proc(sim),
            _refresher: refresher,
            _prometheus: Proc(prom),
            _alertmanager: Proc(am),
            server,
            prometheus: format!("http://127.0.0.1:{prom_port}"),
            hooks,
            sim_started: Instant::now(),
            _dir: dir,
        })
    }

    /// Waits for the simulated run to end, then for its last requests to be counted.
    fn wait_run(&mut self, limit: Duration) {
        while self.sim.0.try_wait().unwrap().is_none() {
            assert!(self.sim_started.elapsed() < limit, "the simulated run did not end in {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Trace assembly (1 s idle), a scrape and a rule evaluation (1 s each).
        std::thread::sleep(Duration::from_secs(6));
    }

    /// One value of an instant query to Prometheus.
    fn prometheus_value(&self, query: &str) -> f64 {
        let data = crate::grafana::api(&self.prometheus, "/api/v1/query", &[("query", query.to_string())]).unwrap();
        assert!(data["result"].as_array().is_some_and(|r| r.len() <= 1), "{query}: one series at most: {data}");
        data["result"][0]["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN)
    }

    /// Forwarded alerts until `until` says stop or `limit` passes since the simulator
    /// started; all of them.
    fn collect(&self, limit: Duration, until: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let mut got = Vec::new();
        while self.sim_started.elapsed() < limit && !until(&got) {
            if let Ok(mut v) = self.hooks.recv_timeout(Duration::from_millis(500)) {
                v["received_s"] = self.sim_started.elapsed().as_secs_f64().into();
                got.push(v);
            }
        }
        got
    }
}

fn label<'a>(hook: &'a serde_json::Value, name: &str) -> &'a str {
    hook["alert"]["labels"][name].as_str().unwrap_or_default()
}

#[test]
fn a_scale_down_pages_through_prometheus_and_alertmanager_with_its_cause() {
    let Some(mut stack) = Stack::start("hpa-scale-down", "10") else { return };
    let is_page =
        |h: &serde_json::Value| label(h, "alertname") == "SLOErrorBudgetBurn" && label(h, "severity") == "page";
    let regression = |h: &serde_json::Value| {
        label(h, "alertname") == "InferenceP99Regression" && label(h, "cause_kind") == "scale_down"
    };
    let got = stack.collect(Duration::from_secs(240), |got| got.iter().any(is_page) && got.iter().any(regression));
    let summary: Vec<String> = got
        .iter()
        .map(|h| {
            format!(
                "{:.0} s: {} {} {} -> {} {}",
                h["received_s"].as_f64().unwrap_or(f64::NAN),
                label(h, "alertname"),
                label(h, "burnrate_tier"),
                label(h, "cause_kind"),
                h["report"]["causes"][0]["kind"],
                h["report"]["causes"][0]["object"]
            )
        })
        .collect();
    // For BENCHMARKS.md: when each arrived, in simulated time (10x from the simulator's
    // start), against the regression's onset the report names.
    eprintln!("forwarded (wall s after the simulator started -> alert, tier, cause label -> explained cause):");
    for (h, line) in got.iter().zip(&summary) {
        eprintln!("  {line}  onset {}", h["report"]["regression"]["onset"]);
    }
    eprintln!("all within {:.0} s of wall time", stack.sim_started.elapsed().as_secs_f64());
    let page = got.iter().find(|h| is_page(h)).unwrap_or_else(|| panic!("no page forwarded; got {summary:#?}"));
    assert_eq!(page["alert"]["status"], "firing");
    assert_eq!(page["alert"]["explanation"], "explained", "{page:#}");
    assert_eq!(page["report"]["causes"][0]["kind"], "scale_down", "{summary:#?}");
    assert_eq!(page["report"]["causes"][0]["object"], "hpa/llama-70b", "{summary:#?}");
    assert!(label(page, "burnrate_tier").starts_with("page-"), "{page:#}");
    // The continuous analyzer's alert carries the same cause in its labels.
    let reg = got.iter().find(|h| regression(h)).unwrap_or_else(|| panic!("no regression alert; got {summary:#?}"));
    assert_eq!(label(reg, "cause_object"), "hpa/llama-70b");
    // The receiver kept them: the same alerts through its API, explained once each.
    let (status, body) = crate::support::http_get(&format!("{}/api/v1/alerts?status=firing", stack.server.web));
    assert_eq!(status, 200, "{body}");
    let kept: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kept = kept["alerts"].as_array().unwrap();
    assert!(kept.iter().any(|a| a["labels"]["alertname"] == "SLOErrorBudgetBurn"), "{body}");
    let forwarded = got.iter().filter(|h| is_page(h)).count();
    let pages_kept = kept
        .iter()
        .filter(|a| a["labels"]["alertname"] == "SLOErrorBudgetBurn" && a["labels"]["severity"] == "page")
        .count();
    assert!(forwarded <= pages_kept, "an alert was forwarded twice: {forwarded} forwards of {pages_kept} pages");

    // Once every request is in, Prometheus (from the generated rules over the SLI
    // histogram) and slo explain (from its sketches) agree on the SLO within 1%: the
    // 12-hour period holds the whole run for both.
    stack.wait_run(Duration::from_secs(230));
    let out = Command::new(BIN)
        .args(["explain", "--server", &stack.server.web, "--slo", "llama-70b-queue", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = (report["slo"]["budget_remaining"].as_f64().unwrap(), report["slo"]["sli_value"].as_f64().unwrap());
    let theirs = (
        stack.prometheus_value(r#"slo:period_error_budget_remaining:ratio{sloth_slo="llama-70b-queue"}"#),
        1.0 - stack.prometheus_value(r#"slo:sli_error:ratio_rate12h{sloth_slo="llama-70b-queue"}"#),
    );
    eprintln!("budget remaining / SLI: slo explain {ours:?}, Prometheus {theirs:?}");
    assert!(ours.0 < 0.0, "the run overspent the budget: {ours:?}");
    assert!((ours.0 - theirs.0).abs() <= 0.01 * ours.0.abs().max(1.0), "budget remaining: {ours:?} vs {theirs:?}");
    assert!((ours.1 - theirs.1).abs() <= 0.01 * ours.1, "SLI: {ours:?} vs {theirs:?}");

    // The same run feeds the Grafana dashboards: every panel's, variable's and annotation's
    // query, and every generated rule, returns data from this Prometheus.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    crate::grafana::every_query_returns_data(&stack.prometheus, (now - stack.sim_started.elapsed().as_secs_f64(), now));
}

#[test]
fn steady_traffic_pages_nobody() {
    let Some(stack) = Stack::start("control", "20") else { return };
    // The run lasts 90 s at 20x; give Prometheus and the analyzer 20 s more.
    let got = stack.collect(Duration::from_secs(110), |_| false);
    let alerts: Vec<&str> = got.iter().map(|h| label(h, "alertname")).collect();
    assert!(alerts.is_empty(), "alerts on steady traffic: {got:#?}");
    // Prometheus did evaluate the rules all along: the SLI was there and healthy.
    let ratio = stack.prometheus_value(r#"slo:sli_error:ratio_rate12h{sloth_slo="llama-70b-queue"}"#);
    assert!(ratio < 0.01, "the queue SLI's error ratio over the run: {ratio}");
    let (status, body) = crate::support::http_get(&format!("{}/metrics", stack.server.web));
    assert_eq!(status, 200);
    assert!(body.contains("slo_request_queue_seconds_bucket{le=\"2.0\",service=\"llama-70b\""), "{body}");
    assert!(
        body.contains("slo_regression_active{service=\"llama-70b\",cause_kind=\"\",cause_object=\"\"} 0"),
        "{body}"
    );
}
