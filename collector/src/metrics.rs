//! Self-observability of the collector.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of an export outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExportLabels {
    /// `grpc`, `http` or `import`.
    pub transport: &'static str,
    /// `ok`, `partial`, `invalid`, `too_large`, `overloaded`, `unavailable`, `error`.
    pub outcome: &'static str,
}

/// Labels with the transport only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// `grpc`, `http` or `import`.
    pub transport: &'static str,
}

/// Labels with a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// The collector's metrics; clones share the series.
#[derive(Debug, Clone)]
pub struct CollectorMetrics {
    /// Export requests by transport and outcome.
    pub exports: Family<ExportLabels, Counter>,
    /// Time from receiving an export to answering it.
    pub export_seconds: Family<TransportLabel, Histogram>,
    /// Spans accepted (durably stored).
    pub spans_accepted: Family<TransportLabel, Counter>,
    /// Spans rejected one by one (reported in `partial_success`).
    pub spans_rejected: Family<TransportLabel, Counter>,
    /// Spans in exports refused as a whole (bad payload, overload), when the count is known.
    pub spans_refused: Family<ExportLabels, Counter>,
    /// Attributes dropped or hashed by redaction.
    pub redacted_attributes: Counter,
    /// Bytes waiting in the ingest queue.
    pub queue_bytes: Gauge,
    /// Request rows emitted, by split source.
    pub requests_emitted: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Traces emitted by reason: complete, timeout (no entry span), forced (memory), drained.
    pub traces_emitted: Family<ReasonLabel, Counter>,
    /// Spans that arrived after their trace was emitted.
    pub late_spans: Counter,
    /// Spans waiting in trace assembly.
    pub assembly_pending_spans: Gauge,
    /// Records replayed from the WAL at startup.
    pub wal_replayed_records: Counter,
}

impl CollectorMetrics {
    /// Metrics registered under `slo_collector_*`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = CollectorMetrics {
            exports: Family::default(),
            export_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18))),
            spans_accepted: Family::default(),
            spans_rejected: Family::default(),
            spans_refused: Family::default(),
            redacted_attributes: Counter::default(),
            queue_bytes: Gauge::default(),
            requests_emitted: Family::default(),
            traces_emitted: Family::default(),
            late_spans: Counter::default(),
            assembly_pending_spans: Gauge::default(),
            wal_replayed_records: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("slo_collector");
        r.register("exports", "OTLP export requests by transport and outcome", m.exports.clone());
        r.register("export_seconds", "time from receiving an export to answering it", m.export_seconds.clone());
        r.register("spans_accepted", "spans durably stored", m.spans_accepted.clone());
        r.register("spans_rejected", "spans rejected individually (partial_success)", m.spans_rejected.clone());
        r.register("spans_refused", "spans in exports refused as a whole", m.spans_refused.clone());
        r.register(
            "redacted_attributes",
            "content attributes dropped or hashed before storage",
            m.redacted_attributes.clone(),
        );
        r.register("queue_bytes", "bytes waiting in the ingest queue", m.queue_bytes.clone());
        r.register("requests_emitted", "request rows emitted, by split source", m.requests_emitted.clone());
        r.register("traces_emitted", "traces emitted by trace assembly, by reason", m.traces_emitted.clone());
        r.register("late_spans", "spans that arrived after their trace was emitted", m.late_spans.clone());
        r.register("assembly_pending_spans", "spans waiting in trace assembly", m.assembly_pending_spans.clone());
        r.register("wal_replayed_records", "WAL records replayed at startup", m.wal_replayed_records.clone());
        m
    }

    /// Metrics registered nowhere.
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }
}
