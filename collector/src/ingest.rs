//! What receivers hand data to: [`Ingest`], a handle on the pipeline's queue with a byte
//! budget (an export that does not fit is shed, not queued), the [`Prepared`] batch a
//! submitting thread builds (WAL record, rows, held spans) so that the pipeline thread
//! does not have to, and the [`Health`] `/readyz` reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use prost::Message;
use slo_store::encoded::{Sampled, SpansBuilder};
use slo_store::{SpanBatch, WalCompression};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::assemble::{HeldSpan, Holder, TraceId};
use crate::convert::Converter;
use crate::error::{Error, Result};
use crate::shard::{ShardRecords, shard_of, split_record};
use crate::transcode::Transcoded;

pub(crate) fn storage(e: slo_store::Error) -> Error {
    Error::Storage(e.to_string())
}

pub(crate) const STARTING: u8 = 0;
pub(crate) const READY: u8 = 1;
pub(crate) const STOPPING: u8 = 2;
pub(crate) const FAILED: u8 = 3;

/// Whether the collector accepts data; `/readyz` reads it.
#[derive(Debug, Default)]
pub struct Health {
    pub(crate) state: AtomicU8,
    /// Why the WAL cannot be written now (a full disk, no file descriptor left); cleared
    /// when a write or a probe succeeds again.
    pub(crate) wal_problem: parking_lot::Mutex<Option<String>>,
    /// Pipeline shards still replaying their WAL: ready once none is.
    pub(crate) replaying: AtomicUsize,
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

    pub(crate) fn set_wal_problem(&self, problem: Option<String>) {
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

    pub(crate) fn set(&self, s: u8) {
        self.state.store(s, Ordering::Release);
    }
}

pub(crate) struct Submission {
    pub(crate) prepared: Prepared,
    /// What it holds ([`Prepared::bytes`]), measured once when it was queued.
    pub(crate) bytes: usize,
    /// Its share of the queue budget (an export cut into shards shares one reservation).
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
    pub(crate) ack: oneshot::Sender<Result<(), String>>,
}

pub(crate) enum Msg {
    Batch(Submission),
    Shutdown,
}

/// The handle receivers submit through; clones share the queue (one channel per pipeline
/// shard, one byte budget).
#[derive(Clone)]
pub struct Ingest {
    pub(crate) tx: Vec<Sender<Msg>>,
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) budget_kib: usize,
    pub(crate) health: Arc<Health>,
    /// Whether spans' rows are built as they are received (`keep_share` 1): a batch cut
    /// into shards is prepared again the same way.
    pub(crate) spans_at_receipt: bool,
    /// How the WAL compresses its records: exports are framed for it before they are
    /// queued, on the threads that prepare them (`slo_store::frame_wal_record`).
    pub(crate) wal_compression: WalCompression,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("budget_kib", &self.budget_kib).finish()
    }
}

/// Rows by table name.
pub(crate) type Rows = Vec<(&'static str, RecordBatch)>;

/// A batch encoded for the WAL, turned into held spans (and rows for what is not a trace
/// span: samples, changes, spans without valid ids), ready to queue. Preparing
/// is CPU work done by the submitting thread, so that the single pipeline thread does not
/// have to; callers with large batches do it off the async workers.
#[derive(Debug)]
pub struct Prepared {
    /// The WAL record: an encoded `SpanBatch`.
    pub(crate) record: Bytes,
    /// The record framed (and compressed) for the WAL, once [`Prepared::frame`] ran;
    /// dropped once written.
    pub(crate) frame: Option<Vec<u8>>,
    /// Rows of `samples`/`changes` when the batch has any, and of `spans` for spans that
    /// belong to no trace; a trace's spans are stored when it is emitted, if sampled.
    pub(crate) rows: Vec<(&'static str, RecordBatch)>,
    /// The spans for the assembler.
    pub(crate) held: Vec<(TraceId, HeldSpan)>,
    /// The pipeline shard it goes to: its trace spans' (`shard.rs`).
    pub(crate) shard: usize,
}

impl Prepared {
    /// Bytes it holds: its record (and its frame), its rows' Arrow buffers and its held
    /// spans.
    pub(crate) fn bytes(&self) -> usize {
        self.record.len()
            + self.frame.as_ref().map_or(0, Vec::capacity)
            + self.rows.iter().map(|(_, b)| b.get_array_memory_size()).sum::<usize>()
            + self.held.iter().map(|(_, h)| h.footprint()).sum::<usize>()
    }
}

impl Prepared {
    /// Frames its record for the WAL (compressing it when so configured), unless done.
    pub fn frame(&mut self, compression: WalCompression) {
        if self.frame.is_none() {
            self.frame = Some(slo_store::frame_wal_record(&self.record, compression));
        }
    }
}

/// The `spans` rows of an export of `bytes`: sized for every span when their rows are
/// built as they are received, else for the few that are not trace spans.
fn spans_rows(bytes: usize, at_receipt: bool) -> SpansBuilder {
    if at_receipt { SpansBuilder::with_capacity(bytes / 700 + 1, bytes) } else { SpansBuilder::with_capacity(0, 0) }
}

impl Prepared {
    /// Encodes a batch and builds its rows.
    /// Its trace spans' rows are left for tail sampling: `new` is for batches of samples
    /// and changes (scrapes, the Kubernetes watch, imports of those).
    pub fn new(batch: SpanBatch) -> Result<Prepared> {
        let record = batch.encode_to_vec();
        let (mut p, _) = Prepared::spans_of(record.into(), false)?;
        let cluster = slo_store::cluster_batches(&[&batch]).map_err(storage)?;
        p.rows.splice(0..0, cluster);
        Ok(p)
    }

    /// Cut into one per pipeline shard of `n`, by trace id (`shard.rs`): whole when its
    /// trace spans are all one shard's (or it has none: shard 0), else its record is cut
    /// and each part prepared again (OTLP/JSON and imports; protobuf is cut as it is
    /// transcoded, [`Prepared::transcode`]).
    pub(crate) fn split(mut self, n: usize, spans_at_receipt: bool) -> Result<Vec<Prepared>> {
        let mut shards = self.held.iter().map(|(id, _)| shard_of(id, n));
        let first = shards.next().unwrap_or(0);
        if n <= 1 || shards.all(|k| k == first) {
            self.shard = first;
            return Ok(vec![self]);
        }
        let mut parts = Vec::with_capacity(n);
        for (k, record) in split_record(&self.record, n)?.into_iter().enumerate() {
            if record.is_empty() {
                continue;
            }
            let mut p = Prepared::from_record(record.into(), spans_at_receipt)?;
            p.shard = k;
            parts.push(p);
        }
        Ok(parts)
    }

    /// Builds the rows of an encoded batch (OTLP/JSON, and WAL replay); `spans_at_receipt`:
    /// every span's row now ([`Converter::with_spans_at_receipt`]).
    pub fn from_record(record: Bytes, spans_at_receipt: bool) -> Result<Prepared> {
        let (mut p, cluster) = Prepared::spans_of(record, spans_at_receipt)?;
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
    /// pass (the hot path: the record is not read back), one [`Prepared`] per pipeline
    /// shard of `shards` that gets any of its spans (none when no span was kept).
    pub fn transcode(c: &Converter, otlp: &[u8], shards: usize) -> Result<(Vec<Prepared>, Transcoded)> {
        let n = shards.max(1);
        let at_receipt = c.spans_at_receipt;
        let mut rows: Vec<SpansBuilder> = (0..n).map(|_| spans_rows(otlp.len() / n, at_receipt)).collect();
        let mut holder = Holder::default();
        let mut held: Vec<Vec<(TraceId, HeldSpan)>> =
            (0..n).map(|_| Vec::with_capacity(otlp.len() / (700 * n) + 1)).collect();
        // With one shard the transcoded record is the WAL record; with more, each span is
        // copied into its shard's.
        let mut records = (n > 1).then(|| ShardRecords::new(n, otlp.len()));
        let mut failed = None;
        let mut t = c.transcode_with(otlp, |r, s, a| {
            // A span that is not a trace span has no trace to sample it with: stored now.
            let (k, sampled) = match holder.hold(0, r, s, a) {
                Some(mut h) => {
                    h.1.stored = at_receipt;
                    let k = shard_of(&h.0, n);
                    held[k].push(h);
                    (k, at_receipt.then_some(Sampled::ALL))
                }
                None => (0, Some(Sampled::UNASSEMBLED)),
            };
            if let Some(records) = &mut records {
                records.push(k, r, s.raw);
            }
            if let Some(sampled) = sampled
                && let Err(e) = rows[k].append(r, s, a, sampled)
            {
                failed.get_or_insert(e);
            }
        })?;
        if let Some(e) = failed {
            return Err(storage(e));
        }
        if t.accepted == 0 {
            return Ok((Vec::new(), t));
        }
        let records = match records {
            Some(r) => r.finish(),
            None => vec![std::mem::take(&mut t.record)],
        };
        let mut parts = Vec::with_capacity(n);
        for (shard, ((record, rows), held)) in records.into_iter().zip(rows).zip(held).enumerate() {
            if record.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            if rows.rows() > 0 {
                out.push((slo_store::schema::SPANS, rows.finish().map_err(storage)?));
            }
            parts.push(Prepared { record: Bytes::from(record), frame: None, rows: out, held, shard });
        }
        Ok((parts, t))
    }

    /// The spans rows and held spans, and whether the record also holds samples or changes
    /// (whose rows the caller builds).
    fn spans_of(record: Bytes, at_receipt: bool) -> Result<(Prepared, bool)> {
        let mut rows = spans_rows(record.len(), at_receipt);
        let mut holder = Holder::default();
        let mut held = Vec::with_capacity(record.len() / 700 + 1);
        let cluster = slo_store::encoded::visit_spans(&record, |r, s, a| {
            match holder.hold(record.as_ptr() as usize, r, s, a) {
                Some(mut h) => {
                    h.1.stored = at_receipt;
                    held.push(h);
                    if at_receipt {
                        rows.append(r, s, a, Sampled::ALL)?;
                    }
                }
                None => rows.append(r, s, a, Sampled::UNASSEMBLED)?,
            }
            Ok::<_, slo_store::Error>(())
        })
        .map_err(storage)?;
        let mut out = Vec::new();
        if rows.rows() > 0 {
            out.push((slo_store::schema::SPANS, rows.finish().map_err(storage)?));
        }
        Ok((Prepared { record, frame: None, rows: out, held, shard: 0 }, cluster))
    }

    /// Spans held for assembly.
    pub fn spans(&self) -> usize {
        self.held.len()
    }

    /// Its rows and its held spans (a read-only replay has no WAL record to keep).
    pub(crate) fn into_parts(self) -> (Rows, Vec<(TraceId, HeldSpan)>) {
        (self.rows, self.held)
    }
}

/// Bytes a queued export holds (record, Arrow rows, held spans) per byte of its OTLP
/// protobuf body, roughly. The benchmark's body is 821 bytes a span (`otlp_load` prints
/// `export_bytes`: 164,194 for 200 spans). What a span holds queued was measured with its
/// earlier payload, whose latencies were short decimals: 4.1 KB (record 780, rows 2,518,
/// held span 790 bytes), a ratio of about 5. Since tail sampling, a trace's spans get no
/// rows before they are queued, so a span holds about 1.6 KB (record and held span), a
/// ratio of about 2 (derived from those figures, not measured again): 4 now refuses early
/// only when the queue is within a few exports of full. The queue charges what a prepared
/// export measures.
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
        let (tx, rx) = std::sync::mpsc::channel();
        std::mem::forget(rx);
        let health = Arc::new(Health { state: AtomicU8::new(READY), ..Default::default() });
        Ingest {
            tx: vec![tx],
            budget: Arc::new(Semaphore::new(budget_kib - held_kib)),
            budget_kib,
            health,
            spans_at_receipt: false,
            wal_compression: WalCompression::None,
        }
    }

    /// How exports are framed for the WAL: [`Prepared::frame`] with this before
    /// [`Ingest::submit_parts`] does it off the async workers.
    pub fn wal_compression(&self) -> WalCompression {
        self.wal_compression
    }

    /// Pipeline shards: what [`Prepared::transcode`] cuts an export into.
    pub fn shards(&self) -> usize {
        self.tx.len()
    }

    /// Queues a prepared batch and waits until it is durable. `Ok` means it may be
    /// acknowledged. A batch whose spans belong to several pipeline shards is cut first.
    pub async fn submit(&self, prepared: Prepared) -> Result<()> {
        let parts =
            if self.shards() > 1 { prepared.split(self.shards(), self.spans_at_receipt)? } else { vec![prepared] };
        self.submit_parts(parts).await
    }

    /// Queues the parts of one export, each to its shard, and waits until every one is
    /// durable. `Ok` means the export may be acknowledged; when one shard fails, the export
    /// is refused (the parts other shards wrote are stored, and come again if the client
    /// retries: at least once).
    pub async fn submit_parts(&self, mut parts: Vec<Prepared>) -> Result<()> {
        if let Some(why) = self.health.not_ready_because() {
            return Err(Error::Unavailable(why));
        }
        if parts.is_empty() {
            return Ok(());
        }
        for p in &mut parts {
            p.frame(self.wal_compression);
        }
        // What the parts cost while queued: their records, rows and held spans, measured
        // (the rows' buffers as reserved), not estimated from the record.
        let sizes: Vec<usize> = parts.iter().map(Prepared::bytes).collect();
        let kib = (sizes.iter().sum::<usize>() / 1024 + 1).min(self.budget_kib) as u32;
        let permit = self.budget.clone().try_acquire_many_owned(kib).map_err(|_| Error::Overloaded {
            queued_bytes: self.queued_bytes(),
            limit_bytes: self.budget_kib * 1024,
        })?;
        let last = parts.len() - 1;
        let mut permit = Some(permit);
        let mut waits = Vec::with_capacity(parts.len());
        for (i, (prepared, bytes)) in parts.into_iter().zip(sizes).enumerate() {
            // Each part releases its share as its shard finishes it; the last takes the rest.
            let share = match &mut permit {
                Some(p) if i < last => p.split((bytes / 1024 + 1).min(p.num_permits())),
                _ => permit.take(),
            };
            let (ack, done) = oneshot::channel();
            let tx = self.tx.get(prepared.shard).unwrap_or(&self.tx[0]);
            tx.send(Msg::Batch(Submission { prepared, bytes, _permit: share, ack }))
                .map_err(|_| Error::Unavailable("stopping".into()))?;
            waits.push(done);
        }
        let mut result = Ok(());
        for done in waits {
            let r = match done.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Error::Storage(e)),
                Err(_) => Err(Error::Unavailable("stopping".into())),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}
