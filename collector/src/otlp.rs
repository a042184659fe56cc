//! OTLP receivers (gRPC on 4317, HTTP on 4318) and what they share: decoding, limits,
//! conversion, metrics, and the `google.rpc.Status` error shape.

pub mod decode;
pub mod grpc;
pub mod http;

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::CollectorConfig;
use crate::convert::{Converter, Rejected};
use crate::error::Result;
use crate::ingest::{Ingest, Prepared};
use crate::metrics::{CollectorMetrics, ExportLabels, TransportLabel};
use crate::redact::Redactor;
use crate::timegate::TimeRules;

/// Exports above this many spans (or protobuf bytes) are converted off the async workers.
const BLOCKING_SPANS: usize = 2_000;
const BLOCKING_BYTES: usize = 512 << 10;

/// An export as a receiver got it.
#[derive(Debug)]
pub enum Payload {
    /// OTLP protobuf bytes, transcoded in one pass.
    Protobuf(bytes::Bytes),
    /// A decoded request (OTLP/JSON, imports), converted through structs.
    Decoded(ExportTraceServiceRequest),
}

fn spans_in(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

impl Payload {
    /// Spans in the export, for counting a refused one (0 when the bytes do not parse).
    fn span_count(&self) -> usize {
        match self {
            Payload::Protobuf(b) => crate::transcode::count_spans(b).unwrap_or(0),
            Payload::Decoded(req) => spans_in(req),
        }
    }

    /// What the export will hold in the ingest queue, estimated before any work.
    fn expected_queued_bytes(&self) -> usize {
        match self {
            Payload::Protobuf(b) => b.len().saturating_mul(crate::ingest::QUEUED_PER_BODY_BYTE),
            Payload::Decoded(req) => {
                prost::Message::encoded_len(req).saturating_mul(crate::ingest::QUEUED_PER_BODY_BYTE)
            }
        }
    }

    fn is_large(&self) -> bool {
        match self {
            Payload::Protobuf(b) => b.len() > BLOCKING_BYTES,
            Payload::Decoded(_) => self.span_count() > BLOCKING_SPANS,
        }
    }
}

/// What receivers share: conversion and the ingest queue.
#[derive(Debug, Clone)]
pub struct Receiver {
    converter: Converter,
    ingest: Ingest,
    metrics: CollectorMetrics,
    limits: crate::config::OtlpLimits,
    receiving: Arc<Semaphore>,
    receiving_kib: usize,
    /// Large exports transcoded at once on the blocking pool: one per core. More adds no
    /// throughput, and each one in flight holds its record, rows and held spans (several
    /// times its body) that no budget counts yet, on a thread of its own (measured under
    /// overload: ~90 threads and ~1.2 GiB of RSS outside every budget without this).
    preparing: Arc<Semaphore>,
}

impl Receiver {
    /// A receiver feeding `ingest`, refusing span times outside `time` (see
    /// [`crate::timegate`]).
    pub fn new(cfg: &CollectorConfig, time: TimeRules, ingest: Ingest, metrics: CollectorMetrics) -> Arc<Self> {
        Arc::new(Receiver {
            converter: Converter::new(Redactor::new(&cfg.redaction), cfg.otlp.max_attribute_depth)
                .with_time_rules(time)
                .with_spans_at_receipt(cfg.sampling.stores_every_span()),
            ingest,
            metrics,
            limits: cfg.otlp.clone(),
            receiving: Arc::new(Semaphore::new((cfg.ingest.receive_bytes / 1024).max(1))),
            receiving_kib: (cfg.ingest.receive_bytes / 1024).max(1),
            preparing: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
        })
    }

    /// Reserves memory for an export being received; fails (the export is shed) when
    /// exports being received already hold the whole receive budget.
    pub fn reserve(&self, bytes: usize, held: &mut Option<OwnedSemaphorePermit>) -> Result<()> {
        let kib = (bytes.div_ceil(1024)).min(self.receiving_kib) as u32;
        if kib == 0 {
            return Ok(());
        }
        let permit = self.receiving.clone().try_acquire_many_owned(kib).map_err(|_| crate::Error::Overloaded {
            queued_bytes: self.receiving_bytes(),
            limit_bytes: self.receiving_kib * 1024,
        })?;
        match held {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }

    /// Bytes of the receive budget held by exports being received now.
    pub fn receiving_bytes(&self) -> usize {
        (self.receiving_kib - self.receiving.available_permits()) * 1024
    }

    /// The limits in force.
    pub fn limits(&self) -> &crate::config::OtlpLimits {
        &self.limits
    }

    /// The ingest handle.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Converts and stores one export; returns the spans rejected one by one. A protobuf
    /// payload that does not decode is an `InvalidPayload` error, not counted here (the
    /// transport counts it, as it counts its other decoding failures).
    pub async fn export(&self, payload: Payload, transport: &'static str) -> Result<Rejected> {
        let started = Instant::now();
        if let Err(e) = self.ingest.check_room(payload.expected_queued_bytes()) {
            self.refused(transport, &e);
            self.metrics
                .spans_refused
                .get_or_create(&ExportLabels { transport, outcome: e.outcome() })
                .inc_by(payload.span_count() as u64);
            return Err(e);
        }
        // Conversion, WAL encoding and Arrow rows are CPU work: large exports do it on the
        // blocking pool, so the async workers keep answering.
        let c = self.converter.clone();
        let large = payload.is_large();
        let shards = self.ingest.shards();
        let compression = self.ingest.wal_compression();
        let prepare = move || -> Result<_> {
            let framed = |parts: Result<Vec<Prepared>>| {
                parts.map(|mut parts| {
                    parts.iter_mut().for_each(|p| p.frame(compression));
                    parts
                })
            };
            match payload {
                Payload::Protobuf(bytes) => {
                    let (parts, t) = Prepared::transcode(&c, &bytes, shards)?;
                    Ok((framed(Ok(parts)), t.received, t.accepted, t.rejected, t.stats))
                }
                Payload::Decoded(req) => {
                    let n = spans_in(&req);
                    let (batch, rejected, stats) = c.convert(req);
                    let accepted = batch.span_count();
                    let record = prost::Message::encode_to_vec(&batch);
                    let parts = if accepted > 0 {
                        Prepared::from_record(record.into(), c.spans_at_receipt)
                            .and_then(|p| p.split(shards, c.spans_at_receipt))
                    } else {
                        Ok(Vec::new())
                    };
                    Ok((framed(parts), n, accepted, rejected, stats))
                }
            }
        };
        let (prepared, n, accepted, rejected, stats) = if large {
            // Waiting here holds only the body, which the receive budget already counts.
            let _slot =
                self.preparing.acquire().await.map_err(|_| crate::Error::Unavailable("shutting down".into()))?;
            tokio::task::spawn_blocking(prepare)
                .await
                .map_err(|e| crate::Error::Storage(format!("conversion task failed: {e}")))??
        } else {
            prepare()?
        };
        self.metrics.redacted_attributes.inc_by(stats.redacted);
        let result = match prepared {
            Ok(parts) => self.ingest.submit_parts(parts).await,
            Err(e) => Err(e),
        };
        let label = TransportLabel { transport };
        self.metrics.export_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(()) if rejected.spans > 0 => "partial",
            Ok(()) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.exports.get_or_create(&ExportLabels { transport, outcome }).inc();
        match result {
            Ok(()) => {
                self.metrics.spans_accepted.get_or_create(&label).inc_by(accepted as u64);
                self.metrics.spans_rejected.get_or_create(&label).inc_by(rejected.spans as u64);
                Ok(rejected)
            }
            Err(e) => {
                self.metrics.spans_refused.get_or_create(&ExportLabels { transport, outcome }).inc_by(n as u64);
                Err(e)
            }
        }
    }

    /// Counts an export refused before it could be decoded.
    pub fn refused(&self, transport: &'static str, e: &crate::Error) {
        self.metrics.exports.get_or_create(&ExportLabels { transport, outcome: e.outcome() }).inc();
    }
}

/// `google.rpc.Status`, the error body of OTLP/HTTP and the details of gRPC errors.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    /// `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details (`RetryInfo` when the client should back off).
    #[prost(message, repeated, tag = "3")]
    #[serde(skip)]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoAny {
    /// Type URL.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// Encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    /// How long to wait.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    /// Seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Seconds a shed client should wait before retrying.
pub const RETRY_AFTER_SECS: i64 = 1;

/// The `RetryInfo` detail telling a client to back off.
pub fn retry_info() -> ProtoAny {
    use prost::Message;
    let info = RetryInfo { retry_delay: Some(ProtoDuration { seconds: RETRY_AFTER_SECS, nanos: 0 }) };
    ProtoAny { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: info.encode_to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn receiver(budget_kib: usize, held_kib: usize) -> Arc<Receiver> {
        let metrics = CollectorMetrics::new(&mut prometheus_client::registry::Registry::default());
        Receiver::new(&CollectorConfig::default(), TimeRules::TRUSTED, Ingest::detached(budget_kib, held_kib), metrics)
    }

    /// Bytes that are not protobuf: transcoding them fails at once, naming the problem.
    fn garbage(len: usize) -> Payload {
        Payload::Protobuf(bytes::Bytes::from(vec![0xff; len]))
    }

    #[tokio::test]
    async fn a_queue_without_room_for_an_export_refuses_it_before_reading_it() {
        // 1 MiB queue, 768 KiB taken: 256 KiB free.
        let rx = receiver(1024, 768);
        // 100 KiB of body would hold ~400 KiB queued: refused as overload, so the bytes
        // were never looked at (they would have failed to decode).
        let e = rx.export(garbage(100 << 10), "http").await.unwrap_err();
        assert!(matches!(e, Error::Overloaded { .. }), "{e}");
        // 10 KiB (~40 KiB queued) fits, so it is read, and refused for what it is.
        let e = rx.export(garbage(10 << 10), "http").await.unwrap_err();
        assert!(matches!(e, Error::InvalidPayload(_)), "{e}");
        // Nearly full (less than 1/64 free): even a tiny export is refused unread.
        let e = receiver(1024, 1010).export(garbage(16), "grpc").await.unwrap_err();
        assert!(matches!(e, Error::Overloaded { .. }), "{e}");
        // An export larger than the whole budget still gets its try on an idle queue.
        let e = receiver(64, 0).export(garbage(100 << 10), "http").await.unwrap_err();
        assert!(matches!(e, Error::InvalidPayload(_)), "{e}");
    }
}
