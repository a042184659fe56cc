//! The result of a run: JSON for `--out` (shape in the module doc of
//! [`crate::endpoint`]) and a table for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::args::{Api, Arrival, TargetArgs};
use super::stats::{Recorder, Summary};
use crate::dist::TokenDist;

/// Send lag p99 above which the report says the generator did not keep up.
const KEPT_UP_MS: f64 = 10.0;

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub config: ConfigEcho,
    /// Start of the schedule, RFC 3339 UTC.
    pub started_at: String,
    /// Start of the schedule to the last request finished.
    pub elapsed_s: f64,
    /// Start of the schedule to the last intended send (or Ctrl-C).
    pub send_window_s: f64,
    pub counts: Counts,
    pub rates: Rates,
    /// How percentiles are computed.
    pub percentiles: &'static str,
    /// Intended send → last byte, successful requests.
    pub latency_ms: Option<Summary>,
    /// Intended send → first content token (streaming).
    pub ttft_ms: Option<Summary>,
    /// Time per output token after the first: (latency − TTFT) / (tokens − 1).
    pub tpot_ms: Option<Summary>,
    /// Inter-token latency: gaps between content chunks.
    pub itl_ms: Option<Summary>,
    /// Actual − intended send time, every sent request.
    pub send_lag_ms: Option<Summary>,
    /// True when the send lag p99 stayed under 10 ms.
    pub kept_up: bool,
    /// Set when `--otlp` export failed (the measurements still hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_error: Option<String>,
}

/// The settings the run used (header values and the API key are left out).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEcho {
    pub url: String,
    pub model: String,
    pub api: Api,
    pub stream: bool,
    pub arrival: Arrival,
    pub rps: f64,
    pub duration_s: f64,
    pub prompt_tokens: TokenDist,
    pub output_tokens: TokenDist,
    pub timeout_s: f64,
    pub max_in_flight: usize,
    pub seed: u64,
    pub headers: Vec<String>,
    pub otlp: Option<String>,
}

impl ConfigEcho {
    pub(crate) fn new(args: &TargetArgs, model: String, seed: u64) -> Self {
        ConfigEcho {
            url: args.base_url().to_owned(),
            model,
            api: args.api,
            stream: !args.no_stream,
            arrival: args.arrival,
            rps: args.rps,
            duration_s: args.duration.as_secs_f64(),
            prompt_tokens: args.prompt_tokens.clone(),
            output_tokens: args.output_tokens.clone(),
            timeout_s: args.timeout.as_secs_f64(),
            max_in_flight: args.max_in_flight,
            seed,
            headers: args.headers.iter().map(ToString::to_string).collect(),
            otlp: args.otlp.clone(),
        }
    }
}

/// Requests by fate. `scheduled = sent + dropped + cancelled`;
/// `sent = ok + errors + unfinished`.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    /// Failed requests, all kinds.
    pub errors: u64,
    /// By kind: `http_<code>`, `timeout`, `connect`, `stream_broken`, `bad_response`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Due while `--max-in-flight` were outstanding: not sent (client saturated).
    pub dropped: u64,
    /// Not sent because the run was cancelled (Ctrl-C).
    pub cancelled: u64,
    /// Sent but not finished when the run gave up waiting.
    pub unfinished: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Achieved rates.
#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    /// Sent requests over the send window: compare with `config.rps`.
    pub sent_rps: f64,
    /// Successful requests over the whole run.
    pub ok_rps: f64,
    /// Output tokens of successful requests over the whole run.
    pub output_tokens_per_s: f64,
}

/// What `run` knows at the end besides the recorder.
pub(crate) struct Ending {
    pub config: ConfigEcho,
    pub started_at: String,
    pub elapsed_s: f64,
    pub send_window_s: f64,
    pub scheduled: u64,
    pub cancelled: u64,
    pub otlp_error: Option<String>,
}

impl TargetReport {
    pub(crate) fn new(r: &Recorder, e: Ending) -> Self {
        let errors = r.error_count();
        let per = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
        let send_lag_ms = r.send_lag.summary();
        TargetReport {
            counts: Counts {
                scheduled: e.scheduled,
                sent: r.sent,
                ok: r.ok,
                errors,
                errors_by_kind: r.errors.clone(),
                dropped: r.dropped,
                cancelled: e.cancelled,
                unfinished: r.sent.saturating_sub(r.ok + errors),
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
            },
            rates: Rates {
                sent_rps: per(r.sent as f64, e.send_window_s),
                ok_rps: per(r.ok as f64, e.elapsed_s),
                output_tokens_per_s: per(r.output_tokens as f64, e.elapsed_s),
            },
            percentiles: "log-bucketed histogram, within 1% of exact; min, mean and max exact",
            latency_ms: r.latency.summary(),
            ttft_ms: r.ttft.summary(),
            tpot_ms: r.tpot.summary(),
            itl_ms: r.itl.summary(),
            kept_up: send_lag_ms.is_none_or(|s| s.p99 < KEPT_UP_MS),
            send_lag_ms,
            config: e.config,
            started_at: e.started_at,
            elapsed_s: e.elapsed_s,
            send_window_s: e.send_window_s,
            otlp_error: e.otlp_error,
        }
    }

    /// The summary printed at the end of a run.
    pub fn render_table(&self) -> String {
        let c = &self.config;
        let n = &self.counts;
        let mut out = String::new();
        let mode = if c.stream { "stream" } else { "no-stream" };
        let api = if c.api == Api::Chat { "chat" } else { "completions" };
        let arrival = if c.arrival == Arrival::Poisson { "poisson" } else { "constant" };
        let _ = writeln!(out, "target    {} model {} ({api}, {mode})", c.url, c.model);
        let _ = writeln!(
            out,
            "load      {arrival} {} req/s for {}s, seed {}, prompt {} tokens, output {} tokens",
            c.rps, c.duration_s, c.seed, c.prompt_tokens, c.output_tokens
        );
        let _ = writeln!(
            out,
            "requests  scheduled {}  sent {}  ok {}  errors {}  dropped {}  cancelled {}  unfinished {}",
            n.scheduled, n.sent, n.ok, n.errors, n.dropped, n.cancelled, n.unfinished
        );
        if !n.errors_by_kind.is_empty() {
            let kinds: Vec<String> = n.errors_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(out, "errors    {}", kinds.join("  "));
        }
        let _ = writeln!(
            out,
            "rates     sent {:.2} req/s  ok {:.2} req/s  output {:.1} tok/s  over {:.1}s",
            self.rates.sent_rps, self.rates.ok_rps, self.rates.output_tokens_per_s, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "\n{:<10}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "ms", "count", "min", "mean", "p50", "p90", "p95", "p99", "max"
        );
        for (name, s) in [
            ("latency", &self.latency_ms),
            ("ttft", &self.ttft_ms),
            ("tpot", &self.tpot_ms),
            ("itl", &self.itl_ms),
            ("send lag", &self.send_lag_ms),
        ] {
            match s {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "{name:<10}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
                        s.count, s.min, s.mean, s.p50, s.p90, s.p95, s.p99, s.max
                    );
                }
                None => {
                    let _ = writeln!(out, "{name:<10}{:>8}", "-");
                }
            }
        }
        let _ = writeln!(out, "\nlatencies count from each request's intended send time (open loop).");
        if !self.kept_up {
            let lag = self.send_lag_ms.map_or(0.0, |s| s.p99);
            let _ = writeln!(
                out,
                "WARNING: the generator fell behind its schedule (send lag p99 {lag:.1} ms); \
                 latencies still count from intended times, but use fewer --rps or a bigger client"
            );
        }
        if n.dropped > 0 {
            let _ = writeln!(out, "WARNING: {} requests dropped at --max-in-flight {}", n.dropped, c.max_in_flight);
        }
        if let Some(e) = &self.otlp_error {
            let _ = writeln!(out, "WARNING: {e}");
        }
        out
    }
}
