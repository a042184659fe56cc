//! Tail sampling of `spans`: once a trace is assembled and its requests derived, decide
//! whether its raw spans are stored.
//!
//! Every trace gives its `requests` rows (what SLOs, `slo explain` and the dashboard read);
//! only the raw spans, kept for looking at single traces, are sampled. A trace is always
//! kept when one of its requests is slow (over its service's recent quantile, or over an
//! SLO threshold of that service) or failed, or when its service has too few recent
//! requests to say what slow is; of the rest, `keep_share` is kept, chosen by a fixed hash
//! of the trace id (so every collector and every restart keeps the same ones). Each stored span says why
//! (`sampled_by`) and how many traces it stands for (`adjusted_count`, 1/share for the
//! share), as the OpenTelemetry Collector's tail-sampling processor and probability
//! sampling's adjusted counts do. See ARCHITECTURE.md, "Tail sampling".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slo_analyzer::Sketch;
use slo_store::RequestRef;
use slo_store::encoded::{ResourceView, Sampled, SpansBuilder};

use crate::assemble::HeldSpan;

use crate::config::{SamplingConfig, SloThreshold};
use crate::sli::SliMetric;

/// Slots the recent window is cut into; the oldest is dropped as a new one starts.
const SLOTS: usize = 5;
/// Services with recent latencies of their own; the rest share one (a hostile sender
/// cannot grow this map by inventing service names). A slot's sketch holds at most about
/// 2,100 buckets of 8 bytes, so this bounds the whole at about 90 MB, and at a few KB a
/// service for real latencies (a few hundred buckets between 10 ms and a minute).
const MAX_SERVICES: usize = 1024;
/// How often a service's threshold is recomputed from its sketches.
const RECOMPUTE: Duration = Duration::from_secs(1);

/// What a trace's requests said so far (see [`Sampler::see`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TraceVerdict {
    error: bool,
    slow: bool,
    low_traffic: bool,
}

/// A service's latencies over the recent window: one DDSketch (the rollups' sketch, 1%
/// relative accuracy) per slot.
#[derive(Debug)]
struct Recent {
    slots: [Sketch; SLOTS],
    current: usize,
    slot_started: Instant,
    /// The cached threshold (ms) and when it was computed; `None` while too few requests.
    threshold: Option<f64>,
    computed: Option<Instant>,
}

impl Recent {
    fn new(now: Instant) -> Self {
        Recent { slots: Default::default(), current: 0, slot_started: now, threshold: None, computed: None }
    }

    fn rotate(&mut self, now: Instant, slot_len: Duration) {
        let mut steps = 0;
        while now.duration_since(self.slot_started) >= slot_len && steps < SLOTS {
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = Sketch::new();
            self.slot_started += slot_len;
            steps += 1;
        }
        if now.duration_since(self.slot_started) >= slot_len {
            // Idle for longer than the whole window: every slot is empty now.
            self.slot_started = now;
        }
    }

    fn observe(&mut self, ms: f64) {
        self.slots[self.current].add(ms);
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(Sketch::count).sum()
    }

    /// The `q` quantile, recomputed at most once a second (and as soon as there are
    /// `min_recent` requests); `None` while there are fewer.
    fn threshold(&mut self, now: Instant, min_recent: u64, q: f64) -> Option<f64> {
        let due = self.computed.is_none_or(|t| now.duration_since(t) >= RECOMPUTE)
            || (self.threshold.is_none() && self.total() >= min_recent);
        if due {
            self.threshold = if self.total() >= min_recent {
                let mut all = Sketch::new();
                self.slots.iter().for_each(|s| all.merge(s));
                all.quantile(q)
            } else {
                None
            };
            self.computed = Some(now);
        }
        self.threshold
    }
}

/// Where a trace id falls in `0..2^64`, for the share: a fixed mix of all 16 bytes, the
/// same in every collector and every version (W3C ids are random, but not every SDK's
/// are: sequential ids would otherwise all fall in the share).
fn share_draw(trace_id: &[u8; 16]) -> u64 {
    fn mix(mut z: u64) -> u64 {
        // splitmix64's finalizer.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let (hi, lo) = trace_id.split_at(8);
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    mix(mix(word(hi)) ^ word(lo))
}

/// The sampling decisions of one pipeline (one thread: no locks).
#[derive(Debug)]
pub(crate) struct Sampler {
    cfg: SamplingConfig,
    slot_len: Duration,
    /// `keep_share` as a bound on [`share_draw`].
    share_bound: u64,
    /// Keyed by names clients choose: aHash with random keys, as the assembler's map.
    recent: HashMap<String, Recent, ahash::RandomState>,
    /// SLO thresholds by service.
    slo: HashMap<String, Vec<(SliMetric, f64)>>,
}

const OTHER: &str = "\u{0}other";

impl Sampler {
    pub(crate) fn new(cfg: &SamplingConfig) -> Self {
        let share = cfg.keep_share.clamp(0.0, 1.0);
        let mut slo: HashMap<String, Vec<(SliMetric, f64)>> = HashMap::new();
        for SloThreshold { service, metric, threshold_ms } in &cfg.slo_thresholds {
            slo.entry(service.clone()).or_default().push((*metric, *threshold_ms));
        }
        Sampler {
            slot_len: Duration::from_secs(cfg.recent_s.max(SLOTS as u64)) / SLOTS as u32,
            share_bound: if share >= 1.0 { u64::MAX } else { (share * 2f64.powi(64)) as u64 },
            cfg: cfg.clone(),
            recent: HashMap::default(),
            slo,
        }
    }

    /// Whether every trace is kept (`keep_share` 1): no request needs judging.
    pub(crate) fn keeps_all(&self) -> bool {
        self.cfg.stores_every_span()
    }

    /// Judges one request of a trace into `v`, then adds it to its service's recent
    /// latencies (after judging: a request is not compared with itself).
    pub(crate) fn see(&mut self, v: &mut TraceVerdict, r: &RequestRef<'_>, now: Instant) {
        if self.keeps_all() {
            return;
        }
        v.error |= r.status == "error";
        let judge = !v.slow && !v.error;
        if judge && self.over_slo(r) {
            v.slow = true;
        }
        let (slot_len, min_recent, q) = (self.slot_len, self.cfg.min_recent as u64, self.cfg.slow_quantile);
        let Some(h) = self.recent_mut(r.service, now) else { return };
        h.rotate(now, slot_len);
        if judge && !v.slow {
            match h.threshold(now, min_recent, q) {
                Some(t) => v.slow = r.duration_ms > t,
                None => v.low_traffic = true,
            }
        }
        h.observe(r.duration_ms);
    }

    /// The service's recent latencies (past `MAX_SERVICES`, the shared ones), added if new
    /// (always `Some`).
    fn recent_mut(&mut self, service: &str, now: Instant) -> Option<&mut Recent> {
        let key = if self.recent.contains_key(service) || self.recent.len() < MAX_SERVICES { service } else { OTHER };
        if !self.recent.contains_key(key) {
            // A new service: the one allocation of its name.
            self.recent.insert(key.to_string(), Recent::new(now));
        }
        // Not the entry API: it would allocate the key on every call.
        self.recent.get_mut(key)
    }

    /// Whether a trace's spans are stored, and why; `span_error` says whether any of its
    /// spans failed. `None`: not stored.
    pub(crate) fn decide(&self, v: &TraceVerdict, trace_id: &[u8; 16], span_error: bool) -> Option<Sampled> {
        if self.keeps_all() {
            return Some(Sampled::ALL);
        }
        let keep = |by| Some(Sampled { by, adjusted_count: 1.0 });
        if v.error || span_error {
            return keep("error");
        }
        if v.slow {
            return keep("slow");
        }
        if v.low_traffic {
            return keep("low_traffic");
        }
        (share_draw(trace_id) < self.share_bound)
            .then(|| Sampled { by: "share", adjusted_count: 1.0 / self.cfg.keep_share })
    }

    fn over_slo(&self, r: &RequestRef<'_>) -> bool {
        if self.slo.is_empty() {
            return false;
        }
        let Some(thresholds) = self.slo.get(r.service) else { return false };
        thresholds.iter().any(|&(metric, t)| {
            let v = match metric {
                SliMetric::Duration => Some(r.duration_ms),
                SliMetric::Ttft => r.ttft_ms,
                SliMetric::Queue => Some(r.queue_ms),
                SliMetric::Compute => Some(r.compute_ms),
            };
            v.is_some_and(|v| v > t)
        })
    }

    /// The service's recent threshold, as [`Sampler::see`] reads it (tests).
    #[cfg(test)]
    fn threshold(&mut self, service: &str, now: Instant) -> Option<f64> {
        let (slot_len, min_recent, q) = (self.slot_len, self.cfg.min_recent as u64, self.cfg.slow_quantile);
        let h = self.recent_mut(service, now)?;
        h.rotate(now, slot_len);
        h.threshold(now, min_recent, q)
    }
}

/// Builds `spans` rows from held spans, reusing its scratch from span to span: spans of
/// one resource share its view, and the attributes' vector is cleared, not reallocated.
pub(crate) struct HeldRows<'a> {
    resource: Option<(&'a crate::assemble::Resource, ResourceView<'a>)>,
    attrs: Vec<(&'a str, &'a str)>,
}

impl<'a> HeldRows<'a> {
    pub(crate) fn new() -> Self {
        HeldRows { resource: None, attrs: Vec::with_capacity(24) }
    }

    /// Appends each `(span, decision)` to `rows` and counts it in `stored` by its
    /// decision's `sampled_by`; a span whose row was built as it was received
    /// ([`HeldSpan::stored`]) is only counted (as `all`, what its row says), and one that
    /// does not read is logged and skipped.
    pub(crate) fn append_each(
        &mut self,
        rows: &mut SpansBuilder,
        spans: impl IntoIterator<Item = (&'a HeldSpan, Sampled)>,
        stored: &mut HashMap<&'static str, u64>,
    ) {
        for (h, sampled) in spans {
            if h.stored {
                *stored.entry(Sampled::ALL.by).or_default() += 1;
                continue;
            }
            match self.append(rows, h, sampled) {
                Ok(()) => *stored.entry(sampled.by).or_default() += 1,
                Err(e) => tracing::error!(error = %e, "a held span's row was not built; not stored"),
            }
        }
    }

    /// Appends `h` to `rows`.
    pub(crate) fn append(
        &mut self,
        rows: &mut SpansBuilder,
        h: &'a HeldSpan,
        sampled: Sampled,
    ) -> slo_store::Result<()> {
        let res = h.resource();
        let view = match &mut self.resource {
            Some((r, view)) if std::ptr::eq(*r, res) => view,
            slot => {
                let view = ResourceView {
                    index: 0,
                    service: &res.service,
                    attrs: res.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect(),
                };
                &mut slot.insert((res, view)).1
            }
        };
        self.attrs.clear();
        h.attributes(&mut self.attrs);
        rows.append(view, &h.view(), &self.attrs, sampled)
    }
}

#[cfg(test)]
mod tests;
