//! The one-pass transcoder against the struct path it replaces: same record bytes, same
//! rejections, same redaction counts, for hand-made and generated exports.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use slo_store::encoded::{ResourceView, SpanView};

use super::count_spans;
use crate::config::{RedactionConfig, RedactionMode};
use crate::convert::Converter;
use crate::redact::Redactor;

fn kv(k: &str, v: Option<Value>) -> KeyValue {
    KeyValue { key: k.into(), value: v.map(|v| AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.into()))
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn value(&mut self, depth: u32) -> Option<Value> {
        Some(match self.below(if depth > 3 { 6 } else { 8 }) {
            0 => return None,
            1 => {
                Value::StringValue(["", "x", "héllo \"q\"", "meta-llama/Llama-3.1-70B"][self.below(4) as usize].into())
            }
            2 => Value::BoolValue(self.below(2) == 1),
            3 => Value::IntValue(self.next() as i64 >> self.below(60)),
            4 => Value::DoubleValue([0.7, -0.0, 1e21, 2.5e-8, f64::NAN, f64::INFINITY][self.below(6) as usize]),
            5 => Value::BytesValue(vec![0xab; self.below(5) as usize]),
            6 => Value::ArrayValue(ArrayValue {
                values: (0..self.below(3)).map(|_| AnyValue { value: self.value(depth + 1) }).collect(),
            }),
            _ => Value::KvlistValue(KeyValueList {
                values: (0..self.below(3)).map(|i| kv(&format!("k{i}\""), self.value(depth + 1))).collect(),
            }),
        })
    }

    fn key(&mut self) -> String {
        let keys = [
            "gen_ai.request.model",
            "gen_ai.prompt.0.content",
            "gen_ai.completion",
            "gen_ai.promptly",
            "service.name",
            "gen_ai.latency.time_in_queue",
            "",
            "llm.prompts",
        ];
        keys[self.below(keys.len() as u64) as usize].into()
    }

    fn id(&mut self, len: usize) -> Vec<u8> {
        match self.below(12) {
            0 => vec![],
            1 => vec![0; len],
            2 => vec![7; len + 1],
            _ => (0..len).map(|_| self.next() as u8).collect(),
        }
    }

    fn span(&mut self) -> Span {
        let start = if self.below(15) == 0 { 0 } else { 1_700_000_000_000_000_000 + self.below(1 << 40) };
        let end = if self.below(15) == 0 { start.saturating_sub(1) } else { start + self.below(1 << 33) };
        Span {
            trace_id: self.id(16),
            span_id: self.id(8),
            parent_span_id: if self.below(2) == 0 { vec![] } else { self.id(8) },
            trace_state: "k=v".into(),
            name: ["llm_request", "", "queue"][self.below(3) as usize].into(),
            kind: self.below(7) as i32 - (self.below(20) == 0) as i32 * 9,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: (0..self.below(6)).map(|_| kv(&self.key(), self.value(0))).collect(),
            dropped_attributes_count: self.below(3) as u32,
            events: (0..self.below(2)).map(|_| Event { name: "e".into(), ..Default::default() }).collect(),
            links: (0..self.below(3))
                .map(|_| Link { trace_id: self.id(16), span_id: self.id(8), ..Default::default() })
                .collect(),
            status: match self.below(4) {
                0 => None,
                1 => Some(Status { code: 2, message: "boom".into() }),
                _ => Some(Status { code: self.below(3) as i32, message: String::new() }),
            },
            flags: self.below(2) as u32 * 0x100,
            ..Default::default()
        }
    }

    fn request(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..self.below(4))
                .map(|_| ResourceSpans {
                    resource: (self.below(5) != 0).then(|| Resource {
                        attributes: (0..self.below(5)).map(|_| kv(&self.key(), self.value(2))).collect(),
                        ..Default::default()
                    }),
                    scope_spans: (0..self.below(3))
                        .map(|_| ScopeSpans {
                            spans: (0..self.below(5)).map(|_| self.span()).collect(),
                            ..Default::default()
                        })
                        .collect(),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                })
                .collect(),
        }
    }
}

fn converters() -> Vec<Converter> {
    [RedactionMode::Drop, RedactionMode::Hash, RedactionMode::Keep]
        .into_iter()
        .map(|mode| Converter::new(Redactor::new(&RedactionConfig { mode, ..Default::default() }), 3))
        .collect()
}

/// A span as a reader of the record sees it, owned: resource index, service and
/// attributes, the span's encoded bytes and fields (its encoded links among them), its
/// attributes.
type Seen = (usize, String, Vec<(String, String)>, Vec<u8>, String, Vec<(String, String)>);

fn seen(r: &ResourceView, s: &SpanView, a: &[(&str, &str)]) -> Seen {
    let own = |a: &[(&str, &str)]| a.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let fields = format!(
        "{:?} {:?} {:?} {} {} {} {} {} {:?}",
        s.trace_id,
        s.span_id,
        s.parent_span_id,
        s.name,
        s.kind,
        s.start_unix_nano,
        s.end_unix_nano,
        s.status_code,
        s.links
    );
    (r.index, r.service.to_string(), own(&r.attrs), s.raw.to_vec(), fields, own(a))
}

fn same(c: &Converter, req: &ExportTraceServiceRequest) {
    let bytes = req.encode_to_vec();
    let mut handed = Vec::new();
    let t = c.transcode_with(&bytes, |r, s, a| handed.push(seen(r, s, a))).unwrap();
    // What the callback saw is what reading the record back gives (resource indexes aside:
    // the callback counts resources without kept spans too).
    let mut read = Vec::new();
    slo_store::encoded::visit_spans(&t.record, |r, s, a| {
        read.push(seen(r, s, a));
        Ok::<_, slo_store::wire::WireError>(())
    })
    .unwrap();
    let strip = |v: Vec<Seen>| v.into_iter().map(|s| (s.1, s.2, s.3, s.4, s.5)).collect::<Vec<_>>();
    assert_eq!(strip(handed), strip(read), "spans handed over differ from the record's for {req:?}");
    let (batch, rejected, stats) = c.convert(req.clone());
    assert_eq!(t.record, batch.encode_to_vec(), "record differs for {req:?}");
    assert_eq!(t.rejected, rejected);
    assert_eq!(t.stats, stats);
    assert_eq!(t.accepted, batch.span_count());
    assert_eq!(t.received, count_spans(&bytes).unwrap());
    assert_eq!(t.received, t.accepted + rejected.spans as usize);
}

#[test]
fn generated_exports_transcode_as_they_convert() {
    let mut g = Gen(0x5eed_1234_abcd_0001);
    for c in converters() {
        for _ in 0..400 {
            same(&c, &g.request());
        }
    }
}

/// Keys are judged once an export and looked up where the last span had them next: keys
/// in a new order each span, keys repeated, more keys than are remembered (64), and keys
/// that redaction drops or hashes must give the struct path's record all the same.
#[test]
fn keys_in_any_order_and_past_those_remembered_transcode_as_they_convert() {
    let keys: Vec<String> = (0..80)
        .map(|i| match i % 4 {
            0 => format!("gen_ai.prompt.{i}.content"),
            1 => format!("gen_ai.latency.k{i}"),
            2 => format!("k{i}"),
            _ => format!("gen_ai.latency.k{}", i - 2),
        })
        .collect();
    let mut g = Gen(0x0bad_5eed_0000_0064);
    let span = |g: &mut Gen, n: usize| {
        let mut span = g.span();
        span.attributes = (0..n)
            .map(|_| g.below(keys.len() as u64) as usize)
            .map(|k| kv(&keys[k], Some(Value::IntValue(k as i64))))
            .collect();
        span
    };
    for c in converters() {
        for n in [3, 18, 70] {
            // Spans with the same keys in the same order, then in a new order each.
            let first = span(&mut g, n);
            let mut spans = vec![first.clone(), first.clone(), first];
            spans.extend((0..4).map(|_| span(&mut g, n)));
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    ..Default::default()
                }],
            };
            same(&c, &req);
        }
    }
}

/// A key given twice is read as prost reads it, the last one kept, and each must be UTF-8:
/// the transcoder checks a key's text only when it is not one it has judged already.
#[test]
fn a_key_given_twice_must_be_text_both_times() {
    let attr =
        |first: &[u8]| [msg(1, first), msg(1, b"k"), msg(2, &AnyValue { value: s("v") }.encode_to_vec())].concat();
    let export = |attr: Vec<u8>| msg(1, &msg(2, &msg(2, &[minimal_span(), msg(9, &attr)].concat())));
    let good = export(attr(b"k"));
    let req = ExportTraceServiceRequest::decode(good.as_slice()).unwrap();
    assert_eq!(req.resource_spans[0].scope_spans[0].spans[0].attributes[0].key, "k");
    for c in converters() {
        assert_eq!(c.transcode(&good).unwrap().record, c.convert(req.clone()).0.encode_to_vec());
    }
    let bad = export(attr(b"\xffk"));
    assert!(ExportTraceServiceRequest::decode(bad.as_slice()).is_err(), "prost took it");
    let err = converters()[0].transcode(&bad).expect_err("transcoded a key that is not UTF-8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn the_load_generators_export_transcodes_as_it_converts() {
    let mut g = Gen(42);
    let mut span = g.span();
    span.trace_id = vec![3; 16];
    span.span_id = vec![4; 8];
    span.parent_span_id = vec![];
    span.start_time_unix_nano = 1;
    span.end_time_unix_nano = 2;
    span.attributes = vec![
        kv("gen_ai.request.model", s("m")),
        kv("gen_ai.latency.e2e", Some(Value::DoubleValue(2.9121))),
        kv("gen_ai.usage.prompt_tokens", Some(Value::IntValue(1834))),
        kv("gen_ai.prompt.0.content", s("secret")),
    ];
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("vllm")), kv("k8s.pod.name", s("p"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span; 3], ..Default::default() }],
            ..Default::default()
        }],
    };
    for c in converters() {
        same(&c, &req);
    }
    let t = converters()[0].transcode(&req.encode_to_vec()).unwrap();
    assert_eq!(t.accepted, 3);
    assert_eq!(t.stats.redacted, 3);
    assert!(!String::from_utf8_lossy(&t.record).contains("secret"));
}

#[test]
fn malformed_exports_are_refused_with_the_problem_named() {
    let c = &converters()[0];
    let err = |b: &[u8]| c.transcode(b).unwrap_err().to_string();
    assert!(err(b"\xff\xff\xff\xffnot a protobuf").contains("invalid OTLP protobuf"));
    let good = Gen(9).request().encode_to_vec();
    if good.len() > 4 {
        assert!(err(&good[..good.len() - 3]).contains("invalid OTLP protobuf"));
    }
    // A key that is not UTF-8, inside a span's attribute.
    let mut req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![1; 8],
                    start_time_unix_nano: 1,
                    end_time_unix_nano: 1,
                    attributes: vec![kv("KEY", s("v"))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut bytes = req.encode_to_vec();
    let at = bytes.windows(3).position(|w| w == b"KEY").unwrap();
    bytes[at] = 0xff;
    assert!(err(&bytes).contains("UTF-8"), "{}", err(&bytes));
    assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err(), "prost refuses it too");
    // Nesting beyond prost's recursion limit.
    let mut v = AnyValue { value: s("leaf") };
    for _ in 0..200 {
        v = AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })) };
    }
    req.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![KeyValue { key: "deep".into(), value: Some(v), ..Default::default() }];
    assert!(err(&req.encode_to_vec()).contains("recursion"), "{}", err(&req.encode_to_vec()));
}

/// A length-delimited field `tag` holding `body`, as protobuf encodes it.
fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// The smallest valid span, encoded.
fn minimal_span() -> Vec<u8> {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "s".into(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    }
    .encode_to_vec()
}

/// A field of an unstored part (scope, event, link, resource entity) with the wrong wire
/// type: prost refuses the export, and so must the transcoder (found by fuzzing).
#[test]
fn malformed_unstored_parts_are_refused_as_prost_refuses_them() {
    let bad = [0x08u8, 0x01]; // field 1 as a varint, where each of these wants bytes or fixed64
    let span = minimal_span();
    let span_with = |tag: u8| [span.clone(), msg(tag, &bad)].concat();
    // Export { resource_spans: [ResourceSpans { resource, scope_spans: [ScopeSpans { scope, spans }] }] }
    let export = |resource_spans: Vec<u8>| msg(1, &resource_spans);
    let cases = [
        ("scope", export(msg(2, &[msg(1, &bad), msg(2, &span)].concat()))),
        ("event", export(msg(2, &msg(2, &span_with(11))))),
        ("link", export(msg(2, &msg(2, &span_with(13))))),
        ("resource entity", export([msg(1, &msg(3, &bad)), msg(2, &msg(2, &span))].concat())),
    ];
    for (what, bytes) in cases {
        assert!(ExportTraceServiceRequest::decode(bytes.as_slice()).is_err(), "{what}: prost took it");
        let err = converters()[0].transcode(&bytes).err().unwrap_or_else(|| panic!("{what}: transcoded"));
        assert!(err.to_string().contains("does not decode"), "{what}: {err}");
    }
    // The same shapes, well formed, are taken.
    let good = export([msg(1, &[]), msg(2, &[msg(1, &[]), msg(2, &span)].concat())].concat());
    converters()[0].transcode(&good).unwrap();
}

/// `string_value_strindex` (a profiles field) is taken as absent on both paths, alone and
/// inside an array; before, rendering it recursed without end (found by reading the proto
/// after fuzzing found its sibling `key_strindex`).
#[test]
fn profile_string_indexes_are_absent_values_on_both_paths() {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: vec![
            kv("strindex", Some(Value::StringValueStrindex(3))),
            kv(
                "array",
                Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(Value::StringValueStrindex(1)) }, AnyValue { value: s("x") }],
                })),
            ),
        ],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    };
    for c in converters() {
        same(&c, &req);
    }
    let (batch, _, _) = converters()[0].convert(req);
    let attrs = &batch.resources[0].spans[0].attributes;
    let value = |k: &str| attrs.iter().find(|a| a.key == k).map(|a| a.value.clone());
    assert_eq!(value("strindex").as_deref(), Some(""));
    assert_eq!(value("array").as_deref(), Some("[null,\"x\"]"));
}

/// A `KeyValue` whose value is given twice: prost merges the two (so the first must decode
/// too, and two arrays become one), and so must the transcoder (found by fuzzing: a
/// malformed first value was skipped because only the last was read).
#[test]
fn a_value_given_twice_is_merged_as_prost_merges_it() {
    let any = |v: Value| AnyValue { value: Some(v) }.encode_to_vec();
    let array = |items: &[&str]| {
        any(Value::ArrayValue(ArrayValue { values: items.iter().map(|v| AnyValue { value: s(v) }).collect() }))
    };
    let span = |attr: Vec<u8>| [minimal_span(), msg(9, &attr)].concat();
    let export = |attr: Vec<u8>| msg(1, &msg(2, &msg(2, &span(attr))));
    let key = msg(1, b"k");
    // Well formed: a string then an int (the last wins), two arrays (one array of both).
    for (what, value) in [
        ("string then int", [msg(2, &any(Value::StringValue("a".into()))), msg(2, &any(Value::IntValue(7)))].concat()),
        ("two arrays", [msg(2, &array(&["a", "b"])), msg(2, &array(&["c"]))].concat()),
    ] {
        let bytes = export([key.clone(), value].concat());
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("{what}: {e}"));
        for c in converters() {
            let t = c.transcode(&bytes).unwrap();
            let (batch, _, _) = c.convert(req.clone());
            assert_eq!(t.record, batch.encode_to_vec(), "{what}: record differs");
        }
    }
    // A malformed first value with a good last one: refused by both.
    let bad_first = export([key, msg(2, &[0x0e]), msg(2, &any(Value::IntValue(7)))].concat());
    assert!(ExportTraceServiceRequest::decode(bad_first.as_slice()).is_err(), "prost took it");
    let err = converters()[0].transcode(&bad_first).expect_err("transcoded a malformed first value");
    assert!(err.to_string().contains("invalid"), "{err}");
}

/// What transcoding costs a span of an export as `otlp_load` sends it (200 vLLM-like spans
/// of one resource, 18 attributes each: strings, ints, doubles), default redaction. Median
/// of 25 rounds of 20 exports. For BENCHMARKS.md ("Attribute keys looked up where the
/// last span had them"):
/// `cargo test --release --workspace --lib -- --ignored --nocapture transcode_cost`
#[test]
#[ignore]
fn transcode_cost() {
    let d = |v: f64| Some(Value::DoubleValue(v));
    let i = |v: i64| Some(Value::IntValue(v));
    let span = |n: u32| Span {
        trace_id: [n.to_be_bytes(), [7; 4], [9; 4], [3; 4]].concat(),
        span_id: [n.to_le_bytes(), [5; 4]].concat(),
        name: "llm_request".into(),
        kind: 2,
        start_time_unix_nano: 1_764_000_000_000_000_000 + u64::from(n) * 1_000,
        end_time_unix_nano: 1_764_000_002_912_100_000 + u64::from(n) * 1_000,
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.system", s("vllm")),
            kv("gen_ai.request.model", s("meta-llama/Llama-3.1-70B-Instruct")),
            kv("gen_ai.response.model", s("meta-llama/Llama-3.1-70B-Instruct")),
            kv("gen_ai.request.id", s("chatcmpl-5f1d3c0b9a8e4f7d")),
            kv("gen_ai.request.max_tokens", i(512)),
            kv("gen_ai.request.temperature", d(0.7)),
            kv("gen_ai.request.top_p", d(0.95)),
            kv("gen_ai.usage.prompt_tokens", i(1834 + i64::from(n % 97))),
            kv("gen_ai.usage.completion_tokens", i(211 + i64::from(n % 31))),
            kv("gen_ai.latency.time_in_queue", d(0.0412 + f64::from(n) * 1e-6)),
            kv("gen_ai.latency.time_to_first_token", d(0.1873 + f64::from(n) * 1e-6)),
            kv("gen_ai.latency.e2e", d(2.9121 + f64::from(n) * 1e-6)),
            kv("gen_ai.latency.time_in_model_prefill", d(0.1441 + f64::from(n) * 1e-6)),
            kv("gen_ai.latency.time_in_model_decode", d(2.7208 + f64::from(n) * 1e-6)),
            kv("gen_ai.latency.time_in_model_inference", d(2.8649 + f64::from(n) * 1e-6)),
            kv("http.route", s("/v1/chat/completions")),
            kv("server.port", i(8000)),
        ],
        status: Some(Status { code: 1, ..Default::default() }),
        ..Default::default()
    };
    let resource = Resource {
        attributes: [
            ("service.name", "vllm-llama-70b"),
            ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("telemetry.sdk.version", "1.27.0"),
            ("k8s.namespace.name", "inference"),
            ("k8s.pod.name", "llama-70b-7d9c6b5f4-x2x9q"),
            ("k8s.node.name", "gpu-h100-3"),
        ]
        .iter()
        .map(|(k, v)| kv(k, s(v)))
        .collect(),
        ..Default::default()
    };
    let exports: Vec<Vec<u8>> = (0..20u32)
        .map(|e| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        spans: (0..200).map(|n| span(e * 200 + n)).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        })
        .collect();
    let c = Converter::new(Redactor::new(&RedactionConfig::default()), 3);
    let mut per_span = Vec::new();
    let (mut spans, mut attributes, mut bytes) = (0usize, 0usize, 0usize);
    for _ in 0..25 {
        let t0 = std::time::Instant::now();
        for x in &exports {
            let t = c.transcode_with(x, |_, _, a| attributes += a.len()).unwrap();
            (spans, bytes) = (spans + t.accepted, bytes + t.record.len());
        }
        per_span.push(t0.elapsed().as_nanos() as f64 / 4_000.0);
    }
    per_span.sort_by(f64::total_cmp);
    // Every span kept with its 18 attributes (none is content to redact), and a record
    // written for them: what was timed is the whole transcoding.
    assert_eq!((spans, attributes), (25 * 4_000, 25 * 4_000 * 18), "spans or attributes went missing");
    assert!(bytes > spans * 18 * 20, "{bytes} bytes of records for {spans} spans");
    println!("transcode_cost: {:.0} ns a span (median of 25 rounds; min {:.0})", per_span[12], per_span[0]);
}
