//! Starting and stopping `slo serve`, and asking it things.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_slo");

/// A live `slo loadgen simulate`, killed when dropped.
pub(crate) struct Sim {
    pub child: Child,
    pub base: String,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Starts `slo loadgen simulate --listen 127.0.0.1:0` with a kubeconfig written.
    pub(crate) fn start(args: &[&str]) -> Sim {
        Sim::start_on("127.0.0.1:0", args)
    }

    /// Starts `slo loadgen simulate --listen LISTEN` with a kubeconfig written.
    pub(crate) fn start_on(listen: &str, args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(BIN)
            .args(["loadgen", "simulate", "--listen", listen])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slo loadgen simulate");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap_or_else(|| panic!("no http= in {line:?}"))
            .to_string();
        assert!(std::fs::read_to_string(&kubeconfig).unwrap().contains(&format!("http://{http}")));
        Sim { child, base: format!("http://{http}"), kubeconfig, _dir: dir }
    }

    /// Waits for the run to end; returns the summary line (stderr).
    pub(crate) fn wait(mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
                assert!(st.success(), "simulate failed: {err}");
                return err;
            }
            assert!(Instant::now() < deadline, "simulate did not finish in {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET: status and body.
pub(crate) fn http_get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = ::reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// POST without a body: the status.
pub(crate) fn http_post(url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        ::reqwest::Client::new().post(url).timeout(Duration::from_secs(10)).send().await.unwrap().status().as_u16()
    })
}

/// A config that makes trace assembly quick, for tests.
pub(crate) const FAST_CONFIG: &str = "collector:\n  assembly:\n    idle_ms: 300\n    max_wait_ms: 2000\nstore:\n  flush_interval_s: 2\nshutdown_grace_s: 10\n";

/// A running `slo serve`, killed when dropped.
pub(crate) struct Server {
    pub child: Child,
    pub data_dir: PathBuf,
    pub grpc: String,
    pub http: String,
    pub web: String,
    /// Environment for `slo` clients of this server (`SLO_TOKEN`, `SLO_CA_FILE`).
    pub client_env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

/// How to start a server beyond its data dir and config.
#[derive(Default)]
pub(crate) struct Launch<'a> {
    /// More `slo serve` arguments.
    pub extra: &'a [&'a str],
    /// Environment of the server (tokens).
    pub env: Vec<(&'a str, String)>,
    /// The CA of the server's TLS certificate: URLs are `https://` and clients trust it.
    pub ca: Option<PathBuf>,
    /// The token `slo` clients of this server send.
    pub token: Option<String>,
}

/// A reqwest client that trusts `ca`.
pub(crate) fn client_trusting(ca: Option<&Path>) -> ::reqwest::Client {
    let mut b = ::reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        for c in ::reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap() {
            b = b.add_root_certificate(c);
        }
    }
    b.build().unwrap()
}

impl Server {
    /// Starts a server on a new data dir.
    pub(crate) fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::start_in(&data, FAST_CONFIG);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `data_dir` with a config text; waits until it is ready.
    pub(crate) fn start_in(data_dir: &Path, config: &str) -> Server {
        Server::start_with(data_dir, config, &[])
    }

    /// Like [`Server::start_in`], with more `slo serve` arguments.
    pub(crate) fn start_with(data_dir: &Path, config: &str, extra: &[&str]) -> Server {
        Server::launch(data_dir, config, Launch { extra, ..Default::default() })
    }

    /// Starts a server as `launch` says; waits until it is ready.
    pub(crate) fn launch(data_dir: &Path, config: &str, launch: Launch<'_>) -> Server {
        let extra = launch.extra;
        std::fs::create_dir_all(data_dir).unwrap();
        let cfg = data_dir.with_extension("yaml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .envs(launch.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start slo serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        let scheme = if launch.ca.is_some() { "https" } else { "http" };
        let mut client_env = Vec::new();
        if let Some(ca) = &launch.ca {
            client_env.push(("SLO_CA_FILE".to_string(), ca.display().to_string()));
        }
        if let Some(t) = &launch.token {
            client_env.push(("SLO_TOKEN".to_string(), t.clone()));
        }
        let s = Server {
            grpc: format!("{scheme}://{}", field("otlp_grpc")),
            http: format!("{scheme}://{}", field("otlp_http")),
            web: format!("{scheme}://{}", field("http")),
            child,
            data_dir: data_dir.to_path_buf(),
            client_env,
            _tmp: None,
        };
        s.wait_ready(launch.ca.as_deref());
        s
    }

    fn wait_ready(&self, ca: Option<&Path>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = client_trusting(ca);
        loop {
            let status =
                rt.block_on(async { client.get(format!("{}/readyz", self.web)).send().await.map(|r| r.status()) });
            if status.is_ok_and(|s| s == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process still runs and answers /healthz.
    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
            && reqwest::blocking_get(&format!("{}/healthz", self.web)).is_ok_and(|s| s == 200)
    }

    /// SIGKILL.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// SIGTERM and wait; returns the exit status.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop in 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `slo query --server` as JSON rows.
    pub(crate) fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = Command::new(BIN)
            .args(["query", "--server", &self.web, "--format", "json", sql])
            .envs(self.client_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "query failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A `count(*)`-style query's single number.
    pub(crate) fn count(&self, sql: &str) -> i64 {
        let rows = self.query(sql);
        rows[0].as_object().unwrap().values().next().unwrap().as_i64().unwrap()
    }

    /// Polls until `sql` counts `want` (request rows wait for trace assembly).
    pub(crate) fn wait_count(&self, sql: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let n = self.count(sql);
            if n == want {
                return;
            }
            assert!(Instant::now() < deadline, "{sql}: {n}, want {want}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary.
pub(crate) fn slo(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap()
}

/// Tiny blocking HTTP GET so support code needs no runtime.
pub(crate) mod reqwest {
    pub(crate) fn blocking_get(url: &str) -> Result<u16, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let r = ::reqwest::Client::new()
                .get(url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.status().as_u16())
        })
    }
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(Value::StringValue(v.into())) })
}

/// An export request with `n` vLLM-like server spans, trace ids derived from `seed`.
pub(crate) fn export_request(seed: u64, n: usize) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = (0..n)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.to_be_bytes());
            trace_id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let attrs = [
                ("gen_ai.response.model", "m"),
                ("gen_ai.latency.time_in_queue", "0.01"),
                ("gen_ai.latency.time_in_model_inference", "0.05"),
                ("gen_ai.usage.prompt_tokens", "100"),
                ("gen_ai.usage.completion_tokens", "20"),
                ("http.request.method", "POST"),
                ("url.path", "/v1/completions"),
                ("server.address", "vllm"),
                ("gen_ai.request.max_tokens", "256"),
                ("gen_ai.request.temperature", "0.7"),
                ("gen_ai.request.top_p", "0.9"),
                ("gen_ai.system", "vllm"),
                ("gen_ai.operation.name", "text_completion"),
                ("gen_ai.request.id", "cmpl-1234567890"),
                ("gen_ai.latency.time_to_first_token", "0.02"),
            ];
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "llm_request".into(),
                kind: 2,
                start_time_unix_nano: now - 60_000_000,
                end_time_unix_nano: now,
                attributes: attrs
                    .iter()
                    .map(|(k, v)| KeyValue { key: k.to_string(), value: s(v), ..Default::default() })
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue { key: "service.name".into(), value: s("vllm"), ..Default::default() },
                    KeyValue { key: "k8s.pod.name".into(), value: s("vllm-0"), ..Default::default() },
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Debian's promtool, or `None` (skip) where it is missing and CI does not require it.
pub(crate) fn promtool() -> Option<&'static str> {
    let bin = ["/usr/bin/promtool", "/usr/local/bin/promtool"].into_iter().find(|p| Path::new(p).exists());
    if bin.is_none() {
        assert!(
            std::env::var_os("SLO_REQUIRE_PROMETHEUS").is_none(),
            "promtool is not installed (.ci/run installs it)"
        );
        eprintln!("promtool not installed; skipping");
    }
    bin
}

/// Runs `promtool args` in `dir` and fails the test with its output unless it succeeds.
pub(crate) fn promtool_ok(promtool: &str, args: &[&str], dir: &Path) {
    let out = Command::new(promtool).args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Posts an OTLP/HTTP protobuf export and expects it acknowledged.
pub(crate) async fn post_ok(base: &str, body: Vec<u8>) {
    let r = ::reqwest::Client::new()
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.to_str().unwrap().to_string());
        }
    }
    out.sort();
    out
}
