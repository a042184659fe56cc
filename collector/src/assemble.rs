//! Trace assembly: spans of one trace arrive in different exports, from different
//! services; hold them by trace id until the trace is complete, within bounds.
//!
//! A trace is complete when its entry span (a span without a parent, or a server/consumer
//! span whose parent is remote) has arrived and no span came for `idle`; it is emitted
//! regardless `max_wait` after its first span. Beyond `max_pending_spans`, the oldest
//! traces are emitted early. Spans for a trace already emitted are counted as late; they
//! are in `spans`, but do not change the request row. Time is passed in, so tests drive it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use slo_store::{Attr, SpanBatch, SpanRecord};

use crate::config::AssemblyConfig;

/// The resource a span came from, shared by the spans of one export.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `service.name`.
    pub service: String,
    /// Resource attributes.
    pub attrs: Vec<Attr>,
}

impl Resource {
    /// A resource attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        slo_store::records::find_attr(&self.attrs, key)
    }
}

/// A span with its resource.
#[derive(Debug, Clone)]
pub struct TraceSpan {
    /// Where it came from.
    pub resource: Arc<Resource>,
    /// The span.
    pub span: SpanRecord,
}

type TraceId = [u8; 16];

#[derive(Debug)]
struct Pending {
    spans: Vec<TraceSpan>,
    first_seen: Instant,
    last_seen: Instant,
}

/// Why a trace was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emission {
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
pub struct Emitted {
    /// Traces, each with the reason it was emitted.
    pub traces: Vec<(Vec<TraceSpan>, Emission)>,
}

/// Counters the pipeline turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Spans that arrived after their trace was emitted.
    pub late_spans: u64,
}

/// Holds spans by trace id.
#[derive(Debug)]
pub struct Assembler {
    cfg: AssemblyConfig,
    pending: HashMap<TraceId, Pending>,
    /// Trace ids in order of first arrival (may hold ids already emitted).
    arrival: VecDeque<TraceId>,
    /// Trace ids to look at, with when to look (ascending).
    timers: VecDeque<(Instant, TraceId)>,
    pending_spans: usize,
    emitted: HashSet<TraceId>,
    emitted_order: VecDeque<TraceId>,
    stats: AssemblyStats,
}

fn is_entry(span: &SpanRecord, present: &HashSet<&[u8]>) -> bool {
    span.is_root() || ((span.kind == 2 || span.kind == 5) && !present.contains(span.parent_span_id.as_slice()))
}

impl Assembler {
    /// An empty assembler.
    pub fn new(cfg: AssemblyConfig) -> Self {
        Assembler {
            cfg,
            pending: HashMap::new(),
            arrival: VecDeque::new(),
            timers: VecDeque::new(),
            pending_spans: 0,
            emitted: HashSet::new(),
            emitted_order: VecDeque::new(),
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
    pub fn pending_spans(&self) -> usize {
        self.pending_spans
    }

    /// Traces waiting.
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }

    /// Takes the counters accumulated since the last call.
    pub fn take_stats(&mut self) -> AssemblyStats {
        std::mem::take(&mut self.stats)
    }

    /// Adds the spans of a batch.
    pub fn add(&mut self, batch: SpanBatch, now: Instant) {
        let idle = self.idle();
        for rs in batch.resources {
            let resource = Arc::new(Resource { service: rs.service, attrs: rs.resource });
            for span in rs.spans {
                let Ok(id) = TraceId::try_from(span.trace_id.as_slice()) else { continue };
                if self.emitted.contains(&id) {
                    self.stats.late_spans += 1;
                    continue;
                }
                let entry = self.pending.entry(id).or_insert_with(|| {
                    self.arrival.push_back(id);
                    Pending { spans: Vec::new(), first_seen: now, last_seen: now }
                });
                entry.spans.push(TraceSpan { resource: resource.clone(), span });
                entry.last_seen = now;
                self.pending_spans += 1;
                self.timers.push_back((now + idle, id));
            }
        }
    }

    fn remember(&mut self, id: TraceId) {
        if self.cfg.remember_emitted == 0 {
            return;
        }
        if self.emitted.insert(id) {
            self.emitted_order.push_back(id);
        }
        while self.emitted_order.len() > self.cfg.remember_emitted {
            if let Some(old) = self.emitted_order.pop_front() {
                self.emitted.remove(&old);
            }
        }
    }

    fn take(&mut self, id: &TraceId) -> Option<Vec<TraceSpan>> {
        let p = self.pending.remove(id)?;
        self.pending_spans -= p.spans.len();
        self.remember(*id);
        Some(p.spans)
    }

    fn verdict(&self, p: &Pending, now: Instant) -> Option<Emission> {
        if now.duration_since(p.first_seen) >= self.max_wait() {
            let present: HashSet<&[u8]> = p.spans.iter().map(|s| s.span.span_id.as_slice()).collect();
            let complete = p.spans.iter().any(|s| is_entry(&s.span, &present));
            return Some(if complete { Emission::Complete } else { Emission::Timeout });
        }
        if now.duration_since(p.last_seen) >= self.idle() {
            let present: HashSet<&[u8]> = p.spans.iter().map(|s| s.span.span_id.as_slice()).collect();
            if p.spans.iter().any(|s| is_entry(&s.span, &present)) {
                return Some(Emission::Complete);
            }
        }
        None
    }

    /// Emits the traces that are due at `now`.
    pub fn poll(&mut self, now: Instant) -> Emitted {
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
                        out.traces.push((spans, reason));
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
        while self.pending_spans > self.cfg.max_pending_spans {
            let Some(id) = self.arrival.pop_front() else { break };
            if let Some(spans) = self.take(&id) {
                out.traces.push((spans, Emission::Forced));
            }
        }
        if self.arrival.len() > 2 * self.pending.len() + 1024 {
            let pending = &self.pending;
            self.arrival.retain(|id| pending.contains_key(id));
        }
        out
    }

    fn insert_timer(&mut self, at: Instant, id: TraceId) {
        let pos = self.timers.partition_point(|(t, _)| *t <= at);
        self.timers.insert(pos, (at, id));
    }

    /// Emits every pending trace (end of an import).
    pub fn drain(&mut self) -> Emitted {
        let mut out = Emitted::default();
        let ids: Vec<TraceId> = self.arrival.drain(..).collect();
        for id in ids {
            if let Some(spans) = self.take(&id) {
                out.traces.push((spans, Emission::Drained));
            }
        }
        self.timers.clear();
        out
    }

    /// The pending spans, encoded, so that a restart picks up where this left off.
    pub fn snapshot(&self) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint, message, string};
        // Encoded straight from the pending spans, as a `SpanBatch` (field 1: resources;
        // in each, 1: service, 2: resource attributes, 3: spans), without cloning them.
        fn close(out: &mut Vec<u8>, group: &mut Vec<u8>) {
            if !group.is_empty() {
                encode_key(1, WireType::LengthDelimited, out);
                encode_varint(group.len() as u64, out);
                out.extend_from_slice(group);
                group.clear();
            }
        }
        let mut out = Vec::new();
        let mut group = Vec::new();
        let mut current: Option<&Arc<Resource>> = None;
        let mut seen = HashSet::with_capacity(self.pending.len());
        for id in &self.arrival {
            if !seen.insert(id) {
                continue;
            }
            let Some(p) = self.pending.get(id) else { continue };
            for ts in &p.spans {
                let same = current.is_some_and(|c| Arc::ptr_eq(c, &ts.resource) || **c == *ts.resource);
                if !same {
                    close(&mut out, &mut group);
                    string::encode(1, &ts.resource.service, &mut group);
                    for a in &ts.resource.attrs {
                        message::encode(2, a, &mut group);
                    }
                    current = Some(&ts.resource);
                }
                message::encode(3, &ts.span, &mut group);
            }
        }
        close(&mut out, &mut group);
        out
    }

    /// Restores a snapshot; the traces wait anew from `now`.
    pub fn restore(&mut self, bytes: &[u8], now: Instant) -> Result<usize, prost::DecodeError> {
        let batch = SpanBatch::decode(bytes)?;
        let n = batch.span_count();
        self.add(batch, now);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
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
        AssemblyConfig { idle_ms: 100, max_wait_ms: 1000, max_pending_spans: 10, remember_emitted: 100 }
    }

    #[test]
    fn waits_for_children_then_emits_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Assembler::new(cfg());
        a.add(batch(vec![span(1, 1, None, 2)]), t0);
        a.add(batch(vec![span(1, 2, Some(1), 1)]), t0 + ms(50));
        assert!(a.poll(t0 + ms(120)).traces.is_empty(), "child reset the idle timer");
        let out = a.poll(t0 + ms(150));
        assert_eq!(out.traces.len(), 1);
        assert_eq!(out.traces[0].0.len(), 2);
        assert_eq!(out.traces[0].1, Emission::Complete);
        a.add(batch(vec![span(1, 3, Some(1), 1)]), t0 + ms(200));
        assert_eq!(a.take_stats().late_spans, 1);
        assert_eq!(a.pending_spans(), 0);
    }

    #[test]
    fn remote_parent_server_span_is_an_entry_but_orphan_child_waits() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Assembler::new(cfg());
        a.add(batch(vec![span(2, 5, Some(9), 2)]), t0); // server span, remote parent
        a.add(batch(vec![span(3, 6, Some(9), 1)]), t0); // internal span, parent missing
        let out = a.poll(t0 + ms(100));
        assert_eq!(out.traces.len(), 1);
        assert_eq!(out.traces[0].0[0].span.trace_id, vec![2; 16]);
        assert!(a.poll(t0 + ms(999)).traces.is_empty());
        let out = a.poll(t0 + ms(1000));
        assert_eq!(out.traces[0].1, Emission::Timeout);
    }

    #[test]
    fn memory_budget_forces_oldest_out() {
        let t0 = Instant::now();
        let mut a = Assembler::new(cfg());
        for t in 0..12u8 {
            a.add(batch(vec![span(t + 1, 1, Some(7), 1)]), t0);
        }
        let out = a.poll(t0);
        assert_eq!(out.traces.len(), 2);
        assert!(out.traces.iter().all(|(_, e)| *e == Emission::Forced));
        assert_eq!(out.traces[0].0[0].span.trace_id, vec![1; 16]);
        assert_eq!(a.pending_spans(), 10);
    }

    #[test]
    fn snapshot_restores_pending_traces() {
        let t0 = Instant::now();
        let mut a = Assembler::new(cfg());
        a.add(batch(vec![span(1, 1, None, 2), span(4, 2, Some(3), 1)]), t0);
        let snap = a.snapshot();
        let mut b = Assembler::new(cfg());
        assert_eq!(b.restore(&snap, t0).unwrap(), 2);
        assert_eq!(b.pending_traces(), 2);
        let mut restored: Vec<SpanRecord> = b.drain().traces.into_iter().flat_map(|(s, _)| s).map(|t| t.span).collect();
        restored.sort_by(|x, y| x.trace_id.cmp(&y.trace_id));
        assert_eq!(restored, vec![span(1, 1, None, 2), span(4, 2, Some(3), 1)]);
        assert!(Assembler::new(cfg()).snapshot().is_empty());
    }
}
