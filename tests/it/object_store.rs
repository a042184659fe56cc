//! Segments in an S3-compatible object store: moto's S3 server (PyPI `moto[s3]`, pinned in
//! tests/python/requirements.txt), started here on loopback. Two `slo serve` collectors get
//! the simulator's traces split by trace id, as the OpenTelemetry Collector's
//! load-balancing exporter in front of them would; `slo query` and `slo explain` over the
//! bucket must answer as one data directory holding everything does, through an object
//! store that is down at first and a collector killed with SIGKILL on the way.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::support::{BIN, Launch, Server, files_under, slo};

fn python() -> String {
    std::env::var("SLO_TEST_PYTHON").expect("SLO_TEST_PYTHON is not set: run scripts/test, which makes the pinned venv")
}

/// moto's S3 server, stopped by its process id when dropped.
pub(crate) struct S3 {
    child: Child,
    endpoint: String,
}

impl S3 {
    pub(crate) fn start(port: u16) -> S3 {
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's S3 server");
        let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    pub(crate) fn create_bucket(&self, name: &str) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
             aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{name}')",
            self.endpoint
        );
        let out = Command::new(python()).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "create bucket: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// What `slo` needs to reach the test server (the credentials moto takes).
pub(crate) fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

pub(crate) fn slo_with(env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").envs(env.iter().map(|(k, v)| (*k, v))).output().unwrap()
}

/// The export split in two by trace id, as a load-balancing exporter routes it.
fn split(req: &ExportTraceServiceRequest) -> [ExportTraceServiceRequest; 2] {
    let mut out = [ExportTraceServiceRequest::default(), ExportTraceServiceRequest::default()];
    for rs in &req.resource_spans {
        for (half, part) in out.iter_mut().enumerate() {
            let scopes: Vec<ScopeSpans> = rs
                .scope_spans
                .iter()
                .map(|ss| ScopeSpans {
                    spans: ss
                        .spans
                        .iter()
                        .filter(|s| usize::from(s.trace_id.last().copied().unwrap_or(0) % 2) == half)
                        .cloned()
                        .collect(),
                    ..ss.clone()
                })
                .filter(|ss| !ss.spans.is_empty())
                .collect();
            if !scopes.is_empty() {
                part.resource_spans.push(ResourceSpans { scope_spans: scopes, ..rs.clone() });
            }
        }
    }
    out
}

/// Sends each file's half for collector `half` (0 or 1) to `base` over OTLP/HTTP.
fn feed(files: &[String], half: usize, base: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for f in files {
        let req = ExportTraceServiceRequest::decode(std::fs::read(f).unwrap().as_slice()).unwrap();
        let part = split(&req)[half].clone();
        if !part.resource_spans.is_empty() {
            rt.block_on(crate::support::post_ok(base, part.encode_to_vec()));
        }
    }
}

fn count(out: &Output) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0].as_object()?.values().next()?.as_i64()
}

/// `requests` rows in a data directory, by `slo query --data-dir`.
fn requests_in(dir: &Path) -> Option<i64> {
    count(&slo(&["query", "--data-dir", dir.to_str().unwrap(), "--format", "json", "SELECT count(*) FROM requests"]))
}

fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub(crate) fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = crate::support::http_get(&format!("{}/metrics", server.web));
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

pub(crate) fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn two_collectors_in_a_bucket_answer_as_one_directory_holding_everything() {
    let tmp = tempfile::tempdir().unwrap();
    // The serving collectors take spans up to an hour old: start the run 40 min back.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let start_s = (now - 40 * 60) / 60 * 60;
    let iso = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let run = ["--scenario", "hpa-scale-down", "--seed", "1", "--start", &iso(start_s), "--duration", "20m"];
    let out = tmp.path().join("files");
    stdout_ok(&slo(&[&["loadgen", "simulate"][..], &run[..], &["--out", out.to_str().unwrap()]].concat()), "simulate");
    let traces = files_under(&out.join("traces"));
    let mut cluster = vec![out.join("kube").join("watch.jsonl").to_str().unwrap().to_string()];
    cluster.extend(files_under(&out.join("metrics")));

    // The reference: one data directory holding everything.
    let reference = tmp.path().join("reference");
    let mut import = vec!["import", "--data-dir", reference.to_str().unwrap()];
    import.extend(traces.iter().map(String::as_str));
    import.extend(cluster.iter().map(String::as_str));
    stdout_ok(&slo(&import), "import the reference");

    // The object store is down when the collectors start.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = aws_env(&endpoint);
    let bucket = "s3://slo/fleet";
    let config = |name: &str| {
        format!(
            "collector:\n  assembly:\n    idle_ms: 300\n    max_wait_ms: 2000\nstore:\n  flush_interval_s: 1\n  \
             retention_hours: 0\n  collector: {name}\n  object_store:\n    url: {bucket}\nshutdown_grace_s: 10\n\
             query_timeout_s: 3\n"
        )
    };
    let launch = |name: &str| {
        Server::launch(&tmp.path().join(name), &config(name), Launch { env: env.clone(), ..Default::default() })
    };
    let mut c1 = launch("c1");
    let c2 = launch("c2");
    let (first, second) = traces.split_at(traces.len() / 2);
    feed(first, 0, &c1.http);
    feed(first, 1, &c2.http);
    wait_until(Duration::from_secs(60), "uploads failing while the object store is down", || {
        metric(&c1, "slo_store_upload_errors_total") >= 2.0 && metric(&c2, "slo_store_upload_errors_total") >= 2.0
    });
    // Meanwhile every acknowledged span is queryable from the collectors themselves.
    assert!(c1.count("SELECT count(*) FROM requests") > 0 && c2.count("SELECT count(*) FROM requests") > 0);

    // It comes back: what waited on the local disks goes up.
    let s3 = S3::start(port);
    s3.create_bucket("slo");
    let in_bucket = |sql: &str| count(&slo_with(&env, &["query", "--bucket", bucket, "--format", "json", sql]));
    let local_sum =
        |a: &Server, b: &Server| a.count("SELECT count(*) FROM requests") + b.count("SELECT count(*) FROM requests");
    let first_half = local_sum(&c1, &c2);
    wait_until(Duration::from_secs(90), "both collectors' segments uploaded", || {
        in_bucket("SELECT count(*) FROM requests") == Some(first_half)
    });

    // One collector dies; the other goes on. The bucket says which one is behind.
    c1.kill9();
    feed(second, 1, &c2.http);
    let behind = || slo_with(&env, &["query", "--bucket", bucket, "--format", "json", "SELECT count(*) FROM requests"]);
    wait_until(Duration::from_secs(60), "the dead collector named as behind", || {
        String::from_utf8_lossy(&behind().stderr).contains("collector \"c1\"")
    });

    // It restarts on its data directory and gets its share of the rest; the cluster's
    // changes and scrapes come from one watcher of their own.
    let c1 = launch("c1");
    feed(second, 0, &c1.http);
    let watch_cfg = tmp.path().join("watch.yaml");
    std::fs::write(
        &watch_cfg,
        format!("store:\n  retention_hours: 0\n  collector: watch\n  object_store:\n    url: {bucket}\n"),
    )
    .unwrap();
    let mut import = vec!["import", "--config", watch_cfg.to_str().unwrap(), "--data-dir"];
    let watch_dir = tmp.path().join("watch");
    import.push(watch_dir.to_str().unwrap());
    import.extend(cluster.iter().map(String::as_str));
    let said = stdout_ok(&slo_with(&env, &import), "import the cluster's files");
    assert!(said.contains("uploaded") && said.contains("s3://slo/fleet/watch"), "{said}");

    let all = requests_in(&reference);
    wait_until(Duration::from_secs(90), "every request in the bucket", || {
        in_bucket("SELECT count(*) FROM requests") == all
    });
    assert!(!String::from_utf8_lossy(&behind().stderr).contains("warning"), "no collector is behind now");
    // Uploaded means gone from the local disks (the WAL stays there).
    let local_segments = || {
        ["c1", "c2", "watch"]
            .iter()
            .flat_map(|c| files_under(&tmp.path().join(c)))
            .filter(|f| f.ends_with(".parquet") || (f.ends_with(".bin") && f.contains("/rollups/")))
            .collect::<Vec<_>>()
    };
    // (A collector keeps them query_timeout_s + 5 s: 8 s here.)
    wait_until(Duration::from_secs(30), "local copies deleted once uploaded", || local_segments().is_empty());

    // The same answers as the one directory.
    let reference_dir = reference.to_str().unwrap();
    for sql in [
        "SELECT service, model, status, count(*) AS n, round(sum(duration_ms), 3) AS d, round(sum(queue_ms), 3) AS q, \
         min(duration_ms) AS lo, max(duration_ms) AS hi FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        "SELECT kind, object, count(*) AS n FROM changes GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT metric, count(*) AS n, round(sum(value), 3) AS v FROM samples GROUP BY 1 ORDER BY 1",
    ] {
        let one = stdout_ok(&slo(&["query", "--data-dir", reference_dir, "--format", "csv", sql]), sql);
        let two = stdout_ok(&slo_with(&env, &["query", "--bucket", bucket, "--format", "csv", sql]), sql);
        assert!(one.lines().count() > 1, "{sql}: no rows");
        assert_eq!(one, two, "{sql}");
    }
    for minutes in [16, 19] {
        let at = iso(start_s + minutes * 60);
        let ask = |from: &[&str]| {
            let args = [&["explain"][..], from, &["--service", "llama-70b", "--at", &at, "--format", "json"]].concat();
            let out = slo_with(&env, &args);
            serde_json::from_str::<serde_json::Value>(&stdout_ok(&out, "explain")).unwrap()
        };
        let one = ask(&["--data-dir", reference_dir]);
        let two = ask(&["--bucket", bucket]);
        for field in ["detected", "onset", "ongoing", "p99_before_ms", "p99_after_ms"] {
            assert_eq!(one["regression"][field], two["regression"][field], "at {at}, {field}: {one:#}\n{two:#}");
        }
        assert_eq!(two["causes"][0]["object"], "hpa/llama-70b", "at {at}: {two:#}");
        assert_eq!(one["causes"][0], two["causes"][0], "at {at}");
    }
    // A query node serves the same over HTTP: dashboard API, explain, and each
    // collector's upload times on /metrics.
    let node = QueryNode::over(bucket, tmp.path(), &env);
    let at = iso(start_s + 19 * 60);
    let (code, body) =
        crate::support::http_get(&format!("{}/api/v1/explain?service=llama-70b&at={at}&window=1h", node.web));
    assert_eq!(code, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cli =
        slo_with(&env, &["explain", "--bucket", bucket, "--service", "llama-70b", "--at", &at, "--format", "json"]);
    let cli: serde_json::Value = serde_json::from_str(&stdout_ok(&cli, "explain")).unwrap();
    assert_eq!(served["regression"], cli["regression"]);
    assert_eq!(served["causes"][0], cli["causes"][0]);
    let (_, metrics) = crate::support::http_get(&format!("{}/metrics", node.web));
    for c in ["c1", "c2", "watch"] {
        assert!(metrics.contains(&format!("slo_bucket_newest_data_seconds{{collector=\"{c}\"}}")), "{c}: {metrics}");
    }
    let (code, _) = crate::support::http_get(&format!("{}/services/llama-70b", node.web));
    assert_eq!(code, 200);
    drop(node);
    drop(c1);
    drop(c2);
    drop(s3);
}

/// `slo serve --role query`, stopped by its process id when dropped.
pub(crate) struct QueryNode {
    child: Child,
    pub(crate) web: String,
}

impl QueryNode {
    /// A query node over `bucket` (re-read every second), its config and data under `dir`.
    pub(crate) fn over(bucket: &str, dir: &Path, env: &[(&str, String)]) -> QueryNode {
        let cfg = dir.join("query.yaml");
        let text = format!("role: query\nquery_node:\n  refresh_s: 1\nstore:\n  object_store:\n    url: {bucket}\n");
        std::fs::write(&cfg, text).unwrap();
        QueryNode::start(&cfg, &dir.join("query"), env)
    }

    fn start(config: &Path, data_dir: &Path, env: &[(&str, String)]) -> QueryNode {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .args(["serve", "--http", "127.0.0.1:0", "--config", config.to_str().unwrap()])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("role=query"), "{line}");
        let addr = line.split_whitespace().find_map(|w| w.strip_prefix("http=")).unwrap().to_string();
        let node = QueryNode { child, web: format!("http://{addr}") };
        wait_until(Duration::from_secs(30), "the query node ready", || {
            crate::support::http_get(&format!("{}/readyz", node.web)).0 == 200
        });
        node
    }
}

impl Drop for QueryNode {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// A TCP relay to `target` on `port`, for an object store that stops and comes back with
/// what it held (moto keeps its objects in memory: stopping moto itself would lose them).
/// [`Relay::stop`] closes the port and resets every open connection, as a stopped server.
struct Relay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<parking_lot::Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(port: u16, target: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the relay's port again");
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<TcpStream>::new()));
        let (s, o) = (stop.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut held = o.lock();
                for (mut from, mut to) in
                    [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())]
                        .into_iter()
                        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
                held.extend([client, server]);
            }
        });
        Relay { stop, open, accept: Some(accept) }
    }

    fn stop(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.open.lock().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.close();
    }
}

/// The object store stops while a collector uploads, and the collector is killed with
/// SIGKILL during the outage: segments wait on its disk, uploads retry (counted), the
/// restarted collector finds what waits, and once the store is back the bucket holds
/// everything, as one data directory that imported the same files does. (While the store
/// is down, a query that needs an uploaded file fails; the test does not ask one.)
#[test]
fn an_object_store_stopped_mid_run_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let start_s = (now - 30 * 60) / 60 * 60;
    let iso = chrono::DateTime::from_timestamp(start_s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let run = ["--scenario", "hpa-scale-down", "--seed", "2", "--start", &iso, "--duration", "10m"];
    let out = tmp.path().join("files");
    stdout_ok(&slo(&[&["loadgen", "simulate"][..], &run[..], &["--out", out.to_str().unwrap()]].concat()), "simulate");
    let traces = files_under(&out.join("traces"));
    let reference = tmp.path().join("reference");
    let mut import = vec!["import", "--data-dir", reference.to_str().unwrap()];
    import.extend(traces.iter().map(String::as_str));
    stdout_ok(&slo(&import), "import the reference");

    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (moto_port, port) = (free_port(), free_port());
    let s3 = S3::start(moto_port);
    s3.create_bucket("slo");
    let relay = Relay::start(port, moto_port);
    let env = aws_env(&format!("http://127.0.0.1:{port}"));
    let bucket = "s3://slo/outage";
    let config = "collector:\n  assembly:\n    idle_ms: 300\n    max_wait_ms: 2000\nstore:\n  flush_interval_s: 1\n  \
                  retention_hours: 0\n  collector: c1\n  object_store:\n    url: s3://slo/outage\nshutdown_grace_s: 10\n\
                  query_timeout_s: 3\n";
    let dir = tmp.path().join("c1");
    let launch = || Server::launch(&dir, config, Launch { env: env.clone(), ..Default::default() });
    let in_bucket = |sql: &str| count(&slo_with(&env, &["query", "--bucket", bucket, "--format", "json", sql]));
    let (first, second) = traces.split_at(traces.len() / 2);
    let feed_all = |files: &[String], base: &str| {
        feed(files, 0, base);
        feed(files, 1, base);
    };
    let mut c1 = launch();
    feed_all(first, &c1.http);
    // The collector's own count holds its memory too (traces still being assembled):
    // equal, everything is in the bucket.
    wait_until(Duration::from_secs(90), "the first half uploaded", || {
        let local = c1.count("SELECT count(*) FROM requests");
        local > 0 && in_bucket("SELECT count(*) FROM requests") == Some(local)
    });

    // The object store stops mid-run; data keeps coming and is acknowledged.
    relay.stop();
    let errors_before = metric(&c1, "slo_store_upload_errors_total");
    feed_all(second, &c1.http);
    wait_until(Duration::from_secs(60), "uploads retried and failing", || {
        metric(&c1, "slo_store_upload_errors_total") >= errors_before + 2.0
            && metric(&c1, "slo_store_upload_pending") > 0.0
    });
    let local_segments = || files_under(&dir).into_iter().filter(|f| f.ends_with(".parquet")).count();
    assert!(local_segments() > 0, "segments wait on the local disk");
    // Killed during the outage: the collector starts again without the object store (it is
    // ready to take data), and finds what still waits for the upload.
    c1.kill9();
    let c1 = launch();
    wait_until(Duration::from_secs(30), "the restarted collector retrying its uploads", || {
        metric(&c1, "slo_store_upload_pending") > 0.0 && metric(&c1, "slo_store_upload_errors_total") >= 1.0
    });
    let all = requests_in(&reference).unwrap();

    // The object store comes back on the same port, holding what it held.
    let relay = Relay::start(port, moto_port);
    wait_until(Duration::from_secs(90), "everything uploaded once the store is back", || {
        in_bucket("SELECT count(*) FROM requests") == Some(all)
    });
    wait_until(Duration::from_secs(30), "nothing waiting to upload", || metric(&c1, "slo_store_upload_pending") == 0.0);
    let sql = "SELECT service, model, status, count(*) AS n, round(sum(duration_ms), 3) AS d, \
               round(sum(queue_ms), 3) AS q FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let one = stdout_ok(&slo(&["query", "--data-dir", reference.to_str().unwrap(), "--format", "csv", sql]), sql);
    let two = stdout_ok(&slo_with(&env, &["query", "--bucket", bucket, "--format", "csv", sql]), sql);
    assert!(one.lines().count() > 1, "no rows");
    assert_eq!(one, two, "the bucket after the outage and the one directory");
    drop(c1);
    drop(relay);
    drop(s3);
}
