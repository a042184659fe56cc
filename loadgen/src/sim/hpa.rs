//! The HorizontalPodAutoscaler's sync loop.

use super::cluster::{HPA_METRIC, HPA_SYNC, HPA_TOLERANCE, SEC};
use super::{Ev, Sim};

impl Sim {
    /// The HPA's sync loop: average in-flight requests per ready pod against the target,
    /// with tolerance, stabilization windows and a scale-down rate limit.
    pub(crate) fn on_hpa_sync(&mut self, m: usize) {
        self.at(self.now + HPA_SYNC, Ev::HpaSync(m));
        let Some(h) = self.models[m].hpa.clone() else { return };
        let ready: Vec<usize> = self.models[m].pods.iter().copied().filter(|&p| self.pods[p].is_serving()).collect();
        let current = self.models[m].replicas;
        let sample = if ready.is_empty() {
            0.0
        } else {
            ready.iter().map(|&p| self.pods[p].engine.in_flight() as f64).sum::<f64>() / ready.len() as f64
        };
        // The adapter serves the metric averaged over the last minute (four syncs).
        let samples = &mut self.models[m].hpa_samples;
        samples.push_back(sample);
        if samples.len() > 4 {
            samples.pop_front();
        }
        let metric = samples.iter().sum::<f64>() / samples.len() as f64;
        let full = samples.len() == 4;
        self.models[m].hpa_metric = metric;
        if !full {
            // The adapter has less than a minute of data yet: no decision on it.
            self.emit_hpa(m);
            return;
        }
        let ratio = metric / h.target;
        let base = ready.len().max(1) as f64;
        let raw = if (ratio - 1.0).abs() <= HPA_TOLERANCE || ready.is_empty() {
            current
        } else {
            (base * ratio).ceil() as u32
        };
        let rec = raw.clamp(h.min, h.max);
        let now = self.now;
        let st = &mut self.models[m];
        st.hpa_recs.push_back((now, rec));
        let keep = h.scale_down_window.as_nanos_i64().max(h.scale_up_window.as_nanos_i64());
        while st.hpa_recs.front().is_some_and(|&(t, _)| t < now - keep) {
            st.hpa_recs.pop_front();
        }
        let down_floor = st
            .hpa_recs
            .iter()
            .filter(|&&(t, _)| t >= now - h.scale_down_window.as_nanos_i64())
            .map(|&(_, r)| r)
            .max()
            .unwrap_or(rec);
        let up_cap = st
            .hpa_recs
            .iter()
            .filter(|&&(t, _)| t >= now - h.scale_up_window.as_nanos_i64())
            .map(|&(_, r)| r)
            .min()
            .unwrap_or(rec);
        let mut desired = if rec < current {
            down_floor.min(current)
        } else if rec > current {
            up_cap.max(current)
        } else {
            current
        };
        if desired < current
            && let Some(per_min) = h.scale_down_pods_per_minute
        {
            let removed: u32 = st.hpa_removed.iter().filter(|&&(t, _)| t >= now - 60 * SEC).map(|&(_, k)| k).sum();
            desired = desired.max(current.saturating_sub(per_min.saturating_sub(removed)));
        }
        if desired > current {
            // Kubernetes' default scale-up policy: at most double, or +4 pods, per 15 s.
            desired = desired.min((current * 2).max(current + 4));
        }
        if desired != current {
            if desired < current {
                st.hpa_removed.push_back((now, current - desired));
            }
            while st.hpa_removed.front().is_some_and(|&(t, _)| t < now - 60 * SEC) {
                st.hpa_removed.pop_front();
            }
            st.replicas = desired;
            st.deploy_changes += 1;
            st.hpa_last_scale = Some(now);
            let reason = if desired > current {
                format!("pods metric {HPA_METRIC} above target")
            } else {
                "All metrics below target".to_string()
            };
            let name = self.scenario.models[m].name.clone();
            self.event(
                "HorizontalPodAutoscaler",
                &name,
                "SuccessfulRescale",
                &format!("New size: {desired}; reason: {reason}"),
                false,
                "horizontal-pod-autoscaler",
            );
            if let Some(causal) = self.models[m].hpa_pending_truth.take() {
                let kind = if desired < current { "scale_down" } else { "scale_up" };
                self.push_truth(kind, format!("hpa/{name}"), causal, Some(format!("replicas {current}->{desired}")));
            }
            self.reconcile_deployment(m);
        }
        self.emit_hpa(m);
    }
}
