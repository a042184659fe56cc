use super::*;

fn report(detected: bool, ongoing: Option<bool>, cause: Option<(&str, &str)>) -> Report {
    let causes: Vec<serde_json::Value> = cause
        .into_iter()
        .map(|(kind, object)| {
            serde_json::json!({"rank": 1, "kind": kind, "object": object, "time": "2026-11-22T14:10:00Z",
                "score": 0.9, "evidence": [], "source": "changes", "factors": [1.0, 1.0, 1.0, 1.0]})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "service": "llama-70b",
        "window": {"from": "2026-11-22T13:30:00Z", "to": "2026-11-22T14:30:00Z"},
        "regression": {"detected": detected, "onset": "2026-11-22T14:12:00Z", "p99_before_ms": 11500.0,
            "p99_after_ms": 28300.0, "queue_share": 0.82, "ongoing": ongoing},
        "causes": causes,
        "next_steps": [],
        "data": {"requests": 1000, "buckets": 60, "bucket_seconds": 60, "changes_considered": 3}
    }))
    .unwrap()
}

fn exposition(registry: &Registry) -> Vec<String> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out.lines().filter(|l| l.starts_with("slo_regression")).map(str::to_string).collect()
}

#[test]
fn one_series_per_service_carries_the_current_cause() {
    let mut registry = Registry::default();
    let m = RegressionMetrics::new(&mut registry);
    m.set("llama-70b", Some(&report(true, Some(true), Some(("scale_down", "hpa/llama-70b")))));
    let lines = exposition(&registry);
    assert!(
        lines.contains(
            &r#"slo_regression_active{service="llama-70b",cause_kind="scale_down",cause_object="hpa/llama-70b"} 1"#
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(lines.contains(&r#"slo_regression_p99_after_seconds{service="llama-70b"} 28.3"#.to_string()), "{lines:?}");
    assert!(lines.contains(&r#"slo_regression_onset_timestamp_seconds{service="llama-70b"} 1795356720.0"#.to_string()));
    // The cause changes: the old series goes, so an alert's labels follow the verdict.
    m.set("llama-70b", Some(&report(true, None, Some(("deploy", "deployment/llama-70b")))));
    let lines = exposition(&registry);
    assert_eq!(lines.iter().filter(|l| l.starts_with("slo_regression_active{")).count(), 1, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("cause_kind=\"deploy\"") && l.ends_with(" 1")));
    // Over (no longer ongoing), or not detected: 0, empty cause, no numbers.
    for r in [report(true, Some(false), Some(("deploy", "x"))), report(false, None, None)] {
        m.set("llama-70b", Some(&r));
        let lines = exposition(&registry);
        let active: Vec<_> = lines.iter().filter(|l| l.starts_with("slo_regression_active{")).collect();
        assert_eq!(
            active,
            [r#"slo_regression_active{service="llama-70b",cause_kind="",cause_object=""} 0"#],
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("slo_regression_p99")), "{lines:?}");
    }
    m.forget("llama-70b");
    assert!(!exposition(&registry).iter().any(|l| l.contains("llama-70b")));
}
