//! The OpenAI-compatible API of the simulated cluster: `/v1/models`,
//! `/v1/completions` and `/v1/chat/completions` (streaming or not), answered
//! by the simulated model servers. A request joins the simulated traffic at
//! the current simulated time, waits in the pod's queue, and streams one SSE
//! chunk per generated token as the engine produces it; it always generates
//! `max_tokens` tokens (as with vLLM's `ignore_eos`). A W3C `traceparent`
//! makes the simulated spans join the caller's trace.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::live::{Shared, Update};
use crate::sim::Injected;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let typ = match status {
        StatusCode::NOT_FOUND => "NotFoundError",
        StatusCode::BAD_REQUEST => "BadRequestError",
        StatusCode::TOO_MANY_REQUESTS => "RateLimitError",
        _ => "InternalServerError",
    };
    (
        status,
        axum::Json(
            json!({"object": "error", "message": message.into(), "type": typ, "param": null, "code": status.as_u16()}),
        ),
    )
        .into_response()
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let sim = shared.sim.lock();
    let data: Vec<Value> = sim
        .scenario
        .models
        .iter()
        .map(|m| json!({"id": m.model, "object": "model", "created": 1_700_000_000, "owned_by": "vllm", "root": m.model, "slo_deployment": m.name}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Roughly one token per word, plus the chat template's overhead per message.
fn count_tokens(v: &Value) -> u32 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u32,
        Value::Array(a) => a.iter().map(count_tokens).sum(),
        Value::Object(o) => o.get("content").map(count_tokens).unwrap_or(0) + 4,
        _ => 0,
    }
}

fn traceparent(headers: &HeaderMap) -> Option<(u128, u64)> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = v.trim().split('-').collect();
    if parts.len() != 4 || parts[0] != "00" || parts[1].len() != 32 || parts[2].len() != 16 {
        return None;
    }
    let t = u128::from_str_radix(parts[1], 16).ok().filter(|&t| t != 0)?;
    let s = u64::from_str_radix(parts[2], 16).ok().filter(|&s| s != 0)?;
    Some((t, s))
}

async fn completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(shared, headers, body, false).await
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    handle(shared, headers, body, true).await
}

async fn handle(shared: Arc<Shared>, headers: HeaderMap, body: axum::body::Bytes, chat: bool) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "request body must be a JSON object"),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body is not valid JSON: {e}")),
    };
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "field `model` is required");
    };
    let prompt_field = if chat { "messages" } else { "prompt" };
    let Some(prompt) = req.get(prompt_field) else {
        return error(StatusCode::BAD_REQUEST, format!("field `{prompt_field}` is required"));
    };
    let prompt_tokens = count_tokens(prompt).max(1);
    let max_tokens = match req.get("max_tokens").or_else(|| req.get("max_completion_tokens")) {
        None | Some(Value::Null) => {
            if chat {
                256
            } else {
                16
            }
        }
        Some(v) => match v.as_u64() {
            Some(n) if (1..=32768).contains(&n) => n as u32,
            _ => return error(StatusCode::BAD_REQUEST, "`max_tokens` must be an integer in 1..=32768"),
        },
    };
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage_in_stream =
        req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let Some((external, mut rx)) = shared.register() else {
        let msg = format!("the simulation already holds {} API requests; retry later", super::live::MAX_API_REQUESTS);
        return error(StatusCode::TOO_MANY_REQUESTS, msg);
    };
    let injected = {
        let mut sim = shared.sim.lock();
        sim.inject(Injected {
            model: &model,
            prompt_tokens,
            max_tokens,
            external,
            stream,
            chat,
            trace_parent: traceparent(&headers),
        })
    };
    if injected.is_none() {
        shared.waiters.lock().remove(&external);
        return error(StatusCode::NOT_FOUND, format!("The model `{model}` does not exist."));
    }
    let id = format!("{}-{external:016x}", if chat { "chatcmpl" } else { "cmpl" });
    let object = if chat { "chat.completion" } else { "text_completion" };
    // Nothing is sent before the first token or the outcome, so a failure keeps its status.
    let first = rx.recv().await;
    match first {
        None => error(StatusCode::SERVICE_UNAVAILABLE, "the simulation ended"),
        Some(Update::Done { status, .. }) if status != 200 => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            error(code, format!("upstream failed with {status}"))
        }
        Some(first) if stream => {
            let s = sse_stream(first, rx, Chunker { id, model, chat, usage: usage_in_stream, prompt_tokens, sent: 0 });
            Sse::new(s).into_response()
        }
        Some(mut update) => loop {
            if let Update::Done { status, prompt_tokens, output_tokens } = update {
                if status != 200 {
                    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                    return error(code, format!("upstream failed with {status}"));
                }
                let text = words(0, output_tokens);
                let choice = if chat {
                    json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
                } else {
                    json!({"index": 0, "text": text, "finish_reason": "length"})
                };
                return axum::Json(json!({"id": id, "object": object, "created": 1_700_000_000, "model": model,
                    "choices": [choice],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens, "total_tokens": prompt_tokens + output_tokens}}))
                .into_response();
            }
            match rx.recv().await {
                Some(u) => update = u,
                None => return error(StatusCode::SERVICE_UNAVAILABLE, "the simulation ended"),
            }
        },
    }
}

fn words(from: u32, to: u32) -> String {
    (from..to).map(|i| if i == 0 { "tok".to_string() } else { " tok".to_string() }).collect()
}

struct Chunker {
    id: String,
    model: String,
    chat: bool,
    usage: bool,
    prompt_tokens: u32,
    sent: u32,
}

impl Chunker {
    fn delta(&self, text: String, finish: Option<&str>) -> Event {
        let choice = if self.chat {
            json!({"index": 0, "delta": {"content": text}, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": text, "finish_reason": finish})
        };
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        Event::default().data(
            json!({"id": self.id, "object": object, "created": 1_700_000_000, "model": self.model, "choices": [choice]}).to_string(),
        )
    }

    /// Chunks for tokens up to `generated` (one per token).
    fn tokens(&mut self, generated: u32) -> Vec<Event> {
        let mut out = Vec::new();
        while self.sent < generated {
            out.push(self.delta(words(self.sent, self.sent + 1), None));
            self.sent += 1;
        }
        out
    }

    fn finish(&mut self, output_tokens: u32) -> Vec<Event> {
        let mut out = self.tokens(output_tokens);
        out.push(self.delta(String::new(), Some("length")));
        if self.usage {
            let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
            out.push(Event::default().data(
                json!({"id": self.id, "object": object, "created": 1_700_000_000, "model": self.model, "choices": [],
                    "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": output_tokens, "total_tokens": self.prompt_tokens + output_tokens}})
                .to_string(),
            ));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
}

fn sse_stream(
    first: Update,
    rx: mpsc::UnboundedReceiver<Update>,
    chunker: Chunker,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let updates = stream::once(async move { Some(first) })
        .chain(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|u| (Some(u), rx)) }))
        .chain(stream::once(async { None }));
    updates
        .scan((chunker, false), |(chunker, done), u| {
            let events = if *done {
                Vec::new()
            } else {
                match u {
                    Some(Update::Tokens(n)) => chunker.tokens(n),
                    Some(Update::Done { status, output_tokens, .. }) => {
                        *done = true;
                        if status == 200 {
                            chunker.finish(output_tokens)
                        } else {
                            vec![Event::default().data(
                                json!({"error": {"message": format!("upstream failed with {status}"), "code": status}}).to_string(),
                            )]
                        }
                    }
                    None => {
                        *done = true;
                        vec![Event::default().data(json!({"error": {"message": "the simulation ended"}}).to_string())]
                    }
                }
            };
            futures_util::future::ready(Some(events))
        })
        .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}
