//! What the dashboard shows, computed from rollups and changes: a service's series over a
//! range (percentiles, the p99's queue and compute, TTFT, rate, errors, tokens), one line
//! per service for the overview, and which changes belong on a service's charts.
//!
//! Everything here reads the per-minute rollups (never the raw rows), so a page over a day
//! or a week costs a merge of sketches per bucket, not a scan. The JSON shapes are the
//! contract of `/api/v1/series`, `/api/v1/services` and `/api/v1/changes` (README, "The
//! dashboard and its API").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rollup::{Cell, MINUTE_NS, Rollups};
use crate::source::Change;
use crate::text::rfc3339;

/// The bucket width for a range, on whole minutes so that buckets are merges of whole
/// rollup cells: 60 to 170 buckets for the picker's ranges (1h, 6h, 24h, 7d) and longer
/// ones; a range just past a step's end gets fewer (3h 1m: 37 of 5 minutes).
pub fn step_for(range: i64) -> i64 {
    let minutes = (range / MINUTE_NS).max(1);
    let step = match minutes {
        0..=180 => 1,
        181..=720 => 5,
        721..=1440 => 10,
        1441..=4320 => 30,
        _ => 60,
    };
    // Longer ranges than a week keep about 170 buckets.
    let step = step.max(minutes / 170);
    step * MINUTE_NS
}

/// One bucket of a service's series. Durations in ms; `None` where the bucket has no
/// requests (a gap on the chart, not a zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the bucket, RFC 3339.
    pub time: String,
    /// Start of the bucket, ms since the epoch (for charts).
    pub t_ms: i64,
    /// Requests that started in the bucket.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests per second over the bucket.
    pub rate: f64,
    /// Duration percentiles.
    pub p50: Option<f64>,
    /// 95th percentile of duration.
    pub p95: Option<f64>,
    /// 99th percentile of duration.
    pub p99: Option<f64>,
    /// 99th percentile of queue time.
    pub queue_p99: Option<f64>,
    /// 99th percentile of compute time.
    pub compute_p99: Option<f64>,
    /// 99th percentile of time to first token.
    pub ttft_p99: Option<f64>,
    /// Prompt tokens per second.
    pub input_tokens_rate: f64,
    /// Output tokens per second.
    pub output_tokens_rate: f64,
}

/// A service's series over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    /// The service.
    pub service: String,
    /// The model, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Start of the range, RFC 3339.
    pub from: String,
    /// End of the range, RFC 3339.
    pub to: String,
    /// Bucket width, seconds.
    pub step_s: i64,
    /// Buckets, oldest first, every bucket of the range (empty ones with no percentiles).
    pub points: Vec<Point>,
}

fn q(cell: &Cell, f: impl Fn(&Cell) -> &crate::sketch::Sketch, p: f64) -> Option<f64> {
    f(cell).quantile(p).map(round2)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The point of one merged bucket starting at `start`, `step` ns wide.
pub fn point(start: i64, step: i64, cell: &Cell) -> Point {
    let secs = step as f64 / 1e9;
    Point {
        time: rfc3339(start),
        t_ms: start / 1_000_000,
        requests: cell.count,
        errors: cell.errors,
        rate: round2(cell.count as f64 / secs),
        p50: q(cell, |c| &c.duration, 0.5),
        p95: q(cell, |c| &c.duration, 0.95),
        p99: q(cell, |c| &c.duration, 0.99),
        queue_p99: q(cell, |c| &c.queue, 0.99),
        compute_p99: q(cell, |c| &c.compute, 0.99),
        ttft_p99: q(cell, |c| &c.ttft, 0.99),
        input_tokens_rate: round2(cell.input_tokens.sum() / secs),
        output_tokens_rate: round2(cell.output_tokens.sum() / secs),
    }
}

/// The series of `service` (one model, or all) over `[from, to)` in buckets of `step`
/// (aligned to `from`, which callers put on a minute).
pub fn series(rollups: &Rollups, service: &str, model: Option<&str>, from: i64, to: i64, step: i64) -> SeriesReport {
    let step = step.max(MINUTE_NS);
    let minutes = rollups.minutes(service, model, from, to);
    let n = ((to - from) + step - 1) / step;
    let mut cells: Vec<Cell> = vec![Cell::default(); n.max(0) as usize];
    for (minute, cell) in &minutes {
        let i = ((minute - from) / step) as usize;
        if let Some(c) = cells.get_mut(i) {
            c.merge(cell);
        }
    }
    SeriesReport {
        service: service.to_string(),
        model: model.map(str::to_string),
        from: rfc3339(from),
        to: rfc3339(to),
        step_s: step / 1_000_000_000,
        points: cells.iter().enumerate().map(|(i, c)| point(from + i as i64 * step, step, c)).collect(),
    }
}

/// How recent "now" is on the overview: the newest minutes whose p99 is compared with the
/// rest of the range.
pub const RECENT: i64 = 5 * MINUTE_NS;

/// One service on the overview: its traffic and tail now against the rest of the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLine {
    /// The service.
    pub service: String,
    /// Its models, as spans name them.
    pub models: Vec<String>,
    /// Requests in the range.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests per second over the last [`RECENT`].
    pub rate_now: f64,
    /// p99 of the last [`RECENT`], ms.
    pub p99_now: Option<f64>,
    /// The typical p99 of the range before the last [`RECENT`]: the median of its
    /// per-minute p99s (a spike earlier in the range does not make the baseline), ms.
    pub p99_baseline: Option<f64>,
    /// `p99_now / p99_baseline`.
    pub p99_ratio: Option<f64>,
    /// p99 of queue time over p99 of duration, last [`RECENT`]: how much of the tail
    /// waiting alone could make (the request-level split is explain's `queue_share`).
    pub queue_p99_share: Option<f64>,
    /// p99 per bucket over the range, for a sparkline (`None`: no requests).
    pub sparkline: Vec<Option<f64>>,
    /// Start of the newest minute with requests, RFC 3339.
    pub last_seen: Option<String>,
}

/// A line per service with requests in `[from, to)`, by name.
pub fn service_lines(rollups: &Rollups, from: i64, to: i64) -> Vec<ServiceLine> {
    let step = step_for(to - from);
    let mut out = Vec::new();
    for (service, models) in rollups.services() {
        let minutes = rollups.minutes(&service, None, from, to);
        if minutes.values().all(|c| c.count == 0) {
            continue;
        }
        let mut all = Cell::default();
        let mut now = Cell::default();
        let mut before: Vec<f64> = Vec::new();
        for (m, c) in &minutes {
            all.merge(c);
            if *m >= to - RECENT {
                now.merge(c)
            } else if let Some(p) = c.duration.quantile(0.99) {
                before.push(p)
            }
        }
        before.sort_by(f64::total_cmp);
        let sparkline = series(rollups, &service, None, from, to, step).points.into_iter().map(|p| p.p99).collect();
        let p99_now = q(&now, |c| &c.duration, 0.99);
        let p99_baseline = before.get(before.len() / 2).map(|v| round2(*v));
        let queue_now = q(&now, |c| &c.queue, 0.99);
        out.push(ServiceLine {
            service: service.clone(),
            models,
            requests: all.count,
            errors: all.errors,
            rate_now: round2(now.count as f64 / (RECENT as f64 / 1e9)),
            p99_now,
            p99_baseline,
            p99_ratio: match (p99_now, p99_baseline) {
                (Some(a), Some(b)) if b > 0.0 => Some(round2(a / b)),
                _ => None,
            },
            queue_p99_share: match (queue_now, p99_now) {
                (Some(qv), Some(d)) if d > 0.0 => Some(round2((qv / d).min(1.0))),
                _ => None,
            },
            sparkline,
            last_seen: minutes.iter().rev().find(|(_, c)| c.count > 0).map(|(m, _)| rfc3339(*m)),
        });
    }
    out
}

/// A change as the API gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeView {
    /// When, RFC 3339 (ms precision kept in `t_ms`).
    pub time: String,
    /// ms since the epoch.
    pub t_ms: i64,
    /// Cause taxonomy kind (`deploy`, `scale_down`, ...).
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// `kind/name`.
    pub object: String,
    /// Before (image, replicas, ...).
    pub from: String,
    /// After.
    pub to: String,
    /// Reason (Event reason or what the watch saw).
    pub reason: String,
    /// Message.
    pub message: String,
    /// Attributes (target, node, replicaset, ...).
    pub attributes: BTreeMap<String, String>,
}

impl From<&Change> for ChangeView {
    fn from(c: &Change) -> ChangeView {
        ChangeView {
            time: rfc3339(c.time),
            t_ms: c.time / 1_000_000,
            kind: c.kind.clone(),
            namespace: c.namespace.clone(),
            object: c.object.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            attributes: c.attributes.clone(),
        }
    }
}

/// Filters of the changes timeline; an empty filter keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Exact kind (`deploy`, `scale_down`, ...).
    pub kind: Option<String>,
    /// Part of the object (`llama-70b` matches `hpa/llama-70b` and its pods).
    pub object: Option<String>,
}

impl ChangeFilter {
    /// Whether `c` passes.
    pub fn keeps(&self, c: &Change) -> bool {
        self.namespace.as_deref().is_none_or(|n| c.namespace == n)
            && self.kind.as_deref().is_none_or(|k| c.kind == k)
            && self.object.as_deref().is_none_or(|o| c.object.contains(o))
    }
}

/// Whether `name` is one of `service`'s objects by the way Kubernetes names them: the
/// service's name and a dash (`llama-70b-x8b7569rl5`, `llama-70b-x8b7569rl5-gxvg9`).
pub fn named_after(service: &str, name: &str) -> bool {
    name.strip_prefix(service).is_some_and(|rest| rest.starts_with('-'))
}

/// Whether a change belongs on `service`'s charts: its own objects (the Deployment, HPA
/// or ScaledObject, ReplicaSets and pods named after it, or an HPA whose target is it),
/// and every node-level change (a node lost or added, a GPU throttled), since the
/// service's pods may run there. Explain decides what matters; the charts show what
/// happened around the service.
pub fn belongs_to(service: &str, c: &Change) -> bool {
    let (kind, name) = c.object.split_once('/').unwrap_or(("", c.object.as_str()));
    if kind == "node" {
        return true;
    }
    let named = |n: &str| n == service || named_after(service, n);
    named(name) || c.attributes.get("target").is_some_and(|t| named(t)) || c.attributes.values().any(|v| v == service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::Sketch;

    fn cell(n: u64, ms: f64) -> Cell {
        let mut s = Sketch::new();
        s.add_n(ms, n);
        let mut c = Cell { count: n, ..Cell::default() };
        c.duration = s.clone();
        c.queue = Sketch::new();
        c.queue.add_n(ms / 4.0, n);
        c.compute = s;
        c
    }

    #[test]
    fn steps_give_between_60_and_170_buckets() {
        // The picker's ranges and a month.
        for (range, want) in [(60, 1), (360, 5), (1440, 10), (7 * 1440, 60), (30 * 1440, 254)] {
            let step = step_for(range * MINUTE_NS) / MINUTE_NS;
            assert_eq!(step, want, "range {range} min");
            let n = range / step;
            assert!((60..=170).contains(&n), "{range} min in {n} buckets");
        }
    }

    #[test]
    fn a_series_has_every_bucket_and_gaps_where_nothing_ran() {
        let mut r = Rollups::new();
        let t0 = 1_000 * MINUTE_NS;
        r.insert("svc", "m1", t0, cell(60, 100.0));
        r.insert("svc", "m2", t0, cell(60, 300.0));
        r.insert("svc", "m1", t0 + 2 * MINUTE_NS, cell(120, 200.0));
        r.insert("other", "m1", t0, cell(5, 9999.0));
        let s = series(&r, "svc", None, t0, t0 + 4 * MINUTE_NS, MINUTE_NS);
        assert_eq!(s.points.len(), 4);
        assert_eq!(s.points[0].requests, 120);
        assert_eq!(s.points[0].rate, 2.0);
        let p99 = s.points[0].p99.unwrap();
        assert!((p99 - 300.0).abs() / 300.0 < 0.02, "{p99}");
        assert_eq!(s.points[1].requests, 0);
        assert_eq!(s.points[1].p99, None, "an empty bucket is a gap, not a zero");
        let one = series(&r, "svc", Some("m1"), t0, t0 + 4 * MINUTE_NS, 2 * MINUTE_NS);
        assert_eq!(one.points.len(), 2);
        assert_eq!(one.points[0].requests, 60);
        assert_eq!(one.points[1].requests, 120);
    }

    #[test]
    fn a_service_line_compares_the_last_minutes_with_the_rest() {
        let mut r = Rollups::new();
        let t0 = 1_000 * MINUTE_NS;
        for m in 0..60 {
            let ms = if m >= 55 { 500.0 } else { 100.0 };
            r.insert("svc", "m", t0 + m * MINUTE_NS, cell(60, ms));
        }
        let lines = service_lines(&r, t0, t0 + 60 * MINUTE_NS);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.requests, 3600);
        assert_eq!(l.rate_now, 1.0);
        let ratio = l.p99_ratio.unwrap();
        assert!((ratio - 5.0).abs() < 0.15, "{ratio}");
        assert!((l.queue_p99_share.unwrap() - 0.25).abs() < 0.02);
        assert_eq!(l.sparkline.len(), 60);
        assert_eq!(l.last_seen.as_deref(), Some(rfc3339(t0 + 59 * MINUTE_NS).as_str()));
        assert!(service_lines(&r, t0 + 120 * MINUTE_NS, t0 + 180 * MINUTE_NS).is_empty());
    }

    fn change(object: &str, attrs: &[(&str, &str)]) -> Change {
        Change {
            time: 0,
            kind: "deploy".into(),
            namespace: "default".into(),
            object: object.into(),
            from: String::new(),
            to: String::new(),
            reason: String::new(),
            message: String::new(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_service_s_charts_show_its_objects_and_the_nodes() {
        for o in ["deployment/llama-70b", "hpa/llama-70b", "pod/llama-70b-7d9f-abcde", "node/gpu-3"] {
            assert!(belongs_to("llama-70b", &change(o, &[])), "{o}");
        }
        assert!(belongs_to("llama-70b", &change("hpa/gateway", &[("target", "llama-70b")])));
        for o in ["deployment/llama-70b-canary2x", "deployment/embedder", "pod/llama-7b-abc"] {
            let keep = o.contains("canary2x");
            assert_eq!(belongs_to("llama-70b", &change(o, &[])), keep, "{o}");
        }
        let f = ChangeFilter { kind: Some("deploy".into()), object: Some("llama".into()), ..Default::default() };
        assert!(f.keeps(&change("deployment/llama-70b", &[])));
        assert!(!f.keeps(&change("deployment/embedder", &[])));
    }
}
