//! Finished requests as OpenTelemetry spans, shaped like a real fleet's: a
//! gateway server span (`service.name = inference-gateway`) and, below it, the
//! model server's `llm_request` span with the attributes vLLM's tracing sets
//! (`gen_ai.*`, `gen_ai.latency.*`) and the `k8s.*` resource attributes the
//! OpenTelemetry Operator or the k8sattributes processor would add.
//!
//! Ids are derived from the seed and the request id, so the same run gives
//! the same traces. A request that came with a W3C `traceparent` joins the
//! caller's trace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::sim::{PodInfo, RequestRecord};

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn time(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

/// Builds spans from request records; caches one `Resource` per pod.
pub(crate) struct SpanMaker {
    seed: u64,
    namespace: String,
    models: Vec<(String, String)>,
    image_tag: String,
    gateway: Resource,
    pods: HashMap<String, Resource>,
    gateway_scope: InstrumentationScope,
    vllm_scope: InstrumentationScope,
}

impl std::fmt::Debug for SpanMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanMaker").field("pods", &self.pods.len()).finish()
    }
}

impl SpanMaker {
    pub(crate) fn new(seed: u64, scenario: &crate::scenario::Scenario) -> SpanMaker {
        let gateway = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "inference-gateway"),
                KeyValue::new("service.version", "1.32.2"),
                KeyValue::new("k8s.namespace.name", "gateway"),
                KeyValue::new("k8s.deployment.name", "inference-gateway"),
                KeyValue::new("k8s.pod.name", "inference-gateway-6c9f7d8b5-qx2lp"),
                KeyValue::new("telemetry.sdk.name", "opentelemetry"),
                KeyValue::new("telemetry.sdk.language", "cpp"),
            ])
            .build();
        let tag = scenario.models.first().map(|m| m.image.rsplit(':').next().unwrap_or("latest").to_string());
        SpanMaker {
            seed,
            namespace: scenario.namespace.clone(),
            models: scenario.models.iter().map(|m| (m.name.clone(), m.model.clone())).collect(),
            image_tag: tag.unwrap_or_default(),
            gateway,
            pods: HashMap::new(),
            gateway_scope: InstrumentationScope::builder("envoy").with_version("1.32.2").build(),
            vllm_scope: InstrumentationScope::builder("vllm.tracing").with_version("0.11.0").build(),
        }
    }

    fn pod_resource(&mut self, pod: &PodInfo) -> Resource {
        if let Some(r) = self.pods.get(&pod.pod) {
            return r.clone();
        }
        let r = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", pod.deployment.clone()),
                KeyValue::new("service.version", self.image_tag.clone()),
                KeyValue::new("service.instance.id", pod.uid.clone()),
                KeyValue::new("k8s.namespace.name", pod.namespace.clone()),
                KeyValue::new("k8s.deployment.name", pod.deployment.clone()),
                KeyValue::new("k8s.replicaset.name", pod.replicaset.clone()),
                KeyValue::new("k8s.pod.name", pod.pod.clone()),
                KeyValue::new("k8s.pod.uid", pod.uid.clone()),
                KeyValue::new("k8s.node.name", pod.node.clone()),
                KeyValue::new("k8s.container.name", "vllm"),
                KeyValue::new("host.name", pod.pod.clone()),
                KeyValue::new("process.runtime.name", "cpython"),
                KeyValue::new("telemetry.sdk.name", "opentelemetry"),
                KeyValue::new("telemetry.sdk.language", "python"),
                KeyValue::new("telemetry.sdk.version", "1.38.0"),
            ])
            .build();
        self.pods.insert(pod.pod.clone(), r.clone());
        r
    }

    /// Forgets cached resources of pods that are gone (bounded memory in long runs).
    pub(crate) fn retain_pods(&mut self, alive: impl Fn(&str) -> bool) {
        self.pods.retain(|k, _| alive(k));
    }

    /// The gateway span and, when the request reached a model server, its span.
    pub(crate) fn spans(&mut self, r: &RequestRecord) -> (SpanData, Option<(Arc<PodInfo>, Resource, SpanData)>) {
        let h = splitmix(self.seed ^ r.id.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (trace_id, client_parent) = match r.trace_parent {
            Some((t, p)) => (t, Some(p)),
            None => ((u128::from(h) << 64) | u128::from(splitmix(h)), None),
        };
        let gw_id = splitmix(h ^ 1) | 1;
        let srv_id = splitmix(h ^ 2) | 1;
        let ctx = |span: u64| {
            SpanContext::new(
                TraceId::from_bytes(trace_id.to_be_bytes()),
                SpanId::from_bytes(span.to_be_bytes()),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            )
        };
        let (deployment, model) = self.models.get(r.model).cloned().unwrap_or_default();
        let path = if r.chat { "/v1/chat/completions" } else { "/v1/completions" };
        let body_in = i64::from(r.prompt_tokens) * 4 + 180;
        let body_out = i64::from(r.output_tokens) * 4 + 320;
        let peer = r.pod.as_ref().map(|_| "10.0.0.1").unwrap_or("");
        let mut gw_attrs = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", path),
            KeyValue::new("url.path", path),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("server.address", format!("{deployment}.{}.svc.cluster.local", self.namespace)),
            KeyValue::new("server.port", 8000),
            KeyValue::new("client.address", "10.8.0.1"),
            KeyValue::new("user_agent.original", "OpenAI/Python 1.54.3"),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("http.request.body.size", body_in),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
            KeyValue::new(
                "upstream_cluster",
                format!("outbound|8000||{deployment}.{}.svc.cluster.local", self.namespace),
            ),
            KeyValue::new("network.peer.address", peer),
            KeyValue::new("network.peer.port", 8000),
        ];
        let status = if r.status >= 500 {
            gw_attrs.push(KeyValue::new("error.type", r.status.to_string()));
            Status::error(match r.status {
                503 => "no healthy upstream",
                504 => "upstream request timeout",
                _ => "upstream connect error or disconnect/reset before headers",
            })
        } else {
            gw_attrs.push(KeyValue::new("http.response.body.size", body_out));
            Status::Unset
        };
        let gateway = SpanData {
            span_context: ctx(gw_id),
            parent_span_id: client_parent.map(|p| SpanId::from_bytes(p.to_be_bytes())).unwrap_or(SpanId::INVALID),
            parent_span_is_remote: client_parent.is_some(),
            span_kind: SpanKind::Server,
            name: format!("POST {path}").into(),
            start_time: time(r.start),
            end_time: time(r.end),
            attributes: gw_attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.gateway_scope.clone(),
        };
        let server = match (&r.server, &r.pod) {
            (Some(s), Some(pod)) => {
                let secs = |a: i64, b: i64| (b - a).max(0) as f64 / 1e9;
                let attrs = vec![
                    KeyValue::new("gen_ai.request.id", format!("chatcmpl-{:016x}", splitmix(h ^ 3))),
                    KeyValue::new("gen_ai.response.model", model.clone()),
                    KeyValue::new("gen_ai.request.max_tokens", i64::from(r.output_tokens)),
                    KeyValue::new("gen_ai.request.temperature", 0.7),
                    KeyValue::new("gen_ai.request.top_p", 1.0),
                    KeyValue::new("gen_ai.request.n", 1),
                    KeyValue::new("gen_ai.usage.num_sequences", 1),
                    KeyValue::new("gen_ai.usage.prompt_tokens", i64::from(r.prompt_tokens)),
                    KeyValue::new("gen_ai.usage.completion_tokens", i64::from(r.output_tokens)),
                    KeyValue::new("gen_ai.latency.time_in_queue", secs(s.arrival, s.scheduled)),
                    KeyValue::new("gen_ai.latency.time_to_first_token", secs(s.arrival, s.first_token)),
                    KeyValue::new("gen_ai.latency.e2e", secs(s.arrival, s.finish)),
                    KeyValue::new("gen_ai.latency.time_in_scheduler", secs(s.arrival, s.scheduled) * 0.01),
                    KeyValue::new("gen_ai.latency.time_in_model_prefill", secs(s.scheduled, s.first_token)),
                    KeyValue::new("gen_ai.latency.time_in_model_decode", secs(s.first_token, s.finish)),
                    KeyValue::new("gen_ai.latency.time_in_model_inference", secs(s.scheduled, s.finish)),
                ];
                let span = SpanData {
                    span_context: ctx(srv_id),
                    parent_span_id: SpanId::from_bytes(gw_id.to_be_bytes()),
                    parent_span_is_remote: true,
                    span_kind: SpanKind::Server,
                    name: "llm_request".into(),
                    start_time: time(s.arrival),
                    end_time: time(s.finish),
                    attributes: attrs,
                    dropped_attributes_count: 0,
                    events: SpanEvents::default(),
                    links: SpanLinks::default(),
                    status: Status::Unset,
                    instrumentation_scope: self.vllm_scope.clone(),
                };
                let res = self.pod_resource(pod);
                Some((pod.clone(), res, span))
            }
            _ => None,
        };
        (gateway, server)
    }

    pub(crate) fn gateway_resource(&self) -> &Resource {
        &self.gateway
    }
}
