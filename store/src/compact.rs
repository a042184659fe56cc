//! Compaction of derived files (the analyzer's rollups), in two levels, as Tempo's and
//! Loki's compactors merge their blocks: the files of [`FAN_IN`] consecutive flushes merged
//! into one (an hour at the default flush interval), then [`FAN_IN_2`] consecutive such
//! files into one (a day). A day read from an object store is then 1 object instead of
//! 1,440 (one GET each: BENCHMARKS.md, "Segments in an object store"), and a 30-day SLO
//! window 30 instead of 43,200. Fewer parts where the merged file would pass 8 MiB, the
//! largest object readers cache.
//!
//! A merged file is named after the flushes it covers, `<first>-<last>.bin` (the second
//! level `<first>-<last>.2.bin`, [`flush_range`] reads both); a reader takes it for every
//! flush in that range. A run of files to
//! merge therefore never crosses a flush that wrote requests but has no derived file (its
//! derivation failed: readers rebuild it from its requests, and would not if a merged file
//! claimed it).
//!
//! The swap is one manifest change: the merged file in, its parts out. Parts already in
//! the object store are deleted there by the uploader once its manifest has dropped them
//! (as retention's are); local parts are deleted after [`crate::StoreConfig::read_grace`],
//! so that a query that listed them still reads them. A crash before the swap leaves an
//! unlisted merged file, after it unlisted parts: the next open removes both (and the first
//! upload round after a start sweeps unlisted objects).

use std::collections::{BTreeSet, HashSet};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, SegmentFile, write_atomic};
use crate::schema::REQUESTS;
use crate::store::Store;

/// Derived files of single flushes merged into one.
pub const FAN_IN: usize = 60;

/// Merged files merged again into one, at the second level.
pub(crate) const FAN_IN_2: usize = 24;

/// What a derived file's name says of it: 0, one flush; 1, merged from those; 2, merged
/// from merged files.
fn level(path: &str) -> Option<u8> {
    let (a, b) = flush_range(path)?;
    let name = path.rsplit('/').next()?;
    Some(if a == b {
        0
    } else if name.ends_with(".2.bin") {
        2
    } else {
        1
    })
}

/// A merged file stays at most this big, fewer parts if need be: readers keep objects up to
/// this size in memory (a fleet of many services' hour of rollups can be more).
const MAX_MERGED_BYTES: u64 = crate::remote::CACHE_OBJECT_MAX as u64;

/// The flushes a segment or derived file belongs to, from its name: `…/000000000042.bin`
/// or `…/000000000042.parquet` is flush 42 (`(42, 42)`), a merged `…/000000000042-000000000101.bin`
/// flushes 42 to 101.
pub fn flush_range(path: &str) -> Option<(u64, u64)> {
    let name = path.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    match stem.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => stem.parse().ok().map(|a| (a, a)),
    }
}

/// The oldest run of files of `table` that may be merged, if there is one, and the level of
/// the file they make: [`FAN_IN`] single-flush files, else [`FAN_IN_2`] files merged from
/// those; fewer (at least two) where one more would make the merged file larger than
/// [`MAX_MERGED_BYTES`].
fn plan(m: &Manifest, table: &str) -> Option<(Vec<SegmentFile>, u8)> {
    let with_requests: BTreeSet<u64> =
        m.files.iter().filter(|f| f.table == REQUESTS).filter_map(|f| flush_range(&f.path)).map(|(a, _)| a).collect();
    let run_of = |of: u8, fan_in: usize| plan_level(m, table, &with_requests, of, fan_in);
    run_of(0, FAN_IN).map(|run| (run, 1)).or_else(|| run_of(1, FAN_IN_2).map(|run| (run, 2)))
}

/// A run of `fan_in` consecutive files of level `of_level`. Consecutive: nothing between
/// two of them is a flush that wrote requests (one of `with_requests`): its derived file is
/// elsewhere, or missing because its derivation failed, and a merged file claiming its
/// flush would hide that.
fn plan_level(
    m: &Manifest,
    table: &str,
    with_requests: &BTreeSet<u64>,
    of_level: u8,
    fan_in: usize,
) -> Option<Vec<SegmentFile>> {
    let mut files: Vec<((u64, u64), &SegmentFile)> = m
        .files
        .iter()
        .filter(|f| f.table == table && level(&f.path) == Some(of_level))
        .filter_map(|f| Some((flush_range(&f.path)?, f)))
        .collect();
    files.sort_by_key(|(range, _)| *range);
    let mut run: Vec<&SegmentFile> = Vec::with_capacity(fan_in);
    let (mut prev, mut bytes): (Option<u64>, u64) = (None, 0);
    for ((first, last), f) in files {
        if let Some(p) = prev
            && (first <= p || with_requests.range(p + 1..first).next().is_some())
        {
            run.clear();
            bytes = 0;
        }
        if !run.is_empty() && bytes + f.bytes > MAX_MERGED_BYTES {
            if run.len() >= 2 {
                return Some(run.into_iter().cloned().collect());
            }
            run.clear();
            bytes = 0;
        }
        run.push(f);
        bytes += f.bytes;
        prev = Some(last);
        if run.len() == fan_in {
            return Some(run.into_iter().cloned().collect());
        }
    }
    None
}

impl Store {
    /// Merges one run of derived files (see the module's comment), reading uploaded parts
    /// from the object store; returns how many files left the manifest (0: none due; 1: a
    /// part that did not read was dropped instead). Runs on the uploader's thread when
    /// there is an object store, else on the compactor's (`flusher.rs`).
    pub async fn compact_derived(&self) -> Result<usize> {
        let Some(derive) = self.config().derive.clone() else { return Ok(0) };
        let table = derive.table();
        let Some((parts, made_level)) = self.with_manifest(|m| plan(m, table)) else { return Ok(0) };
        if self.config().remote.is_none() && parts.iter().any(|f| f.uploaded) {
            // Uploaded by an earlier configuration: nothing here could delete them there.
            return Ok(0);
        }
        let first = parts.first().and_then(|f| flush_range(&f.path)).map_or(0, |r| r.0);
        let last = parts.last().and_then(|f| flush_range(&f.path)).map_or(0, |r| r.1);
        let dir = self.config().data_dir.join(table);
        let snapshot = self.snapshot();
        let mut bytes = Vec::with_capacity(parts.len());
        for f in &parts {
            match snapshot.read_opt(f).await? {
                Some(b) => bytes.push(b),
                None => {
                    // Gone behind the manifest's back: as a part that does not read (below).
                    tracing::warn!(path = %f.path, "a listed rollup file is missing; it leaves the manifest and its requests stand in for it");
                    return Ok(usize::from(self.drop_files(std::slice::from_ref(f))?));
                }
            }
        }
        let merged = match derive.merge(&bytes.iter().map(|b| b.as_ref()).collect::<Vec<_>>()) {
            Ok(m) => m,
            Err(e) => {
                // A part that does not read is dropped: readers then rebuild its flush from
                // its requests (as they do for it now), and the next run does not cross it.
                let bad = parts.iter().zip(&bytes).find(|(_, b)| derive.merge(&[b.as_ref()]).is_err());
                let Some((bad, _)) = bad else {
                    return Err(Error::Corrupt { what: "derived files", path: dir.clone(), detail: e });
                };
                tracing::warn!(path = %bad.path, error = %e, "an unreadable rollup file leaves the manifest; its requests stand in for it");
                return Ok(usize::from(self.drop_files(std::slice::from_ref(bad))?));
            }
        };
        drop(bytes);
        let name = match made_level {
            1 => format!("{first:012}-{last:012}.bin"),
            _ => format!("{first:012}-{last:012}.2.bin"),
        };
        let (dir_w, name_w, merged_len) = (dir.clone(), name.clone(), merged.len());
        tokio::task::spawn_blocking(move || write_atomic(&dir_w, &name_w, &merged)).await.map_err(|e| {
            Error::Io { op: "write merged file", path: dir.join(&name), source: std::io::Error::other(e) }
        })??;
        let file = SegmentFile {
            table: table.to_string(),
            path: format!("{table}/{name}"),
            rows: parts.iter().map(|f| f.rows).sum(),
            bytes: merged_len as u64,
            min_time: parts.iter().map(|f| f.min_time).min().unwrap_or(0),
            max_time: parts.iter().map(|f| f.max_time).max().unwrap_or(0),
            uploaded: false,
        };
        if !self.swap_files(&parts, Some(file))? {
            let _ = std::fs::remove_file(dir.join(&name));
            return Ok(0);
        }
        self.metrics().compacted_files.inc_by(parts.len() as u64);
        self.metrics().segments.set(self.with_manifest(|m| m.files.len()) as i64);
        tracing::debug!(table, first, last, level = made_level, bytes = merged_len, "merged derived files");
        Ok(parts.len())
    }

    /// Takes `files` out of the manifest: those in the object store to be deleted there
    /// (by the uploader, after its manifest drops them), local ones after the read grace.
    fn drop_files(&self, files: &[SegmentFile]) -> Result<bool> {
        self.swap_files(files, None)
    }

    /// Replaces `parts` by `merged` (or removes them) in one manifest change, unless one of
    /// them has left it meanwhile (retention): whether it did.
    pub(crate) fn swap_files(&self, parts: &[SegmentFile], merged: Option<SegmentFile>) -> Result<bool> {
        let gone: HashSet<&str> = parts.iter().map(|f| f.path.as_str()).collect();
        let (mut local, mut swapped) = (Vec::new(), false);
        self.update_manifest(|m| {
            if m.files.iter().filter(|f| gone.contains(f.path.as_str())).count() != gone.len() {
                return;
            }
            swapped = true;
            for f in m.files.iter().filter(|f| gone.contains(f.path.as_str())) {
                if f.uploaded {
                    m.remote_expired.push(f.path.clone());
                } else {
                    local.push(f.path.clone());
                }
            }
            m.files.retain(|f| !gone.contains(f.path.as_str()));
            m.files.extend(merged);
        })?;
        let data_dir = self.config().data_dir.clone();
        self.defer_local_deletes(local.iter().map(|p| data_dir.join(p)));
        Ok(swapped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::rows::{RequestRow, requests_batch};
    use crate::{Derive, Flusher, StoreConfig, StoreMetrics};

    /// Derived bytes: the row count, little-endian; merged: the sum.
    #[derive(Debug)]
    struct Count;

    impl Derive for Count {
        fn table(&self) -> &'static str {
            "rollups"
        }

        fn derive(&self, requests: &[arrow::record_batch::RecordBatch]) -> std::result::Result<Vec<u8>, String> {
            Ok((requests.iter().map(|b| b.num_rows() as u64).sum::<u64>()).to_le_bytes().to_vec())
        }

        fn merge(&self, parts: &[&[u8]]) -> std::result::Result<Vec<u8>, String> {
            let mut n = 0u64;
            for p in parts {
                n += u64::from_le_bytes(<[u8; 8]>::try_from(*p).map_err(|_| "not a count".to_string())?);
            }
            Ok(n.to_le_bytes().to_vec())
        }
    }

    /// The compactor thread merges after the flushes when there is no object store; the
    /// parts go after the read grace.
    #[test]
    fn the_flusher_merges_without_an_object_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.retention = None;
        cfg.derive = Some(Arc::new(Count));
        cfg.read_grace = Duration::ZERO;
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        let (flusher, thread) = Flusher::start(store.clone(), Arc::new(|| false)).unwrap();
        for i in 0..61u64 {
            let row = RequestRow {
                time_unix_nano: 1_763_900_040_000_000_000 + i * 1_000_000_000,
                trace_id: format!("{i:032x}"),
                service: "s".into(),
                status: "ok",
                split_source: "none",
                ..Default::default()
            };
            store.append(None, Some(requests_batch(&[row.clone(), row]).unwrap()));
            let (done, wait) = tokio::sync::oneshot::channel();
            flusher.flush(0, &mut wal, None, Vec::new(), vec![done]).unwrap();
            wait.blocking_recv().unwrap().unwrap();
        }
        drop(flusher);
        thread.join();
        let mut rollups: Vec<_> = store.manifest().files.into_iter().filter(|f| f.table == "rollups").collect();
        rollups.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = rollups.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["rollups/000000000001-000000000060.bin", "rollups/000000000061.bin"]);
        assert_eq!(rollups[0].rows, 120);
        let merged = std::fs::read(dir.path().join(&rollups[0].path)).unwrap();
        assert_eq!(merged, 120u64.to_le_bytes());
        // Parts deleted after the next flush (grace zero here); none left unlisted.
        let on_disk = std::fs::read_dir(dir.path().join("rollups")).unwrap().count();
        assert_eq!(on_disk, 2);
        // The hour (in 2025) is over: its requests segments merged too, within the rollup
        // file that covers them (`compact_segments.rs`).
        let mut requests: Vec<String> = store
            .manifest()
            .files
            .into_iter()
            .filter(|f| f.table == REQUESTS)
            .map(|f| f.path.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        requests.sort();
        assert_eq!(requests, ["000000000001-000000000060.parquet", "000000000061.parquet"]);
    }

    fn file(table: &str, path: &str) -> SegmentFile {
        SegmentFile {
            table: table.into(),
            path: path.into(),
            rows: 1,
            bytes: 1,
            min_time: 0,
            max_time: 0,
            uploaded: false,
        }
    }

    #[test]
    fn ranges_from_names() {
        assert_eq!(flush_range("rollups/000000000042.bin"), Some((42, 42)));
        assert_eq!(flush_range("c1/rollups/000000000042-000000000101.bin"), Some((42, 101)));
        assert_eq!(flush_range("requests/date=2026-12-05/hour=17/000000000007.parquet"), Some((7, 7)));
        assert_eq!(flush_range("rollups/000000000101-000000000042.bin"), None);
        assert_eq!(flush_range("rollups/x.bin"), None);
    }

    #[test]
    fn a_run_never_crosses_a_flush_without_its_rollup() {
        let mut m = Manifest::default();
        for id in 1..=130u64 {
            m.files.push(file(REQUESTS, &format!("requests/date=d/hour=h/{id:012}.parquet")));
            // Flush 30's rollup is missing (its derivation failed).
            if id != 30 {
                m.files.push(file("rollups", &format!("rollups/{id:012}.bin")));
            }
        }
        let (run, made) = plan(&m, "rollups").unwrap();
        assert_eq!((run.len(), made), (FAN_IN, 1));
        assert_eq!(flush_range(&run[0].path), Some((31, 31)));
        assert_eq!(flush_range(&run[FAN_IN - 1].path), Some((90, 90)));
        // Flushes that wrote no requests (spans or samples only) do not break a run.
        let mut sparse = Manifest::default();
        for id in (2..=120u64).step_by(2) {
            sparse.files.push(file(REQUESTS, &format!("requests/{id:012}.parquet")));
            sparse.files.push(file("rollups", &format!("rollups/{id:012}.bin")));
        }
        assert_eq!(plan(&sparse, "rollups").map(|(r, _)| r.len()), Some(FAN_IN));
        // Fewer than FAN_IN: nothing is due; one merged file has nothing to merge with.
        sparse.files.retain(|f| f.path != "rollups/000000000120.bin");
        sparse.files.push(file("rollups", "rollups/000000000200-000000000259.bin"));
        assert_eq!(plan(&sparse, "rollups"), None);
    }

    #[test]
    fn a_merged_file_stays_small_enough_to_cache() {
        let mut m = Manifest::default();
        for id in 1..=10u64 {
            m.files.push(file(REQUESTS, &format!("requests/{id:012}.parquet")));
            // 3 MB each: two make a merged file, a third would pass the bound.
            m.files.push(SegmentFile { bytes: 3 << 20, ..file("rollups", &format!("rollups/{id:012}.bin")) });
        }
        let (run, _) = plan(&m, "rollups").unwrap();
        assert_eq!(run.iter().map(|f| flush_range(&f.path).unwrap().0).collect::<Vec<_>>(), [1, 2]);
        // One part alone over the bound is left as it is.
        let mut big = Manifest::default();
        big.files.push(SegmentFile { bytes: 9 << 20, ..file("rollups", "rollups/000000000001.bin") });
        big.files.push(SegmentFile { bytes: 1 << 20, ..file("rollups", "rollups/000000000002.bin") });
        big.files.push(SegmentFile { bytes: 9 << 20, ..file("rollups", "rollups/000000000003.bin") });
        assert_eq!(plan(&big, "rollups"), None);
    }

    /// A day of merged files (24 of 60 flushes each) is merged again into one `.2.bin`,
    /// never across a flush left single, and second-level files are not merged again.
    #[tokio::test]
    async fn the_second_level_merges_a_days_merged_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.retention = None;
        cfg.derive = Some(Arc::new(Count));
        cfg.read_grace = Duration::ZERO;
        let (store, _wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        let hours = (FAN_IN_2 + 3) as u64;
        std::fs::create_dir_all(dir.path().join("rollups")).unwrap();
        let mut merged = Vec::new();
        for h in 0..hours {
            let (a, b) = (h * 60 + 1, h * 60 + 60);
            let path = format!("rollups/{a:012}-{b:012}.bin");
            std::fs::write(dir.path().join(&path), (h + 1).to_le_bytes()).unwrap();
            merged.push(SegmentFile {
                rows: h + 1,
                bytes: 8,
                min_time: a as i64,
                max_time: b as i64,
                ..file("rollups", &path)
            });
        }
        store
            .update_manifest(|m| {
                for id in 1..=hours * 60 {
                    m.files.push(file(REQUESTS, &format!("requests/date=d/hour=h/{id:012}.parquet")));
                }
                m.files.extend(merged);
            })
            .unwrap();
        assert_eq!(store.compact_derived().await.unwrap(), FAN_IN_2);
        let mut rollups: Vec<SegmentFile> =
            store.manifest().files.into_iter().filter(|f| f.table == "rollups").collect();
        rollups.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(rollups.len(), 4);
        assert_eq!(rollups[0].path, "rollups/000000000001-000000001440.2.bin");
        assert_eq!((rollups[0].rows, rollups[0].min_time, rollups[0].max_time), (300, 1, 1440));
        let sum: u64 = (1..=FAN_IN_2 as u64).sum();
        assert_eq!(std::fs::read(dir.path().join(&rollups[0].path)).unwrap(), sum.to_le_bytes());
        assert_eq!(level(&rollups[0].path), Some(2));
        // Three hours left: not a day yet. A second-level file is not merged again.
        assert_eq!(store.compact_derived().await.unwrap(), 0);

        // 25 merged files, one flush between each two (61, 122, ...). Where that flush
        // wrote requests it breaks the run: its rollup is elsewhere (61: a single file) or
        // missing (the others), and a file claiming its flush would hide that.
        let mut m = Manifest::default();
        for h in 0..=FAN_IN_2 as u64 {
            let (a, b) = (h * 61 + 1, h * 61 + 60);
            for id in a..=b + 1 {
                m.files.push(file(REQUESTS, &format!("requests/{id:012}.parquet")));
            }
            m.files.push(file("rollups", &format!("rollups/{a:012}-{b:012}.bin")));
        }
        m.files.push(file("rollups", "rollups/000000000061.bin"));
        assert_eq!(plan(&m, "rollups"), None);
        // The flushes between wrote no requests except 61: the 24 files after it are a run.
        m.files.retain(|f| f.table != REQUESTS || flush_range(&f.path).is_some_and(|(a, _)| a <= 61 || a % 61 != 0));
        let (run, made) = plan(&m, "rollups").unwrap();
        assert_eq!((run.len(), made), (FAN_IN_2, 2));
        assert_eq!(flush_range(&run[0].path), Some((62, 121)));
    }
}
