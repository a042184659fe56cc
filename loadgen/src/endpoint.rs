//! `slo loadgen target`: open-loop load against any OpenAI-compatible endpoint.
//!
//! The schedule (every intended send time, prompt and output length) is fixed
//! from the seed before the first request, with constant spacing or Poisson
//! gaps. Each request is sent at its intended time however many are still
//! outstanding, and its latency, TTFT and span start count from that intended
//! time: a stalled server shows up in the percentiles instead of quietly
//! slowing the load down (no coordinated omission). The send lag (actual −
//! intended) says whether the generator itself kept up. Past
//! `--max-in-flight` outstanding requests a due request is counted as
//! dropped, never delayed.
//!
//! Each request carries a W3C `traceparent` of its client span; `--otlp`
//! exports those spans. Ctrl-C (the cancellation token) stops sending, waits
//! for the requests in flight (each bounded by `--timeout`) and still reports.
//!
//! # JSON result (`--out FILE`)
//!
//! ```json
//! { "config": { "url": "http://127.0.0.1:8000", "model": "llama", "api": "chat", "stream": true,
//!               "arrival": "poisson", "rps": 10.0, "duration_s": 30.0,
//!               "prompt_tokens": "lognormal:512,0.6", "output_tokens": "lognormal:128,0.5",
//!               "timeout_s": 60.0, "max_in_flight": 4096, "seed": 7, "headers": ["x-team"], "otlp": null },
//!   "started_at": "2026-11-22T14:00:00.000Z", "elapsed_s": 31.2, "send_window_s": 30.0,
//!   "counts": { "scheduled": 300, "sent": 300, "ok": 296, "errors": 4,
//!               "errors_by_kind": { "http_429": 3, "timeout": 1 },
//!               "dropped": 0, "cancelled": 0, "unfinished": 0, "input_tokens": 160000, "output_tokens": 38000 },
//!   "rates": { "sent_rps": 10.0, "ok_rps": 9.49, "output_tokens_per_s": 1218.0 },
//!   "percentiles": "log-bucketed histogram, within 1% of exact; min, mean and max exact",
//!   "latency_ms":  { "count": 296, "min": 310.0, "mean": 900.1, "p50": 850.2, "p90": 1400.0,
//!                    "p95": 1600.0, "p99": 2100.0, "max": 2400.0 },
//!   "ttft_ms": { ... }, "tpot_ms": { ... }, "itl_ms": { ... }, "send_lag_ms": { ... },
//!   "kept_up": true }
//! ```
//! A summary is `null` when nothing was measured (e.g. `ttft_ms` without
//! streaming); `otlp_error` appears only when the span export failed.
//! `scheduled = sent + dropped + cancelled`, `sent = ok + errors + unfinished`.

mod args;
mod client;
mod progress;
mod report;
mod schedule;
mod sse;
mod stats;
mod telemetry;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use args::{OtlpProtocol, TargetArgs};
pub use report::TargetReport;
pub(crate) use schedule::{Planned, Schedule};

use client::Endpoint;
use progress::Progress;
use report::Ending;
use stats::Recorder;
use telemetry::Telemetry;

use crate::error::{Error, Result};

/// What every request task shares.
struct Shared {
    endpoint: Endpoint,
    telemetry: Telemetry,
    recorder: Arc<Mutex<Recorder>>,
    in_flight: Arc<AtomicUsize>,
}

/// Runs the load and reports what it measured (also written to `--out`).
pub async fn run(args: TargetArgs, cancel: CancellationToken) -> Result<TargetReport> {
    args.validate()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let (http, headers) = client::http_client(&args)?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => client::discover_model(&http, args.base_url(), &headers).await?,
    };
    let telemetry = Telemetry::new(args.otlp.as_deref(), args.otlp_protocol, &args.otlp_auth.load()?)?;
    let shared = Arc::new(Shared {
        endpoint: Endpoint {
            client: http,
            url: format!("{}{}", args.base_url(), args.api.path()),
            api: args.api,
            model: model.clone(),
            stream: !args.no_stream,
            headers,
            timeout: args.timeout,
        },
        telemetry,
        recorder: Arc::new(Mutex::new(Recorder::default())),
        in_flight: Arc::new(AtomicUsize::new(0)),
    });
    let mut schedule = Schedule::new(
        seed,
        args.arrival,
        args.rps,
        args.duration,
        args.prompt_tokens.clone(),
        args.output_tokens.clone(),
    );
    let tracker = TaskTracker::new();
    let start = Instant::now();
    let wall = SystemTime::now();
    let progress =
        Progress::start(!args.no_progress, args.duration, start, shared.recorder.clone(), shared.in_flight.clone());
    tracing::info!(url = %args.base_url(), %model, rps = args.rps, seed, "open-loop load started");

    let (mut scheduled, mut cancelled) = (0u64, 0u64);
    while let Some(p) = schedule.next() {
        scheduled += 1;
        let intended = start + p.at;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                cancelled = 1 + schedule.by_ref().count() as u64;
                scheduled += cancelled - 1;
                break;
            }
            _ = tokio::time::sleep_until(intended.into()) => {}
        }
        if shared.in_flight.load(Ordering::Acquire) >= args.max_in_flight {
            shared.recorder.lock().drop_saturated();
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        shared.recorder.lock().sent += 1;
        let intended_wall = wall + p.at;
        tracker.spawn(request(shared.clone(), p, intended, intended_wall));
    }
    let send_window = if cancelled > 0 { start.elapsed() } else { args.duration };

    // Every request ends within its own --timeout; the extra second is a backstop.
    tracker.close();
    if tokio::time::timeout(args.timeout + Duration::from_secs(1), tracker.wait()).await.is_err() {
        tracing::warn!(in_flight = shared.in_flight.load(Ordering::Acquire), "gave up waiting for requests");
    }
    let elapsed = start.elapsed();
    progress.finish();

    let otlp_error = shared.telemetry.shutdown().await;
    if let Some(e) = &otlp_error {
        tracing::warn!(error = %e, "span export failed");
    }
    let ending = Ending {
        config: report::ConfigEcho::new(&args, model, seed),
        started_at: chrono::DateTime::<chrono::Utc>::from(wall).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        elapsed_s: elapsed.as_secs_f64(),
        send_window_s: send_window.as_secs_f64(),
        scheduled,
        cancelled,
        otlp_error,
    };
    let report = TargetReport::new(&shared.recorder.lock(), ending);
    if let Some(path) = &args.out {
        let context = || format!("writing {}", path.display());
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::io(context(), e.into()))?;
        std::fs::write(path, json).map_err(|e| Error::io(context(), e))?;
    }
    Ok(report)
}

/// One request: span, send, measure, record.
async fn request(shared: Arc<Shared>, p: Planned, intended: Instant, intended_wall: SystemTime) {
    let e = &shared.endpoint;
    let (span, traceparent) = shared.telemetry.start(e.api, &e.model, &p, intended_wall);
    let outcome = e.send(&p, intended, traceparent).await;
    let end = intended_wall + intended.elapsed();
    shared.telemetry.end(span, &outcome, end);
    shared.recorder.lock().record(&outcome);
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
}
