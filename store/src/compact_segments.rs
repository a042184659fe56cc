//! Compaction of Parquet segments, as Tempo's and Loki's compactors merge their blocks: a
//! flush writes one segment a table and hour (`<table>/date=…/hour=…/<flush>.parquet`),
//! 60 an hour at the default flush interval; once the hour is over (and [`SETTLE`] has
//! passed for the flushes that still write its last rows), the segments of its directory
//! are merged into one, `<first>-<last>.parquet`. A day of a table is then 24 objects
//! instead of 1,440: a scan opens (and, from an object store, GETs the footer of) each
//! file it reads, and every file is an entry in the manifest written at every flush.
//!
//! Each part stays one row group (more if it had more), in flush order, so a merged file's
//! row-group statistics still prune a query's time range by the minute, as the parts'
//! file bounds did. Parts written under an older schema are read into the current one
//! (a column added since is null, as a query reads it), so the merged file has one schema.
//!
//! **Requests and their rollups.** A reader takes a requests segment as covered by the
//! rollups when the rollup files cover its first flush (analyzer `source.rs`, `Covered`),
//! and reads every other segment's rows to build the missing rollups. So a merged requests
//! segment holds only flushes that one rollup file covers, or only flushes that none
//! covers: a rollup file lost later (dropped as unreadable) uncovers all of it, never part
//! of it, and rollup files never appear for a flush that had none. Rollup files merge into
//! larger ones (`compact.rs`), which keeps the parts in one file; until a flush's rollup is
//! merged, its requests segment waits.
//!
//! The swap is one manifest change, as for rollups: the merged file in, its parts out.
//! With an object store, the merged file is uploaded before the swap, so the object
//! store's next manifest lists it in the same write that drops the parts: a query node
//! never sees neither. Local parts are deleted after the read grace, uploaded ones by the
//! uploader after the remote read grace. A crash before the swap leaves an unlisted
//! merged file, removed at the next open (and in the object store by the first sweep).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::compact::flush_range;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentFile};
use crate::schema::{self, REQUESTS, TABLES};
use crate::segments::{HOUR_NS, writer_properties};
use crate::store::Store;
use crate::wal::sync_dir;

/// How long after its hour is over a directory waits before it is merged, on top of two
/// flush intervals: a request that started at 10:59 is written when its trace is complete,
/// minutes later for a long generation. Rows that come later still (a late export) are
/// written as single segments again and merged with each other at the next round.
pub(crate) const SETTLE: Duration = Duration::from_secs(600);

/// A merged segment stays at most this big, fewer parts if need be: its merge runs on the
/// uploader's thread (the compactor's without an object store), one part in memory at a time.
const MAX_MERGED_BYTES: u64 = 128 << 20;

/// How long compaction waits after a step that merged something and took `took`, before
/// the next: as long again, so that merges use at most about half a core while a backlog
/// drains (an upgrade finds a week of hours to merge, 3-4 s each at 1,000 requests/s).
pub(crate) fn pause_after(took: Duration) -> Duration {
    took.min(Duration::from_secs(30))
}

/// A run of segments to merge: its table and parts, oldest flush first.
#[derive(Debug, PartialEq)]
pub(crate) struct Run {
    pub table: &'static str,
    pub parts: Vec<SegmentFile>,
}

/// The oldest run of single-flush segments due: at least two in one hour directory whose
/// hour ended at or before `closed_before`, not in `skip` (parts that would not read), at
/// most [`MAX_MERGED_BYTES`], of one rollup coverage for `requests` when there are rollups
/// (`derived`, see the module's comment). Files already in the object store are left out
/// when `uploaded_ok` is false (no object store configured to delete them from).
pub(crate) fn plan(
    m: &Manifest,
    derived: Option<&str>,
    closed_before: i64,
    skip: &HashSet<String>,
    uploaded_ok: bool,
) -> Option<Run> {
    let mut covering: Vec<(u64, u64)> = match derived {
        Some(t) => m.files.iter().filter(|f| f.table == t).filter_map(|f| flush_range(&f.path)).collect(),
        None => Vec::new(),
    };
    covering.sort_unstable();
    // The rollup file covering flush `id`, by its index; `None`: none does.
    let cover = |id: u64| {
        let after = covering.partition_point(|(a, _)| *a <= id);
        (after > 0 && covering[after - 1].1 >= id).then(|| after - 1)
    };
    for table in TABLES {
        let mut dirs: BTreeMap<&str, Vec<(u64, &SegmentFile)>> = BTreeMap::new();
        for f in m.files.iter().filter(|f| f.table == table) {
            let Some((a, b)) = flush_range(&f.path) else { continue };
            let hour_end = (f.max_time.div_euclid(HOUR_NS) + 1).saturating_mul(HOUR_NS);
            if a != b || hour_end > closed_before {
                continue;
            }
            let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d);
            dirs.entry(dir).or_default().push((a, f));
        }
        for (_, mut files) in dirs {
            files.sort_unstable_by_key(|(id, _)| *id);
            // Stretches of parts that may share a file: one rollup coverage, and none left
            // out between (a part left out ends a stretch, so that merged files' flush
            // ranges never overlap another file's in the directory).
            let mut stretches: Vec<Vec<&SegmentFile>> = vec![Vec::new()];
            let mut key = None;
            for (id, f) in files {
                let left_out = skip.contains(&f.path) || (f.uploaded && !uploaded_ok);
                let k = (table == REQUESTS && derived.is_some()).then(|| cover(id));
                let last = stretches.last().map_or(0, Vec::len);
                if left_out || (last > 0 && k != key) {
                    stretches.push(Vec::new());
                }
                if !left_out {
                    key = k;
                    stretches.last_mut().expect("one stretch at least").push(f);
                }
            }
            if let Some(parts) = stretches.iter().find_map(|s| first_run(s)) {
                return Some(Run { table, parts });
            }
        }
    }
    None
}

/// The first run of at least two parts of `stretch` within [`MAX_MERGED_BYTES`]: all of
/// it when it fits, else the first of even pieces (an hour of 142 MB is two of 71 MB, not
/// one of 128 and one of 14).
fn first_run(stretch: &[&SegmentFile]) -> Option<Vec<SegmentFile>> {
    let total: u64 = stretch.iter().map(|f| f.bytes).sum();
    let target = total.div_ceil(total.div_ceil(MAX_MERGED_BYTES).max(1));
    let mut start = 0;
    while start < stretch.len() {
        let (mut end, mut bytes) = (start + 1, stretch[start].bytes);
        while end < stretch.len() && bytes < target && bytes + stretch[end].bytes <= MAX_MERGED_BYTES {
            bytes += stretch[end].bytes;
            end += 1;
        }
        if end - start >= 2 {
            return Some(stretch[start..end].iter().map(|f| (*f).clone()).collect());
        }
        start = end;
    }
    None
}

/// `batch` in `schema`: columns by name, cast where the type changed, null where the part
/// predates the column.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?);
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        columns.push(match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => c.clone(),
            Some(c) => arrow::compute::cast(c, field.data_type())?,
            None => new_null_array(field.data_type(), batch.num_rows()),
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// What a merge wrote: the rows it read and the file's size.
struct Written {
    rows: u64,
    bytes: u64,
}

/// Why a merge stopped: a part that does not read (it is left out of later runs), or an
/// error of the merge itself (the run is tried again later).
enum Failed {
    Part(String, Error),
    Merge(Error),
}

/// A merged segment being written: to a temporary name in its directory, one part after
/// another, each part its own row groups; `fsync`ed and renamed when finished. Dropped
/// unfinished, it removes the temporary file.
struct MergeWriter {
    writer: ArrowWriter<std::fs::File>,
    schema: SchemaRef,
    tmp: Temporary,
    path: PathBuf,
    rows: u64,
}

/// A temporary file, removed when dropped unless kept.
struct Temporary(Option<PathBuf>);

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl MergeWriter {
    fn create(dir: &Path, name: &str, schema: SchemaRef) -> Result<MergeWriter> {
        std::fs::create_dir_all(dir).map_err(Error::io("create segment dir", dir))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(Error::io("create segment", &tmp))?;
        let tmp = Temporary(Some(tmp));
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(writer_properties()))?;
        Ok(MergeWriter { writer, schema, tmp, path: dir.join(name), rows: 0 })
    }

    /// Appends the rows of one part (its whole Parquet file).
    fn append(&mut self, path: &str, bytes: bytes::Bytes) -> std::result::Result<(), Failed> {
        let part = |e: Error| Failed::Part(path.to_string(), e);
        let merge = |e: Error| Failed::Merge(e);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| part(e.into()))?;
        for batch in reader {
            let batch = batch.map_err(|e| part(e.into()))?;
            let batch = conform(&batch, &self.schema).map_err(part)?;
            self.rows += batch.num_rows() as u64;
            self.writer.write(&batch).map_err(|e| merge(e.into()))?;
        }
        // The part's rows close their own row group: its time statistics stay its own.
        self.writer.flush().map_err(|e| merge(e.into()))
    }

    fn finish(self) -> Result<Written> {
        let MergeWriter { writer, mut tmp, path, rows, .. } = self;
        let tmp_path = tmp.0.clone().unwrap_or_default();
        let file = writer.into_inner()?;
        file.sync_all().map_err(Error::io("fsync segment", &tmp_path))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&tmp_path, &path).map_err(Error::io("rename segment", &path))?;
        tmp.0 = None;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Written { rows, bytes })
    }
}

/// Runs `f` on the blocking pool (decoding and encoding Parquet is seconds of CPU).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Io {
        op: "merge segments",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })
}

impl Store {
    /// Merges one run of segments due at `now` (ns since the epoch; see the module's
    /// comment); returns how many files left the manifest (0: none due, or the run did not
    /// complete and is tried again later).
    pub async fn compact_segments(&self, now: i64) -> Result<usize> {
        let cfg = self.config();
        let settle = SETTLE + cfg.flush_interval * 2;
        let closed_before = now.saturating_sub(i64::try_from(settle.as_nanos()).unwrap_or(i64::MAX));
        let derived = cfg.derive.as_ref().map(|d| d.table());
        let skip = self.unmergeable();
        let uploaded_ok = cfg.remote.is_some();
        let Some(Run { table, parts }) = self.with_manifest(|m| plan(m, derived, closed_before, &skip, uploaded_ok))
        else {
            return Ok(0);
        };
        let Some(schema) = schema::of(table) else { return Ok(0) };
        let first = parts.first().and_then(|f| flush_range(&f.path)).map_or(0, |r| r.0);
        let last = parts.last().and_then(|f| flush_range(&f.path)).map_or(0, |r| r.1);
        let rel_dir = parts[0].path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        let name = format!("{first:012}-{last:012}.parquet");
        let rel = if rel_dir.is_empty() { name.clone() } else { format!("{rel_dir}/{name}") };
        let dir = cfg.data_dir.join(&rel_dir);

        let (dir_w, name_w) = (dir.clone(), name.clone());
        let mut merge = blocking(move || MergeWriter::create(&dir_w, &name_w, schema)).await??;
        // One part in memory at a time: read (past the object store's cache: parts are
        // read once, and would push out the rollups the collector's pages read again and
        // again), then appended on the blocking pool.
        for f in &parts {
            let read = match (&cfg.remote, f.uploaded) {
                (Some(remote), true) => remote.get_opt(&f.path).await?,
                _ => crate::query::read_local_opt(&cfg.data_dir, &f.path).await?,
            };
            let Some(bytes) = read else {
                tracing::warn!(path = %f.path, "a listed segment is missing; it is left out of merges (a query over its hour names it)");
                self.mark_unmergeable(&f.path);
                return Ok(0);
            };
            let path = f.path.clone();
            let (back, appended) = blocking(move || {
                let r = merge.append(&path, bytes);
                (merge, r)
            })
            .await?;
            merge = back;
            match appended {
                Ok(()) => {}
                Err(Failed::Part(path, e)) => {
                    tracing::warn!(path = %path, error = %e, "a segment that does not read is left out of merges; it stays as it is");
                    self.mark_unmergeable(&path);
                    return Ok(0);
                }
                Err(Failed::Merge(e)) => return Err(e),
            }
        }
        let written = blocking(move || merge.finish()).await??;
        let expected: u64 = parts.iter().map(|f| f.rows).sum();
        if written.rows != expected {
            // The manifest's count is what `slo status` shows; the file is the truth.
            tracing::warn!(
                table,
                first,
                last,
                manifest = expected,
                read = written.rows,
                "merged segment rows differ from the manifest's count"
            );
        }
        // Up first when there is an object store, so that the object store's manifest
        // swaps the parts for it in one write.
        let uploaded = match &cfg.remote {
            Some(remote) => {
                if let Err(e) = remote.put_file(&rel, &dir.join(&name)).await {
                    let _ = std::fs::remove_file(dir.join(&name));
                    return Err(e);
                }
                true
            }
            None => false,
        };
        let file = SegmentFile {
            table: table.to_string(),
            path: rel.clone(),
            rows: written.rows,
            bytes: written.bytes,
            min_time: parts.iter().map(|f| f.min_time).min().unwrap_or(0),
            max_time: parts.iter().map(|f| f.max_time).max().unwrap_or(0),
            uploaded,
        };
        if !self.swap_files(&parts, Some(file))? {
            // Retention took a part meanwhile; an uploaded copy is swept at the next start.
            let _ = std::fs::remove_file(dir.join(&name));
            if let Some(remote) = &cfg.remote {
                let _ = remote.delete(&rel).await;
            }
            return Ok(0);
        }
        if uploaded {
            self.defer_local_deletes([dir.join(&name)]);
        }
        self.metrics().compacted_segments.inc_by(parts.len() as u64);
        self.metrics().segments.set(self.with_manifest(|m| m.files.len()) as i64);
        tracing::debug!(table, first, last, parts = parts.len(), bytes = written.bytes, "merged segments");
        Ok(parts.len())
    }

    /// One compaction step at `now`: a run of rollup files if one is due, else a run of
    /// segments. Returns how many files left the manifest (0: nothing was due).
    pub async fn compact(&self, now: i64) -> Result<usize> {
        match self.compact_derived().await? {
            0 => self.compact_segments(now).await,
            n => Ok(n),
        }
    }

    /// [`Store::compact`] until nothing is due.
    pub async fn compact_all(&self, now: i64) -> Result<usize> {
        let mut total = 0;
        loop {
            match self.compact(now).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }
}

#[cfg(test)]
#[path = "compact_segments/tests.rs"]
mod tests;
