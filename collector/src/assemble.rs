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
use std::sync::Arc;
use std::time::{Duration, Instant};

use slo_store::Attr;
use slo_store::encoded::{ResourceView, Sampled, SpanView};
#[cfg(test)]
use slo_store::{SpanBatch, SpanRecord};

use crate::config::AssemblyConfig;

mod in_flight;
pub(crate) use in_flight::{InFlight, WalPos};

/// The resource a span came from, shared by the spans of one export.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resource {
    /// `service.name`.
    pub service: String,
    /// Resource attributes.
    pub attrs: Vec<Attr>,
}

impl Resource {
    /// A resource attribute.
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        slo_store::find_attr(&self.attrs, key)
    }
}

/// A span with its resource, decoded: what tests build traces from and compare with (the
/// ingest path reads held spans in place).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct TraceSpan {
    /// Where it came from.
    pub resource: Arc<Resource>,
    /// The span.
    pub span: SpanRecord,
}

/// A trace id.
pub(crate) type TraceId = [u8; 16];

/// A span waiting for its trace: its fields, and its name and attributes as text checked
/// once, as it was received. Emission splits the trace and stores sampled spans from this
/// text without reading or validating the span's encoding again (see [`crate::split`]).
/// It is the span's own copy, not a view into its WAL record: a record kept alive by one
/// slow trace would hold every other span of the export, so memory would no longer follow
/// `max_pending_spans`.
#[derive(Debug, Clone)]
pub(crate) struct HeldSpan {
    /// The name, then each attribute's key and value, back to back.
    text: Box<str>,
    /// Where each piece of `text` ends: the name, then a key and a value per attribute.
    ends: Ends,
    /// Trace and span ids of its links (a consumer's link to its producer).
    links: Box<[(TraceId, [u8; 8])]>,
    resource: Arc<Resource>,
    trace_id: TraceId,
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: i32,
    start_unix_nano: u64,
    end_unix_nano: u64,
    status_code: i32,
    /// Its `spans` row was built as it was received (a collector keeping every span), so
    /// emission must not store it again; one resumed after a restart carries what the
    /// collector that received it did (the state file says).
    pub(crate) stored: bool,
}

impl HeldSpan {
    /// Whether it is an entry span of a trace whose span ids `present` tells.
    fn is_entry(&self, present: impl Fn(&[u8; 8]) -> bool) -> bool {
        match self.parent {
            None => true,
            Some(p) => (self.kind == 2 || self.kind == 5) && !present(&p),
        }
    }

    /// Bytes it holds of its own: its text, offsets, links and fields (the resource is
    /// shared with the other spans of its resource and not counted).
    pub(crate) fn footprint(&self) -> usize {
        self.text.len() + self.ends.bytes() + std::mem::size_of_val(&*self.links) + std::mem::size_of::<HeldSpan>()
    }

    /// Its fields as a reader of an encoded span sees them (`raw` and `links` empty: see
    /// [`HeldSpan::attributes`] and [`HeldSpan::link_span_ids`]).
    pub(crate) fn view(&self) -> SpanView<'_> {
        SpanView {
            raw: &[],
            trace_id: &self.trace_id,
            span_id: &self.span_id,
            parent_span_id: self.parent.as_ref().map_or(&[], |p| p.as_slice()),
            name: &self.text[..self.ends.get(0)],
            kind: self.kind,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.end_unix_nano,
            status_code: self.status_code,
            links: &[],
        }
    }

    /// Appends its attributes to `out`, in the order they were received.
    pub(crate) fn attributes<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        let mut from = self.ends.get(0);
        // 1 + 2 per attribute: every key has its value.
        for i in (1..self.ends.len()).step_by(2) {
            let (k, v) = (self.ends.get(i), self.ends.get(i + 1));
            out.push((&self.text[from..k], &self.text[k..v]));
            from = v;
        }
    }

    /// Span ids of the spans it links to.
    pub(crate) fn link_span_ids(&self) -> impl Iterator<Item = &[u8]> {
        self.links.iter().map(|(_, s)| s.as_slice())
    }

    /// The resource it came from.
    pub(crate) fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Whether its status is an error.
    pub(crate) fn is_error(&self) -> bool {
        self.status_code == 2
    }

    /// The span decoded into owned fields.
    #[cfg(test)]
    pub(crate) fn decode(&self) -> TraceSpan {
        let v = self.view();
        let mut attrs = Vec::new();
        self.attributes(&mut attrs);
        let span = SpanRecord {
            trace_id: v.trace_id.to_vec(),
            span_id: v.span_id.to_vec(),
            parent_span_id: v.parent_span_id.to_vec(),
            name: v.name.to_string(),
            kind: v.kind,
            start_unix_nano: v.start_unix_nano,
            end_unix_nano: v.end_unix_nano,
            status_code: v.status_code,
            attributes: attrs.into_iter().map(|(k, v)| Attr::new(k, v)).collect(),
            links: self
                .links
                .iter()
                .map(|(t, s)| slo_store::LinkRef { trace_id: t.to_vec(), span_id: s.to_vec() })
                .collect(),
        };
        TraceSpan { resource: self.resource.clone(), span }
    }
}

/// Turns the spans of encoded records into [`HeldSpan`]s, sharing one [`Resource`] among
/// the spans of a resource.
#[derive(Debug, Default)]
pub(crate) struct Holder {
    current: Option<(usize, Arc<Resource>)>,
    record: Option<usize>,
}

impl Holder {
    /// The held span of `s` with its attributes `attrs`, a span of the record (or export)
    /// `key` names; `None` when its ids are not a trace span's (it is still in `spans`, it
    /// just makes no request row). Spans of one resource of one record share its
    /// [`Resource`].
    pub(crate) fn hold(
        &mut self,
        key: usize,
        r: &ResourceView<'_>,
        s: &SpanView<'_>,
        attrs: &[(&str, &str)],
    ) -> Option<(TraceId, HeldSpan)> {
        let resource = match &self.current {
            Some((index, res)) if *index == r.index && self.record == Some(key) => res.clone(),
            _ => {
                let res = Arc::new(Resource {
                    service: r.service.to_string(),
                    attrs: r.attrs.iter().map(|(k, v)| Attr::new(*k, *v)).collect(),
                });
                self.current = Some((r.index, res.clone()));
                self.record = Some(key);
                res
            }
        };
        let trace_id = TraceId::try_from(s.trace_id).ok()?;
        let span_id = <[u8; 8]>::try_from(s.span_id).ok()?;
        let parent = if s.parent_span_id.is_empty() { None } else { Some(<[u8; 8]>::try_from(s.parent_span_id).ok()?) };
        let len = s.name.len() + attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let ends = match u16::try_from(len) {
            Ok(_) => Ends::Short(ends_of(s.name, attrs)?),
            Err(_) => Ends::Long(ends_of(s.name, attrs)?),
        };
        let mut text = String::with_capacity(len);
        text.push_str(s.name);
        for (k, v) in attrs {
            text.push_str(k);
            text.push_str(v);
        }
        let links = if s.links.is_empty() { Box::default() } else { links_of(s.links) };
        let held = HeldSpan {
            text: text.into_boxed_str(),
            ends,
            links,
            resource,
            trace_id,
            span_id,
            parent,
            kind: s.kind,
            start_unix_nano: s.start_unix_nano,
            end_unix_nano: s.end_unix_nano,
            status_code: s.status_code,
            stored: false,
        };
        Some((trace_id, held))
    }
}

/// Where each piece of a held span's text ends: two bytes an offset while the text is
/// under 64 KiB (nearly every span), four beyond.
#[derive(Debug, Clone)]
enum Ends {
    Short(Box<[u16]>),
    Long(Box<[u32]>),
}

impl Ends {
    /// The end of piece `i`.
    fn get(&self, i: usize) -> usize {
        match self {
            Ends::Short(e) => usize::from(e[i]),
            Ends::Long(e) => e[i] as usize,
        }
    }

    /// Pieces.
    fn len(&self) -> usize {
        match self {
            Ends::Short(e) => e.len(),
            Ends::Long(e) => e.len(),
        }
    }

    /// Bytes the offsets take.
    fn bytes(&self) -> usize {
        match self {
            Ends::Short(e) => std::mem::size_of_val(&**e),
            Ends::Long(e) => std::mem::size_of_val(&**e),
        }
    }
}

/// The ends of a span's name and of each of its attributes' key and value, laid back to
/// back; `None` when one does not fit a `T`.
fn ends_of<T: TryFrom<usize>>(name: &str, attrs: &[(&str, &str)]) -> Option<Box<[T]>> {
    let mut at = name.len();
    let mut ends = Vec::with_capacity(1 + 2 * attrs.len());
    ends.push(T::try_from(at).ok()?);
    for (k, v) in attrs {
        at += k.len();
        ends.push(T::try_from(at).ok()?);
        at += v.len();
        ends.push(T::try_from(at).ok()?);
    }
    Some(ends.into_boxed_slice())
}

/// The links of a span's encoded links with a trace span's ids (others could never be
/// found in a trace). Unreadable links, which the collector's own encoding never gives,
/// are left out.
fn links_of(encoded: &[u8]) -> Box<[(TraceId, [u8; 8])]> {
    let mut read = Vec::new();
    if let Err(e) = slo_store::encoded::read_links(encoded, &mut read) {
        tracing::error!(error = %e, "a held span's links do not read; it is held without them");
    }
    read.into_iter().filter_map(|(t, s)| Some((TraceId::try_from(t).ok()?, <[u8; 8]>::try_from(s).ok()?))).collect()
}

/// The held spans of one encoded record.
pub(crate) fn hold_record(record: &[u8]) -> Result<Vec<(TraceId, HeldSpan)>, slo_store::wire::WireError> {
    let mut holder = Holder::default();
    let mut out = Vec::new();
    slo_store::encoded::visit_spans(record, |r, s, a| {
        out.extend(holder.hold(record.as_ptr() as usize, r, s, a));
        Ok::<_, slo_store::wire::WireError>(())
    })?;
    Ok(out)
}

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

    /// The traces pending now, by where their spans start in the WAL, so that a restart
    /// picks up where this left off.
    pub(crate) fn in_flight(&self) -> InFlight {
        InFlight::new(self.pending.iter().map(|(id, p)| (*id, p.from)).collect())
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
mod tests {
    use prost::Message;
    use slo_store::ResourceSpans;

    use super::*;

    fn span(trace: u8, id: u8, parent: Option<u8>, kind: i32) -> SpanRecord {
        SpanRecord {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            kind,
            start_unix_nano: 1,
            end_unix_nano: 2,
            ..Default::default()
        }
    }

    fn batch(spans: Vec<SpanRecord>) -> SpanBatch {
        SpanBatch {
            resources: vec![ResourceSpans { service: "s".into(), resource: vec![], spans }],
            ..Default::default()
        }
    }

    fn cfg() -> AssemblyConfig {
        AssemblyConfig {
            idle_ms: 100,
            max_wait_ms: 1000,
            max_pending_spans: 10,
            max_pending_bytes: usize::MAX,
            remember_emitted: 100,
        }
    }

    #[test]
    fn waits_for_children_then_emits_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Assembler::new(cfg());
        a.add(&batch(vec![span(1, 1, None, 2)]), t0);
        a.add(&batch(vec![span(1, 2, Some(1), 1)]), t0 + ms(50));
        assert!(a.poll(t0 + ms(120)).traces.is_empty(), "child reset the idle timer");
        let out = a.poll(t0 + ms(150));
        assert_eq!(out.traces.len(), 1);
        assert_eq!(out.traces[0].0.len(), 2);
        assert_eq!(out.traces[0].1, Emission::Complete);
        a.add(&batch(vec![span(1, 3, Some(1), 1)]), t0 + ms(200));
        assert_eq!(a.take_stats().late_spans, 1);
        assert_eq!(a.pending_spans(), 0);
    }

    /// A chain of `n` spans under a parent that is not in the trace, its top of `kind`.
    fn chain(trace: u8, n: u8, kind: i32) -> SpanBatch {
        let spans =
            (1..=n).map(|i| span(trace, i, Some(if i == 1 { 200 } else { i - 1 }), if i == 1 { kind } else { 1 }));
        batch(spans.collect())
    }

    #[test]
    fn an_entry_span_is_found_alike_in_traces_searched_span_by_span_and_through_a_set() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Assembler::new(AssemblyConfig { max_pending_spans: 1000, ..cfg() });
        // Below and above SMALL_TRACE: a server span under a remote parent is the entry
        // (emitted when idle); an internal one is not, so its trace waits for max_wait.
        for (trace, n) in [(1, 3), (2, SMALL_TRACE as u8), (3, SMALL_TRACE as u8 + 1), (4, 40)] {
            a.add(&chain(trace, n, 2), t0);
            a.add(&chain(trace + 100, n, 1), t0);
        }
        let idle = a.poll(t0 + ms(100));
        let mut complete: Vec<(u8, usize)> = idle
            .traces
            .iter()
            .map(|(spans, why)| {
                assert_eq!(*why, Emission::Complete);
                (spans[0].decode().span.trace_id[0], spans.len())
            })
            .collect();
        complete.sort();
        assert_eq!(complete, [(1, 3), (2, SMALL_TRACE), (3, SMALL_TRACE + 1), (4, 40)]);
        let late = a.poll(t0 + ms(1000));
        assert_eq!(late.traces.len(), 4);
        assert!(late.traces.iter().all(|(_, why)| *why == Emission::Timeout));
    }

    #[test]
    fn emitted_traces_leave_the_arrival_queue_as_they_go() {
        let t0 = Instant::now();
        let mut a = Assembler::new(AssemblyConfig { max_pending_spans: 1000, ..cfg() });
        // Fewer than the sweep's threshold (twice the pending traces plus 1,024), so only
        // the trim at the front can drop them.
        for t in 0..250u8 {
            a.add(&batch(vec![span(t, 1, None, 2)]), t0);
        }
        a.add(&batch(vec![span(250, 1, Some(9), 1)]), t0); // no entry: held to max_wait
        a.add(&batch(vec![span(251, 1, None, 2)]), t0 + Duration::from_millis(50));
        assert_eq!(a.poll(t0 + Duration::from_millis(100)).traces.len(), 250);
        // The held trace stops the trim; the one behind it stays until it goes too.
        assert_eq!(a.arrival.iter().map(|id| id[0]).collect::<Vec<_>>(), [250, 251]);
        assert_eq!(a.poll(t0 + Duration::from_millis(150)).traces.len(), 1);
        assert_eq!(a.arrival.len(), 2);
        assert_eq!(a.poll(t0 + Duration::from_millis(1000)).traces.len(), 1);
        assert!(a.arrival.is_empty());
    }

    #[test]
    fn the_room_a_burst_left_is_given_back() {
        let t0 = Instant::now();
        let mut a = Assembler::new(AssemblyConfig { max_pending_spans: 1 << 20, ..cfg() });
        let burst: Vec<SpanRecord> = (0..20_000u32)
            .map(|i| {
                let mut s = span(0, 1, None, 2);
                s.trace_id[..4].copy_from_slice(&i.to_be_bytes());
                s
            })
            .collect();
        a.add(&batch(burst), t0);
        let room = (a.pending.capacity(), a.arrival.capacity(), a.timers.capacity());
        assert!(room.0 >= 20_000 && room.1 >= 20_000 && room.2 >= 20_000, "{room:?}");
        a.add(&batch(vec![span(1, 1, None, 2)]), t0 + Duration::from_millis(150));
        assert_eq!(a.poll(t0 + Duration::from_millis(200)).traces.len(), 20_000);
        assert_eq!(a.pending_traces(), 1);
        let room = (a.pending.capacity(), a.arrival.capacity(), a.timers.capacity());
        assert!(room.0 < 1000 && room.1 < 1000 && room.2 < 1000, "{room:?}");
        // What is left still works.
        assert_eq!(a.poll(t0 + Duration::from_millis(700)).traces.len(), 1);
        assert_eq!((a.pending_spans(), a.pending_bytes()), (0, 0));
    }

    /// A held span's text and offsets take less than its encoding did: the text of a vLLM
    /// request span (the benchmark's 18 attributes, `examples/otlp_load.rs`) and two bytes
    /// an offset a piece, against a varint tag and length a piece.
    #[test]
    fn a_held_span_costs_less_than_its_encoding() {
        let values = [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.system", "vllm"),
            ("gen_ai.request.model", "meta-llama/Llama-3.1-70B-Instruct"),
            ("gen_ai.response.model", "meta-llama/Llama-3.1-70B-Instruct"),
            ("gen_ai.request.id", "chatcmpl-5f1d3c0b9a8e4f7d"),
            ("gen_ai.request.max_tokens", "512"),
            ("gen_ai.request.temperature", "0.7"),
            ("gen_ai.request.top_p", "0.95"),
            ("gen_ai.usage.prompt_tokens", "1834"),
            ("gen_ai.usage.completion_tokens", "211"),
            ("gen_ai.latency.time_in_queue", "0.04120000000000001"),
            ("gen_ai.latency.time_to_first_token", "0.18730000000000002"),
            ("gen_ai.latency.e2e", "2.9121"),
            ("gen_ai.latency.time_in_model_prefill", "0.14410000000000001"),
            ("gen_ai.latency.time_in_model_decode", "2.7208"),
            ("gen_ai.latency.time_in_model_inference", "2.8649000000000004"),
            ("http.route", "/v1/chat/completions"),
            ("server.port", "8000"),
        ];
        let mut s = span(1, 2, None, 2);
        s.name = "llm_request".into();
        s.attributes = values.iter().map(|(k, v)| Attr::new(*k, *v)).collect();
        let encoded = s.encoded_len();
        let record = batch(vec![s.clone()]).encode_to_vec();
        let held = hold_record(&record).unwrap().pop().unwrap().1;
        assert_eq!(held.decode().span, s);
        let (footprint, fields) = (held.footprint(), std::mem::size_of::<HeldSpan>());
        assert!(footprint - fields < encoded, "{footprint} - {fields} bytes held for {encoded} encoded");
    }

    /// A span of more than 64 KiB of text (a prompt kept with `redaction: keep`) is held
    /// whole, its offsets four bytes each.
    #[test]
    fn a_span_of_more_than_64_kib_of_text_is_held_whole() {
        let mut s = span(1, 2, None, 2);
        s.name = "llm_request".into();
        s.attributes = vec![
            Attr::new("gen_ai.prompt", "é".repeat(40_000)),
            Attr::new("gen_ai.request.model", "m"),
            Attr::new("", ""),
        ];
        let record = batch(vec![s.clone()]).encode_to_vec();
        let held = hold_record(&record).unwrap().pop().unwrap().1;
        assert!(matches!(held.ends, Ends::Long(_)));
        assert_eq!(held.decode().span, s);
        s.attributes.truncate(1);
        s.attributes[0].value.truncate(2 * 20_000);
        let held = hold_record(&batch(vec![s.clone()]).encode_to_vec()).unwrap().pop().unwrap().1;
        assert!(matches!(held.ends, Ends::Short(_)));
        assert_eq!(held.decode().span, s);
    }

    #[test]
    fn remote_parent_server_span_is_an_entry_but_orphan_child_waits() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Assembler::new(cfg());
        a.add(&batch(vec![span(2, 5, Some(9), 2)]), t0); // server span, remote parent
        a.add(&batch(vec![span(3, 6, Some(9), 1)]), t0); // internal span, parent missing
        let out = a.poll(t0 + ms(100));
        assert_eq!(out.traces.len(), 1);
        assert_eq!(out.traces[0].0[0].decode().span.trace_id, vec![2; 16]);
        assert!(a.poll(t0 + ms(999)).traces.is_empty());
        let out = a.poll(t0 + ms(1000));
        assert_eq!(out.traces[0].1, Emission::Timeout);
    }

    #[test]
    fn memory_budget_forces_oldest_out() {
        let t0 = Instant::now();
        let mut a = Assembler::new(cfg());
        for t in 0..12u8 {
            a.add(&batch(vec![span(t + 1, 1, Some(7), 1)]), t0);
        }
        let out = a.poll(t0);
        assert_eq!(out.traces.len(), 2);
        assert!(out.traces.iter().all(|(_, e)| *e == Emission::Forced));
        assert_eq!(out.traces[0].0[0].decode().span.trace_id, vec![1; 16]);
        assert_eq!(a.pending_spans(), 10);
        // Same-sized one-span traces: the bytes follow them in and out.
        let one = out.traces[0].0[0].footprint() + PER_SPAN + PER_TRACE;
        assert!(one > std::mem::size_of::<HeldSpan>() + std::mem::size_of::<Pending>());
        assert_eq!(a.pending_bytes(), 10 * one);
        assert_eq!(a.poll(t0 + Duration::from_millis(1000)).traces.len(), 10);
        assert_eq!((a.pending_spans(), a.pending_bytes()), (0, 0));
    }

    #[test]
    fn the_byte_budget_forces_oldest_out_whatever_the_span_count() {
        let t0 = Instant::now();
        let one = {
            let mut a = Assembler::new(cfg());
            a.add(&batch(vec![span(1, 1, Some(7), 1)]), t0);
            a.pending_bytes()
        };
        let mut a = Assembler::new(AssemblyConfig { max_pending_spans: 1_000, max_pending_bytes: 3 * one, ..cfg() });
        for t in 0..8u8 {
            a.add(&batch(vec![span(t + 1, 1, Some(7), 1)]), t0);
        }
        let out = a.poll(t0);
        assert_eq!(out.traces.len(), 5);
        assert!(out.traces.iter().all(|(_, e)| *e == Emission::Forced));
        assert_eq!(out.traces[0].0[0].decode().span.trace_id, vec![1; 16], "oldest first");
        assert_eq!((a.pending_spans(), a.pending_bytes()), (3, 3 * one));
    }

    #[test]
    fn in_flight_traces_resume_from_their_wal_records() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let pos = |segment, record| WalPos { segment, record };
        let record = |spans| batch(spans).encode_to_vec();
        // Trace 1 completes and is emitted; its late span starts a new pending entry in a
        // later record. Trace 4 waits for its entry span throughout.
        let r1 = record(vec![span(1, 1, None, 2), span(4, 2, Some(3), 1)]);
        let r2 = record(vec![span(1, 9, Some(1), 1), span(4, 5, Some(3), 1)]);
        let mut a = Assembler::new(AssemblyConfig { remember_emitted: 0, ..cfg() });
        a.add_record(&r1, pos(3, 0), t0).unwrap();
        assert_eq!(a.poll(t0 + ms(100)).traces.len(), 1);
        a.add_record(&r2, pos(4, 1), t0 + ms(100)).unwrap();
        let state = InFlight::decode(&a.in_flight().encode()).unwrap();
        assert_eq!(state.len(), 2);
        assert_eq!(state.keep_from(), Some(3));

        let mut b = Assembler::new(cfg());
        assert_eq!(b.resume(&state, &r1, pos(3, 0), t0).unwrap(), 1, "trace 1's emitted span stays out");
        assert_eq!(b.resume(&state, &r2, pos(4, 1), t0).unwrap(), 2);
        let mut restored: Vec<(Vec<u8>, Vec<u8>)> = b
            .drain()
            .traces
            .into_iter()
            .flat_map(|(s, _)| s)
            .map(|t| t.decode().span)
            .map(|s| (s.trace_id, s.span_id))
            .collect();
        restored.sort();
        let want = |t: u8, s: u8| (vec![t; 16], vec![s; 8]);
        assert_eq!(restored, vec![want(1, 9), want(4, 2), want(4, 5)]);
        assert!(Assembler::new(cfg()).in_flight().encode().is_empty());

        // Resumed spans say whether the collector that wrote the state stored them as it
        // received them (kept every span): then emission leaves them out of `spans`.
        for at_receipt in [false, true] {
            let state = InFlight::decode(&a.in_flight().with_stored_at_receipt(at_receipt).encode()).unwrap();
            let mut c = Assembler::new(cfg());
            c.resume(&state, &r2, pos(4, 1), t0).unwrap();
            let spans: Vec<HeldSpan> = c.drain().traces.into_iter().flat_map(|(s, _)| s).collect();
            assert!(!spans.is_empty() && spans.iter().all(|h| h.stored == at_receipt));
        }
    }

    #[test]
    fn older_state_files_of_pending_spans_still_restore() {
        let t0 = Instant::now();
        let old = batch(vec![span(1, 1, None, 2), span(4, 2, Some(3), 1)]).encode_to_vec();
        assert!(!InFlight::is_this_format(&old));
        let mut b = Assembler::new(cfg());
        assert_eq!(b.restore_spans(&old, t0).unwrap(), 2);
        assert_eq!(b.pending_traces(), 2);
    }
}
