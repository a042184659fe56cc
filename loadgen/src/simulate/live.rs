//! Live mode: the simulation advances with the wall clock (times `--speed`)
//! while one HTTP listener serves what a real cluster would: the OpenAI API
//! (requests join the simulated traffic), a `/metrics` page per vLLM pod and
//! per dcgm-exporter, and the Kubernetes API (with a kubeconfig written for
//! it). Finished requests are exported as OTLP spans with `opentelemetry-otlp`,
//! one exporter per resource (pod), batched, with a bound on exports in
//! flight: when the collector is slower than the simulation, the simulation
//! waits rather than buffering without limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::spans::SpanMaker;
use super::{RunSummary, truth_json};
use crate::endpoint::OtlpProtocol;
use crate::error::{Error, Result};
use crate::kubeapi::{self, ApiStore};
use crate::scenario::Scenario;
use crate::sim::{ObjectChange, RequestRecord, Sim, SimOptions};

const TICK: Duration = Duration::from_millis(5);
/// Spans per export request, and the longest a span waits to be exported.
const BATCH_SPANS: usize = 1024;
const BATCH_AGE: Duration = Duration::from_millis(200);
const MAX_EXPORTS_IN_FLIGHT: usize = 16;
/// OpenAI API requests the simulation holds at once; more are refused with 429.
pub(crate) const MAX_API_REQUESTS: usize = 10_000;

/// Live-mode settings.
#[derive(Debug, Clone)]
pub(crate) struct LiveOptions {
    pub speed: f64,
    pub listen: String,
    pub kubeconfig: PathBuf,
    pub otlp: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    pub otlp_auth: crate::otlp::OtlpAuth,
    pub truth: Option<PathBuf>,
}

/// News for an OpenAI API request waiting on the simulation.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Tokens(u32),
    Done { status: u16, prompt_tokens: u32, output_tokens: u32 },
}

/// State shared by the tick loop and the HTTP handlers.
pub(crate) struct Shared {
    pub sim: Mutex<Sim>,
    pub waiters: Mutex<HashMap<u64, mpsc::UnboundedSender<Update>>>,
    pub next_external: AtomicU64,
    /// `/metrics` pages served (the run's scrapes, as `--out` counts those it writes).
    pub scrapes: AtomicU64,
}

impl Shared {
    /// A new waiter, or None when [`MAX_API_REQUESTS`] are already waiting.
    pub(super) fn register(&self) -> Option<(u64, mpsc::UnboundedReceiver<Update>)> {
        let mut waiters = self.waiters.lock();
        if waiters.len() >= MAX_API_REQUESTS {
            return None;
        }
        let id = self.next_external.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        waiters.insert(id, tx);
        Some((id, rx))
    }
}

struct Exporter {
    url: String,
    protocol: OtlpProtocol,
    auth: crate::otlp::OtlpAuth,
    exporters: HashMap<String, Arc<opentelemetry_otlp::SpanExporter>>,
    pending: HashMap<String, (Resource, Vec<SpanData>, Instant)>,
    permits: Arc<Semaphore>,
    dropped: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Exporter {
    fn new(url: &str, protocol: OtlpProtocol, auth: crate::otlp::OtlpAuth) -> Exporter {
        Exporter {
            url: url.to_string(),
            protocol,
            auth,
            exporters: HashMap::new(),
            pending: HashMap::new(),
            permits: Arc::new(Semaphore::new(MAX_EXPORTS_IN_FLIGHT)),
            dropped: Arc::new(AtomicU64::new(0)),
            sent: Arc::new(AtomicU64::new(0)),
            last_error: Arc::new(Mutex::new(None)),
        }
    }

    fn exporter(&mut self, key: &str, resource: &Resource) -> Result<Arc<opentelemetry_otlp::SpanExporter>> {
        if let Some(e) = self.exporters.get(key) {
            return Ok(e.clone());
        }
        let mut e = crate::otlp::span_exporter(&self.url, self.protocol, &self.auth)?;
        e.set_resource(resource);
        let e = Arc::new(e);
        self.exporters.insert(key.to_string(), e.clone());
        Ok(e)
    }

    /// Closes the exporters (and their connections) of pods that are gone.
    fn retain(&mut self, alive: impl Fn(&str) -> bool) {
        self.exporters.retain(|k, e| {
            let keep = k == "gateway" || alive(k) || self.pending.contains_key(k);
            if !keep {
                let _ = e.shutdown();
            }
            keep
        });
    }

    fn push(&mut self, key: &str, resource: &Resource, span: SpanData) {
        let entry =
            self.pending.entry(key.to_string()).or_insert_with(|| (resource.clone(), Vec::new(), Instant::now()));
        entry.1.push(span);
    }

    /// Sends batches that are full or old enough (all with `force`).
    async fn flush(&mut self, force: bool) -> Result<()> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, spans, since))| force || spans.len() >= BATCH_SPANS || since.elapsed() >= BATCH_AGE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some((resource, spans, _)) = self.pending.remove(&key) else { continue };
            let exporter = self.exporter(&key, &resource)?;
            let permit = self.permits.clone().acquire_owned().await.map_err(|e| Error::Network(e.to_string()))?;
            let (dropped, sent, last) = (self.dropped.clone(), self.sent.clone(), self.last_error.clone());
            tokio::spawn(async move {
                let n = spans.len() as u64;
                match exporter.export(spans).await {
                    Ok(()) => sent.fetch_add(n, Ordering::Relaxed),
                    Err(e) => {
                        *last.lock() = Some(e.to_string());
                        dropped.fetch_add(n, Ordering::Relaxed)
                    }
                };
                drop(permit);
            });
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.flush(true).await?;
        // Wait for exports in flight.
        let _all =
            self.permits.acquire_many(MAX_EXPORTS_IN_FLIGHT as u32).await.map_err(|e| Error::Network(e.to_string()))?;
        for e in self.exporters.values() {
            let _ = e.shutdown();
        }
        Ok(())
    }
}

async fn pod_metrics(State(shared): State<Arc<Shared>>, Path((ns, pod)): Path<(String, String)>) -> Response {
    let text = shared.sim.lock().render_pod_metrics(&ns, &pod, None);
    if text.is_some() {
        shared.scrapes.fetch_add(1, Ordering::Relaxed);
    }
    metrics_response(text, &format!("no running model-server pod {ns}/{pod}"))
}

async fn node_metrics(State(shared): State<Arc<Shared>>, Path(node): Path<String>) -> Response {
    let text = shared.sim.lock().render_node_metrics(&node, None);
    if text.is_some() {
        shared.scrapes.fetch_add(1, Ordering::Relaxed);
    }
    metrics_response(text, &format!("no reachable node {node}"))
}

fn metrics_response(text: Option<String>, missing: &str) -> Response {
    match text {
        Some(t) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], t).into_response(),
        None => (StatusCode::NOT_FOUND, format!("{missing}\n")).into_response(),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let sim = shared.sim.lock();
    let v = serde_json::json!({
        "scenario": sim.scenario.name,
        "simulated_s": sim.now() as f64 / 1e9,
        "duration_s": sim.end() as f64 / 1e9,
        "completed": sim.completed,
        "targets": sim.metrics_targets(),
        "injected": sim.truth(),
    });
    axum::Json(v).into_response()
}

fn apply_objects(store: &ApiStore, objects: Vec<ObjectChange>, summary: &mut RunSummary) -> Result<()> {
    for change in objects {
        let ev = match change {
            ObjectChange::Apply(obj) => Some(store.apply(obj)?),
            ObjectChange::Delete { api_version, kind, namespace, name } => {
                store.delete(api_version, kind, namespace.as_deref(), &name)
            }
        };
        if ev.is_some() {
            summary.kube_events += 1;
        }
    }
    Ok(())
}

fn dispatch_records(shared: &Shared, records: &[RequestRecord], progress: &[crate::sim::Progress]) {
    let mut waiters = shared.waiters.lock();
    for p in progress {
        if let Some(tx) = waiters.get(&p.external) {
            let _ = tx.send(Update::Tokens(p.generated));
        }
    }
    for r in records {
        if let Some(x) = r.external
            && let Some(tx) = waiters.remove(&x)
        {
            let _ = tx.send(Update::Done {
                status: r.status,
                prompt_tokens: r.prompt_tokens,
                output_tokens: r.output_tokens,
            });
        }
    }
}

/// Runs a scenario live until its end (or `cancel`).
pub(crate) async fn run_live(
    scenario: Scenario,
    mut opts: SimOptions,
    live: LiveOptions,
    cancel: CancellationToken,
) -> Result<RunSummary> {
    let listener = tokio::net::TcpListener::bind(&live.listen)
        .await
        .map_err(|e| Error::io(format!("--listen {}: cannot bind", live.listen), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("reading the listen address", e))?;
    opts.metrics_port = Some(addr.port());
    let namespace = scenario.namespace.clone();
    let mut sim = Sim::new(scenario, opts);
    let store = ApiStore::new(200_000);
    let mut summary = RunSummary::default();
    apply_objects(&store, sim.drain().objects, &mut summary)?;
    let base = format!("http://{addr}");
    kubeapi::write_kubeconfig(&live.kubeconfig, &base, &namespace)?;
    let mut maker = SpanMaker::new(sim.seed, &sim.scenario);
    let gateway_resource = maker.gateway_resource().clone();
    let end = sim.end();
    let shared = Arc::new(Shared {
        sim: Mutex::new(sim),
        waiters: Mutex::new(HashMap::new()),
        next_external: AtomicU64::new(1),
        scrapes: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/pods/{ns}/{pod}/metrics", get(pod_metrics))
        .route("/nodes/{node}/metrics", get(node_metrics))
        .route("/slo-sim/status", get(status))
        .with_state(shared.clone())
        .merge(super::openai::router(shared.clone()))
        .merge(kubeapi::router(store.clone()));
    let stop = cancel.child_token();
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { server_stop.cancelled().await }).await
    });
    println!(
        "slo-sim listening http={addr} openai={base}/v1 kubeconfig={} metrics={base}/slo-sim/status",
        live.kubeconfig.display()
    );
    let mut exporter = live.otlp.as_deref().map(|u| Exporter::new(u, live.otlp_protocol, live.otlp_auth.clone()));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut live_pods: Vec<String> = Vec::new();
    let mut progress = super::progress::Progress::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = cancel.cancelled() => break,
        }
        let target = ((started.elapsed().as_secs_f64() * live.speed) * 1e9) as i64;
        let target = target.min(end);
        let out = {
            let mut sim = shared.sim.lock();
            sim.run_until(target);
            let out = sim.drain();
            if out.objects.iter().any(|o| matches!(o, ObjectChange::Delete { .. })) {
                live_pods = sim.metrics_targets();
            }
            for line in progress.update(&sim, out.requests.len(), live.speed) {
                eprintln!("{line}");
            }
            out
        };
        dispatch_records(&shared, &out.requests, &out.progress);
        apply_objects(&store, out.objects, &mut summary)?;
        for r in &out.requests {
            summary.count(r);
        }
        if let Some(ex) = exporter.as_mut() {
            for r in &out.requests {
                let (gw, server) = maker.spans(r);
                ex.push("gateway", &gateway_resource, gw);
                summary.spans += 1;
                if let Some((pod, res, span)) = server {
                    ex.push(&pod.pod, &res, span);
                    summary.spans += 1;
                }
            }
            ex.flush(false).await?;
            if !live_pods.is_empty() {
                let alive = std::mem::take(&mut live_pods);
                let is_alive = |p: &str| alive.iter().any(|t| t.contains(&format!("/{p}/")));
                maker.retain_pods(is_alive);
                ex.retain(is_alive);
            }
        }
        if target >= end {
            break;
        }
    }
    if let Some(ex) = exporter.as_mut() {
        ex.finish().await?;
        summary.spans_dropped = ex.dropped.load(Ordering::Relaxed);
        if let Some(e) = ex.last_error.lock().clone() {
            tracing::warn!(dropped = summary.spans_dropped, error = %e, "some span exports failed");
        }
    }
    // Requests still waiting on the simulation get an answer.
    for (_, tx) in shared.waiters.lock().drain() {
        let _ = tx.send(Update::Done { status: 503, prompt_tokens: 0, output_tokens: 0 });
    }
    // Graceful shutdown waits for requests in flight, and a watch lasts minutes: end the
    // watches (again, for clients that reconnect meanwhile) until the server is done.
    stop.cancel();
    let mut server = server;
    for _ in 0..50 {
        store.expire_history();
        if tokio::time::timeout(std::time::Duration::from_millis(100), &mut server).await.is_ok() {
            break;
        }
    }
    server.abort();
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.scrapes = shared.scrapes.load(Ordering::Relaxed);
    let sim = shared.sim.lock();
    summary.finish(&sim);
    if let Some(t) = &live.truth {
        std::fs::write(t, truth_json(&sim)).map_err(|e| Error::io(format!("writing {}", t.display()), e))?;
    }
    Ok(summary)
}
