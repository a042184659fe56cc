//! End-to-end tests of `slo loadgen target` against in-process mock servers. Each run is
//! bounded by its `--duration` and `--timeout`, and each test by `bounded`.

mod mock;

use std::time::{Duration, SystemTime};

use clap::Parser;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::dist::TokenDist;
use args::{Api, Arrival, parse_duration};
use mock::Behaviour;
use schedule::prompt;

#[derive(Parser)]
#[command(args_override_self = true)]
struct Cli {
    #[command(flatten)]
    args: TargetArgs,
}

/// Arguments for a test run: constant arrival, seed 1, no progress bar.
fn args(url: &str, extra: &[&str]) -> TargetArgs {
    let mut v = vec!["slo", "--url", url, "--model", "m", "--no-progress", "--arrival", "constant", "--seed", "1"];
    v.extend_from_slice(extra);
    Cli::try_parse_from(v).unwrap().args
}

async fn bounded(args: TargetArgs) -> TargetReport {
    tokio::time::timeout(Duration::from_secs(9), run(args, CancellationToken::new()))
        .await
        .expect("run finished in time")
        .expect("run succeeded")
}

fn within(what: &str, v: f64, lo: f64, hi: f64) {
    assert!((lo..=hi).contains(&v), "{what} = {v:.1}, want {lo}..={hi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_measures_ttft_tpot_latency_and_tokens() {
    let stream = Behaviour::Stream {
        ttft: Duration::from_millis(150),
        per_token: Duration::from_millis(30),
        tokens_per_chunk: 1,
        usage: true,
    };
    let (url, seen) = mock::openai(stream).await;
    let flags = ["--rps", "4", "--duration", "1s", "--prompt-tokens", "20", "--output-tokens", "8"];
    let r = bounded(args(&url, &flags)).await;
    assert_eq!((r.counts.scheduled, r.counts.sent, r.counts.ok, r.counts.errors), (4, 4, 4, 0), "{r:?}");
    assert_eq!((r.counts.input_tokens, r.counts.output_tokens), (80, 32));
    let ttft = r.ttft_ms.unwrap();
    within("ttft p50", ttft.p50, 150.0, 220.0);
    let tpot = r.tpot_ms.unwrap();
    within("tpot p50", tpot.p50, 27.0, 45.0);
    within("itl p50", r.itl_ms.unwrap().p50, 25.0, 45.0);
    within("latency p50", r.latency_ms.unwrap().p50, 360.0, 460.0);
    assert_eq!(r.itl_ms.unwrap().count, 4 * 7);
    // Without --otlp the traceparent still goes out.
    assert!(seen.lock().iter().all(|s| s.traceparent.is_some()));
    assert!(r.render_table().contains("ttft"));

    // Two tokens per chunk: usage says 8 tokens per request, not the 4 chunks.
    let two = Behaviour::Stream {
        ttft: Duration::ZERO,
        per_token: Duration::from_millis(10),
        tokens_per_chunk: 2,
        usage: true,
    };
    let (url, _) = mock::openai(two).await;
    let r = bounded(args(&url, &["--rps", "10", "--duration", "300ms", "--output-tokens", "8"])).await;
    assert_eq!((r.counts.ok, r.counts.output_tokens), (3, 24));
    // Without usage the chunks are counted.
    let no_usage = Behaviour::Stream {
        ttft: Duration::ZERO,
        per_token: Duration::from_millis(10),
        tokens_per_chunk: 2,
        usage: false,
    };
    let (url, _) = mock::openai(no_usage).await;
    let r = bounded(args(&url, &["--rps", "10", "--duration", "300ms", "--output-tokens", "8"])).await;
    assert_eq!((r.counts.ok, r.counts.output_tokens), (3, 12));
    // Not streaming: latency and usage, no TTFT.
    let r = bounded(args(&url, &["--rps", "10", "--duration", "300ms", "--output-tokens", "8", "--no-stream"])).await;
    assert_eq!((r.counts.ok, r.counts.output_tokens), (3, 24));
    assert!(r.ttft_ms.is_none() && r.tpot_ms.is_none() && r.latency_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stall_shows_in_p99_and_does_not_delay_the_schedule() {
    let stall = Behaviour::Stall { from: Duration::from_millis(1000), to: Duration::from_millis(2000) };
    let (url, seen) = mock::openai(stall).await;
    let r = bounded(args(&url, &["--rps", "40", "--duration", "3s", "--output-tokens", "1"])).await;
    assert_eq!((r.counts.sent, r.counts.ok), (120, 120), "{:?}", r.counts);
    let lat = r.latency_ms.unwrap();
    // ~40 of 120 requests were due during the freeze, waiting 0..1000 ms from
    // their intended times; a closed-loop client would have seen one slow request.
    within("latency p99", lat.p99, 900.0, 1150.0);
    within("latency p90", lat.p90, 550.0, 1000.0);
    assert!(lat.p50 < 100.0, "p50 {}", lat.p50);
    // The schedule kept going during the freeze.
    let seen = seen.lock().clone();
    let first = seen[0].at;
    let during = seen.iter().filter(|s| (1000..2000).contains(&(s.at - first).as_millis())).count();
    assert!(during >= 36, "only {during} requests arrived during the stall");
    assert!(r.send_lag_ms.unwrap().p99 < 50.0, "send lag {:?}", r.send_lag_ms);

    // A request sent late counts its latency from the intended time, and says how late it went.
    let (http, headers) = client::http_client(&args(&url, &["--rps", "1", "--duration", "1s"])).unwrap();
    let endpoint = Endpoint {
        client: http,
        url: format!("{url}/v1/chat/completions"),
        api: Api::Chat,
        model: "m".into(),
        stream: true,
        headers,
        timeout: Duration::from_secs(2),
    };
    let planned = Planned { index: 0, at: Duration::ZERO, prompt_tokens: 3, output_tokens: 2, prompt_seed: 1 };
    let intended = std::time::Instant::now() - Duration::from_millis(500);
    let o = endpoint.send(&planned, intended, Default::default()).await;
    within("send lag", o.send_lag_ms, 500.0, 600.0);
    within("latency from intended", o.result.unwrap().latency_ms, 500.0, 700.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_kind_and_the_run_completes() {
    let (url, _) = mock::openai(Behaviour::Errors).await;
    let r = bounded(args(&url, &["--rps", "20", "--duration", "600ms", "--timeout", "400ms", "--output-tokens", "2"]))
        .await;
    let want: Vec<(&str, u64)> =
        vec![("bad_response", 2), ("http_429", 2), ("http_500", 2), ("stream_broken", 2), ("timeout", 2)];
    let got: Vec<(&str, u64)> = r.counts.errors_by_kind.iter().map(|(k, &v)| (k.as_str(), v)).collect();
    assert_eq!(got, want);
    assert_eq!((r.counts.sent, r.counts.ok, r.counts.errors, r.counts.unfinished), (12, 2, 10, 0));
    assert!(r.render_table().contains("http_429 2"));

    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", refused.local_addr().unwrap());
    drop(refused);
    let r = bounded(args(&dead, &["--rps", "10", "--duration", "300ms"])).await;
    assert_eq!(r.counts.errors_by_kind.get("connect"), Some(&3), "{:?}", r.counts);

    // One slot: everything due while the first request is out is dropped, not delayed.
    let (url, _) = mock::openai(Behaviour::Slow(Duration::from_millis(600))).await;
    let r = bounded(args(&url, &["--rps", "20", "--duration", "500ms", "--max-in-flight", "1"])).await;
    assert_eq!((r.counts.scheduled, r.counts.sent, r.counts.dropped, r.counts.ok), (10, 1, 9, 1));
}

fn valid_traceparent(tp: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let ok = parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2);
    ok.then(|| (parts[1].to_owned(), parts[2].to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_sent_and_spans_are_exported_at_intended_times() {
    let (url, seen) = mock::openai(Behaviour::Slow(Duration::from_millis(20))).await;
    let (otlp, spans) = mock::otlp().await;
    let flags = ["--rps", "10", "--duration", "500ms", "--otlp", &otlp, "--otlp-protocol", "http"];
    let r = bounded(args(&url, &flags)).await;
    assert_eq!(r.counts.ok, 5);
    assert!(r.otlp_error.is_none(), "{:?}", r.otlp_error);

    let seen = seen.lock().clone();
    let sent: Vec<(String, String, SystemTime)> = seen
        .iter()
        .map(|s| {
            let tp = s.traceparent.as_deref().expect("traceparent on every request");
            let (trace, span) = valid_traceparent(tp).unwrap_or_else(|| panic!("bad traceparent {tp:?}"));
            (trace, span, s.wall)
        })
        .collect();
    let mut spans = spans.lock().clone();
    assert_eq!(spans.len(), 5, "exported spans");
    spans.sort_by_key(|s| s.start_time_unix_nano);
    let t0 = spans[0].start_time_unix_nano;
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.name, "POST /v1/chat/completions");
        assert_eq!(s.kind, 3, "SPAN_KIND_CLIENT");
        // Intended times are exactly 100 ms apart at --rps 10 --arrival constant.
        let offset_ms = (s.start_time_unix_nano - t0) as f64 / 1e6;
        within("span start offset", offset_ms, i as f64 * 100.0 - 0.01, i as f64 * 100.0 + 0.01);
        let (trace, span) = (hex::encode(&s.trace_id), hex::encode(&s.span_id));
        let (_, _, arrived) =
            sent.iter().find(|(t, sp, _)| *t == trace && *sp == span).expect("span of a sent request");
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(s.start_time_unix_nano);
        assert!(start <= *arrived, "span starts at the intended time, before the server saw it");
        let attr = |k: &str| s.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone());
        assert!(attr("gen_ai.request.model").is_some() && attr("gen_ai.usage.output_tokens").is_some());
        assert!(attr("http.response.status_code").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_schedule_and_prompts() {
    let dist = |s: &str| s.parse::<TokenDist>().unwrap();
    let plan = |seed| {
        Schedule::new(
            seed,
            Arrival::Poisson,
            100.0,
            Duration::from_secs(100),
            dist("lognormal:512,0.6"),
            dist("exp:100"),
        )
        .collect::<Vec<_>>()
    };
    let (a, b, c) = (plan(7), plan(7), plan(8));
    assert_eq!(a, b);
    assert_ne!(a[..10], c[..10]);
    let mean_gap = a.last().unwrap().at.as_secs_f64() / a.len() as f64;
    within("poisson mean gap ms", mean_gap * 1e3, 9.6, 10.4);
    let constant =
        Schedule::new(1, Arrival::Constant, 4.0, Duration::from_secs(2), dist("5"), dist("5")).collect::<Vec<_>>();
    let at: Vec<u128> = constant.iter().map(|p| p.at.as_millis()).collect();
    assert_eq!(at, [0, 250, 500, 750, 1000, 1250, 1500, 1750]);
    assert_eq!(prompt(3, 40), prompt(3, 40));
    assert_ne!(prompt(3, 40), prompt(4, 40));
    assert_eq!(prompt(3, 40).split(' ').count(), 40);

    // Two runs with one seed send the same bodies in the same order.
    let (url, seen) = mock::openai(Behaviour::Slow(Duration::ZERO)).await;
    for _ in 0..2 {
        bounded(args(&url, &["--rps", "20", "--duration", "250ms", "--arrival", "poisson", "--seed", "42"])).await;
    }
    let bodies: Vec<String> = seen.lock().iter().map(|s| s.body.to_string()).collect();
    assert!(bodies.len() >= 2 && bodies.len().is_multiple_of(2), "{}", bodies.len());
    let (first, second) = bodies.split_at(bodies.len() / 2);
    assert_eq!(first, second);
}

#[test]
fn bad_flags_name_the_flag() {
    let parse = |extra: &[&str]| {
        let mut v = vec!["slo", "--url", "http://h:1", "--rps", "1", "--duration", "1s"];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).map(|c| c.args).map_err(|e| e.to_string())
    };
    for (flag, value) in [("--duration", "5x"), ("--duration", "m5"), ("--rps", "abc"), ("--rps", "-3")] {
        let e = parse(&[&format!("{flag}={value}")]).unwrap_err();
        assert!(e.contains(flag) && e.contains(value), "{e}");
    }
    let e = parse(&["--prompt-tokens", "lognormal:abc,1"]).unwrap_err();
    assert!(e.contains("--prompt-tokens") && e.contains("MEDIAN"), "{e}");
    let e = parse(&["--header", "no colon"]).unwrap_err();
    assert!(e.contains("--header"), "{e}");

    for (extra, flag) in [
        (&["--url", "h:1"][..], "--url"),
        (&["--max-in-flight", "0"][..], "--max-in-flight"),
        (&["--otlp", "localhost:4317"][..], "--otlp"),
        (&["--duration", "0s"][..], "--duration"),
    ] {
        let e = parse(extra).unwrap().validate().unwrap_err();
        assert!(e.is_usage() && e.to_string().contains(flag), "{e}");
    }

    let d = |s| parse_duration(s).unwrap();
    assert_eq!(d("30s"), Duration::from_secs(30));
    assert_eq!(d("5m"), Duration::from_secs(300));
    assert_eq!(d("1h"), Duration::from_secs(3600));
    assert_eq!(d("1m30s"), Duration::from_secs(90));
    assert_eq!(d("250ms"), Duration::from_millis(250));
    assert_eq!(d("2"), Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_sending_waits_for_in_flight_and_still_reports() {
    let (url, _) = mock::openai(Behaviour::Slow(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let mut a = args(&url, &["--rps", "20", "--duration", "5s"]);
    a.out = Some(out.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(a, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(3), task).await.unwrap().unwrap().unwrap();
    let c = &r.counts;
    assert_eq!(c.scheduled, 100);
    assert!(c.cancelled >= 85 && c.sent >= 8, "{c:?}");
    assert_eq!(c.sent + c.dropped + c.cancelled, c.scheduled);
    assert_eq!((c.ok, c.unfinished), (c.sent, 0), "in-flight requests finished");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(json["counts"]["cancelled"], c.cancelled);
    assert_eq!(json["config"]["seed"], 1);
    assert!(json["latency_ms"]["p99"].as_f64().is_some() && json["ttft_ms"]["p50"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_export_over_grpc_too() {
    let (url, seen) = mock::openai(Behaviour::Slow(Duration::ZERO)).await;
    let (otlp, spans) = mock::otlp_grpc().await;
    let r = bounded(args(&url, &["--rps", "10", "--duration", "300ms", "--otlp", &otlp])).await;
    assert!(r.otlp_error.is_none(), "{:?}", r.otlp_error);
    let mut sent: Vec<String> = seen.lock().iter().map(|s| s.traceparent.clone().unwrap()[3..35].to_owned()).collect();
    let mut got: Vec<String> = spans.lock().iter().map(|s| hex::encode(&s.trace_id)).collect();
    sent.sort();
    got.sort();
    assert_eq!(sent.len(), 3);
    assert_eq!(got, sent);
}

#[test]
fn the_api_key_never_shows_in_debug_output() {
    let a = args(
        "http://127.0.0.1:9",
        &["--rps", "1", "--duration", "1s", "--api-key", "sk-very-secret-123", "--header", "X-Token: also-secret"],
    );
    assert_eq!(a.api_key.as_ref().map(|k| k.expose()), Some("sk-very-secret-123"));
    let shown = format!("{a:?}");
    assert!(!shown.contains("sk-very-secret") && !shown.contains("also-secret"), "{shown}");
}
