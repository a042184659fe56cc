//! The ingest pipeline: one thread per shard, each owning its WAL and its assembler.
//!
//! Receivers call [`Ingest::submit`] (`ingest.rs`), which reserves room in a byte budget
//! (or sheds the export), cuts it by trace id into one part per shard (`shard.rs`), queues
//! each part to its shard and waits for every shard to write its part to its WAL. Each
//! pipeline thread takes whatever is queued as one group commit,
//! acknowledges it, then feeds the assembler, whose finished traces become `requests`
//! rows and, when tail sampling keeps them (`sample.rs`), `spans` rows. It decides when a flush is due and hands it to
//! the store's [`Flusher`] with the traces in flight (their state and the first WAL
//! segment their spans are in): the store rotates the WAL, writes the segments and the
//! manifest, and deletes the WAL segments no trace in flight needs. With several shards a
//! flush is gathered: the shard that finds one due asks the store for it, every shard gives
//! its rows at its own next rotation, and the last part given queues the write
//! (`Store::freeze_part`), so each shard's checkpoint matches exactly the rows it gave.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slo_store::{FlushDone, FlushError, Flusher, FlusherThread, Recovery, Store, Wal};
use tokio::sync::{Semaphore, oneshot};

use slo_store::encoded::{Sampled, SpansBuilder};

use crate::assemble::{Assembler, Emission, Emitted, HeldSpan, InFlight, WalPos};
use crate::config::CollectorConfig;
use crate::error::{Error, Result};
use crate::ingest::{FAILED, Health, Ingest, Msg, Prepared, READY, STOPPING, Submission};
use crate::metrics::{CollectorMetrics, ReasonLabel};
use crate::sample::{HeldRows, Sampler, TraceVerdict};
use crate::split::{SplitScratch, Splitter};

use crate::ingest::storage;

/// Most bytes of exports one pipeline step commits (one WAL write and fsync) before the
/// memory budget of unflushed rows is checked again: that budget can be overshot by about
/// one step. Without it a step took the whole queue (256 MiB by default).
const STEP_BYTES: usize = 32 << 20;

/// The running pipeline: stop it with [`PipelineHandle::shutdown`].
pub struct PipelineHandle {
    tx: Vec<Sender<Msg>>,
    pipelines: Vec<JoinHandle<Result<()>>>,
    flusher: FlusherThread,
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
        for tx in &self.tx {
            let _ = tx.send(Msg::Shutdown);
        }
        let mut result = Ok(());
        for pipeline in self.pipelines {
            let r = pipeline.join().unwrap_or_else(|_| Err(Error::Storage("pipeline thread panicked".into())));
            if result.is_ok() {
                result = r;
            }
        }
        self.flusher.join();
        result
    }

    /// Whether a pipeline thread has ended (one only ends on its own after a failure).
    pub fn is_finished(&self) -> bool {
        self.pipelines.iter().any(JoinHandle::is_finished)
    }

    /// The shared health.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }
}

/// How the shards stop together: each, once it has stopped taking data, waits for the
/// others (giving its part to any flush they ask for meanwhile), then every shard gives its
/// last part to one final flush.
#[derive(Debug)]
struct Closing {
    shards: usize,
    /// Shards that have stopped taking data.
    stopped: AtomicUsize,
    /// Shards past the last flush gathered before every shard stopped.
    settled: AtomicUsize,
    /// A shard failed: the others give up waiting for it.
    failed: AtomicBool,
}

/// One shard's pipeline thread's state.
pub struct Pipeline {
    shard: usize,
    closing: Arc<Closing>,
    /// What this shard last set the assembler gauges to (they sum the shards).
    pending_shown: (i64, i64),
    store: Store,
    wal: Wal,
    assembler: Assembler,
    splitter: Splitter,
    sampler: Sampler,
    metrics: CollectorMetrics,
    rx: Receiver<Msg>,
    flusher: Flusher,
    max_group: usize,
    drain_on_exit: bool,
    health: Arc<Health>,
    /// While the WAL is not writable: when to probe it (or retry a rotation) next.
    wal_retry_at: Option<Instant>,
    /// When the last flush was handed to the flusher.
    last_flush: Instant,
    /// How wide the last `requests` rows built were: the next builder's room.
    widths: slo_store::RowWidths,
}

/// A step's `requests` rows size the next step's builder when there are at least this
/// many (fewer say little about the rows to come).
const WIDTHS_FROM_ROWS: usize = 32;

/// How often an unwritable WAL is probed.
const WAL_RETRY: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Starts the pipeline, a thread per WAL shard (`shards`, from
    /// [`Store::open_shards`]): each replays its [`Recovery`] (the pipeline reports ready
    /// once all have), then serves submissions. With `drain_on_exit`, traces still being
    /// assembled at shutdown are emitted (an import has all its spans); otherwise they are
    /// saved for the next start.
    pub fn start(
        store: Store,
        shards: Vec<(Wal, Recovery)>,
        cfg: &CollectorConfig,
        metrics: CollectorMetrics,
        drain_on_exit: bool,
    ) -> Result<(Ingest, PipelineHandle)> {
        cfg.sampling.check().map_err(Error::InvalidPayload)?;
        cfg.ingest.check().map_err(Error::InvalidPayload)?;
        let n = shards.len();
        if n == 0 {
            return Err(Error::Storage("no WAL shard to write".into()));
        }
        let wal_compression = shards[0].0.compression();
        let health = Arc::new(Health::default());
        health.replaying.store(n, Ordering::Release);
        let stopping = {
            let health = health.clone();
            Arc::new(move || health.state.load(Ordering::Acquire) == STOPPING)
        };
        let (flusher, flusher_thread) = Flusher::start(store.clone(), stopping).map_err(storage)?;
        let closing = Arc::new(Closing {
            shards: n,
            stopped: AtomicUsize::new(0),
            settled: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        });
        // The assembly budgets are the collector's, not each shard's: a shard holds its
        // share of them (traces spread evenly), so the memory bound stays what it says.
        let mut assembly = cfg.assembly.clone();
        assembly.max_pending_spans = assembly.max_pending_spans.div_ceil(n);
        assembly.max_pending_bytes = assembly.max_pending_bytes.div_ceil(n);
        assembly.remember_emitted = assembly.remember_emitted.div_ceil(n);
        // Likewise a service's recent latencies: each shard sees 1/n of its requests, so it
        // judges "slow" once it has its share of `min_recent`.
        let mut sampling = cfg.sampling.clone();
        sampling.min_recent = sampling.min_recent.div_ceil(n);
        let mut txs = Vec::with_capacity(n);
        let mut pipelines = Vec::with_capacity(n);
        for (shard, (wal, recovery)) in shards.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            txs.push(tx);
            let mut pipeline = Pipeline {
                shard,
                closing: closing.clone(),
                pending_shown: (0, 0),
                store: store.clone(),
                wal,
                assembler: Assembler::new(assembly.clone()),
                splitter: Splitter::new(&cfg.split).map_err(Error::InvalidPayload)?,
                sampler: Sampler::new(&sampling),
                metrics: metrics.clone(),
                rx,
                flusher: flusher.clone(),
                max_group: cfg.ingest.max_group.max(1),
                drain_on_exit,
                health: health.clone(),
                wal_retry_at: None,
                last_flush: Instant::now(),
                widths: slo_store::RowWidths::default(),
            };
            let thread_health = health.clone();
            let name = if n == 1 { "slo-pipeline".to_string() } else { format!("slo-pipeline-{shard}") };
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    let result = pipeline.recover(recovery).and_then(|()| {
                        if thread_health.replaying.fetch_sub(1, Ordering::AcqRel) == 1 {
                            thread_health.set(READY);
                        }
                        pipeline.run()
                    });
                    if let Err(e) = &result {
                        tracing::error!(shard, error = %e, "ingest pipeline failed");
                        pipeline.closing.failed.store(true, Ordering::Release);
                        thread_health.set(FAILED);
                    }
                    result
                })
                .map_err(|e| Error::Storage(format!("spawn pipeline: {e}")))?;
            pipelines.push(handle);
        }
        drop(flusher);
        let budget_kib = (cfg.ingest.queue_bytes / 1024).max(1);
        let ingest = Ingest {
            tx: txs.clone(),
            budget: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            health: health.clone(),
            spans_at_receipt: cfg.sampling.stores_every_span(),
            wal_compression,
        };
        Ok((ingest, PipelineHandle { tx: txs, pipelines, flusher: flusher_thread, health }))
    }

    fn recover(&mut self, recovery: Recovery) -> Result<()> {
        let now = Instant::now();
        let mut in_flight = InFlight::default();
        match recovery.state.as_deref() {
            Some(state) if InFlight::is_this_format(state) => match InFlight::decode(state) {
                // Its traces' spans carry whether they were stored as received, so a
                // restart with keep_share changed to or from 1 stores each of them once.
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
                match Prepared::from_record(record.into(), self.sampler.keeps_all()) {
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
        // Every shard has stopped taking data and no flush asked before is half gathered:
        // then one final flush, to which every shard gives its last part exactly once.
        self.closing.stopped.fetch_add(1, Ordering::AcqRel);
        self.settle(true, |p| {
            p.closing.stopped.load(Ordering::Acquire) == p.closing.shards && !p.store.flush_gathering()
        })?;
        // Past here no shard asks for a flush but the final one, which must have every
        // shard's last part: a shard still waiting must not give it an earlier one.
        self.closing.settled.fetch_add(1, Ordering::AcqRel);
        self.settle(false, |p| p.closing.settled.load(Ordering::Acquire) == p.closing.shards)?;
        let (done, wait) = oneshot::channel();
        self.flush(vec![done])?;
        self.flusher.close();
        match wait.blocking_recv() {
            Ok(Err(e)) => Err(Error::Storage(e)),
            _ => Ok(()),
        }
    }

    /// Waits until `ready`, giving this shard's part (when `give`) to any flush gathered
    /// meanwhile.
    fn settle(&mut self, give: bool, ready: impl Fn(&Pipeline) -> bool) -> Result<()> {
        loop {
            if give && self.store.flush_wanted(self.shard) {
                self.flush(Vec::new())?;
            }
            if ready(self) {
                return Ok(());
            }
            if self.closing.failed.load(Ordering::Acquire) {
                return Err(Error::Storage("another ingest shard failed; its data stays in its WAL".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// WAL group commit, acknowledgement, then rows.
    fn commit(&mut self, mut group: Vec<Submission>) -> Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let (segment, first) = (self.wal.active_id(), self.wal.active_records());
        // Submissions come framed ([`Ingest::submit_parts`]); this is a backstop.
        for s in &mut group {
            s.prepared.frame(self.wal.compression());
        }
        let written = self.wal.append_frames(group.iter().filter_map(|s| s.prepared.frame.as_deref()));
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
        store_metrics
            .wal_bytes
            .inc_by(group.iter().filter_map(|s| s.prepared.frame.as_ref()).map(|f| f.len() as u64).sum());
        self.wal_writable();
        let mut prepared = Vec::with_capacity(group.len());
        for (i, mut s) in group.into_iter().enumerate() {
            let _ = s.ack.send(Ok(()));
            s.prepared.frame = None;
            prepared.push((s.prepared, WalPos { segment, record: first + i as u32 }));
        }
        self.process(prepared);
        Ok(())
    }

    /// Rows to the store, spans to the assembler (and late spans of stored traces to
    /// `spans`).
    fn process(&mut self, prepared: Vec<(Prepared, WalPos)>) {
        let now = Instant::now();
        let mut rows = Vec::with_capacity(prepared.len() + 1);
        for (p, pos) in prepared {
            rows.extend(p.rows);
            self.assembler.add_held(p.held, pos, now);
        }
        let late = self.assembler.take_late_kept();
        if !late.is_empty() {
            let mut spans = SpansBuilder::with_capacity(late.len(), late.len() * 700);
            let mut stored: HashMap<&'static str, u64> = HashMap::new();
            HeldRows::new().append_each(&mut spans, late.iter().map(|(h, s)| (h, *s)), &mut stored);
            for (by, n) in stored {
                self.count_stored(by, n);
            }
            if spans.rows() > 0 {
                match spans.finish() {
                    Ok(b) => rows.push((slo_store::schema::SPANS, b)),
                    Err(e) => tracing::error!(error = %e, "late spans' rows not built"),
                }
            }
        }
        // One call: the store compacts a step's rows into one batch per table.
        self.store.append_shard(self.shard, rows);
    }

    fn count_stored(&self, by: &'static str, n: u64) {
        self.metrics.spans_stored.get_or_create(&vec![("sampled_by", by)]).inc_by(n);
    }

    fn emit(&mut self, emitted: Emitted) -> Result<()> {
        let mut rows = slo_store::RequestsBuilder::sized_like(emitted.traces.len(), &self.widths);
        let mut sources: HashMap<&'static str, u64> = HashMap::new();
        let mut reasons = [0u64; 4];
        let mut sli = self.metrics.sli.batch();
        let mut pods = self.metrics.gpu_workloads.batch();
        let now = Instant::now();
        let mut spans_rows: Option<SpansBuilder> = None;
        let mut stored: HashMap<&'static str, u64> = HashMap::new();
        let mut not_stored = 0u64;
        let mut held = HeldRows::new();
        let mut scratch = SplitScratch::default();
        for ((spans, reason), id) in emitted.traces.iter().zip(&emitted.ids) {
            reasons[match reason {
                Emission::Complete => 0,
                Emission::Timeout => 1,
                Emission::Forced => 2,
                Emission::Drained => 3,
            }] += 1;
            let mut verdict = TraceVerdict::default();
            self.splitter.each_held_request(spans, &mut scratch, |row, attrs| {
                *sources.entry(row.split_source).or_default() += 1;
                sli.observe(row);
                pods.observe(row);
                self.sampler.see(&mut verdict, row, now);
                rows.append(row, attrs.iter().copied())
            })?;
            let span_error = spans.iter().any(HeldSpan::is_error);
            let Some(sampled) = self.sampler.decide(&verdict, id, span_error) else {
                // Spans whose rows were built as they were received (those a collector
                // keeping every span resumed after a restart) are stored whatever the
                // decision.
                let received = spans.iter().filter(|h| h.stored).count() as u64;
                if received > 0 {
                    *stored.entry(Sampled::ALL.by).or_default() += received;
                }
                not_stored += spans.len() as u64 - received;
                continue;
            };
            self.assembler.stored(id, sampled);
            if spans.iter().all(|h| h.stored) {
                // Every span's row was built as it was received (keep_share 1).
                *stored.entry(Sampled::ALL.by).or_default() += spans.len() as u64;
                continue;
            }
            let b =
                spans_rows.get_or_insert_with(|| SpansBuilder::with_capacity(spans.len() * 8, spans.len() * 8 * 700));
            held.append_each(b, spans.iter().map(|h| (h, sampled)), &mut stored);
        }
        for (by, n) in stored {
            self.count_stored(by, n);
        }
        self.metrics.spans_not_stored.inc_by(not_stored);

        let names = ["complete", "timeout", "forced", "drained"];
        for (reason, n) in names.into_iter().zip(reasons).filter(|(_, n)| *n > 0) {
            self.metrics.traces_emitted.get_or_create(&ReasonLabel { reason }).inc_by(n);
        }
        for (source, n) in sources {
            self.metrics.requests_emitted.get_or_create(&vec![("split_source", source)]).inc_by(n);
        }
        let spans_batch = spans_rows.map(SpansBuilder::finish).transpose()?;
        if rows.rows() >= WIDTHS_FROM_ROWS || (rows.rows() > 0 && self.widths.is_empty()) {
            self.widths = rows.widths();
        }
        let requests_batch = if rows.rows() > 0 { Some(rows.finish()?) } else { None };
        let batches = [(slo_store::schema::SPANS, spans_batch), (slo_store::schema::REQUESTS, requests_batch)];
        let batches: Vec<_> = batches.into_iter().filter_map(|(t, b)| Some((t, b?))).collect();
        if !batches.is_empty() {
            self.store.append_shard(self.shard, batches);
        }
        let shown = (self.assembler.pending_spans() as i64, self.assembler.pending_bytes() as i64);
        self.metrics.assembly_pending_spans.inc_by(shown.0 - self.pending_shown.0);
        self.metrics.assembly_pending_bytes.inc_by(shown.1 - self.pending_shown.1);
        self.pending_shown = shown;
        let stats = self.assembler.take_stats();
        self.metrics.late_spans.inc_by(stats.late_spans);
        self.metrics.spans_not_stored.inc_by(stats.late_unsampled);
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
        // Spans wait in the WAL, not in rows, until their trace is emitted: with traces in
        // flight and no rows yet, a flush still moves the checkpoint on (and saves the
        // traces' positions), so a restart replays one flush interval, not everything.
        let wal_due = self.wal.active_records() > 0 && self.last_flush.elapsed() >= self.store.config().flush_interval;
        if self.store.flush_due() || wal_due || (over_budget && self.store.pending_flushes() == 0) {
            self.store.request_flush();
        }
        if self.store.flush_wanted(self.shard) {
            self.flush(Vec::new())?;
        }
        // Unflushed rows over budget: wait for the flusher (the queue fills meanwhile, and
        // receivers shed), giving this shard's part to a flush the others gather.
        while over_budget && self.store.over_memory_budget() && self.store.pending_flushes() > 0 {
            if self.store.flush_wanted(self.shard) {
                self.flush(Vec::new())?;
            }
            if self.closing.failed.load(Ordering::Acquire) {
                return Err(Error::Storage("another ingest shard failed".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Hands the flush to the store ([`Flusher`]: rotate, freeze, write, retention), with
    /// the traces still being assembled. A rotation that fails (no file descriptor, a full
    /// disk) fails an asked-for flush (`done`); a periodic one is left for when the WAL is
    /// writable again, and the rows stay in memory and the WAL.
    fn flush(&mut self, done: Vec<FlushDone>) -> Result<()> {
        let asked = !done.is_empty();
        self.last_flush = Instant::now();
        let (keep_from, in_flight) = self.assembler.in_flight_file(self.sampler.keeps_all());
        match self.flusher.flush(self.shard, &mut self.wal, keep_from, in_flight, done) {
            Ok(()) => Ok(()),
            Err(FlushError::Rotate(e)) if !asked => {
                tracing::error!(error = %e, "WAL rotation failed; the flush waits");
                self.wal_failed(&e);
                Ok(())
            }
            Err(FlushError::Rotate(e)) => Err(e.into()),
            Err(FlushError::Gone) => Err(Error::Storage("flusher thread is gone".into())),
        }
    }
}

/// Opens the store's data directory with `collector.ingest.shards` WAL shards, for
/// [`Pipeline::start`]. A directory whose WAL was written with another count and holds data
/// not yet in segments is first replayed and flushed with that count (its traces in flight
/// are emitted as they are, as an import's are), so no span is lost or routed to a shard
/// that does not assemble its trace.
pub fn open_store(
    store: slo_store::StoreConfig,
    metrics: slo_store::StoreMetrics,
    cfg: &CollectorConfig,
) -> Result<(Store, Vec<(Wal, Recovery)>)> {
    cfg.ingest.check().map_err(Error::InvalidPayload)?;
    let shards = cfg.ingest.shard_count();
    let on_disk = slo_store::wal_shards_on_disk(&store.data_dir).map_err(storage)?;
    if on_disk != shards && slo_store::wal_unflushed(&store.data_dir, on_disk).map_err(storage)? {
        tracing::warn!(
            written_with = on_disk,
            configured = shards,
            "the WAL was written with another shard count: replaying and flushing it with that count first \
             (traces in flight are stored as they are)"
        );
        let old = slo_store::StoreConfig { wal_shards: on_disk, ..store.clone() };
        let (s, wals) = Store::open_shards(old, slo_store::StoreMetrics::unregistered()).map_err(storage)?;
        let (_, handle) = Pipeline::start(s, wals, cfg, CollectorMetrics::unregistered(), true)?;
        handle.shutdown()?;
    }
    Store::open_shards(slo_store::StoreConfig { wal_shards: shards, ..store }, metrics).map_err(storage)
}
