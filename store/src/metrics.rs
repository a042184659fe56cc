//! Self-observability of the store.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of per-table metrics.
pub(crate) type TableLabel = Vec<(&'static str, &'static str)>;

/// The store's metrics; clones share the same series.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Time of one WAL group commit (write + fsync per policy).
    pub wal_append_seconds: Histogram,
    /// Bytes appended to the WAL.
    pub wal_bytes: Counter,
    /// Time to write one flush (all its segments and the manifest).
    pub flush_seconds: Histogram,
    /// Flushes that failed (retried later; the data stays in memory and in the WAL).
    pub flush_errors: Counter,
    /// Rows written to segments, per table.
    pub flushed_rows: Family<TableLabel, Counter>,
    /// Rows held in memory (not yet in a segment).
    pub memory_rows: Gauge,
    /// Arrow bytes of rows not yet in segments (what `max_memory_bytes` bounds).
    pub memory_bytes: Gauge,
    /// Segment files listed in the manifest.
    pub segments: Gauge,
    /// Segment files removed by retention.
    pub retention_removed: Counter,
    /// Files copied to the object store.
    pub uploaded_files: Counter,
    /// Upload rounds that failed (retried with back-off; the files stay on the local disk).
    pub upload_errors: Counter,
    /// Files waiting for the object store (to upload, or to delete there).
    pub upload_pending: Gauge,
    /// Derived files (rollups) merged into larger ones by compaction.
    pub compacted_files: Counter,
    /// Parquet segments merged into one a table and hour by compaction.
    pub compacted_segments: Counter,
}

impl StoreMetrics {
    /// Metrics registered in `registry` under `slo_store_*`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = StoreMetrics {
            wal_append_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            wal_bytes: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            flush_errors: Counter::default(),
            flushed_rows: Family::default(),
            memory_rows: Gauge::default(),
            memory_bytes: Gauge::default(),
            segments: Gauge::default(),
            retention_removed: Counter::default(),
            uploaded_files: Counter::default(),
            upload_errors: Counter::default(),
            upload_pending: Gauge::default(),
            compacted_files: Counter::default(),
            compacted_segments: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("slo_store");
        r.register("wal_append_seconds", "time of one WAL group commit", m.wal_append_seconds.clone());
        r.register("wal_bytes", "bytes appended to the WAL", m.wal_bytes.clone());
        r.register("flush_seconds", "time to write one flush to Parquet", m.flush_seconds.clone());
        r.register("flush_errors", "flushes that failed and will be retried", m.flush_errors.clone());
        r.register("flushed_rows", "rows written to Parquet segments", m.flushed_rows.clone());
        r.register("memory_rows", "rows held in memory, not yet in a segment", m.memory_rows.clone());
        r.register(
            "memory_bytes",
            "Arrow bytes of rows not yet in a segment, in memory or being flushed",
            m.memory_bytes.clone(),
        );
        r.register("segments", "Parquet segment files in the manifest", m.segments.clone());
        r.register("retention_removed", "segment files removed by retention", m.retention_removed.clone());
        r.register("uploaded_files", "segment and rollup files copied to the object store", m.uploaded_files.clone());
        r.register("upload_errors", "upload rounds that failed and will be retried", m.upload_errors.clone());
        r.register(
            "upload_pending",
            "files waiting for the object store (to upload, or expired to delete there)",
            m.upload_pending.clone(),
        );
        r.register(
            "compacted_files",
            "rollup files merged into larger ones (60 flushes a file)",
            m.compacted_files.clone(),
        );
        r.register(
            "compacted_segments",
            "Parquet segments merged into one a table and hour once the hour is over",
            m.compacted_segments.clone(),
        );
        m
    }

    /// Metrics registered nowhere (tools and tests).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }
}
