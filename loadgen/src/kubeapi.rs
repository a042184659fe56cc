//! A simulated Kubernetes API server: the read side (get, list, watch and
//! discovery) of the real HTTP API, over objects the simulator pushes in, and
//! create and replace of Leases, for collectors that elect their watcher.
//!
//! Why: the collector's Kubernetes watcher must run unchanged against the
//! simulated cluster, so this speaks the wire protocol real clients rely on —
//! one global `resourceVersion`, paginated lists with consistent `continue`
//! snapshots, watches that resume from history or answer `410 Expired`,
//! bookmarks, streaming lists (`sendInitialEvents`), label and field
//! selectors, and `Status` bodies for every error. [`write_kubeconfig`] points
//! `kubectl` or `kube::Client` at it.
//!
//! The simulator owns the cluster and calls [`ApiStore::apply`] and
//! [`ApiStore::delete`]; clients can only read (mutating verbs get `405`), except
//! Leases: `POST` creates one (`409 AlreadyExists` if it is there) and `PUT`
//! replaces one, refused with `409 Conflict` when the body's `resourceVersion`
//! is not the stored one, as the real server's optimistic concurrency does.
//! `POST /slo-sim/expire` forgets the watch history, as an etcd compaction or
//! an API server restart would, so tests can force a relist.
//!
//! Architecture invariant: `apply` never waits on a client. Every watcher has
//! a bounded buffer; one that falls behind is closed, as the real server does.

mod kubeconfig;
mod selector;
mod server;
mod store;
mod watch;

#[cfg(test)]
mod tests;

use axum::http::StatusCode;
use serde_json::{Value, json};

pub use kubeconfig::write_kubeconfig;
pub(crate) use server::router;
pub(crate) use store::ApiStore;

/// The Kubernetes version `/version` reports.
pub(crate) const KUBE_VERSION: (&str, &str) = ("1", "34");

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural path segment, e.g. `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
    /// Whether clients may create and replace its objects (Leases, for leader election);
    /// everything else is the simulator's to change and read-only to clients.
    pub writable: bool,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods` or `deployments.apps`, as error messages name a resource.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Everything served, in discovery order.
pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        writable: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        fields: CORE_EVENT_FIELDS,
        writable: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        fields: &["spec.unschedulable"],
        writable: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        fields: &["status.phase"],
        writable: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        fields: &[],
        writable: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        fields: &["status.replicas"],
        writable: false,
    },
    ResourceType {
        group: "autoscaling",
        version: "v2",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        kind: "HorizontalPodAutoscaler",
        namespaced: true,
        short_names: &["hpa"],
        fields: &[],
        writable: false,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "reason",
            "reportingController",
            "type",
        ],
        writable: false,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        fields: &[],
        writable: true,
    },
];

/// Index into [`RESOURCES`] of the resource served at `group/version/plural`.
pub(crate) fn resource_by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES.iter().position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Index into [`RESOURCES`] of the resource an object of `apiVersion`/`kind` belongs to.
pub(crate) fn resource_by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES.iter().position(|r| r.kind == kind && r.api_version() == api_version)
}

/// A Kubernetes `Status` failure body with its HTTP code.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl Status {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Status { code, reason, message: message.into(), details: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Status::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 410 for a resourceVersion older than the kept history.
    pub(crate) fn too_old(requested: u64, oldest: u64) -> Self {
        Status::new(StatusCode::GONE, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    pub(crate) fn not_found_path() -> Self {
        Status::new(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
            .with_details(json!({}))
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl axum::response::IntoResponse for Status {
    fn into_response(self) -> axum::response::Response {
        (self.code, axum::Json(self.to_json())).into_response()
    }
}
