use serde_json::{Value, json};

use super::*;

const T0: i64 = 1_764_000_000 * SEC;

fn rfc(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hpa(desired: i64, last_scale: i64) -> Value {
    json!({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "llama", "namespace": "ml", "uid": "h1", "creationTimestamp": rfc(T0 - 86_400 * SEC)},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llama"}, "minReplicas": 2, "maxReplicas": 8},
        "status": {"currentReplicas": desired, "desiredReplicas": desired, "lastScaleTime": rfc(last_scale)}})
}

fn deployment(replicas: i64, generation: i64) -> Value {
    json!({"kind": "Deployment", "metadata": {"name": "llama", "namespace": "ml", "uid": "d1", "generation": generation, "creationTimestamp": rfc(T0 - 86_400 * SEC)},
        "spec": {"replicas": replicas}})
}

fn rescale_event(to: i64, at: i64, count: i64) -> Value {
    json!({"kind": "Event", "metadata": {"name": "llama.1", "namespace": "ml", "uid": "e1"},
        "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": "llama", "namespace": "ml"},
        "reason": "SuccessfulRescale", "message": format!("New size: {to}; reason: All metrics below target"),
        "source": {"component": "horizontal-pod-autoscaler"}, "count": count, "lastTimestamp": rfc(at)})
}

fn rs(name: &str, hash: &str, revision: i64, image: &str, created: i64) -> Value {
    json!({"kind": "ReplicaSet", "metadata": {"name": name, "namespace": "ml", "uid": format!("rs-{hash}"), "creationTimestamp": rfc(created),
        "labels": {"pod-template-hash": hash}, "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
        "ownerReferences": [{"kind": "Deployment", "name": "llama", "uid": "d1"}]},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "vllm", "image": image, "args": ["--model", "meta/llama-3-70b"]}]}}}})
}

fn node(ready: &str, since: i64, gpus: i64) -> Value {
    json!({"kind": "Node", "metadata": {"name": "gpu-1", "uid": "n1", "creationTimestamp": rfc(T0 - 86_400 * SEC)},
        "status": {"allocatable": {"nvidia.com/gpu": gpus.to_string()},
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": rfc(since)}]}})
}

fn pod(ready: bool, since: i64, oom_at: Option<i64>, restarts: i64) -> Value {
    let last = match oom_at {
        Some(t) => json!({"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": rfc(t)}}),
        None => json!({}),
    };
    json!({"kind": "Pod", "metadata": {"name": "llama-abc-x1", "namespace": "ml", "uid": "p1", "creationTimestamp": rfc(T0),
        "labels": {"pod-template-hash": "abc"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "llama-abc"}]},
        "spec": {"nodeName": "gpu-1", "containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": rfc(since)}],
            "containerStatuses": [{"name": "vllm", "restartCount": restarts, "lastState": last}]}})
}

/// A tracker that has listed every kind once, with the given objects as its baseline.
fn watching(objects: &[(Watched, Value)]) -> Tracker {
    let mut t = Tracker::new();
    for kind in Watched::ALL {
        t.begin_list(kind);
        for (k, o) in objects.iter().filter(|(k, _)| *k == kind) {
            t.apply(*k, o, T0).unwrap();
        }
        t.end_list(kind, T0);
    }
    assert!(t.take(T0).is_empty(), "a first list of old objects is not a change");
    t
}

#[test]
fn hpa_rescale_is_one_change_with_the_events_reason_in_either_order() {
    for event_first in [false, true] {
        let mut t = watching(&[
            (Watched::HorizontalPodAutoscaler, hpa(6, T0 - 600 * SEC)),
            (Watched::Deployment, deployment(6, 3)),
        ]);
        let at = T0 + 60 * SEC;
        if event_first {
            t.event(&rescale_event(4, at, 1), at).unwrap();
        }
        t.apply(Watched::HorizontalPodAutoscaler, &hpa(4, at), at).unwrap();
        t.apply(Watched::Deployment, &deployment(4, 4), at).unwrap();
        if !event_first {
            t.event(&rescale_event(4, at, 1), at + SEC).unwrap();
        }
        let mut out = t.take(at + SEC);
        out.extend(t.take(at + HOLD_NS + SEC));
        assert_eq!(out.len(), 1, "event_first={event_first}: {out:#?}");
        let c = &out[0];
        assert_eq!(
            (c.kind.as_str(), c.object.as_str(), c.from.as_str(), c.to.as_str()),
            ("scale_down", "hpa/llama", "6", "4")
        );
        assert_eq!(c.reason, "All metrics below target");
        assert_eq!(c.time_unix_nano, at);
        assert!(c.attributes.iter().any(|a| a.key == "event_key" && a.value == "event/e1/1"));
    }
}

#[test]
fn an_hpa_change_without_its_event_is_released_after_the_hold() {
    let mut t = watching(&[(Watched::HorizontalPodAutoscaler, hpa(2, T0 - 600 * SEC))]);
    t.apply(Watched::HorizontalPodAutoscaler, &hpa(5, T0 + SEC), T0 + SEC).unwrap();
    assert!(t.take(T0 + 2 * SEC).is_empty());
    let out = t.take(T0 + SEC + HOLD_NS);
    assert_eq!((out.len(), out[0].kind.as_str(), out[0].reason.as_str()), (1, "scale_up", "SuccessfulRescale"));
}

#[test]
fn rollout_progress_becomes_samples() {
    let mut t = watching(&[(Watched::Deployment, deployment(3, 1))]);
    t.take_samples();
    let mut d = deployment(3, 1);
    d["status"] = json!({"updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3});
    t.apply(Watched::Deployment, &d, T0).unwrap();
    let s = t.take_samples();
    let updated = s.iter().find(|x| x.metric == "kube_deployment_status_replicas_updated").unwrap();
    assert_eq!((updated.value, updated.namespace.as_str()), (1.0, "ml"));
    assert!(updated.labels.contains(&Attr::new("deployment", "llama")));
    // Nothing moved: no samples.
    t.apply(Watched::Deployment, &d, T0 + SEC).unwrap();
    assert!(t.take_samples().is_empty());
}

/// The live test's sequence on the data clock (a simulated cluster at 40x): the
/// Deployment's new size arrives first and is stamped by a clock that trails the cluster
/// (its document carries no newer time), the HPA status a moment later with its own
/// `lastScaleTime` two cluster minutes on; both are released by the same take. One change,
/// the HPA's, not a Deployment scale of its own at the earlier stamp.
#[test]
fn a_deployment_scale_stamped_before_the_hpa_rescale_that_made_it_is_that_rescale() {
    let mut t = watching(&[
        (Watched::HorizontalPodAutoscaler, hpa(5, T0 - 600 * SEC)),
        (Watched::Deployment, deployment(5, 3)),
    ]);
    let seen = T0 + 2 * SEC;
    let scaled = T0 + 120 * SEC;
    t.apply(Watched::Deployment, &deployment(4, 4), seen).unwrap();
    t.apply(Watched::HorizontalPodAutoscaler, &hpa(4, scaled), scaled).unwrap();
    let out = t.take(scaled + HOLD_NS);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].object.as_str(), out[0].time_unix_nano), ("hpa/llama", scaled));
    // An HPA rescale to that size long after it is another occurrence: the scale is kept.
    let mut t = watching(&[
        (Watched::HorizontalPodAutoscaler, hpa(5, T0 - 600 * SEC)),
        (Watched::Deployment, deployment(5, 3)),
    ]);
    t.apply(Watched::Deployment, &deployment(4, 4), seen).unwrap();
    let late = seen + 600 * SEC;
    t.apply(Watched::HorizontalPodAutoscaler, &hpa(4, late), late).unwrap();
    assert_eq!(t.take(late + HOLD_NS).len(), 2);
}

#[test]
fn a_manual_deployment_scale_is_kept() {
    let mut t = watching(&[(Watched::Deployment, deployment(3, 1))]);
    t.apply(Watched::Deployment, &deployment(1, 2), T0).unwrap();
    let out = t.take(T0 + HOLD_NS);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].kind.as_str(), out[0].object.as_str(), out[0].from.as_str(), out[0].to.as_str()),
        ("scale_down", "deployment/llama", "3", "1")
    );
}

#[test]
fn a_new_replicaset_is_a_rollout_with_images_from_and_to() {
    let mut t = watching(&[(Watched::ReplicaSet, rs("llama-abc", "abc", 1, "vllm:0.6", T0 - 86_400 * SEC))]);
    t.apply(Watched::ReplicaSet, &rs("llama-def", "def", 2, "vllm:0.7", T0 + 5 * SEC), T0 + 6 * SEC).unwrap();
    let out = t.take(T0 + 6 * SEC);
    assert_eq!(out.len(), 1);
    let c = &out[0];
    assert_eq!(
        (c.kind.as_str(), c.object.as_str(), c.from.as_str(), c.to.as_str()),
        ("deploy", "deployment/llama", "vllm:0.6", "vllm:0.7")
    );
    assert_eq!(c.time_unix_nano, T0 + 5 * SEC, "data time: the ReplicaSet's creation");
    assert!(c.attributes.contains(&Attr::new("to_replicaset", "llama-def")));
    assert!(c.attributes.contains(&Attr::new("to_model", "meta/llama-3-70b")));
    // Its ScalingReplicaSet Events are the same fact.
    let ev = json!({"kind": "Event", "metadata": {"uid": "e9", "namespace": "ml"}, "involvedObject": {"kind": "Deployment", "name": "llama", "namespace": "ml"},
        "reason": "ScalingReplicaSet", "message": "Scaled up replica set llama-def from 0 to 1", "lastTimestamp": rfc(T0 + 5 * SEC)});
    t.event(&ev, T0 + 6 * SEC).unwrap();
    assert!(t.take(T0 + 7 * SEC).is_empty());
}

#[test]
fn a_rollout_shortly_before_the_first_list_is_reported_from_the_replicaset() {
    let mut t = Tracker::new();
    t.begin_list(Watched::ReplicaSet);
    t.apply(Watched::ReplicaSet, &rs("llama-abc", "abc", 1, "vllm:0.6", T0 - 86_400 * SEC), T0).unwrap();
    t.apply(Watched::ReplicaSet, &rs("llama-def", "def", 2, "vllm:0.7", T0 - 600 * SEC), T0).unwrap();
    t.end_list(Watched::ReplicaSet, T0);
    let out = t.take(T0);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].kind.as_str(), out[0].time_unix_nano), ("deploy", T0 - 600 * SEC));
}

#[test]
fn a_node_lost_once_though_its_event_and_deletion_follow() {
    let mut t = watching(&[(Watched::Node, node("True", T0 - 86_400 * SEC, 8))]);
    let at = T0 + 40 * SEC;
    t.apply(Watched::Node, &node("Unknown", at, 8), at + SEC).unwrap();
    let ev = json!({"kind": "Event", "metadata": {"uid": "e2"}, "involvedObject": {"kind": "Node", "name": "gpu-1"},
        "reason": "NodeNotReady", "message": "Node gpu-1 status is now: NodeNotReady", "lastTimestamp": rfc(at)});
    t.event(&ev, at + SEC).unwrap();
    t.delete(Watched::Node, &node("Unknown", at, 8), at + 300 * SEC).unwrap();
    let out = t.take(at + 300 * SEC);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].kind.as_str(), out[0].object.as_str(), out[0].time_unix_nano), ("node_lost", "node/gpu-1", at));
}

#[test]
fn gpu_capacity_drop_is_a_change_and_heartbeats_are_not() {
    let mut t = watching(&[(Watched::Node, node("True", T0 - 86_400 * SEC, 8))]);
    t.apply(Watched::Node, &node("True", T0 - 86_400 * SEC, 8), T0 + SEC).unwrap();
    assert!(t.take(T0 + SEC).is_empty());
    t.apply(Watched::Node, &node("True", T0 - 86_400 * SEC, 7), T0 + 2 * SEC).unwrap();
    let out = t.take(T0 + 2 * SEC);
    assert_eq!((out.len(), out[0].reason.as_str(), out[0].to.as_str()), (1, "GPUCapacityChanged", "7 GPUs"));
}

#[test]
fn oom_kill_from_container_status_and_cold_start_duration() {
    let mut t = watching(&[]);
    // Created at T0, ready 150 s later.
    t.apply(Watched::Pod, &pod(false, T0, None, 0), T0 + SEC).unwrap();
    t.apply(Watched::Pod, &pod(true, T0 + 150 * SEC, None, 0), T0 + 151 * SEC).unwrap();
    let out = t.take(T0 + 151 * SEC);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].kind.as_str(), out[0].time_unix_nano), ("cold_start", T0));
    assert!(out[0].attributes.contains(&Attr::new("cold_start_seconds", "150.000")));
    // OOM-killed at +400 s: not ready, then ready again at +500 s.
    let oom = T0 + 400 * SEC;
    t.apply(Watched::Pod, &pod(false, oom, Some(oom), 1), oom + SEC).unwrap();
    t.apply(Watched::Pod, &pod(true, T0 + 500 * SEC, Some(oom), 1), T0 + 501 * SEC).unwrap();
    let out = t.take(T0 + 501 * SEC);
    let kinds: Vec<_> = out.iter().map(|c| (c.kind.as_str(), c.time_unix_nano)).collect();
    assert_eq!(kinds, [("oom_kill", oom), ("cold_start", oom)]);
    assert_eq!(t.gpu_pods_on("gpu-1").len(), 1);
}

/// A collector that took the watch over from one that stalled computes a rescale from the
/// older baseline it was handed: another `from`, the same key.
#[test]
fn a_rescale_seen_from_an_older_baseline_has_the_same_key() {
    let (t1, t2) = (T0 + 60 * SEC, T0 + 120 * SEC);
    let older = watching(&[(Watched::HorizontalPodAutoscaler, hpa(3, T0 - 600 * SEC))]).save();
    let keys = |steps: &[(i64, i64)]| {
        let mut t = Tracker::restore(&older).unwrap();
        let mut out = Vec::new();
        for &(desired, at) in steps {
            t.apply(Watched::HorizontalPodAutoscaler, &hpa(desired, at), at).unwrap();
            out.extend(t.take(at + HOLD_NS));
        }
        out.into_iter().map(|c| (c.from, c.to, c.key)).collect::<Vec<_>>()
    };
    let stalled = keys(&[(5, t1), (8, t2)]);
    let successor = keys(&[(8, t2)]);
    assert_eq!((stalled.len(), successor.len()), (2, 1));
    assert_eq!((stalled[1].0.as_str(), successor[0].0.as_str()), ("5", "3"));
    assert_eq!(stalled[1].2, successor[0].2);
    assert_ne!(stalled[0].2, stalled[1].2);
}

#[test]
fn restart_and_relist_recompute_the_same_keys_and_catch_what_happened_meanwhile() {
    let mut t =
        watching(&[(Watched::HorizontalPodAutoscaler, hpa(6, T0 - 600 * SEC)), (Watched::Node, node("True", T0, 8))]);
    let saved = t.save();
    // While the collector is down: the HPA scales down, the node goes away.
    let mut t = Tracker::restore(&saved).unwrap();
    let at = T0 + 100 * SEC;
    for kind in [Watched::HorizontalPodAutoscaler, Watched::Node] {
        t.begin_list(kind);
        if kind == Watched::HorizontalPodAutoscaler {
            t.apply(kind, &hpa(4, at), at + 50 * SEC).unwrap();
        }
        t.end_list(kind, at + 50 * SEC);
    }
    t.event(&rescale_event(4, at, 1), at + 50 * SEC).unwrap();
    let out = t.take(at + 50 * SEC + HOLD_NS);
    let got: Vec<_> = out.iter().map(|c| (c.kind.as_str(), c.object.as_str(), c.key.clone())).collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].0, got[0].1), ("node_lost", "node/gpu-1"));
    assert_eq!((got[1].0, got[1].1), ("scale_down", "hpa/llama"));
    assert_eq!(out[1].time_unix_nano, at, "the HPA's lastScaleTime, not when it was seen");
    // The same restart again from the same saved state gives the same keys.
    let mut again = Tracker::restore(&saved).unwrap();
    again.begin_list(Watched::HorizontalPodAutoscaler);
    again.apply(Watched::HorizontalPodAutoscaler, &hpa(4, at), at + 90 * SEC).unwrap();
    again.end_list(Watched::HorizontalPodAutoscaler, at + 90 * SEC);
    let keys: Vec<_> = again.take(at + 90 * SEC + HOLD_NS).into_iter().map(|c| c.key).collect();
    assert_eq!(keys, [got[1].2.clone()]);
}

#[test]
fn events_from_before_the_watch_and_unwatched_reasons_are_kept() {
    let mut t = watching(&[]);
    let old = rescale_event(4, T0 - 3 * 86_400 * SEC, 3);
    t.event(&old, T0).unwrap();
    let sched = json!({"kind": "Event", "metadata": {"uid": "e3", "namespace": "ml"}, "involvedObject": {"kind": "Pod", "name": "llama-x", "namespace": "ml"},
        "reason": "FailedScheduling", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "count": 2, "lastTimestamp": rfc(T0)});
    t.event(&sched, T0).unwrap();
    let out = t.take(T0);
    let got: Vec<_> = out.iter().map(|c| (c.kind.as_str(), c.key.as_str())).collect();
    assert_eq!(got, [("scale_down", "event/e1/3"), ("scheduling_failure", "event/e3/2")]);
}

#[test]
fn keda_activation_is_a_scale_from_and_to_zero_and_explains_the_deployment_scale() {
    let so = |active: &str, at: i64| {
        json!({"kind": "ScaledObject", "metadata": {"name": "llama", "namespace": "ml", "uid": "so1"},
            "spec": {"scaleTargetRef": {"name": "llama"}, "minReplicaCount": 0, "maxReplicaCount": 8},
            "status": {"conditions": [{"type": "Active", "status": active, "lastTransitionTime": rfc(at)}]}})
    };
    let mut t =
        watching(&[(Watched::ScaledObject, so("False", T0 - 600 * SEC)), (Watched::Deployment, deployment(0, 1))]);
    t.apply(Watched::ScaledObject, &so("True", T0 + 10 * SEC), T0 + 11 * SEC).unwrap();
    t.apply(Watched::Deployment, &deployment(1, 2), T0 + 11 * SEC).unwrap();
    let out = t.take(T0 + 11 * SEC + HOLD_NS);
    let got: Vec<_> =
        out.iter().map(|c| (c.kind.as_str(), c.object.as_str(), c.from.as_str(), c.to.as_str())).collect();
    assert_eq!(got, [("scale_up", "scaledobject/llama", "0", "1")]);
    assert_eq!(out[0].time_unix_nano, T0 + 10 * SEC);
    t.apply(Watched::ScaledObject, &so("False", T0 + 900 * SEC), T0 + 901 * SEC).unwrap();
    let out = t.take(T0 + 901 * SEC);
    assert_eq!((out[0].kind.as_str(), out[0].to.as_str()), ("scale_down", "0"));
}
