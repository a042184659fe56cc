//! The store: in-memory rows, flushes to Parquet, the manifest and recovery.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentFile};
use crate::metrics::StoreMetrics;
use crate::query::Snapshot;
use crate::remote::Remote;
use crate::schema::{REQUESTS, SPANS, TABLES};
use crate::segments;
use crate::wal::{self, FsyncPolicy, SegmentRead, Wal, WalCompression};

mod flush;
mod wal_shards;

pub use flush::FlushJob;
use flush::Gathering;
use wal_shards::shard_unflushed;
pub use wal_shards::{wal_dir, wal_shards_on_disk, wal_unflushed};

/// Data derived from each flush's `requests` rows and kept beside its segments (the
/// analyzer's rollups): written in the same flush, listed in the manifest under
/// [`Derive::table`], removed by retention with the rest, never part of the SQL tables.
/// Derived data can be rebuilt from `requests`, so a failure to derive is logged, not fatal.
pub trait Derive: Send + Sync + std::fmt::Debug {
    /// The directory and manifest table name (`rollups`).
    fn table(&self) -> &'static str;
    /// The bytes to keep for these `requests` batches.
    fn derive(&self, requests: &[RecordBatch]) -> std::result::Result<Vec<u8>, String>;
    /// One file's bytes holding what `parts` (files [`Derive::derive`] or this wrote) hold
    /// together: what compaction keeps in their place (`compact.rs`).
    fn merge(&self, parts: &[&[u8]]) -> std::result::Result<Vec<u8>, String>;
}

/// How the store behaves. The serve command fills it from the config file and flags.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root of everything the store keeps.
    pub data_dir: PathBuf,
    /// When the WAL calls fsync.
    pub fsync: FsyncPolicy,
    /// For [`FsyncPolicy::Interval`]: the longest time between two fsyncs.
    pub fsync_interval: Duration,
    /// Whether WAL records are compressed (`wal/frame.rs`).
    pub wal_compression: WalCompression,
    /// Flush in-memory rows to Parquet at least this often.
    pub flush_interval: Duration,
    /// Flush as soon as this many rows are in memory.
    pub flush_rows: usize,
    /// Memory held by unflushed rows beyond which ingest waits for flushes (and so, upstream,
    /// sheds load). Rows in memory are flushed when they hold half of it.
    pub max_memory_bytes: usize,
    /// Segments whose newest row (data time) is older than this are deleted; `None` keeps
    /// everything (imports of old incidents).
    pub retention: Option<Duration>,
    /// What to derive from each flush's requests (the analyzer's rollups), if anything.
    pub derive: Option<Arc<dyn Derive>>,
    /// Where segments go once written (this collector's own prefix), if anywhere: the
    /// uploader copies them there and deletes the local copy (`upload.rs`).
    pub remote: Option<Remote>,
    /// This collector's name in the object store's manifest.
    pub collector: String,
    /// WAL shards: each its own directory, written by its own pipeline thread (the
    /// collector routes every trace to one by its id). A flush takes every shard's rows at
    /// its own rotation point and is written once all have given theirs.
    pub wal_shards: usize,
    /// How long a file that left the manifest (merged by compaction) stays on the local
    /// disk: a query that listed it before reads it there. Give the longest a query runs.
    pub read_grace: Duration,
    /// How long an object that left the object store's manifest (retention, merged
    /// rollups) stays in the object store: a query node that read that manifest before
    /// reads it there. Give a query node's refresh interval plus the longest a query runs.
    pub remote_read_grace: Duration,
    /// Files beside the data (paths relative to the data directory) that each upload round
    /// copies to the same path in the object store when they changed: state another
    /// collector continues from (the Kubernetes watch's baseline, handed over with the
    /// watcher's Lease). Not segments: no manifest lists them and no sweep deletes them.
    pub side_files: Vec<String>,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(200),
            wal_compression: WalCompression::Zstd,
            flush_interval: Duration::from_secs(60),
            flush_rows: 1_000_000,
            max_memory_bytes: 1 << 30,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            derive: None,
            remote: None,
            collector: "slo".into(),
            wal_shards: 1,
            read_grace: Duration::from_secs(35),
            remote_read_grace: Duration::from_secs(50),
            side_files: Vec::new(),
        }
    }
}

/// Batches per table, in [`TABLES`] order.
type Tables = [Vec<RecordBatch>; TABLES.len()];

fn table_index(table: &str) -> Option<usize> {
    TABLES.iter().position(|t| *t == table)
}

#[derive(Debug, Default)]
struct Rows {
    tables: Tables,
    rows: usize,
    bytes: usize,
    /// When its first row came.
    since: Option<Instant>,
}

#[derive(Debug)]
struct Frozen {
    id: u64,
    tables: Tables,
    bytes: usize,
}

#[derive(Debug)]
struct State {
    /// Rows in memory, per WAL shard.
    mem: Vec<Rows>,
    frozen: Vec<Frozen>,
    gathering: Option<Gathering>,
    manifest: Manifest,
    next_flush_id: u64,
}

/// `batches` (one table's, same schema, at least one) as one batch whose buffers hold
/// little more than its data: a lone batch that already does is kept as it is (copying
/// every row of a step cost the pipeline about 7% of its time, BENCHMARKS.md "Less work
/// a span, again"); otherwise they are copied into buffers of exactly their data's size.
fn compact(batches: &[RecordBatch]) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let Some(first) = batches.first() else {
        return Err(arrow::error::ArrowError::InvalidArgumentError("no batches to compact".into()));
    };
    let schema = first.schema();
    if batches.len() == 1 {
        if is_tight(first) {
            return Ok(first.clone());
        }
        // Concatenating one array returns a slice of it, buffers and all; with an empty
        // batch beside it, the columns are copied.
        return arrow::compute::concat_batches(&schema, [first, &RecordBatch::new_empty(schema.clone())]);
    }
    arrow::compute::concat_batches(&schema, batches)
}

/// Whether the batch's buffers are at most a quarter larger than the data it holds (a
/// builder sized from the rows before it, [`crate::RowWidths`], usually leaves a sixteenth;
/// a slice of a larger batch, or a builder that doubled, may leave far more).
pub(crate) fn is_tight(batch: &RecordBatch) -> bool {
    let mut used = 0usize;
    for c in batch.columns() {
        match c.to_data().get_slice_memory_size() {
            Ok(n) => used += n,
            Err(_) => return false,
        }
    }
    batch.get_array_memory_size() <= used + used / 4
}

impl State {
    /// Arrow bytes of rows not yet in segments: in memory and frozen for a flush.
    fn unflushed_bytes(&self) -> usize {
        self.mem.iter().map(|m| m.bytes).sum::<usize>() + self.frozen.iter().map(|f| f.bytes).sum::<usize>()
    }

    fn mem_rows(&self) -> usize {
        self.mem.iter().map(|m| m.rows).sum()
    }
}

#[derive(Debug)]
struct Inner {
    cfg: StoreConfig,
    state: Mutex<State>,
    /// Held while the manifest is read, changed and saved (a flush, retention, the
    /// uploader), so that none of them saves over another's change.
    pub(crate) manifest_writer: Mutex<()>,
    metrics: StoreMetrics,
    /// Held for the life of a writable store so that two processes never share a data dir.
    _lock: Option<fs::File>,
    /// Where files marked `uploaded` are read: the configured object store, or the one the
    /// manifest says they went to.
    read_remote: Option<Remote>,
    /// Local copies of uploaded files, and when their upload was recorded: deleted once no
    /// query can still read them (`Store::delete_local_copies`).
    local_deletes: Mutex<Vec<(PathBuf, Instant)>>,
    /// Segments that would not read for a merge: left out of later runs (until a restart),
    /// so that one bad file does not stop its table's compaction or warn every round.
    unmergeable: Mutex<std::collections::HashSet<String>>,
}

/// A handle on the store; clones share it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What must be replayed after opening: the collector's saved state, then the WAL.
#[derive(Debug)]
pub struct Recovery {
    /// The collector's in-flight state as of the last flush.
    pub state: Option<Vec<u8>>,
    /// WAL segments with an id `<=` this have their rows in segments already; they are
    /// there for the traces the state lists.
    pub checkpoint: u64,
    /// WAL segments to replay, oldest first.
    pub wal_segments: Vec<u64>,
    wal_dir: PathBuf,
}

impl Recovery {
    /// Reads one WAL segment to replay.
    pub fn read(&self, id: u64) -> Result<SegmentRead> {
        wal::read_segment(&self.wal_dir, id)
    }
}

fn lock_data_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open lock", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", &path)(e)),
    }
}

/// Where the files the manifest marks `uploaded` are read from: the configured object
/// store, or, without one, the one they were uploaded to. A configured one that is not
/// where they went is refused (a renamed collector would otherwise read nothing).
fn uploaded_to(cfg: &StoreConfig, manifest: &Manifest) -> Result<Option<Remote>> {
    let saved = manifest.object_store.as_ref().filter(|_| manifest.files.iter().any(|f| f.uploaded));
    match (&cfg.remote, saved) {
        (Some(now), Some(then)) if now.url() != then.url => Err(Error::Remote {
            op: "open",
            what: cfg.data_dir.display().to_string(),
            detail: format!(
                "its segments were uploaded to {}, but the config now says {}: set store.object_store and \
                 store.collector back, or move the objects",
                then.url,
                now.url()
            ),
        }),
        (Some(now), _) => Ok(Some(now.clone())),
        (None, Some(then)) => Ok(Some(Remote::open(then)?)),
        (None, None) => Ok(None),
    }
}

/// The wall clock, ns since the epoch (0 before it).
pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

impl Store {
    /// Opens the data directory for writing with one WAL shard (tools, imports, tests):
    /// [`Store::open_shards`] with `wal_shards` 1.
    pub fn open(cfg: StoreConfig, metrics: StoreMetrics) -> Result<(Store, Wal, Recovery)> {
        let cfg = StoreConfig { wal_shards: 1, ..cfg };
        let (store, mut shards) = Store::open_shards(cfg, metrics)?;
        let (wal, recovery) = shards.remove(0);
        Ok((store, wal, recovery))
    }

    /// Opens the data directory for writing: takes its lock, removes what a crash left
    /// half-done, applies retention, and opens a fresh segment in each of the
    /// `cfg.wal_shards` WALs. The caller must replay each shard's [`Recovery`] before
    /// accepting new data. A directory last written with more shards is refused while the
    /// extra shards hold data not in segments (the collector replays it with the old count
    /// first, [`wal_shards_on_disk`]).
    pub fn open_shards(cfg: StoreConfig, metrics: StoreMetrics) -> Result<(Store, Vec<(Wal, Recovery)>)> {
        let shards = cfg.wal_shards.max(1);
        fs::create_dir_all(&cfg.data_dir).map_err(Error::io("create data dir", &cfg.data_dir))?;
        let lock = lock_data_dir(&cfg.data_dir)?;
        let mut manifest = Manifest::load(&cfg.data_dir)?;
        let read_remote = uploaded_to(&cfg, &manifest)?;
        if cfg.remote.is_none() && read_remote.is_some() {
            tracing::warn!(
                "store.object_store is not set: segments already uploaded are read where they went; new ones stay local"
            );
        }
        let derived = cfg.derive.as_ref().map(|d| d.table());
        for table in TABLES.into_iter().chain(derived) {
            let removed = segments::remove_orphans(&cfg.data_dir, table, &manifest.files)?;
            if removed > 0 {
                tracing::warn!(table, removed, "removed segment files a crash left unlisted");
            }
        }
        for f in manifest.files.iter().filter(|f| f.uploaded) {
            // A crash after the upload was recorded, before the local copy went.
            let _ = fs::remove_file(cfg.data_dir.join(&f.path));
        }
        // Shards beyond the configured count: only when nothing of theirs waits.
        let on_disk = wal_shards_on_disk(&cfg.data_dir)?;
        for k in shards..on_disk {
            let dir = wal_dir(&cfg.data_dir, k);
            if shard_unflushed(&cfg.data_dir, &manifest, k)? {
                return Err(Error::Corrupt {
                    what: "write-ahead log",
                    path: dir,
                    detail: format!(
                        "this data directory was written with {on_disk} WAL shards and shard {k} holds data not yet \
                         in segments; open it with {on_disk} shards first"
                    ),
                });
            }
            fs::remove_dir_all(&dir).map_err(Error::io("remove wal dir", &dir))?;
        }
        manifest.wal_shards.truncate(shards - 1);
        let mut opened = Vec::with_capacity(shards);
        for k in 0..shards {
            let saved = manifest.shard(k);
            let dir = wal_dir(&cfg.data_dir, k);
            wal::remove_through(&dir, saved.keep_from() - 1)?;
            let state = match &saved.state_file {
                Some(name) => {
                    let path = cfg.data_dir.join(name);
                    Some(fs::read(&path).map_err(Error::io("read state", &path))?)
                }
                None => None,
            };
            let wal_segments = wal::list_segments(&dir)?;
            let wal = Wal::open(&dir, cfg.fsync, cfg.fsync_interval)?.with_compression(cfg.wal_compression);
            opened.push((wal, Recovery { state, checkpoint: saved.checkpoint, wal_segments, wal_dir: dir }));
        }
        let store = Store::from_parts(cfg, manifest, metrics, Some(lock), read_remote);
        store.apply_retention(now_ns())?;
        // Nothing reads the directory yet: what retention dropped goes now, not after the
        // read grace (a process that opens and closes the store, `slo import`, would leave
        // it for the next open to find unlisted).
        store.delete_local_copies(Duration::ZERO);
        Ok((store, opened))
    }

    /// Opens the data directory to read its segments only, without its lock (a server may be
    /// writing it). Rows the server holds in memory or in its WAL are not visible this way.
    pub fn open_read_only(data_dir: &Path) -> Result<Store> {
        if !data_dir.join("manifest.json").exists() && !data_dir.join("wal").exists() {
            return Err(Error::Io {
                op: "open data dir",
                path: data_dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no slo data here"),
            });
        }
        let manifest = Manifest::load(data_dir)?;
        let cfg = StoreConfig::new(data_dir);
        let read_remote = uploaded_to(&cfg, &manifest)?;
        Ok(Store::from_parts(cfg, manifest, StoreMetrics::unregistered(), None, read_remote))
    }

    pub(crate) fn from_parts(
        cfg: StoreConfig,
        manifest: Manifest,
        metrics: StoreMetrics,
        lock: Option<fs::File>,
        read_remote: Option<Remote>,
    ) -> Store {
        metrics.segments.set(manifest.files.len() as i64);
        let next_flush_id = manifest.next_flush_id.max(1);
        let mem = (0..cfg.wal_shards.max(1)).map(|_| Rows::default()).collect();
        let state = State { mem, frozen: Vec::new(), gathering: None, manifest, next_flush_id };
        Store {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(state),
                manifest_writer: Mutex::new(()),
                metrics,
                _lock: lock,
                read_remote,
                local_deletes: Mutex::default(),
                unmergeable: Mutex::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// The metrics.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// Adds `spans` and `requests` rows; they are visible to queries as soon as this
    /// returns.
    pub fn append(&self, spans: Option<RecordBatch>, requests: Option<RecordBatch>) {
        self.append_tables([(SPANS, spans), (REQUESTS, requests)].into_iter().filter_map(|(t, b)| Some((t, b?))));
    }

    /// Adds rows to tables by name (one of [`TABLES`]; a batch for another name is a bug
    /// and is logged and dropped). Visible to queries as soon as this returns.
    ///
    /// The batches of each table are copied into one, sized exactly: builders reserve
    /// ahead (with this workload's exports, about twice what the rows need), and what is
    /// reserved is what memory holds until the flush. Compacted, the memory budget holds
    /// twice the rows, and queries and flushes see one batch per call, not one per export.
    pub fn append_tables<'a>(&self, batches: impl IntoIterator<Item = (&'a str, RecordBatch)>) {
        self.append_shard(0, batches);
    }

    /// [`Store::append_tables`] for the rows of WAL shard `shard`: they are flushed with
    /// that shard's checkpoint.
    pub fn append_shard<'a>(&self, shard: usize, batches: impl IntoIterator<Item = (&'a str, RecordBatch)>) {
        let mut by_table = Tables::default();
        for (table, b) in batches {
            let Some(i) = table_index(table) else {
                tracing::error!(table, "rows for a table the store does not have were dropped");
                continue;
            };
            if b.num_rows() > 0 {
                by_table[i].push(b);
            }
        }
        let compacted = by_table.map(|batches| {
            if batches.is_empty() {
                return batches;
            }
            match compact(&batches) {
                Ok(one) => vec![one],
                Err(e) => {
                    tracing::warn!(error = %e, "rows kept as they came: compacting them failed");
                    batches
                }
            }
        });
        let mut st = self.inner.state.lock();
        let Some(mem) = st.mem.get_mut(shard) else {
            tracing::error!(shard, "rows for a WAL shard the store does not have were dropped");
            return;
        };
        for (i, batches) in compacted.into_iter().enumerate() {
            for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
                mem.rows += b.num_rows();
                mem.bytes += b.get_array_memory_size();
                mem.tables[i].push(b);
            }
        }
        if mem.rows > 0 && mem.since.is_none() {
            mem.since = Some(Instant::now());
        }
        let rows = st.mem_rows();
        let bytes = st.unflushed_bytes();
        drop(st);
        self.inner.metrics.memory_rows.set(rows as i64);
        self.inner.metrics.memory_bytes.set(bytes as i64);
    }

    /// Whether the rows in memory are due for a flush: by count, by age, or by holding half
    /// the memory budget. The last keeps the other half for the rows that arrive while the
    /// flush is written, so that under a steady load ingest does not stop at each flush to
    /// wait for the flusher (with the whole budget as the trigger it did, for 2-3 s a
    /// flush; BENCHMARKS.md, "Acknowledgement latency").
    pub fn flush_due(&self) -> bool {
        let st = self.inner.state.lock();
        st.mem_rows() >= self.inner.cfg.flush_rows
            || st.mem.iter().map(|m| m.bytes).sum::<usize>() >= self.inner.cfg.max_memory_bytes / 2
            || st.mem.iter().filter_map(|m| m.since).any(|t| t.elapsed() >= self.inner.cfg.flush_interval)
    }

    /// Whether unflushed rows (in memory and being flushed) exceed the memory budget.
    pub fn over_memory_budget(&self) -> bool {
        self.inner.state.lock().unflushed_bytes() > self.inner.cfg.max_memory_bytes
    }

    /// Flushes waiting to be written.
    pub fn pending_flushes(&self) -> usize {
        self.inner.state.lock().frozen.len()
    }

    /// Drops segments whose newest row is older than the retention period from the
    /// manifest. Local files are deleted after the read grace; those in the object store
    /// are listed for the uploader, which drops them from the object store's manifest and
    /// deletes them there after the remote read grace, so that no reader that listed a
    /// file finds it missing.
    pub fn apply_retention(&self, now_ns: i64) -> Result<usize> {
        let Some(retention) = self.inner.cfg.retention else { return Ok(0) };
        let cutoff = now_ns.saturating_sub(retention.as_nanos() as i64);
        if !self.with_manifest(|m| m.files.iter().any(|f| f.max_time < cutoff)) {
            return Ok(0);
        }
        let mut old = Vec::new();
        self.update_manifest(|m| {
            let (expired, keep): (Vec<SegmentFile>, Vec<SegmentFile>) =
                m.files.drain(..).partition(|f| f.max_time < cutoff);
            m.files = keep;
            m.remote_expired.extend(expired.iter().filter(|f| f.uploaded).map(|f| f.path.clone()));
            old = expired;
        })?;
        self.inner.metrics.segments.set(self.with_manifest(|m| m.files.len()) as i64);
        // A query that took its snapshot before still reads the local files: they go after
        // the read grace, with the local copies of uploaded files (`delete_local_copies`).
        self.defer_local_deletes(old.iter().filter(|f| !f.uploaded).map(|f| self.inner.cfg.data_dir.join(&f.path)));
        self.inner.metrics.retention_removed.inc_by(old.len() as u64);
        Ok(old.len())
    }

    /// The manifest as it stands.
    pub(crate) fn manifest(&self) -> Manifest {
        self.with_manifest(Manifest::clone)
    }

    /// `read` of the manifest as it stands, without copying it.
    pub(crate) fn with_manifest<T>(&self, read: impl FnOnce(&Manifest) -> T) -> T {
        read(&self.inner.state.lock().manifest)
    }

    /// Changes the manifest with `change` and saves it, serialized with every other writer.
    pub(crate) fn update_manifest(&self, change: impl FnOnce(&mut Manifest)) -> Result<()> {
        let _writer = self.inner.manifest_writer.lock();
        let mut m = self.manifest();
        change(&mut m);
        m.save(&self.inner.cfg.data_dir)?;
        self.inner.state.lock().manifest = m;
        Ok(())
    }

    /// Segments left out of merges ([`Inner::unmergeable`]).
    pub(crate) fn unmergeable(&self) -> std::collections::HashSet<String> {
        self.inner.unmergeable.lock().clone()
    }

    /// Leaves `path` out of later merges.
    pub(crate) fn mark_unmergeable(&self, path: &str) {
        self.inner.unmergeable.lock().insert(path.to_string());
    }

    /// Queues local copies of uploaded files for deletion.
    pub(crate) fn defer_local_deletes(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let now = Instant::now();
        self.inner.local_deletes.lock().extend(paths.into_iter().map(|p| (p, now)));
    }

    /// Deletes the local copies of uploaded files recorded more than `grace` ago (a query
    /// that listed a file before its upload was recorded reads the local copy).
    pub fn delete_local_copies(&self, grace: Duration) {
        let due: Vec<PathBuf> = {
            let mut queued = self.inner.local_deletes.lock();
            let (due, keep): (Vec<_>, Vec<_>) = queued.drain(..).partition(|(_, at)| at.elapsed() >= grace);
            *queued = keep;
            due.into_iter().map(|(p, _)| p).collect()
        };
        for p in due {
            let _ = fs::remove_file(p);
        }
    }

    /// Replaces the list of files (a bucket reader's refresh; nothing is saved).
    pub(crate) fn set_files(&self, files: Vec<SegmentFile>) {
        let mut st = self.inner.state.lock();
        st.manifest.files = files;
        self.inner.metrics.segments.set(st.manifest.files.len() as i64);
    }

    /// What a query sees now: rows in memory, rows being flushed, and the segments.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.inner.state.lock();
        let mut tables: Tables = Default::default();
        for (i, batches) in tables.iter_mut().enumerate() {
            for f in &st.frozen {
                batches.extend(f.tables[i].iter().cloned());
            }
            for mem in &st.mem {
                batches.extend(mem.tables[i].iter().cloned());
            }
        }
        Snapshot {
            data_dir: self.inner.cfg.data_dir.clone(),
            tables,
            files: st.manifest.files.clone(),
            remote: self.inner.read_remote.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn ints(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    #[test]
    fn a_tight_batch_is_kept_and_a_slice_is_copied() {
        let whole = ints(10_000);
        let kept = compact(std::slice::from_ref(&whole)).unwrap();
        assert_eq!(kept.column(0).to_data().buffers()[0].as_ptr(), whole.column(0).to_data().buffers()[0].as_ptr());

        let slice = whole.slice(0, 10);
        let copied = compact(&[slice]).unwrap();
        assert_eq!(copied.num_rows(), 10);
        assert!(copied.get_array_memory_size() < 1_000, "{} bytes for 10 rows", copied.get_array_memory_size());
        assert_eq!(copied.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(9), 9);

        let two = compact(&[ints(3), ints(4)]).unwrap();
        assert_eq!(two.num_rows(), 7);
    }
}
