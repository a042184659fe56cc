use serde_json::{Value, json};

use super::*;

fn ev(uid: &str, kind: &str, name: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event", "metadata": {"uid": uid, "namespace": "ml", "name": format!("{name}.{uid}")},
        "involvedObject": {"kind": kind, "name": name, "namespace": "ml"}, "reason": reason, "message": message,
        "source": {"component": "test"}, "count": 1, "lastTimestamp": at})
}

#[test]
fn a_kubectl_event_list_pairs_rollouts_and_keeps_the_rest() {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        ev("a", "Deployment", "llama", "ScalingReplicaSet", "Scaled up replica set llama-def456 from 0 to 1", "2026-11-22T14:01:00Z"),
        ev("b", "Deployment", "llama", "ScalingReplicaSet", "Scaled down replica set llama-abc123 from 3 to 2", "2026-11-22T14:01:40Z"),
        ev("c", "HorizontalPodAutoscaler", "llama", "SuccessfulRescale", "New size: 4; reason: All metrics below target", "2026-11-22T14:03:10Z"),
        ev("d", "Pod", "llama-x", "FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "2026-11-22T14:04:00Z"),
        ev("e", "Pod", "llama-x", "Scheduled", "Successfully assigned ml/llama-x to n1", "2026-11-22T14:05:00Z"),
    ]});
    assert!(Replay::recognizes(&list));
    let mut r = Replay::new();
    r.add(&list).unwrap();
    let out = r.finish();
    let got: Vec<(&str, &str, &str, &str)> =
        out.iter().map(|c| (c.kind.as_str(), c.object.as_str(), c.from.as_str(), c.to.as_str())).collect();
    assert_eq!(
        got,
        [
            ("deploy", "deployment/llama", "llama-abc123", "llama-def456"),
            ("scale_down", "hpa/llama", "", "4"),
            ("scheduling_failure", "pod/llama-x", "", ""),
        ]
    );
    // The same list again gives the same keys (so a second import stores nothing new).
    let mut again = Replay::new();
    again.add(&list).unwrap();
    let keys: Vec<String> = again.finish().into_iter().map(|c| c.key).collect();
    assert_eq!(keys, out.iter().map(|c| c.key.clone()).collect::<Vec<_>>());
    assert!(!Replay::recognizes(&json!({"resourceSpans": []})));
}

#[test]
fn a_watch_stream_lists_first_then_diffs() {
    let hpa = |desired: i64, at: &str| {
        json!({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "llama", "namespace": "ml", "uid": "h1", "creationTimestamp": "2026-11-01T00:00:00Z"},
            "spec": {"scaleTargetRef": {"name": "llama"}}, "status": {"desiredReplicas": desired, "currentReplicas": desired, "lastScaleTime": at}})
    };
    let node = json!({"kind": "Node", "metadata": {"name": "n1", "uid": "n1", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "status": {"allocatable": {"nvidia.com/gpu": "4"}, "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-01T00:00:00Z"}]}});
    let frames = [
        json!({"type": "ADDED", "object": hpa(6, "2026-11-22T13:00:00Z")}),
        json!({"type": "ADDED", "object": node}),
        json!({"type": "MODIFIED", "object": hpa(4, "2026-11-22T14:03:10Z")}),
        json!({"type": "ADDED", "object": ev("c", "HorizontalPodAutoscaler", "llama", "SuccessfulRescale", "New size: 4; reason: All metrics below target", "2026-11-22T14:03:10Z")}),
        json!({"type": "DELETED", "object": node}),
    ];
    let mut r = Replay::new();
    for f in &frames {
        r.add(f).unwrap();
    }
    let out = r.finish();
    let got: Vec<(&str, &str, &str, &str, &str)> = out
        .iter()
        .map(|c| (c.kind.as_str(), c.object.as_str(), c.from.as_str(), c.to.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("scale_down", "hpa/llama", "6", "4", "All metrics below target"),
            ("node_lost", "node/n1", "4 GPUs", "deleted", "NodeDeleted"),
        ]
    );
    let mut bad = Replay::new();
    let e = bad.add(&json!({"type": "ERROR", "object": {"message": "too old resource version"}})).unwrap_err();
    assert!(e.contains("too old resource version"), "{e}");
}

#[test]
fn rescales_take_their_own_event_and_each_event_copy_is_one_fact() {
    // The HPA goes 6->7, 7->6, 6->7 again (the recorder aggregates that Event: count 2),
    // 7->12 and 12->7; every Event comes over both Event APIs.
    let hpa = |desired: i64, at: &str| {
        json!({"type": "MODIFIED", "object": {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "llama", "namespace": "ml", "uid": "h1", "creationTimestamp": "2026-11-01T00:00:00Z"},
            "spec": {"scaleTargetRef": {"name": "llama"}}, "status": {"desiredReplicas": desired, "currentReplicas": desired, "lastScaleTime": at}}})
    };
    let event = |uid: &str, to: i64, why: &str, first: &str, last: &str, count: i64| {
        let message = format!("New size: {to}; reason: {why}");
        let core = json!({"type": "MODIFIED", "object": {"apiVersion": "v1", "kind": "Event", "metadata": {"uid": uid, "namespace": "ml", "name": format!("llama.{uid}")},
            "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": "llama", "namespace": "ml"}, "reason": "SuccessfulRescale", "message": message,
            "source": {"component": "horizontal-pod-autoscaler"}, "count": count, "firstTimestamp": first, "lastTimestamp": last}});
        let new = json!({"type": "MODIFIED", "object": {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"uid": uid, "namespace": "ml", "name": format!("llama.{uid}")},
            "regarding": {"kind": "HorizontalPodAutoscaler", "name": "llama", "namespace": "ml"}, "reason": "SuccessfulRescale", "note": message,
            "reportingController": "horizontal-pod-autoscaler", "deprecatedCount": count, "deprecatedFirstTimestamp": first, "deprecatedLastTimestamp": last}});
        [core, new]
    };
    let (up, down) = ("pods metric in_flight above target", "All metrics below target");
    let mut frames = vec![json!({"type": "ADDED", "object": hpa(6, "2026-11-22T13:00:00Z")["object"]})];
    frames.push(hpa(7, "2026-11-22T14:00:45Z"));
    frames.extend(event("e1", 7, up, "2026-11-22T14:00:45Z", "2026-11-22T14:00:45Z", 1));
    frames.push(hpa(6, "2026-11-22T14:08:30Z"));
    frames.extend(event("e2", 6, down, "2026-11-22T14:08:30Z", "2026-11-22T14:08:30Z", 1));
    frames.push(hpa(7, "2026-11-22T14:11:00Z"));
    frames.extend(event("e1", 7, up, "2026-11-22T14:00:45Z", "2026-11-22T14:11:00Z", 2));
    frames.push(hpa(12, "2026-11-22T14:13:00Z"));
    frames.extend(event("e3", 12, up, "2026-11-22T14:13:00Z", "2026-11-22T14:13:00Z", 1));
    frames.push(hpa(7, "2026-11-22T14:20:45Z"));
    frames.extend(event("e4", 7, down, "2026-11-22T14:20:45Z", "2026-11-22T14:20:45Z", 1));
    let mut r = Replay::new();
    for f in &frames {
        r.add(f).unwrap();
    }
    let got: Vec<(String, String, String, String)> =
        r.finish().into_iter().map(|c| (rfc3339_min(c.time_unix_nano), c.from, c.to, c.reason)).collect();
    let want = [
        ("14:00", "6", "7", up),
        ("14:08", "7", "6", down),
        ("14:11", "6", "7", up),
        ("14:13", "7", "12", up),
        ("14:20", "12", "7", down),
    ];
    let want: Vec<(String, String, String, String)> =
        want.iter().map(|(t, f, to, w)| (t.to_string(), f.to_string(), to.to_string(), w.to_string())).collect();
    assert_eq!(got, want);
}

fn rfc3339_min(ns: i64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}", s % 86_400 / 3600, s % 3600 / 60)
}
