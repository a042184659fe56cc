//! HPA rescales: one change per rescale, carrying its `SuccessfulRescale` Event's reason
//! whichever arrives first, and the Deployment scales an HPA made recognized as its.

use slo_store::{Attr, ChangeRecord};

use super::{HOLD_NS, Held, HeldFor, SEC, Tracker, record, scale_kind};
use crate::kube::objects::HpaSummary;

/// Whether an HPA's rescale and a `SuccessfulRescale` Event are one occurrence by their
/// times: the controller sets `lastScaleTime` and records the Event in the same sync, so a
/// minute apart they are not (the HPA went to the same size again).
pub(super) fn same_rescale(change: i64, event: i64) -> bool {
    (change - event).abs() <= 60 * SEC
}

/// How much later than a Deployment scale's stamp (when it was seen) the HPA rescale that
/// made it may be timed: see [`Tracker::scaled_by_hpa`].
pub(super) const LATE_HPA_NS: i64 = 300 * SEC;

impl Tracker {
    /// Whether an HPA change (released or still held) set this Deployment's replicas.
    pub(super) fn scaled_by_hpa(&self, namespace: &str, deployment: &str, to: &str, at: i64) -> bool {
        // A Deployment's new size carries no time of its own: it is stamped when seen. On
        // the data clock (a simulated cluster many times faster than real time) that
        // stamp can trail the HPA's own `lastScaleTime` by minutes of cluster time when
        // the HPA's status reaches the watch a moment after the Deployment; the HPA never
        // rescales long before the Deployment shows it.
        let near = |t: i64| (-60 * SEC..=LATE_HPA_NS).contains(&(t - at));
        self.st.recent_hpa.iter().any(|(n, d, t, when)| n == namespace && d == deployment && t == to && near(*when))
            || self.st.held.iter().any(|h| {
                matches!(&h.what, HeldFor::Reason { namespace: n, to: t, .. } if n == namespace && t == to)
                    && h.change.attributes.iter().any(|a| a.key == "target" && a.value == deployment)
            })
    }

    pub(super) fn release_hpa(&mut self, c: ChangeRecord) {
        let target = c.attributes.iter().find(|a| a.key == "target").map(|a| a.value.clone()).unwrap_or_default();
        self.st.recent_hpa.push((c.namespace.clone(), target, c.to.clone(), c.time_unix_nano));
        self.out.push(c);
    }

    /// Puts a `SuccessfulRescale` Event's reason into the held HPA change it explains.
    pub(super) fn merge_reason(&mut self, ev: &ChangeRecord) -> bool {
        let pos = self.st.held.iter().position(|h| {
            matches!(&h.what, HeldFor::Reason { namespace, hpa, to }
                if *namespace == ev.namespace && format!("hpa/{hpa}") == ev.object && (ev.to.is_empty() || *to == ev.to))
                && same_rescale(h.change.time_unix_nano, ev.time_unix_nano)
        });
        let Some(pos) = pos else { return false };
        let mut held = self.st.held.remove(pos);
        let why = ev.message.split("reason:").nth(1).map(str::trim).unwrap_or("").to_string();
        if !why.is_empty() {
            held.change.reason = why;
        }
        held.change.message = format!("{}; {}", held.change.message, ev.message);
        held.change.attributes.push(Attr::new("event_key", ev.key.clone()));
        self.st.merged_events.push((ev.key.clone(), held.change.time_unix_nano));
        self.release_hpa(held.change);
        self.dirty = true;
        true
    }

    pub(super) fn hpa_scaled(&mut self, a: &HpaSummary, b: &HpaSummary, now: i64) {
        let at = b.last_scale.filter(|t| Some(*t) != a.last_scale).unwrap_or(now);
        let mut c = record(
            at,
            scale_kind(a.desired, b.desired),
            (&b.meta.namespace, "HorizontalPodAutoscaler", format!("hpa/{}", b.meta.name)),
            (a.desired.to_string(), b.desired.to_string()),
            ("SuccessfulRescale", format!("replicas {} -> {} (min {}, max {})", a.desired, b.desired, b.min, b.max)),
            // Not the `from`: a collector that computes this rescale from an older baseline
            // (it took the watch over from one that stalled) gives it the same key.
            format!("hpa/{}/->{}@{at}", b.meta.uid, b.desired),
        );
        c.attributes.push(Attr::new("target", b.target.clone()));
        if let Some(so) = b.meta.name.strip_prefix("keda-hpa-") {
            c.attributes.push(Attr::new("keda_scaled_object", so));
        }
        let what = HeldFor::Reason {
            namespace: b.meta.namespace.clone(),
            hpa: b.meta.name.clone(),
            to: b.desired.to_string(),
        };
        self.st.held.push(Held { change: c, until: now + HOLD_NS, what });
        // The Event may have come first.
        let hpa_object = format!("hpa/{}", b.meta.name);
        let early = self.st.stashed.iter().position(|s| {
            s.change.namespace == b.meta.namespace
                && s.change.object == hpa_object
                && s.change.to == b.desired.to_string()
                && same_rescale(at, s.change.time_unix_nano)
        });
        if let Some(i) = early {
            let ev = self.st.stashed.remove(i).change;
            self.merge_reason(&ev);
        }
    }
}
