//! OTLP protobuf straight to an encoded [`SpanBatch`] (the WAL record), in one pass.
//!
//! This is [`Converter::convert`] without the structs in between: the export is read in
//! place ([`slo_store::wire`]), each span is validated, its attributes redacted and
//! rendered, and the record is written as prost would encode the converted batch. Keys and
//! string values are copied once, from the request into the record. Span events and the
//! instrumentation scope are not stored, so they are checked only as far as their framing.
//! Array and map values (rare) go through prost and [`render`] like the slow path.
//!
//! [`Converter::transcode_with`] also hands each kept span to a callback, as
//! [`slo_store::encoded::visit_spans`] would read it back from the record: the ingest path
//! builds its `spans` rows and held spans there, so the record is not read again.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;
use slo_store::encoded::{ResourceView, SpanView};
use slo_store::wire::{
    self, Value, WireError, begin_message, end_message, put_bytes, put_fixed64, put_varint, put_varint_field,
    varint_len,
};

use crate::convert::{ConvertStats, Converter, Rejected, render, validate};
use crate::error::{Error, Result};
use crate::redact::{Redactor, Verdict, digest};
use crate::timegate::TimeGate;

/// An export, transcoded.
#[derive(Debug, Default)]
pub struct Transcoded {
    /// The encoded `SpanBatch`: the WAL record.
    pub record: Vec<u8>,
    /// Spans in the export.
    pub received: usize,
    /// Spans kept.
    pub accepted: usize,
    /// Spans rejected one by one.
    pub rejected: Rejected,
    /// What redaction did.
    pub stats: ConvertStats,
}

fn invalid(e: WireError) -> Error {
    Error::InvalidPayload(format!(
        "invalid OTLP protobuf ExportTraceServiceRequest: failed to decode Protobuf message: {e}"
    ))
}

/// The fields of one span the record keeps.
#[derive(Default)]
struct SpanFields<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent: &'a [u8],
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    status_code: i32,
    status_message: &'a str,
}

/// Where a kept attribute's value is: in the request, or rendered into [`Scratch::rendered`].
#[derive(Clone)]
enum Val<'a> {
    Input(&'a str),
    Rendered(std::ops::Range<usize>),
}

/// Scratch space reused from span to span.
#[derive(Default)]
struct Scratch<'a> {
    /// Redaction verdicts of the keys seen in this export.
    verdicts: Verdicts<'a>,
    attrs: Vec<&'a [u8]>,
    links: Vec<&'a [u8]>,
    /// Values rendered from non-string values (and digests) of the current span.
    rendered: String,
    /// The current span's attributes as stored, in order.
    kept: Vec<(&'a str, Val<'a>)>,
}

/// The redaction verdicts of the keys one export has used so far, in the order first seen:
/// keys repeat span after span, and judging one walks every content pattern (it was a
/// tenth of the server's CPU under the ingest benchmark). Spans of one source send their
/// keys in the same order, so the key after the one found last is compared first: most
/// keys are found at the first comparison instead of a search of the list (up to 64
/// comparisons), and a key found is not checked for UTF-8 again (its bytes equal a key
/// already checked). Bounded: keys past the first 64 are judged each time.
#[derive(Default)]
struct Verdicts<'a> {
    seen: Vec<(&'a str, Verdict)>,
    /// Where in `seen` the next key is likely to be.
    next: usize,
}

impl<'a> Verdicts<'a> {
    /// The key whose bytes are `raw`, as text, and its verdict; an error when it is not UTF-8.
    fn of(&mut self, redactor: &Redactor, raw: &'a [u8]) -> Result<(&'a str, Verdict), WireError> {
        let found = match self.seen.get(self.next) {
            Some((k, _)) if k.as_bytes() == raw => Some(self.next),
            _ => self.seen.iter().position(|(k, _)| k.as_bytes() == raw),
        };
        if let Some(i) = found {
            self.next = i + 1;
            return Ok(self.seen[i]);
        }
        let key = wire::utf8(raw)?;
        let v = redactor.verdict(key);
        if self.seen.len() < 64 {
            self.seen.push((key, v));
        }
        self.next = self.seen.len();
        Ok((key, v))
    }
}

impl Scratch<'_> {
    fn value<'s>(&'s self, v: &Val<'s>) -> &'s str {
        match v {
            Val::Input(s) => s,
            Val::Rendered(r) => &self.rendered[r.clone()],
        }
    }
}

/// An empty vector of the same allocation, free to hold borrows of another lifetime (the
/// in-place `collect` keeps the buffer).
fn recycle<'b>(mut v: Vec<(&str, &str)>) -> Vec<(&'b str, &'b str)> {
    v.clear();
    v.into_iter().map(|_| ("", "")).collect()
}

fn len_field(b: usize) -> usize {
    if b == 0 { 0 } else { 1 + varint_len(b as u64) + b }
}

/// Appends an `Attr` message as field `tag`.
fn put_attr(tag: u32, key: &str, value: &str, out: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | 2), out);
    put_varint((len_field(key.len()) + len_field(value.len())) as u64, out);
    put_bytes(1, key.as_bytes(), out);
    put_bytes(2, value.as_bytes(), out);
}

impl Converter {
    /// Transcodes an OTLP protobuf `ExportTraceServiceRequest`.
    pub fn transcode(&self, otlp: &[u8]) -> Result<Transcoded> {
        self.transcode_with(otlp, |_, _, _| {})
    }

    /// Transcodes, and calls `each` with every span kept, its resource and its attributes
    /// exactly as [`slo_store::encoded::visit_spans`] reads them from the record (the
    /// resource's `index` counts the export's resources, kept or not).
    pub fn transcode_with(
        &self,
        otlp: &[u8],
        each: impl FnMut(&ResourceView<'_>, &SpanView<'_>, &[(&str, &str)]),
    ) -> Result<Transcoded> {
        self.transcode_inner(otlp, each).map_err(invalid)
    }

    fn transcode_inner(
        &self,
        otlp: &[u8],
        mut each: impl FnMut(&ResourceView<'_>, &SpanView<'_>, &[(&str, &str)]),
    ) -> Result<Transcoded, WireError> {
        let mut t = Transcoded { record: Vec::with_capacity(otlp.len() + otlp.len() / 4), ..Default::default() };
        let mut scratch = Scratch::default();
        let mut gate = self.time_gate();
        let mut resource_attrs = Vec::new();
        let mut scopes: Vec<&[u8]> = Vec::new();
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut ri = 0usize;
        for field in wire::fields(otlp) {
            let (1, v) = field? else { continue };
            let resource_spans = v.bytes()?;
            let mut resources: Vec<&[u8]> = Vec::new();
            scopes.clear();
            for f in wire::fields(resource_spans) {
                match f? {
                    (1, v) => resources.push(v.bytes()?),
                    (2, v) => scopes.push(v.bytes()?),
                    (3, v) => {
                        v.str()?;
                    }
                    _ => {}
                }
            }
            // Resource attributes, redacted; the service is the first `service.name` kept.
            resource_attrs.clear();
            let mut service: Option<(usize, usize)> = None;
            let mut other_fields = false;
            for resource in resources {
                for f in wire::fields(resource) {
                    match f? {
                        (1, v) => {
                            let at = resource_attrs.len();
                            scratch.rendered.clear();
                            let kept = self.attr(
                                2,
                                v.bytes()?,
                                &mut resource_attrs,
                                &mut scratch.rendered,
                                &mut scratch.verdicts,
                                &mut t.stats,
                            )?;
                            if kept.is_some_and(|(k, _)| k == "service.name") && service.is_none() {
                                service = Some((at, resource_attrs.len()));
                            }
                        }
                        (2, v) => {
                            v.varint()?;
                        }
                        _ => other_fields = true,
                    }
                }
                // `entity_refs` and what later versions add: not stored, but a malformed
                // one fails the request, as in prost (checked once per resource).
                if std::mem::take(&mut other_fields) {
                    check::<Resource>(resource, "a resource does not decode")?;
                }
            }
            let service = match service {
                Some((from, to)) => match slo_store::encoded::attr(attr_body(&resource_attrs[from..to]))?.1 {
                    "" => "unknown_service",
                    s => s,
                },
                None => "unknown_service",
            };
            // The group and its spans are written into the record in place (the output is
            // about the size of the input, so the guessed length widths are mostly right).
            let record = &mut t.record;
            let group = begin_message(1, resource_spans.len(), record);
            put_bytes(1, service.as_bytes(), record);
            record.extend_from_slice(&resource_attrs);
            // The resource as a reader of the record sees it (once per resource: read back).
            let mut resource = ResourceView { index: ri, service, attrs: Vec::new() };
            for f in wire::fields(&resource_attrs) {
                if let (2, v) = f? {
                    resource.attrs.push(slo_store::encoded::attr(v.bytes()?)?);
                }
            }
            let mut kept = 0;
            for (si, scope) in scopes.iter().enumerate() {
                let mut pi = 0usize;
                for f in wire::fields(scope) {
                    match f? {
                        (1, v) => {
                            check::<InstrumentationScope>(v.bytes()?, "an instrumentation scope does not decode")?
                        }
                        (2, v) => {
                            t.received += 1;
                            let raw = v.bytes()?;
                            let open = begin_message(3, raw.len(), record);
                            match self.span(raw, &mut scratch, record, &mut t.stats, &mut gate)? {
                                Ok((view, links)) => {
                                    let body = end_message(open, record);
                                    kept += 1;
                                    let mut p = recycle(std::mem::take(&mut pairs));
                                    p.extend(scratch.kept.iter().map(|(k, v)| (*k, scratch.value(v))));
                                    let links = &record[body.end - links..body.end];
                                    each(&resource, &SpanView { raw: &record[body], links, ..view }, &p);
                                    pairs = recycle(p);
                                }
                                Err(problem) => {
                                    record.truncate(open.start);
                                    if t.rejected.spans == 0 {
                                        t.rejected.message =
                                            format!("resource_spans[{ri}].scope_spans[{si}].spans[{pi}]: {problem}");
                                    }
                                    t.rejected.spans += 1;
                                }
                            }
                            pi += 1;
                        }
                        (3, v) => {
                            v.str()?;
                        }
                        _ => {}
                    }
                }
            }
            if kept > 0 {
                end_message(group, record);
                t.accepted += kept;
            } else {
                record.truncate(group.start);
            }
            ri += 1;
        }
        Ok(t)
    }

    /// Reads a `KeyValue`, and unless redaction drops it, appends it as an `Attr` field
    /// `tag` (2 in a resource, 9 in a span). Returns the key and where its value is when it
    /// was kept (a rendered value is appended to `rendered`).
    fn attr<'a>(
        &self,
        tag: u32,
        raw: &'a [u8],
        out: &mut Vec<u8>,
        rendered: &mut String,
        verdicts: &mut Verdicts<'a>,
        stats: &mut ConvertStats,
    ) -> Result<Option<(&'a str, Val<'a>)>, WireError> {
        // The key's text and verdict, judged as it is read (a key given twice: the last).
        let (mut key, mut verdict) = ("", None);
        let mut any = None;
        // A value given more than once is merged, as prost merges it: decoding the
        // concatenated bodies is that merge (every body must decode, not just the last).
        let mut merged: Option<Vec<u8>> = None;
        for f in wire::fields(raw) {
            match f? {
                (1, v) => {
                    let (k, judged) = verdicts.of(&self.redactor, v.bytes()?)?;
                    (key, verdict) = (k, Some(judged));
                }
                (2, v) => {
                    let body = v.bytes()?;
                    match (&mut merged, any) {
                        (Some(m), _) => m.extend_from_slice(body),
                        (None, Some(first)) => merged = Some([first, body].concat()),
                        (None, None) => {}
                    }
                    any = Some(body);
                }
                // `key_strindex` (profiles): not used, but it must be a varint.
                (3, v) => {
                    v.varint()?;
                }
                _ => {}
            }
        }
        let from = rendered.len();
        let input = match (&merged, any) {
            (Some(m), _) => {
                self.render_decoded(m, rendered)?;
                None
            }
            (None, Some(any)) => self.render_any(any, rendered)?,
            (None, None) => None,
        };
        // A key left out is the empty key, judged as one.
        let verdict = match verdict {
            Some(v) => v,
            None => verdicts.of(&self.redactor, &[])?.1,
        };
        if verdict == Verdict::Drop {
            // The value is not stored, but a malformed one is still a malformed request.
            stats.redacted += 1;
            rendered.truncate(from);
            return Ok(None);
        }
        if verdict == Verdict::Hash {
            stats.redacted += 1;
            let d = digest(input.unwrap_or(&rendered[from..]));
            rendered.truncate(from);
            rendered.push_str(&d);
        }
        let val = match input {
            Some(s) if verdict != Verdict::Hash => Val::Input(s),
            _ => Val::Rendered(from..rendered.len()),
        };
        let value = match &val {
            Val::Input(s) => s,
            Val::Rendered(r) => &rendered[r.clone()],
        };
        put_attr(tag, key, value, out);
        Ok(Some((key, val)))
    }

    /// Decodes an `AnyValue` with prost and renders it as the struct path does.
    fn render_decoded(&self, raw: &[u8], out: &mut String) -> Result<(), WireError> {
        let any = AnyValue::decode(raw).map_err(|e| {
            if e.to_string().contains("recursion limit") {
                WireError("recursion limit reached")
            } else {
                WireError("invalid attribute value")
            }
        })?;
        render(&any, out, self.max_depth);
        Ok(())
    }

    /// Renders an `AnyValue` as [`render`] does: a string value is returned as it is in the
    /// request, anything else is appended to `out`.
    fn render_any<'a>(&self, raw: &'a [u8], out: &mut String) -> Result<Option<&'a str>, WireError> {
        // The usual value is one scalar field. Anything else (arrays, maps, a oneof field
        // set twice, which prost resolves by merging or by keeping the last) is decoded by
        // prost and rendered like the slow path, so both paths agree on every input.
        let mut only = None;
        let mut simple = true;
        for f in wire::fields(raw) {
            let (tag, v) = f?;
            if (1..=8).contains(&tag) {
                simple &= only.is_none() && !matches!(tag, 5 | 6);
                only = Some((tag, v));
            }
        }
        if !simple {
            self.render_decoded(raw, out)?;
            return Ok(None);
        }
        match only {
            None => {}
            Some((1, v)) => return Ok(Some(v.str()?)),
            Some((2, v)) => out.push_str(if v.varint()? != 0 { "true" } else { "false" }),
            Some((3, v)) => crate::convert::push_i64(v.varint()? as i64, out),
            Some((4, v)) => crate::convert::push_f64(f64::from_bits(v.fixed64()?), out),
            Some((7, v)) => out.push_str(&hex::encode(v.bytes()?)),
            // `string_value_strindex` belongs to profiles: taken as absent, as the spec asks.
            Some((_, v)) => {
                v.varint()?;
            }
        }
        Ok(None)
    }

    /// Reads one span and appends it to `out` as the body of an encoded `SpanRecord`
    /// (nothing when it is rejected), its stored attributes into `scratch.kept`; returns its
    /// fields (`raw` and `links` left empty) and the length of the links it wrote last, or
    /// in the inner `Err` why the span alone is rejected.
    fn span<'a>(
        &self,
        raw: &'a [u8],
        scratch: &mut Scratch<'a>,
        out: &mut Vec<u8>,
        stats: &mut ConvertStats,
        gate: &mut TimeGate,
    ) -> Result<Result<(SpanView<'a>, usize), String>, WireError> {
        let mut s = SpanFields::default();
        scratch.attrs.clear();
        scratch.links.clear();
        scratch.kept.clear();
        scratch.rendered.clear();
        for f in wire::fields(raw) {
            match f? {
                (1, v) => s.trace_id = v.bytes()?,
                (2, v) => s.span_id = v.bytes()?,
                (3, v) => {
                    v.str()?;
                }
                (4, v) => s.parent = v.bytes()?,
                (5, v) => s.name = v.str()?,
                (6, v) => s.kind = v.varint()? as i32,
                (7, v) => s.start = v.fixed64()?,
                (8, v) => s.end = v.fixed64()?,
                (9, v) => scratch.attrs.push(v.bytes()?),
                (10 | 12 | 14, v) => {
                    v.varint()?;
                }
                (11, v) => check::<Event>(v.bytes()?, "a span event does not decode")?,
                (13, v) => {
                    let link = v.bytes()?;
                    check::<Link>(link, "a span link does not decode")?;
                    scratch.links.push(link);
                }
                (15, v) => {
                    for g in wire::fields(v.bytes()?) {
                        match g? {
                            (2, v) => s.status_message = v.str()?,
                            (3, v) => s.status_code = v.varint()? as i32,
                            _ => {}
                        }
                    }
                }
                (16, Value::Fixed32(_)) => {}
                (16, _) => return Err(WireError("invalid wire type for a fixed32 field")),
                _ => {}
            }
        }
        let verdict = validate(s.trace_id, s.span_id, s.parent, s.start, s.end)
            .and_then(|()| gate.check(s.start, s.end.max(s.start)));
        if let Err(problem) = verdict {
            // Still read its attributes: a malformed value fails the request, as in prost.
            let mut sink = Vec::new();
            for a in std::mem::take(&mut scratch.attrs) {
                self.attr(9, a, &mut sink, &mut scratch.rendered, &mut scratch.verdicts, &mut ConvertStats::default())?;
                sink.clear();
                scratch.rendered.clear();
            }
            return Ok(Err(problem));
        }
        put_bytes(1, s.trace_id, out);
        put_bytes(2, s.span_id, out);
        put_bytes(3, s.parent, out);
        put_bytes(4, s.name.as_bytes(), out);
        put_varint_field(5, s.kind as i64 as u64, out);
        put_fixed64(6, s.start, out);
        put_fixed64(7, s.end.max(s.start), out);
        put_varint_field(8, s.status_code as i64 as u64, out);
        for a in &scratch.attrs {
            if let Some(kept) = self.attr(9, a, out, &mut scratch.rendered, &mut scratch.verdicts, stats)? {
                scratch.kept.push(kept);
            }
        }
        if !s.status_message.is_empty() {
            const KEY: &str = "otel.status_description";
            match self.redactor.status_verdict() {
                Verdict::Keep => {
                    put_attr(9, KEY, s.status_message, out);
                    scratch.kept.push((KEY, Val::Input(s.status_message)));
                }
                Verdict::Hash => {
                    stats.redacted += 1;
                    let from = scratch.rendered.len();
                    scratch.rendered.push_str(&digest(s.status_message));
                    put_attr(9, KEY, &scratch.rendered[from..], out);
                    scratch.kept.push((KEY, Val::Rendered(from..scratch.rendered.len())));
                }
                Verdict::Drop => stats.redacted += 1,
            }
        }
        let links_from = out.len();
        for link in &scratch.links {
            let (mut tid, mut sid): (&[u8], &[u8]) = (&[], &[]);
            for g in wire::fields(link) {
                match g? {
                    (1, v) => tid = v.bytes()?,
                    (2, v) => sid = v.bytes()?,
                    (3, v) => {
                        v.str()?;
                    }
                    _ => {}
                }
            }
            if tid.len() == 16 && sid.len() == 8 {
                put_varint(10 << 3 | 2, out);
                put_varint((len_field(16) + len_field(8)) as u64, out);
                put_bytes(1, tid, out);
                put_bytes(2, sid, out);
            }
        }
        let view = SpanView {
            raw: &[],
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent,
            name: s.name,
            kind: s.kind,
            start_unix_nano: s.start,
            end_unix_nano: s.end.max(s.start),
            status_code: s.status_code,
            links: &[],
        };
        Ok(Ok((view, out.len() - links_from)))
    }
}

/// Whether `raw` decodes as an `M`: the parts of an export that are not stored (scopes,
/// events, links' attributes, resource entities) are still checked as prost checks them,
/// so the protobuf path refuses exactly what the struct path refuses.
fn check<M: Message + Default>(raw: &[u8], problem: &'static str) -> Result<(), WireError> {
    M::decode(raw).map(|_| ()).map_err(|_| WireError(problem))
}

/// The body of the single `Attr` message in `encoded` (tag and length stripped).
fn attr_body(encoded: &[u8]) -> &[u8] {
    let mut rest = encoded;
    let _ = wire::read_varint(&mut rest);
    let _ = wire::read_varint(&mut rest);
    rest
}

/// Spans in an OTLP protobuf export, counted from its framing only.
pub(crate) fn count_spans(otlp: &[u8]) -> Result<usize, WireError> {
    let mut n = 0;
    for field in wire::fields(otlp) {
        let (1, v) = field? else { continue };
        for f in wire::fields(v.bytes()?) {
            let (2, v) = f? else { continue };
            for g in wire::fields(v.bytes()?) {
                if let (2, _) = g? {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
