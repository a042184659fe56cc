//! The simulated API server against the real `kube` client and raw HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, ResourceExt};
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use store::ApiOptions;

mod leases;
mod resources;

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

/// Reads watch events until `n` arrived, the stream ended, or `within` passed.
async fn watch_events(url: &str, query: &str, n: usize, within: Duration) -> (Vec<Value>, bool) {
    let mut resp = reqwest::get(format!("{url}{query}")).await.unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    let (mut events, mut buf) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            events.push(serde_json::from_slice::<Value>(&line).unwrap());
        }
        if events.len() >= n {
            return (events, false);
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.extend_from_slice(&chunk),
            Ok(_) => return (events, true),
            Err(_) => return (events, false),
        }
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["object"]["metadata"]["name"].as_str().unwrap_or("-")))
        .collect()
}

#[tokio::test]
async fn raw_watch_resumes_expires_bookmarks_and_times_out() {
    let store = ApiStore::with_options(ApiOptions {
        history: 3,
        bookmark_interval: Duration::from_millis(200),
        ..ApiOptions::default()
    });
    for i in 0..6 {
        store.apply(pod("ml", &format!("p{i}"), "llm", "gpu-1")).unwrap();
    }
    let url = serve(store.clone()).await;
    let pods = "/api/v1/namespaces/ml/pods";

    let (events, ended) = watch_events(&url, &format!("{pods}?watch=1&resourceVersion=1"), 2, WAIT).await;
    assert!(ended);
    assert_eq!(
        events,
        vec![json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "too old resource version: 1 (3)", "reason": "Expired", "code": 410}})]
    );

    let q = format!("{pods}?watch=true&resourceVersion=4&allowWatchBookmarks=true");
    let (events, _) = watch_events(&url, &q, 3, WAIT).await;
    assert_eq!(kinds(&events), ["ADDED p4", "ADDED p5", "BOOKMARK -"]);
    assert_eq!(events[2]["object"], json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "6"}}));

    let q = format!("{pods}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true");
    let (events, _) = watch_events(&url, &q, 7, WAIT).await;
    assert_eq!(events[6]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(events.iter().filter(|e| e["type"] == "ADDED").count(), 6);

    let started = tokio::time::Instant::now();
    let (events, ended) =
        watch_events(&url, &format!("{pods}?watch=1&resourceVersion=6&timeoutSeconds=1"), 1, WAIT).await;
    assert!(ended && events.is_empty() && started.elapsed() < Duration::from_secs(3));

    // The admin route compacts: resuming from the latest resourceVersion is now too old.
    let resp = reqwest::Client::new().post(format!("{url}/slo-sim/expire")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (events, _) = watch_events(&url, &format!("{pods}?watch=1&resourceVersion=6"), 1, WAIT).await;
    assert_eq!(events[0]["object"]["code"], 410);
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let store = ApiStore::new(100);
    store.apply(pod("ml", "a", "llm", "gpu-1")).unwrap();
    store.apply(pod("ml", "b", "llm", "gpu-2")).unwrap();
    store.apply(pod("ml", "c", "embedder", "gpu-1")).unwrap();
    let url = serve(store.clone()).await;
    let api: Api<Pod> = Api::namespaced(client(&url).await, "ml");
    let names = |l: kube::core::ObjectList<Pod>| l.items.iter().map(|p| p.name_any()).collect::<Vec<_>>();
    let lp = ListParams::default().labels("app=llm").fields("spec.nodeName=gpu-1");
    assert_eq!(names(api.list(&lp).await.unwrap()), ["a"]);
    assert_eq!(names(api.list(&ListParams::default().labels("app!=llm")).await.unwrap()), ["c"]);
    assert_eq!(names(api.list(&ListParams::default().fields("metadata.name!=a")).await.unwrap()), ["b", "c"]);
    for (labels, fields, problem) in
        [("app=", "spec.bogus=x", "field label not supported: spec.bogus"), ("a b", "", "unable to parse requirement")]
    {
        match api.list(&ListParams::default().labels(labels).fields(fields)).await {
            Err(kube::Error::Api(e)) => assert!(e.code == 400 && e.message.contains(problem), "{e:?}"),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    // A watch sees an object leave and enter its selector as DELETED and ADDED.
    let q = "/api/v1/pods?watch=1&labelSelector=app%3Dllm&fieldSelector=spec.nodeName%3Dgpu-1";
    let watch_url = url.clone();
    let watch = tokio::spawn(async move { watch_events(&watch_url, q, 4, WAIT).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.apply(pod("ml", "a", "llm", "gpu-2")).unwrap();
    store.apply(pod("ml", "c", "embedder", "gpu-3")).unwrap();
    store.apply(pod("ml", "b", "llm", "gpu-1")).unwrap();
    store.delete("v1", "Pod", Some("ml"), "b");
    let (events, _) = watch.await.unwrap();
    assert_eq!(kinds(&events), ["ADDED a", "DELETED a", "ADDED b", "DELETED b"]);
}

#[tokio::test]
async fn errors_are_kubernetes_status() {
    let url = serve(ApiStore::new(10)).await;
    let http = reqwest::Client::new();
    for (method, path, code, reason) in [
        ("GET", "/apis/keda.sh/v1alpha1/namespaces/ml/scaledobjects", 404, "NotFound"),
        ("GET", "/apis/keda.sh/v1alpha1", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/ml/pods/missing", 404, "NotFound"),
        ("POST", "/api/v1/namespaces/ml/pods", 405, "MethodNotAllowed"),
        ("DELETE", "/apis/apps/v1/namespaces/ml/deployments/x", 405, "MethodNotAllowed"),
        ("GET", "/api/v1/pods?watch=1&resourceVersion=abc", 400, "BadRequest"),
        ("GET", "/api/v1/pods?watch=1&resourceVersion=99", 504, "Timeout"),
        ("GET", "/api/v1/pods?watch=1&sendInitialEvents=true", 422, "Invalid"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = http.request(method, format!("{url}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (body["kind"].as_str(), body["code"].as_u64(), body["reason"].as_str()),
            (Some("Status"), Some(u64::from(code)), Some(reason)),
            "{path}"
        );
    }
}
