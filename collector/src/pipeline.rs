//! The ingest pipeline: one thread that owns the WAL and the assembler, and one that
//! writes flushes.
//!
//! Receivers call [`Ingest::submit`], which reserves room in a byte budget (or sheds the
//! export), queues the batch and waits for the pipeline thread to write it to the WAL.
//! The pipeline thread takes whatever is queued as one group commit, acknowledges it, then
//! turns it into `spans` rows and feeds the assembler, whose finished traces become
//! `requests` rows. When a flush is due it rotates the WAL, notes which traces are in
//! flight and where their spans start in the WAL, and hands the rows to the flusher
//! thread; WAL segments are deleted only after the segments and the manifest that cover
//! them are on disk, and only once no trace in flight has spans in them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use prost::Message;
use slo_store::encoded::SpansBuilder;
use slo_store::{FlushJob, Recovery, SpanBatch, Store, Wal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::assemble::{Assembler, Emission, Emitted, HeldSpan, Holder, InFlight, TraceId, WalPos};
use crate::config::CollectorConfig;
use crate::convert::Converter;
use crate::error::{Error, Result};
use crate::metrics::{CollectorMetrics, ReasonLabel};
use crate::split::Splitter;
use crate::transcode::Transcoded;

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;
const FAILED: u8 = 3;

/// Whether the collector accepts data; `/readyz` reads it.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    /// Why the WAL cannot be written now (a full disk, no file descriptor left); cleared
    /// when a write or a probe succeeds again.
    wal_problem: parking_lot::Mutex<Option<String>>,
}

impl Health {
    /// Ready to accept data: running, and the WAL takes writes.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY && self.wal_problem.lock().is_none()
    }

    /// Why the service is not ready, in words (`None` when it is).
    pub fn not_ready_because(&self) -> Option<String> {
        if let Some(p) = self.wal_problem.lock().as_ref() {
            return Some(format!("the write-ahead log cannot be written: {p}"));
        }
        (self.state.load(Ordering::Acquire) != READY).then(|| self.describe().to_string())
    }

    fn set_wal_problem(&self, problem: Option<String>) {
        let mut held = self.wal_problem.lock();
        match (&*held, &problem) {
            (None, Some(p)) => tracing::error!(problem = %p, "write-ahead log not writable; not ready, ingest refused"),
            (Some(_), None) => tracing::info!("write-ahead log writable again; ready"),
            _ => {}
        }
        *held = problem;
    }

    /// `starting`, `ready`, `stopping` or `failed`.
    pub fn describe(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            STARTING => "starting (replaying the write-ahead log)",
            READY => "ready",
            STOPPING => "stopping",
            _ => "failed",
        }
    }

    fn set(&self, s: u8) {
        self.state.store(s, Ordering::Release);
    }
}

struct Submission {
    prepared: Prepared,
    /// What it holds ([`Prepared::bytes`]), measured once when it was queued.
    bytes: usize,
    _permit: OwnedSemaphorePermit,
    ack: oneshot::Sender<Result<(), String>>,
}

enum Msg {
    Batch(Submission),
    Shutdown,
}

/// The handle receivers submit through; clones share the queue.
#[derive(Clone)]
pub struct Ingest {
    tx: Sender<Msg>,
    budget: Arc<Semaphore>,
    budget_kib: usize,
    health: Arc<Health>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("budget_kib", &self.budget_kib).finish()
    }
}

/// A batch encoded for the WAL, turned into rows and held spans, ready to queue. Preparing
/// is CPU work done by the submitting thread, so that the single pipeline thread does not
/// have to; callers with large batches do it off the async workers.
#[derive(Debug)]
pub struct Prepared {
    /// The WAL record: an encoded `SpanBatch`.
    record: Bytes,
    /// Rows of `spans`, and of `samples`/`changes` when the batch has any.
    rows: Vec<(&'static str, RecordBatch)>,
    /// The spans for the assembler.
    held: Vec<(TraceId, HeldSpan)>,
}

impl Prepared {
    /// Bytes it holds: its record, its rows' Arrow buffers and its held spans.
    fn bytes(&self) -> usize {
        self.record.len()
            + self.rows.iter().map(|(_, b)| b.get_array_memory_size()).sum::<usize>()
            + self.held.iter().map(|(_, h)| h.footprint()).sum::<usize>()
    }
}

impl Prepared {
    /// Encodes a batch and builds its rows.
    pub fn new(batch: SpanBatch) -> Result<Prepared> {
        let record = batch.encode_to_vec();
        let (mut p, _) = Prepared::spans_of(record.into())?;
        let cluster = slo_store::cluster_batches(&[&batch]).map_err(storage)?;
        p.rows.splice(0..0, cluster);
        Ok(p)
    }

    /// Builds the rows of an encoded batch (the OTLP fast path, and WAL replay).
    pub fn from_record(record: Bytes) -> Result<Prepared> {
        let (mut p, cluster) = Prepared::spans_of(record)?;
        if cluster {
            // Samples and changes (scrapes, Kubernetes) the slow way: they are not hot.
            let batch =
                SpanBatch::decode(p.record.as_ref()).map_err(|e| Error::Storage(format!("undecodable record: {e}")))?;
            let cluster = slo_store::cluster_batches(&[&batch]).map_err(storage)?;
            p.rows.splice(0..0, cluster);
        }
        Ok(p)
    }

    /// Transcodes an OTLP protobuf export and builds its rows and held spans in the same
    /// pass (the hot path: the record is not read back). `None` when no span was kept.
    pub fn transcode(c: &Converter, otlp: &[u8]) -> Result<(Option<Prepared>, Transcoded)> {
        let mut rows = SpansBuilder::with_capacity(otlp.len() / 700 + 1, otlp.len());
        let mut holder = Holder::default();
        let mut held = Vec::with_capacity(otlp.len() / 700 + 1);
        let mut failed = None;
        let mut t = c.transcode_with(otlp, |r, s, a| {
            if let Err(e) = rows.append(r, s, a) {
                failed.get_or_insert(e);
            }
            held.extend(holder.hold(0, r, s));
        })?;
        if let Some(e) = failed {
            return Err(storage(e));
        }
        if t.accepted == 0 {
            return Ok((None, t));
        }
        let record = Bytes::from(std::mem::take(&mut t.record));
        let rows = vec![(slo_store::schema::SPANS, rows.finish().map_err(storage)?)];
        Ok((Some(Prepared { record, rows, held }), t))
    }

    /// The spans rows and held spans, and whether the record also holds samples or changes
    /// (whose rows the caller builds).
    fn spans_of(record: Bytes) -> Result<(Prepared, bool)> {
        let mut rows = SpansBuilder::with_capacity(record.len() / 700 + 1, record.len());
        let mut holder = Holder::default();
        let mut held = Vec::with_capacity(record.len() / 700 + 1);
        let cluster = slo_store::encoded::visit_spans(&record, |r, s, a| {
            rows.append(r, s, a)?;
            held.extend(holder.hold(record.as_ptr() as usize, r, s));
            Ok::<_, slo_store::Error>(())
        })
        .map_err(storage)?;
        let mut out = Vec::new();
        if rows.rows() > 0 {
            out.push((slo_store::schema::SPANS, rows.finish().map_err(storage)?));
        }
        Ok((Prepared { record, rows: out, held }, cluster))
    }

    /// Spans held for assembly.
    pub fn spans(&self) -> usize {
        self.held.len()
    }
}

fn storage(e: slo_store::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Most bytes of exports one pipeline step commits (one WAL write and fsync) before the
/// memory budget of unflushed rows is checked again: that budget can be overshot by about
/// one step. Without it a step took the whole queue (256 MiB by default).
const STEP_BYTES: usize = 32 << 20;

/// Bytes a queued export holds (record, Arrow rows, held spans) per byte of its OTLP
/// protobuf body, roughly. The benchmark's body is 821 bytes a span (`otlp_load` prints
/// `export_bytes`: 164,194 for 200 spans). What a span holds queued was measured with its
/// earlier payload, whose latencies were short decimals: 4.1 KB (record 780, rows 2,518,
/// held span 790 bytes), a ratio of about 5; 17-digit latencies only add to that. So 4
/// under-estimates: an export it admits may still be refused when it is queued, after
/// its transcode. The queue charges what a prepared export measures.
pub(crate) const QUEUED_PER_BODY_BYTE: usize = 4;

impl Ingest {
    /// Bytes of the queue budget held by exports queued or being written now (released as
    /// the pipeline finishes each one, so read it when needed rather than at admission).
    pub fn queued_bytes(&self) -> usize {
        (self.budget_kib - self.budget.available_permits()) * 1024
    }

    /// Refuses early, before any work is spent on an export, when the pipeline is not
    /// accepting or the queue has no room for it: less than 1/64 of its budget free, or
    /// less than `expected` bytes (what the export will hold once prepared, estimated;
    /// see [`QUEUED_PER_BODY_BYTE`]). An export refused only after it was transcoded
    /// costs its whole transcode for nothing.
    pub fn check_room(&self, expected: usize) -> Result<()> {
        if let Some(why) = self.health.not_ready_because() {
            return Err(Error::Unavailable(why));
        }
        let free = self.budget.available_permits();
        let expected_kib = expected.div_ceil(1024).min(self.budget_kib);
        if free * 64 < self.budget_kib || free < expected_kib {
            return Err(Error::Overloaded { queued_bytes: self.queued_bytes(), limit_bytes: self.budget_kib * 1024 });
        }
        Ok(())
    }

    /// An ingest handle with no pipeline behind it, ready, whose queue budget of
    /// `budget_kib` already has `held_kib` taken (as by exports queued before): for tests
    /// of what is refused before any work. Nothing submitted to it is ever written.
    #[cfg(test)]
    pub(crate) fn detached(budget_kib: usize, held_kib: usize) -> Ingest {
        let (tx, rx) = mpsc::channel();
        std::mem::forget(rx);
        let health = Arc::new(Health { state: AtomicU8::new(READY), ..Default::default() });
        Ingest { tx, budget: Arc::new(Semaphore::new(budget_kib - held_kib)), budget_kib, health }
    }

    /// Queues a prepared batch and waits until it is durable. `Ok` means it may be
    /// acknowledged.
    pub async fn submit(&self, prepared: Prepared) -> Result<()> {
        if let Some(why) = self.health.not_ready_because() {
            return Err(Error::Unavailable(why));
        }
        // What the batch costs while queued: its record, its rows and its held spans,
        // measured (the rows' buffers as reserved), not estimated from the record.
        let bytes = prepared.bytes();
        let kib = bytes / 1024 + 1;
        let kib = kib.min(self.budget_kib) as u32;
        let permit = self.budget.clone().try_acquire_many_owned(kib).map_err(|_| Error::Overloaded {
            queued_bytes: self.queued_bytes(),
            limit_bytes: self.budget_kib * 1024,
        })?;
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Batch(Submission { prepared, bytes, _permit: permit, ack }))
            .map_err(|_| Error::Unavailable("stopping".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Storage(e)),
            Err(_) => Err(Error::Unavailable("stopping".into())),
        }
    }
}

struct FlushRequest {
    job: FlushJob,
    done: Vec<oneshot::Sender<Result<(), String>>>,
}

/// The running pipeline: stop it with [`PipelineHandle::shutdown`].
pub struct PipelineHandle {
    tx: Sender<Msg>,
    pipeline: JoinHandle<Result<()>>,
    flusher: JoinHandle<()>,
    health: Arc<Health>,
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle").field("health", &self.health.describe()).finish()
    }
}

impl PipelineHandle {
    /// Stops accepting, writes what is queued, flushes everything (with the assembler's
    /// in-flight traces saved for the next start) and waits for the threads. Blocking.
    pub fn shutdown(self) -> Result<()> {
        self.health.set(STOPPING);
        let _ = self.tx.send(Msg::Shutdown);
        let result = self.pipeline.join().unwrap_or_else(|_| Err(Error::Storage("pipeline thread panicked".into())));
        let _ = self.flusher.join();
        result
    }

    /// Whether the pipeline thread has ended (it only ends on its own after a failure).
    pub fn is_finished(&self) -> bool {
        self.pipeline.is_finished()
    }

    /// The shared health.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }
}

/// The pipeline thread's state.
pub struct Pipeline {
    store: Store,
    wal: Wal,
    assembler: Assembler,
    splitter: Splitter,
    metrics: CollectorMetrics,
    rx: Receiver<Msg>,
    flush_tx: SyncSender<FlushRequest>,
    max_group: usize,
    drain_on_exit: bool,
    health: Arc<Health>,
    /// While the WAL is not writable: when to probe it (or retry a rotation) next.
    wal_retry_at: Option<Instant>,
}

/// How often an unwritable WAL is probed.
const WAL_RETRY: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Starts the pipeline: replays `recovery` (the pipeline reports ready afterwards), then
    /// serves submissions. With `drain_on_exit`, traces still being assembled at shutdown
    /// are emitted (an import has all its spans); otherwise they are saved for the next start.
    pub fn start(
        store: Store,
        wal: Wal,
        recovery: Recovery,
        cfg: &CollectorConfig,
        metrics: CollectorMetrics,
        drain_on_exit: bool,
    ) -> Result<(Ingest, PipelineHandle)> {
        let splitter = Splitter::new(&cfg.split).map_err(Error::InvalidPayload)?;
        let (tx, rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::sync_channel::<FlushRequest>(2);
        let health = Arc::new(Health::default());
        let flusher = {
            let store = store.clone();
            let health = health.clone();
            std::thread::Builder::new()
                .name("slo-flusher".into())
                .spawn(move || run_flusher(store, flush_rx, health))
                .map_err(|e| Error::Storage(format!("spawn flusher: {e}")))?
        };
        let mut pipeline = Pipeline {
            store,
            wal,
            assembler: Assembler::new(cfg.assembly.clone()),
            splitter,
            metrics,
            rx,
            flush_tx,
            max_group: cfg.ingest.max_group.max(1),
            drain_on_exit,
            health: health.clone(),
            wal_retry_at: None,
        };
        let thread_health = health.clone();
        let handle = std::thread::Builder::new()
            .name("slo-pipeline".into())
            .spawn(move || {
                let result = pipeline.recover(recovery).and_then(|()| {
                    thread_health.set(READY);
                    pipeline.run()
                });
                if let Err(e) = &result {
                    tracing::error!(error = %e, "ingest pipeline failed");
                    thread_health.set(FAILED);
                }
                result
            })
            .map_err(|e| Error::Storage(format!("spawn pipeline: {e}")))?;
        let budget_kib = (cfg.ingest.queue_bytes / 1024).max(1);
        let ingest =
            Ingest { tx: tx.clone(), budget: Arc::new(Semaphore::new(budget_kib)), budget_kib, health: health.clone() };
        Ok((ingest, PipelineHandle { tx, pipeline: handle, flusher, health }))
    }

    fn recover(&mut self, recovery: Recovery) -> Result<()> {
        let now = Instant::now();
        let mut in_flight = InFlight::default();
        match recovery.state.as_deref() {
            Some(state) if InFlight::is_this_format(state) => match InFlight::decode(state) {
                Ok(f) => in_flight = f,
                Err(e) => {
                    tracing::warn!(error = %e, "traces in flight at the last flush get no request rows (their spans are kept)")
                }
            },
            Some(state) => match self.assembler.restore_spans(state, now) {
                Ok(n) => tracing::info!(spans = n, "restored traces in flight at the last flush"),
                Err(e) => {
                    tracing::warn!(error = %e, "state file unreadable; its traces get no request rows (their spans are kept)")
                }
            },
            None => {}
        }
        for &segment in &recovery.wal_segments {
            let read = recovery.read(segment)?;
            if segment <= recovery.checkpoint {
                // Rows already in Parquet: only the spans of traces that were in flight.
                let mut spans = 0;
                for (i, record) in read.records.into_iter().enumerate() {
                    let pos = WalPos { segment, record: i as u32 };
                    match self.assembler.resume(&in_flight, &record, pos, now) {
                        Ok(n) => spans += n,
                        Err(e) => tracing::error!(segment, error = %e, "undecodable WAL record skipped"),
                    }
                }
                tracing::info!(segment, spans, "resumed traces in flight at the last flush");
                continue;
            }
            let mut prepared = Vec::with_capacity(read.records.len());
            for (i, record) in read.records.into_iter().enumerate() {
                match Prepared::from_record(record.into()) {
                    Ok(p) => prepared.push((p, WalPos { segment, record: i as u32 })),
                    Err(e) => tracing::error!(segment, error = %e, "undecodable WAL record skipped"),
                }
            }
            self.metrics.wal_replayed_records.inc_by(prepared.len() as u64);
            tracing::info!(segment, records = prepared.len(), "replayed WAL segment");
            if read.torn_bytes > 0 {
                tracing::warn!(
                    segment,
                    torn_bytes = read.torn_bytes,
                    "WAL segment ends in a torn record (a write cut short by a crash, never acknowledged)"
                );
            }
            let mut rest = prepared.into_iter().peekable();
            while rest.peek().is_some() {
                let chunk: Vec<(Prepared, WalPos)> = rest.by_ref().take(self.max_group).collect();
                self.process(chunk);
                self.after_step()?;
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let tick = Duration::from_millis(50);
        loop {
            let mut group = Vec::new();
            let mut stop = false;
            let mut bytes = 0;
            match self.rx.recv_timeout(tick) {
                Ok(Msg::Batch(s)) => {
                    bytes += s.bytes;
                    group.push(s);
                }
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => stop = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            while !stop && group.len() < self.max_group && bytes < STEP_BYTES {
                match self.rx.try_recv() {
                    Ok(Msg::Batch(s)) => {
                        bytes += s.bytes;
                        group.push(s);
                    }
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => stop = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.commit(group)?;
            if stop {
                break;
            }
            self.after_step()?;
        }
        if self.drain_on_exit {
            let drained = self.assembler.drain();
            self.emit(drained)?;
        }
        let (done, wait) = oneshot::channel();
        self.flush(vec![done])?;
        drop(std::mem::replace(&mut self.flush_tx, mpsc::sync_channel(0).0));
        match wait.blocking_recv() {
            Ok(Err(e)) => Err(Error::Storage(e)),
            _ => Ok(()),
        }
    }

    /// WAL group commit, acknowledgement, then rows.
    fn commit(&mut self, group: Vec<Submission>) -> Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (segment, first) = (self.wal.active_id(), self.wal.active_records());
        let written = self.wal.append(group.iter().map(|s| s.prepared.record.as_ref()));
        let store_metrics = self.store.metrics();
        store_metrics.wal_append_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = written {
            tracing::error!(error = %e, exports = group.len(), "WAL write failed; exports refused");
            self.wal_failed(&e);
            for s in group {
                let _ = s.ack.send(Err(e.to_string()));
            }
            return Ok(());
        }
        store_metrics.wal_bytes.inc_by(group.iter().map(|s| s.prepared.record.len() as u64 + 8).sum());
        self.wal_writable();
        let mut prepared = Vec::with_capacity(group.len());
        for (i, s) in group.into_iter().enumerate() {
            let _ = s.ack.send(Ok(()));
            prepared.push((s.prepared, WalPos { segment, record: first + i as u32 }));
        }
        self.process(prepared);
        Ok(())
    }

    /// Rows to the store, spans to the assembler.
    fn process(&mut self, prepared: Vec<(Prepared, WalPos)>) {
        let now = Instant::now();
        let mut rows = Vec::with_capacity(prepared.len());
        for (p, pos) in prepared {
            rows.extend(p.rows);
            self.assembler.add_held(p.held, pos, now);
        }
        // One call: the store compacts a step's rows into one batch per table.
        self.store.append_tables(rows);
    }

    fn emit(&mut self, emitted: Emitted) -> Result<()> {
        let mut rows = slo_store::RequestsBuilder::with_capacity(emitted.traces.len());
        let mut sources: HashMap<&'static str, u64> = HashMap::new();
        let mut reasons = [0u64; 4];
        let mut sli = self.metrics.sli.batch();
        let mut pods = self.metrics.gpu_workloads.batch();
        for (spans, reason) in &emitted.traces {
            reasons[match reason {
                Emission::Complete => 0,
                Emission::Timeout => 1,
                Emission::Forced => 2,
                Emission::Drained => 3,
            }] += 1;
            self.splitter.each_held_request(spans, |row, attrs| {
                *sources.entry(row.split_source).or_default() += 1;
                sli.observe(row);
                pods.observe(row);
                rows.append(row, attrs.iter().copied())
            })?;
        }
        let names = ["complete", "timeout", "forced", "drained"];
        for (reason, n) in names.into_iter().zip(reasons).filter(|(_, n)| *n > 0) {
            self.metrics.traces_emitted.get_or_create(&ReasonLabel { reason }).inc_by(n);
        }
        for (source, n) in sources {
            self.metrics.requests_emitted.get_or_create(&vec![("split_source", source)]).inc_by(n);
        }
        if rows.rows() > 0 {
            self.store.append(None, Some(rows.finish()?));
        }
        self.metrics.assembly_pending_spans.set(self.assembler.pending_spans() as i64);
        self.metrics.assembly_pending_bytes.set(self.assembler.pending_bytes() as i64);
        self.metrics.late_spans.inc_by(self.assembler.take_stats().late_spans);
        Ok(())
    }

    fn wal_failed(&mut self, e: &slo_store::Error) {
        self.health.set_wal_problem(Some(e.to_string()));
        self.wal_retry_at = Some(Instant::now() + WAL_RETRY);
    }

    fn wal_writable(&mut self) {
        if self.wal_retry_at.take().is_some() {
            self.health.set_wal_problem(None);
        }
    }

    fn after_step(&mut self) -> Result<()> {
        let polled = self.assembler.poll(Instant::now());
        self.emit(polled)?;
        // Not ready while the WAL is unwritable, so no export comes to show it is writable
        // again: probe it.
        if self.wal_retry_at.is_some_and(|t| Instant::now() >= t) {
            match self.wal.probe() {
                Ok(()) => self.wal_writable(),
                Err(e) => self.wal_failed(&e),
            }
        }
        if self.wal_retry_at.is_some() {
            return Ok(());
        }
        let over_budget = self.store.over_memory_budget();
        if self.store.flush_due() || (over_budget && self.store.pending_flushes() == 0) {
            self.flush(Vec::new())?;
        }
        // Unflushed rows over budget: wait for the flusher (the queue fills meanwhile, and
        // receivers shed).
        while over_budget && self.store.over_memory_budget() && self.store.pending_flushes() > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Rotates the WAL and hands the frozen rows to the flusher. A rotation that fails (no
    /// file descriptor, a full disk) fails an asked-for flush (`done`); a periodic one is
    /// left for when the WAL is writable again, and the rows stay in memory and the WAL.
    fn flush(&mut self, done: Vec<oneshot::Sender<Result<(), String>>>) -> Result<()> {
        let through = match self.wal.rotate() {
            Ok(t) => t,
            Err(e) if done.is_empty() => {
                tracing::error!(error = %e, "WAL rotation failed; the flush waits");
                self.wal_failed(&e);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let in_flight = self.assembler.in_flight();
        let keep_from = in_flight.keep_from().unwrap_or(through + 1);
        let job = self.store.freeze(through, keep_from, in_flight.encode());
        if self.flush_tx.send(FlushRequest { job, done }).is_err() {
            return Err(Error::Storage("flusher thread is gone".into()));
        }
        Ok(())
    }
}

fn run_flusher(store: Store, rx: Receiver<FlushRequest>, health: Arc<Health>) {
    while let Ok(req) = rx.recv() {
        let mut attempt = 0u32;
        let result = loop {
            attempt += 1;
            match store.write_flush(&req.job) {
                Ok(()) => break Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, attempt, rows = req.job.rows(), "flush failed; rows stay in memory and in the WAL");
                    if attempt >= 5 && health.state.load(Ordering::Acquire) == STOPPING {
                        break Err(e.to_string());
                    }
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt.min(25))));
                }
            }
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        if let Err(e) = store.apply_retention(now) {
            tracing::warn!(error = %e, "retention failed");
        }
        for d in req.done {
            let _ = d.send(result.clone());
        }
    }
}
