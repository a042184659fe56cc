use super::*;

const NATIVE: &str = r#"
slos:
  - name: llama-latency
    service: llama-70b
    objective: 99%
    window: 28d
    latency: { metric: duration, threshold: 1s }
  - name: llama-ttft
    service: llama-70b
    objective: 0.95
    latency: { metric: ttft, threshold: 250ms }
  - name: llama-queue
    service: llama-70b
    objective: "99.5%"
    latency: { metric: queue, threshold: 100 }
  - name: llama-errors
    service: llama-70b
    objective: 99.9%
    errors: {}
"#;

const OPENSLO: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata: { name: llama-ttft-openslo, displayName: TTFT under 300 ms }
spec:
  service: llama-70b
  budgetingMethod: Occurrences
  indicator:
    metadata: { name: ttft }
    spec:
      thresholdMetric:
        metricSource: { type: slo, spec: { field: ttft_ms } }
  timeWindow: [{ duration: 28d, isRolling: true }]
  objectives: [{ displayName: fast first token, op: lte, value: 300, target: 0.99 }]
---
apiVersion: openslo/v1
kind: SLO
metadata: { name: llama-availability }
spec:
  service: llama-70b
  indicator:
    spec:
      ratioMetric:
        counter: true
        good: { metricSource: { type: slo, spec: { status: ok } } }
        total: { metricSource: { type: slo, spec: {} } }
  timeWindow: [{ duration: 30d, isRolling: true }]
  objectives: [{ target: 0.999 }]
"#;

#[test]
fn native_specs_parse() {
    let slos = parse(NATIVE).unwrap();
    assert_eq!(slos.len(), 4);
    assert_eq!(slos[0].sli, Sli::Latency { metric: LatencyMetric::Duration, threshold_ms: 1000.0 });
    assert_eq!(slos[0].period, 28 * 1440 * 60_000_000_000);
    assert!((slos[0].objective - 0.99).abs() < 1e-12);
    assert_eq!(slos[1].sli, Sli::Latency { metric: LatencyMetric::Ttft, threshold_ms: 250.0 });
    assert_eq!(slos[1].period, 30 * 1440 * 60_000_000_000, "30 days by default");
    assert_eq!(slos[2].sli, Sli::Latency { metric: LatencyMetric::Queue, threshold_ms: 100.0 });
    assert!((slos[2].objective - 0.995).abs() < 1e-12);
    assert_eq!(slos[3].sli, Sli::Errors);
}

#[test]
fn openslo_documents_parse() {
    let slos = parse(OPENSLO).unwrap();
    assert_eq!(slos.len(), 2);
    assert_eq!(slos[0].name, "llama-ttft-openslo");
    assert_eq!(slos[0].sli, Sli::Latency { metric: LatencyMetric::Ttft, threshold_ms: 300.0 });
    assert_eq!(slos[1].sli, Sli::Errors);
    assert!((slos[1].objective - 0.999).abs() < 1e-12);
}

#[test]
fn errors_name_the_document_and_field() {
    let cases = [
        ("slos: [{ service: a, objective: 99%, errors: {} }]", "document 1: slos[0].name: missing"),
        ("slos: [{ name: a, service: a, objective: 120%, errors: {} }]", "slos[0].objective"),
        ("slos: [{ name: a, service: a, objective: 0.9 }]", "slos[0]: needs an SLI"),
        (
            "slos: [{ name: a, service: a, objective: 0.9, latency: { metric: p99, threshold: 1s } }]",
            "latency.metric: \"p99\"",
        ),
        ("slos: [{ name: a, service: a, objective: 0.9, latency: { threshold: fast } }]", "latency.threshold"),
        ("slos: [{ name: a, service: a, objective: 0.9, window: 4w, errors: {} }]", "slos[0].window"),
        ("x: 1", "no SLO in the file"),
        ("- 1", "document 1: neither"),
        ("slos: []\n---\napiVersion: openslo/v1\nkind: Service\nmetadata: {name: s}", "document 2: kind: Service"),
        (
            &OPENSLO.replace("type: slo, spec: { field: ttft_ms }", "type: prometheus, spec: {}"),
            "SLO \"llama-ttft-openslo\": spec.indicator.spec.thresholdMetric.metricSource.type",
        ),
        (&OPENSLO.replace("op: lte", "op: gt"), "objectives[0].op"),
        (
            "slos: [{ name: a, service: s, objective: 0.9, errors: {} }, { name: a, service: s, objective: 0.9, errors: {} }]",
            "two SLOs are named \"a\"",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

#[test]
fn the_server_config_may_hold_them() {
    let text = format!(
        "store:\n  flush_interval_s: 2\nslos:\n  - {{ name: e, service: s, objective: 0.99, errors: {{}} }}\n---\n{OPENSLO}"
    );
    let names: Vec<String> = parse(&text).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["e", "llama-ttft-openslo", "llama-availability"]);
}

#[test]
fn a_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slos.yaml");
    std::fs::write(&path, "slos: [{ name: a }]").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("slos.yaml") && err.contains("slos[0].service"), "{err}");
}
