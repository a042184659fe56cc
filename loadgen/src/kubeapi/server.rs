//! HTTP routes: discovery, get, list (with pagination) and watch.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

use super::selector::Selectors;
use super::store::{Expect, WatchFrom, object_key, too_large};
use super::watch::{WatchSpec, stream};
use super::{ApiStore, KUBE_VERSION, RESOURCES, ResourceType, Status, resource_by_path};

/// All API routes over `store`; the caller serves it.
pub(crate) fn router(store: ApiStore) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_versions))
        .route("/api/v1", get(|| async { resource_list("", "v1") }))
        .route("/apis", get(group_list))
        .route("/apis/{group}", get(group))
        .route(
            "/apis/{group}/{version}",
            get(|Path((g, v)): Path<(String, String)>| async move { resource_list(&g, &v) }),
        )
        .route("/slo-sim/expire", post(expire))
        .fallback(dispatch)
        .with_state(store)
}

async fn version() -> Response {
    let (major, minor) = KUBE_VERSION;
    axum::Json(json!({
        "major": major, "minor": minor, "gitVersion": format!("v{major}.{minor}.0-slo-sim"),
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
    }))
    .into_response()
}

async fn core_versions() -> Response {
    axum::Json(json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}))
    .into_response()
}

/// Named groups in discovery order, with their one version each.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.contains(&(r.group, r.version)) {
            groups.push((r.group, r.version));
        }
    }
    groups
}

fn group_json(name: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

async fn group_list() -> Response {
    let groups: Vec<Value> = groups().into_iter().map(|(g, v)| group_json(g, v)).collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

async fn group(Path(name): Path<String>) -> Response {
    match groups().into_iter().find(|(g, _)| *g == name) {
        Some((g, v)) => {
            let mut body = group_json(g, v);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            axum::Json(body).into_response()
        }
        None => Status::not_found_path().into_response(),
    }
}

fn resource_list(group: &str, version: &str) -> Response {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": verbs(r), "shortNames": r.short_names})
        })
        .collect();
    if resources.is_empty() {
        return Status::not_found_path().into_response();
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
        .into_response()
}

fn verbs(r: &ResourceType) -> &'static [&'static str] {
    if r.writable { &["create", "get", "list", "update", "watch"] } else { &["get", "list", "watch"] }
}

async fn expire(State(store): State<ApiStore>) -> Response {
    store.expire_history();
    axum::Json(json!({"resourceVersion": store.resource_version().to_string()})).into_response()
}

/// The query parameters of get, list and watch.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Params {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<u64>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    resource_version: Option<String>,
    resource_version_match: Option<String>,
    watch: Option<String>,
    allow_watch_bookmarks: Option<String>,
    send_initial_events: Option<String>,
    timeout_seconds: Option<u64>,
}

fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True"))
}

/// A request for a resource collection or one object of it.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` resource paths.
fn target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return None,
    };
    let resource = resource_by_path(group, version, plural)?;
    let r = &RESOURCES[resource];
    // Namespaced objects are only addressed inside their namespace; cluster-scoped ones never are.
    let addressable = if r.namespaced { name.is_none() || namespace.is_some() } else { namespace.is_none() };
    addressable.then(|| Target { resource, namespace: namespace.map(str::to_string), name: name.map(str::to_string) })
}

async fn dispatch(State(store): State<ApiStore>, method: Method, uri: Uri, body: Bytes) -> Response {
    let Some(target) = target(uri.path()) else {
        return Status::not_found_path().into_response();
    };
    let writable = RESOURCES[target.resource].writable;
    let result = match (&method, &target.name) {
        (m, _) if *m == Method::GET || *m == Method::HEAD => read(&store, target, &uri),
        (m, None) if *m == Method::POST && writable && target.namespace.is_some() => {
            write(&store, &target, None, &body)
        }
        (m, Some(name)) if *m == Method::PUT && writable => write(&store, &target, Some(name), &body),
        _ => {
            let message = "the server does not allow this method on the requested resource";
            Err(Status::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message).with_details(json!({})))
        }
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn read(store: &ApiStore, target: Target, uri: &Uri) -> Result<Response, Status> {
    let params = match Query::<Params>::try_from_uri(uri) {
        Ok(Query(p)) => p,
        Err(e) => return Err(Status::bad_request(format!("invalid query: {}", e.body_text()))),
    };
    match (&target.name, flag(&params.watch)) {
        (Some(name), false) => get_object(store, &target, name),
        (_, true) => watch(store, target, params),
        (None, false) => list(store, &target, &params),
    }
}

/// A create (`POST` to the collection, `name` None) or a replace (`PUT` to the object).
/// The body's kind, namespace and name must be the URL's, as the real server requires.
fn write(store: &ApiStore, target: &Target, name: Option<&str>, body: &[u8]) -> Result<Response, Status> {
    let r = &RESOURCES[target.resource];
    let mut obj: Value =
        serde_json::from_slice(body).map_err(|e| Status::bad_request(format!("the body is not a JSON object: {e}")))?;
    let Some(fields) = obj.as_object_mut() else {
        return Err(Status::bad_request("the body is not a JSON object"));
    };
    for (field, want) in [("apiVersion", r.api_version()), ("kind", r.kind.to_string())] {
        match fields.get(field).and_then(Value::as_str) {
            None => {
                fields.insert(field.into(), Value::String(want));
            }
            Some(got) if got != want => {
                return Err(Status::bad_request(format!("{field} {got:?} is not {want:?}, which this URL serves")));
            }
            Some(_) => {}
        }
    }
    let meta = fields.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return Err(Status::bad_request("metadata is not an object"));
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    match meta.get("namespace").and_then(Value::as_str) {
        None => {
            meta.insert("namespace".into(), Value::String(namespace));
        }
        Some(ns) if ns != namespace => {
            let message = "the namespace of the provided object does not match the namespace sent on the request";
            return Err(Status::bad_request(message));
        }
        Some(_) => {}
    }
    let named = meta.get("name").and_then(Value::as_str).map(str::to_string);
    let expect = match (name, named.as_deref()) {
        (_, None) => return Err(invalid("metadata.name: Required value: name is required")),
        (Some(url), Some(body)) if url != body => {
            return Err(Status::bad_request(format!(
                "the name of the object ({body}) does not match the name on the URL ({url})"
            )));
        }
        (Some(_), Some(_)) => {
            let version = meta.get("resourceVersion").and_then(Value::as_str).filter(|v| !v.is_empty());
            Expect::Version(version.map(str::to_string))
        }
        (None, Some(_)) => Expect::Absent,
    };
    let created = expect == Expect::Absent;
    let stored = store.write(obj, expect)?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, axum::Json(stored)).into_response())
}

fn get_object(store: &ApiStore, target: &Target, name: &str) -> Result<Response, Status> {
    let r = &RESOURCES[target.resource];
    match store.get_by_index(target.resource, target.namespace.as_deref(), name) {
        Some(obj) => Ok(axum::Json(&*obj).into_response()),
        None => Err(Status::new(StatusCode::NOT_FOUND, "NotFound", format!("{} {name:?} not found", r.qualified()))
            .with_details(json!({"name": name, "group": r.group, "kind": r.plural}))),
    }
}

fn parse_rv(rv: &str) -> Result<u64, Status> {
    rv.parse().map_err(|_| Status::bad_request(format!("invalid resource version: {rv:?}")))
}

fn selectors(r: &ResourceType, params: &Params) -> Result<Selectors, Status> {
    Selectors::parse(r, params.label_selector.as_deref(), params.field_selector.as_deref())
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter.";

fn list(store: &ApiStore, target: &Target, params: &Params) -> Result<Response, Status> {
    let r = &RESOURCES[target.resource];
    let selectors = selectors(r, params)?;
    let (rv, items, start) = match params.continue_.as_deref().filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            let items = store
                .find_snapshot(target.resource, rv)
                .ok_or_else(|| Status::new(StatusCode::GONE, "Expired", CONTINUE_EXPIRED))?;
            (rv, items, Some(start))
        }
        None => {
            let (current, items) = store.snapshot(target.resource);
            let requested = params.resource_version.as_deref().filter(|v| !v.is_empty() && *v != "0");
            if let Some(requested) = requested.map(parse_rv).transpose()? {
                let exact = params.resource_version_match.as_deref() == Some("Exact");
                if requested > current {
                    return Err(too_large(requested, current));
                }
                if exact && requested != current {
                    let items = store
                        .find_snapshot(target.resource, requested)
                        .ok_or_else(|| Status::too_old(requested, current).with_details(json!({"causes": []})))?;
                    return Ok(page(store, target, r, &selectors, params, requested, items, None));
                }
            }
            (current, items, None)
        }
    };
    Ok(page(store, target, r, &selectors, params, rv, items, start))
}

#[allow(clippy::too_many_arguments)]
fn page(
    store: &ApiStore,
    target: &Target,
    r: &ResourceType,
    selectors: &Selectors,
    params: &Params,
    rv: u64,
    items: Arc<Vec<Arc<Value>>>,
    start: Option<(String, String)>,
) -> Response {
    let from = match &start {
        Some((ns, name)) => items.partition_point(|o| object_key(o) <= (ns.as_str(), name.as_str())),
        None => 0,
    };
    let ns = target.namespace.as_deref();
    let mut matching =
        items[from..].iter().filter(|o| ns.is_none_or(|ns| object_key(o).0 == ns)).filter(|o| selectors.matches(o));
    let limit = params.limit.filter(|l| *l > 0).map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let page: Vec<&Arc<Value>> = matching.by_ref().take(limit).collect();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let (Some(last), true) = (page.last(), limit != usize::MAX) {
        let remaining = matching.count();
        if remaining > 0 {
            let (lns, lname) = object_key(last);
            metadata["continue"] = json!(encode_continue(rv, lns, lname));
            if selectors.is_empty() {
                metadata["remainingItemCount"] = json!(remaining);
            }
            store.keep_snapshot(target.resource, rv, Arc::clone(&items));
        }
    }
    let list = ListBody {
        kind: format!("{}List", r.kind),
        api_version: r.api_version(),
        metadata,
        items: page.into_iter().map(|o| ListItem(o)).collect(),
    };
    axum::Json(list).into_response()
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    kind: String,
    api_version: String,
    metadata: Value,
    items: Vec<ListItem<'a>>,
}

/// A list item as the real server writes it: without `kind` and `apiVersion`.
struct ListItem<'a>(&'a Value);

impl Serialize for ListItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_object() {
            Some(map) => {
                let mut out = serializer.serialize_map(None)?;
                for (k, v) in map.iter().filter(|(k, _)| !matches!(k.as_str(), "kind" | "apiVersion")) {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
            None => self.0.serialize(serializer),
        }
    }
}

fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    hex::encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [namespace, name]}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), Status> {
    let bad = || Status::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let s = |i: usize| v.pointer(&format!("/start/{i}")).and_then(Value::as_str).map(str::to_string);
    match (s(0), s(1)) {
        (Some(ns), Some(name)) => Ok((rv, (ns, name))),
        _ => Err(bad()),
    }
}

fn invalid(message: &str) -> Status {
    Status::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

fn watch(store: &ApiStore, target: Target, params: Params) -> Result<Response, Status> {
    let r = &RESOURCES[target.resource];
    let mut selectors = selectors(r, &params)?;
    if let Some(name) = &target.name {
        // A watch on `/.../{name}` is a watch with `metadata.name={name}`.
        let field = match &params.field_selector {
            Some(f) if !f.is_empty() => format!("{f},metadata.name={name}"),
            _ => format!("metadata.name={name}"),
        };
        selectors = Selectors::parse(r, params.label_selector.as_deref(), Some(&field))?;
    }
    let streaming = flag(&params.send_initial_events);
    let bookmarks = flag(&params.allow_watch_bookmarks);
    let rv = params.resource_version.as_deref().filter(|v| !v.is_empty());
    let from = if streaming {
        if params.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(invalid("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
        }
        if !bookmarks {
            return Err(invalid("sendInitialEvents requires allowWatchBookmarks=true"));
        }
        if let Some(n) = rv.filter(|v| *v != "0").map(parse_rv).transpose()? {
            let current = store.resource_version();
            if n > current {
                return Err(too_large(n, current));
            }
        }
        WatchFrom::Now
    } else {
        if params.resource_version_match.as_deref().is_some_and(|m| !m.is_empty()) {
            return Err(invalid("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"));
        }
        match rv.filter(|v| *v != "0") {
            Some(n) => WatchFrom::After(parse_rv(n)?),
            None => WatchFrom::Now,
        }
    };
    let options = store.options();
    let timeout = params.timeout_seconds.map_or(options.default_watch_timeout, Duration::from_secs);
    let spec = WatchSpec {
        resource: target.resource,
        namespace: target.namespace,
        selectors,
        bookmarks: bookmarks.then_some(options.bookmark_interval),
        initial_events_end: streaming,
        timeout,
    };
    match store.subscribe(spec.resource, from) {
        Ok(sub) => Ok(watch_response(Body::from_stream(stream(spec, sub)))),
        // The real server answers a too-old watch with 200 and one ERROR event, then closes.
        Err(status) if status.code == StatusCode::GONE => {
            let event = json!({"type": "ERROR", "object": status.to_json()});
            Ok(watch_response(Body::from(super::store::event_line(&event))))
        }
        Err(status) => Err(status),
    }
}

fn watch_response(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
