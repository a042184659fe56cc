//! The Deployment controller (rolling updates) and the ReplicaSet controller.

use super::{PodPhase, Sim};

impl Sim {
    /// The Deployment controller: desired replicas onto the newest ReplicaSet, rolling update
    /// with maxSurge 25% (rounded up) and maxUnavailable 25% (rounded down).
    pub(crate) fn reconcile_deployment(&mut self, m: usize) {
        let d = self.models[m].replicas;
        let rss = self.models[m].replicasets.clone();
        let Some(&new) = rss.last() else { return };
        let old: Vec<usize> =
            rss[..rss.len() - 1].iter().copied().filter(|&r| self.replicasets[r].replicas > 0).collect();
        if old.is_empty() {
            self.scale_rs(new, d);
        } else {
            let surge = d.div_ceil(4).max(1);
            let unavailable = d / 4;
            let total: u32 = rss.iter().map(|&r| self.replicasets[r].replicas).sum();
            let cur = self.replicasets[new].replicas;
            if cur < d && d + surge > total {
                self.scale_rs(new, (cur + (d + surge - total)).min(d));
            }
            let ready = self.models[m].pods.iter().filter(|&&p| self.pods[p].is_serving()).count() as u32;
            let mut removable = ready.saturating_sub(d.saturating_sub(unavailable));
            // Old pods that are not ready can always go.
            for &r in &old {
                let unready = self.models[m]
                    .pods
                    .iter()
                    .filter(|&&p| self.pods[p].rs == r && self.pods[p].is_live() && !self.pods[p].is_serving())
                    .count() as u32;
                removable += unready;
            }
            for r in old {
                if removable == 0 {
                    break;
                }
                let cur = self.replicasets[r].replicas;
                let cut = cur.min(removable);
                removable -= cut;
                self.scale_rs(r, cur - cut);
            }
        }
        self.emit_deployment(m);
    }

    fn scale_rs(&mut self, r: usize, replicas: u32) {
        let before = self.replicasets[r].replicas;
        if before != replicas {
            self.replicasets[r].replicas = replicas;
            let m = self.replicasets[r].model;
            let dep = self.scenario.models[m].name.clone();
            let rs = self.replicasets[r].name.clone();
            let verb = if replicas > before { "up" } else { "down" };
            self.event(
                "Deployment",
                &dep,
                "ScalingReplicaSet",
                &format!("Scaled {verb} replica set {rs} from {before} to {replicas}"),
                false,
                "deployment-controller",
            );
            self.emit_replicaset(r);
        }
        self.reconcile_rs(r);
    }

    /// The ReplicaSet controller: create or delete pods to match replicas.
    pub(crate) fn reconcile_rs(&mut self, r: usize) {
        let m = self.replicasets[r].model;
        let mut live: Vec<usize> =
            self.models[m].pods.iter().copied().filter(|&p| self.pods[p].rs == r && self.pods[p].is_live()).collect();
        let want = self.replicasets[r].replicas as usize;
        while live.len() < want {
            let p = self.create_pod(r);
            live.push(p);
            self.try_schedule(p);
        }
        if live.len() > want {
            // Delete pending first, then not ready, then the newest.
            live.sort_by_key(|&p| {
                let pod = &self.pods[p];
                let rank = match pod.phase {
                    PodPhase::Pending => 0,
                    PodPhase::Ready if !pod.dead => 2,
                    _ => 1,
                };
                (rank, std::cmp::Reverse(pod.created), p)
            });
            let extra: Vec<usize> = live[..live.len() - want].to_vec();
            let rs = self.replicasets[r].name.clone();
            for p in extra {
                let name = self.pods[p].name.clone();
                self.event(
                    "ReplicaSet",
                    &rs,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                    false,
                    "replicaset-controller",
                );
                self.delete_pod(p);
            }
        }
    }
}
