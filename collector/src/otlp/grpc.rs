//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! tonic answers a payload it cannot decode with INTERNAL and an oversized one with
//! OUT_OF_RANGE; OTLP clients (and DESIGN.md) expect INVALID_ARGUMENT and
//! RESOURCE_EXHAUSTED, and treat INTERNAL as retryable, so [`StatusRemap`] rewrites those
//! two trailers-only answers. Everything else is tonic's generated server.

use std::sync::Arc;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};

use super::{Receiver, RpcStatus, retry_info};
use crate::error::Error;

const TRANSPORT: &str = "grpc";

/// The gRPC trace service.
#[derive(Debug, Clone)]
pub struct GrpcTraces {
    receiver: Arc<Receiver>,
}

/// The service, ready for `tonic::transport::Server::add_service`.
pub fn service(receiver: Arc<Receiver>) -> StatusRemap<TraceServiceServer<GrpcTraces>> {
    let max = receiver.limits().max_decompressed_bytes;
    StatusRemap(
        TraceServiceServer::new(GrpcTraces { receiver })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    )
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

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        match self.receiver.export(request.into_inner(), TRANSPORT).await {
            Ok(rejected) => Ok(Response::new(ExportTraceServiceResponse {
                partial_success: (rejected.spans > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected.spans,
                    error_message: rejected.message,
                }),
            })),
            Err(e) => Err(to_status(&e)),
        }
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
