//! Self-observability of the collector.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::scrape::GpuWorkloads;
use crate::sli::{SliBounds, SliMetrics};

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
    /// Request rows emitted, by split source.
    pub requests_emitted: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Traces emitted by reason: complete, timeout (no entry span), forced (memory), drained.
    pub traces_emitted: Family<ReasonLabel, Counter>,
    /// Spans that arrived after their trace was emitted.
    pub late_spans: Counter,
    /// Spans of emitted traces stored in `spans`, by why (`sampled_by`).
    pub spans_stored: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Spans of emitted traces not stored (tail sampling left their trace out).
    pub spans_not_stored: Counter,
    /// Spans waiting in trace assembly.
    pub assembly_pending_spans: Gauge,
    /// Bytes the spans waiting in trace assembly hold.
    pub assembly_pending_bytes: Gauge,
    /// Records replayed from the WAL at startup.
    pub wal_replayed_records: Counter,
    /// The SLI metrics the SLO rules read (`slo_requests_total`, `slo_request_*_seconds`).
    pub sli: SliMetrics,
    /// GPU -> pod -> service, exposed as `slo_gpu_workload_info` (the scraper fills the
    /// GPUs, emitted requests the services).
    pub gpu_workloads: GpuWorkloads,
}

impl CollectorMetrics {
    /// Metrics registered under `slo_collector_*`, and SLI metrics with the default buckets.
    pub fn new(registry: &mut Registry) -> Self {
        Self::with_sli(registry, &SliBounds::default())
    }

    /// Metrics registered under `slo_collector_*`, and SLI metrics whose buckets include
    /// `sli`'s SLO thresholds.
    pub fn with_sli(registry: &mut Registry, sli: &SliBounds) -> Self {
        let m = CollectorMetrics {
            exports: Family::default(),
            export_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18))),
            spans_accepted: Family::default(),
            spans_rejected: Family::default(),
            spans_refused: Family::default(),
            redacted_attributes: Counter::default(),
            requests_emitted: Family::default(),
            traces_emitted: Family::default(),
            late_spans: Counter::default(),
            spans_stored: Family::default(),
            spans_not_stored: Counter::default(),
            assembly_pending_spans: Gauge::default(),
            assembly_pending_bytes: Gauge::default(),
            wal_replayed_records: Counter::default(),
            sli: SliMetrics::new(registry, sli),
            gpu_workloads: GpuWorkloads::new(registry),
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
        r.register("requests_emitted", "request rows emitted, by split source", m.requests_emitted.clone());
        r.register("traces_emitted", "traces emitted by trace assembly, by reason", m.traces_emitted.clone());
        r.register("late_spans", "spans that arrived after their trace was emitted", m.late_spans.clone());
        r.register(
            "spans_stored",
            "spans stored in the spans table, by why their trace was kept",
            m.spans_stored.clone(),
        );
        r.register(
            "spans_not_stored",
            "spans whose trace tail sampling left out (their requests rows are stored)",
            m.spans_not_stored.clone(),
        );
        r.register("assembly_pending_spans", "spans waiting in trace assembly", m.assembly_pending_spans.clone());
        r.register(
            "assembly_pending_bytes",
            "bytes held by spans waiting in trace assembly (their text, fields and the entries of their traces)",
            m.assembly_pending_bytes.clone(),
        );
        r.register("wal_replayed_records", "WAL records replayed at startup", m.wal_replayed_records.clone());
        m
    }

    /// Metrics registered nowhere.
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }
}

/// A gauge read when it is scraped (a budget in use, the process's RSS), for values that
/// already live elsewhere and would otherwise need a hook at every change.
pub struct FnGauge {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl FnGauge {
    /// A gauge `name` whose value is `read()` at each scrape.
    pub fn new(name: &'static str, help: &'static str, read: impl Fn() -> i64 + Send + Sync + 'static) -> Box<Self> {
        Box::new(FnGauge { name, help, read: Box::new(read) })
    }
}

impl std::fmt::Debug for FnGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnGauge").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Collector for FnGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new((self.read)());
        let metric = encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

/// The resident set size of this process in bytes, from `/proc/self/status` (`None` where
/// there is no procfs).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<u64>().ok().map(|k| k * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fn_gauges_are_read_at_scrape_time() {
        let value = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(7));
        let mut registry = Registry::default();
        let v = value.clone();
        registry.sub_registry_with_prefix("slo_collector").register_collector(FnGauge::new(
            "receive_bytes",
            "bytes reserved",
            move || v.load(std::sync::atomic::Ordering::Relaxed),
        ));
        let scrape = |r: &Registry| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, r).unwrap();
            out
        };
        assert!(scrape(&registry).contains("\nslo_collector_receive_bytes 7\n"), "{}", scrape(&registry));
        value.store(4096, std::sync::atomic::Ordering::Relaxed);
        assert!(scrape(&registry).contains("\nslo_collector_receive_bytes 4096\n"));
        // This process has pages of its own: at least its binary's and this test's.
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
