use super::*;

fn payload(alerts: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": "firing", "receiver": "slo", "groupKey": "{}:{alertname=\"X\"}",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts
    }))
    .unwrap()
}

fn alert(status: &str, starts: &str) -> serde_json::Value {
    serde_json::json!({
        "status": status, "labels": {"alertname": "SLOErrorBudgetBurn", "sloth_service": "llama-70b", "burnrate_tier": "page-fast"},
        "annotations": {"summary": "burning", "explain": "slo explain --slo lat"},
        "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "a1b2c3"
    })
}

const NOW: &str = "2026-11-22T14:20:00.000Z";

#[test]
fn a_notification_reads_into_entries_with_their_service() {
    let e = parse(&payload(serde_json::json!([alert("firing", "2026-11-22T14:15:00+00:00")])), NOW).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].service.as_deref(), Some("llama-70b"));
    assert_eq!(e[0].starts_at, "2026-11-22T14:15:00.000Z", "times are normalised, so keys compare");
    assert_eq!(e[0].ends_at, None);
    assert_eq!(e[0].explanation, "pending");
    // No fingerprint: one from the labels, the same for the same labels.
    let mut a = alert("firing", "2026-11-22T14:15:00Z");
    a.as_object_mut().unwrap().remove("fingerprint");
    let x = parse(&payload(serde_json::json!([a.clone()])), NOW).unwrap();
    let y = parse(&payload(serde_json::json!([a])), NOW).unwrap();
    assert_eq!(x[0].fingerprint, y[0].fingerprint);
    assert_eq!(x[0].fingerprint.len(), 16);
}

#[test]
fn malformed_notifications_name_the_field() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not JSON"),
        (b"[]".to_vec(), "JSON object"),
        (serde_json::to_vec(&serde_json::json!({"version": "3", "alerts": []})).unwrap(), "version"),
        (serde_json::to_vec(&serde_json::json!({"version": "4"})).unwrap(), "alerts: missing"),
        (payload(serde_json::json!([alert("firing", "yesterday")])), "alerts[0].startsAt"),
        (payload(serde_json::json!([alert("exploded", "2026-11-22T14:15:00Z")])), "alerts[0].status"),
        (payload(serde_json::json!([{"status": "firing", "startsAt": "2026-11-22T14:15:00Z"}])), "alerts[0].labels"),
        (
            payload(
                serde_json::json!([alert("firing", "2026-11-22T14:15:00Z"), {"status": "firing", "labels": {"a": 1}, "startsAt": "2026-11-22T14:15:00Z"}]),
            ),
            "alerts[1].labels.a",
        ),
    ];
    for (body, want) in cases {
        let e = parse(&body, NOW).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    let many: Vec<_> = (0..=MAX_ALERTS).map(|_| alert("firing", "2026-11-22T14:15:00Z")).collect();
    assert!(parse(&payload(serde_json::json!(many)), NOW).unwrap_err().contains("at most"));
}

#[test]
fn the_log_survives_a_reopen_and_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = parse(&payload(serde_json::json!([alert("firing", "2026-11-22T14:15:00Z")])), NOW).unwrap();
    {
        let mut log = Log::open(dir.path()).unwrap();
        log.put(e.clone()).unwrap();
        e[0].status = "resolved".into();
        e[0].explanation = "explained".into();
        log.put(e.clone()).unwrap();
    }
    // A write cut short by a crash: half a line at the end.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("alerts.jsonl")).unwrap();
    f.write_all(b"{\"fingerprint\":\"zz\",\"sta").unwrap();
    drop(f);
    let log = Log::open(dir.path()).unwrap();
    let all = log.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "resolved", "the last state of a key wins");
    assert_eq!(all[0].explanation, "explained");
    let text = std::fs::read_to_string(dir.path().join("alerts.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "compacted on open after a torn line: {text}");
}

#[test]
fn forward_urls_are_checked_naming_the_entry() {
    let mut c = AlertsConfig::default();
    c.forward.push(Forward { url: "http://hooks.example/x".into(), format: "slack".into() });
    c.forward.push(Forward { url: "file:///etc/passwd".into(), format: "slack".into() });
    assert!(c.check().unwrap_err().contains("alerts.forward[1].url"));
    c.forward[1] = Forward { url: "https://x".into(), format: "xml".into() };
    assert!(c.check().unwrap_err().contains("alerts.forward[1].format"));
}

#[test]
fn the_slack_text_says_what_fired_and_how_to_explain_it() {
    let e = &parse(&payload(serde_json::json!([alert("firing", "2026-11-22T14:15:00Z")])), NOW).unwrap()[0];
    let t = text::slack(e, Some("http://slo:8080/"));
    assert!(t.starts_with("*[FIRING] SLOErrorBudgetBurn* llama-70b (page-fast)"), "{t}");
    assert!(t.contains("`slo explain --slo lat`") && t.contains("http://slo:8080/services/llama-70b"), "{t}");
}
