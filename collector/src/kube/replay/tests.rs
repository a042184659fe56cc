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
