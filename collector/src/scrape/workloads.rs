//! `slo_gpu_workload_info`: which pod, and which service, each GPU works for.
//!
//! dcgm-exporter's series name a GPU (`UUID`, `gpu`, `Hostname`) and, at best, the pod the
//! kubelet says holds it; attribution ([`super::attribute`]) checks or fills that pod from
//! the Kubernetes watch, and the traces say which service each pod serves. Prometheus knows
//! neither, so this gauge carries both, one series per GPU (value 1), for a join on `UUID`:
//!
//! ```promql
//! DCGM_FI_DEV_GPU_UTIL * on(UUID) group_left(namespace, pod, service, model) slo_gpu_workload_info
//! ```
//!
//! Labels: `UUID`, `gpu` (the index), `node`, `namespace`, `pod`, `container`, `service`,
//! `model` (the latest a request from that pod named), `attribution` (how the pod was found,
//! the table in [`super::attribute`]). An idle or ambiguous GPU has an empty pod and
//! service. A GPU leaves after [`GPU_TTL`] without a scrape naming it, a pod's service after
//! [`POD_TTL`] without a request; both maps are bounded (docs/DASHBOARDS.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use slo_store::RequestRef;
use slo_store::SampleRecord;

use crate::pair_key::PairKey;

/// A GPU not named by any scrape for this long is dropped.
pub const GPU_TTL: Duration = Duration::from_secs(5 * 60);
/// A pod no request came from for this long loses its service.
pub const POD_TTL: Duration = Duration::from_secs(30 * 60);
/// Most GPUs, and most pods, remembered (about 200 bytes each).
pub const MAX_ENTRIES: usize = 50_000;

/// The metric's name.
pub const METRIC: &str = "slo_gpu_workload_info";

#[derive(Debug)]
struct Gpu {
    index: String,
    node: String,
    namespace: String,
    pod: String,
    container: String,
    attribution: String,
    seen: Instant,
}

#[derive(Debug)]
struct Served {
    service: String,
    model: String,
    seen: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    gpus: HashMap<String, Gpu>,
    /// (namespace, pod) -> what its requests said.
    pods: HashMap<(String, String), Served>,
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        self.gpus.retain(|_, g| now.duration_since(g.seen) < GPU_TTL);
        self.pods.retain(|_, p| now.duration_since(p.seen) < POD_TTL);
    }
}

/// GPU -> pod (from scrapes) and pod -> service (from requests); clones share them.
#[derive(Debug, Clone, Default)]
pub struct GpuWorkloads {
    inner: Arc<Mutex<Inner>>,
}

impl GpuWorkloads {
    /// The map, with its gauge registered in `registry` as [`METRIC`].
    pub fn new(registry: &mut Registry) -> Self {
        let w = GpuWorkloads::default();
        registry.register_collector(Box::new(Exposed(w.inner.clone())));
        w
    }

    /// Notes the GPUs that one scrape's DCGM samples name, with the pod attribution gave
    /// them (the first sample of each GPU stands for the rest: they share the identity).
    pub fn scraped(&self, samples: &[SampleRecord]) {
        let now = Instant::now();
        let mut done: HashSet<&str> = HashSet::new();
        let mut inner = self.inner.lock();
        for s in samples {
            if !s.metric.starts_with("DCGM_") || s.gpu.is_empty() || !done.insert(&s.gpu) {
                continue;
            }
            if !inner.gpus.contains_key(&s.gpu) && inner.gpus.len() >= MAX_ENTRIES {
                inner.expire(now);
                if inner.gpus.len() >= MAX_ENTRIES {
                    continue;
                }
            }
            let index = s.labels.iter().find(|a| a.key == "gpu").map(|a| a.value.clone()).unwrap_or_default();
            inner.gpus.insert(
                s.gpu.clone(),
                Gpu {
                    index,
                    node: s.node.clone(),
                    namespace: s.namespace.clone(),
                    pod: s.pod.clone(),
                    container: s.container.clone(),
                    attribution: s.attribution.clone(),
                    seen: now,
                },
            );
        }
    }

    /// A recorder for one batch of requests: each pod is looked up once per batch, and the
    /// shared map is touched once, when the batch is dropped.
    pub fn batch(&self) -> PodBatch<'_> {
        PodBatch { w: self, pods: HashMap::new() }
    }

    /// The series as they would be exposed now: one label set per GPU, sorted by UUID.
    pub fn series(&self) -> Vec<Vec<(&'static str, String)>> {
        let mut inner = self.inner.lock();
        inner.expire(Instant::now());
        let mut out: Vec<Vec<(&'static str, String)>> = inner
            .gpus
            .iter()
            .map(|(uuid, g)| {
                let served = (!g.pod.is_empty())
                    .then(|| inner.pods.get(&(g.namespace.as_str(), g.pod.as_str()) as &dyn PairKey))
                    .flatten();
                let (service, model) =
                    served.map_or((String::new(), String::new()), |s| (s.service.clone(), s.model.clone()));
                vec![
                    ("UUID", uuid.clone()),
                    ("gpu", g.index.clone()),
                    ("node", g.node.clone()),
                    ("namespace", g.namespace.clone()),
                    ("pod", g.pod.clone()),
                    ("container", g.container.clone()),
                    ("service", service),
                    ("model", model),
                    ("attribution", g.attribution.clone()),
                ]
            })
            .collect();
        out.sort_by(|a, b| a[0].1.cmp(&b[0].1));
        out
    }
}

/// Notes which service each pod's requests came from (see [`GpuWorkloads::batch`]).
#[derive(Debug)]
pub struct PodBatch<'a> {
    w: &'a GpuWorkloads,
    pods: HashMap<(String, String), (String, String)>,
}

impl PodBatch<'_> {
    /// Notes one request (those without a pod name are skipped).
    pub fn observe(&mut self, r: &RequestRef) {
        let Some(pod) = r.pod.filter(|p| !p.is_empty()) else { return };
        let namespace = r.namespace.unwrap_or("");
        if self.pods.contains_key(&(namespace, pod) as &dyn PairKey) {
            return;
        }
        self.pods.insert(
            (namespace.to_string(), pod.to_string()),
            (r.service.to_string(), r.model.unwrap_or("").to_string()),
        );
    }
}

impl Drop for PodBatch<'_> {
    fn drop(&mut self) {
        if self.pods.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.w.inner.lock();
        for (key, (service, model)) in self.pods.drain() {
            if !inner.pods.contains_key(&key) && inner.pods.len() >= MAX_ENTRIES {
                inner.expire(now);
                if inner.pods.len() >= MAX_ENTRIES {
                    continue;
                }
            }
            inner.pods.insert(key, Served { service, model, seen: now });
        }
    }
}

/// The gauge, encoded from the map at each read of `/metrics`.
#[derive(Debug)]
struct Exposed(Arc<Mutex<Inner>>);

impl prometheus_client::collector::Collector for Exposed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = GpuWorkloads { inner: self.0.clone() }.series();
        let mut metric = encoder.encode_descriptor(
            METRIC,
            "the pod and service each GPU works for, as slo attributed it (1 per GPU; join on UUID)",
            None,
            MetricType::Gauge,
        )?;
        for labels in &series {
            let family = metric.encode_family(labels)?;
            ConstGauge::new(1i64).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use slo_store::Attr;
    use slo_store::Request;

    use super::*;

    fn dcgm(metric: &str, uuid: &str, gpu: &str, pod: &str, attribution: &str) -> SampleRecord {
        SampleRecord {
            metric: metric.into(),
            gpu: uuid.into(),
            node: "gpu-node-1".into(),
            namespace: if pod.is_empty() { "" } else { "inference" }.into(),
            pod: pod.into(),
            attribution: attribution.into(),
            labels: vec![Attr::new("gpu", gpu), Attr::new("UUID", uuid)],
            ..Default::default()
        }
    }

    fn request<'a>(service: &'a str, pod: &'a str, model: &'a str) -> RequestRef<'a> {
        Request { service, namespace: Some("inference"), pod: Some(pod), model: Some(model), ..Default::default() }
    }

    fn scrape(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    #[test]
    fn each_gpu_names_its_pod_and_the_service_its_requests_came_from() {
        let mut registry = Registry::default();
        let w = GpuWorkloads::new(&mut registry);
        w.scraped(&[
            dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU-a", "0", "llama-0", "allocation"),
            dcgm("DCGM_FI_DEV_SM_CLOCK", "GPU-a", "0", "llama-0", "allocation"),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU-b", "1", "", "idle"),
            dcgm("vllm:num_requests_waiting", "GPU-c", "", "llama-0", "target"),
        ]);
        {
            let mut b = w.batch();
            b.observe(&request("llama-70b", "llama-0", "meta/llama-70b"));
            b.observe(&request("llama-70b", "llama-0", "meta/llama-70b"));
            b.observe(&Request { service: "no-pod", ..Default::default() });
        }
        let text = scrape(&registry);
        assert!(
            text.contains(
                "slo_gpu_workload_info{UUID=\"GPU-a\",gpu=\"0\",node=\"gpu-node-1\",namespace=\"inference\",\
                 pod=\"llama-0\",container=\"\",service=\"llama-70b\",model=\"meta/llama-70b\",attribution=\"allocation\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("UUID=\"GPU-b\",gpu=\"1\""), "{text}");
        assert!(!text.contains("GPU-c"), "only DCGM series name GPUs: {text}");
        assert_eq!(w.series().len(), 2);
    }

    #[test]
    fn a_gpu_moves_with_its_latest_scrape_and_the_maps_stay_bounded() {
        let w = GpuWorkloads::default();
        w.scraped(&[dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU-a", "0", "old-pod", "exporter_labels")]);
        w.scraped(&[dcgm("DCGM_FI_DEV_GPU_UTIL", "GPU-a", "0", "new-pod", "exporter_labels")]);
        let series = w.series();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0][4], ("pod", "new-pod".to_string()));
        let many: Vec<SampleRecord> =
            (0..MAX_ENTRIES + 10).map(|i| dcgm("DCGM_FI_DEV_GPU_UTIL", &format!("GPU-{i}"), "0", "", "idle")).collect();
        w.scraped(&many);
        assert_eq!(w.series().len(), MAX_ENTRIES);
    }
}
