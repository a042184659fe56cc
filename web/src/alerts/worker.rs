//! The receiver's worker: each queued alert explained once, then forwarded with bounded
//! retries, then written back to the log with the newest status.

use std::time::Duration;

use slo_analyzer::Source;

use super::{AlertsConfig, Entry, Forward, Outcome, Queue, RECENT, text};
use crate::WebState;

/// Explains and forwards queued alerts one at a time, until `cancel`.
pub async fn run(state: WebState, queue: Queue, cfg: AlertsConfig, cancel: tokio_util::sync::CancellationToken) {
    let Queue(mut rx) = queue;
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(cfg.timeout_s.max(1))).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alert forwarding: no HTTP client; alerts are kept and explained only");
            reqwest::Client::new()
        }
    };
    loop {
        let key = tokio::select! {
            _ = cancel.cancelled() => return,
            k = rx.recv() => match k { Some(k) => k, None => return },
        };
        let Some(mut entry) = state.alerts.log.lock().get(&key).cloned() else { continue };
        explain_entry(&state, &mut entry).await;
        for f in &cfg.forward {
            let outcome = forward(&client, f, &entry, &cfg, &cancel).await;
            state
                .alerts
                .forwards
                .get_or_create(&Outcome { outcome: if outcome == "sent" { "sent" } else { "failed" } })
                .inc();
            entry.forwarded.push(format!("{}: {outcome}", f.url));
        }
        // The newest status (a resolve may have come meanwhile) with this explanation; the
        // log's fsync off the async workers.
        let alerts = state.alerts.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut log = alerts.log.lock();
            if let Some(now) = log.get(&key) {
                entry.status.clone_from(&now.status);
                entry.ends_at.clone_from(&now.ends_at);
            }
            log.put(vec![entry])
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writing the alert log failed"),
            Err(e) => tracing::error!(error = %e, "writing the alert log failed"),
        }
    }
}

async fn explain_entry(state: &WebState, entry: &mut Entry) {
    let Some(service) = entry.service.clone() else { return };
    let started = chrono::DateTime::parse_from_rfc3339(&entry.starts_at)
        .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
        .unwrap_or(0);
    let age = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - started;
    let at = (age > RECENT.as_nanos() as i64).then_some(started);
    // Through the dashboard's cache: the alert, the page and the regression gauge give
    // one verdict for one moment.
    let (source, verdicts) = (Source::new(state.store.snapshot()), state.verdicts.clone());
    let key = (service, at, crate::watch::WINDOW);
    match state.runner.run(async move { crate::gather::explain_into(&source, &verdicts, key).await }).await {
        Ok(Ok(Ok(r))) => {
            entry.explanation = "explained".into();
            entry.report = Some((*r).clone());
        }
        Ok(Ok(Err(why))) => {
            entry.explanation = "unexplained".into();
            entry.note = Some(why);
        }
        Ok(Err(e)) => {
            entry.explanation = "unexplained".into();
            entry.note = Some(e.to_string());
        }
        Err(refused) => {
            entry.explanation = "unexplained".into();
            entry.note = Some(format!("explain did not run: {refused:?}"));
        }
    }
}

async fn forward(
    client: &reqwest::Client,
    f: &Forward,
    e: &Entry,
    cfg: &AlertsConfig,
    cancel: &tokio_util::sync::CancellationToken,
) -> String {
    let body = if f.format == "json" {
        serde_json::json!({ "alert": e, "report": e.report })
    } else {
        serde_json::json!({ "text": text::slack(e, cfg.dashboard_url.as_deref()) })
    };
    let mut last = String::new();
    for attempt in 0..cfg.retries.max(1) {
        if attempt > 0 {
            let wait = Duration::from_secs(1 << (attempt - 1).min(5));
            tokio::select! {
                _ = cancel.cancelled() => return format!("failed: shutting down after {last}"),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match client.post(&f.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return "sent".into(),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(err) => last = if err.is_timeout() { "timed out".into() } else { "unreachable".into() },
        }
    }
    format!("failed: {last} after {} attempts", cfg.retries.max(1))
}
