use super::*;

fn request<'a>(service: &'a str, model: Option<&'a str>, duration_ms: f64, status: &'static str) -> RequestRef<'a> {
    RequestRef {
        service,
        model,
        status,
        duration_ms,
        queue_ms: duration_ms / 4.0,
        compute_ms: duration_ms / 2.0,
        ttft_ms: (duration_ms > 100.0).then_some(100.0),
        ..Default::default()
    }
}

fn exposition(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

/// Two reads of `/metrics`, then a batch: the held requests of new pairs are counted.
fn settle(registry: &Registry, m: &SliMetrics) {
    exposition(registry);
    exposition(registry);
    drop(m.batch());
}

fn value(text: &str, series: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[test]
fn an_slo_threshold_is_a_bucket_so_its_good_count_is_exact() {
    let mut bounds = SliBounds::default();
    bounds.add(SliMetric::Duration, 1750.0, "llm");
    bounds.add(SliMetric::Ttft, 350.0, "llm");
    let mut registry = Registry::default();
    let m = SliMetrics::new(&mut registry, &bounds);
    let mut b = m.batch();
    // Exactly at the threshold counts as good (le is "at or below"); just over does not.
    for d in [1000.0, 1750.0, 1750.0001, 2000.0, 1749.0] {
        b.observe(&request("llm", Some("m"), d, "ok"));
    }
    b.observe(&request("llm", Some("m"), 50.0, "error"));
    drop(b);
    settle(&registry, &m);
    let text = exposition(&registry);
    let bucket = |name: &str, le: f64| {
        value(&text, &format!("{name}_bucket{{le=\"{}\",service=\"llm\",model=\"m\"}}", le_label(le)))
    };
    assert_eq!(le_label(1.75), "1.75");
    assert_eq!(le_label(2.0), "2.0");
    assert_eq!(bucket("slo_request_duration_seconds", 1.75), 4.0);
    assert_eq!(bucket("slo_request_duration_seconds", 2.5), 6.0);
    assert_eq!(value(&text, "slo_request_duration_seconds_count{service=\"llm\",model=\"m\"}"), 6.0);
    // TTFT counts only the requests that reported one; 0.35 is a bucket of its own.
    assert_eq!(bucket("slo_request_ttft_seconds", 0.35), 5.0);
    assert_eq!(value(&text, "slo_request_ttft_seconds_count{service=\"llm\",model=\"m\"}"), 5.0);
    assert_eq!(value(&text, "slo_requests_total{service=\"llm\",model=\"m\",outcome=\"ok\"}"), 5.0);
    assert_eq!(value(&text, "slo_requests_total{service=\"llm\",model=\"m\",outcome=\"error\"}"), 1.0);
    // The threshold of one metric is not added to the others.
    assert!(!text.contains("slo_request_queue_seconds_bucket{le=\"1.75\",service=\"llm\""), "{text}");
}

#[test]
fn both_outcomes_exist_from_the_first_request() {
    let mut registry = Registry::default();
    let m = SliMetrics::new(&mut registry, &SliBounds::default());
    m.batch().observe(&request("svc", None, 10.0, "ok"));
    settle(&registry, &m);
    let text = exposition(&registry);
    assert_eq!(value(&text, "slo_requests_total{service=\"svc\",model=\"\",outcome=\"error\"}"), 0.0);
    let per_pair = text.lines().filter(|l| !l.starts_with('#') && l.contains("service=\"svc\"")).count();
    assert_eq!(per_pair, 2 + 4 * (DEFAULT_BOUNDS_S.len() + 3), "the series count per pair the docs state");
}

#[test]
fn pairs_past_the_bound_fold_into_other_but_slo_services_keep_their_name() {
    let mut bounds = SliBounds { max_pairs: 2, ..Default::default() };
    bounds.add(SliMetric::Duration, 500.0, "kept");
    let mut registry = Registry::default();
    let m = SliMetrics::new(&mut registry, &bounds);
    let mut b = m.batch();
    for (svc, model) in [("a", "x"), ("b", "x"), ("c", "x"), ("kept", "y"), ("a", "x")] {
        b.observe(&request(svc, Some(model), 10.0, "ok"));
    }
    drop(b);
    // A second batch finds the admitted pairs again.
    m.batch().observe(&request("d", Some("z"), 10.0, "ok"));
    settle(&registry, &m);
    let text = exposition(&registry);
    assert_eq!(value(&text, "slo_requests_total{service=\"a\",model=\"x\",outcome=\"ok\"}"), 2.0);
    assert_eq!(value(&text, "slo_requests_total{service=\"_other\",model=\"_other\",outcome=\"ok\"}"), 2.0);
    assert_eq!(value(&text, "slo_requests_total{service=\"kept\",model=\"_other\",outcome=\"ok\"}"), 1.0);
    assert!(!text.contains("service=\"c\""), "{text}");
}

#[test]
fn a_new_pair_shows_zero_until_read_so_prometheus_counts_its_first_batch() {
    let mut registry = Registry::default();
    let m = SliMetrics::new(&mut registry, &SliBounds::default());
    let mut b = m.batch();
    for _ in 0..500 {
        b.observe(&request("new", Some("m"), 10.0, "ok"));
    }
    drop(b);
    let ok = "slo_requests_total{service=\"new\",model=\"m\",outcome=\"ok\"}";
    // First read: the series exists at zero (Prometheus's first sample), as in the next.
    assert_eq!(value(&exposition(&registry), ok), 0.0);
    m.batch().observe(&request("new", Some("m"), 10.0, "ok"));
    assert_eq!(value(&exposition(&registry), ok), 0.0, "a read that may have begun before the birth does not count");
    // Released: every request, the held ones included.
    drop(m.batch());
    assert_eq!(value(&exposition(&registry), ok), 501.0);
    m.batch().observe(&request("new", Some("m"), 10.0, "ok"));
    assert_eq!(value(&exposition(&registry), ok), 502.0, "counted at once from then on");
    assert_eq!(value(&exposition(&registry), "slo_request_duration_seconds_count{service=\"new\",model=\"m\"}"), 502.0);
}

#[test]
fn without_a_scraper_held_requests_are_bounded_and_then_counted() {
    let mut registry = Registry::default();
    let m = SliMetrics::new(&mut registry, &SliBounds::default());
    let mut b = m.batch();
    for _ in 0..MAX_HELD + 10 {
        b.observe(&request("lonely", None, 10.0, "ok"));
    }
    drop(b);
    assert!(m.held.lock().values().map(|(_, v)| v.len()).sum::<usize>() <= MAX_HELD);
    settle(&registry, &m);
    let text = exposition(&registry);
    assert_eq!(
        value(&text, "slo_requests_total{service=\"lonely\",model=\"\",outcome=\"ok\"}"),
        (MAX_HELD + 10) as f64
    );
}
