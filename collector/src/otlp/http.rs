//! OTLP/HTTP: `POST /v1/traces`, protobuf or JSON, gzip or identity.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;

use super::decode::{self, Encoding};
use super::{Payload, RETRY_AFTER_SECS, Receiver, RpcStatus, retry_info};
use crate::error::Error;

const TRANSPORT: &str = "http";

/// The OTLP/HTTP routes.
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new().route("/v1/traces", post(traces)).with_state(receiver)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn traces(State(rx): State<Arc<Receiver>>, headers: HeaderMap, mut body: Body) -> Response {
    // Answer in the encoding the client used; protobuf when it sent something unusable.
    let ct = header_str(&headers, header::CONTENT_TYPE).unwrap_or("");
    let encoding = match Encoding::from_content_type(ct) {
        Ok(e) => e,
        Err(e) => {
            drain(&headers, &mut body).await;
            return failure(&rx, Encoding::Protobuf, e);
        }
    };
    let received = receive(rx.clone(), &headers, &mut body, encoding).await;
    if received.is_err() {
        drain(&headers, &mut body).await;
    }
    match received {
        Ok(rejected) => {
            let partial = (rejected.spans > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected.spans,
                error_message: rejected.message,
            });
            let resp = ExportTraceServiceResponse { partial_success: partial };
            let body = match encoding {
                Encoding::Protobuf => resp.encode_to_vec(),
                // The protobuf JSON mapping writes int64 as a string.
                Encoding::Json => match resp.partial_success {
                    Some(p) => serde_json::json!({
                        "partialSuccess": { "rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message }
                    })
                    .to_string()
                    .into_bytes(),
                    None => b"{}".to_vec(),
                },
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(e) => failure(&rx, encoding, e),
    }
}

async fn receive(
    rx: Arc<Receiver>,
    headers: &HeaderMap,
    body: &mut Body,
    encoding: Encoding,
) -> Result<crate::convert::Rejected, Error> {
    // Shed before holding or decoding the body when the queue has no room for it (its bytes
    // are then read only to be dropped; a compressed body's length understates it, and
    // then only the later checks refuse).
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if let Err(e) = rx.ingest().check_room(declared.unwrap_or(0).saturating_mul(crate::ingest::QUEUED_PER_BODY_BYTE)) {
        rx.refused(TRANSPORT, &e);
        return Err(e);
    }
    let limits = rx.limits().clone();
    if let Some(len) = declared
        && len > DRAIN_LIMIT
    {
        return Err(Error::TooLarge { what: "body", size: len, limit: limits.max_body_bytes });
    }
    // Memory held while this export is received is reserved as it grows; the permit is
    // released when the export is answered.
    let mut held = None;
    let bytes = read_body(&rx, body, limits.max_body_bytes, &mut held).await?;
    let gzip = match header_str(headers, header::CONTENT_ENCODING).map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v.is_empty() || v == "identity" => false,
        Some(v) if v == "gzip" => true,
        Some(v) => return Err(Error::UnsupportedEncoding(v)),
    };
    let large = bytes.len() > 256 * 1024;
    // Decompression and decoding charge what they hold to the receive budget as well: the
    // decompressed bytes chunk by chunk, then the record a protobuf export is transcoded
    // into at its size, a decoded JSON request at twice its size.
    let budget = rx.clone();
    let decode_all = move || -> Result<_, Error> {
        let payload = if gzip {
            decode::gunzip(&bytes, limits.max_decompressed_bytes, &mut |n| budget.reserve(n, &mut held))?
        } else {
            bytes
        };
        Ok(match encoding {
            // Transcoded in place: the bytes, and a record about their size, are held.
            Encoding::Protobuf => {
                budget.reserve(payload.len(), &mut held)?;
                (Payload::Protobuf(payload.into()), held)
            }
            Encoding::Json => {
                budget.reserve(payload.len() * 2, &mut held)?;
                (Payload::Decoded(decode::decode(&payload, encoding)?), held)
            }
        })
    };
    // `_held` keeps the reservation until the export is answered.
    let (req, _held) = if large {
        tokio::task::spawn_blocking(decode_all)
            .await
            .map_err(|e| Error::Storage(format!("decode task failed: {e}")))??
    } else {
        decode_all()?
    };
    rx.export(req, TRANSPORT).await
}

/// An oversized body up to this size is read and discarded before answering 413, so that
/// the client, still sending, gets the answer instead of a reset connection. Beyond it the
/// connection is cut.
const DRAIN_LIMIT: usize = 256 << 20;

/// Reads what is left of a refused export's body and drops it, holding no more than a
/// frame at a time, so that a client still sending gets the answer (a 429 with its retry
/// hint, a 400 naming the problem) rather than a connection closed under it. A body
/// declared larger than [`DRAIN_LIMIT`] is not read: that connection is cut.
async fn drain(headers: &HeaderMap, body: &mut Body) {
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return;
    }
    let mut total = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        total += frame.data_ref().map_or(0, |d| d.len());
        if total > DRAIN_LIMIT {
            return;
        }
    }
}

/// Reads the body, keeping at most `limit` bytes in memory, reserving them as they come.
async fn read_body(
    rx: &Receiver,
    body: &mut Body,
    limit: usize,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::InvalidPayload(format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            if total > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        rx.reserve(data.len(), held)?;
        buf.extend_from_slice(&data);
    }
    if total > limit {
        return Err(Error::TooLarge { what: "body", size: total, limit });
    }
    Ok(buf)
}

fn failure(rx: &Receiver, encoding: Encoding, e: Error) -> Response {
    let (status, code) = match &e {
        Error::InvalidPayload(_) => (StatusCode::BAD_REQUEST, 3),
        Error::UnsupportedContentType(_) | Error::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 3),
        Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, 8),
        Error::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, 8),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 14),
        Error::Storage(_) | Error::Store(_) | Error::File { .. } | Error::Config(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, 14)
        }
    };
    // Failures after decoding are counted in Receiver::export; count the early ones here.
    if matches!(
        e,
        Error::InvalidPayload(_)
            | Error::UnsupportedContentType(_)
            | Error::UnsupportedEncoding(_)
            | Error::TooLarge { .. }
    ) {
        rx.refused(TRANSPORT, &e);
        tracing::debug!(error = %e, "otlp/http export refused");
    }
    let retry = e.is_retryable();
    let msg = RpcStatus { code, message: e.to_string(), details: if retry { vec![retry_info()] } else { vec![] } };
    let body = match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&msg).unwrap_or_default(),
    };
    let mut resp = (status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
    if retry {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}
