//! The continuous analyzer: every minute, each service with recent requests is explained
//! (the live view the dashboard shows, through the same cache), and the verdict is
//! exported on `/metrics` for the `InferenceP99Regression` alert (docs/ALERTS.md):
//!
//! - `slo_regression_active{service, cause_kind, cause_object}`: 1 while a regression is
//!   going on, 0 otherwise (cause labels empty then). One series per service: when the
//!   cause changes, the old series goes.
//! - `slo_regression_onset_timestamp_seconds`, `slo_regression_p99_before_seconds`,
//!   `slo_regression_p99_after_seconds`, `slo_regression_queue_share` `{service}` while
//!   active.
//! - `slo_analyzer_runs_total{outcome}` and `slo_analyzer_run_seconds`: its own cost.
//!
//! Bounded: at most [`MAX_SERVICES`] services, the busiest first; a service without
//! requests for [`FORGET_AFTER`] loses its series.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use slo_analyzer::MINUTE_NS;
use slo_analyzer::Report;
use slo_analyzer::Source;

use crate::WebState;
use crate::gather::explain_into;

/// Services analyzed each round at most.
pub(crate) const MAX_SERVICES: usize = 64;
/// A service without requests this long (data time) is dropped, ns.
pub(crate) const FORGET_AFTER: i64 = 60 * MINUTE_NS;
/// The window each service is explained over (the dashboard's default), ns.
pub(crate) const WINDOW: i64 = 60 * MINUTE_NS;

/// Labels of the verdict series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VerdictLabels {
    /// The service.
    pub service: String,
    /// The top cause's kind (taxonomy), empty when none.
    pub cause_kind: String,
    /// The top cause's object, empty when none.
    pub cause_object: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The exported verdicts; clones share the series.
#[derive(Debug, Clone)]
pub struct RegressionMetrics {
    active: Family<VerdictLabels, Gauge>,
    onset: Family<ServiceLabel, FloatGauge>,
    p99_before: Family<ServiceLabel, FloatGauge>,
    p99_after: Family<ServiceLabel, FloatGauge>,
    queue_share: Family<ServiceLabel, FloatGauge>,
    runs: Family<OutcomeLabel, Counter>,
    run_seconds: Histogram,
    current: Arc<Mutex<HashMap<String, VerdictLabels>>>,
}

impl RegressionMetrics {
    /// The metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = RegressionMetrics {
            active: Family::default(),
            onset: Family::default(),
            p99_before: Family::default(),
            p99_after: Family::default(),
            queue_share: Family::default(),
            runs: Family::default(),
            run_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            current: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("slo");
        r.register(
            "regression_active",
            "1 while the service's p99 regression is going on, with the likely cause as labels",
            m.active.clone(),
        );
        r.register("regression_onset_timestamp_seconds", "start of the ongoing regression", m.onset.clone());
        r.register("regression_p99_before_seconds", "p99 before the ongoing regression", m.p99_before.clone());
        r.register(
            "regression_p99_after_seconds",
            "p99 since the onset of the ongoing regression",
            m.p99_after.clone(),
        );
        r.register("regression_queue_share", "share of the slow tail's rise that is queue time", m.queue_share.clone());
        r.register("analyzer_runs", "continuous explanations by outcome (ok, error, busy)", m.runs.clone());
        r.register("analyzer_run_seconds", "time one continuous explanation of a service took", m.run_seconds.clone());
        m
    }

    /// Exports `report`'s verdict for its service.
    pub fn set(&self, service: &str, report: Option<&Report>) {
        let r = report.filter(|r| r.regression.detected && r.regression.ongoing != Some(false));
        let top = r.and_then(|r| r.causes.first());
        let labels = VerdictLabels {
            service: service.to_string(),
            cause_kind: top.map(|c| c.kind.clone()).unwrap_or_default(),
            cause_object: top.map(|c| c.object.clone()).unwrap_or_default(),
        };
        if let Some(old) = self.current.lock().insert(service.to_string(), labels.clone())
            && old != labels
        {
            self.active.remove(&old);
        }
        self.active.get_or_create(&labels).set(i64::from(r.is_some()));
        let key = ServiceLabel { service: service.to_string() };
        let floats = [&self.onset, &self.p99_before, &self.p99_after, &self.queue_share];
        let Some(reg) = r.map(|r| &r.regression) else {
            for f in floats {
                f.remove(&key);
            }
            return;
        };
        let onset = reg.onset.as_deref().and_then(|o| chrono::DateTime::parse_from_rfc3339(o).ok());
        let values = [
            onset.map(|t| t.timestamp_millis() as f64 / 1000.0),
            reg.p99_before_ms.map(|v| v / 1000.0),
            reg.p99_after_ms.map(|v| v / 1000.0),
            reg.queue_share,
        ];
        for (f, v) in floats.into_iter().zip(values) {
            match v {
                Some(v) => {
                    f.get_or_create(&key).set(v);
                }
                None => {
                    f.remove(&key);
                }
            }
        }
    }

    /// Drops every series of `service`.
    pub fn forget(&self, service: &str) {
        if let Some(old) = self.current.lock().remove(service) {
            self.active.remove(&old);
        }
        let key = ServiceLabel { service: service.to_string() };
        for f in [&self.onset, &self.p99_before, &self.p99_after, &self.queue_share] {
            f.remove(&key);
        }
    }

    fn services(&self) -> Vec<String> {
        self.current.lock().keys().cloned().collect()
    }
}

/// Explains every recent service each `every`, until `cancel`.
pub async fn run(
    state: WebState,
    metrics: RegressionMetrics,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = round(&state, &metrics).await {
            tracing::warn!(error = %e, "continuous analysis: listing services failed");
        }
    }
}

/// One round: which services, then each explained one at a time on the query runner.
async fn round(state: &WebState, metrics: &RegressionMetrics) -> slo_analyzer::Result<()> {
    let source = Source::new(state.store.snapshot());
    let Some(latest) = source.latest_request().await? else { return Ok(()) };
    let rollups = source.rollups(None, latest - FORGET_AFTER, latest + MINUTE_NS).await?;
    let mut busy: Vec<(String, u64)> = rollups
        .services()
        .into_keys()
        .map(|s| {
            let n =
                rollups.minutes(&s, None, latest - FORGET_AFTER, latest + MINUTE_NS).values().map(|c| c.count).sum();
            (s, n)
        })
        .collect();
    busy.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    busy.truncate(MAX_SERVICES);
    for gone in metrics.services().into_iter().filter(|s| !busy.iter().any(|(b, _)| b == s)) {
        metrics.forget(&gone);
    }
    for (service, _) in busy {
        let started = Instant::now();
        let (source, verdicts, key) =
            (Source::new(state.store.snapshot()), state.verdicts.clone(), (service.clone(), None, WINDOW));
        let outcome = match state.runner.run(async move { explain_into(&source, &verdicts, key).await }).await {
            Ok(Ok(Ok(report))) => {
                metrics.set(&service, Some(&report));
                "ok"
            }
            // "Too little data" and the like: no regression to export.
            Ok(Ok(Err(_))) => {
                metrics.set(&service, None);
                "ok"
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, service, "continuous analysis failed");
                "error"
            }
            Err(_) => "busy",
        };
        metrics.run_seconds.observe(started.elapsed().as_secs_f64());
        metrics.runs.get_or_create(&OutcomeLabel { outcome }).inc();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
