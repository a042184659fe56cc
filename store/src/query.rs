//! SQL over the store with DataFusion.
//!
//! Each table is one [`StoreTable`]: the rows in memory (a `MemTable`) and the Parquet
//! segments (a Parquet scan of exactly the files the manifest lists, by path and size)
//! under one union, so a query sees recent and flushed data together and never a file
//! mid-write.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectMeta;

use crate::error::{Error, Result};
use crate::manifest::SegmentFile;
use crate::remote::Remote;
use crate::schema;

mod limits;
mod prune;
mod readonly;

pub use limits::QueryLimits;

/// A consistent view of the store at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) data_dir: PathBuf,
    /// Rows in memory per table, in [`schema::TABLES`] order.
    pub(crate) tables: [Vec<RecordBatch>; schema::TABLES.len()],
    pub(crate) files: Vec<SegmentFile>,
    /// Where files marked `uploaded` are read from.
    pub(crate) remote: Option<Remote>,
}

/// One table: rows in memory plus segment files (on the local disk, in the object store),
/// each with the manifest's min/max time, so that a scan opens only those its filters on
/// `time` may keep rows of (`query/prune.rs`).
pub(crate) struct StoreTable {
    schema: SchemaRef,
    memory: MemTable,
    files: Vec<TableFile>,
}

/// A segment file of a table: where it is, its size and its rows' time range, all from
/// the manifest.
struct TableFile {
    url: ListingTableUrl,
    remote: bool,
    bytes: u64,
    min_time: i64,
    max_time: i64,
}

impl fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTable").field("files", &self.files.len()).finish()
    }
}

impl StoreTable {
    /// Scans of the files whose time range meets `bounds`: one per object store (the local
    /// disk, the bucket). The files are the manifest's, opened by path and size: no listing
    /// and no `HEAD` a file, so a file the manifest lists and the store lacks fails the
    /// query with its path instead of being skipped (a listing of a missing path finds
    /// nothing), and a scan of the bucket costs no request a file before the reads.
    async fn file_scans(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        bounds: prune::TimeBounds,
        limit: Option<usize>,
    ) -> datafusion::error::Result<Vec<Arc<dyn ExecutionPlan>>> {
        let mut out = Vec::new();
        for remote in [false, true] {
            let chosen: Vec<&TableFile> =
                self.files.iter().filter(|f| f.remote == remote && bounds.overlaps(f.min_time, f.max_time)).collect();
            let Some(first) = chosen.first() else { continue };
            let files: Vec<PartitionedFile> = chosen
                .iter()
                .map(|f| {
                    PartitionedFile::from(ObjectMeta {
                        location: f.url.prefix().clone(),
                        last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                        size: f.bytes,
                        e_tag: None,
                        version: None,
                    })
                })
                .collect();
            let groups = FileGroup::new(files).split_files(state.config().target_partitions().max(1));
            let format = ParquetFormat::default();
            let source = format.file_source(TableSchema::from(self.schema.clone()));
            let config = FileScanConfigBuilder::new(first.url.object_store(), source)
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            out.push(format.create_physical_plan(state, config).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Segments prune with the filters (Parquet statistics); the filter is applied again
        // above the union, so inexact is right for both sides.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut plans = vec![self.memory.scan(state, projection, filters, limit).await?];
        plans.extend(self.file_scans(state, projection, prune::TimeBounds::of(filters), limit).await?);
        UnionExec::try_new(plans)
    }
}

/// The bytes of `rel` under `data_dir`, or `None` when there is no such file.
pub(crate) async fn read_local_opt(data_dir: &std::path::Path, rel: &str) -> Result<Option<bytes::Bytes>> {
    let path = data_dir.join(rel);
    match tokio::fs::read(&path).await {
        Ok(b) => Ok(Some(bytes::Bytes::from(b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::Error::io("read", &path)(e)),
    }
}

impl Snapshot {
    fn table(&self, name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<StoreTable> {
        let memory = MemTable::try_new(schema.clone(), vec![batches.to_vec()])?;
        let mut files = Vec::new();
        for f in self.files.iter().filter(|f| f.table == name) {
            let (url, remote) = match (&self.remote, f.uploaded) {
                (Some(r), true) => (ListingTableUrl::parse(r.table_url(&f.path))?, true),
                _ => (ListingTableUrl::parse(self.data_dir.join(&f.path).to_string_lossy())?, false),
            };
            files.push(TableFile { url, remote, bytes: f.bytes, min_time: f.min_time, max_time: f.max_time });
        }
        Ok(StoreTable { schema, memory, files })
    }

    /// Whether files marked `uploaded` are read from an object store.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The bytes of a segment or rollup file, from the local disk or the object store.
    pub async fn read(&self, f: &SegmentFile) -> Result<bytes::Bytes> {
        match (&self.remote, f.uploaded) {
            (Some(r), true) => r.get_file(&f.path).await,
            _ => {
                let path = self.data_dir.join(&f.path);
                let b = tokio::fs::read(&path).await.map_err(crate::error::Error::io("read", &path))?;
                Ok(bytes::Bytes::from(b))
            }
        }
    }

    /// [`Snapshot::read`], or `None` when the file is not there (deleted behind the
    /// manifest's back): the object store's or the disk's "not found", told apart from
    /// the errors worth retrying.
    pub(crate) async fn read_opt(&self, f: &SegmentFile) -> Result<Option<bytes::Bytes>> {
        match (&self.remote, f.uploaded) {
            (Some(r), true) => r.get_file_opt(&f.path).await,
            _ => read_local_opt(&self.data_dir, &f.path).await,
        }
    }

    /// A DataFusion session with the store's tables registered under their contract names,
    /// bounded by `limits` (its own memory pool, no spill files, guarded functions). URL
    /// tables stay off: a query reads the registered tables and nothing else.
    pub fn session(&self, limits: &QueryLimits) -> Result<SessionContext> {
        let config = SessionConfig::new().with_information_schema(true).with_target_partitions(2);
        let ctx = SessionContext::new_with_config_rt(config, limits.runtime()?);
        limits.guard_functions(&ctx)?;
        if let Some(r) = &self.remote {
            let (url, store) = r.registration();
            ctx.register_object_store(url, store);
        }
        let path = self.data_dir.canonicalize().unwrap_or_else(|_| self.data_dir.clone());
        let snap = Snapshot { data_dir: path, ..self.clone() };
        for (name, batches) in schema::TABLES.iter().zip(&self.tables) {
            let Some(table_schema) = schema::of(name) else { continue };
            ctx.register_table(*name, Arc::new(snap.table(name, table_schema, batches)?))?;
        }
        Ok(ctx)
    }

    /// Runs one read-only SQL statement with the default [`QueryLimits`].
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.query(sql, &QueryLimits::default()).await
    }

    /// Runs one SQL statement and collects the result, if it only reads (see
    /// `query/readonly.rs`: anything else is [`Error::Refused`], naming the statement kind)
    /// and within `limits` ([`Error::TooLarge`] or DataFusion's "Resources exhausted").
    pub async fn query(&self, sql: &str, limits: &QueryLimits) -> Result<Vec<RecordBatch>> {
        if sql.len() > limits.sql_bytes {
            return Err(Error::TooLarge(format!(
                "the SQL text is {} bytes; at most {} are accepted",
                sql.len(),
                limits.sql_bytes
            )));
        }
        readonly::check(sql)?;
        let ctx = self.session(limits)?;
        let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let df = ctx.sql_with_options(sql, read_only).await?;
        match limits.collect(df).await {
            Err(Error::Query(e)) => Err(self.name_missing(e).await),
            r => r,
        }
    }

    /// A failed query's error, or [`Error::Missing`] when it names a file of the view that
    /// is not where the manifest says (the Parquet reader keeps only the object store's
    /// "not found" text): each file whose path the error names is looked up, and only those.
    async fn name_missing(&self, e: datafusion::error::DataFusionError) -> Error {
        let text = e.to_string();
        for f in self.files.iter().filter(|f| text.contains(&f.path)) {
            let there = match (&self.remote, f.uploaded) {
                (Some(r), true) => r.exists(&f.path).await,
                _ => tokio::fs::try_exists(self.data_dir.join(&f.path))
                    .await
                    .map_err(Error::io("look for", self.data_dir.join(&f.path))),
            };
            if let Ok(false) = there {
                return Error::Missing { path: f.path.clone() };
            }
        }
        Error::Query(e)
    }

    /// Segment files in the view (every table's, and derived files).
    pub fn files(&self) -> &[SegmentFile] {
        &self.files
    }

    /// The same view with only the segment files whose rows may fall in `[from, to)` (ns,
    /// by the manifest's min/max time): queries over a window then never open the others.
    /// Rows in memory are kept whatever their time (the query's own filter applies).
    pub fn restrict(&self, from: i64, to: i64) -> Snapshot {
        let files = self.files.iter().filter(|f| f.max_time >= from && f.min_time < to).cloned().collect();
        Snapshot { files, ..self.clone() }
    }

    /// The newest `time` of a table (segments by the manifest, memory by a scan of the
    /// unflushed rows), without a query.
    pub fn max_time(&self, table: &str) -> Option<i64> {
        let from_files = self.files.iter().filter(|f| f.table == table && f.rows > 0).map(|f| f.max_time).max();
        let from_memory = self
            .memory(table)
            .iter()
            .filter_map(|b| {
                let col = b.column_by_name(crate::schema::col::TIME)?;
                let t = col.as_any().downcast_ref::<arrow::array::TimestampNanosecondArray>()?;
                arrow::compute::max(t)
            })
            .max();
        from_files.max(from_memory)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Rows of a table not yet in segments (in memory or being flushed).
    pub fn memory(&self, table: &str) -> &[RecordBatch] {
        match schema::TABLES.iter().position(|t| *t == table) {
            Some(i) => &self.tables[i],
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::Int64Array;

    use super::*;
    use crate::rows::{RequestRow, requests_batch};
    use crate::{Store, StoreConfig, StoreMetrics};

    fn row(t: u64, model: &str, ms: f64) -> RequestRow {
        RequestRow {
            time_unix_nano: t,
            trace_id: format!("{t:032x}"),
            service: "vllm".into(),
            model: Some(model.into()),
            status: "ok",
            duration_ms: ms,
            split_source: "none",
            ..Default::default()
        }
    }

    fn count(batches: &[RecordBatch]) -> i64 {
        batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
    }

    /// A query whose filter on `time` excludes a segment never opens it: with the older
    /// segment's file overwritten with garbage, filtered queries still answer (so they did
    /// not open it), and one that needs it fails.
    #[tokio::test]
    async fn segments_outside_a_queries_time_bounds_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut wal, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        // 2026-12-05 10:00 and 12:00 UTC.
        let (ten, noon) = (1_796_464_800_000_000_000u64, 1_796_472_000_000_000_000u64);
        store.append(None, Some(requests_batch(&(0..10).map(|i| row(ten + i, "a", 1.0)).collect::<Vec<_>>()).unwrap()));
        store.flush_now(&mut wal).unwrap();
        store
            .append(None, Some(requests_batch(&(0..20).map(|i| row(noon + i, "b", 1.0)).collect::<Vec<_>>()).unwrap()));
        store.flush_now(&mut wal).unwrap();
        let older = store.snapshot().files().iter().find(|f| f.min_time == ten as i64).unwrap().path.clone();
        std::fs::write(dir.path().join(older), b"not parquet").unwrap();
        let snap = store.snapshot();
        for filter in [
            "time >= TIMESTAMP '2026-12-05T11:00:00Z'",
            "time > '2026-12-05T11:00:00Z'",
            "'2026-12-05T11:00:00Z' <= time",
            "time BETWEEN TIMESTAMP '2026-12-05T11:30:00Z' AND TIMESTAMP '2026-12-05T13:00:00Z'",
            "time >= to_timestamp_seconds(1796468400) AND model = 'b'",
        ] {
            let sql = format!("SELECT count(*) FROM requests WHERE {filter}");
            let got = snap.sql(&sql).await.unwrap_or_else(|e| panic!("{filter}: {e}"));
            assert_eq!(count(&got), 20, "{filter}");
        }
        for needs_it in
            ["SELECT count(*) FROM requests", "SELECT count(*) FROM requests WHERE time < '2026-12-05T11:00:00Z'"]
        {
            assert!(snap.sql(needs_it).await.is_err(), "{needs_it} reads the broken file");
        }
    }

    /// A segment the manifest lists but the disk lacks fails the query with its path, not
    /// a silently smaller answer; a query whose time filter leaves it out still answers.
    #[tokio::test]
    async fn a_missing_segment_fails_the_query_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut wal, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let (ten, noon) = (1_796_464_800_000_000_000u64, 1_796_472_000_000_000_000u64);
        for (t, n) in [(ten, 10), (noon, 20)] {
            let rows: Vec<_> = (0..n).map(|i| row(t + i, "a", 1.0)).collect();
            store.append(None, Some(requests_batch(&rows).unwrap()));
            store.flush_now(&mut wal).unwrap();
        }
        let snap = store.snapshot();
        assert_eq!(count(&snap.sql("SELECT count(*) FROM requests").await.unwrap()), 30);
        let older = snap.files().iter().find(|f| f.min_time == ten as i64).unwrap().path.clone();
        std::fs::remove_file(dir.path().join(&older)).unwrap();
        let err = snap.sql("SELECT count(*) FROM requests").await.unwrap_err().to_string();
        assert!(err.contains(&older) && err.contains("missing from the store"), "{err}");
        let later = snap.sql("SELECT count(*) FROM requests WHERE time >= '2026-12-05T11:00:00Z'").await;
        assert_eq!(count(&later.unwrap()), 20);
    }

    /// Retention drops a segment from the manifest at once and deletes its file only after
    /// the read grace: a snapshot taken before still reads it.
    #[tokio::test]
    async fn retention_leaves_the_file_to_the_readers_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.retention = Some(Duration::from_secs(3600));
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        let ten = 1_796_464_800_000_000_000u64;
        store.append(None, Some(requests_batch(&(0..10).map(|i| row(ten + i, "a", 1.0)).collect::<Vec<_>>()).unwrap()));
        store.flush_now(&mut wal).unwrap();
        let before = store.snapshot();
        let file = dir.path().join(&before.files()[0].path);
        assert_eq!(store.apply_retention(ten as i64 + 3 * 3_600_000_000_000).unwrap(), 1);
        assert!(store.snapshot().files().is_empty());
        assert!(file.exists(), "deleted under a reader");
        assert_eq!(count(&before.sql("SELECT count(*) FROM requests").await.unwrap()), 10);
        store.delete_local_copies(Duration::from_secs(3600));
        assert!(file.exists(), "deleted inside the grace");
        store.delete_local_copies(Duration::ZERO);
        assert!(!file.exists());
    }

    /// At open nothing reads yet: what retention drops then is deleted at once, not left
    /// for the next open to find unlisted.
    #[test]
    fn retention_at_open_deletes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.retention = None;
        let (store, mut wal, _) = Store::open(cfg.clone(), StoreMetrics::unregistered()).unwrap();
        let ten = 1_796_464_800_000_000_000u64;
        store.append(None, Some(requests_batch(&(0..10).map(|i| row(ten + i, "a", 1.0)).collect::<Vec<_>>()).unwrap()));
        store.flush_now(&mut wal).unwrap();
        let file = dir.path().join(&store.snapshot().files()[0].path);
        drop((store, wal));
        cfg.retention = Some(Duration::from_secs(3600));
        let (store, _, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        assert!(store.snapshot().files().is_empty());
        assert!(!file.exists(), "left for the next open");
    }

    #[test]
    fn a_flush_is_due_at_half_the_memory_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.flush_interval = Duration::from_secs(3600);
        let batch = requests_batch(&(0..1000).map(|i| row(i, "a", 1.0)).collect::<Vec<_>>()).unwrap();
        let bytes = batch.get_array_memory_size();
        // Budget for 3.5 batches: one batch is under half of it, two are over.
        cfg.max_memory_bytes = bytes * 7 / 2;
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        store.append(None, Some(batch.clone()));
        assert!(!store.flush_due(), "one batch, under half the budget");
        store.append(None, Some(batch.clone()));
        assert!(store.flush_due(), "two batches, over half the budget");
        assert!(!store.over_memory_budget());
        // Frozen for the flusher: no longer due, and room for as much again meanwhile.
        let through = wal.rotate().unwrap();
        let job = store.freeze(through).unwrap();
        assert!(!store.flush_due());
        store.append(None, Some(batch.clone()));
        assert!(!store.over_memory_budget(), "frozen and new rows within the budget");
        store.write_flush(&job).unwrap();
        assert!(!store.flush_due());
    }

    #[tokio::test]
    async fn memory_and_segments_are_seen_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.flush_interval = Duration::from_secs(3600);
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        store.append(None, Some(requests_batch(&[row(now, "a", 10.0), row(now + 1, "b", 20.0)]).unwrap()));
        let through = wal.rotate().unwrap();
        let job = store.freeze(through).unwrap();
        // Frozen rows are still visible.
        assert_eq!(count(&store.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 2);
        store.write_flush(&job).unwrap();
        store.append(None, Some(requests_batch(&[row(now + 2, "a", 30.0)]).unwrap()));
        let snap = store.snapshot();
        assert_eq!(snap.files().len(), 1);
        assert_eq!(count(&snap.sql("SELECT count(*) FROM requests").await.unwrap()), 3);
        let a = snap.sql("SELECT count(*) FROM requests WHERE model = 'a' AND duration_ms > 15").await.unwrap();
        assert_eq!(count(&a), 1);
        // Reopen: the segment is there, memory is gone (the WAL would bring it back).
        drop(store);
        let (store, _, rec) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        assert!(rec.wal_segments.iter().all(|id| *id > through));
        assert_eq!(count(&store.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 2);
    }

    #[tokio::test]
    async fn appended_rows_are_compacted_and_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let t0 = 1_763_900_000_000_000_000u64;
        // One-row batches from builders that reserved far more than a row.
        let loose = |r: RequestRow| {
            let mut b = crate::RequestsBuilder::with_capacity(1_000);
            b.append(&r.as_ref(), r.attributes.iter().map(|a| (a.key.as_str(), a.value.as_str()))).unwrap();
            b.finish().unwrap()
        };
        let batches: Vec<RecordBatch> =
            (0..50u64).map(|i| loose(row(t0 + i, if i % 2 == 0 { "a" } else { "b" }, i as f64))).collect();
        let reserved: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        store.append_tables(batches.into_iter().map(|b| (crate::schema::REQUESTS, b)));
        let held = store.metrics().memory_bytes.get() as usize;
        assert!(held > 0 && held * 10 < reserved, "held {held} bytes of the {reserved} reserved");
        let snap = store.snapshot();
        assert_eq!(count(&snap.sql("SELECT count(*) FROM requests WHERE model = 'a'").await.unwrap()), 25);
        let sum = snap.sql("SELECT CAST(sum(duration_ms) AS BIGINT), CAST(min(time) AS BIGINT) FROM requests").await;
        let sum = sum.unwrap();
        assert_eq!(count(&sum), (0..50).sum::<i64>());
        let first = sum[0].column(1).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
        assert_eq!(first, t0 as i64);
        // A single batch is compacted too.
        let one = loose(row(t0 + 99, "c", 1.0));
        let reserved = one.get_array_memory_size();
        store.append(None, Some(one));
        let added = store.metrics().memory_bytes.get() as usize - held;
        assert!(added * 5 < reserved, "added {added} bytes for a batch of {reserved}");
    }

    #[tokio::test]
    async fn the_readme_query_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let t0 = 1_763_900_000_000_000_000u64;
        let rows: Vec<_> =
            (0..200u64).map(|i| row(t0 + i * 1_000_000_000, if i % 2 == 0 { "a" } else { "b" }, i as f64)).collect();
        store.append(None, Some(requests_batch(&rows).unwrap()));
        let sql = "SELECT date_trunc('minute', time) m, model, \
                   approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) p99, \
                   approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY queue_ms) q99 \
                   FROM requests GROUP BY 1, 2 ORDER BY 1, 2";
        let out = store.snapshot().sql(sql).await.unwrap();
        // 200 s starting mid-minute span 4 minutes, 2 models each.
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 8);
    }

    #[tokio::test]
    async fn bad_sql_is_a_user_error() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let err = store.snapshot().sql("SELECT nope FROM requests").await.unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    fn small() -> QueryLimits {
        QueryLimits { memory_bytes: 16 << 20, result_bytes: 1 << 20, value_bytes: 1 << 20, sql_bytes: 4096 }
    }

    async fn refused(sql: &str) -> Error {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let err = store.snapshot().query(sql, &small()).await.expect_err(sql);
        assert!(err.is_user_error(), "{sql}: {err}");
        err
    }

    #[tokio::test]
    async fn writes_and_file_reads_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("cron.csv");
        let copy = format!("COPY (SELECT 'x' AS line) TO '{}' STORED AS CSV", target.display());
        assert!(refused(&copy).await.to_string().starts_with("COPY statements are not allowed"));
        assert!(!target.exists(), "COPY wrote {}", target.display());
        let ext = "CREATE EXTERNAL TABLE p (a TEXT) STORED AS CSV LOCATION '/etc/passwd'";
        let err = refused(ext).await.to_string();
        assert!(err.starts_with("CREATE EXTERNAL TABLE") && !err.contains("records"), "{err}");
        let url = refused("SELECT * FROM '/etc/passwd'").await.to_string();
        assert!(url.contains("not found"), "a path is not a table: {url}");
        let long = format!("SELECT '{}'", "x".repeat(5000));
        assert!(refused(&long).await.to_string().contains("at most 4096"));
    }

    #[tokio::test]
    async fn heavy_queries_fail_with_the_limit_they_hit() {
        let big = refused("SELECT value FROM range(300000000)").await.to_string();
        assert!(big.contains("larger than 1 MiB") && big.contains("LIMIT"), "{big}");
        let repeat = refused("SELECT length(repeat('x', 1000000000))").await.to_string();
        assert!(repeat.contains("repeat") && repeat.contains("at most 1 MiB"), "{repeat}");
        let pad = refused("SELECT lpad('x', 2000000000)").await.to_string();
        assert!(pad.contains("lpad"), "{pad}");
        let per_batch = refused("SELECT length(repeat('x', 1000 + value)) FROM range(100000)").await.to_string();
        assert!(per_batch.contains("one batch"), "{per_batch}");
        let series =
            refused("SELECT range(DATE '1970-01-01', DATE '2100-01-01', INTERVAL '1 second')").await.to_string();
        assert!(series.contains("range"), "{series}");
        let chain = refused("SELECT length(replace(repeat('a', 10000), 'a', repeat('b', 10000)))").await.to_string();
        assert!(chain.contains("replace") && chain.contains("16 MiB"), "{chain}");
        let sort = refused("SELECT value FROM range(10000000) ORDER BY value DESC").await.to_string();
        assert!(sort.contains("Resources exhausted"), "{sort}");
    }

    #[tokio::test]
    async fn guarded_functions_still_compute() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let sql = "SELECT CAST(length(repeat('ab', 3)) + length(lpad('x', 4)) + cardinality(range(5)) \
                   + length(replace('aa', 'a', 'bc')) AS BIGINT)";
        assert_eq!(count(&store.snapshot().query(sql, &small()).await.unwrap()), 6 + 4 + 5 + 4);
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let err = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    /// Segments written before tail sampling lack `adjusted_count` and `sampled_by`: they
    /// read as null, next to segments that have them.
    #[tokio::test]
    async fn spans_segments_from_before_sampling_read_the_new_columns_as_null() {
        use crate::records::{ResourceSpans, SpanBatch, SpanRecord};
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.flush_interval = Duration::from_secs(3600);
        cfg.retention = None;
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let span = |id: u8| SpanRecord {
            trace_id: vec![id; 16],
            span_id: vec![id; 8],
            name: "llm_request".into(),
            kind: 2,
            start_unix_nano: now,
            end_unix_nano: now + 1_000_000,
            ..Default::default()
        };
        let batch = |id: u8| SpanBatch {
            resources: vec![ResourceSpans { service: "vllm".into(), resource: vec![], spans: vec![span(id)] }],
            ..Default::default()
        };
        let new = crate::rows::spans_batch([&batch(1)]).unwrap();
        let old_columns: Vec<usize> = (0..new.num_columns())
            .filter(|&i| {
                ![schema::col::ADJUSTED_COUNT, schema::col::SAMPLED_BY].contains(&new.schema().field(i).name().as_str())
            })
            .collect();
        assert_eq!(old_columns.len(), 12, "the twelve columns spans had before sampling");
        let old = crate::rows::spans_batch([&batch(2)]).unwrap().project(&old_columns).unwrap();
        for b in [old, new] {
            store.append(Some(b), None);
            let through = wal.rotate().unwrap();
            let job = store.freeze(through).unwrap();
            store.write_flush(&job).unwrap();
        }
        let snap = store.snapshot();
        assert_eq!(snap.files().len(), 2);
        let got = snap
            .sql("SELECT count(*) AS n, count(adjusted_count) AS a, count(sampled_by) AS b FROM spans")
            .await
            .unwrap();
        let col = |i: usize| got[0].column(i).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
        assert_eq!((col(0), col(1), col(2)), (2, 1, 1));
    }
}
