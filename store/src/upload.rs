//! The uploader: segments and rollups from the local disk to the object store.
//!
//! One round (`Store::upload_round`), on the uploader's own thread so that an object store
//! that is down never holds up a flush (the local disk keeps the segments meanwhile, the
//! WAL having been deleted only once they were written and `fsync`ed there):
//! 1. copy every file the local manifest lists and has not uploaded;
//! 2. write the object store's manifest (`<prefix>/manifest.json`): every uploaded file,
//!    without those retention expired;
//! 3. record both in the local manifest (saved atomically);
//! 4. delete the local copies after `StoreConfig::read_grace`, and the expired files in
//!    the object store after `StoreConfig::remote_read_grace` (a query node that read the
//!    manifest before still reads them: a query fails on a listed file that is missing,
//!    it does not skip it).
//!
//! A crash anywhere leaves a state the next round repairs: a file uploaded but not
//! recorded is uploaded again (the same bytes); a local copy of a recorded file is removed
//! when the store opens; an object no manifest lists (uploaded, then a crash) is deleted by
//! the first round after a start. Readers only ever follow the object store's manifest.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::manifest::Dropped;
use crate::remote::{MANIFEST, RemoteManifest};
use crate::store::{Store, now_ns};

/// How often the uploader looks for rollup files to merge when the last look merged none.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// Files one round uploads at most before it records them.
const MAX_FILES_PER_ROUND: usize = 256;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UploadRound {
    /// Files copied to the object store.
    pub uploaded: usize,
    /// Files deleted there: dropped from its manifest at least the remote read grace ago.
    pub deleted: usize,
}

impl Store {
    /// Files the local manifest lists that are not in the object store yet.
    pub fn pending_uploads(&self) -> usize {
        self.with_manifest(|m| m.files.iter().filter(|f| !f.uploaded).count() + m.remote_expired.len())
    }

    /// One upload round (see the module's comment). Nothing to do without an object store.
    pub async fn upload_round(&self) -> Result<UploadRound> {
        self.upload_round_at(now_ns()).await
    }

    /// [`Store::upload_round`] as if the clock said `now` (ns since the epoch): the time
    /// recorded for the files the object store's manifest drops, against which the remote
    /// read grace of those dropped earlier is judged.
    pub(crate) async fn upload_round_at(&self, now: i64) -> Result<UploadRound> {
        let Some(remote) = self.config().remote.clone() else { return Ok(UploadRound::default()) };
        let m = self.manifest();
        let pending: Vec<_> = m.files.iter().filter(|f| !f.uploaded).cloned().collect();
        let grace = i64::try_from(self.config().remote_read_grace.as_nanos()).unwrap_or(i64::MAX);
        let due: Vec<String> = m
            .remote_dropped
            .iter()
            .filter(|d| d.at_unix_nano.saturating_add(grace) <= now)
            .map(|d| d.path.clone())
            .collect();
        let mut round = UploadRound::default();
        let mut failed = None;
        if !pending.is_empty() || !m.remote_expired.is_empty() {
            (round.uploaded, failed) = self.upload_and_list(&remote, &pending, m.remote_expired, now).await?;
        }
        let mut gone = HashSet::new();
        for p in due {
            match remote.delete(&p).await {
                Ok(()) => {
                    gone.insert(p);
                }
                // Still listed as dropped: the next round tries again.
                Err(e) => tracing::warn!(error = %e, "could not delete a dropped file in the object store"),
            }
        }
        if !gone.is_empty() {
            self.update_manifest(|m| m.remote_dropped.retain(|d| !gone.contains(&d.path)))?;
        }
        round.deleted = gone.len();
        self.metrics().uploaded_files.inc_by(round.uploaded as u64);
        match failed {
            Some(e) => Err(e),
            None => Ok(round),
        }
    }

    /// Steps 1 to 3 of a round: copies `pending` up (a part of a backlog at a time), writes
    /// the object store's manifest without `expired`, and records both locally, `expired`
    /// as dropped at `now`. Returns the files copied, and the error that stopped the copies
    /// after some went up (those are recorded first).
    async fn upload_and_list(
        &self,
        remote: &crate::remote::Remote,
        pending: &[crate::manifest::SegmentFile],
        expired: Vec<String>,
        now: i64,
    ) -> Result<(usize, Option<Error>)> {
        let instance = self.claim(remote).await?;
        let dir = self.config().data_dir.clone();
        let mut done = HashSet::new();
        let mut failed = None;
        for f in pending.iter().take(MAX_FILES_PER_ROUND) {
            let local = dir.join(&f.path);
            match remote.put_file(&f.path, &local).await {
                Ok(()) => {
                    done.insert(f.path.clone());
                }
                // Retention took it meanwhile: nothing to upload.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if done.is_empty()
            && let Some(e) = failed
        {
            return Err(e);
        }
        let listed: Vec<_> =
            self.manifest().files.into_iter().filter(|f| f.uploaded || done.contains(&f.path)).collect();
        let manifest = RemoteManifest {
            version: 1,
            collector: self.config().collector.clone(),
            instance,
            written_unix_nano: now,
            files: listed.into_iter().map(|f| crate::manifest::SegmentFile { uploaded: true, ..f }).collect(),
            read_grace_s: self.config().remote_read_grace.as_secs(),
        };
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Remote {
            op: "write manifest",
            what: remote.url(),
            detail: e.to_string(),
        })?;
        remote.put(MANIFEST, Bytes::from(bytes)).await?;
        self.update_manifest(|m| {
            for f in m.files.iter_mut().filter(|f| done.contains(&f.path)) {
                f.uploaded = true;
            }
            m.remote_expired.retain(|p| !expired.contains(p));
            m.remote_dropped.extend(expired.into_iter().map(|path| Dropped { path, at_unix_nano: now }));
            m.object_store = Some(remote.options());
        })?;
        self.defer_local_deletes(done.iter().map(|p| dir.join(p)));
        Ok((done.len(), failed))
    }

    /// This data directory's identity, once it is sure the prefix is its own: the prefix
    /// has no manifest yet (and is neither inside another collector's nor holds one:
    /// [`not_nested`]), or one this directory wrote. Another directory's is refused: two
    /// collectors under one `store.collector` would each drop the other's files from the
    /// manifest and sweep them.
    async fn claim(&self, remote: &crate::remote::Remote) -> Result<String> {
        let mut instance = self.with_manifest(|m| m.instance.clone());
        if instance.is_empty() {
            instance = format!("{:016x}-{:x}", now_ns(), std::process::id());
            let made = instance.clone();
            self.update_manifest(|m| m.instance = made)?;
        }
        let Some(bytes) = remote.get_opt(MANIFEST).await? else {
            // A new prefix: the place to check that it is not inside another's.
            not_nested(remote).await?;
            return Ok(instance);
        };
        let theirs = RemoteManifest::decode(&bytes, remote)?;
        if !theirs.instance.is_empty() && theirs.instance != instance {
            return Err(Error::Remote {
                op: "claim",
                what: remote.url(),
                detail: format!(
                    "this prefix is written by another data directory (collector {:?}, instance {}); this one \
                     is {instance}. Two collectors under one store.collector would delete each other's files: \
                     give this one another store.collector (the other's data stays readable)",
                    theirs.collector, theirs.instance
                ),
            });
        }
        Ok(instance)
    }

    /// Deletes objects in this collector's prefix that no manifest lists (a crash between
    /// an upload and its record, or before an expired file was deleted there). A place
    /// below it with a manifest of its own is another collector's (one whose URL was set
    /// inside this prefix): its objects are not this one's to sweep.
    pub async fn sweep_remote(&self) -> Result<usize> {
        let Some(remote) = self.config().remote.clone() else { return Ok(0) };
        self.claim(&remote).await?;
        // Files dropped from the object store's manifest, or about to be, are still read by
        // query nodes until their grace has passed: the rounds delete them, not the sweep.
        let known: HashSet<String> = self.with_manifest(|m| {
            let files = m.files.iter().map(|f| f.path.clone());
            let going = m.remote_expired.iter().cloned().chain(m.remote_dropped.iter().map(|d| d.path.clone()));
            files.chain(going).collect()
        });
        let listed = remote.list().await?;
        let nested: Vec<&str> = listed.iter().filter_map(|rel| rel.strip_suffix(MANIFEST)?.strip_suffix('/')).collect();
        let others = |rel: &str| nested.iter().any(|d| rel.strip_prefix(d).is_some_and(|r| r.starts_with('/')));
        let mut removed = 0;
        for rel in &listed {
            let ours = (rel.ends_with(".parquet") || rel.ends_with(".bin")) && !others(rel);
            if ours && !known.contains(rel) {
                remote.delete(rel).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Refuses a prefix that lies inside another collector's, or holds one: the outer one's
/// sweep would delete the inner one's objects not yet in its manifest, and a reader of the
/// collectors' root (which reads the manifests at and one level below it) would miss the
/// inner one. Checked when a prefix gets its first manifest; the outer one's sweep still
/// leaves alone a place below it with a manifest (one nested before this check).
async fn not_nested(remote: &crate::remote::Remote) -> Result<()> {
    let refuse = |detail: String| Error::Remote { op: "claim", what: remote.url(), detail };
    for above in remote.ancestors() {
        let bytes = match above.get_opt(MANIFEST).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            // A place this collector may not read (a parent directory of a `file://` store,
            // a prefix its credentials do not cover) is not one it writes into: not a reason
            // to stop uploading. (A store that is down fails the uploads themselves.)
            Err(e) => {
                tracing::debug!(above = %above.url(), error = %e, "could not read a manifest above this prefix");
                continue;
            }
        };
        // A collector's manifest names it (a data directory's own manifest.json, met on the
        // way up a `file://` path, does not).
        if let Ok(theirs) = RemoteManifest::decode(&bytes, &above)
            && !theirs.collector.is_empty()
        {
            return Err(refuse(format!(
                "this prefix lies inside collector {:?}'s ({}); give every collector the same \
                 store.object_store.url and its own store.collector, so each writes <url>/<collector>",
                theirs.collector,
                above.url()
            )));
        }
    }
    let below = remote.list().await?;
    if let Some(inner) = below.iter().find_map(|rel| rel.strip_suffix(MANIFEST)?.strip_suffix('/')) {
        return Err(refuse(format!(
            "another collector writes inside this prefix ({}/{inner}); give every collector the same \
             store.object_store.url and its own store.collector, so each writes <url>/<collector>",
            remote.url()
        )));
    }
    Ok(())
}

/// The uploader's thread; [`UploaderThread::stop`] ends it after a last round.
#[derive(Debug)]
pub struct UploaderThread {
    stop: Arc<tokio::sync::Notify>,
    thread: JoinHandle<()>,
}

impl UploaderThread {
    /// Starts uploading `store`'s segments, if it has an object store (else `None`). The
    /// local copy of an uploaded file stays [`crate::StoreConfig::read_grace`] after its
    /// upload is recorded: a query that listed it before still reads it there. Each round
    /// also merges rollup files that are due (`compact.rs`).
    pub fn start(store: &Store) -> Result<Option<UploaderThread>> {
        if store.config().remote.is_none() {
            return Ok(None);
        }
        let stop = Arc::new(tokio::sync::Notify::new());
        let (store, told) = (store.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("slo-uploader".into())
            .spawn(move || run(store, told))
            .map_err(|e| Error::Io { op: "spawn the uploader thread", path: std::path::PathBuf::new(), source: e })?;
        Ok(Some(UploaderThread { stop, thread }))
    }

    /// Makes one last round (bounded), then ends the thread. What is not uploaded stays on
    /// the local disk and goes up after the next start.
    pub fn stop(self) {
        self.stop.notify_one();
        let _ = self.thread.join();
    }
}

/// Copies each of the config's side files that changed since it last went up (by size and
/// modification time) to the same path below this collector's prefix. A file is read whole
/// and put as one object, so a reader gets one version or the other, never a mix.
async fn upload_side_files(store: &Store, sent: &mut HashMap<String, (u64, SystemTime)>) -> Result<usize> {
    let Some(remote) = store.config().remote.clone() else { return Ok(0) };
    let mut uploaded = 0;
    for rel in &store.config().side_files {
        let path = store.config().data_dir.join(rel);
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let stamp = (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if sent.get(rel) == Some(&stamp) {
            continue;
        }
        let bytes =
            tokio::fs::read(&path).await.map_err(|e| Error::Io { op: "read", path: path.clone(), source: e })?;
        remote.put(rel, Bytes::from(bytes)).await?;
        sent.insert(rel.clone(), stamp);
        uploaded += 1;
    }
    Ok(uploaded)
}

/// The wait after `failures` failed rounds in a row: 1 s, doubling, at most a minute.
pub(crate) fn back_off(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

fn run(store: Store, stop: Arc<tokio::sync::Notify>) {
    let grace = store.config().read_grace;
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "the uploader could not start; segments stay on the local disk");
            return;
        }
    };
    rt.block_on(async move {
        let mut swept = false;
        let mut compacted_at: Option<Instant> = None;
        let mut paused_until: Option<Instant> = None;
        let mut failures = 0u32;
        let mut failing_since: Option<Instant> = None;
        let mut sent = HashMap::new();
        loop {
            let wait = if failures == 0 { Duration::from_secs(1) } else { back_off(failures) };
            let stopping = tokio::select! {
                _ = stop.notified() => true,
                _ = tokio::time::sleep(wait) => false,
            };
            let round = async {
                if !swept {
                    let n = store.sweep_remote().await?;
                    if n > 0 {
                        tracing::warn!(removed = n, "removed objects no manifest lists (a crash left them)");
                    }
                    swept = true;
                }
                let round = store.upload_round().await?;
                upload_side_files(&store, &mut sent).await?;
                // Rollups merged now go up in the next round (merged segments before the
                // swap: `compact_segments.rs`), their parts deleted after. A failed merge
                // is tried again a minute later, not every round; after a merge, the next
                // waits as long as it took.
                if !stopping
                    && compacted_at.is_none_or(|t: Instant| t.elapsed() >= COMPACT_EVERY)
                    && paused_until.is_none_or(|t: Instant| Instant::now() >= t)
                {
                    let started = Instant::now();
                    match store.compact(now_ns()).await {
                        Ok(0) => compacted_at = Some(Instant::now()),
                        Ok(_) => {
                            paused_until =
                                Some(Instant::now() + crate::compact_segments::pause_after(started.elapsed()));
                        }
                        Err(e) => {
                            compacted_at = Some(Instant::now());
                            tracing::warn!(error = %e, "could not merge rollup files or segments; they stay as they are");
                        }
                    }
                }
                Ok(round)
            };
            let result = if stopping {
                tokio::time::timeout(Duration::from_secs(10), round).await.unwrap_or_else(|_| {
                    Err(Error::Remote { op: "upload", what: "the last round".into(), detail: "timed out".into() })
                })
            } else {
                round.await
            };
            store.metrics().upload_pending.set(store.pending_uploads() as i64);
            store.delete_local_copies(if stopping { Duration::ZERO } else { grace });
            match result {
                Ok(r) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(after_s = since.elapsed().as_secs(), uploaded = r.uploaded, "object store reachable again");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    failing_since.get_or_insert_with(Instant::now);
                    store.metrics().upload_errors.inc();
                    tracing::warn!(error = %e, failures, pending = store.pending_uploads(), retry_in_s = back_off(failures).as_secs(),
                        "upload failed; segments stay on the local disk");
                }
            }
            if stopping {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{Remote, RemoteOptions};
    use crate::rows::{RequestRow, requests_batch};
    use crate::{StoreConfig, StoreMetrics};

    const HOUR: u64 = 3_600_000_000_000;

    fn rows(t: u64, n: u64) -> arrow::record_batch::RecordBatch {
        let r = |i: u64| RequestRow {
            time_unix_nano: t + i,
            trace_id: format!("{:032x}", t + i),
            service: "vllm".into(),
            status: "ok",
            duration_ms: 10.0,
            split_source: "none",
            ..Default::default()
        };
        requests_batch(&(0..n).map(r).collect::<Vec<_>>()).unwrap()
    }

    fn count(batches: &[arrow::record_batch::RecordBatch]) -> i64 {
        use arrow::array::AsArray;
        batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0)
    }

    /// An object store in a temporary directory, and its root.
    fn bucket() -> (tempfile::TempDir, Remote) {
        let objects = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(objects.path()).unwrap().to_string();
        (objects, Remote::open(&RemoteOptions { url, ..Default::default() }).unwrap())
    }

    /// A store of `dir` writing `place`, with one flush of four requests of now.
    fn flushed(dir: &std::path::Path, place: Remote) -> Store {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut cfg = StoreConfig::new(dir);
        cfg.remote = Some(place);
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        store.append(None, Some(rows(now, 4)));
        store.flush_now(&mut wal).unwrap();
        store
    }

    /// Upload, read back through the bucket, retention there, and a crash's leftovers.
    #[tokio::test]
    async fn segments_go_up_are_read_there_and_expire_there() {
        let data = tempfile::tempdir().unwrap();
        let objects = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(objects.path()).unwrap().to_string();
        let root = Remote::open(&RemoteOptions { url, ..Default::default() }).unwrap();
        let mut cfg = StoreConfig::new(data.path());
        cfg.remote = Some(root.child("c1"));
        cfg.collector = "c1".into();
        cfg.retention = Some(Duration::from_secs(2 * 3600));
        let (store, mut wal, _) = Store::open(cfg.clone(), StoreMetrics::unregistered()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let (old, new) = (now - 3 * HOUR, now - 60_000_000_000);
        store.append(None, Some(rows(old, 3)));
        store.append(None, Some(rows(new, 5)));
        store.flush_now(&mut wal).unwrap();
        assert_eq!(store.pending_uploads(), 2, "two hourly segments");
        // Before the upload the rows are read locally; after it, from the object store,
        // and the local copies are gone.
        assert_eq!(count(&store.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 8);
        assert_eq!(store.upload_round().await.unwrap(), UploadRound { uploaded: 2, deleted: 0 });
        assert_eq!(store.pending_uploads(), 0);
        // The local copies stay for the queries that listed them, then go.
        assert!(store.manifest().files.iter().all(|f| data.path().join(&f.path).exists()));
        store.delete_local_copies(Duration::ZERO);
        assert!(store.manifest().files.iter().all(|f| f.uploaded && !data.path().join(&f.path).exists()));
        assert_eq!(count(&store.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 8);
        let (reader, views) = Store::open_bucket(root.clone()).await.unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!((views[0].prefix.as_str(), views[0].collector.as_str(), views[0].files), ("c1", "c1", 2));
        assert_eq!(count(&reader.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 8);

        // Retention: gone from the local manifest at once, from the bucket's manifest at the
        // next round, and from the bucket once a reader of the manifest before is done.
        let before = reader.snapshot();
        assert_eq!(store.apply_retention(now as i64).unwrap(), 1);
        assert_eq!(store.pending_uploads(), 1, "one expired file to drop there");
        let c1 = root.child("c1");
        let objects_now = || c1.list();
        assert_eq!(objects_now().await.unwrap().len(), 3, "two segments and the manifest");
        assert_eq!(store.upload_round().await.unwrap(), UploadRound { uploaded: 0, deleted: 0 });
        assert_eq!(store.pending_uploads(), 0);
        let (reader, _) = Store::open_bucket(root.clone()).await.unwrap();
        assert_eq!(count(&reader.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 5);
        assert_eq!(count(&before.sql("SELECT count(*) FROM requests").await.unwrap()), 8, "read in the grace");
        assert_eq!(store.sweep_remote().await.unwrap(), 0, "the sweep leaves a dropped file to its round");
        assert_eq!(store.upload_round().await.unwrap(), UploadRound::default(), "inside the grace");
        let later = now_ns() + cfg.remote_read_grace.as_nanos() as i64;
        assert_eq!(store.upload_round_at(later).await.unwrap(), UploadRound { uploaded: 0, deleted: 1 });
        assert_eq!(objects_now().await.unwrap().len(), 2);
        assert!(store.manifest().remote_dropped.is_empty());
        let err = before.sql("SELECT count(*) FROM requests").await.unwrap_err().to_string();
        assert!(err.contains("missing from the store"), "a file deleted under a reader is an error, not a gap: {err}");

        // An object no manifest lists (uploaded, then a crash before it was recorded) is
        // swept; a listed one stays.
        root.child("c1").put("requests/date=1970-01-01/hour=00/000000000099.parquet", Bytes::new()).await.unwrap();
        assert_eq!(store.sweep_remote().await.unwrap(), 1);
        assert_eq!(objects_now().await.unwrap().len(), 2);
        drop(store);
        let (store, _, _) = Store::open(cfg.clone(), StoreMetrics::unregistered()).unwrap();
        assert_eq!(count(&store.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 5, "after a restart");
        drop(store);
        // A read of the data directory alone (`slo query --data-dir`) finds the uploaded
        // files where the manifest says they went.
        let read = Store::open_read_only(data.path()).unwrap();
        assert_eq!(count(&read.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 5);
        // A renamed collector would read an empty prefix: refused, naming both places.
        let renamed = StoreConfig { remote: Some(root.child("c9")), ..cfg };
        let e = Store::open(renamed, StoreMetrics::unregistered()).unwrap_err().to_string();
        assert!(e.contains("/c1") && e.contains("/c9") && e.contains("config now says"), "{e}");
    }

    /// Two data directories under one collector name: the second is refused before it
    /// writes the manifest or sweeps, so the first's files stay listed and stored.
    #[tokio::test]
    async fn a_prefix_another_directory_writes_is_refused() {
        let (_objects, root) = bucket();
        let open = |dir: &std::path::Path| flushed(dir, root.child("same"));
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(a_dir.path());
        assert_eq!(a.upload_round().await.unwrap().uploaded, 1);
        let b = open(b_dir.path());
        let e = b.upload_round().await.unwrap_err().to_string();
        assert!(e.contains("another data directory") && e.contains("another store.collector"), "{e}");
        assert!(b.sweep_remote().await.is_err(), "no sweep of another directory's prefix");
        assert_eq!(b.pending_uploads(), 1, "its segment waits on its disk");
        let (reader, _) = Store::open_bucket(root.clone()).await.unwrap();
        assert_eq!(count(&reader.snapshot().sql("SELECT count(*) FROM requests").await.unwrap()), 4);
        // The first goes on (its identity is in its manifest across restarts).
        drop(a);
        let a = open(a_dir.path());
        assert_eq!(a.upload_round().await.unwrap().uploaded, 1);
    }

    /// [`flushed`] in a data directory of its own, kept as long as the store.
    fn flushed_anew(place: Remote) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = flushed(dir.path(), place);
        (dir, store)
    }

    /// A collector whose URL was set inside another's prefix would write a place nested in
    /// it: refused, whichever starts first, before it writes anything there.
    #[tokio::test]
    async fn a_collector_inside_another_ones_prefix_is_refused() {
        let (_objects, root) = bucket();
        let (_outer_dir, outer) = flushed_anew(root.child("team"));
        let (_inner_dir, inner) = flushed_anew(root.child("team").child("c2"));
        assert_eq!(outer.upload_round().await.unwrap().uploaded, 1);
        let e = inner.upload_round().await.unwrap_err().to_string();
        assert!(e.contains("lies inside collector") && e.contains("/team") && e.contains("store.collector"), "{e}");
        assert!(inner.sweep_remote().await.is_err());
        assert_eq!(inner.pending_uploads(), 1, "its segment waits on its disk");
        assert!(root.child("team").child("c2").list().await.unwrap().is_empty(), "nothing written there");

        // The other way round: the inner one first, then the outer one is refused.
        let (_objects, root) = bucket();
        let (_inner_dir, inner) = flushed_anew(root.child("team").child("c2"));
        let (_outer_dir, outer) = flushed_anew(root.child("team"));
        assert_eq!(inner.upload_round().await.unwrap().uploaded, 1);
        let e = outer.upload_round().await.unwrap_err().to_string();
        assert!(e.contains("another collector writes inside this prefix") && e.contains("/team/c2"), "{e}");
        assert_eq!(outer.pending_uploads(), 1);
        // Siblings under one root are what the layout is for.
        let (_sibling_dir, sibling) = flushed_anew(root.child("c3"));
        assert_eq!(sibling.upload_round().await.unwrap().uploaded, 1);
    }

    /// A place above that cannot be read (here a manifest that is a symbolic link to
    /// itself; on a real system, a parent directory this user may not read) does not stop
    /// uploads.
    #[tokio::test]
    async fn an_unreadable_place_above_does_not_stop_uploads() {
        let (objects, root) = bucket();
        let looped = objects.path().join("team").join(MANIFEST);
        std::fs::create_dir_all(looped.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        assert!(root.child("team").get_opt(MANIFEST).await.is_err(), "the place above does not read");
        let (_dir, store) = flushed_anew(root.child("team").child("c1"));
        assert_eq!(store.upload_round().await.unwrap().uploaded, 1);
    }

    /// A collector nested inside another's prefix before that was refused: the outer one's
    /// sweep leaves the inner one's files alone, and still sweeps its own.
    #[tokio::test]
    async fn a_sweep_leaves_a_nested_collectors_files_alone() {
        let (_objects, root) = bucket();
        let (_outer_dir, outer) = flushed_anew(root.child("team"));
        assert_eq!(outer.upload_round().await.unwrap().uploaded, 1);
        // As an older version would have: the inner one's manifest and file written there.
        let manifest = serde_json::json!({"version": 1, "collector": "c2", "instance": "x", "files": []});
        let c2 = root.child("team").child("c2");
        c2.put(MANIFEST, Bytes::from(manifest.to_string())).await.unwrap();
        c2.put("requests/date=1970-01-01/hour=00/000000000001.parquet", Bytes::new()).await.unwrap();
        let stray = "requests/date=1970-01-01/hour=00/000000000099.parquet";
        root.child("team").put(stray, Bytes::new()).await.unwrap();
        let before = c2.list().await.unwrap();
        assert_eq!(before.len(), 2, "{before:?}");
        assert_eq!(outer.sweep_remote().await.unwrap(), 1, "its own stray object only");
        assert_eq!(c2.list().await.unwrap(), before);
        assert!(!root.child("team").list().await.unwrap().iter().any(|p| p == stray));
    }

    #[test]
    fn back_off_doubles_to_a_minute() {
        let s: Vec<u64> = (1..=9).map(|f| back_off(f).as_secs()).collect();
        assert_eq!(s, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
