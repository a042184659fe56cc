//! OTLP export requests to [`SpanBatch`]es: validation, attribute rendering, redaction.
//!
//! A span that cannot be stored (bad ids, no start time) is rejected on its own and counted
//! for OTLP `partial_success`; the rest of the request is kept.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use slo_store::{Attr, LinkRef, ResourceSpans, SpanBatch, SpanRecord};

use crate::redact::{Redactor, Verdict, digest};
use crate::timegate::{TimeGate, TimeRules};

/// Spans rejected from one request, for `partial_success`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// How many.
    pub spans: i64,
    /// What was wrong with the first one (OTLP asks for one message).
    pub message: String,
}

/// Counters of what conversion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConvertStats {
    /// Attributes removed or hashed by redaction.
    pub redacted: u64,
}

/// Converts OTLP to our records.
#[derive(Debug, Clone)]
pub struct Converter {
    pub(crate) redactor: Redactor,
    pub(crate) max_depth: usize,
    pub(crate) time: TimeRules,
    pub(crate) clock: fn() -> u64,
    /// Every span is stored (tail sampling keeps all): its `spans` row is built as it is
    /// received, on the receiving thread, not by the pipeline thread once its trace is
    /// emitted.
    pub(crate) spans_at_receipt: bool,
}

impl Converter {
    /// A converter with a redactor and the attribute nesting limit, that takes any span
    /// time that fits a timestamp ([`TimeRules::TRUSTED`]).
    pub fn new(redactor: Redactor, max_depth: usize) -> Self {
        Converter {
            redactor,
            max_depth,
            time: TimeRules::TRUSTED,
            clock: crate::timegate::now_ns,
            spans_at_receipt: false,
        }
    }

    /// The same converter refusing span times outside `rules` (from the wall clock).
    pub fn with_time_rules(self, rules: TimeRules) -> Self {
        Converter { time: rules, ..self }
    }

    /// The same converter building every span's row as it is received (see
    /// [`crate::SamplingConfig::stores_every_span`]).
    pub fn with_spans_at_receipt(self, at_receipt: bool) -> Self {
        Converter { spans_at_receipt: at_receipt, ..self }
    }

    /// The gate for one export.
    pub(crate) fn time_gate(&self) -> TimeGate {
        TimeGate::new(self.time, (self.clock)())
    }

    fn attrs(&self, kvs: Vec<KeyValue>, stats: &mut ConvertStats) -> Vec<Attr> {
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let verdict = self.redactor.verdict(&kv.key);
            if verdict == Verdict::Drop {
                stats.redacted += 1;
                continue;
            }
            let mut value = String::new();
            if let Some(v) = kv.value {
                render(&v, &mut value, self.max_depth);
            }
            if verdict == Verdict::Hash {
                stats.redacted += 1;
                value = digest(&value);
            }
            out.push(Attr { key: kv.key, value });
        }
        out
    }

    /// Converts one export request.
    pub fn convert(&self, req: ExportTraceServiceRequest) -> (SpanBatch, Rejected, ConvertStats) {
        let mut rejected = Rejected::default();
        let mut stats = ConvertStats::default();
        let mut batch = SpanBatch { resources: Vec::with_capacity(req.resource_spans.len()), ..Default::default() };
        let mut gate = self.time_gate();
        for (ri, rs) in req.resource_spans.into_iter().enumerate() {
            let resource = self.attrs(rs.resource.map(|r| r.attributes).unwrap_or_default(), &mut stats);
            let service = slo_store::find_attr(&resource, "service.name")
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service")
                .to_string();
            let mut spans = Vec::new();
            for (si, ss) in rs.scope_spans.into_iter().enumerate() {
                for (pi, span) in ss.spans.into_iter().enumerate() {
                    let ids = (&span.trace_id, &span.span_id, &span.parent_span_id);
                    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
                    if let Err(problem) =
                        validate(ids.0, ids.1, ids.2, start, end).and_then(|()| gate.check(start, end.max(start)))
                    {
                        if rejected.spans == 0 {
                            rejected.message = format!("resource_spans[{ri}].scope_spans[{si}].spans[{pi}]: {problem}");
                        }
                        rejected.spans += 1;
                        continue;
                    }
                    let mut attributes = self.attrs(span.attributes, &mut stats);
                    if let Some(status) = &span.status
                        && !status.message.is_empty()
                    {
                        match self.redactor.status_verdict() {
                            Verdict::Keep => {
                                attributes.push(Attr::new("otel.status_description", status.message.clone()))
                            }
                            Verdict::Hash => {
                                stats.redacted += 1;
                                attributes.push(Attr::new("otel.status_description", digest(&status.message)));
                            }
                            Verdict::Drop => stats.redacted += 1,
                        }
                    }
                    let links = span
                        .links
                        .into_iter()
                        .filter(|l| l.trace_id.len() == 16 && l.span_id.len() == 8)
                        .map(|l| LinkRef { trace_id: l.trace_id, span_id: l.span_id })
                        .collect();
                    spans.push(SpanRecord {
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        name: span.name,
                        kind: span.kind,
                        start_unix_nano: span.start_time_unix_nano,
                        end_unix_nano: span.end_time_unix_nano.max(span.start_time_unix_nano),
                        status_code: span.status.map_or(0, |s| s.code),
                        attributes,
                        links,
                    });
                }
            }
            if !spans.is_empty() {
                batch.resources.push(ResourceSpans { service, resource, spans });
            }
        }
        (batch, rejected, stats)
    }
}

/// Why a span cannot be stored, if it cannot.
pub(crate) fn validate(trace_id: &[u8], span_id: &[u8], parent: &[u8], start: u64, end: u64) -> Result<(), String> {
    if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
        return Err(format!("trace_id must be 16 non-zero bytes, got {} bytes", trace_id.len()));
    }
    if span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
        return Err(format!("span_id must be 8 non-zero bytes, got {} bytes", span_id.len()));
    }
    if !parent.is_empty() && parent.len() != 8 {
        return Err(format!("parent_span_id must be empty or 8 bytes, got {} bytes", parent.len()));
    }
    if start == 0 {
        return Err("start_time_unix_nano is missing".into());
    }
    if end < start {
        return Err("end_time_unix_nano is before start_time_unix_nano".into());
    }
    Ok(())
}

/// Renders an attribute value as text: scalars plainly, arrays and maps as JSON, nesting
/// beyond `depth` replaced by `"…"`.
pub(crate) fn render(v: &AnyValue, out: &mut String, depth: usize) {
    match &v.value {
        // `string_value_strindex` belongs to profiles: taken as absent, as the spec asks.
        None | Some(Value::StringValueStrindex(_)) => {}
        Some(Value::StringValue(s)) => out.push_str(s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => push_i64(*i, out),
        Some(Value::DoubleValue(d)) => push_f64(*d, out),
        Some(Value::BytesValue(b)) => out.push_str(&hex::encode(b)),
        Some(_) => render_json(v, out, depth),
    }
}

/// Appends `i` as `format!("{i}")` writes it, without the formatting machinery (an
/// integer attribute is on most spans: token counts, ports, status codes).
pub(crate) fn push_i64(i: i64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(i));
}

/// Appends `d` as `format!("{d}")` writes it: the shortest digits that read back as `d`,
/// never an exponent, `NaN`/`inf` as std spells them. With zmij where it can: vLLM's
/// `gen_ai.latency.*` attributes are doubles, and std's formatting took ~2% of ingest CPU,
/// ryu's ~4.7% of a later profile; zmij (already in the tree through serde_json) took
/// 0.43x ryu's time on latency-like doubles. Where two shortest forms are equally near it
/// may pick the other last digit, which still reads back as `d`.
pub(crate) fn push_f64(d: f64, out: &mut String) {
    if d.is_finite() {
        let mut buf = zmij::Buffer::new();
        let s = buf.format_finite(d);
        if !s.contains('e') {
            out.push_str(s.strip_suffix(".0").unwrap_or(s));
            return;
        }
    }
    let _ = write!(out, "{d}");
}

fn render_json(v: &AnyValue, out: &mut String, depth: usize) {
    if depth == 0 {
        out.push_str("\"…\"");
        return;
    }
    match &v.value {
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render_json(x, out, depth - 1);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => {
            out.push('{');
            for (i, x) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(x.key.clone()).to_string());
                out.push(':');
                match &x.value {
                    Some(v) => render_json(v, out, depth - 1),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
        Some(Value::StringValue(s)) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        Some(Value::BytesValue(b)) => {
            let _ = write!(out, "\"{}\"", hex::encode(b));
        }
        Some(Value::DoubleValue(d)) if !d.is_finite() => {
            let _ = write!(out, "\"{d}\"");
        }
        Some(Value::StringValueStrindex(_)) | None => out.push_str("null"),
        Some(_) => render(v, out, depth),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans as PRs, ScopeSpans, Span};

    use super::*;
    use crate::config::RedactionConfig;

    #[test]
    fn doubles_render_as_std_formats_them() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut fixed = vec![0.0, -0.0, 1.0, -1.0, 0.1, 1.5, 100.0, 1e15, 1e16, 1e17, 1e21, 1e-5, 1e-7, 123456.789];
        fixed.extend([f64::MAX, f64::MIN_POSITIVE, 5e-324, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        let random = (0..20_000).map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half arbitrary bit patterns, half latencies in seconds like vLLM's.
            if i % 2 == 0 { f64::from_bits(x) } else { (x % 10_000_000) as f64 / 1e6 }
        });
        let mut same = 0;
        for d in fixed.into_iter().chain(random) {
            let mut out = String::new();
            push_f64(d, &mut out);
            let std = format!("{d}");
            let back: f64 = out.parse().unwrap();
            assert!(back.to_bits() == d.to_bits() || (d.is_nan() && back.is_nan()), "{out} for {d}");
            assert_eq!(out.len(), std.len(), "{out}: as short as std's {std}");
            assert!(!out.contains('e'));
            same += usize::from(out == std);
        }
        // Only ties may differ, and they are rare.
        assert!(same > 20_000 - 20, "{same} of 20,020 as std writes them");
    }

    fn s(v: &str) -> AnyValue {
        AnyValue { value: Some(Value::StringValue(v.into())) }
    }

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue { key: k.into(), value: Some(v), ..Default::default() }
    }

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: "x".into(),
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![kv("gen_ai.prompt.0.content", s("secret prompt")), kv("gen_ai.request.model", s("m"))],
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![PRs {
                resource: Some(Resource { attributes: vec![kv("service.name", s("vllm"))], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn redacts_and_rejects_per_span() {
        let c = Converter::new(Redactor::new(&RedactionConfig::default()), 8);
        let mut bad = span(1, 2);
        bad.trace_id = vec![1; 8];
        let (batch, rejected, stats) = c.convert(request(vec![span(1, 1), bad, span(1, 3)]));
        assert_eq!(batch.span_count(), 2);
        assert_eq!(rejected.spans, 1);
        assert!(rejected.message.contains("spans[1]") && rejected.message.contains("trace_id"), "{}", rejected.message);
        assert_eq!(stats.redacted, 2);
        let attrs = &batch.resources[0].spans[0].attributes;
        assert!(attrs.iter().all(|a| !a.value.contains("secret")));
        assert_eq!(batch.resources[0].service, "vllm");
    }

    #[test]
    fn renders_nested_values_with_a_depth_cut() {
        let mut v = s("leaf");
        for _ in 0..20 {
            v = AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })) };
        }
        let mut out = String::new();
        render(&v, &mut out, 3);
        assert_eq!(out, "[[[\"…\"]]]");
        let map = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![kv("a", AnyValue { value: Some(Value::IntValue(3)) }), kv("b\"", s("x"))],
            })),
        };
        let mut out = String::new();
        render(&map, &mut out, 8);
        assert_eq!(out, r#"{"a":3,"b\"":"x"}"#);
    }
}
