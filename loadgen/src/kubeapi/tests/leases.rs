//! Leases: the one resource clients write (leader election), with the real server's
//! optimistic concurrency, through the `kube` client and raw HTTP.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams, ResourceExt};
use serde_json::{Value, json};

use super::{client, serve};
use crate::kubeapi::ApiStore;

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some("slo-watcher".into()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

fn code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn leases_are_created_once_and_replaced_only_at_the_version_read() {
    let url = serve(ApiStore::new(100)).await;
    let api: Api<Lease> = Api::default_namespaced(client(&url).await);
    let pp = PostParams::default();

    let made = api.create(&pp, &lease("c1")).await.unwrap();
    assert_eq!(made.namespace().as_deref(), Some("ml"));
    assert!(made.uid().is_some() && made.resource_version().is_some());
    assert_eq!(code(api.create(&pp, &lease("c2")).await.unwrap_err()), (409, "AlreadyExists".into()));

    // Two candidates read the same version; the first write wins, the second is refused.
    let (mut a, mut b) = (api.get("slo-watcher").await.unwrap(), api.get("slo-watcher").await.unwrap());
    a.spec.as_mut().unwrap().holder_identity = Some("c2".into());
    b.spec.as_mut().unwrap().holder_identity = Some("c3".into());
    let written = api.replace("slo-watcher", &pp, &a).await.unwrap();
    assert_ne!(written.resource_version(), made.resource_version());
    assert_eq!(written.uid(), made.uid(), "a replace keeps the object's uid");
    assert_eq!(code(api.replace("slo-watcher", &pp, &b).await.unwrap_err()), (409, "Conflict".into()));
    let now = api.get("slo-watcher").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("c2"));

    let mut missing = lease("c1");
    missing.metadata.name = Some("other".into());
    assert_eq!(code(api.replace("other", &pp, &missing).await.unwrap_err()), (404, "NotFound".into()));
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn writes_that_do_not_match_their_url_or_resource_are_refused() {
    let url = serve(ApiStore::new(100)).await;
    let http = reqwest::Client::new();
    let leases = format!("{url}/apis/coordination.k8s.io/v1/namespaces/ml/leases");
    let body = |name: &str, ns: &str| json!({"metadata": {"name": name, "namespace": ns}, "spec": {}});
    let made = http.post(&leases).json(&body("a", "ml")).send().await.unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!((made["kind"].as_str(), made["apiVersion"].as_str()), (Some("Lease"), Some("coordination.k8s.io/v1")));
    for (method, path, body, want, says) in [
        ("PUT", format!("{leases}/a"), body("b", "ml"), 400, "does not match the name on the URL"),
        ("POST", leases.clone(), body("c", "other"), 400, "namespace of the provided object"),
        ("POST", leases.clone(), json!({"kind": "Pod", "metadata": {"name": "d"}}), 400, "\"Pod\" is not \"Lease\""),
        ("POST", leases.clone(), json!({"metadata": {}}), 422, "name is required"),
        ("POST", leases.clone(), json!([1, 2]), 400, "not a JSON object"),
        ("DELETE", format!("{leases}/a"), json!({}), 405, "does not allow this method"),
        ("PUT", format!("{url}/api/v1/namespaces/ml/pods/p"), json!({}), 405, "does not allow this method"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = http.request(method, &path).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        let status: Value = resp.json().await.unwrap();
        assert_eq!(status["kind"], "Status", "{path}");
        assert!(status["message"].as_str().unwrap().contains(says), "{path}: {status}");
    }
    let listed: Value = http.get(&leases).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "nothing refused was stored: {listed}");
}
