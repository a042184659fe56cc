//! Every served resource decodes into its k8s-openapi type; determinism; slow consumers.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::api::{Api, ListParams, ResourceExt};
use serde_json::{Value, json};

use super::{client, pod, serve, watch_events};
use crate::kubeapi::ApiStore;
use crate::kubeapi::store::ApiOptions;

/// A realistic slice of a GPU inference cluster.
fn cluster() -> Vec<Value> {
    let labels = json!({"app": "llama-70b"});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml", "creationTimestamp": "2026-11-22T13:00:00Z"}, "status": {"phase": "Active"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
            "spec": {"providerID": "sim://gpu-1"},
            "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "96"}, "allocatable": {"nvidia.com/gpu": "8"},
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T13:00:00Z", "reason": "KubeletReady"}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llama-70b", "namespace": "ml", "generation": 3},
            "spec": {"replicas": 6, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0"}]}}},
            "status": {"replicas": 6, "readyReplicas": 6, "observedGeneration": 3}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "llama-70b-7d9f8b6c5", "namespace": "ml",
                "annotations": {"deployment.kubernetes.io/revision": "3"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama-70b", "uid": "00000000-0000-8000-8000-000000000001", "controller": true}]},
            "spec": {"replicas": 6, "selector": {"matchLabels": labels}}, "status": {"replicas": 6, "readyReplicas": 6}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "llama-70b", "namespace": "ml"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama-70b"}, "minReplicas": 2, "maxReplicas": 8,
                "metrics": [{"type": "Pods", "pods": {"metric": {"name": "vllm_num_requests_waiting"}, "target": {"type": "AverageValue", "averageValue": "5"}}}]},
            "status": {"currentReplicas": 6, "desiredReplicas": 4, "lastScaleTime": "2026-11-22T14:03:10Z"}}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "llama-70b.18a1", "namespace": "ml"},
            "involvedObject": {"kind": "HorizontalPodAutoscaler", "namespace": "ml", "name": "llama-70b", "apiVersion": "autoscaling/v2"},
            "reason": "SuccessfulRescale", "message": "New size: 4; reason: pods metric vllm_num_requests_waiting below target",
            "source": {"component": "horizontal-pod-autoscaler"}, "type": "Normal", "count": 1,
            "firstTimestamp": "2026-11-22T14:03:10Z", "lastTimestamp": "2026-11-22T14:03:10Z"}),
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "gpu-1.18a2", "namespace": "default"},
            "eventTime": "2026-11-22T14:05:00.000000Z", "reportingController": "dcgm-exporter", "reportingInstance": "gpu-1",
            "action": "Throttle", "reason": "GpuThermalThrottle", "note": "GPU 3 clocks throttled (HW slowdown)", "type": "Warning",
            "regarding": {"kind": "Node", "name": "gpu-1"}}),
        pod("ml", "llama-70b-7d9f8b6c5-abcde", "llama-70b", "gpu-1"),
    ]
}

#[tokio::test]
async fn every_resource_decodes_into_k8s_openapi_types() {
    let store = ApiStore::new(100);
    for obj in cluster() {
        store.apply(obj).unwrap();
    }
    let url = serve(store).await;
    let client = client(&url).await;
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    for group in ["apps", "autoscaling", "events.k8s.io"] {
        assert!(discovery.has_group(group), "{group}");
    }
    assert!(!discovery.has_group("keda.sh"));

    let lp = ListParams::default();
    let ns = Api::<Namespace>::all(client.clone()).get("ml").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let node = Api::<Node>::all(client.clone()).get("gpu-1").await.unwrap();
    assert_eq!(node.status.unwrap().capacity.unwrap()["nvidia.com/gpu"].0, "8");
    let deploy = Api::<Deployment>::namespaced(client.clone(), "ml").get("llama-70b").await.unwrap();
    assert_eq!(deploy.spec.unwrap().replicas, Some(6));
    let rs = Api::<ReplicaSet>::all(client.clone()).list(&lp).await.unwrap();
    assert_eq!(rs.items[0].owner_references()[0].name, "llama-70b");
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), "ml").list(&lp).await.unwrap();
    assert_eq!(hpa.items[0].status.as_ref().unwrap().desired_replicas, 4);
    let events = Api::<CoreEvent>::namespaced(client.clone(), "ml");
    let rescale = events
        .list(&ListParams::default().fields("involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale"))
        .await
        .unwrap();
    assert_eq!(rescale.items.len(), 1);
    assert_eq!(rescale.items[0].source.as_ref().unwrap().component.as_deref(), Some("horizontal-pod-autoscaler"));
    let new_events = Api::<EventsEvent>::all(client.clone()).list(&lp).await.unwrap();
    assert_eq!(new_events.items[0].reason.as_deref(), Some("GpuThermalThrottle"));
    // Cluster-scoped objects are not addressable inside a namespace.
    let resp = reqwest::get(format!("{url}/api/v1/namespaces/ml/nodes/gpu-1")).await.unwrap();
    assert_eq!(resp.status(), 404);
    drop(client);
}

#[test]
fn the_same_calls_give_the_same_json() {
    let run = || {
        let store = ApiStore::new(5);
        let mut out = Vec::new();
        for obj in cluster() {
            out.push(store.apply(obj).unwrap());
        }
        out.push(store.apply(pod("ml", "llama-70b-7d9f8b6c5-abcde", "llama-70b", "gpu-2")).unwrap());
        out.extend(store.delete("v1", "Pod", Some("ml"), "llama-70b-7d9f8b6c5-abcde"));
        out.push(store.apply(pod("ml", "llama-70b-7d9f8b6c5-abcde", "llama-70b", "gpu-2")).unwrap());
        out
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    let uid = |e: &Value| e["object"]["metadata"]["uid"].as_str().unwrap().to_string();
    let (created, modified, recreated) = (uid(&a[7]), uid(&a[8]), uid(&a[10]));
    assert_eq!(created, modified, "a modification keeps the uid");
    assert_ne!(created, recreated, "a recreated object gets a new uid");
    assert_eq!(created.len(), 36);
    assert_eq!(a[8]["object"]["metadata"]["creationTimestamp"], "2026-11-22T14:00:00Z");
    let rvs: Vec<&str> = a.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap()).collect();
    assert_eq!(rvs, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]);
    // An apply that changes nothing records nothing.
    let store = ApiStore::new(5);
    store.apply(pod("ml", "p", "x", "n")).unwrap();
    store.apply(pod("ml", "p", "x", "n")).unwrap();
    assert_eq!(store.resource_version(), 1);
    assert!(
        store
            .apply(json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"}}))
            .is_err()
    );
    assert!(store.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-namespace"}})).is_err());
}

#[tokio::test]
async fn a_slow_watcher_is_closed_and_never_blocks_apply() {
    let store = ApiStore::with_options(ApiOptions { watch_buffer: 8, ..ApiOptions::default() });
    let url = serve(store.clone()).await;
    let mut resp = reqwest::get(format!("{url}/api/v1/pods?watch=1")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let padding = "x".repeat(64 * 1024);
    let started = std::time::Instant::now();
    for i in 0..300 {
        let mut p = pod("ml", &format!("p{i}"), "llm", "gpu-1");
        p["metadata"]["annotations"] = json!({"padding": padding});
        store.apply(p).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5), "apply waited on a watcher");
    // Reading the unread watcher now: it ends early, as the server closed it as a slow consumer.
    let mut received = 0;
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            received += chunk.iter().filter(|b| **b == b'\n').count();
        }
    });
    assert!(read.await.is_ok(), "the slow watch was not closed");
    assert!(received < 300, "received {received}");
    let (events, _) = watch_events(&url, "/api/v1/pods?watch=1&resourceVersion=299", 1, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1, "a new watcher still works");
}
