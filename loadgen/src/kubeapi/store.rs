//! The object store behind the API: current objects per resource, one global
//! `resourceVersion`, a bounded watch history and the live event fan-out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{RESOURCES, Status, resource_by_kind};
use crate::{Error, Result};

/// Tuning of the simulated API server.
#[derive(Debug, Clone)]
pub(crate) struct ApiOptions {
    /// How many watch events are kept for resuming watches; older resourceVersions get 410.
    pub history: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Events a watcher may fall behind before it is closed as a slow consumer.
    pub watch_buffer: usize,
    /// How long a paginated list's snapshot serves `continue` tokens.
    pub continue_ttl: Duration,
    /// How many list snapshots are kept at most.
    pub max_snapshots: usize,
    /// How long a watch without `timeoutSeconds` stays open (the real server's `--min-request-timeout`).
    pub default_watch_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            history: 10_000,
            bookmark_interval: Duration::from_secs(10),
            watch_buffer: 4096,
            continue_ttl: Duration::from_secs(300),
            max_snapshots: 64,
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// What kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One recorded change, shared by the history and every watcher.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub resource: usize,
    pub change: ChangeType,
    pub object: Arc<Value>,
    /// The object before a modification, so selector watches can turn it into ADDED/DELETED.
    pub prev: Option<Arc<Value>>,
    /// The watch event, serialized once, newline-terminated.
    pub line: Bytes,
}

/// What the fan-out carries.
#[derive(Debug, Clone)]
pub(crate) enum Msg {
    Change(Arc<Change>),
    /// The history was compacted: every open watch ends.
    Expired,
}

/// What a client's write expects to find stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Nothing: a create.
    Absent,
    /// The object, at this `resourceVersion` when one is given: a replace.
    Version(Option<String>),
}

/// Where a watch begins.
pub(crate) enum WatchFrom {
    /// Synthetic ADDED events for the current objects, then live events.
    Now,
    /// Every event after this resourceVersion, then live events.
    After(u64),
}

/// A watch, registered atomically with its starting point.
pub(crate) struct Subscription {
    /// Current objects (for [`WatchFrom::Now`]), sorted by namespace/name.
    pub initial: Vec<Arc<Value>>,
    /// Kept events after the requested resourceVersion.
    pub replay: Vec<Arc<Change>>,
    /// The resourceVersion the watcher is up to date with once `initial`/`replay` are sent.
    pub rv: u64,
    pub rx: broadcast::Receiver<Msg>,
}

struct Snapshot {
    resource: usize,
    rv: u64,
    items: Arc<Vec<Arc<Value>>>,
    created: Instant,
}

type Key = (String, String);

struct State {
    rv: u64,
    uids: u64,
    objects: Vec<BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    /// The oldest resourceVersion a watch can resume from.
    oldest: u64,
    snapshots: VecDeque<Snapshot>,
}

struct Shared {
    opts: ApiOptions,
    state: Mutex<State>,
    tx: broadcast::Sender<Msg>,
}

/// The simulated cluster's objects as the API server sees them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ApiStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ApiStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStore").field("resource_version", &self.resource_version()).finish()
    }
}

impl ApiStore {
    /// A store keeping `history` watch events for resuming watches (older resourceVersions get 410 Gone).
    pub(crate) fn new(history: usize) -> Self {
        ApiStore::with_options(ApiOptions { history, ..ApiOptions::default() })
    }

    pub(crate) fn with_options(opts: ApiOptions) -> Self {
        let (tx, _) = broadcast::channel(opts.watch_buffer.max(1));
        let state = State {
            rv: 0,
            uids: 0,
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            history: VecDeque::new(),
            oldest: 0,
            snapshots: VecDeque::new(),
        };
        ApiStore { shared: Arc::new(Shared { opts, state: Mutex::new(state), tx }) }
    }

    pub(crate) fn options(&self) -> &ApiOptions {
        &self.shared.opts
    }

    /// Upserts a full object (apiVersion, kind, metadata.name, and metadata.namespace unless
    /// cluster-scoped) and returns its watch event `{"type":"ADDED"|"MODIFIED","object":{...}}`.
    ///
    /// Assigns `metadata.resourceVersion` and, when missing, a deterministic `metadata.uid` (kept
    /// across modifications). Keeps the caller's `metadata.creationTimestamp`. Like the real server,
    /// an apply that changes nothing records no event and returns the stored object unchanged.
    pub(crate) fn apply(&self, obj: Value) -> Result<Value> {
        let mut obj = obj;
        let (resource, key) = identify(&mut obj)?;
        let mut st = self.shared.state.lock();
        self.upsert(&mut st, resource, key, obj)
    }

    /// A client's create (`Expect::Absent`) or replace (`Expect::Version`) of an object
    /// of a writable resource, checked and applied under one lock: two clients replacing
    /// the same version cannot both succeed. Returns the stored object.
    pub(crate) fn write(&self, obj: Value, expect: Expect) -> std::result::Result<Value, Status> {
        let mut obj = obj;
        let (resource, key) = identify(&mut obj).map_err(|e| Status::bad_request(e.to_string()))?;
        let r = &RESOURCES[resource];
        let mut st = self.shared.state.lock();
        let stored = st.objects[resource].get(&key).and_then(|o| o.pointer("/metadata/resourceVersion").cloned());
        let details = || json!({"name": key.1, "group": r.group, "kind": r.plural});
        match (expect, stored) {
            (Expect::Absent, Some(_)) => {
                let message = format!("{} {:?} already exists", r.qualified(), key.1);
                return Err(Status::new(StatusCode::CONFLICT, "AlreadyExists", message).with_details(details()));
            }
            (Expect::Version(_), None) => {
                let message = format!("{} {:?} not found", r.qualified(), key.1);
                return Err(Status::new(StatusCode::NOT_FOUND, "NotFound", message).with_details(details()));
            }
            (Expect::Version(Some(wanted)), Some(now)) if now.as_str() != Some(wanted.as_str()) => {
                let message = format!(
                    "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your \
                     changes to the latest version and try again",
                    r.qualified(),
                    key.1
                );
                return Err(Status::new(StatusCode::CONFLICT, "Conflict", message).with_details(details()));
            }
            _ => {}
        }
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            // The server assigns these; a client's values are not kept.
            meta.remove("resourceVersion");
            meta.remove("uid");
        }
        let mut event = self.upsert(&mut st, resource, key, obj).map_err(|e| Status::bad_request(e.to_string()))?;
        Ok(event["object"].take())
    }

    fn upsert(&self, st: &mut State, resource: usize, key: Key, mut obj: Value) -> Result<Value> {
        let prev = st.objects[resource].get(&key).cloned();
        let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| invalid("no metadata"))?;
        if let Some(prev_meta) = prev.as_ref().and_then(|p| p.get("metadata")) {
            for carried in ["uid", "creationTimestamp"] {
                if let (None, Some(v)) = (meta.get(carried), prev_meta.get(carried)) {
                    meta.insert(carried.to_string(), v.clone());
                }
            }
            if let Some(rv) = prev_meta.get("resourceVersion") {
                meta.insert("resourceVersion".into(), rv.clone());
            }
            if prev.as_deref() == Some(&obj) {
                return Ok(json!({"type": "MODIFIED", "object": obj}));
            }
        }
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(invalid("no metadata"));
        };
        if !meta.get("uid").is_some_and(Value::is_string) {
            st.uids += 1;
            let uid = uid(RESOURCES[resource].kind, &key, st.uids);
            meta.insert("uid".into(), Value::String(uid));
        }
        st.rv += 1;
        meta.insert("resourceVersion".into(), Value::String(st.rv.to_string()));
        let object = Arc::new(obj);
        st.objects[resource].insert(key, Arc::clone(&object));
        let change = if prev.is_some() { ChangeType::Modified } else { ChangeType::Added };
        Ok(self.record(st, resource, change, object, prev))
    }

    /// Removes an object; returns the `DELETED` watch event (object with a new resourceVersion), or None.
    pub(crate) fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let resource = resource_by_kind(api_version, kind)?;
        let key = key_of(resource, namespace, name);
        let mut st = self.shared.state.lock();
        let prev = st.objects[resource].remove(&key)?;
        st.rv += 1;
        let mut obj = (*prev).clone();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(st.rv.to_string()));
        }
        Some(self.record(&mut st, resource, ChangeType::Deleted, Arc::new(obj), Some(prev)))
    }

    /// Forgets the watch history and ends every open watch stream, as an etcd compaction would: a
    /// client that resumes from an older resourceVersion gets 410 Gone and must relist.
    ///
    /// The resourceVersion advances by one, as after an API server restart whose watch cache starts
    /// at a newer revision, so even a client that had seen every event must relist.
    pub(crate) fn expire_history(&self) {
        let mut st = self.shared.state.lock();
        st.rv += 1;
        st.oldest = st.rv;
        st.history.clear();
        st.snapshots.clear();
        let _ = self.shared.tx.send(Msg::Expired);
        tracing::info!(resource_version = st.rv, "watch history expired");
    }

    /// The latest resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.shared.state.lock().rv
    }

    pub(crate) fn get_by_index(&self, resource: usize, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let key = key_of(resource, namespace, name);
        self.shared.state.lock().objects[resource].get(&key).cloned()
    }

    /// All objects of a resource sorted by namespace/name, and the resourceVersion they are current at.
    pub(crate) fn snapshot(&self, resource: usize) -> (u64, Arc<Vec<Arc<Value>>>) {
        let st = self.shared.state.lock();
        (st.rv, Arc::new(st.objects[resource].values().cloned().collect()))
    }

    /// Keeps a snapshot so `continue` tokens can page through it.
    pub(crate) fn keep_snapshot(&self, resource: usize, rv: u64, items: Arc<Vec<Arc<Value>>>) {
        let mut st = self.shared.state.lock();
        if st.snapshots.iter().any(|s| s.resource == resource && s.rv == rv) {
            return;
        }
        if st.snapshots.len() >= self.shared.opts.max_snapshots.max(1) {
            st.snapshots.pop_front();
        }
        st.snapshots.push_back(Snapshot { resource, rv, items, created: Instant::now() });
    }

    /// A kept snapshot, unless it expired.
    pub(crate) fn find_snapshot(&self, resource: usize, rv: u64) -> Option<Arc<Vec<Arc<Value>>>> {
        let mut st = self.shared.state.lock();
        let ttl = self.shared.opts.continue_ttl;
        st.snapshots.retain(|s| s.created.elapsed() < ttl);
        st.snapshots.iter().find(|s| s.resource == resource && s.rv == rv).map(|s| Arc::clone(&s.items))
    }

    /// Registers a watch on `resource`; 410 when `from` is older than the kept history.
    pub(crate) fn subscribe(&self, resource: usize, from: WatchFrom) -> Result<Subscription, Status> {
        let st = self.shared.state.lock();
        let rx = self.shared.tx.subscribe();
        match from {
            WatchFrom::Now => {
                let initial = st.objects[resource].values().cloned().collect();
                Ok(Subscription { initial, replay: Vec::new(), rv: st.rv, rx })
            }
            WatchFrom::After(n) if n < st.oldest => Err(Status::too_old(n, st.oldest)),
            WatchFrom::After(n) if n > st.rv => Err(too_large(n, st.rv)),
            WatchFrom::After(n) => {
                let start = st.history.partition_point(|c| c.rv <= n);
                let replay = st.history.range(start..).filter(|c| c.resource == resource).cloned().collect();
                Ok(Subscription { initial: Vec::new(), replay, rv: st.rv, rx })
            }
        }
    }

    fn record(
        &self,
        st: &mut State,
        resource: usize,
        change: ChangeType,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) -> Value {
        let event = json!({"type": change.as_str(), "object": &*object});
        let line = event_line(&event);
        let change = Arc::new(Change { rv: st.rv, resource, change, object, prev, line });
        st.history.push_back(Arc::clone(&change));
        while st.history.len() > self.shared.opts.history {
            if let Some(dropped) = st.history.pop_front() {
                st.oldest = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.shared.tx.send(Msg::Change(change));
        event
    }
}

/// A watch event as one newline-terminated JSON line.
pub(crate) fn event_line(event: &Value) -> Bytes {
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// 504 for a resourceVersion the server has not reached, as the real server answers after waiting.
pub(crate) fn too_large(requested: u64, current: u64) -> Status {
    Status::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "Timeout",
        format!("Too large resource version: {requested}, current: {current}"),
    )
    .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
}

fn invalid(message: &str) -> Error {
    Error::Invalid(format!("kubernetes object: {message}"))
}

/// Finds the resource and key of an object, normalizing its namespace.
fn identify(obj: &mut Value) -> Result<(usize, Key)> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).ok_or_else(|| invalid("no apiVersion"))?;
    let kind = obj.get("kind").and_then(Value::as_str).ok_or_else(|| invalid("no kind"))?;
    let resource = resource_by_kind(api_version, kind)
        .ok_or_else(|| invalid(&format!("apiVersion {api_version:?} kind {kind:?} is not served")))?;
    let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| invalid("no metadata"))?;
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return Err(invalid("no metadata.name")),
    };
    let namespace = if RESOURCES[resource].namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => return Err(invalid(&format!("{} {name:?} has no metadata.namespace", RESOURCES[resource].kind))),
        }
    } else {
        meta.remove("namespace");
        String::new()
    };
    Ok((resource, (namespace, name)))
}

fn key_of(resource: usize, namespace: Option<&str>, name: &str) -> Key {
    let ns = if RESOURCES[resource].namespaced { namespace.unwrap_or_default() } else { "" };
    (ns.to_string(), name.to_string())
}

/// The namespace/name sort key of an object.
pub(crate) fn object_key(obj: &Value) -> (&str, &str) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// A UUID-shaped uid derived from kind/namespace/name and a counter: deterministic, no randomness.
fn uid(kind: &str, key: &Key, counter: u64) -> String {
    let seed = format!("{kind}/{}/{}", key.0, key.1);
    let hi = fnv1a(seed.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let lo = fnv1a(&counter.to_le_bytes(), hi ^ 0x9e37_79b9_7f4a_7c15);
    let n = (u128::from(hi) << 64) | u128::from(lo);
    // Version 8 (custom) and the RFC 4122 variant, so it parses as a UUID.
    let n = (n & !(0xf << 76) & !(0x3 << 62)) | (0x8 << 76) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
