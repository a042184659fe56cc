use std::time::{Duration, Instant};

use slo_store::RequestRef;

use super::*;
use crate::config::{SamplingConfig, SloThreshold};
use crate::sli::SliMetric;

fn request(service: &str, duration_ms: f64) -> RequestRef<'_> {
    RequestRef { service, status: "ok", duration_ms, ..Default::default() }
}

/// A trace id whose draw for the share is the lowest (`in_share(true)`) or highest of
/// the first ids tried.
fn id(in_share: bool) -> [u8; 16] {
    let ids = (0u64..1000).map(|i| {
        let mut id = [7u8; 16];
        id[8..].copy_from_slice(&i.to_be_bytes());
        id
    });
    if in_share { ids.min_by_key(share_draw).unwrap() } else { ids.max_by_key(share_draw).unwrap() }
}

const OUT: bool = false;

fn cfg(keep_share: f64) -> SamplingConfig {
    SamplingConfig { keep_share, min_recent: 100, ..Default::default() }
}

/// Feeds `n` requests of `service` with latencies cycling through 1..=100 ms.
fn warm(s: &mut Sampler, service: &str, n: usize, now: Instant) {
    for i in 0..n {
        let mut v = TraceVerdict::default();
        s.see(&mut v, &request(service, (i % 100 + 1) as f64), now);
    }
}

fn decide_one(s: &mut Sampler, r: RequestRef<'_>, trace: [u8; 16], now: Instant) -> Option<Sampled> {
    let mut v = TraceVerdict::default();
    s.see(&mut v, &r, now);
    s.decide(&v, &trace, false)
}

#[test]
fn slow_and_failed_traces_are_always_kept_and_the_rest_by_share() {
    let now = Instant::now();
    let mut s = Sampler::new(&cfg(0.1));
    warm(&mut s, "llm", 10_000, now);
    // The recent p99 is about 99 ms: 150 ms is slow, whatever its trace id.
    let slow = decide_one(&mut s, request("llm", 150.0), id(OUT), now).unwrap();
    assert_eq!((slow.by, slow.adjusted_count), ("slow", 1.0));
    let failed = RequestRef { status: "error", ..request("llm", 5.0) };
    assert_eq!(decide_one(&mut s, failed, id(OUT), now).unwrap().by, "error");
    // A failed child span is enough.
    let mut v = TraceVerdict::default();
    s.see(&mut v, &request("llm", 5.0), now);
    assert_eq!(s.decide(&v, &id(OUT), true).unwrap().by, "error");
    // Ordinary traces: kept when the id falls in the share, counted 10 times.
    let kept = decide_one(&mut s, request("llm", 50.0), id(true), now).unwrap();
    assert_eq!(kept.by, "share");
    assert!((kept.adjusted_count - 10.0).abs() < 1e-9);
    assert_eq!(decide_one(&mut s, request("llm", 50.0), id(OUT), now), None);
}

#[test]
fn the_share_kept_is_the_share_asked_for_and_the_same_every_time() {
    let now = Instant::now();
    for share in [0.01, 0.1, 0.5] {
        let mut s = Sampler::new(&cfg(share));
        warm(&mut s, "llm", 1000, now);
        let mut rng = 0u64;
        let mut kept = 0;
        let n = 100_000;
        for _ in 0..n {
            // Sequential ids, as some SDKs make them: the hash spreads them all the same.
            rng += 1;
            let mut trace = [0u8; 16];
            trace[8..].copy_from_slice(&rng.to_be_bytes());
            let a = decide_one(&mut s, request("llm", 10.0), trace, now);
            assert_eq!(a, decide_one(&mut s, request("llm", 10.0), trace, now), "same trace, same decision");
            kept += usize::from(a.is_some());
        }
        let got = kept as f64 / n as f64;
        assert!((got - share).abs() < share * 0.1 + 0.001, "share {share}: kept {got}");
    }
}

#[test]
fn a_new_or_quiet_service_keeps_everything_until_it_has_a_quantile() {
    let now = Instant::now();
    let mut s = Sampler::new(&cfg(0.0));
    for i in 0..99 {
        let d = decide_one(&mut s, request("new", 10.0), id(OUT), now);
        assert_eq!(d.map(|d| d.by), Some("low_traffic"), "request {i}");
    }
    warm(&mut s, "new", 10, now);
    assert_eq!(decide_one(&mut s, request("new", 10.0), id(OUT), now), None, "judged from 100 requests on");
    // The window moves on: after it passes with no request, the service is new again.
    let later = now + Duration::from_secs(301);
    assert_eq!(decide_one(&mut s, request("new", 10.0), id(OUT), later).unwrap().by, "low_traffic");
}

#[test]
fn a_request_over_its_slo_threshold_is_slow_even_under_the_recent_p99() {
    let now = Instant::now();
    let mut c = cfg(0.0);
    c.slo_thresholds = vec![SloThreshold { service: "llm".into(), metric: SliMetric::Ttft, threshold_ms: 20.0 }];
    let mut s = Sampler::new(&c);
    warm(&mut s, "llm", 10_000, now);
    let r = RequestRef { ttft_ms: Some(25.0), ..request("llm", 30.0) };
    assert_eq!(decide_one(&mut s, r, id(OUT), now).unwrap().by, "slow");
    let r = RequestRef { ttft_ms: Some(15.0), ..request("llm", 30.0) };
    assert_eq!(decide_one(&mut s, r, id(OUT), now), None);
    // Another service's threshold does not apply.
    warm(&mut s, "other", 10_000, now);
    let r = RequestRef { ttft_ms: Some(25.0), ..request("other", 30.0) };
    assert_eq!(decide_one(&mut s, r, id(OUT), now), None);
}

#[test]
fn the_slow_threshold_follows_the_service_within_a_bucket() {
    let now = Instant::now();
    let mut s = Sampler::new(&cfg(0.0));
    // 1..=1000 ms: the p99 is 990 ms.
    for i in 0..100_000 {
        let mut v = TraceVerdict::default();
        s.see(&mut v, &request("llm", (i % 1000 + 1) as f64), now);
    }
    // Recomputed at most once a second.
    let t = s.threshold("llm", now + Duration::from_secs(2)).unwrap();
    // Within the sketch's 1% of the exact lower-rank p99 (990 ms).
    assert!((980.0..=1000.0).contains(&t), "p99 {t}");
    // Every service past the bound shares one histogram: the map stops growing.
    for i in 0..MAX_SERVICES + 50 {
        let name = format!("svc-{i}");
        let mut v = TraceVerdict::default();
        s.see(&mut v, &request(&name, 1.0), now);
    }
    assert!(s.recent.len() <= MAX_SERVICES + 1, "{}", s.recent.len());
}

#[test]
fn keep_all_stores_every_trace_unjudged() {
    let now = Instant::now();
    let mut s = Sampler::new(&cfg(1.0));
    assert_eq!(decide_one(&mut s, request("llm", 1.0), id(OUT), now), Some(Sampled::ALL));
    assert!(s.recent.is_empty(), "nothing to judge, nothing recorded");
}
