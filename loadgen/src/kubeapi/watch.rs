//! The watch stream: newline-delimited JSON events over a chunked response,
//! with replay, bookmarks, a timeout and slow-consumer eviction.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::RESOURCES;
use super::selector::Selectors;
use super::store::{Change, ChangeType, Msg, Subscription, event_line};

/// What one watch request asked for.
pub(crate) struct WatchSpec {
    pub resource: usize,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub bookmarks: Option<Duration>,
    /// Send the `k8s.io/initial-events-end` bookmark after the initial events (streaming lists).
    pub initial_events_end: bool,
    pub timeout: Duration,
}

struct WatchState {
    spec: WatchSpec,
    pending: VecDeque<Bytes>,
    rx: tokio::sync::broadcast::Receiver<Msg>,
    /// The resourceVersion this watcher has seen every event up to.
    rv: u64,
    bookmarks: Option<Interval>,
    deadline: Instant,
}

/// The body of a watch response.
pub(crate) fn stream(spec: WatchSpec, sub: Subscription) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let mut pending = VecDeque::new();
    for obj in &sub.initial {
        if in_scope(&spec, obj) && spec.selectors.matches(obj) {
            pending.push_back(event_line(&json!({"type": "ADDED", "object": &**obj})));
        }
    }
    for change in &sub.replay {
        if let Some(line) = filtered(&spec, change) {
            pending.push_back(line);
        }
    }
    if spec.initial_events_end {
        pending.push_back(bookmark(spec.resource, sub.rv, true));
    }
    let bookmarks = spec.bookmarks.map(|period| {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let deadline = Instant::now() + spec.timeout;
    let state = WatchState { spec, pending, rx: sub.rx, rv: sub.rv, bookmarks, deadline };
    futures_util::stream::unfold(state, |mut st| async move {
        let line = next_line(&mut st).await?;
        Some((Ok(line), st))
    })
}

async fn next_line(st: &mut WatchState) -> Option<Bytes> {
    if let Some(line) = st.pending.pop_front() {
        return Some(line);
    }
    loop {
        let tick = async {
            match st.bookmarks.as_mut() {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            msg = st.rx.recv() => match msg {
                Ok(Msg::Change(change)) => {
                    if change.rv <= st.rv {
                        continue; // already sent as part of the replay
                    }
                    st.rv = change.rv;
                    if let Some(line) = filtered(&st.spec, &change) {
                        return Some(line);
                    }
                }
                Ok(Msg::Expired) | Err(RecvError::Closed) => return None,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, resource = RESOURCES[st.spec.resource].plural, "closing watch of a slow consumer");
                    return None;
                }
            },
            _ = tick => return Some(bookmark(st.spec.resource, st.rv, false)),
            () = tokio::time::sleep_until(st.deadline) => return None,
        }
    }
}

fn in_scope(spec: &WatchSpec, obj: &Value) -> bool {
    spec.namespace.as_deref().is_none_or(|ns| obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
}

/// The event a watcher with selectors sees: an object that starts matching is ADDED, one that
/// stops matching is DELETED, as the real server's watch cache does.
fn filtered(spec: &WatchSpec, change: &Arc<Change>) -> Option<Bytes> {
    if change.resource != spec.resource || !in_scope(spec, &change.object) {
        return None;
    }
    if spec.selectors.is_empty() {
        return Some(change.line.clone());
    }
    let now = spec.selectors.matches(&change.object);
    let before = change.prev.as_deref().is_some_and(|p| spec.selectors.matches(p));
    let seen = match (change.change, before, now) {
        (ChangeType::Added, _, true) => ChangeType::Added,
        (ChangeType::Deleted, _, true) => ChangeType::Deleted,
        (ChangeType::Modified, true, true) => ChangeType::Modified,
        (ChangeType::Modified, false, true) => ChangeType::Added,
        (ChangeType::Modified, true, false) => ChangeType::Deleted,
        _ => return None,
    };
    if seen == change.change {
        Some(change.line.clone())
    } else {
        Some(event_line(&json!({"type": seen.as_str(), "object": &*change.object})))
    }
}

fn bookmark(resource: usize, rv: u64, initial_events_end: bool) -> Bytes {
    let r = &RESOURCES[resource];
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        &json!({"type": "BOOKMARK", "object": {"kind": r.kind, "apiVersion": r.api_version(), "metadata": metadata}}),
    )
}
