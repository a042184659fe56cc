//! In-process mock OpenAI servers (axum on 127.0.0.1:0) and an OTLP/HTTP
//! trace receiver, for the tests of `slo loadgen target`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How the mock answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Behaviour {
    /// Streams `max_tokens` tokens: `ttft` before the first chunk, `per_token`
    /// between chunks, each SSE event written in two halves split mid-line.
    Stream { ttft: Duration, per_token: Duration, tokens_per_chunk: u32, usage: bool },
    /// Like a fast `Stream`, but every request arriving in `[from, to)` after
    /// the first request's arrival is held until `to` (a server freeze).
    Stall { from: Duration, to: Duration },
    /// By arrival order mod 6: 500, 429, hang, broken stream, garbage, ok.
    Errors,
    /// Sleeps this long, then answers like a fast `Stream`.
    Slow(Duration),
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub at: Instant,
    pub wall: SystemTime,
    pub traceparent: Option<String>,
    pub body: Value,
}

#[derive(Clone)]
struct Mock {
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicU64>,
}

/// Starts a mock; returns its base URL and the requests it sees.
pub(super) async fn openai(behaviour: Behaviour) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mock = Mock { behaviour, seen: seen.clone(), count: Arc::new(AtomicU64::new(0)) };
    let router = Router::new()
        .route("/v1/chat/completions", post(completion))
        .route("/v1/completions", post(completion))
        .with_state(mock);
    (serve(router).await, seen)
}

/// Starts an OTLP/HTTP receiver; returns its base URL and the spans it got.
pub(super) async fn otlp() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new().route("/v1/traces", post(traces)).with_state(spans.clone());
    (serve(router).await, spans)
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn traces(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> Response {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut all = spans.lock();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            all.extend(ss.spans);
        }
    }
    let resp = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], resp).into_response()
}

async fn completion(State(m): State<Mock>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let n = m.count.fetch_add(1, Ordering::SeqCst);
    let at = Instant::now();
    let first = {
        let mut seen = m.seen.lock();
        seen.push(Seen {
            at,
            wall: SystemTime::now(),
            traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: body.clone(),
        });
        seen[0].at
    };
    let fast = Behaviour::Stream { ttft: Duration::ZERO, per_token: Duration::ZERO, tokens_per_chunk: 1, usage: true };
    match m.behaviour {
        Behaviour::Stream { .. } => answer(m.behaviour, &body),
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            answer(fast, &body)
        }
        Behaviour::Stall { from, to } => {
            let since = at - first;
            if since >= from && since < to {
                tokio::time::sleep_until((first + to).into()).await;
            }
            answer(fast, &body)
        }
        Behaviour::Errors => match n % 6 {
            0 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            1 => (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response(),
            2 => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                answer(fast, &body)
            }
            3 => sse(|tx| async move {
                let _ = tx.send(Ok(Bytes::from(chunk("tok ", None)))).await;
                let _ = tx.send(Err(std::io::Error::other("boom"))).await;
            }),
            4 => sse(|tx| async move {
                let _ = tx.send(Ok(Bytes::from("data: {\"choices\": [oops\n\n"))).await;
            }),
            _ => answer(fast, &body),
        },
    }
}

type Tx = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A `text/event-stream` response written by `f`.
fn sse<F, Fut>(f: F) -> Response
where
    F: FnOnce(Tx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(f(tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
}

fn chunk(text: &str, finish: Option<&str>) -> String {
    let v = json!({ "object": "chat.completion.chunk",
                    "choices": [{ "index": 0, "delta": { "content": text }, "finish_reason": finish }] });
    format!("data: {v}\n\n")
}

fn answer(b: Behaviour, body: &Value) -> Response {
    let Behaviour::Stream { ttft, per_token, tokens_per_chunk, usage } = b else {
        unreachable!("answer takes a Stream behaviour")
    };
    let max = body["max_tokens"].as_u64().unwrap_or(16);
    let prompt = body["messages"][0]["content"].as_str().or(body["prompt"].as_str()).unwrap_or("");
    let prompt_tokens = prompt.split_whitespace().count();
    let usage_json =
        json!({ "prompt_tokens": prompt_tokens, "completion_tokens": max, "total_tokens": prompt_tokens as u64 + max });
    if body["stream"] != json!(true) {
        let text = "tok ".repeat(max as usize);
        let v = json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
                        "finish_reason": "length" }], "usage": usage_json });
        return Json(v).into_response();
    }
    let split = Duration::from_millis(5).min(per_token);
    sse(move |tx| async move {
        tokio::time::sleep(ttft).await;
        let chunks = max.div_ceil(u64::from(tokens_per_chunk));
        for i in 0..chunks {
            if i > 0 {
                tokio::time::sleep(per_token * tokens_per_chunk - split).await;
            }
            let event = chunk(&"tok ".repeat(tokens_per_chunk as usize), None);
            let (a, b) = event.split_at(event.len() / 2);
            let _ = tx.send(Ok(Bytes::from(a.to_owned()))).await;
            tokio::time::sleep(split).await;
            let _ = tx.send(Ok(Bytes::from(b.to_owned()))).await;
        }
        let mut tail = chunk("", Some("length"));
        if usage {
            tail += &format!("data: {}\n\n", json!({ "choices": [], "usage": usage_json }));
        }
        tail += "data: [DONE]\n\n";
        let _ = tx.send(Ok(Bytes::from(tail))).await;
    })
}

/// Starts an OTLP/gRPC receiver; returns its URL and the spans it got.
pub(super) async fn otlp_grpc() -> (String, Arc<Mutex<Vec<Span>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let spans = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let svc = TraceServiceServer::new(GrpcTraces(spans.clone()));
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming(incoming));
    (format!("http://{addr}"), spans)
}

struct GrpcTraces(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut all = self.0.lock();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                all.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
