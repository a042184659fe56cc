//! From an assembled trace to `requests` rows: which spans are inference requests, and how
//! each one's latency splits into queue, compute and other (README, "How a request's latency is split").
//!
//! The request span `T` is the outermost span carrying `gen_ai.*` attributes (or, in a
//! trace without any, each entry span). Its envelope `E` is the top of `T`'s ancestor chain
//! within the trace (a gateway's server span) when `T` is its only request; the row's
//! duration is `E`'s, its identity (service, pod, node, model) `T`'s. The split comes from
//! the first rule that applies, and `split_source` names it:
//!
//! 1. `attributes`: latency attributes on `T` (vLLM's `gen_ai.latency.*`);
//! 2. `child_spans`: spans below `E` whose names match the queue or compute patterns
//!    (overlaps merged, so nested spans are not counted twice);
//! 3. `messaging`: a consumer span below `E` whose producer is in the trace: queue is the
//!    gap from the producer's end to the consumer's start, compute the consumer's span;
//! 4. `none`: all of `T` is compute.
//!
//! `other_ms = duration - queue - compute`, never negative (gateway, network, tokenizer).

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use slo_store::{Attr, RequestRef, RequestRow};

use slo_store::encoded::SpanView;

#[cfg(test)]
use crate::assemble::TraceSpan;
use crate::assemble::{HeldSpan, Resource};
use crate::config::{Role, SplitConfig};

mod scan;
use scan::{Found, LatencyNames, SpanScan};

/// Compiled split rules.
#[derive(Debug, Clone)]
pub(crate) struct Splitter {
    cfg: SplitConfig,
    latency: LatencyNames,
    queue: Vec<Regex>,
    compute: Vec<Regex>,
}

fn compile(patterns: &[String], what: &str) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|p| RegexBuilder::new(p).case_insensitive(true).build().map_err(|e| format!("split.{what}: {p:?}: {e}")))
        .collect()
}

/// A span as the split reads it, borrowed: from a decoded [`TraceSpan`], or in place from
/// a [`HeldSpan`]'s text (the ingest path, which so allocates no string per attribute of
/// every span it splits).
#[derive(Debug)]
struct SpanRef<'a> {
    resource: &'a Resource,
    /// Ids, name, kind, times and status (its `raw` is empty for a decoded span).
    v: SpanView<'a>,
    attributes: Vec<(&'a str, &'a str)>,
    /// Span ids of the spans it links to.
    links: Vec<&'a [u8]>,
}

impl<'a> SpanRef<'a> {
    #[cfg(test)]
    fn of_record(t: &'a TraceSpan) -> Self {
        let s = &t.span;
        let v = SpanView {
            raw: &[],
            trace_id: &s.trace_id,
            span_id: &s.span_id,
            parent_span_id: &s.parent_span_id,
            name: &s.name,
            kind: s.kind,
            start_unix_nano: s.start_unix_nano,
            end_unix_nano: s.end_unix_nano,
            status_code: s.status_code,
            links: &[],
        };
        SpanRef {
            resource: &t.resource,
            v,
            attributes: s.attributes.iter().map(|a| (a.key.as_str(), a.value.as_str())).collect(),
            links: s.links.iter().map(|l| l.span_id.as_slice()).collect(),
        }
    }

    fn of_held(h: &'a HeldSpan) -> Self {
        let (attributes, links) = (Vec::with_capacity(24), Vec::new());
        let mut r = SpanRef { resource: h.resource(), v: h.view(), attributes, links };
        r.refill(h);
        r
    }

    /// Becomes `h`'s view, keeping its lists' buffers.
    fn refill(&mut self, h: &'a HeldSpan) {
        self.resource = h.resource();
        self.v = h.view();
        self.attributes.clear();
        h.attributes(&mut self.attributes);
        self.links.clear();
        self.links.extend(h.link_span_ids());
    }
}

/// What splitting keeps from one trace to the next: the spans' views, with their attribute
/// lists, and the index lists of [`Splitter::rows_for`]. The ingest path splits traces of
/// one or two spans by the thousand a step, and the six or seven small allocations each
/// trace made without it were a fifth of what splitting it cost (`split_cost`).
#[derive(Default)]
pub(crate) struct SplitScratch<'a> {
    /// The current trace's views in `[..n]`; those beyond keep their buffers for later.
    refs: Vec<SpanRef<'a>>,
    /// The current request span's attributes that are not columns.
    kept: Vec<(&'a str, &'a str)>,
    lists: Lists,
    /// The last request span's resource and the keys a row reads from it: the spans of an
    /// export mostly share one resource, and its ~10 attributes were scanned for each row.
    resource: Option<(&'a Resource, Found<'a>)>,
}

/// Span indexes [`Splitter::rows_for`] lists, cleared for each trace.
#[derive(Default)]
struct Lists {
    inference: Vec<usize>,
    tops: Vec<usize>,
    roots: Vec<usize>,
    shared: Vec<bool>,
}

fn is_inference(s: &SpanRef) -> bool {
    s.attributes.iter().any(|(k, _)| {
        k.starts_with("gen_ai.latency.")
            || k.starts_with("gen_ai.usage.")
            || matches!(*k, "gen_ai.request.model" | "gen_ai.response.model" | "gen_ai.operation.name")
    })
}

/// A CLIENT or PRODUCER span: the caller's side of a call.
fn is_outbound(s: &SpanRef) -> bool {
    matches!(s.v.kind, 3 | 4)
}

/// Lengths of the union of intervals, in ms.
fn union_ms(mut iv: Vec<(u64, u64)>) -> f64 {
    iv.sort_unstable();
    let mut total = 0u64;
    let mut cur: Option<(u64, u64)> = None;
    for (s, e) in iv {
        match &mut cur {
            Some((_, ce)) if s <= *ce => *ce = (*ce).max(e),
            _ => {
                if let Some((cs, ce)) = cur {
                    total += ce - cs;
                }
                cur = Some((s, e));
            }
        }
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total as f64 / 1e6
}

struct Split {
    queue: f64,
    compute: f64,
    ttft: Option<f64>,
    source: &'static str,
}

/// Traces up to this many spans are searched linearly rather than through hash maps (most
/// traces the split sees are one model server span, or a gateway and a server span).
const SMALL_TRACE: usize = 16;

struct Trace<'s, 'a> {
    spans: &'s [SpanRef<'a>],
    /// Span ids and parent ids to indexes, for traces over [`SMALL_TRACE`] spans.
    index: Option<Index<'a>>,
}

struct Index<'a> {
    by_id: HashMap<&'a [u8], usize>,
    children: HashMap<&'a [u8], Vec<usize>>,
}

impl<'s, 'a> Trace<'s, 'a> {
    fn new(spans: &'s [SpanRef<'a>]) -> Self {
        if spans.len() <= SMALL_TRACE {
            return Trace { spans, index: None };
        }
        let mut by_id = HashMap::with_capacity(spans.len());
        for (i, s) in spans.iter().enumerate() {
            by_id.entry(s.v.span_id).or_insert(i);
        }
        let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, s) in spans.iter().enumerate() {
            if !s.v.parent_span_id.is_empty() {
                children.entry(s.v.parent_span_id).or_default().push(i);
            }
        }
        Trace { spans, index: Some(Index { by_id, children }) }
    }

    /// The span with this id (the first, when a client sent duplicates).
    fn find(&self, id: &[u8]) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.by_id.get(id).copied(),
            None => self.spans.iter().position(|s| s.v.span_id == id),
        }
    }

    fn parent(&self, i: usize) -> Option<usize> {
        let p = self.spans[i].v.parent_span_id;
        if p.is_empty() {
            return None;
        }
        self.find(p).filter(|&j| j != i)
    }

    /// Ancestors of `i`, nearest first (cycle-safe).
    fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = i;
        while let Some(p) = self.parent(cur) {
            if out.contains(&p) || out.len() > self.spans.len() {
                break;
            }
            out.push(p);
            cur = p;
        }
        out
    }

    /// Every span below `i` (not `i` itself).
    fn descendants(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![i];
        let mut seen = vec![false; self.spans.len()];
        seen[i] = true;
        let mut visit = |c: usize, stack: &mut Vec<usize>| {
            if !seen[c] {
                seen[c] = true;
                out.push(c);
                stack.push(c);
            }
        };
        while let Some(cur) = stack.pop() {
            let id = self.spans[cur].v.span_id;
            match &self.index {
                Some(ix) => {
                    for &c in ix.children.get(id).into_iter().flatten() {
                        visit(c, &mut stack);
                    }
                }
                None => {
                    for (c, s) in self.spans.iter().enumerate() {
                        if !s.v.parent_span_id.is_empty() && s.v.parent_span_id == id {
                            visit(c, &mut stack);
                        }
                    }
                }
            }
        }
        out
    }
}

impl Splitter {
    /// Compiles the rules; an invalid pattern is named in the error.
    pub(crate) fn new(cfg: &SplitConfig) -> Result<Self, String> {
        Ok(Splitter {
            queue: compile(&cfg.queue_span_patterns, "queue_span_patterns")?,
            compute: compile(&cfg.compute_span_patterns, "compute_span_patterns")?,
            latency: LatencyNames::new(&cfg.attributes),
            cfg: cfg.clone(),
        })
    }

    /// The request rows of one assembled trace of decoded spans: the reference the tests
    /// hold [`Splitter::held_requests`] to.
    #[cfg(test)]
    pub(crate) fn requests(&self, spans: &[TraceSpan]) -> Vec<RequestRow> {
        let refs: Vec<SpanRef> = spans.iter().map(SpanRef::of_record).collect();
        let mut rows = Vec::new();
        let _ = self.rows_for(&refs, &mut Lists::default(), &mut None, |t, row, scan| {
            let attributes = spans[t]
                .span
                .attributes
                .iter()
                .enumerate()
                .filter(|(i, a)| !self.in_columns(row, scan, *i, &a.key, &a.value))
                .map(|(_, a)| a.clone())
                .collect();
            rows.push(RequestRow { attributes, ..row.to_row() });
            Ok::<_, std::convert::Infallible>(())
        });
        rows
    }

    /// The request rows of one assembled trace, its spans read in place where they are
    /// held (the ingest path).
    pub(crate) fn held_requests(&self, spans: &[HeldSpan]) -> Vec<RequestRow> {
        let mut rows = Vec::new();
        let _ = self.each_held_request(spans, &mut SplitScratch::default(), |row, attrs| {
            let attributes = attrs.iter().map(|(k, v)| Attr { key: k.to_string(), value: v.to_string() }).collect();
            rows.push(RequestRow { attributes, ..row.to_row() });
            Ok::<_, std::convert::Infallible>(())
        });
        rows
    }

    /// Calls `f` with each request row of a held trace and the request span's attributes
    /// that are not already columns, both read in place: the ingest path appends them to
    /// Arrow builders without owning a copy of any string. `scratch` is reused from trace
    /// to trace.
    pub(crate) fn each_held_request<'a, E>(
        &self,
        spans: &'a [HeldSpan],
        scratch: &mut SplitScratch<'a>,
        mut f: impl FnMut(&RequestRef, &[(&str, &str)]) -> Result<(), E>,
    ) -> Result<(), E> {
        let SplitScratch { refs, kept, lists, resource } = scratch;
        for (i, h) in spans.iter().enumerate() {
            match refs.get_mut(i) {
                Some(r) => r.refill(h),
                None => refs.push(SpanRef::of_held(h)),
            }
        }
        let refs = &refs[..spans.len()];
        self.rows_for(refs, lists, resource, |t, row, scan| {
            kept.clear();
            let attributes = refs[t].attributes.iter().copied().enumerate();
            kept.extend(attributes.filter(|&(i, (k, v))| !self.in_columns(row, scan, i, k, v)).map(|(_, a)| a));
            f(row, kept)
        })
    }

    /// Whether the request span's attribute `key = value` is already in one of `row`'s
    /// columns, and so left out of `requests.attributes`: the latency attributes a split by
    /// `attributes` read, and token counts, model and operation names equal to the row's.
    /// Their raw values stay in `spans`; a copy in every request row would be a third of
    /// the table's bytes (vLLM's six latencies are 17-digit doubles).
    fn in_columns(&self, row: &RequestRef, scan: &SpanScan, i: usize, key: &str, value: &str) -> bool {
        let same_count =
            |column: Option<i64>| column.is_some() && value.parse::<f64>().ok().map(|v| v as i64) == column;
        match key {
            "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens" => same_count(row.input_tokens),
            "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens" => same_count(row.output_tokens),
            "gen_ai.response.model" | "gen_ai.request.model" => row.model == Some(value),
            "gen_ai.operation.name" => row.operation == Some(value),
            _ => row.split_source == "attributes" && scan.is_latency(i, key, &self.latency),
        }
    }

    /// Calls `f` with each row, the index of its request span and that span's scan;
    /// `resource` keeps the last resource's keys.
    fn rows_for<'a, E>(
        &self,
        spans: &[SpanRef<'a>],
        lists: &mut Lists,
        resource: &mut Option<(&'a Resource, Found<'a>)>,
        mut f: impl FnMut(usize, &RequestRef, &SpanScan) -> Result<(), E>,
    ) -> Result<(), E> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut hex = [0u8; 32];
        let trace_id = slo_store::encoded::hex_into(spans[0].v.trace_id, &mut hex);
        let trace = Trace::new(spans);
        let Lists { inference, tops, roots, shared } = lists;
        // A caller's own instrumentation (an OpenAI SDK, a load generator) adds CLIENT spans
        // with `gen_ai.*` attributes above the serving system's spans. The request is what the
        // servers did: client-side gen_ai spans count only when no server-side one exists.
        inference.clear();
        inference.extend((0..spans.len()).filter(|&i| is_inference(&spans[i])));
        if inference.iter().any(|&i| !is_outbound(&spans[i])) {
            inference.retain(|&i| !is_outbound(&spans[i]));
        }
        tops.clear();
        if inference.is_empty() {
            tops.extend((0..spans.len()).filter(|&i| trace.parent(i).is_none()));
        } else if inference.len() == 1 {
            tops.push(inference[0]);
        } else {
            let outermost = |&i: &usize| !trace.ancestors(i).iter().any(|a| inference.contains(a));
            tops.extend(inference.iter().copied().filter(outermost));
        }
        // The envelope of a top span: its topmost ancestor within the serving system (the
        // climb stops below a caller's CLIENT span), when no other top shares it.
        let root_of = |i: usize| {
            if is_outbound(&spans[i]) {
                return trace.ancestors(i).last().copied().unwrap_or(i);
            }
            trace.ancestors(i).into_iter().take_while(|&a| !is_outbound(&spans[a])).last().unwrap_or(i)
        };
        roots.clear();
        roots.extend(tops.iter().map(|&t| root_of(t)));
        shared.clear();
        if roots.len() <= SMALL_TRACE {
            shared.extend(roots.iter().map(|r| roots.iter().filter(|&x| x == r).count() > 1));
        } else {
            let mut per_root: HashMap<usize, usize> = HashMap::new();
            for &r in roots.iter() {
                *per_root.entry(r).or_default() += 1;
            }
            shared.extend(roots.iter().map(|r| per_root[r] > 1));
        }
        for ((&t, &r), &shared) in tops.iter().zip(roots.iter()).zip(shared.iter()) {
            let e = if shared { t } else { r };
            let scan = SpanScan::of(&spans[t].attributes, &self.latency);
            let r = spans[t].resource;
            let res = match resource {
                Some((last, found)) if std::ptr::eq(*last, r) => *found,
                _ => resource.insert((r, Found::of(r.attrs.iter().map(|a| (a.key.as_str(), a.value.as_str()))))).1,
            };
            f(t, &self.row(&trace, t, e, trace_id, &scan, &res), &scan)?;
        }
        Ok(())
    }

    fn attribute_split(&self, t: &SpanRef, scan: &SpanScan) -> Option<Split> {
        // The first configured attribute of each role that the span carries with a valid
        // value, parsed only for the roles the split needs.
        let value = |role: Role| {
            self.cfg.attributes.iter().enumerate().filter(|(_, a)| a.role == role).find_map(|(j, a)| {
                let v = scan.latency(j, &self.latency, &t.attributes)?.parse::<f64>().ok();
                v.filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * a.unit.to_ms())
            })
        };
        let queue = value(Role::Queue)?;
        let compute = value(Role::Compute)
            .or_else(|| Some(value(Role::Prefill)? + value(Role::Decode)?))
            .or_else(|| value(Role::E2e).map(|e| (e - queue).max(0.0)))
            .unwrap_or_else(|| (t.v.duration_ms() - queue).max(0.0));
        Some(Split { queue, compute, ttft: value(Role::Ttft), source: "attributes" })
    }

    fn child_split(&self, trace: &Trace, e: usize, t: usize) -> Option<Split> {
        let mut q = Vec::new();
        let mut c = Vec::new();
        for i in trace.descendants(e) {
            let s = &trace.spans[i];
            let iv = (s.v.start_unix_nano, s.v.end_unix_nano);
            if self.queue.iter().any(|r| r.is_match(s.v.name)) {
                q.push(iv);
            } else if i != t && self.compute.iter().any(|r| r.is_match(s.v.name)) {
                c.push(iv);
            }
        }
        if q.is_empty() && c.is_empty() {
            return None;
        }
        Some(Split { queue: union_ms(q), compute: union_ms(c), ttft: None, source: "child_spans" })
    }

    fn messaging_split(&self, trace: &Trace, e: usize) -> Option<Split> {
        let below = trace.descendants(e);
        for &i in std::iter::once(&e).chain(below.iter()) {
            let consumer = &trace.spans[i];
            if consumer.v.kind != 5 {
                continue;
            }
            let producer = trace
                .parent(i)
                .filter(|&p| trace.spans[p].v.kind == 4)
                .or_else(|| consumer.links.iter().find_map(|l| trace.find(l)).filter(|&p| trace.spans[p].v.kind == 4));
            if let Some(p) = producer {
                let p = &trace.spans[p];
                let queue = consumer.v.start_unix_nano.saturating_sub(p.v.end_unix_nano) as f64 / 1e6;
                return Some(Split { queue, compute: consumer.v.duration_ms(), ttft: None, source: "messaging" });
            }
        }
        None
    }

    fn row<'r>(
        &self,
        trace: &Trace<'_, 'r>,
        t: usize,
        e: usize,
        trace_id: &'r str,
        scan: &SpanScan<'r>,
        res: &Found<'r>,
    ) -> RequestRef<'r> {
        let ts = &trace.spans[t];
        let env = &trace.spans[e];
        let duration = env.v.duration_ms();
        let split = self
            .attribute_split(ts, scan)
            .or_else(|| self.child_split(trace, e, t))
            .or_else(|| self.messaging_split(trace, e))
            .unwrap_or(Split { queue: 0.0, compute: ts.v.duration_ms(), ttft: None, source: "none" });
        let queue = split.queue.min(duration);
        let compute = split.compute.min(duration - queue);
        let resource: &'r Resource = ts.resource;
        let span = &scan.found;
        // The resource's value, else the span's; an empty one is none.
        let get = |s: usize| res.get(s).or_else(|| span.get(s)).filter(|v| !v.is_empty());
        let int = |at: usize| {
            (at..at + scan::INPUT_TOKENS.len()).find_map(|s| span.get(s).and_then(|v| v.parse::<f64>().ok()))
        };
        let server_error = |found: &Found| {
            (scan::HTTP_AT..scan::HTTP_AT + scan::HTTP_STATUS.len())
                .any(|s| found.get(s).and_then(|v| v.parse::<u16>().ok()).is_some_and(|c| c >= 500))
        };
        let http_error = server_error(span) || (e != t && server_error(&Found::of(env.attributes.iter().copied())));
        let error = env.v.status_code == 2 || ts.v.status_code == 2 || http_error;
        let [namespace, deployment, replicaset, pod, node] = std::array::from_fn(|i| get(scan::K8S_AT + i));
        RequestRef {
            time_unix_nano: env.v.start_unix_nano,
            trace_id,
            service: &resource.service,
            namespace,
            deployment,
            replicaset,
            pod,
            node,
            gpu: (scan::GPU_AT..scan::GPU_AT + scan::GPU_KEYS.len()).find_map(get),
            model: (scan::MODEL_AT..scan::MODEL_AT + scan::MODEL.len()).find_map(|s| span.get(s)),
            operation: span.get(scan::OPERATION).or(Some(ts.v.name)),
            status: if error { "error" } else { "ok" },
            duration_ms: duration,
            queue_ms: queue,
            compute_ms: compute,
            other_ms: (duration - queue - compute).max(0.0),
            ttft_ms: split.ttft,
            input_tokens: int(scan::INPUT_AT).map(|v| v as i64),
            output_tokens: int(scan::OUTPUT_AT).map(|v| v as i64),
            split_source: split.source,
            attributes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
