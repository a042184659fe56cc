//! Kubernetes objects saved to files, as changes: `kubectl get events -o json` (a `List`
//! of Events), single Events, JSON lines of Events, and watch streams (`{"type": "ADDED",
//! "object": {...}}` per line, as `kubectl get -w -o json` or the simulator's
//! `kube/watch.jsonl` write them).
//!
//! A watch stream goes through the same [`Tracker`] as a live watch. Its leading run of
//! `ADDED` frames (up to the first `MODIFIED` or `DELETED`) is the initial list; after
//! that every frame is an update. The clock is data time: the latest timestamp the frames
//! carry (Event times, creation, transition and scale times), so holds and fallbacks use
//! the stream's own time, not the importer's.
//!
//! Events alone cannot show a rollout's ReplicaSets, so there `ScalingReplicaSet` Events
//! are paired into rollouts ([`rollouts`]) instead of being stored one by one.

use serde_json::Value;
use slo_store::ChangeRecord;

use super::normalize::{Change, from_event, rollouts, s, ts};
use super::objects::Watched;
use super::tracker::{HOLD_NS, Tracker, event_record};

/// Longest time between a rollout's scale-up and scale-down Events.
const ROLLOUT_WINDOW_NS: i64 = 15 * 60 * 1_000_000_000;

/// Turns saved Kubernetes documents into changes.
#[derive(Debug, Default)]
pub struct Replay {
    tracker: Tracker,
    clock: i64,
    /// Still in the initial list of a watch stream.
    listing: bool,
    watch_started: bool,
    scaling: Vec<Change>,
    /// Changes the tracker released so far.
    out: Vec<ChangeRecord>,
    /// Documents that were not Kubernetes objects this replay understands.
    pub skipped: usize,
}

fn is_event(v: &Value) -> bool {
    s(v, &["kind"]) == Some("Event") || v.get("involvedObject").is_some() || v.get("regarding").is_some()
}

/// The latest timestamp an object carries.
pub(crate) fn latest_time(v: &Value) -> i64 {
    let mut t = 0;
    let mut visit = |x: Option<&str>| {
        if let Some(n) = x.and_then(ts) {
            t = t.max(n);
        }
    };
    for p in [
        &["metadata", "creationTimestamp"][..],
        &["lastTimestamp"],
        &["eventTime"],
        &["series", "lastObservedTime"],
        &["status", "lastScaleTime"],
    ] {
        visit(s(v, p));
    }
    for c in v.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten() {
        visit(s(c, &["lastTransitionTime"]));
    }
    for c in v.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten() {
        visit(c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str));
        visit(c.pointer("/state/terminated/finishedAt").and_then(Value::as_str));
    }
    t
}

impl Replay {
    /// A replay with nothing seen.
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Whether a JSON document is something this replay takes (an Event, a List, a watch
    /// frame), as opposed to, say, OTLP JSON.
    pub fn recognizes(v: &Value) -> bool {
        is_event(v)
            || (v.get("type").is_some() && v.get("object").is_some())
            || (v.get("items").is_some() && s(v, &["kind"]).is_some_and(|k| k.ends_with("List")))
    }

    /// Adds one document. Err names what is wrong with it.
    pub fn add(&mut self, v: &Value) -> Result<(), String> {
        let added = self.document(v);
        // What the tracker holds (an HPA change waiting for its Event, an Event for its HPA
        // change) expires on the documents' own clock, as it would live: held until the
        // end, a stale Event would lend its reason to a much later rescale.
        self.out.extend(self.tracker.take(self.clock));
        added
    }

    fn document(&mut self, v: &Value) -> Result<(), String> {
        if let (Some(kind), Some(obj)) = (s(v, &["type"]), v.get("object")) {
            return self.frame(kind, obj);
        }
        if let Some(items) = v.get("items").and_then(Value::as_array) {
            for item in items {
                self.object(item)?;
            }
            return Ok(());
        }
        self.object(v)
    }

    fn object(&mut self, v: &Value) -> Result<(), String> {
        self.clock = self.clock.max(latest_time(v));
        if is_event(v) {
            return self.event(v);
        }
        match s(v, &["kind"]).and_then(Watched::from_kind) {
            Some(kind) => {
                // Objects outside a watch stream (a `kubectl get -o json` List): a snapshot.
                self.tracker.apply(kind, v, self.clock)
            }
            None => {
                self.skipped += 1;
                Ok(())
            }
        }
    }

    fn event(&mut self, v: &Value) -> Result<(), String> {
        let scaling = v.pointer("/reason").and_then(Value::as_str) == Some("ScalingReplicaSet");
        if scaling && !self.tracker.watching(Watched::ReplicaSet) {
            if let Some(c) = from_event(v)? {
                self.scaling.push(c);
            }
            return Ok(());
        }
        self.tracker.event(v, self.clock)
    }

    fn frame(&mut self, kind: &str, obj: &Value) -> Result<(), String> {
        match kind {
            "ADDED" | "MODIFIED" | "DELETED" => {}
            "BOOKMARK" => return Ok(()),
            "ERROR" => {
                let why = s(obj, &["message"]).unwrap_or("(no message)");
                return Err(format!("watch stream has an ERROR frame: {why}"));
            }
            other => return Err(format!("unknown watch frame type {other:?}")),
        }
        if !self.watch_started {
            self.watch_started = true;
            self.listing = true;
            for k in Watched::ALL {
                self.tracker.begin_list(k);
            }
        }
        if self.listing && kind != "ADDED" {
            self.end_listing();
        }
        self.clock = self.clock.max(latest_time(obj));
        if is_event(obj) {
            return if kind == "DELETED" { Ok(()) } else { self.event(obj) };
        }
        let Some(watched) = s(obj, &["kind"]).and_then(Watched::from_kind) else {
            self.skipped += 1;
            return Ok(());
        };
        if kind == "DELETED" {
            self.tracker.delete(watched, obj, self.clock)
        } else {
            self.tracker.apply(watched, obj, self.clock)
        }
    }

    fn end_listing(&mut self) {
        self.listing = false;
        for k in Watched::ALL {
            self.tracker.end_list(k, self.clock);
        }
    }

    /// Where the GPU pods are at the end of what was replayed.
    pub fn placement(&self) -> crate::scrape::attribute::Placement {
        self.tracker.discovery().placement
    }

    /// Everything the documents amounted to.
    pub fn finish(mut self) -> Vec<ChangeRecord> {
        if self.listing {
            self.end_listing();
        }
        let mut out = std::mem::take(&mut self.out);
        out.extend(self.tracker.take(self.clock.saturating_add(10 * HOLD_NS)));
        self.scaling.sort_by_key(|c| c.time_unix_nano);
        for d in rollouts(&self.scaling, ROLLOUT_WINDOW_NS) {
            let mut r = event_record(&d);
            r.key = format!("rollout/{}/{}", d.namespace, d.to.as_deref().unwrap_or(""));
            out.push(r);
        }
        out.sort_by(|a, b| a.time_unix_nano.cmp(&b.time_unix_nano).then_with(|| a.key.cmp(&b.key)));
        out
    }
}

#[cfg(test)]
mod tests;
