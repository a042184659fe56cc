//! The flush, owned by the store from start to end.
//!
//! [`Flusher::flush`] runs on the thread that owns a WAL shard, between two group commits:
//! it rotates that WAL and freezes the shard's rows in memory as its part of a
//! [`FlushJob`]; the part that completes the job (every shard's given) queues it. The
//! flusher thread writes the job (Parquet segments per table and hour, the derived
//! rollups, the in-flight state, the manifest; then deletes the WAL segments no trace in
//! flight needs), retrying while the disk refuses, and applies retention. The caller
//! decides only *when* to flush and says which traces are still being assembled (their
//! encoded state and the first WAL segment holding their spans): what only its trace
//! assembly knows.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::store::{FlushJob, Store, now_ns};
use crate::wal::Wal;

/// Told when a flush is on disk (or why it is not).
pub type FlushDone = oneshot::Sender<std::result::Result<(), String>>;

/// Why [`Flusher::flush`] did not queue a flush.
#[derive(Debug)]
pub enum FlushError {
    /// The WAL could not be rotated (no file descriptor, a full disk): nothing was frozen;
    /// the rows stay in memory and in the WAL.
    Rotate(Error),
    /// The flusher thread has ended.
    Gone,
}

struct Request {
    job: FlushJob,
    done: Vec<FlushDone>,
}

/// The sending side, held by each thread that owns a WAL shard.
#[derive(Debug, Clone)]
pub struct Flusher {
    store: Store,
    tx: Option<SyncSender<Request>>,
}

/// The flusher thread, and the compactor's when there is no object store; join them
/// after [`Flusher::close`].
#[derive(Debug)]
pub struct FlusherThread {
    flusher: JoinHandle<()>,
    compactor: Option<JoinHandle<()>>,
}

impl FlusherThread {
    /// Waits until every queued flush is written (or given up), and the merge under way,
    /// if one is, is done.
    pub fn join(self) {
        let _ = self.flusher.join();
        if let Some(c) = self.compactor {
            let _ = c.join();
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("rows", &self.job.rows()).finish()
    }
}

impl Flusher {
    /// Starts the flusher thread. A failed write is retried with back-off, the rows
    /// staying in memory and in the WAL meanwhile; once `stopping()` says the process is
    /// shutting down, a flush is given up after five attempts.
    pub fn start(store: Store, stopping: Arc<dyn Fn() -> bool + Send + Sync>) -> Result<(Flusher, FlusherThread)> {
        // Two jobs queued at most: the memory budget counts frozen rows until written.
        let (tx, rx) = mpsc::sync_channel::<Request>(2);
        let spawn_error =
            |what: &'static str| move |e| Error::Io { op: what, path: std::path::PathBuf::new(), source: e };
        // Without an object store, rollup files and segments are merged on a thread of
        // their own, after each flush (a segment merge takes seconds: the flusher does not
        // wait for it). With one, the uploader merges them.
        let (ticks, compactor) = if store.config().remote.is_none() {
            let (tick, ticks) = mpsc::sync_channel::<()>(1);
            let (s, stop) = (store.clone(), stopping.clone());
            let thread = std::thread::Builder::new()
                .name("slo-compactor".into())
                .spawn(move || compact_after_flushes(s, ticks, stop, IDLE_LOOK))
                .map_err(spawn_error("spawn the compactor thread"))?;
            (Some(tick), Some(thread))
        } else {
            (None, None)
        };
        let thread_store = store.clone();
        let flusher = std::thread::Builder::new()
            .name("slo-flusher".into())
            .spawn(move || run(thread_store, rx, ticks, stopping))
            .map_err(spawn_error("spawn the flusher thread"))?;
        Ok((Flusher { store, tx: Some(tx) }, FlusherThread { flusher, compactor }))
    }

    /// Rotates `wal` (shard `shard`'s), freezes that shard's rows in memory as its part of
    /// the flush being gathered (asking for one if none is) and, when that completes it,
    /// queues the flush. `keep_from` is the first WAL segment a trace still being assembled
    /// has spans in (None: none), and `state` those traces' encoded state, kept with the
    /// flush for the next start. `done` are told when the flush is on disk.
    pub fn flush(
        &self,
        shard: usize,
        wal: &mut Wal,
        keep_from: Option<u64>,
        state: Vec<u8>,
        done: Vec<FlushDone>,
    ) -> std::result::Result<(), FlushError> {
        let tx = self.tx.as_ref().ok_or(FlushError::Gone)?;
        let through = wal.rotate().map_err(FlushError::Rotate)?;
        let keep_from = keep_from.unwrap_or(through + 1);
        match self.store.freeze_part(shard, through, keep_from, state, done) {
            Some((job, done)) => tx.send(Request { job, done }).map_err(|_| FlushError::Gone),
            None => Ok(()),
        }
    }

    /// Queues nothing more from this handle: the thread ends once every handle is closed
    /// (or dropped) and the queued flushes are written.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

impl Store {
    /// The whole flush at once, on this thread, with no trace in flight: for tools and
    /// tests that write a data directory of one WAL shard without a pipeline.
    pub fn flush_now(&self, wal: &mut Wal) -> Result<()> {
        let through = wal.rotate()?;
        match self.freeze(through) {
            Some(job) => self.write_flush(&job),
            None => Err(Error::Corrupt {
                what: "flush",
                path: wal.dir().to_path_buf(),
                detail: "a flush of one WAL shard asked of a store with several".into(),
            }),
        }
    }

    /// Shard 0's rows for a flush that reflects its WAL segments `<= through`: the job,
    /// when the store has that one shard only.
    pub(crate) fn freeze(&self, through: u64) -> Option<FlushJob> {
        self.freeze_part(0, through, through + 1, Vec::new(), Vec::new()).map(|(job, _)| job)
    }
}

fn run(
    store: Store,
    rx: Receiver<Request>,
    compactor: Option<SyncSender<()>>,
    stopping: Arc<dyn Fn() -> bool + Send + Sync>,
) {
    while let Ok(req) = rx.recv() {
        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            match store.write_flush(&req.job) {
                Ok(()) => break Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, attempt, rows = req.job.rows(), "flush failed; rows stay in memory and in the WAL");
                    if attempt >= 5 && stopping() {
                        break Err(e.to_string());
                    }
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
                }
            }
        };
        let now = now_ns();
        if let Err(e) = store.apply_retention(now) {
            tracing::warn!(error = %e, "retention failed");
        }
        for d in req.done {
            let _ = d.send(result.clone());
        }
        if let Some(tick) = &compactor
            && !stopping()
        {
            // Never waits: a tick already queued asks for the same look at the manifest.
            let _ = tick.try_send(());
        }
        // Files that left the manifest (retention, merged parts, uploaded copies) once no
        // query can still be reading them; all of them at the last flush of a shutdown, so
        // that the next start does not find them unlisted and call them a crash's.
        store.delete_local_copies(if stopping() { Duration::ZERO } else { store.config().read_grace });
    }
}

/// How often the compactor looks for work without a flush.
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// The compactor thread without an object store: after each flush and every `idle_look`
/// ([`IDLE_LOOK`]), what compaction has due ([`Store::compact`] until nothing is), until the
/// flusher ends; then the parts it merged away go at once, as the flusher's last flush
/// does with its own.
pub(crate) fn compact_after_flushes(
    store: Store,
    ticks: Receiver<()>,
    stopping: Arc<dyn Fn() -> bool + Send + Sync>,
    idle_look: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "rollup files and segments will not be merged");
            return;
        }
    };
    // After each flush, and every minute without one (an idle collector still merges the
    // hours that have settled since its last flush), until the flusher has ended.
    while let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) = ticks.recv_timeout(idle_look) {
        merge_paced(|| rt.block_on(store.compact(now_ns())), &ticks, &*stopping);
        // Parts merged away, once no query can still be reading them (the flusher does
        // this after its flushes too; an idle collector has none).
        store.delete_local_copies(store.config().read_grace);
    }
    store.delete_local_copies(if stopping() { Duration::ZERO } else { store.config().read_grace });
}

/// Compaction's steps (`step`: [`Store::compact`], the number of runs merged) until one
/// merges nothing, fails, or the process stops; after a step that merged something, a
/// pause as long as it took ([`crate::compact_segments::pause_after`]), so that a backlog
/// drains on about half a core. A flush ticking during the pause does not shorten it (the
/// next step reads the manifest anyway). The flusher ending does, and the steps left run
/// without pauses: at a shutdown `stopping` ends them, and otherwise what is due is
/// finished before the thread ends (the caller's next wait on `ticks` then ends it).
pub(crate) fn merge_paced(mut step: impl FnMut() -> Result<usize>, ticks: &Receiver<()>, stopping: &dyn Fn() -> bool) {
    let mut flusher_ended = false;
    while !stopping() {
        let started = std::time::Instant::now();
        match step() {
            Ok(0) => break,
            Ok(_) => {
                let until = std::time::Instant::now() + crate::compact_segments::pause_after(started.elapsed());
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()).filter(|l| !l.is_zero())
                    && !flusher_ended
                {
                    flusher_ended = matches!(ticks.recv_timeout(left), Err(mpsc::RecvTimeoutError::Disconnected));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not merge rollup files or segments; they stay as they are");
                break;
            }
        }
    }
}
