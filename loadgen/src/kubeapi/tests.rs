//! The simulated API server against the real `kube` client and raw HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::api::{Api, ListParams, ResourceExt};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

async fn serve(store: ApiStore) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(store)).await });
    format!("http://{addr}")
}

async fn client(url: &str) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    write_kubeconfig(&path, url, "ml").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.unwrap();
    assert_eq!(config.default_namespace, "ml");
    kube::Client::try_from(config).unwrap()
}

fn fast_store() -> ApiStore {
    ApiStore::with_options(ApiOptions { bookmark_interval: Duration::from_millis(200), ..ApiOptions::default() })
}

fn pod(ns: &str, name: &str, app: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
            "creationTimestamp": "2026-11-22T14:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    })
}

/// Polls `cond` until it holds, or fails after [`WAIT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn kube_client_lists_gets_and_paginates_consistently() {
    let store = ApiStore::new(100);
    for (i, ns) in ["ml", "ml", "default", "ml", "default", "ml", "batch"].iter().enumerate() {
        store.apply(pod(ns, &format!("llm-{i}"), "llm", "gpu-1")).unwrap();
    }
    let url = serve(store.clone()).await;
    let client = client(&url).await;
    let all: Api<Pod> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> =
        list.items.iter().map(|p| format!("{}/{}", p.namespace().unwrap(), p.name_any())).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "items sorted by namespace/name");
    assert_eq!(names.len(), 7);
    assert_eq!(list.metadata.resource_version, Some(store.resource_version().to_string()));
    assert!(list.items.iter().all(|p| p.uid().is_some() && p.resource_version().is_some()));

    // Pages of 2 return everything exactly once, from the snapshot of the first page.
    let mut paged = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = all.list(&lp).await.unwrap();
        pages += 1;
        paged.extend(page.items.iter().map(|p| format!("{}/{}", p.namespace().unwrap(), p.name_any())));
        if pages == 1 {
            store.apply(pod("aaa", "late", "llm", "gpu-1")).unwrap();
            store.delete("v1", "Pod", Some("ml"), "llm-5");
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(paged, names, "a paginated list is the snapshot of its first page");

    let ml: Api<Pod> = Api::default_namespaced(client.clone());
    let ml_list = ml.list(&ListParams::default()).await.unwrap();
    assert_eq!(ml_list.items.len(), 3);
    assert_eq!(ml.get("llm-0").await.unwrap().spec.unwrap().node_name.as_deref(), Some("gpu-1"));
    match ml.get("nope").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (404, "NotFound")),
        other => panic!("expected 404, got {other:?}"),
    }
    // An unknown continue token is 400, an expired snapshot 410.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    store.expire_history();
    let token = first.metadata.continue_.unwrap();
    match all.list(&ListParams::default().limit(2).continue_token(&token)).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    match all.list(&ListParams::default().continue_token("zz")).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 400),
        other => panic!("expected 400, got {other:?}"),
    }
}

/// Runs a reflector over all pods, reporting every watcher event on a channel.
fn reflect(client: kube::Client, config: watcher::Config) -> (reflector::Store<Pod>, mpsc::UnboundedReceiver<String>) {
    let (reader, writer) = reflector::store::<Pod>();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = reflector(writer, watcher(Api::<Pod>::all(client), config));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let line = match event {
                Ok(watcher::Event::Init) => "Init".to_string(),
                Ok(watcher::Event::InitApply(p)) => format!("InitApply {}", p.name_any()),
                Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                Ok(watcher::Event::Apply(p)) => format!("Apply {}", p.name_any()),
                Ok(watcher::Event::Delete(p)) => format!("Delete {}", p.name_any()),
                Err(e) => format!("Error {e}"),
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (reader, rx)
}

async fn next_matching(rx: &mut mpsc::UnboundedReceiver<String>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = rx.recv().await {
            let done = line == want;
            seen.push(line);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} in {seen:?}"));
    seen
}

fn reflected(reader: &reflector::Store<Pod>) -> BTreeMap<String, String> {
    reader.state().iter().map(|p| (p.name_any(), p.resource_version().unwrap_or_default())).collect()
}

fn served(store: &ApiStore) -> BTreeMap<String, String> {
    let (_, items) = store.snapshot(0);
    items
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["resourceVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn watcher_survives_expiry(config: watcher::Config, streaming: bool) {
    let store = fast_store();
    for i in 0..5 {
        store.apply(pod("ml", &format!("llm-{i}"), "llm", "gpu-1")).unwrap();
    }
    let url = serve(store.clone()).await;
    let (reader, mut rx) = reflect(client(&url).await, config);
    let init = next_matching(&mut rx, "InitDone").await;
    assert_eq!(init.iter().filter(|l| l.starts_with("InitApply")).count(), 5, "{init:?}");

    store.apply(pod("ml", "llm-5", "llm", "gpu-2")).unwrap();
    next_matching(&mut rx, "Apply llm-5").await;
    store.apply(pod("ml", "llm-0", "llm", "gpu-3")).unwrap();
    next_matching(&mut rx, "Apply llm-0").await;
    store.delete("v1", "Pod", Some("ml"), "llm-1");
    next_matching(&mut rx, "Delete llm-1").await;
    eventually("reflector equal to server", || reflected(&reader) == served(&store)).await;

    // Compaction while watching: the watcher must resync and lose nothing.
    store.expire_history();
    store.apply(pod("ml", "llm-6", "llm", "gpu-2")).unwrap();
    store.delete("v1", "Pod", Some("ml"), "llm-2");
    store.apply(pod("ml", "llm-3", "llm", "gpu-4")).unwrap();
    if streaming {
        // kube 2.0.1 resumes a streaming list with `sendInitialEvents=true` (kube-rs/kube#1844, fixed after
        // 2.0.1), so, as against a real server, it gets the whole state again as plain Apply events and
        // never hears of objects deleted while it was away. Every served object must still arrive.
        eventually("reflector holding every served object", || {
            let seen = reflected(&reader);
            served(&store).iter().all(|(name, rv)| seen.get(name) == Some(rv))
        })
        .await;
        return;
    }
    let relist = next_matching(&mut rx, "InitDone").await;
    assert!(relist.iter().any(|l| l == "Init"), "{relist:?}");
    assert!(relist.iter().any(|l| l.starts_with("Error") && l.contains("too old resource version")), "{relist:?}");
    assert!(relist.iter().any(|l| l == "InitApply llm-6"), "{relist:?}");
    eventually("reflector equal to server after relist", || reflected(&reader) == served(&store)).await;
    store.apply(pod("ml", "llm-7", "llm", "gpu-1")).unwrap();
    next_matching(&mut rx, "Apply llm-7").await;
    assert_eq!(reflected(&reader), served(&store));
}

#[tokio::test]
async fn watcher_with_pages_relists_after_expiry() {
    watcher_survives_expiry(watcher::Config::default().page_size(2), false).await;
}

#[tokio::test]
async fn watcher_with_streaming_lists_relists_after_expiry() {
    watcher_survives_expiry(watcher::Config::default().streaming_lists(), true).await;
}
