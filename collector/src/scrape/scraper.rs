//! The scrape loop: one task per target, each on its own interval, a shared bound on
//! scrapes in flight, a timeout and a body limit per scrape, and health per target.
//!
//! Targets are the static ones (`--scrape URL`, config) plus the pods the Kubernetes watch
//! discovers ([`Discovery`]); the set is reconciled every few seconds, so a pod that goes
//! away stops being scraped and a new one starts. A target that hangs, answers garbage or
//! exposes too many series costs its own task a timeout or an error, recorded as `up 0`
//! with the reason; the other targets do not wait for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use slo_store::{Attr, SampleRecord, SpanBatch};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::attribute::{self, Placement};
use super::config::ScrapeConfig;
use super::families::FamilyFilter;
use super::parse;
use super::workloads::GpuWorkloads;
use crate::error::Error;
use crate::ingest::{Ingest, Prepared};

/// A pod the Kubernetes watch found to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub node: Option<String>,
}

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub url: String,
    /// The pod behind the URL, when discovered.
    pub pod: Option<PodRef>,
    /// This target's interval and timeout in ms, when not the configured defaults.
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

impl Target {
    /// A target with the default interval and timeout.
    pub fn new(url: impl Into<String>, pod: Option<PodRef>) -> Target {
        Target { url: url.into(), pod, interval_ms: None, timeout_ms: None }
    }

    fn timeout(&self, cfg: &ScrapeConfig) -> Duration {
        self.timeout_ms.map_or(Duration::from_secs_f64(cfg.timeout_s.max(0.001)), Duration::from_millis)
    }

    fn interval(&self, cfg: &ScrapeConfig) -> Duration {
        self.interval_ms
            .map_or(Duration::from_secs_f64(cfg.interval_s.max(0.1)), |ms| Duration::from_millis(ms.max(100)))
    }
}

/// What the Kubernetes watch tells the scraper: targets and GPU placement.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub targets: Vec<Target>,
    pub placement: Placement,
}

/// Health of one target, as the last scrape left it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetHealth {
    pub url: String,
    pub health: &'static str,
    pub last_error: Option<String>,
    pub last_scrape_unix_ms: i64,
    pub last_duration_ms: f64,
    pub samples_scraped: usize,
    pub samples_kept: usize,
}

/// Health of every target; shared with the web API.
pub type Health = Arc<Mutex<HashMap<String, TargetHealth>>>;

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// What one scrape produced.
#[derive(Debug, Default)]
pub struct ScrapeResult {
    pub samples: Vec<SampleRecord>,
    pub scraped: usize,
    pub error: Option<String>,
}

/// Turns exposition text from `target` into sample rows (filter and attribution applied).
pub fn samples_from_text(
    text: &str,
    target: &Target,
    at_ns: i64,
    cfg: &ScrapeConfig,
    filter: &FamilyFilter,
    placement: &Placement,
) -> Result<(Vec<SampleRecord>, usize), String> {
    let parsed = parse::parse(text, &cfg.limits()).map_err(|e| e.to_string())?;
    let scraped = parsed.samples.len();
    let mut out = Vec::new();
    for s in &parsed.samples {
        if !filter.keeps(s.name) {
            continue;
        }
        let labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let find = |k: &str| labels.iter().find(|(n, v)| n == k && !v.is_empty()).map(|(_, v)| v.clone());
        let mut rec = SampleRecord {
            time_unix_nano: s.timestamp_ms.map_or(at_ns, |ms| ms.saturating_mul(1_000_000)),
            metric: s.name.to_string(),
            value: s.value,
            target: target.url.clone(),
            gpu: find("UUID").or_else(|| find("gpu_uuid")).unwrap_or_default(),
            model: find("model_name").or_else(|| find("model")).unwrap_or_default(),
            ..Default::default()
        };
        if s.name.starts_with("DCGM_") {
            let id = attribute::gpu_sample(&labels, target.pod.as_ref().and_then(|p| p.node.as_deref()), placement);
            rec.namespace = id.namespace;
            rec.pod = id.pod;
            rec.container = id.container;
            rec.node = id.node;
            rec.attribution = id.attribution.to_string();
            if !id.candidates.is_empty() {
                rec.labels.push(Attr::new("slo_candidate_pods", id.candidates));
            }
        } else if let Some(p) = &target.pod {
            rec.namespace = p.namespace.clone();
            rec.pod = p.pod.clone();
            rec.node = p.node.clone().unwrap_or_default();
            rec.attribution = "target".into();
        } else {
            rec.namespace = find("namespace").unwrap_or_default();
            rec.pod = find("pod").unwrap_or_default();
            rec.attribution = if rec.pod.is_empty() { "none" } else { "exporter_labels_unverified" }.into();
        }
        rec.labels.extend(labels.into_iter().map(|(k, v)| Attr::new(k, v)));
        out.push(rec);
    }
    Ok((out, scraped))
}

/// Fetches a target's exposition: bounded time, bounded body.
async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration, cfg: &ScrapeConfig) -> Result<String, String> {
    let secs = timeout.as_secs_f64();
    let mut resp =
        client
            .get(url)
            .header("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() { format!("timed out after {secs}s") } else { format!("request failed: {e}") }
            })?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cfg.max_body_bytes {
                    return Err(format!("body larger than {} bytes (scrape.max_body_bytes)", cfg.max_body_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(format!("timed out after {secs}s reading the body")),
            Err(e) => return Err(format!("reading the body: {e}")),
        }
    }
    String::from_utf8(body).map_err(|e| format!("body is not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}

/// Shared by every target task.
struct Shared {
    client: reqwest::Client,
    cfg: Arc<ScrapeConfig>,
    filter: FamilyFilter,
    ingest: Ingest,
    /// The latest discovery (its placement), shared without copying per scrape.
    discovery: Mutex<Arc<Discovery>>,
    in_flight: Semaphore,
    health: Health,
    workloads: GpuWorkloads,
}

fn health_sample(name: &str, value: f64, target: &Target, at: i64) -> SampleRecord {
    SampleRecord {
        time_unix_nano: at,
        metric: name.to_string(),
        value,
        target: target.url.clone(),
        namespace: target.pod.as_ref().map(|p| p.namespace.clone()).unwrap_or_default(),
        pod: target.pod.as_ref().map(|p| p.pod.clone()).unwrap_or_default(),
        node: target.pod.as_ref().and_then(|p| p.node.clone()).unwrap_or_default(),
        attribution: "target".into(),
        ..Default::default()
    }
}

async fn scrape_once(shared: &Shared, target: &Target) {
    let _permit = shared.in_flight.acquire().await;
    let at = now_ns();
    let started = Instant::now();
    let discovery = shared.discovery.lock().clone();
    let result = match fetch(&shared.client, &target.url, target.timeout(&shared.cfg), &shared.cfg).await {
        // Parsing megabytes is CPU work: off the async workers.
        Ok(text) => {
            let (t, cfg, filter) = (target.clone(), shared.cfg.clone(), shared.filter.clone());
            let workloads = shared.workloads.clone();
            tokio::task::spawn_blocking(move || {
                let parsed = samples_from_text(&text, &t, at, &cfg, &filter, &discovery.placement);
                // A walk over every sample under a lock: with the parse, not on an async worker.
                if let Ok((samples, _)) = &parsed {
                    workloads.scraped(samples);
                }
                parsed
            })
            .await
            .unwrap_or_else(|e| Err(format!("parse task failed: {e}")))
        }
        Err(e) => Err(e),
    };
    let took = started.elapsed().as_secs_f64();
    let (mut samples, scraped, error) = match result {
        Ok((s, n)) => (s, n, None),
        Err(e) => (Vec::new(), 0, Some(e)),
    };
    let kept = samples.len();
    samples.push(health_sample("up", if error.is_none() { 1.0 } else { 0.0 }, target, at));
    samples.push(health_sample("scrape_duration_seconds", took, target, at));
    samples.push(health_sample("scrape_samples_scraped", scraped as f64, target, at));
    let previous = shared.health.lock().get(&target.url).and_then(|h| h.last_error.clone());
    match (&error, previous) {
        // Log when a target goes down or its error changes, not at every interval.
        (Some(e), Some(p)) if *e == p => tracing::debug!(target = %target.url, error = %e, "scrape failed"),
        (Some(e), _) => tracing::warn!(target = %target.url, error = %e, "scrape failed"),
        (None, Some(_)) => tracing::info!(target = %target.url, "scrape target is up again"),
        (None, None) => {}
    }
    shared.health.lock().insert(
        target.url.clone(),
        TargetHealth {
            url: target.url.clone(),
            health: if error.is_none() { "up" } else { "down" },
            last_error: error,
            last_scrape_unix_ms: at / 1_000_000,
            last_duration_ms: took * 1e3,
            samples_scraped: scraped,
            samples_kept: kept,
        },
    );
    let batch = SpanBatch { samples, ..Default::default() };
    let submitted = match Prepared::new(batch) {
        Ok(p) => shared.ingest.submit(p).await,
        Err(e) => Err(e),
    };
    match submitted {
        Ok(()) => {}
        // A scrape is a snapshot: when the store is overloaded, this one is skipped and the
        // next interval brings fresh values.
        Err(e @ (Error::Overloaded { .. } | Error::Unavailable(_))) => {
            tracing::debug!(target = %target.url, error = %e, "scrape not stored")
        }
        Err(e) => tracing::warn!(target = %target.url, error = %e, "scrape not stored"),
    }
}

async fn target_loop(shared: Arc<Shared>, target: Target, stop: CancellationToken) {
    let interval = target.interval(&shared.cfg);
    // Spread targets over the interval, deterministically by URL.
    let offset = target.url.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let offset = Duration::from_millis(offset % interval.as_millis().max(1) as u64);
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(offset) => {}
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = scrape_once(&shared, &target) => {}
        }
    }
}

/// Runs the scrapers until `stop`. `discovery` is read every few seconds (None: static
/// targets only).
pub async fn run(
    cfg: ScrapeConfig,
    ingest: Ingest,
    discovery: Option<tokio::sync::watch::Receiver<Arc<Discovery>>>,
    health: Health,
    workloads: GpuWorkloads,
    stop: CancellationToken,
) -> crate::error::Result<()> {
    let filter = FamilyFilter::new(&cfg.families).map_err(Error::Config)?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs_f64(cfg.timeout_s))
        .build()
        .map_err(|e| Error::Config(format!("scrape HTTP client: {e}")))?;
    let shared = Arc::new(Shared {
        client,
        filter,
        ingest,
        discovery: Mutex::new(Arc::default()),
        in_flight: Semaphore::new(cfg.max_concurrent.max(1)),
        health: health.clone(),
        workloads,
        cfg: Arc::new(cfg.clone()),
    });
    let mut running: HashMap<Target, CancellationToken> = HashMap::new();
    loop {
        let mut want: Vec<Target> = cfg.targets.iter().map(|t| t.target()).collect();
        if let Some(d) = &discovery {
            let d = d.borrow().clone();
            want.extend(d.targets.iter().cloned());
            *shared.discovery.lock() = d;
        }
        running.retain(|t, token| {
            let keep = want.contains(t);
            if !keep {
                token.cancel();
                health.lock().remove(&t.url);
            }
            keep
        });
        for t in want {
            if running.contains_key(&t) {
                continue;
            }
            let token = stop.child_token();
            tokio::spawn(target_loop(shared.clone(), t.clone(), token.clone()));
            running.insert(t, token);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    for token in running.values() {
        token.cancel();
    }
    Ok(())
}
