//! The flags of `slo loadgen target` and their parsers. Parse errors come
//! back through clap, which names the flag; semantic checks that clap cannot
//! express live in [`TargetArgs::validate`] and name the flag themselves.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::dist::TokenDist;
use crate::error::{Error, Result};

/// Open-loop load against an OpenAI-compatible endpoint.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Base URL of the endpoint, e.g. http://127.0.0.1:8000; requests go to
    /// /v1/chat/completions or /v1/completions under it
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Requests per second to schedule; the schedule is open-loop, it does not
    /// slow down when the endpoint does
    #[arg(long, value_name = "N", value_parser = parse_rps)]
    pub rps: f64,
    /// How long to send, e.g. 30s, 5m, 1h, 1m30s, 500ms
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Duration,
    /// Model name; when absent, the first model listed by GET /v1/models
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Which API to call
    #[arg(long, value_enum, default_value_t = Api::Chat)]
    pub api: Api,
    /// Ask for whole responses instead of a stream (TTFT is then unknown)
    #[arg(long)]
    pub no_stream: bool,
    /// Arrival process of the schedule: constant spacing or Poisson gaps
    #[arg(long, value_enum, default_value_t = Arrival::Poisson)]
    pub arrival: Arrival,
    /// Prompt length distribution in tokens (const:N, uniform:MIN,MAX,
    /// normal:MEAN,SD, lognormal:MEDIAN,SIGMA, exp:MEAN)
    #[arg(long, value_name = "DIST", default_value = "lognormal:512,0.6")]
    pub prompt_tokens: TokenDist,
    /// Output length distribution in tokens, sent as max_tokens (and
    /// min_tokens with ignore_eos, which vLLM honours)
    #[arg(long, value_name = "DIST", default_value = "lognormal:128,0.5")]
    pub output_tokens: TokenDist,
    /// Per-request timeout, from the moment the request is sent
    #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most requests outstanding at once; a request due beyond this is counted
    /// as dropped (client saturated), the schedule is never delayed
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Seed of the schedule and the prompts (random when absent; the report
    /// says which was used)
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Extra request header, 'Name: value' (repeatable)
    #[arg(long = "header", value_name = "'K: V'")]
    pub headers: Vec<Header>,
    /// API key, sent as 'Authorization: Bearer KEY'
    #[arg(long, value_name = "KEY", env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// Export a client span per request to this OTLP endpoint, e.g.
    /// http://127.0.0.1:4317 (grpc) or http://127.0.0.1:4318 (http)
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// OTLP transport
    #[arg(long, value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,
    /// Token and CA for --otlp
    #[command(flatten)]
    pub otlp_auth: crate::otlp::OtlpAuthArgs,
    /// Write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Do not draw the progress bar (it is hidden anyway when stderr is not a terminal)
    #[arg(long)]
    pub no_progress: bool,
}

impl TargetArgs {
    /// Checks what clap cannot: the URL shape and the ranges that depend on
    /// each other. Every message names its flag.
    pub fn validate(&self) -> Result<()> {
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            return Err(Error::Invalid(format!("--url {:?}: expected http://HOST[:PORT] or https://…", self.url)));
        }
        if url.ends_with("/v1/chat/completions") || url.ends_with("/v1/completions") {
            return Err(Error::Invalid(format!(
                "--url {:?}: give the base URL, the path is chosen by --api",
                self.url
            )));
        }
        parse_rps(&self.rps.to_string()).map_err(|e| Error::Invalid(format!("--rps: {e}")))?;
        if self.duration.is_zero() {
            return Err(Error::Invalid("--duration must be more than 0".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Invalid("--timeout must be more than 0".into()));
        }
        if self.max_in_flight == 0 {
            return Err(Error::Invalid("--max-in-flight must be at least 1".into()));
        }
        if self.duration.as_secs_f64() * self.rps > 1e9 {
            return Err(Error::Invalid("--rps × --duration schedules more than 10^9 requests".into()));
        }
        if let Some(otlp) = &self.otlp
            && !(otlp.starts_with("http://") || otlp.starts_with("https://"))
        {
            return Err(Error::Invalid(format!("--otlp {otlp:?}: expected an http:// or https:// URL")));
        }
        Ok(())
    }

    /// The base URL without a trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }
}

/// Which OpenAI API the requests use.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// POST /v1/chat/completions with one user message
    Chat,
    /// POST /v1/completions with a prompt
    Completions,
}

impl Api {
    /// The request path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
        }
    }

    /// `gen_ai.operation.name` of the OpenTelemetry GenAI conventions.
    pub fn operation(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Completions => "text_completion",
        }
    }
}

/// How intended send times are spaced.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Exactly 1/rps apart
    Constant,
    /// Exponential gaps with mean 1/rps (independent arrivals, like real users)
    Poisson,
}

/// OTLP transport of `--otlp`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317)
    Grpc,
    /// OTLP/HTTP protobuf (port 4318, path /v1/traces)
    Http,
}

/// A secret flag value (the API key): `Debug` prints `<redacted>`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_string()))
    }
}

/// One `--header 'Name: value'`. The value is marked sensitive so `Debug`
/// does not print it.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl FromStr for Header {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{s:?}: {:?} is not a valid header name", name.trim()))?;
        let mut value =
            HeaderValue::from_str(value.trim()).map_err(|_| format!("{s:?}: the value is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Header { name, value })
    }
}

impl fmt::Display for Header {
    /// Only the name: values may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

/// Parses `--rps`: a finite number above 0.
pub(crate) fn parse_rps(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("{s:?}: requests per second must be a number > 0")),
        Err(_) => Err(format!("{s:?} is not a number (requests per second, e.g. 10 or 0.5)")),
    }
}

/// `500ms`, `30s`, `5m`, `1h`, `1m30s` or a bare number of seconds (see [`crate::duration::parse`]).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}
