//! Encoded [`SpanBatch`]es (WAL records) read in place, and `spans` rows built from them.
//!
//! This is the ingest fast path: the collector writes the record once, then the same bytes
//! give the WAL its record, the `spans` rows their strings and the assembler its spans,
//! without decoding into `String`s first. WAL replay reads records the same way.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder};
use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::records::SpanBatch;
use crate::schema::{self, col};
use crate::wire::{self, WireError};

/// A resource of an encoded batch.
#[derive(Debug, Default)]
pub struct ResourceView<'a> {
    /// Position among the batch's resources (0, 1, ...).
    pub index: usize,
    /// `service.name`.
    pub service: &'a str,
    /// The resource attributes.
    pub attrs: Vec<(&'a str, &'a str)>,
}

/// A span of an encoded batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanView<'a> {
    /// The whole encoded `SpanRecord`.
    pub raw: &'a [u8],
    /// Trace id.
    pub trace_id: &'a [u8],
    /// Span id.
    pub span_id: &'a [u8],
    /// Parent span id (empty for a root).
    pub parent_span_id: &'a [u8],
    /// Name.
    pub name: &'a str,
    /// OTLP kind.
    pub kind: i32,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// End, ns since the epoch.
    pub end_unix_nano: u64,
    /// OTLP status code.
    pub status_code: i32,
    /// Its encoded links: the span's `links` fields, from the first to the last (empty
    /// when it has none; [`read_links`] reads them).
    pub links: &'a [u8],
}

impl SpanView<'_> {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e6
    }
}

/// Reads an encoded `Attr`.
pub fn attr(raw: &[u8]) -> Result<(&str, &str), WireError> {
    // The shape slo's own encoder writes, a key then a value, each under 128 bytes: taken
    // in place (the emission of every trace reads each attribute of its request span again).
    if let [0x0a, key_len, rest @ ..] = raw
        && let Some((key, [0x12, value_len, value @ ..])) = rest.split_at_checked(usize::from(*key_len))
        && *key_len < 0x80
        && *value_len < 0x80
        && value.len() == usize::from(*value_len)
    {
        return Ok((wire::utf8(key)?, wire::utf8(value)?));
    }
    attr_by_fields(raw)
}

/// Reads an encoded `Attr` field by field, whatever its shape.
fn attr_by_fields(raw: &[u8]) -> Result<(&str, &str), WireError> {
    let (mut key, mut value) = ("", "");
    for f in wire::fields(raw) {
        match f? {
            (1, v) => key = v.str()?,
            (2, v) => value = v.str()?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// Reads one encoded `SpanRecord` in place: its fields, and its attributes into `attrs`.
pub fn read_span<'a>(raw: &'a [u8], attrs: &mut Vec<(&'a str, &'a str)>) -> Result<SpanView<'a>, WireError> {
    let mut s = SpanView { raw, ..Default::default() };
    let mut links: Option<(usize, usize)> = None;
    let mut fields = wire::fields(raw);
    loop {
        let at = raw.len() - fields.remaining();
        let Some(f) = fields.next() else { break };
        match f? {
            (1, v) => s.trace_id = v.bytes()?,
            (2, v) => s.span_id = v.bytes()?,
            (3, v) => s.parent_span_id = v.bytes()?,
            (4, v) => s.name = v.str()?,
            (5, v) => s.kind = v.varint()? as i32,
            (6, v) => s.start_unix_nano = v.fixed64()?,
            (7, v) => s.end_unix_nano = v.fixed64()?,
            (8, v) => s.status_code = v.varint()? as i32,
            (9, v) => attrs.push(attr(v.bytes()?)?),
            (10, v) => {
                v.bytes()?;
                let end = raw.len() - fields.remaining();
                links = Some((links.map_or(at, |(from, _)| from), end));
            }
            _ => {}
        }
    }
    if let Some((from, to)) = links {
        s.links = &raw[from..to];
    }
    Ok(s)
}

/// The trace and span ids of each link in a span's encoded links ([`SpanView::links`]);
/// other fields among them are skipped.
pub fn read_links<'a>(links: &'a [u8], out: &mut Vec<(&'a [u8], &'a [u8])>) -> Result<(), WireError> {
    for f in wire::fields(links) {
        if let (10, v) = f? {
            let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
            for g in wire::fields(v.bytes()?) {
                match g? {
                    (1, v) => trace = v.bytes()?,
                    (2, v) => span = v.bytes()?,
                    _ => {}
                }
            }
            out.push((trace, span));
        }
    }
    Ok(())
}

/// Calls `f` for every span of an encoded batch, with its resource and attributes. Returns
/// whether the batch also holds samples or changes (which this does not read).
pub fn visit_spans<'a, E>(
    record: &'a [u8],
    mut f: impl FnMut(&ResourceView<'a>, &SpanView<'a>, &[(&'a str, &'a str)]) -> Result<(), E>,
) -> Result<bool, E>
where
    E: From<WireError>,
{
    let mut cluster = false;
    let mut index = 0;
    let mut spans: Vec<&'a [u8]> = Vec::new();
    let mut attrs = Vec::new();
    for field in wire::fields(record) {
        match field? {
            (1, v) => {
                let mut resource = ResourceView { index, ..Default::default() };
                index += 1;
                spans.clear();
                for g in wire::fields(v.bytes()?) {
                    match g? {
                        (1, v) => resource.service = v.str()?,
                        (2, v) => resource.attrs.push(attr(v.bytes()?)?),
                        (3, v) => spans.push(v.bytes()?),
                        _ => {}
                    }
                }
                for raw in &spans {
                    attrs.clear();
                    let s = read_span(raw, &mut attrs)?;
                    f(&resource, &s, &attrs)?;
                }
            }
            (2 | 3, _) => cluster = true,
            _ => {}
        }
    }
    Ok(cluster)
}

/// The spans in an encoded batch.
pub fn span_count(record: &[u8]) -> Result<usize, WireError> {
    let mut n = 0;
    for field in wire::fields(record) {
        if let (1, v) = field? {
            for g in wire::fields(v.bytes()?) {
                if let (3, _) = g? {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Why a span's trace was stored, and how many traces it stands for: the `sampled_by`
/// and `adjusted_count` columns of `spans`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    /// `slow`, `error`, `share`, `all`, `unassembled` or `unflushed`.
    pub by: &'static str,
    /// 1, or 1/share for a trace kept by the sampled share.
    pub adjusted_count: f64,
}

impl Sampled {
    /// Every trace kept.
    pub const ALL: Sampled = Sampled { by: "all", adjusted_count: 1.0 };
    /// A span with no trace to decide on (its ids are not a trace span's): always kept.
    pub const UNASSEMBLED: Sampled = Sampled { by: "unassembled", adjusted_count: 1.0 };
}

/// Builds `spans` rows, one span at a time.
#[derive(Debug)]
pub struct SpansBuilder {
    time: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    trace: StringBuilder,
    span: StringBuilder,
    parent: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    service: StringBuilder,
    status: StringBuilder,
    duration: Float64Builder,
    resource: MapBuilder<StringBuilder, StringBuilder>,
    attrs: MapBuilder<StringBuilder, StringBuilder>,
    adjusted_count: Float64Builder,
    sampled_by: StringBuilder,
    rows: usize,
}

fn map_with_capacity(entries: usize, bytes: usize) -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::with_capacity(entries, bytes), StringBuilder::with_capacity(entries, bytes))
}

impl SpansBuilder {
    /// Room for `spans` rows of about `bytes` encoded bytes in all.
    pub fn with_capacity(spans: usize, bytes: usize) -> Self {
        let s = |per: usize| StringBuilder::with_capacity(spans, spans * per);
        SpansBuilder {
            time: TimestampNanosecondBuilder::with_capacity(spans),
            end: TimestampNanosecondBuilder::with_capacity(spans),
            trace: s(32),
            span: s(16),
            parent: s(16),
            name: s(16),
            kind: s(8),
            service: s(8),
            status: s(4),
            duration: Float64Builder::with_capacity(spans),
            resource: map_with_capacity(spans * 8, bytes / 2 + 64),
            attrs: map_with_capacity(spans * 20, bytes / 2 + 64),
            adjusted_count: Float64Builder::with_capacity(spans),
            sampled_by: s(5),
            rows: 0,
        }
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one span, with why its trace was stored.
    pub fn append(
        &mut self,
        r: &ResourceView<'_>,
        s: &SpanView<'_>,
        attrs: &[(&str, &str)],
        sampled: Sampled,
    ) -> Result<()> {
        let mut hex = [0u8; 32];
        self.time.append_value(s.start_unix_nano as i64);
        self.end.append_value(s.end_unix_nano as i64);
        self.trace.append_value(hex_into(s.trace_id, &mut hex));
        self.span.append_value(hex_into(s.span_id, &mut hex));
        if s.parent_span_id.is_empty() {
            self.parent.append_null();
        } else {
            self.parent.append_value(hex_into(s.parent_span_id, &mut hex));
        }
        self.name.append_value(s.name);
        self.kind.append_value(schema::kind_name(s.kind));
        self.service.append_value(r.service);
        self.status.append_value(schema::status_name(s.status_code));
        self.duration.append_value(s.duration_ms());
        crate::rows::append_pairs(&mut self.resource, r.attrs.iter().copied())?;
        crate::rows::append_pairs(&mut self.attrs, attrs.iter().copied())?;
        self.adjusted_count.append_value(sampled.adjusted_count);
        self.sampled_by.append_value(sampled.by);
        self.rows += 1;
        Ok(())
    }

    /// The rows as a batch.
    pub fn finish(mut self) -> Result<RecordBatch> {
        let tz: Arc<str> = "UTC".into();
        let columns: Vec<(&'static str, ArrayRef)> = vec![
            (col::TIME, Arc::new(self.time.finish().with_timezone(tz.clone()))),
            (col::END_TIME, Arc::new(self.end.finish().with_timezone(tz))),
            (col::TRACE_ID, Arc::new(self.trace.finish())),
            (col::SPAN_ID, Arc::new(self.span.finish())),
            (col::PARENT_SPAN_ID, Arc::new(self.parent.finish())),
            (col::NAME, Arc::new(self.name.finish())),
            (col::KIND, Arc::new(self.kind.finish())),
            (col::SERVICE, Arc::new(self.service.finish())),
            (col::STATUS, Arc::new(self.status.finish())),
            (col::DURATION_MS, Arc::new(self.duration.finish())),
            (col::RESOURCE_ATTRIBUTES, Arc::new(self.resource.finish())),
            (col::ATTRIBUTES, Arc::new(self.attrs.finish())),
            (col::ADJUSTED_COUNT, Arc::new(self.adjusted_count.finish())),
            (col::SAMPLED_BY, Arc::new(self.sampled_by.finish())),
        ];
        schema::batch_by_name(schema::spans(), columns)
    }
}

/// Hex of an id without allocating (ids are at most 16 bytes).
pub fn hex_into<'b>(id: &[u8], buf: &'b mut [u8; 32]) -> &'b str {
    let n = id.len().min(16);
    let out = &mut buf[..n * 2];
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(&id[..n], out);
    std::str::from_utf8(out).unwrap_or_default()
}

/// The rows of every table encoded batches feed directly (`spans`, and `samples` and
/// `changes` when they hold any); requests come later, from assembly.
pub fn batch_rows(records: &[&[u8]]) -> Result<Vec<(&'static str, RecordBatch)>> {
    let bytes = records.iter().map(|r| r.len()).sum();
    let mut spans = SpansBuilder::with_capacity(bytes / 700 + 1, bytes);
    let mut cluster = Vec::new();
    for record in records {
        if visit_spans(record, |r, s, a| spans.append(r, s, a, Sampled::ALL))? {
            cluster.push(
                <SpanBatch as prost::Message>::decode(*record)
                    .map_err(|_| WireError("samples or changes do not decode"))?,
            );
        }
    }
    let mut rows = crate::cluster_rows::cluster_batches(&cluster.iter().collect::<Vec<_>>())?;
    if spans.rows() > 0 {
        rows.push((schema::SPANS, spans.finish()?));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::records::{Attr, ResourceSpans, SpanRecord};

    fn record() -> SpanBatch {
        let span = |id: u8, parent: &[u8]| SpanRecord {
            trace_id: vec![0xab; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.to_vec(),
            name: "llm_request".into(),
            kind: 2,
            start_unix_nano: 1_000_000,
            end_unix_nano: 3_500_000,
            status_code: 2,
            attributes: vec![Attr::new("gen_ai.request.model", "m"), Attr::new("empty", "")],
            ..Default::default()
        };
        SpanBatch {
            resources: vec![
                ResourceSpans {
                    service: "vllm".into(),
                    resource: vec![Attr::new("k8s.pod.name", "p-1")],
                    spans: vec![span(1, &[]), span(2, &[1; 8])],
                },
                ResourceSpans { service: "gw".into(), resource: vec![], spans: vec![span(3, &[])] },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn visits_what_prost_encoded() {
        let batch = record();
        let bytes = batch.encode_to_vec();
        let mut seen = Vec::new();
        let cluster = visit_spans::<WireError>(&bytes, |r, s, a| {
            seen.push((
                r.index,
                r.service.to_string(),
                s.span_id.to_vec(),
                a.len(),
                SpanRecord::decode(s.raw).unwrap(),
            ));
            Ok(())
        })
        .unwrap();
        assert!(!cluster);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].0, 0);
        assert_eq!(seen[2].0, 1);
        assert_eq!(seen[2].1, "gw");
        assert_eq!(seen[1].4, batch.resources[0].spans[1], "raw is the whole span record");
        assert_eq!(span_count(&bytes).unwrap(), 3);
    }

    #[test]
    fn rows_match_the_schema_and_values() {
        let bytes = record().encode_to_vec();
        let rows = batch_rows(&[&bytes, &bytes]).unwrap();
        assert_eq!(rows.len(), 1);
        let rb = &rows[0].1;
        assert_eq!(rb.num_rows(), 6);
        assert_eq!(rb.schema(), schema::spans());
        let text = arrow::util::pretty::pretty_format_batches(&[rb.slice(0, 2)]).unwrap().to_string();
        assert!(text.contains(&"ab".repeat(16)), "{text}");
        assert!(text.contains("| 2.5 "), "{text}");
        assert!(text.contains("{k8s.pod.name: p-1}"), "{text}");
        assert!(text.contains("{gen_ai.request.model: m, empty: }"), "{text}");
        assert!(text.contains("error"), "{text}");
    }

    #[test]
    fn cluster_records_are_read_too_and_damage_is_named() {
        let batch = SpanBatch {
            changes: vec![crate::ChangeRecord { kind: "deploy".into(), ..Default::default() }],
            ..record()
        };
        let bytes = batch.encode_to_vec();
        let rows = batch_rows(&[&bytes]).unwrap();
        let names: Vec<_> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec![schema::CHANGES, schema::SPANS]);
        let e = batch_rows(&[&bytes[..bytes.len() - 3]]).unwrap_err().to_string();
        assert!(e.contains("undecodable record"), "{e}");
    }

    #[test]
    fn an_attribute_read_in_place_reads_as_field_by_field() {
        let long = "k".repeat(200);
        let mut cases: Vec<Vec<u8>> =
            [("gen_ai.request.model", "llama"), ("", ""), ("k", ""), ("", "v"), (&long, "v"), ("k", &long)]
                .iter()
                .map(|(k, v)| Attr::new(*k, *v).encode_to_vec())
                .collect();
        // Shapes another encoder could write: value first, a field repeated, one more field,
        // a key that is not UTF-8, a length past the end.
        cases.push(vec![0x12, 1, b'v', 0x0a, 1, b'k']);
        cases.push(vec![0x0a, 1, b'k', 0x12, 1, b'v', 0x12, 1, b'w']);
        cases.push(vec![0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1]);
        cases.push(vec![0x0a, 1, 0xff, 0x12, 1, b'v']);
        cases.push(vec![0x0a, 1, b'k', 0x12, 2, b'v']);
        cases.push(vec![0x0a, 1, b'k', 0x12, 0, b'v']);
        for raw in &cases {
            assert_eq!(attr(raw), attr_by_fields(raw), "{raw:x?}");
        }
        assert_eq!(attr(&cases[0]).unwrap(), ("gen_ai.request.model", "llama"));
        assert!(attr(&cases[9]).is_err());
    }
}
