//! One request against the endpoint and what it measured. Every time is
//! taken from the request's *intended* send time, not from when it left, so
//! a generator that falls behind cannot hide the server's delay.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::args::{Api, TargetArgs};
use super::schedule::{Planned, prompt};
use super::sse::SseDecoder;
use crate::error::{Error, Result};

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The server answered with a non-2xx status.
    Http(u16),
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection could not be made (refused, DNS, TLS).
    Connect,
    /// The connection or the stream broke before the answer was complete.
    StreamBroken,
    /// The body was not the JSON an OpenAI-compatible server sends.
    BadResponse,
}

/// What one successful request measured (all times in ms from the intended send time).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Success {
    pub latency_ms: f64,
    /// Streaming only: first content token.
    pub ttft_ms: Option<f64>,
    /// Gaps between successive content chunks.
    pub itl_ms: Vec<f32>,
    /// From `usage` when given, else counted content chunks (streaming).
    pub output_tokens: Option<u64>,
    /// From `usage` only.
    pub input_tokens: Option<u64>,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Actual − intended send time.
    pub send_lag_ms: f64,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    pub result: Result<Success, ErrorKind>,
}

/// The endpoint and how to talk to it; shared by every request of a run.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub client: reqwest::Client,
    pub url: String,
    pub api: Api,
    pub model: String,
    pub stream: bool,
    pub headers: HeaderMap,
    pub timeout: Duration,
}

/// The HTTP client and default headers (`--header`, `--api-key`) of a run.
pub(super) fn http_client(args: &TargetArgs) -> Result<(reqwest::Client, HeaderMap)> {
    let mut headers = HeaderMap::new();
    if let Some(key) = args.api_key.as_ref().map(|k| k.expose()).filter(|k| !k.is_empty()) {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::Invalid("--api-key: not a valid header value".into()))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    for h in &args.headers {
        headers.insert(h.name.clone(), h.value.clone());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight.min(1024))
        .connect_timeout(args.timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| Error::Network(format!("building the HTTP client: {e}")))?;
    Ok((client, headers))
}

/// The first model of `GET /v1/models`.
pub(super) async fn discover_model(client: &reqwest::Client, base: &str, headers: &HeaderMap) -> Result<String> {
    let url = format!("{base}/v1/models");
    let fail = |what: String| Error::Network(format!("GET {url}: {what} (give --model to skip the lookup)"));
    let resp = client
        .get(&url)
        .headers(headers.clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("status {}", resp.status())));
    }
    let body: Value = resp.json().await.map_err(|e| fail(format!("bad body: {e}")))?;
    body["data"][0]["id"].as_str().map(str::to_owned).ok_or_else(|| fail("no model listed".into()))
}

impl Endpoint {
    /// The JSON body of a planned request.
    pub(super) fn body(&self, p: &Planned) -> Value {
        let text = prompt(p.prompt_seed, p.prompt_tokens);
        let mut body = match self.api {
            Api::Chat => json!({ "model": self.model, "messages": [{ "role": "user", "content": text }] }),
            Api::Completions => json!({ "model": self.model, "prompt": text }),
        };
        body["max_tokens"] = json!(p.output_tokens);
        // vLLM honours these, so the output length follows the distribution;
        // other servers ignore unknown fields.
        body["min_tokens"] = json!(p.output_tokens);
        body["ignore_eos"] = json!(true);
        if self.stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({ "include_usage": true });
        }
        body
    }

    /// Sends a planned request (now) and measures it from `intended`.
    pub(super) async fn send(&self, p: &Planned, intended: Instant, extra: HeaderMap) -> Outcome {
        let body = self.body(p);
        let req = self.client.post(&self.url).headers(self.headers.clone()).headers(extra).json(&body);
        let send_lag_ms = ms(Instant::now().saturating_duration_since(intended));
        let mut status = None;
        let result = match tokio::time::timeout(self.timeout, self.exchange(req, intended, &mut status)).await {
            Ok(r) => r,
            Err(_) => Err(ErrorKind::Timeout),
        };
        Outcome { send_lag_ms, status, result }
    }

    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        intended: Instant,
        status: &mut Option<u16>,
    ) -> Result<Success, ErrorKind> {
        let resp = req.send().await.map_err(|e| classify(&e))?;
        *status = Some(resp.status().as_u16());
        if !resp.status().is_success() {
            return Err(ErrorKind::Http(resp.status().as_u16()));
        }
        if self.stream {
            read_stream(resp, intended).await
        } else {
            let bytes = resp.bytes().await.map_err(|e| classify(&e))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|_| ErrorKind::BadResponse)?;
            if !v["choices"].is_array() {
                return Err(ErrorKind::BadResponse);
            }
            let (input_tokens, output_tokens) = usage(&v);
            Ok(Success { latency_ms: ms(intended.elapsed()), output_tokens, input_tokens, ..Success::default() })
        }
    }
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect
    } else {
        ErrorKind::StreamBroken
    }
}

/// Reads an SSE stream of chat or completion chunks.
async fn read_stream(resp: reqwest::Response, intended: Instant) -> Result<Success, ErrorKind> {
    let mut body = resp.bytes_stream();
    let mut sse = SseDecoder::default();
    let mut chunks = Chunks::default();
    while let Some(bytes) = body.next().await {
        let bytes = bytes.map_err(|e| classify(&e))?;
        let now = Instant::now();
        for data in sse.push(&bytes) {
            chunks.event(&data, now)?;
        }
    }
    if let Some(data) = sse.finish() {
        chunks.event(&data, Instant::now())?;
    }
    if !(chunks.done || chunks.finished) {
        return Err(ErrorKind::StreamBroken);
    }
    let end = Instant::now();
    let ttft_ms = chunks.first.map(|t| ms(t.saturating_duration_since(intended)));
    Ok(Success {
        latency_ms: ms(end.saturating_duration_since(intended)),
        ttft_ms,
        itl_ms: chunks.itl,
        output_tokens: chunks.usage_output.or((chunks.content > 0).then_some(chunks.content)),
        input_tokens: chunks.usage_input,
    })
}

/// What the events of one stream said so far.
#[derive(Debug, Default)]
struct Chunks {
    first: Option<Instant>,
    last: Option<Instant>,
    itl: Vec<f32>,
    content: u64,
    usage_input: Option<u64>,
    usage_output: Option<u64>,
    done: bool,
    finished: bool,
}

impl Chunks {
    fn event(&mut self, data: &str, now: Instant) -> Result<(), ErrorKind> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|_| ErrorKind::BadResponse)?;
        if !v["error"].is_null() {
            // vLLM reports failures after the headers went out as an error event.
            return Err(ErrorKind::StreamBroken);
        }
        let (input, output) = usage(&v);
        self.usage_input = input.or(self.usage_input);
        self.usage_output = output.or(self.usage_output);
        for choice in v["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            let text = [&delta["content"], &delta["reasoning_content"], &choice["text"]]
                .iter()
                .any(|t| t.as_str().is_some_and(|s| !s.is_empty()));
            if text {
                self.content += 1;
                if let Some(last) = self.last {
                    self.itl.push(ms(now.saturating_duration_since(last)) as f32);
                }
                self.first.get_or_insert(now);
                self.last = Some(now);
            }
            if !choice["finish_reason"].is_null() {
                self.finished = true;
            }
        }
        Ok(())
    }
}

/// `(prompt_tokens, completion_tokens)` of a body's `usage`, when present.
fn usage(v: &Value) -> (Option<u64>, Option<u64>) {
    let u = &v["usage"];
    (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
