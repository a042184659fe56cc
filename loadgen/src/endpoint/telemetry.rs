//! A client span per request, started at the request's intended send time
//! and ended when its measured latency ends, so the span's duration is the
//! latency the report counts. Its W3C `traceparent` always goes out with the
//! request (the server's spans join the trace); with `--otlp` the spans are
//! also exported (batch processor on the tokio runtime, service.name
//! `slo-loadgen`).

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::args::{Api, OtlpProtocol};
use super::client::Outcome;
use super::schedule::Planned;
use crate::error::Result;

/// The tracer of a run and, with `--otlp`, its exporter.
#[derive(Debug)]
pub(super) struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    exporting: bool,
}

impl Telemetry {
    /// Sets up tracing; exports to `otlp` when given. Must run inside the tokio runtime.
    pub(super) fn new(otlp: Option<&str>, protocol: OtlpProtocol, auth: &crate::otlp::OtlpAuth) -> Result<Self> {
        let mut builder = SdkTracerProvider::builder()
            .with_resource(Resource::builder_empty().with_service_name("slo-loadgen").build());
        if let Some(url) = otlp {
            let exporter = crate::otlp::span_exporter(url, protocol, auth)?;
            builder = builder.with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
        }
        let provider = builder.build();
        let tracer = provider.tracer("slo-loadgen");
        Ok(Telemetry { provider, tracer, propagator: TraceContextPropagator::new(), exporting: otlp.is_some() })
    }

    /// Starts the client span of a request at its intended send time; returns
    /// it with the `traceparent` header to send.
    pub(super) fn start(&self, api: Api, model: &str, p: &Planned, intended: SystemTime) -> (Span, HeaderMap) {
        let span = self
            .tracer
            .span_builder(format!("POST {}", api.path()))
            .with_kind(SpanKind::Client)
            .with_start_time(intended)
            .with_attributes([
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("gen_ai.operation.name", api.operation()),
                KeyValue::new("gen_ai.request.model", model.to_owned()),
                KeyValue::new("gen_ai.request.max_tokens", i64::from(p.output_tokens)),
                KeyValue::new("slo.loadgen.request.index", p.index as i64),
                KeyValue::new("slo.loadgen.request.prompt_tokens", i64::from(p.prompt_tokens)),
            ])
            .start_with_context(&self.tracer, &Context::new());
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        let mut carrier = HashMap::new();
        self.propagator.inject_context(&cx, &mut carrier);
        let mut headers = HeaderMap::new();
        for (k, v) in carrier {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                headers.insert(k, v);
            }
        }
        (span, headers)
    }

    /// Ends a span with what the request measured, at `intended + latency`.
    pub(super) fn end(&self, mut span: Span, outcome: &Outcome, end: SystemTime) {
        if let Some(code) = outcome.status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
        }
        span.set_attribute(KeyValue::new("slo.loadgen.send_lag_ms", outcome.send_lag_ms));
        match &outcome.result {
            Ok(s) => {
                if let Some(n) = s.input_tokens {
                    span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", n as i64));
                }
                if let Some(n) = s.output_tokens {
                    span.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", n as i64));
                }
                if let Some(ttft) = s.ttft_ms {
                    span.set_attribute(KeyValue::new("gen_ai.response.time_to_first_chunk", ttft / 1e3));
                }
            }
            Err(kind) => {
                span.set_attribute(KeyValue::new("error.type", kind.key()));
                span.set_status(Status::error(kind.key()));
            }
        }
        span.end_with_timestamp(end);
    }

    /// Flushes and shuts the exporter down; spans of the run are sent before
    /// this returns. An export failure is reported, not fatal: the load was
    /// measured all the same.
    pub(super) async fn shutdown(&self) -> Option<String> {
        if !self.exporting {
            return None;
        }
        let provider = self.provider.clone();
        // The processor's flush blocks on its worker task: run it off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            let flushed = provider.force_flush();
            let shut = provider.shutdown();
            flushed.and(shut)
        })
        .await;
        match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("otlp export: {e}")),
            Err(e) => Some(format!("otlp export: {e}")),
        }
    }
}
