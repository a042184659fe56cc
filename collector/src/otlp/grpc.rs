//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The service is tonic's unary server with a codec that hands the handler the request's
//! bytes, not a decoded `ExportTraceServiceRequest`: the receiver transcodes them in one
//! pass ([`crate::transcode`]). Framing, gzip and the message size limit are tonic's.
//!
//! tonic answers a payload it cannot decompress with INTERNAL and an oversized one with
//! OUT_OF_RANGE (or, past `max_body_bytes` as sent, with the body limit's error); OTLP
//! clients (and the README) expect INVALID_ARGUMENT and RESOURCE_EXHAUSTED, and treat
//! INTERNAL as retryable, so [`StatusRemap`] rewrites those trailers-only answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

use super::{Payload, Receiver, RpcStatus, retry_info};
use crate::error::Error;

const TRANSPORT: &str = "grpc";
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC trace service.
#[derive(Debug, Clone)]
pub struct GrpcTraces {
    receiver: Arc<Receiver>,
    max_decoding: usize,
    max_body: usize,
}

/// The service, ready for `tonic::transport::Server::add_service`.
pub fn service(receiver: Arc<Receiver>) -> StatusRemap<GrpcTraces> {
    let max_decoding = receiver.limits().max_decompressed_bytes;
    let max_body = receiver.limits().max_body_bytes;
    StatusRemap(GrpcTraces { receiver, max_decoding, max_body })
}

impl NamedService for GrpcTraces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

/// Requests as bytes, responses as prost messages.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("encode response: {e}")))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

struct ExportSvc(Arc<Receiver>);

impl UnaryService<Bytes> for ExportSvc {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            match receiver.export(Payload::Protobuf(request.into_inner()), TRANSPORT).await {
                Ok(rejected) => Ok(Response::new(ExportTraceServiceResponse {
                    partial_success: (rejected.spans > 0).then_some(ExportTracePartialSuccess {
                        rejected_spans: rejected.spans,
                        error_message: rejected.message,
                    }),
                })),
                Err(e) => {
                    if matches!(e, Error::InvalidPayload(_)) {
                        receiver.refused(TRANSPORT, &e);
                    }
                    Err(to_status(&e))
                }
            }
        })
    }
}

impl<B> Service<http::Request<B>> for GrpcTraces
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        let svc = ExportSvc(self.receiver.clone());
        let max = self.max_decoding;
        // The same limit on what is sent as OTLP/HTTP's `max_body_bytes` (plus the 5-byte
        // gRPC frame header); tonic's own limit is on the message after decompression.
        let req = req.map(|b| http_body_util::Limited::new(b, self.max_body + 5));
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(svc, req).await)
        })
    }
}

/// Converts a collector error to a gRPC status.
pub fn to_status(e: &Error) -> Status {
    let code = match e {
        Error::InvalidPayload(_) | Error::UnsupportedContentType(_) | Error::UnsupportedEncoding(_) => {
            Code::InvalidArgument
        }
        Error::TooLarge { .. } | Error::Overloaded { .. } => Code::ResourceExhausted,
        Error::Unavailable(_) | Error::Storage(_) | Error::Store(_) | Error::File { .. } | Error::Config(_) => {
            Code::Unavailable
        }
    };
    // Overload is UNAVAILABLE for OTLP clients: it is the retryable code they back off on.
    let code = if matches!(e, Error::Overloaded { .. }) { Code::Unavailable } else { code };
    if e.is_retryable() {
        let details = RpcStatus { code: code as i32, message: e.to_string(), details: vec![retry_info()] };
        Status::with_details(code, e.to_string(), details.encode_to_vec().into())
    } else {
        Status::new(code, e.to_string())
    }
}

/// Rewrites tonic's codes for undecodable (INTERNAL) and oversized (OUT_OF_RANGE)
/// requests to INVALID_ARGUMENT and RESOURCE_EXHAUSTED.
#[derive(Debug, Clone)]
pub struct StatusRemap<S>(S);

impl<S: NamedService> NamedService for StatusRemap<S> {
    const NAME: &'static str = S::NAME;
}

fn remap(headers: &mut http::HeaderMap) {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
    let new = match code {
        Some(c) if c == Code::Internal as i32 && (message.contains("decode") || message.contains("decompress")) => {
            Code::InvalidArgument
        }
        Some(c) if c == Code::OutOfRange as i32 && message.contains("too%20large") | message.contains("too large") => {
            Code::ResourceExhausted
        }
        Some(_) if message.contains("length%20limit%20exceeded") || message.contains("length limit exceeded") => {
            Code::ResourceExhausted
        }
        _ => return,
    };
    headers.insert("grpc-status", http::HeaderValue::from(new as i32));
}

impl<S, B> Service<http::Request<B>> for StatusRemap<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            remap(resp.headers_mut());
            Ok(resp)
        })
    }
}
