use serde_json::{Value, json};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/k8s-events");

/// The `Events:` table of a `kubectl describe` capture: (reason, from, message).
fn describe_events(file: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let table = text.split("Events:").nth(1).unwrap();
    table
        .lines()
        .skip(3)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // Columns are separated by runs of two or more spaces.
            let cols: Vec<&str> = l.trim().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
            assert!(cols.len() >= 5, "{l:?}");
            (cols[1].to_string(), cols[3].to_string(), cols[4..].join("  "))
        })
        .collect()
}

fn kind_of(from: &str) -> &'static str {
    match from {
        "horizontal-pod-autoscaler" => "HorizontalPodAutoscaler",
        "default-scheduler" | "kubelet" => "Pod",
        other => panic!("unexpected component {other}"),
    }
}

#[test]
fn real_describe_captures_normalize() {
    type Want = Option<(ChangeKind, Option<&'static str>)>;
    let cases: &[(&str, &[Want])] = &[
        (
            "describe_hpa_SuccessfulRescale_dcgm_viettel.txt",
            &[Some((ChangeKind::ScaleUp, Some("2"))), Some((ChangeKind::ScaleUp, Some("4")))],
        ),
        (
            "describe_hpa_SuccessfulRescale_gpu_utilization_aicr.txt",
            &[None, None, Some((ChangeKind::ScaleUp, Some("2")))],
        ),
        ("describe_hpa_FailedGetPodsMetric_vllm_kops.txt", &[None, None]),
        (
            "describe_pod_FailedScheduling_Insufficient_nvidia_gpu_palette.txt",
            &[Some((ChangeKind::SchedulingFailure, None))],
        ),
    ];
    for (file, want) in cases {
        let events = describe_events(file);
        assert_eq!(events.len(), want.len(), "{file}: {events:?}");
        for ((reason, from, message), want) in events.iter().zip(want.iter()) {
            let got = classify(kind_of(from), reason, message).map(|(k, _, _, to)| (k, to));
            assert_eq!(got, want.map(|(k, to)| (k, to.map(str::to_string))), "{file}: {reason}: {message}");
        }
    }
}

#[test]
fn controller_messages_parse() {
    let c = |k: &str, r: &str, m: &str| classify(k, r, m).unwrap();
    let down = c("HorizontalPodAutoscaler", "SuccessfulRescale", "New size: 4; reason: All metrics below target");
    assert_eq!((down.0, down.3.as_deref()), (ChangeKind::ScaleDown, Some("4")));
    let up = c("Deployment", "ScalingReplicaSet", "Scaled up replica set llama-70b-5d9c7b8f4d from 1 to 3");
    assert_eq!(
        up,
        (ChangeKind::ScaleUp, Some("replicaset/llama-70b-5d9c7b8f4d".into()), Some("1".into()), Some("3".into()))
    );
    let old = c("Deployment", "ScalingReplicaSet", "Scaled down replica set llama-70b-6f7d to 0");
    assert_eq!(old, (ChangeKind::ScaleDown, Some("replicaset/llama-70b-6f7d".into()), None, Some("0".into())));
    let ca = c("Pod", "TriggeredScaleUp", "pod triggered scale-up: [{gpu-h100 4->5 (max: 6)}]");
    assert_eq!(ca, (ChangeKind::NodeAdded, Some("nodepool/gpu-h100".into()), Some("4".into()), Some("5".into())));
    assert_eq!(c("Node", "NodeNotReady", "Node gpu-2 status is now: NodeNotReady").0, ChangeKind::NodeLost);
    assert_eq!(c("Pod", "TaintManagerEviction", "Marking for deletion Pod ml/x").0, ChangeKind::Eviction);
    assert!(classify("Pod", "Started", "Started container vllm").is_none());
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

#[test]
fn both_event_apis_decode_from_the_schema_fixtures() {
    let mut core = fixture("core.v1.Event.json");
    assert_eq!(from_event(&core), Ok(None), "an unknown reason is not a change");
    core["involvedObject"]["kind"] = json!("HorizontalPodAutoscaler");
    core["reason"] = json!("SuccessfulRescale");
    core["message"] = json!("New size: 3; reason: All metrics below target");
    let ch = from_event(&core).unwrap().unwrap();
    assert_eq!(ch.kind, ChangeKind::ScaleDown);
    assert_eq!(ch.to.as_deref(), Some("3"));
    assert_eq!(ch.object, "hpa/nameValue");
    assert_eq!(
        (ch.namespace.as_str(), ch.source.as_str(), ch.uid.as_str(), ch.count),
        ("namespaceValue", "componentValue", "uidValue", 8)
    );
    assert_eq!(ch.time_unix_nano, ts("2007-01-01T01:01:01Z").unwrap(), "lastTimestamp");

    let mut v1 = fixture("events.k8s.io.v1.Event.json");
    v1["regarding"]["kind"] = json!("Node");
    v1["reason"] = json!("NodeNotReady");
    v1["note"] = json!("Node gpu-2 status is now: NodeNotReady");
    let ch = from_event(&v1).unwrap().unwrap();
    assert_eq!(ch.kind, ChangeKind::NodeLost);
    assert_eq!(ch.source, "reportingControllerValue");
    assert_eq!(ch.count, 1, "series.count wins for events.k8s.io/v1");
    assert_eq!(ch.time_unix_nano, ts("2002-01-01T01:01:01.000002Z").unwrap(), "series.lastObservedTime");

    let err = from_event(&json!({"reason": "x"})).unwrap_err();
    assert!(err.contains("involvedObject"), "{err}");
}

#[test]
fn a_rollout_is_a_scale_up_of_a_new_replicaset_and_a_scale_down_of_the_old() {
    let ev = |t: i64, msg: &str| Change {
        time_unix_nano: t,
        kind: classify("Deployment", "ScalingReplicaSet", msg).unwrap().0,
        namespace: "ml".into(),
        object_kind: "Deployment".into(),
        object: classify("Deployment", "ScalingReplicaSet", msg).unwrap().1.unwrap(),
        from: None,
        to: None,
        reason: "ScalingReplicaSet".into(),
        message: msg.into(),
        source: "deployment-controller".into(),
        uid: String::new(),
        count: 1,
    };
    let s = 1_000_000_000;
    let changes = vec![
        ev(0, "Scaled up replica set web-new1 from 0 to 2"),
        ev(60 * s, "Scaled down replica set web-old1 from 6 to 5"),
        ev(90 * s, "Scaled up replica set web-new1 from 2 to 3"),
        ev(120 * s, "Scaled up replica set api-aaa from 2 to 4"), // HPA scaling, no rollout
    ];
    let r = rollouts(&changes, 600 * s);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, ChangeKind::Deploy);
    assert_eq!(r[0].object, "deployment/web");
    assert_eq!((r[0].from.as_deref(), r[0].to.as_deref()), (Some("web-old1"), Some("web-new1")));
    assert_eq!(r[0].time_unix_nano, 0);
}
