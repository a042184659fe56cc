//! Trace assembly: spans of one trace arrive in different exports, from different
//! services; hold them by trace id until the trace is complete, within bounds.
//!
//! A trace is complete when its entry span (a span without a parent, or a server/consumer
//! span whose parent is remote) has arrived and no span came for `idle`; it is emitted
//! regardless `max_wait` after its first span. Beyond `max_pending_spans` or
//! `max_pending_bytes`, the oldest traces are emitted early. Spans for a trace already
//! emitted are counted as late: they do not change the request row, and they are stored in
//! `spans` when their trace's spans were (see `sample.rs`). Time is passed in, so tests
//! drive it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use slo_store::Attr;
use slo_store::encoded::Sampled;
#[cfg(test)]
use slo_store::{SpanBatch, SpanRecord};

use crate::config::AssemblyConfig;

mod held;
mod in_flight;
pub(crate) use held::{HeldSpan, Holder, hold_record};
pub(crate) use in_flight::{InFlight, WalPos};

/// The resource a span came from, shared by the spans of one export.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resource {
    /// `service.name`.
    pub service: String,
    /// Resource attributes.
    pub attrs: Vec<Attr>,
}

/// A span with its resource, decoded: what tests build traces from and compare with (the
/// ingest path reads held spans in place).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct TraceSpan {
    /// Where it came from.
    pub resource: std::sync::Arc<Resource>,
    /// The span.
    pub span: SpanRecord,
}

/// A trace id.
pub(crate) type TraceId = [u8; 16];

#[derive(Debug)]
struct Pending {
    spans: Vec<HeldSpan>,
    /// The WAL record of the first span.
    from: WalPos,
    first_seen: Instant,
    last_seen: Instant,
}

/// Why a trace was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emission {
    /// Entry span present and quiet for `idle`.
    Complete,
    /// `max_wait` passed without an entry span.
    Timeout,
    /// The memory budget forced it out early.
    Forced,
    /// Drained at the end of an import.
    Drained,
}

/// What a poll gave.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    /// Traces, each with the reason it was emitted.
    pub traces: Vec<(Vec<HeldSpan>, Emission)>,
    /// Their trace ids, in the same order.
    pub ids: Vec<TraceId>,
}

impl Emitted {
    fn push(&mut self, id: TraceId, spans: Vec<HeldSpan>, reason: Emission) {
        self.traces.push((spans, reason));
        self.ids.push(id);
    }
}

/// Counters the pipeline turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AssemblyStats {
    /// Spans that arrived after their trace was emitted.
    pub late_spans: u64,
    /// Late spans of traces whose spans were not stored: they are not stored either.
    pub late_unsampled: u64,
}

/// What the assembler holds for a trace besides its spans: its entry in the table of
/// traces waiting and its id in the arrival queue.
const PER_TRACE: usize = std::mem::size_of::<(TraceId, Pending)>() + std::mem::size_of::<TraceId>();
/// What it holds for a span besides the span: the timer the span queues.
const PER_SPAN: usize = std::mem::size_of::<(Instant, TraceId)>();
/// Below this many entries of room a queue or table is not shrunk.
const SHRINK_FLOOR: usize = 1 << 12;

/// Holds spans by trace id.
#[derive(Debug)]
pub(crate) struct Assembler {
    cfg: AssemblyConfig,
    /// Keyed by trace ids that clients choose, so the hash is keyed too (aHash, random
    /// keys per process): as resistant to crafted collisions as SipHash, and cheaper.
    pending: HashMap<TraceId, Pending, ahash::RandomState>,
    /// Trace ids in order of first arrival (may hold ids already emitted).
    arrival: VecDeque<TraceId>,
    /// Trace ids to look at, with when to look (ascending).
    timers: VecDeque<(Instant, TraceId)>,
    pending_spans: usize,
    /// The held spans' footprints, and [`PER_TRACE`] and [`PER_SPAN`] for each.
    pending_bytes: usize,
    /// Traces emitted, with whether their spans were stored (and why): a late span
    /// follows its trace's decision.
    emitted: HashMap<TraceId, Option<Sampled>, ahash::RandomState>,
    emitted_order: VecDeque<TraceId>,
    /// Late spans of stored traces, for the pipeline to store.
    late_kept: Vec<(HeldSpan, Sampled)>,
    stats: AssemblyStats,
}

impl Assembler {
    /// An empty assembler.
    pub(crate) fn new(cfg: AssemblyConfig) -> Self {
        Assembler {
            cfg,
            pending: HashMap::default(),
            arrival: VecDeque::new(),
            timers: VecDeque::new(),
            pending_spans: 0,
            pending_bytes: 0,
            emitted: HashMap::default(),
            emitted_order: VecDeque::new(),
            late_kept: Vec::new(),
            stats: AssemblyStats::default(),
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.cfg.idle_ms)
    }

    fn max_wait(&self) -> Duration {
        Duration::from_millis(self.cfg.max_wait_ms)
    }

    /// Spans waiting.
    pub(crate) fn pending_spans(&self) -> usize {
        self.pending_spans
    }

    /// Bytes the waiting spans hold ([`HeldSpan::footprint`]), with the bookkeeping of
    /// their traces (entries in the tables and queues, not the tables' spare room, which
    /// [`Assembler::poll`] keeps under four times what is used).
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Traces waiting.
    #[cfg(test)]
    pub(crate) fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    /// Takes the counters accumulated since the last call.
    pub(crate) fn take_stats(&mut self) -> AssemblyStats {
        std::mem::take(&mut self.stats)
    }

    /// Adds the spans of a batch (encoded, then held like a WAL record's) that is not in
    /// the WAL.
    #[cfg(test)]
    pub(crate) fn add(&mut self, batch: &SpanBatch, now: Instant) {
        let record = prost::Message::encode_to_vec(batch);
        // Cannot fail: prost wrote the record.
        self.add_held(hold_record(&record).unwrap_or_default(), WalPos::default(), now);
    }

    /// Adds the spans of an encoded record, the WAL record at `pos`.
    pub(crate) fn add_record(
        &mut self,
        record: &[u8],
        pos: WalPos,
        now: Instant,
    ) -> Result<usize, slo_store::wire::WireError> {
        let held = hold_record(record)?;
        let n = held.len();
        self.add_held(held, pos, now);
        Ok(n)
    }

    /// Adds the spans of the WAL record at `pos` that `in_flight` lists as pending at the
    /// last flush (a restart resuming from the retained WAL).
    pub(crate) fn resume(
        &mut self,
        in_flight: &InFlight,
        record: &[u8],
        pos: WalPos,
        now: Instant,
    ) -> Result<usize, slo_store::wire::WireError> {
        let mut held = hold_record(record)?;
        held.retain(|(id, _)| in_flight.wants(id, pos));
        for (_, h) in &mut held {
            h.stored = in_flight.stored_at_receipt;
        }
        let n = held.len();
        self.add_held(held, pos, now);
        Ok(n)
    }

    /// Adds held spans from the WAL record at `pos`.
    pub(crate) fn add_held(&mut self, spans: Vec<(TraceId, HeldSpan)>, pos: WalPos, now: Instant) {
        let idle = self.idle();
        for (id, span) in spans {
            if let Some(decision) = self.emitted.get(&id) {
                self.stats.late_spans += 1;
                match decision {
                    Some(sampled) => self.late_kept.push((span, *sampled)),
                    None => self.stats.late_unsampled += 1,
                }
                continue;
            }
            let entry = self.pending.entry(id).or_insert_with(|| {
                self.arrival.push_back(id);
                self.pending_bytes += PER_TRACE;
                Pending { spans: Vec::with_capacity(1), from: pos, first_seen: now, last_seen: now }
            });
            self.pending_bytes += span.footprint() + PER_SPAN;
            entry.spans.push(span);
            entry.last_seen = now;
            self.pending_spans += 1;
            self.timers.push_back((now + idle, id));
        }
    }

    fn remember(&mut self, id: TraceId) {
        if self.cfg.remember_emitted == 0 {
            return;
        }
        if self.emitted.insert(id, None).is_none() {
            self.emitted_order.push_back(id);
        }
        while self.emitted_order.len() > self.cfg.remember_emitted {
            if let Some(old) = self.emitted_order.pop_front() {
                self.emitted.remove(&old);
            }
        }
    }

    /// Records that an emitted trace's spans were stored, so that its late spans are too.
    pub(crate) fn stored(&mut self, id: &TraceId, sampled: Sampled) {
        if let Some(d) = self.emitted.get_mut(id) {
            *d = Some(sampled);
        }
    }

    /// Late spans of stored traces since the last call.
    pub(crate) fn take_late_kept(&mut self) -> Vec<(HeldSpan, Sampled)> {
        std::mem::take(&mut self.late_kept)
    }

    fn take(&mut self, id: &TraceId) -> Option<Vec<HeldSpan>> {
        let p = self.pending.remove(id)?;
        self.pending_spans -= p.spans.len();
        self.pending_bytes -= PER_TRACE + p.spans.iter().map(|h| h.footprint() + PER_SPAN).sum::<usize>();
        self.remember(*id);
        Some(p.spans)
    }

    fn verdict(&self, p: &Pending, now: Instant) -> Option<Emission> {
        if now.duration_since(p.first_seen) >= self.max_wait() {
            let complete = has_entry(&p.spans);
            return Some(if complete { Emission::Complete } else { Emission::Timeout });
        }
        if now.duration_since(p.last_seen) >= self.idle() && has_entry(&p.spans) {
            return Some(Emission::Complete);
        }
        None
    }

    /// Emits the traces that are due at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Emitted {
        let mut out = Emitted::default();
        let max_wait = self.max_wait();
        while let Some(&(due, id)) = self.timers.front() {
            if due > now {
                break;
            }
            self.timers.pop_front();
            let Some(p) = self.pending.get(&id) else { continue };
            match self.verdict(p, now) {
                Some(reason) => {
                    if let Some(spans) = self.take(&id) {
                        out.push(id, spans, reason);
                    }
                }
                None if now.duration_since(p.last_seen) >= self.idle() => {
                    // No entry span yet: look again when max_wait runs out. Timers stay
                    // ordered because this is pushed behind every timer due earlier.
                    let at = (p.first_seen + max_wait).max(now);
                    self.insert_timer(at, id);
                }
                None => {} // a later span pushed a later timer
            }
        }
        while self.pending_spans > self.cfg.max_pending_spans || self.pending_bytes > self.cfg.max_pending_bytes {
            let Some(id) = self.arrival.pop_front() else { break };
            if let Some(spans) = self.take(&id) {
                out.push(id, spans, Emission::Forced);
            }
        }
        // Traces mostly leave in the order they came: drop the emitted ones at the front
        // (one lookup each). One held to `max_wait` stops that, so the ids behind it are
        // swept when they have grown to twice the pending traces.
        while let Some(front) = self.arrival.front() {
            if self.pending.contains_key(front) {
                break;
            }
            self.arrival.pop_front();
        }
        if self.arrival.len() > 2 * self.pending.len() + 1024 {
            let pending = &self.pending;
            self.arrival.retain(|id| pending.contains_key(id));
        }
        self.shrink();
        out
    }

    /// Gives back the room a burst left in the table of traces and the queues once under
    /// a quarter of it is used (a table or queue keeps its largest size otherwise), down
    /// to twice what is used: each shrink follows at least as many removals as it moves
    /// entries.
    fn shrink(&mut self) {
        let loose = |used: usize, room: usize| room > SHRINK_FLOOR && used < room / 4;
        if loose(self.pending.len(), self.pending.capacity()) {
            self.pending.shrink_to(2 * self.pending.len());
        }
        if loose(self.arrival.len(), self.arrival.capacity()) {
            self.arrival.shrink_to(2 * self.arrival.len());
        }
        if loose(self.timers.len(), self.timers.capacity()) {
            self.timers.shrink_to(2 * self.timers.len());
        }
    }

    fn insert_timer(&mut self, at: Instant, id: TraceId) {
        let pos = self.timers.partition_point(|(t, _)| *t <= at);
        self.timers.insert(pos, (at, id));
    }

    /// Emits every pending trace (end of an import).
    pub(crate) fn drain(&mut self) -> Emitted {
        let mut out = Emitted::default();
        let ids: Vec<TraceId> = self.arrival.drain(..).collect();
        for id in ids {
            if let Some(spans) = self.take(&id) {
                out.push(id, spans, Emission::Drained);
            }
        }
        self.timers.clear();
        out
    }

    /// The state file of the traces pending now, by where their spans start in the WAL, so
    /// that a restart picks up where this left off ([`in_flight::encode`]); and the oldest
    /// WAL segment it needs kept.
    pub(crate) fn in_flight_file(&self, stored_at_receipt: bool) -> (Option<u64>, Vec<u8>) {
        in_flight::encode(self.pending.iter().map(|(id, p)| (id, p.from)), stored_at_receipt)
    }

    /// Restores a state file of the format before [`InFlight`] (the pending spans as one
    /// `SpanBatch`); the traces wait anew from `now`.
    pub(crate) fn restore_spans(&mut self, bytes: &[u8], now: Instant) -> Result<usize, slo_store::wire::WireError> {
        self.add_record(bytes, WalPos::default(), now)
    }
}

/// Whether a trace has its entry span: a root, or a server/consumer span whose parent is
/// not in the trace.
fn has_entry(spans: &[HeldSpan]) -> bool {
    if spans.iter().any(|s| s.parent.is_none()) {
        return true;
    }
    // Most traces are a few spans: comparing ids costs less than building a set of them.
    if spans.len() <= SMALL_TRACE {
        return spans.iter().any(|s| s.is_entry(|p| spans.iter().any(|o| o.span_id == *p)));
    }
    let present: HashSet<[u8; 8]> = spans.iter().map(|s| s.span_id).collect();
    spans.iter().any(|s| s.is_entry(|p| present.contains(p)))
}

/// Traces of up to this many spans are searched span by span rather than through a set.
const SMALL_TRACE: usize = 16;

#[cfg(test)]
mod tests;
