use super::*;

fn slos(text: &str) -> Vec<Slo> {
    slo_analyzer::spec::parse(text).unwrap()
}

fn opts() -> Options {
    Options {
        url: Some("http://slo.mon:8080/".into()),
        scrape_interval_ns: 30_000_000_000,
        regression_severity: "ticket".into(),
    }
}

fn yaml(text: &str) -> String {
    serde_yaml::to_string(&generate(&slos(text), &opts()).unwrap()).unwrap()
}

const LATENCY: &str = "slos:\n  - { name: lat, service: llm, objective: 99%, window: 28d, latency: { metric: ttft, threshold: 350ms } }\n";

#[test]
fn windows_are_scaled_to_the_period_and_the_threshold_is_a_bucket() {
    let y = yaml(LATENCY);
    // 28 days: 1h -> 56m, 5m -> 5m (4.67 rounded), 6h -> 5h36m, 3d -> 2d19h12m.
    for w in ["5m", "28m", "56m", "1h52m", "5h36m", "22h24m", "2d19h12m", "28d"] {
        assert!(y.contains(&format!("record: slo:sli_error:ratio_rate{w}\n")), "{w} missing in\n{y}");
    }
    assert!(y.contains(r#"slo_request_ttft_seconds_bucket{service="llm",le="0.35"}[56m]"#), "{y}");
    assert!(y.contains("(14.4 * 0.01)"), "the page-fast threshold: {y}");
    assert!(y.contains("burnrate_tier: page-fast") && y.contains("exhaustion: 1d22h"), "{y}");
    assert!(y.contains("explain: slo explain --server http://slo.mon:8080 --slo lat"), "{y}");
    assert!(y.contains("runbook_url: http://slo.mon:8080/slos/lat"), "{y}");
    // The period ratio counts events, as slo explain does, not an average of ratios.
    assert!(y.contains("sum(increase(slo_request_ttft_seconds_count{service=\"llm\"}[28d]))"), "{y}");
    assert!(y.contains("alert: InferenceP99Regression") && y.contains("alert: SLOTrafficAbsent"), "{y}");
}

#[test]
fn alerting_options_reach_the_rules() {
    let y = yaml(
        "slos:\n  - name: err\n    service: 'we\"ird'\n    model: m1\n    objective: 99.9%\n    window: 7d\n    errors: {}\n    alerting:\n      name: LlmErrors\n      labels: { team: infer }\n      page_labels: { severity: critical }\n      disable: [ticket-slow]\n      traffic_aware: true\n      absent: 'off'\n",
    );
    assert!(y.contains("alert: LlmErrors") && y.contains("team: infer") && y.contains("severity: critical"), "{y}");
    assert!(!y.contains("ticket-slow") && y.contains("ticket-fast"), "{y}");
    assert!(y.contains(r#"slo_requests_total{service="we\"ird",model="m1",outcome="error"}"#), "{y}");
    assert!(y.contains("record: slo:sli_total:increase7d") && y.contains("max(slo:sli_total:increase7d"), "{y}");
    assert!(!y.contains("SLOTrafficAbsent"), "absent: off: {y}");
}

#[test]
fn windows_shorter_than_two_scrapes_are_refused_naming_the_slo() {
    let s = slos("slos:\n  - { name: tiny, service: s, objective: 99%, window: 1d, errors: {} }\n");
    let e = generate(&s, &Options { scrape_interval_ns: 60_000_000_000, ..opts() }).err().unwrap();
    assert!(e.contains("\"tiny\"") && e.contains("1m window") && e.contains("--scrape-interval"), "{e}");
    assert!(generate(&s, &Options { scrape_interval_ns: 15_000_000_000, ..opts() }).is_ok());
}

#[test]
fn reserved_labels_and_unknown_tiers_are_refused() {
    let e = slo_analyzer::spec::parse(
        "slos:\n  - { name: a, service: s, objective: 99%, errors: {}, alerting: { labels: { sloth_id: x } } }\n",
    )
    .unwrap_err();
    assert!(e.contains("alerting.labels.sloth_id"), "{e}");
    let e = slo_analyzer::spec::parse(
        "slos:\n  - { name: a, service: s, objective: 99%, errors: {}, alerting: { disable: [page-medium] } }\n",
    )
    .unwrap_err();
    assert!(e.contains("page-medium"), "{e}");
}

#[test]
fn durations_read_as_prometheus_writes_them() {
    assert_eq!(duration(5 * MINUTE_NS), "5m");
    assert_eq!(duration(4032 * MINUTE_NS), "2d19h12m");
    assert_eq!(duration(28 * 1440 * MINUTE_NS), "28d");
    assert_eq!(human(40 * 60 * MINUTE_NS + 40 * MINUTE_NS), "1d16h");
}

#[test]
fn sli_bounds_carry_each_threshold_to_its_own_histogram() {
    let b = sli_bounds(&slos(LATENCY));
    assert!(b.bounds(SliMetric::Ttft).contains(&0.35));
    assert!(!b.bounds(SliMetric::Duration).contains(&0.35));
    assert!(b.slo_services.contains("llm"));
}
