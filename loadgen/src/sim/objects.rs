//! The simulated cluster as Kubernetes objects (`serde_json::Value`s shaped
//! like the API server's): Nodes, Pods, ReplicaSets, Deployments, HPAs and
//! Events, re-emitted whenever they change. Events are aggregated the way the
//! client-go recorder does (same object, reason and message -> `count` + 1)
//! and published in both the core/v1 and the events.k8s.io/v1 shape with the
//! same uid, as one object seen through two APIs.

use serde_json::{Value, json};

use super::cluster::{HPA_METRIC, PodPhase};
use super::{ObjectChange, Sim, names};

/// Kubernetes quantity for a non-negative number (`19500m`, `20`).
fn quantity(v: f64) -> String {
    let milli = (v * 1000.0).round() as i64;
    if milli % 1000 == 0 { (milli / 1000).to_string() } else { format!("{milli}m") }
}

impl Sim {
    fn apply(&mut self, key: String, obj: Value) {
        if self.emitted.get(&key) == Some(&obj) {
            return;
        }
        self.emitted.insert(key, obj.clone());
        self.out.objects.push(ObjectChange::Apply(obj));
    }

    fn pod_ip(&self) -> &'static str {
        if self.metrics_port.is_some() { "127.0.0.1" } else { "10.0.0.1" }
    }

    pub(crate) fn emit_namespace(&mut self, ns: &str) {
        let t = self.rfc3339(-30 * 86_400_000_000_000);
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": names::uid(&format!("Namespace/{ns}"), 0), "creationTimestamp": t,
                "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        self.apply(format!("ns/{ns}"), obj);
    }

    pub(crate) fn emit_node(&mut self, n: usize) {
        let node = &self.nodes[n];
        let pool = &self.scenario.pools[node.pool];
        let created = self.rfc3339(node.created);
        let now = self.rfc3339(self.now());
        let (status, reason, message) = if node.lost && !node.ready {
            ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        } else if node.ready {
            ("True", "KubeletReady", "kubelet is posting ready status")
        } else {
            ("False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false")
        };
        let taints = if node.lost && !node.ready {
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now},
                   {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now}])
        } else {
            json!([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
        };
        let gpus = pool.gpus_per_node.to_string();
        let product = pool.gpu_model.replace(' ', "-");
        let obj = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "uid": node.uid, "creationTimestamp": created,
                "labels": {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": "p5.48xlarge", "slo.dev/node-pool": pool.name,
                    "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product, "nvidia.com/gpu.count": gpus}},
            "spec": {"taints": taints, "providerID": format!("sim:///{}", node.name)},
            "status": {
                "capacity": {"cpu": "192", "memory": "2063937144Ki", "nvidia.com/gpu": gpus, "pods": "110", "ephemeral-storage": "3750000000Ki"},
                "allocatable": {"cpu": "191450m", "memory": "2052187256Ki", "nvidia.com/gpu": gpus, "pods": "110", "ephemeral-storage": "3456000000Ki"},
                "conditions": [
                    {"type": "MemoryPressure", "status": if status == "Unknown" {"Unknown"} else {"False"}, "reason": "KubeletHasSufficientMemory", "lastHeartbeatTime": created, "lastTransitionTime": created},
                    {"type": "Ready", "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now}
                ],
                "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", node.pool, n + 10)}, {"type": "Hostname", "address": node.name}],
                "nodeInfo": {"kubeletVersion": "v1.31.4", "containerRuntimeVersion": "containerd://1.7.23", "kernelVersion": "6.1.0-28-amd64",
                    "osImage": "Debian GNU/Linux 12 (bookworm)", "operatingSystem": "linux", "architecture": "amd64",
                    "machineID": names::uid(&node.name, 7).replace('-', ""), "systemUUID": names::uid(&node.name, 8),
                    "bootID": names::uid(&node.name, 9), "kubeProxyVersion": "", "containerRuntime": "containerd"}
            }
        });
        let key = format!("node/{}", node.name);
        self.apply(key, obj);
    }

    /// The dcgm-exporter DaemonSet pod of a node, annotated for scraping.
    pub(crate) fn emit_dcgm_pod(&mut self, n: usize) {
        let node = self.nodes[n].name.clone();
        let name = format!("nvidia-dcgm-exporter-{}", &names::template_hash(&[&node, "dcgm"])[..5]);
        let t = self.rfc3339(self.nodes[n].created);
        let port = self.metrics_port.unwrap_or(9400).to_string();
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "gpu-operator", "uid": names::uid(&name, 1), "creationTimestamp": t,
                "labels": {"app": "nvidia-dcgm-exporter", "app.kubernetes.io/name": "dcgm-exporter"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": format!("/nodes/{node}/metrics")},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "nvidia-dcgm-exporter", "uid": names::uid("DaemonSet/nvidia-dcgm-exporter", 0), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "nvidia-dcgm-exporter", "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
                "ports": [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": self.pod_ip(), "hostIP": format!("10.0.{}.{}", self.nodes[n].pool, n + 10), "startTime": t,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}],
                "containerStatuses": [{"name": "nvidia-dcgm-exporter", "ready": true, "restartCount": 0, "started": true, "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04", "imageID": "", "state": {"running": {"startedAt": t}}}]}
        });
        self.apply(format!("pod/gpu-operator/{name}"), obj);
    }

    pub(crate) fn emit_pod(&mut self, p: usize) {
        let pod = &self.pods[p];
        let m = pod.model;
        let model = &self.scenario.models[m];
        let rs = &self.replicasets[pod.rs];
        let ns = &self.scenario.namespace;
        let created = self.rfc3339(pod.created);
        let node_ready = pod.node.is_none_or(|n| self.nodes[n].ready);
        let ready = pod.phase == PodPhase::Ready && node_ready;
        let cond = |b: bool| if b { "True" } else { "False" };
        let t = |x: Option<i64>| x.map(|v| self.rfc3339(v));
        let now = self.rfc3339(self.now());
        let scheduled = pod.scheduled_at.is_some();
        let mut conditions = vec![if scheduled {
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": t(pod.scheduled_at)})
        } else if pod.failed_scheduling > 0 {
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/0 nodes are available: Insufficient nvidia.com/gpu.", "lastTransitionTime": now})
        } else {
            json!({"type": "PodScheduled", "status": "False", "lastTransitionTime": created})
        }];
        if scheduled {
            conditions
                .push(json!({"type": "Initialized", "status": "True", "lastTransitionTime": t(pod.scheduled_at)}));
            let since = if ready { t(pod.ready_since) } else { Some(now.clone()) };
            conditions.push(json!({"type": "ContainersReady", "status": cond(ready), "lastTransitionTime": since}));
            conditions.push(json!({"type": "Ready", "status": cond(ready), "lastTransitionTime": since}));
        }
        let state = match pod.phase {
            PodPhase::Pending | PodPhase::Pulling => json!({"waiting": {"reason": "ContainerCreating"}}),
            PodPhase::BackOff => json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off restarting failed container=vllm pod={}_{ns}({})", pod.name, pod.uid)}}),
            _ => json!({"running": {"startedAt": t(pod.started)}}),
        };
        let last_state = match pod.last_oom {
            Some(at) => {
                json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": t(pod.started), "finishedAt": self.rfc3339(at)}})
            }
            None => json!({}),
        };
        let phase = match pod.phase {
            PodPhase::Pending | PodPhase::Pulling => "Pending",
            _ => "Running",
        };
        let node = pod.node.map(|n| self.nodes[n].name.clone());
        let host_ip = pod.node.map(|n| format!("10.0.{}.{}", self.nodes[n].pool, n + 10));
        let gpus = model.gpus_per_pod.to_string();
        let port = self.metrics_port.unwrap_or(8000).to_string();
        let mut metadata = json!({"name": pod.name, "namespace": ns, "uid": pod.uid, "creationTimestamp": created,
            "generateName": format!("{}-", rs.name),
            "labels": {"app": model.name, "app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": model.name, "pod-template-hash": rs.hash},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": format!("/pods/{ns}/{}/metrics", pod.name)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.name, "uid": rs.uid, "controller": true, "blockOwnerDeletion": true}]});
        if let Some(d) = pod.deletion {
            metadata["deletionTimestamp"] = json!(self.rfc3339(d));
            metadata["deletionGracePeriodSeconds"] = json!(30);
        }
        let mut status = json!({"phase": phase, "conditions": conditions, "qosClass": "Guaranteed",
            "containerStatuses": [{"name": "vllm", "image": rs.image, "imageID": "", "ready": ready, "started": matches!(pod.phase, PodPhase::Loading | PodPhase::Ready | PodPhase::Terminating),
                "restartCount": pod.restarts, "state": state, "lastState": last_state}]});
        if let Some(h) = host_ip {
            status["hostIP"] = json!(h);
            status["podIP"] = json!(self.pod_ip());
            status["startTime"] = json!(t(pod.scheduled_at));
        }
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "schedulerName": "default-scheduler", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "vllm", "image": rs.image, "args": ["--model", model.model, "--max-num-seqs", model.server.max_num_seqs.to_string()],
                    "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 5},
                    "resources": {"limits": {"nvidia.com/gpu": gpus, "memory": "160Gi", "cpu": "16"}, "requests": {"nvidia.com/gpu": gpus, "memory": "160Gi", "cpu": "16"}}}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
            "status": status
        });
        let key = format!("pod/{ns}/{}", pod.name);
        self.apply(key, obj);
    }

    pub(crate) fn emit_replicaset(&mut self, r: usize) {
        let rs = &self.replicasets[r];
        let m = rs.model;
        let model = &self.scenario.models[m];
        let pods: Vec<&super::Pod> =
            self.models[m].pods.iter().map(|&p| &self.pods[p]).filter(|p| p.rs == r && p.is_live()).collect();
        let ready = pods.iter().filter(|p| p.is_serving()).count();
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs.name, "namespace": self.scenario.namespace, "uid": rs.uid, "creationTimestamp": self.rfc3339(rs.created),
                "labels": {"app": model.name, "pod-template-hash": rs.hash},
                "annotations": {"deployment.kubernetes.io/revision": rs.revision.to_string(), "deployment.kubernetes.io/desired-replicas": self.models[m].replicas.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name, "uid": names::uid(&format!("Deployment/{}", model.name), 0), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": rs.replicas, "selector": {"matchLabels": {"app": model.name, "pod-template-hash": rs.hash}},
                "template": {"metadata": {"labels": {"app": model.name, "pod-template-hash": rs.hash}},
                    "spec": {"containers": [{"name": "vllm", "image": rs.image, "args": ["--model", model.model]}]}}},
            "status": {"replicas": pods.len(), "fullyLabeledReplicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1}
        });
        let key = format!("rs/{}", rs.name);
        self.apply(key, obj);
    }

    pub(crate) fn emit_deployment(&mut self, m: usize) {
        let st = &self.models[m];
        let model = &self.scenario.models[m];
        let Some(&newest) = st.replicasets.last() else { return };
        let rs = &self.replicasets[newest];
        let live: Vec<&super::Pod> = st.pods.iter().map(|&p| &self.pods[p]).filter(|p| p.is_live()).collect();
        let updated = live.iter().filter(|p| p.rs == newest).count();
        let ready = live.iter().filter(|p| p.is_serving()).count();
        let done = updated as u32 == st.replicas && live.len() == updated && ready as u32 >= st.replicas;
        let generation = st.replicasets.len() as u64 * 1000 + st.deploy_changes;
        let t = self.rfc3339(self.now());
        let progressing = if done {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{}\" has successfully progressed.", rs.name), "lastUpdateTime": t})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": format!("ReplicaSet \"{}\" is progressing.", rs.name), "lastUpdateTime": t})
        };
        let available = ready as u32 >= st.replicas.saturating_sub(st.replicas / 4);
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": model.name, "namespace": self.scenario.namespace, "uid": names::uid(&format!("Deployment/{}", model.name), 0),
                "generation": generation, "creationTimestamp": self.rfc3339(-30 * 86_400_000_000_000),
                "labels": {"app": model.name}, "annotations": {"deployment.kubernetes.io/revision": rs.revision.to_string()}},
            "spec": {"replicas": st.replicas, "selector": {"matchLabels": {"app": model.name}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": model.name}},
                    "spec": {"containers": [{"name": "vllm", "image": rs.image, "args": ["--model", model.model]}]}}},
            "status": {"observedGeneration": generation, "replicas": live.len(), "updatedReplicas": updated, "readyReplicas": ready,
                "availableReplicas": ready, "unavailableReplicas": (st.replicas as usize).saturating_sub(ready),
                "conditions": [{"type": "Available", "status": if available {"True"} else {"False"},
                    "reason": if available {"MinimumReplicasAvailable"} else {"MinimumReplicasUnavailable"}, "lastUpdateTime": t}, progressing]}
        });
        let key = format!("deploy/{}", model.name);
        self.apply(key, obj);
    }

    pub(crate) fn emit_hpa(&mut self, m: usize) {
        let st = &self.models[m];
        let Some(h) = &st.hpa else { return };
        let name = &self.scenario.models[m].name;
        let down_policies = match h.scale_down_pods_per_minute {
            Some(k) => json!([{"type": "Pods", "value": k, "periodSeconds": 60}]),
            None => json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        };
        let obj = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": self.scenario.namespace, "uid": names::uid(&format!("HorizontalPodAutoscaler/{name}"), 0),
                "creationTimestamp": self.rfc3339(-30 * 86_400_000_000_000)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": h.min, "maxReplicas": h.max,
                "metrics": [{"type": "Pods", "pods": {"metric": {"name": HPA_METRIC}, "target": {"type": "AverageValue", "averageValue": quantity(h.target)}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": h.scale_down_window.0.as_secs(), "selectPolicy": "Max", "policies": down_policies},
                    "scaleUp": {"stabilizationWindowSeconds": h.scale_up_window.0.as_secs(), "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
            "status": {"currentReplicas": st.replicas, "desiredReplicas": st.replicas,
                "lastScaleTime": st.hpa_last_scale.map(|t| self.rfc3339(t)),
                "currentMetrics": [{"type": "Pods", "pods": {"metric": {"name": HPA_METRIC}, "current": {"averageValue": quantity(st.hpa_metric)}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                    {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}]}
        });
        self.apply(format!("hpa/{name}"), obj);
    }

    /// Records an Event about a namespaced object.
    pub(crate) fn event(
        &mut self,
        kind: &str,
        name: &str,
        reason: &str,
        message: &str,
        warning: bool,
        component: &str,
    ) {
        let ns = self.scenario.namespace.clone();
        self.record_event(kind, &ns, name, reason, message, warning, component);
    }

    /// Records an Event about a cluster-scoped object (it lives in `default`).
    pub(crate) fn event_cluster(
        &mut self,
        kind: &str,
        name: &str,
        reason: &str,
        message: &str,
        warning: bool,
        component: &str,
    ) {
        self.record_event(kind, "default", name, reason, message, warning, component);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_event(
        &mut self,
        kind: &str,
        ns: &str,
        name: &str,
        reason: &str,
        message: &str,
        warning: bool,
        component: &str,
    ) {
        if self.quiet {
            return;
        }
        let key = format!("{kind}/{ns}/{name}/{reason}/{message}");
        let now = self.now();
        let entry = self.event_counts.entry(key).or_insert_with(|| {
            let seq = self.uid_seq + 1;
            (format!("{name}.{:016x}", names::fnv(&[name, reason, &seq.to_string()]) >> 4), 0, now, seq)
        });
        entry.1 += 1;
        let (ev_name, count, first, seq) = entry.clone();
        self.uid_seq += 1;
        let (api_version, obj_uid, involved_ns) = match kind {
            "Pod" => (
                "v1",
                self.pods.iter().rev().find(|p| p.name == name).map(|p| p.uid.clone()).unwrap_or_default(),
                Some(ns),
            ),
            "Node" => {
                ("v1", self.nodes.iter().find(|n| n.name == name).map(|n| n.uid.clone()).unwrap_or_default(), None)
            }
            "ReplicaSet" => (
                "apps/v1",
                self.replicasets.iter().find(|r| r.name == name).map(|r| r.uid.clone()).unwrap_or_default(),
                Some(ns),
            ),
            "Deployment" => ("apps/v1", names::uid(&format!("Deployment/{name}"), 0), Some(ns)),
            _ => ("autoscaling/v2", names::uid(&format!("{kind}/{name}"), 0), Some(ns)),
        };
        let mut involved = json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": obj_uid});
        if let Some(n) = involved_ns {
            involved["namespace"] = json!(n);
        }
        let uid = names::uid(&ev_name, seq);
        let first_t = self.rfc3339(first);
        let last_t = self.rfc3339(now);
        let typ = if warning { "Warning" } else { "Normal" };
        let host = if component == "kubelet" {
            self.pods.iter().rev().find(|p| p.name == name).and_then(|p| p.node).map(|n| self.nodes[n].name.clone())
        } else {
            None
        };
        let mut source = json!({"component": component});
        if let Some(h) = &host {
            source["host"] = json!(h);
        }
        let core = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": ev_name, "namespace": ns, "uid": uid, "creationTimestamp": first_t},
            "involvedObject": involved, "reason": reason, "message": message, "type": typ, "count": count,
            "firstTimestamp": first_t, "lastTimestamp": last_t, "source": source,
            "reportingComponent": component, "reportingInstance": host.clone().unwrap_or_default(), "eventTime": null});
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": ev_name, "namespace": ns, "uid": uid, "creationTimestamp": first_t},
            "regarding": involved, "reason": reason, "note": message, "type": typ,
            "reportingController": component, "reportingInstance": host.unwrap_or_default(),
            "deprecatedCount": count, "deprecatedFirstTimestamp": first_t, "deprecatedLastTimestamp": last_t,
            "deprecatedSource": {"component": component}});
        self.out.objects.push(ObjectChange::Apply(core));
        self.out.objects.push(ObjectChange::Apply(v1));
    }
}
