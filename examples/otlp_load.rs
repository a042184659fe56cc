//! OTLP load driver for the ingest benchmarks in BENCHMARKS.md.
//!
//! Sends realistic vLLM server spans (18 attributes, k8s resource attributes; fresh trace
//! ids, request ids, token counts and latencies for every span) over OTLP/gRPC or OTLP/HTTP
//! protobuf from N concurrent clients for a fixed time, and reports acknowledged spans per
//! second, the bytes of one export's body, and how long acknowledgements took (p50, p99,
//! max), and the CPU the driver itself used. With `--pid`, it also reads the server's CPU time from /proc, so the result is
//! spans per server CPU-second, which is what stays comparable on a shared 2-core machine
//! (the driver uses the same cores).
//!
//! Both transports send the same bytes: each export is stamped and encoded once, and the
//! gRPC client sends those bytes as its message (a codec that does not decode or clone a
//! request), so neither driver costs more than the other on cores it shares with the
//! server.
//!
//! With `--bodies K`, each client encodes K bodies once and then only writes fresh trace
//! and span ids into them for each export: the driver then costs a fraction of a core, so
//! a server given a core of its own is measured, not the driver beside it
//! (`scripts/bench-shards`). The other values repeat every K exports.
//!
//! With `--rate R`, the clients together send at most R spans a second (each its share, one
//! export at a time): servers compared at the same offered load, neither saturated, rather
//! than each at whatever rate it and the driver reach on the shared cores.
//!
//! cargo run --release --example otlp_load -- --http http://127.0.0.1:4318 --pid $(pidof slo)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The path of OTLP/gRPC's trace export.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec that sends an encoded export as it is and decodes the response.
#[derive(Debug, Clone, Copy, Default)]
struct Encoded;

impl Codec for Encoded {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Encoded;
    type Decoder = Encoded;

    fn encoder(&mut self) -> Encoded {
        Encoded
    }

    fn decoder(&mut self) -> Encoded {
        Encoded
    }
}

impl Encoder for Encoded {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for Encoded {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

struct Args {
    grpc: Option<String>,
    http: Option<String>,
    concurrency: usize,
    duration: Duration,
    spans: usize,
    pid: Option<u32>,
    bodies: usize,
    rate: Option<f64>,
}

fn parse() -> Args {
    let mut a = Args {
        grpc: None,
        http: None,
        concurrency: 8,
        duration: Duration::from_secs(20),
        spans: 200,
        pid: None,
        bodies: 0,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--grpc" => a.grpc = Some(val()),
            "--http" => a.http = Some(val()),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--duration" => a.duration = Duration::from_secs_f64(val().parse().expect("--duration SECONDS")),
            "--spans" => a.spans = val().parse().expect("--spans N"),
            "--pid" => a.pid = Some(val().parse().expect("--pid PID")),
            "--bodies" => a.bodies = val().parse().expect("--bodies K"),
            "--rate" => a.rate = Some(val().parse().expect("--rate SPANS_PER_SECOND")),
            other => panic!(
                "unknown flag {other}: use --grpc URL | --http URL, --concurrency, --duration, --spans, --pid, --bodies, --rate"
            ),
        }
    }
    assert!(a.grpc.is_some() != a.http.is_some(), "give exactly one of --grpc URL or --http URL");
    assert!(a.rate.is_none_or(|r| r.is_finite() && r > 0.0), "--rate must be a number above 0");
    a
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// One export of `n` spans; ids are filled in by `stamp`.
fn template(n: usize, worker: usize) -> ExportTraceServiceRequest {
    let span = Span {
        name: "llm_request".into(),
        kind: 2,
        status: Some(Status { code: 1, message: String::new() }),
        attributes: vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.system", s("vllm")),
            kv("gen_ai.request.model", s("meta-llama/Llama-3.1-70B-Instruct")),
            kv("gen_ai.response.model", s("meta-llama/Llama-3.1-70B-Instruct")),
            kv("gen_ai.request.id", s("chatcmpl-5f1d3c0b9a8e4f7d")),
            kv("gen_ai.request.max_tokens", Value::IntValue(512)),
            kv("gen_ai.request.temperature", Value::DoubleValue(0.7)),
            kv("gen_ai.request.top_p", Value::DoubleValue(0.95)),
            kv("gen_ai.usage.prompt_tokens", Value::IntValue(1834)),
            kv("gen_ai.usage.completion_tokens", Value::IntValue(211)),
            kv("gen_ai.latency.time_in_queue", Value::DoubleValue(0.0412)),
            kv("gen_ai.latency.time_to_first_token", Value::DoubleValue(0.1873)),
            kv("gen_ai.latency.e2e", Value::DoubleValue(2.9121)),
            kv("gen_ai.latency.time_in_model_prefill", Value::DoubleValue(0.1441)),
            kv("gen_ai.latency.time_in_model_decode", Value::DoubleValue(2.7208)),
            kv("gen_ai.latency.time_in_model_inference", Value::DoubleValue(2.8649)),
            kv("http.route", s("/v1/chat/completions")),
            kv("server.port", Value::IntValue(8000)),
        ],
        ..Default::default()
    };
    let res = |k: &str, v: String| kv(k, Value::StringValue(v));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    res("service.name", "vllm".into()),
                    res("k8s.namespace.name", "inference".into()),
                    res("k8s.deployment.name", "llama-70b".into()),
                    res("k8s.replicaset.name", "llama-70b-6c9f7d".into()),
                    res("k8s.pod.name", format!("llama-70b-6c9f7d-{worker:05}")),
                    res("k8s.node.name", format!("gpu-node-{}", worker % 4)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span; n], ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Positions of the per-request attributes in `template`'s span.
const REQUEST_ID: usize = 4;
const PROMPT_TOKENS: usize = 8;
const LATENCY_QUEUE: usize = 10;

/// A splitmix64 step: cheap, deterministic per (worker, seq, span).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fresh ids, and the values that differ from one real request to the next: request id,
/// token counts and the latencies that follow from them (queue + prefill + decode = e2e,
/// queue + prefill = TTFT), and start = end - e2e. Repeating one span's values would let
/// the server's dictionaries and compression see 200 copies of each, which real traffic
/// never gives them.
fn stamp(req: &mut ExportTraceServiceRequest, worker: usize, seq: u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for (i, span) in req.resource_spans[0].scope_spans[0].spans.iter_mut().enumerate() {
        // Random-looking like real ids, and still unique: `mix` is a bijection, the high
        // half differs between exports and the low half between the spans of one.
        let (t, span_id) = ids(worker, seq, i);
        span.trace_id = t.to_vec();
        span.span_id = span_id.to_vec();
        let low = u64::from_be_bytes(t[8..].try_into().unwrap());
        let r = mix(low ^ 0x5eed);
        let prompt = 40 + (r & 0xfff) as i64; // 40..4135 tokens
        let completion = 1 + (r >> 12 & 0x3ff) as i64; // 1..1024 tokens
        let queue = (r >> 22 & 0xffff) as f64 / 65_536.0 * (r >> 38 & 0x3) as f64 * 0.25; // 0..0.75 s
        let prefill = prompt as f64 * 0.000_08;
        let decode = completion as f64 * 0.013;
        let e2e = queue + prefill + decode;
        let a = &mut span.attributes;
        a[REQUEST_ID].value = Some(AnyValue { value: Some(s(&format!("chatcmpl-{:016x}", mix(r)))) });
        a[PROMPT_TOKENS].value = Some(AnyValue { value: Some(Value::IntValue(prompt)) });
        a[PROMPT_TOKENS + 1].value = Some(AnyValue { value: Some(Value::IntValue(completion)) });
        for (k, v) in [queue, queue + prefill, e2e, prefill, decode, prefill + decode].into_iter().enumerate() {
            a[LATENCY_QUEUE + k].value = Some(AnyValue { value: Some(Value::DoubleValue(v)) });
        }
        span.start_time_unix_nano = now - (e2e * 1e9) as u64;
        span.end_time_unix_nano = now;
    }
}

/// The ids of span `i` of export `seq` of client `worker`: random-looking and unique (`mix`
/// is a bijection; the high half differs between exports, the low half between spans).
fn ids(worker: usize, seq: u64, i: usize) -> ([u8; 16], [u8; 8]) {
    let high = mix((worker as u64) << 48 | seq);
    let low = mix(high ^ i as u64);
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&high.to_be_bytes());
    t[8..].copy_from_slice(&low.to_be_bytes());
    (t, mix(low).to_be_bytes())
}

/// An encoded export, and where each span's trace id and span id are in it.
struct Body {
    bytes: Vec<u8>,
    at: Vec<(usize, usize)>,
}

impl Body {
    fn new(req: &ExportTraceServiceRequest) -> Body {
        let bytes = req.encode_to_vec();
        // The spans are encoded in order, each its trace id before its span id.
        let mut from = 0;
        let mut find = |needle: &[u8]| {
            let at = from + bytes[from..].windows(needle.len()).position(|w| w == needle).expect("id in its body");
            from = at + needle.len();
            at
        };
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        let at = spans.iter().map(|s| (find(&s.trace_id), find(&s.span_id))).collect();
        Body { bytes, at }
    }

    /// A copy with the ids of export `seq`.
    fn stamped(&self, worker: usize, seq: u64) -> Vec<u8> {
        let mut out = self.bytes.clone();
        for (i, &(t, s)) in self.at.iter().enumerate() {
            let (trace, span) = ids(worker, seq, i);
            out[t..t + 16].copy_from_slice(&trace);
            out[s..s + 8].copy_from_slice(&span);
        }
        out
    }
}

/// Whether a client sends again: not past `deadline`, after waiting for its turn when paced.
async fn turn(pace: &mut Option<tokio::time::Interval>, deadline: Instant) -> bool {
    if Instant::now() >= deadline {
        return false;
    }
    if let Some(p) = pace {
        p.tick().await;
    }
    Instant::now() < deadline
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::main]
async fn main() {
    let args = parse();
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let cpu0 = args.pid.map(cpu_seconds);
    let own0 = cpu_seconds(std::process::id());
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (ok, refused) = (ok.clone(), refused.clone());
        let (grpc, http, n, k) = (args.grpc.clone(), args.http.clone(), args.spans, args.bodies);
        let (rate, concurrency) = (args.rate, args.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut req = template(n, w);
            let mut seq = 0u64;
            // How long each acknowledged export took, from send to answer.
            let mut took = Vec::new();
            // Each client's share of `--rate`: one export every `n * concurrency / rate` s,
            // the clients' first sends spread over one interval. A send that falls behind
            // is not made up with a burst.
            let mut pace = rate.map(|r| {
                // At least a microsecond: tokio's interval refuses a zero period.
                let every = Duration::from_secs_f64(n as f64 * concurrency as f64 / r).max(Duration::from_micros(1));
                let first = tokio::time::Instant::now() + every.mul_f64(w as f64 / concurrency as f64);
                let mut iv = tokio::time::interval_at(first, every);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                iv
            });
            // Export numbers past 2^40 for the prepared bodies: their ids never meet the
            // ones they were made with.
            let bodies: Vec<Body> = (0..k as u64)
                .map(|b| {
                    stamp(&mut req, w, b + 1);
                    Body::new(&req)
                })
                .collect();
            let mut next = || {
                seq += 1;
                match bodies.get(seq as usize % k.max(1)) {
                    Some(b) => b.stamped(w, seq + (1 << 40)),
                    None => {
                        stamp(&mut req, w, seq);
                        req.encode_to_vec()
                    }
                }
            };
            if let Some(url) = grpc {
                let channel = tonic::transport::Endpoint::from_shared(url).expect("gRPC URL").connect().await;
                let mut client = tonic::client::Grpc::new(channel.expect("connect gRPC"));
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT);
                while turn(&mut pace, deadline).await {
                    let body = next();
                    let sent = Instant::now();
                    let answered = match client.ready().await {
                        Ok(()) => client.unary(tonic::Request::new(body), path.clone(), Encoded).await.is_ok(),
                        Err(_) => false,
                    };
                    if answered {
                        took.push(sent.elapsed());
                        ok.fetch_add(n as u64, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            } else if let Some(url) = http {
                let client = reqwest::Client::new();
                let url = format!("{url}/v1/traces");
                while turn(&mut pace, deadline).await {
                    let body = next();
                    let started = Instant::now();
                    let sent =
                        client.post(&url).header("content-type", "application/x-protobuf").body(body).send().await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            took.push(started.elapsed());
                            ok.fetch_add(n as u64, Ordering::Relaxed)
                        }
                        _ => refused.fetch_add(n as u64, Ordering::Relaxed),
                    };
                }
            }
            took
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await.unwrap());
    }
    took.sort_unstable();
    let wall = started.elapsed().as_secs_f64();
    let spans = ok.load(Ordering::Relaxed) as f64;
    let mut sample = template(args.spans, 0);
    stamp(&mut sample, 0, 1);
    let mut line = format!(
        "acked_spans={spans} refused_spans={} wall_s={wall:.2} spans_per_s={:.0} export_bytes={}",
        refused.load(Ordering::Relaxed),
        spans / wall,
        sample.encoded_len()
    );
    line += &format!(" driver_cpu_s={:.2}", cpu_seconds(std::process::id()) - own0);
    if let (Some(pid), Some(c0)) = (args.pid, cpu0) {
        let cpu = cpu_seconds(pid) - c0;
        line += &format!(
            " server_cpu_s={cpu:.2} spans_per_server_cpu_s={:.0} cpu_s_per_million_spans={:.2}",
            spans / cpu,
            cpu / spans * 1e6
        );
    }
    if !took.is_empty() {
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        line += &format!(" ack_ms_p50={:.0} ack_ms_p99={:.0} ack_ms_max={:.0}", at(0.5), at(0.99), at(1.0));
    }
    println!("{line}");
}
