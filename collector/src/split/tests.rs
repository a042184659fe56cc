use std::sync::Arc;

use slo_store::{Attr, LinkRef, SpanRecord};

use super::*;
use crate::assemble::Resource;

const MS: u64 = 1_000_000;
const T0: u64 = 1_763_900_000_000_000_000;

fn res(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service: service.into(),
        attrs: vec![Attr::new("k8s.pod.name", format!("{service}-pod")), Attr::new("k8s.namespace.name", "ml")],
    })
}

fn span(
    id: u8,
    parent: Option<u8>,
    name: &str,
    kind: i32,
    start_ms: u64,
    end_ms: u64,
    attrs: &[(&str, &str)],
) -> SpanRecord {
    SpanRecord {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind,
        start_unix_nano: T0 + start_ms * MS,
        end_unix_nano: T0 + end_ms * MS,
        attributes: attrs.iter().map(|(k, v)| Attr::new(*k, *v)).collect(),
        ..Default::default()
    }
}

fn ts(r: &Arc<Resource>, s: SpanRecord) -> TraceSpan {
    TraceSpan { resource: r.clone(), span: s }
}

fn splitter() -> Splitter {
    Splitter::new(&SplitConfig::default()).unwrap()
}

/// The spans as the ingest path holds them: encoded in a WAL record, then held.
fn held(spans: &[TraceSpan]) -> Vec<HeldSpan> {
    let batch = slo_store::SpanBatch {
        resources: spans
            .iter()
            .map(|t| slo_store::ResourceSpans {
                service: t.resource.service.clone(),
                resource: t.resource.attrs.clone(),
                spans: vec![t.span.clone()],
            })
            .collect(),
        ..Default::default()
    };
    let held = crate::assemble::hold_record(&prost::Message::encode_to_vec(&batch)).unwrap();
    assert_eq!(held.len(), spans.len());
    for ((_, h), t) in held.iter().zip(spans) {
        assert_eq!(h.decode().span, t.span, "a held span gives back the span it holds");
    }
    held.into_iter().map(|(_, h)| h).collect()
}

/// The rows of a trace, which must not depend on whether its spans were decoded or are
/// read where they are held.
fn split_rows(spans: &[TraceSpan]) -> Vec<RequestRow> {
    let decoded = splitter().requests(spans);
    assert_eq!(splitter().held_requests(&held(spans)), decoded, "held and decoded spans split alike");
    decoded
}

#[test]
fn vllm_attributes_behind_a_gateway() {
    let gw = res("gateway");
    let vllm = res("vllm");
    let spans = vec![
        ts(&gw, span(1, None, "POST /v1/chat/completions", 2, 0, 1000, &[])),
        ts(
            &vllm,
            span(
                2,
                Some(1),
                "llm_request",
                2,
                10,
                990,
                &[
                    ("gen_ai.response.model", "llama-70b"),
                    ("gen_ai.latency.time_in_queue", "0.4"),
                    ("gen_ai.latency.time_in_model_prefill", "0.1"),
                    ("gen_ai.latency.time_in_model_decode", "0.45"),
                    ("gen_ai.latency.time_to_first_token", "0.52"),
                    ("gen_ai.usage.prompt_tokens", "512"),
                    ("gen_ai.usage.completion_tokens", "128"),
                ],
            ),
        ),
    ];
    let rows = split_rows(&spans);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.split_source, "attributes");
    assert_eq!(r.service, "vllm");
    assert_eq!(r.pod.as_deref(), Some("vllm-pod"));
    assert_eq!(r.model.as_deref(), Some("llama-70b"));
    assert_eq!(r.duration_ms, 1000.0);
    assert!((r.queue_ms - 400.0).abs() < 1e-6);
    assert!((r.compute_ms - 550.0).abs() < 1e-6);
    assert!((r.other_ms - 50.0).abs() < 1e-6);
    assert_eq!(r.ttft_ms, Some(520.0));
    assert_eq!((r.input_tokens, r.output_tokens), (Some(512), Some(128)));
    assert_eq!(r.time_unix_nano, T0);
    assert_eq!(r.status, "ok");
}

#[test]
fn a_callers_gen_ai_client_span_is_not_the_request() {
    // An OpenAI SDK (or `slo loadgen target`) instruments its call: a CLIENT span with
    // gen_ai.* above the gateway. The request row is still the server's, enveloped by the
    // gateway's server span, not by the caller's span.
    let client = res("app");
    let gw = res("gateway");
    let vllm = res("vllm");
    let spans = vec![
        ts(
            &client,
            span(
                9,
                None,
                "chat llama-70b",
                3,
                0,
                1100,
                &[("gen_ai.request.model", "llama-70b"), ("gen_ai.operation.name", "chat")],
            ),
        ),
        ts(&gw, span(1, Some(9), "POST /v1/chat/completions", 2, 40, 1040, &[])),
        ts(
            &vllm,
            span(
                2,
                Some(1),
                "llm_request",
                2,
                50,
                1030,
                &[("gen_ai.response.model", "llama-70b"), ("gen_ai.latency.time_in_queue", "0.2")],
            ),
        ),
    ];
    let rows = split_rows(&spans);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].service, "vllm");
    assert_eq!(rows[0].split_source, "attributes");
    assert_eq!(rows[0].duration_ms, 1000.0, "the gateway's span, not the caller's");
    assert_eq!(rows[0].time_unix_nano, T0 + 40 * MS);
    // Only the caller's span present (the servers are not instrumented): it is the request.
    let rows = split_rows(&spans[..1]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].service, "app");
}

#[test]
fn child_spans_overlaps_counted_once() {
    let r = res("triton");
    let spans = vec![
        ts(&r, span(1, None, "infer", 2, 0, 100, &[("gen_ai.request.model", "resnet")])),
        ts(&r, span(2, Some(1), "queue wait", 1, 0, 30, &[])),
        ts(&r, span(3, Some(2), "scheduler", 1, 10, 40, &[])),
        ts(&r, span(4, Some(1), "compute_forward", 1, 40, 90, &[])),
    ];
    let rows = split_rows(&spans);
    assert_eq!(rows[0].split_source, "child_spans");
    assert!((rows[0].queue_ms - 40.0).abs() < 1e-6, "{}", rows[0].queue_ms);
    assert!((rows[0].compute_ms - 50.0).abs() < 1e-6);
    assert!((rows[0].other_ms - 10.0).abs() < 1e-6);
}

#[test]
fn messaging_gap_is_queue() {
    let api = res("api");
    let worker = res("worker");
    let mut consumer = span(3, None, "jobs process", 5, 250, 900, &[]);
    consumer.links = vec![LinkRef { trace_id: vec![7; 16], span_id: vec![2; 8] }];
    let spans = vec![
        ts(&api, span(1, None, "POST /generate", 2, 0, 1000, &[])),
        ts(&api, span(2, Some(1), "jobs publish", 4, 10, 50, &[])),
        ts(&worker, consumer),
    ];
    // Two roots (api and a linked consumer): the api root envelopes, the consumer is its own.
    let rows = split_rows(&spans);
    let api_row = rows.iter().find(|r| r.service == "api").unwrap();
    assert_eq!(api_row.split_source, "none");
    let mut parented = spans.clone();
    parented[2].span.parent_span_id = vec![2; 8];
    parented[2].span.links.clear();
    let rows = split_rows(&parented);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].split_source, "messaging");
    assert!((rows[0].queue_ms - 200.0).abs() < 1e-6);
    assert!((rows[0].compute_ms - 650.0).abs() < 1e-6);
    assert!((rows[0].other_ms - 150.0).abs() < 1e-6);
}

#[test]
fn plain_span_is_all_compute_and_errors_are_seen() {
    let r = res("svc");
    let mut s = span(1, None, "GET /", 2, 0, 80, &[("http.response.status_code", "503")]);
    s.status_code = 0;
    let rows = split_rows(&[ts(&r, s)]);
    assert_eq!(rows[0].split_source, "none");
    assert_eq!(rows[0].compute_ms, 80.0);
    assert_eq!(rows[0].status, "error");
    assert_eq!(rows[0].operation.as_deref(), Some("GET /"));
}

#[test]
fn two_llm_calls_in_one_trace_are_two_requests() {
    let app = res("agent");
    let v = res("vllm");
    let call = |id, start, end| {
        span(
            id,
            Some(1),
            "chat",
            3,
            start,
            end,
            &[("gen_ai.request.model", "m"), ("gen_ai.latency.time_in_queue", "0.01")],
        )
    };
    let spans =
        vec![ts(&app, span(1, None, "agent run", 1, 0, 500, &[])), ts(&v, call(2, 0, 100)), ts(&v, call(3, 200, 450))];
    let rows = split_rows(&spans);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.iter().map(|r| r.duration_ms).sum::<f64>(), 350.0);
}

/// One scratch for many traces (the ingest path) gives each trace the rows a scratch of
/// its own would: the kept buffers and the last resource's keys carry nothing over, as
/// traces of two resources and of different sizes alternate.
#[test]
fn a_scratch_kept_across_traces_and_resources_changes_no_row() {
    let resources = ["llama", "mistral"].map(|service| {
        let r = res(service);
        let spans = (0..4u8).map(|i| {
            let mut s =
                span(1, None, "llm_request", 2, 0, 100 + u64::from(i), &[("gen_ai.latency.time_in_queue", "0.01")]);
            s.trace_id[0] = i;
            s.trace_id[1] = service.len() as u8;
            s
        });
        slo_store::ResourceSpans { service: r.service.clone(), resource: r.attrs.clone(), spans: spans.collect() }
    });
    let batch = slo_store::SpanBatch { resources: resources.to_vec(), ..Default::default() };
    let held = crate::assemble::hold_record(&prost::Message::encode_to_vec(&batch)).unwrap();
    let mut held: Vec<HeldSpan> = held.into_iter().map(|(_, h)| h).collect();
    // Alternate the two resources, and make one trace of two spans.
    let mistral = held.split_off(4);
    let mut traces: Vec<Vec<HeldSpan>> = held.into_iter().zip(mistral).flat_map(|(a, b)| [vec![a], vec![b]]).collect();
    let second = traces.remove(3).pop().unwrap();
    traces[2].push(second);
    let split = splitter();
    let mut scratch = SplitScratch::default();
    for t in &traces {
        let mut rows = Vec::new();
        split
            .each_held_request(t, &mut scratch, |row, attrs| {
                let attributes = attrs.iter().map(|(k, v)| Attr::new(*k, *v)).collect();
                rows.push(RequestRow { attributes, ..row.to_row() });
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap();
        assert_eq!(rows, split.held_requests(t), "the same rows as with a scratch of its own");
        for r in &rows {
            assert_eq!(r.pod.as_deref(), Some(format!("{}-pod", r.service).as_str()), "the pod of its own resource");
        }
    }
}

#[test]
fn bad_pattern_is_named() {
    let cfg = SplitConfig { queue_span_patterns: vec!["(".into()], ..Default::default() };
    let err = Splitter::new(&cfg).unwrap_err();
    assert!(err.contains("queue_span_patterns"), "{err}");
}

#[test]
fn rows_carry_the_request_spans_attributes_that_are_not_columns() {
    let v = res("vllm");
    let attrs = [
        ("gen_ai.request.model", "m"),
        ("gen_ai.response.model", "m-2024"),
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.usage.prompt_tokens", "512"),
        ("gen_ai.usage.input_tokens", "500"),
        ("gen_ai.usage.completion_tokens", "12"),
        ("gen_ai.latency.time_in_queue", "0.1"),
        ("gen_ai.latency.time_in_model_inference", "0.2"),
        ("gen_ai.request.id", "chatcmpl-1"),
        ("x", "y"),
    ];
    let spans = vec![ts(&v, span(1, None, "llm_request", 2, 0, 1000, &attrs))];
    let got = split_rows(&spans);
    assert_eq!(got[0].split_source, "attributes");
    assert_eq!((got[0].input_tokens, got[0].output_tokens), (Some(500), Some(12)));
    // Left out: the response model (the model column), the operation, the token counts the
    // columns hold and the latencies the split read. Kept: a request model that differs
    // from the column, a second input count that disagrees with it, ids, anything else.
    let keys: Vec<&str> = got[0].attributes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["gen_ai.request.model", "gen_ai.usage.prompt_tokens", "gen_ai.request.id", "x"]);

    // Without a split by attributes, a lone latency attribute stays; so does a count that
    // is not a number (its column is empty).
    let lone = [("gen_ai.latency.e2e", "1.0"), ("gen_ai.request.model", "m"), ("gen_ai.usage.output_tokens", "n/a")];
    let got = split_rows(&[ts(&v, span(1, None, "llm_request", 2, 0, 1000, &lone))]);
    assert_eq!(got[0].split_source, "none");
    assert_eq!(got[0].output_tokens, None);
    assert_eq!(
        got[0].attributes,
        vec![Attr::new("gen_ai.latency.e2e", "1.0"), Attr::new("gen_ai.usage.output_tokens", "n/a")]
    );
}

/// What splitting one held vLLM request span costs (`each_held_request`: the split, the
/// row's columns and the attributes left for `requests.attributes`), with a resource and
/// span attributes as vLLM and the OpenTelemetry SDK send them. For BENCHMARKS.md ("The
/// split's attribute lookups in one pass"):
/// `cargo test --release --workspace --lib -- --ignored --nocapture split_cost`
#[test]
#[ignore]
fn split_cost() {
    let r = Arc::new(Resource {
        service: "vllm-llama-70b".into(),
        attrs: [
            ("service.name", "vllm-llama-70b"),
            ("telemetry.sdk.language", "python"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("telemetry.sdk.version", "1.27.0"),
            ("host.name", "llama-70b-7d9c6b5f4-x2x9q"),
            ("k8s.namespace.name", "inference"),
            ("k8s.deployment.name", "llama-70b"),
            ("k8s.replicaset.name", "llama-70b-7d9c6b5f4"),
            ("k8s.pod.name", "llama-70b-7d9c6b5f4-x2x9q"),
            ("k8s.node.name", "gpu-h100-3"),
        ]
        .map(|(k, v)| Attr::new(k, v))
        .to_vec(),
    });
    let attrs = [
        ("gen_ai.request.id", "chatcmpl-7f3a9c2e4b1d4e8f9a0b1c2d3e4f5a6b"),
        ("gen_ai.response.model", "meta-llama/Llama-3.1-70B-Instruct"),
        ("gen_ai.request.model", "meta-llama/Llama-3.1-70B-Instruct"),
        ("gen_ai.system", "vllm"),
        ("gen_ai.usage.prompt_tokens", "812"),
        ("gen_ai.usage.completion_tokens", "153"),
        ("gen_ai.latency.time_in_queue", "0.012843608856201172"),
        ("gen_ai.latency.time_to_first_token", "0.21488690376281738"),
        ("gen_ai.latency.e2e", "3.0182151794433594"),
        ("gen_ai.latency.time_in_model_prefill", "0.19853711128234863"),
        ("gen_ai.latency.time_in_model_decode", "2.8018798828125"),
        ("gen_ai.latency.time_in_model_inference", "3.0004169940948486"),
        ("gen_ai.request.max_tokens", "256"),
        ("gen_ai.request.temperature", "0.7"),
        ("gen_ai.request.top_p", "0.95"),
        ("gen_ai.request.n", "1"),
        ("gen_ai.response.finish_reasons", "[\"stop\"]"),
        ("http.route", "/v1/chat/completions"),
    ];
    // Exports of 200 spans from one resource, as `otlp_load` sends them: each span a trace.
    let traces: Vec<Vec<HeldSpan>> = (0..10u32)
        .flat_map(|e| {
            let spans = (0..200u32).map(|i| {
                let mut s = span(1, None, "llm_request", 2, 0, 3_018, &attrs);
                s.trace_id[..4].copy_from_slice(&(e * 200 + i).to_be_bytes());
                s
            });
            let batch = slo_store::SpanBatch {
                resources: vec![slo_store::ResourceSpans {
                    service: r.service.clone(),
                    resource: r.attrs.clone(),
                    spans: spans.collect(),
                }],
                ..Default::default()
            };
            let held = crate::assemble::hold_record(&prost::Message::encode_to_vec(&batch)).unwrap();
            held.into_iter().map(|(_, h)| vec![h])
        })
        .collect();
    let split = splitter();
    // Rounds take turns: one scratch for all traces (the ingest path's way), the same
    // without the last resource's keys kept, and a new scratch for each trace (what a trace
    // cost before the scratch was kept), so the three are compared seconds apart.
    let modes = ["one scratch", "one scratch, no resource kept", "a scratch each trace"];
    let mut per_mode = vec![Vec::new(); modes.len()];
    let mut checksum = 0usize;
    for round in 0..75 {
        let mode = round % modes.len();
        let started = std::time::Instant::now();
        let mut scratch = SplitScratch::default();
        for t in &traces {
            match mode {
                1 => scratch.resource = None,
                2 => scratch = SplitScratch::default(),
                _ => {}
            }
            let _ = split.each_held_request(t, &mut scratch, |row, kept| {
                checksum += kept.len() + row.pod.map_or(0, str::len);
                Ok::<_, std::convert::Infallible>(())
            });
        }
        per_mode[mode].push(started.elapsed().as_nanos() as f64 / traces.len() as f64);
    }
    assert_eq!(checksum, 75 * 2_000 * (8 + "llama-70b-7d9c6b5f4-x2x9q".len()), "8 attributes left");
    for (what, per_trace) in modes.iter().zip(&mut per_mode) {
        per_trace.sort_by(f64::total_cmp);
        println!(
            "split_cost: {:.0} ns a trace of one vLLM span, {what} (median of 25 x 2,000; min {:.0}, max {:.0})",
            per_trace[12], per_trace[0], per_trace[24]
        );
    }
}
