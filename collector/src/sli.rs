//! SLI metrics on `/metrics`: what Prometheus needs to evaluate the SLO rules `slo rules`
//! writes (docs/ALERTS.md), counted as each request row is emitted.
//!
//! Per (`service`, `model`):
//! - `slo_requests_total{outcome="ok"|"error"}`, both series created together so that a
//!   ratio of their rates never starts from a missing series;
//! - four histograms in seconds: `slo_request_duration_seconds`, `slo_request_ttft_seconds`
//!   (requests that report a first token only), `slo_request_queue_seconds`,
//!   `slo_request_compute_seconds`. Their bucket bounds are [`DEFAULT_BOUNDS_S`] plus every
//!   SLO threshold of that metric, so "the share of requests at or under 2 s" is a bucket,
//!   exact, for every SLO in the config.
//!
//! A new (service, model) pair's series appear at zero, and its first requests are held
//! back until `/metrics` has been read twice since (or [`MAX_HELD`] requests are held):
//! Prometheus's `increase()` starts from a series' first sample, so a counter born at the
//! size of its first batch (an SDK exports every 5 s) would lose that batch from every
//! SLO period that holds it. Without a scraper, nothing is lost either: past the bound the
//! held requests are counted.
//!
//! Series per (service, model): 2 counters + 4 x (bounds + 3) histogram series; with the
//! defaults and no extra threshold, 2 + 4 x 20 = 82. The pairs are bounded by
//! [`SliBounds::max_pairs`]: past it, requests of a new pair count under `model="_other"`
//! of their service when the service is named by an SLO, else under
//! `service="_other", model="_other"`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use slo_store::RequestRef;

use crate::pair_key::PairKey;

/// Bucket bounds every latency histogram has, in seconds: 5 ms to 5 minutes, for chat
/// completions whose queue alone can take minutes.
pub const DEFAULT_BOUNDS_S: [f64; 17] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0];

/// The label value standing for pairs past the bound.
pub const OTHER: &str = "_other";

/// Requests held back across all new pairs at most (about 40 bytes each).
pub const MAX_HELD: usize = 200_000;

/// Which latency a histogram holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliMetric {
    /// End to end.
    Duration,
    /// Time to first token.
    Ttft,
    /// Waiting in a queue.
    Queue,
    /// Prefill and decode.
    Compute,
}

impl SliMetric {
    /// Every metric, in the order of [`SliBounds::extra`].
    pub const ALL: [SliMetric; 4] = [SliMetric::Duration, SliMetric::Ttft, SliMetric::Queue, SliMetric::Compute];

    /// The histogram's name as Prometheus sees it (without `_bucket`).
    pub fn histogram(self) -> &'static str {
        match self {
            SliMetric::Duration => "slo_request_duration_seconds",
            SliMetric::Ttft => "slo_request_ttft_seconds",
            SliMetric::Queue => "slo_request_queue_seconds",
            SliMetric::Compute => "slo_request_compute_seconds",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The `le` label Prometheus scrapes for a bound of `seconds`: the exposition writes bounds
/// with `dtoa`, so a rule selecting a bucket must spell it the same way (`2.0`, `0.35`).
pub fn le_label(seconds: f64) -> String {
    dtoa::Buffer::new().format(seconds).to_string()
}

/// The SLO thresholds to add to the default bounds, and the bound on label pairs.
#[derive(Debug, Clone)]
pub struct SliBounds {
    /// Extra bounds in seconds per metric, indexed by [`SliMetric`].
    pub extra: [Vec<f64>; 4],
    /// Services named by an SLO: kept as a label even past `max_pairs`.
    pub slo_services: HashSet<String>,
    /// Most (service, model) pairs with their own series.
    pub max_pairs: usize,
}

impl Default for SliBounds {
    fn default() -> Self {
        SliBounds { extra: Default::default(), slo_services: HashSet::new(), max_pairs: 256 }
    }
}

impl SliBounds {
    /// Adds an SLO's threshold on `metric`.
    pub fn add(&mut self, metric: SliMetric, threshold_ms: f64, service: &str) {
        self.extra[metric.index()].push(threshold_ms / 1000.0);
        self.slo_services.insert(service.to_string());
    }

    /// The sorted, deduplicated bounds of one metric's histogram.
    pub fn bounds(&self, metric: SliMetric) -> Vec<f64> {
        let mut b: Vec<f64> = DEFAULT_BOUNDS_S.iter().chain(&self.extra[metric.index()]).copied().collect();
        b.retain(|x| x.is_finite() && *x > 0.0);
        b.sort_by(f64::total_cmp);
        b.dedup();
        b
    }
}

/// Labels of every SLI series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SliLabels {
    /// `service.name`.
    pub service: String,
    /// The model, empty when the request named none.
    pub model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    service: String,
    model: String,
    outcome: &'static str,
}

#[derive(Clone)]
struct Buckets(Arc<Vec<f64>>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// The SLI metrics; clones share the series.
#[derive(Clone)]
pub struct SliMetrics {
    requests: Family<OutcomeLabels, Counter>,
    latency: [Family<SliLabels, Histogram, Buckets>; 4],
    admitted: Arc<Mutex<HashSet<SliLabels>>>,
    slo_services: Arc<HashSet<String>>,
    max_pairs: usize,
    /// Times `/metrics` was read.
    scrapes: Arc<AtomicU64>,
    /// New pairs: the scrape count at their birth and the requests held back.
    held: Arc<Mutex<HashMap<SliLabels, HeldPair>>>,
}

/// A new pair: the scrape count at its birth and its requests held back.
type HeldPair = (u64, Vec<Held>);

/// A request held back: outcome and the four latencies in seconds (TTFT NaN when none).
#[derive(Debug, Clone, Copy)]
struct Held {
    error: bool,
    secs: [f64; 4],
}

/// Counts reads of the registry it is registered in (it encodes nothing).
#[derive(Debug)]
struct ScrapeMark(Arc<AtomicU64>);

impl prometheus_client::collector::Collector for ScrapeMark {
    fn encode(&self, _: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl std::fmt::Debug for SliMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliMetrics").field("pairs", &self.admitted.lock().len()).finish_non_exhaustive()
    }
}

struct Handles {
    ok: Counter,
    error: Counter,
    latency: [Histogram; 4],
    /// Held back (a new pair not yet scraped at zero): its labels.
    held: Option<SliLabels>,
}

impl Handles {
    fn count(&self, h: Held) {
        if h.error { &self.error } else { &self.ok }.inc();
        for (m, v) in self.latency.iter().zip(h.secs) {
            if !v.is_nan() {
                m.observe(v);
            }
        }
    }
}

impl SliMetrics {
    /// The metrics, registered under `slo_` in `registry`.
    pub fn new(registry: &mut Registry, bounds: &SliBounds) -> Self {
        let family = |m: SliMetric| Family::new_with_constructor(Buckets(Arc::new(bounds.bounds(m))));
        let m = SliMetrics {
            requests: Family::default(),
            latency: SliMetric::ALL.map(family),
            admitted: Arc::default(),
            slo_services: Arc::new(bounds.slo_services.clone()),
            max_pairs: bounds.max_pairs.max(1),
            scrapes: Arc::default(),
            held: Arc::default(),
        };
        registry.register_collector(Box::new(ScrapeMark(m.scrapes.clone())));
        let r = registry.sub_registry_with_prefix("slo");
        r.register("requests", "inference requests by service, model and outcome (ok, error)", m.requests.clone());
        let help = [
            "end-to-end request duration",
            "time to first token (requests that report one)",
            "time the request waited in a queue",
            "time the request computed (prefill and decode)",
        ];
        for (metric, help) in SliMetric::ALL.into_iter().zip(help) {
            let name = metric.histogram().trim_start_matches("slo_").trim_end_matches("_seconds");
            r.register_with_unit(
                name,
                help,
                prometheus_client::registry::Unit::Seconds,
                m.latency[metric.index()].clone(),
            );
        }
        m
    }

    /// The labels a request counts under: its own, or the overflow pair past the bound;
    /// a pair seen for the first time is held back.
    fn admit(&self, service: &str, model: &str) -> SliLabels {
        let own = SliLabels { service: service.to_string(), model: model.to_string() };
        let mut admitted = self.admitted.lock();
        let labels = if admitted.contains(&own) || admitted.len() < self.max_pairs {
            own
        } else {
            let service = if self.slo_services.contains(service) { service } else { OTHER };
            SliLabels { service: service.to_string(), model: OTHER.to_string() }
        };
        if admitted.insert(labels.clone()) {
            self.held.lock().insert(labels.clone(), (self.scrapes.load(Ordering::Relaxed), Vec::new()));
        }
        labels
    }

    /// Counts the requests of new pairs whose zero series have been read twice since their
    /// birth (the first read may have started before it).
    fn release(&self) {
        let now = self.scrapes.load(Ordering::Relaxed);
        let due: Vec<(SliLabels, Vec<Held>)> = {
            let mut held = self.held.lock();
            let keys: Vec<SliLabels> =
                held.iter().filter(|(_, (born, _))| now >= born + 2).map(|(k, _)| k.clone()).collect();
            keys.into_iter().filter_map(|k| held.remove(&k).map(|(_, v)| (k, v))).collect()
        };
        // The lock is let go first: `handles` takes it again.
        for (labels, requests) in due {
            let h = self.handles(labels);
            requests.into_iter().for_each(|r| h.count(r));
        }
    }

    fn handles(&self, labels: SliLabels) -> Handles {
        // One statement per series: `get_or_create` returns a read guard, and a temporary
        // guard lives to the end of its statement, so two in one would deadlock.
        let outcome = |outcome| OutcomeLabels { service: labels.service.clone(), model: labels.model.clone(), outcome };
        let ok = self.requests.get_or_create(&outcome("ok")).clone();
        let error = self.requests.get_or_create(&outcome("error")).clone();
        let latency = SliMetric::ALL.map(|m| self.latency[m.index()].get_or_create(&labels).clone());
        let held = self.held.lock().contains_key(&labels).then(|| labels.clone());
        Handles { ok, error, latency, held }
    }

    /// A recorder for one batch of emitted requests: it looks each pair's series up once.
    pub fn batch(&self) -> SliBatch<'_> {
        self.release();
        SliBatch { m: self, pairs: HashMap::new() }
    }
}

/// Counts one batch of requests (see [`SliMetrics::batch`]).
pub struct SliBatch<'a> {
    m: &'a SliMetrics,
    pairs: HashMap<(String, String), Handles>,
}

impl std::fmt::Debug for SliBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliBatch").field("pairs", &self.pairs.len()).finish()
    }
}

impl SliBatch<'_> {
    /// Counts one request.
    pub fn observe(&mut self, r: &RequestRef) {
        let model = r.model.unwrap_or("");
        let key = (r.service, model);
        let h = match self.pairs.get(&key as &dyn PairKey) {
            Some(h) => h,
            None => {
                let handles = self.m.handles(self.m.admit(r.service, model));
                self.pairs.entry((r.service.to_string(), model.to_string())).or_insert(handles)
            }
        };
        let secs = |ms: f64| ms / 1000.0;
        let req = Held {
            error: r.status == "error",
            secs: [secs(r.duration_ms), r.ttft_ms.map_or(f64::NAN, secs), secs(r.queue_ms), secs(r.compute_ms)],
        };
        if let Some(labels) = &h.held {
            let mut held = self.m.held.lock();
            let total: usize = held.values().map(|(_, v)| v.len()).sum();
            if let Some((_, requests)) = held.get_mut(labels)
                && total < MAX_HELD
            {
                requests.push(req);
                return;
            }
        }
        h.count(req);
    }
}

#[cfg(test)]
mod tests;
