//! The Alertmanager receiver (docs/ALERTS.md): `POST /api/v1/alerts` takes Alertmanager's
//! webhook JSON (version 4), keeps each alert durably ([`log`]), explains its service once
//! per alert, and forwards the alert with its explanation to the configured webhooks
//! (Slack-compatible text, or the JSON of the alert and its report). `GET /api/v1/alerts`
//! lists them.
//!
//! Bounded everywhere: the body (1 MiB), the alerts of one notification ([`MAX_ALERTS`]),
//! the queue of alerts waiting for their explanation (`alerts.queue`; when it is full the
//! notification is refused with 503 and nothing is kept, so Alertmanager sends it again
//! later), forwarding (a timeout per attempt, `alerts.retries` attempts with backoff). A
//! notification repeating alerts already kept (Alertmanager repeats a group every
//! `repeat_interval`) updates their status and explains nothing again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::WebState;

pub(crate) mod log;
mod text;
mod worker;

pub(crate) use log::{AlertKey, Entry, Log};
pub use worker::run;

/// Alerts `GET /api/v1/alerts` returns by default, and at most (`limit`): each carries
/// its report, a few KB.
pub(crate) const LIST_DEFAULT: usize = 100;
/// See [`LIST_DEFAULT`].
pub(crate) const LIST_MAX: usize = 1000;
/// Alerts one notification may carry.
pub(crate) const MAX_ALERTS: usize = 1000;
/// Bytes one notification may take.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// An alert that started longer ago than this (wall clock) is explained at its start;
/// a newer one over the newest data (the data may run ahead of, or behind, the clock).
pub(crate) const RECENT: Duration = Duration::from_secs(15 * 60);

/// Where enriched alerts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// An `http://` or `https://` URL.
    pub url: String,
    /// `slack` (`{"text": ...}`, Slack's incoming webhooks and compatible chat tools) or
    /// `json` (`{"alert": ..., "report": ...}`).
    #[serde(default = "slack")]
    pub format: String,
}

fn slack() -> String {
    "slack".into()
}

/// The `alerts:` section of `slo serve`'s config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Webhooks the explained alerts are forwarded to.
    pub forward: Vec<Forward>,
    /// Alerts waiting for their explanation at most.
    pub queue: usize,
    /// Attempts per forward (1 s, 2 s, 4 s ... apart).
    pub retries: u32,
    /// Seconds one forward attempt may take.
    pub timeout_s: u64,
    /// The dashboard's URL as people reach it, for links in forwarded alerts.
    pub dashboard_url: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { forward: Vec::new(), queue: 256, retries: 3, timeout_s: 5, dashboard_url: None }
    }
}

impl AlertsConfig {
    /// Checks the forward URLs and formats; the error names the entry.
    pub fn check(&self) -> Result<(), String> {
        for (i, f) in self.forward.iter().enumerate() {
            if !(f.url.starts_with("http://") || f.url.starts_with("https://")) {
                return Err(format!("alerts.forward[{i}].url: {:?} is not an http:// or https:// URL", f.url));
            }
            if f.format != "slack" && f.format != "json" {
                return Err(format!("alerts.forward[{i}].format: {:?} is not slack or json", f.format));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// The receiver's state; clones share it.
#[derive(Debug, Clone)]
pub struct Alerts {
    log: Arc<Mutex<Log>>,
    queue: mpsc::Sender<AlertKey>,
    notifications: Family<Outcome, Counter>,
    forwards: Family<Outcome, Counter>,
}

/// The other end of the queue, for [`run`].
#[derive(Debug)]
pub struct Queue(mpsc::Receiver<AlertKey>);

impl Alerts {
    /// Opens the log in `dir`; alerts it holds still `pending` are queued again.
    pub fn open(
        dir: &std::path::Path,
        cfg: &AlertsConfig,
        registry: &mut Registry,
    ) -> std::io::Result<(Alerts, Queue)> {
        let log = Log::open(dir)?;
        let pending: Vec<AlertKey> =
            log.all().into_iter().filter(|e| e.explanation == "pending").map(Entry::key).collect();
        let (tx, rx) = mpsc::channel(cfg.queue.max(1).max(pending.len()));
        for k in pending {
            let _ = tx.try_send(k);
        }
        let a = Alerts {
            log: Arc::new(Mutex::new(log)),
            queue: tx,
            notifications: Family::default(),
            forwards: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("slo_alerts");
        r.register("notifications", "Alertmanager notifications by outcome", a.notifications.clone());
        r.register("forwards", "enriched alerts forwarded, by outcome", a.forwards.clone());
        Ok((a, Queue(rx)))
    }

    /// Up to `limit` kept alerts (firing ones, of `service`, when asked), newest first.
    pub fn list(&self, firing_only: bool, service: Option<&str>, limit: usize) -> Vec<Entry> {
        self.select(firing_only, service, limit, Entry::clone)
    }

    /// Up to `limit` alerts (firing ones, of `service`, when asked), newest first, each
    /// through `f`: only those are copied out of the log.
    fn select<T>(&self, firing_only: bool, service: Option<&str>, limit: usize, f: impl Fn(&Entry) -> T) -> Vec<T> {
        self.log
            .lock()
            .all()
            .into_iter()
            .filter(|e| {
                (!firing_only || e.status == "firing") && service.is_none_or(|s| e.service.as_deref() == Some(s))
            })
            .take(limit)
            .map(f)
            .collect()
    }
}

/// A notification, checked: the error names the field.
fn parse(body: &[u8], now: &str) -> Result<Vec<Entry>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object (Alertmanager's webhook payload)")?;
    match obj.get("version").and_then(Value::as_str) {
        Some("4") => {}
        other => return Err(format!("version: {other:?}; Alertmanager's webhook payload version 4 is read")),
    }
    let alerts = obj.get("alerts").and_then(Value::as_array).ok_or("alerts: missing or not a list")?;
    if alerts.len() > MAX_ALERTS {
        return Err(format!("alerts: {} alerts in one notification; at most {MAX_ALERTS}", alerts.len()));
    }
    let mut out = Vec::with_capacity(alerts.len());
    for (i, a) in alerts.iter().enumerate() {
        let at = |f: &str, why: &str| format!("alerts[{i}].{f}: {why}");
        let strings = |f: &str| -> Result<BTreeMap<String, String>, String> {
            match a.get(f) {
                None => Ok(BTreeMap::new()),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        v.as_str()
                            .map(|s| (k.clone(), s.to_string()))
                            .ok_or_else(|| at(&format!("{f}.{k}"), "must be a string"))
                    })
                    .collect(),
                Some(_) => Err(at(f, "must be an object of strings")),
            }
        };
        let labels = strings("labels")?;
        if labels.is_empty() {
            return Err(at("labels", "missing or empty"));
        }
        let status = match a.get("status").and_then(Value::as_str) {
            Some(s @ ("firing" | "resolved")) => s.to_string(),
            other => return Err(at("status", &format!("{other:?} is not firing or resolved"))),
        };
        let time = |f: &str| -> Result<Option<String>, String> {
            match a.get(f).and_then(Value::as_str) {
                None => Ok(None),
                // Alertmanager's "no end" is Go's zero time.
                Some(s) if s.starts_with("0001-01-01") => Ok(None),
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| Some(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                    .map_err(|_| at(f, &format!("{s:?} is not an RFC 3339 time"))),
            }
        };
        let starts_at = time("startsAt")?.ok_or_else(|| at("startsAt", "missing"))?;
        let fingerprint = match a.get("fingerprint").and_then(Value::as_str) {
            Some(f) if !f.is_empty() && f.len() <= 64 => f.to_string(),
            Some(_) => return Err(at("fingerprint", "must be 1 to 64 characters")),
            None => fingerprint_of(&labels),
        };
        let service = labels.get("service").or_else(|| labels.get("sloth_service")).cloned();
        out.push(Entry {
            fingerprint,
            status: status.clone(),
            annotations: strings("annotations")?,
            labels,
            ends_at: if status == "resolved" { time("endsAt")? } else { None },
            starts_at,
            generator_url: a
                .get("generatorURL")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(2048)
                .collect(),
            received_at: now.to_string(),
            explanation: if service.is_some() { "pending".into() } else { "unexplained".into() },
            note: service.is_none().then(|| "no service or sloth_service label to explain".into()),
            service,
            report: None,
            forwarded: Vec::new(),
        });
    }
    Ok(out)
}

/// A fingerprint of the labels when the payload has none (a hash, hex).
fn fingerprint_of(labels: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn problem(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
}

/// `POST /api/v1/alerts`.
pub(crate) async fn receive(State(st): State<WebState>, body: axum::body::Bytes) -> Response {
    let alerts = st.alerts.clone();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let parsed = match parse(&body, &now) {
        Ok(p) => p,
        Err(e) => {
            alerts.notifications.get_or_create(&Outcome { outcome: "invalid" }).inc();
            return problem(StatusCode::BAD_REQUEST, e);
        }
    };
    // The log's fsync blocks: off the async workers.
    match tokio::task::spawn_blocking(move || keep(&alerts, parsed)).await {
        Ok(r) => r,
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, format!("keeping the alerts: {e}")),
    }
}

/// Writes a notification's new and changed alerts to the log and queues the new ones, or
/// keeps nothing when the queue lacks room for them.
fn keep(alerts: &Alerts, parsed: Vec<Entry>) -> Response {
    let mut log = alerts.log.lock();
    let mut changed = Vec::new();
    let mut fresh = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in parsed {
        // An alert twice in one notification counts once.
        if !seen.insert(e.key()) {
            continue;
        }
        match log.get(&e.key()) {
            Some(old) => {
                // Seen: only its status moves; its explanation stays.
                if old.status != e.status || old.ends_at != e.ends_at {
                    let mut upd = old.clone();
                    upd.status = e.status;
                    upd.ends_at = e.ends_at;
                    changed.push(upd);
                }
            }
            None => {
                if e.explanation == "pending" {
                    fresh.push(e.key());
                }
                changed.push(e);
            }
        }
    }
    // More new alerts than the queue can ever hold: the rest are kept unexplained, or the
    // notification would be refused for ever.
    let cap = alerts.queue.max_capacity();
    if fresh.len() > cap {
        let over: std::collections::HashSet<AlertKey> = fresh.split_off(cap).into_iter().collect();
        for e in changed.iter_mut().filter(|e| over.contains(&e.key())) {
            e.explanation = "unexplained".into();
            e.note = Some(format!(
                "{} new alerts in one notification; alerts.queue explains {cap} at once",
                cap + over.len()
            ));
        }
    }
    // Room for every new alert, or nothing is kept: Alertmanager retries the notification.
    let permits = match alerts.queue.try_reserve_many(fresh.len()) {
        Ok(p) => Some(p),
        Err(_) if fresh.is_empty() => None,
        Err(_) => {
            alerts.notifications.get_or_create(&Outcome { outcome: "busy" }).inc();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "30")],
                axum::Json(
                    serde_json::json!({"error": "too many alerts waiting for their explanation; try again later"}),
                ),
            )
                .into_response();
        }
    };
    if let Err(e) = log.put(changed) {
        tracing::error!(error = %e, "writing the alert log failed");
        alerts.notifications.get_or_create(&Outcome { outcome: "error" }).inc();
        return problem(StatusCode::INTERNAL_SERVER_ERROR, format!("keeping the alerts: {e}"));
    }
    drop(log);
    if let Some(permits) = permits {
        for (p, k) in permits.zip(fresh) {
            p.send(k);
        }
    }
    alerts.notifications.get_or_create(&Outcome { outcome: "ok" }).inc();
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

/// `GET /api/v1/alerts`: kept alerts, newest first (`?status=firing`, `?service=NAME`,
/// `?limit=N`, 100 by default; another parameter is a 400 naming it).
pub(crate) async fn list(State(st): State<WebState>, axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let params = match crate::params::Params::parse(q.as_deref(), &["status", "service", "limit"]) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.0),
    };
    let firing_only = match params.get("status") {
        None => false,
        Some("firing") => true,
        Some(other) => return problem(StatusCode::BAD_REQUEST, format!("status {other:?}: only firing is a filter")),
    };
    let limit = match params.get("limit").map(str::parse::<usize>) {
        None => LIST_DEFAULT,
        Some(Ok(n)) if (1..=LIST_MAX).contains(&n) => n,
        Some(_) => return problem(StatusCode::BAD_REQUEST, format!("limit: a number from 1 to {LIST_MAX}")),
    };
    let all = st.alerts.list(firing_only, params.get("service"), limit);
    axum::Json(serde_json::json!({ "alerts": all })).into_response()
}

/// A firing alert as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertBrief {
    /// `alertname`.
    pub alertname: String,
    /// The service explained.
    pub service: Option<String>,
    /// `severity`.
    pub severity: String,
    /// `burnrate_tier`, or the SLO, or empty.
    pub detail: String,
    /// RFC 3339.
    pub starts_at: String,
    /// The verdict in one line, or why there is none (or `explaining`).
    pub verdict: String,
}

impl AlertBrief {
    fn of(e: &Entry) -> AlertBrief {
        let l = |k: &str| e.labels.get(k).cloned().unwrap_or_default();
        let detail = [l("slo"), l("burnrate_tier"), l("cause_kind"), l("cause_object")]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let verdict = match (&e.report, &e.note) {
            (Some(r), _) => text::verdict(r),
            (None, Some(n)) => format!("not explained: {n}"),
            (None, None) => "explaining...".into(),
        };
        AlertBrief {
            alertname: l("alertname"),
            service: e.service.clone(),
            severity: l("severity"),
            detail,
            starts_at: e.starts_at.clone(),
            verdict,
        }
    }
}

impl Alerts {
    /// The firing alerts of `service` (or all), newest first, at most `limit`.
    pub fn briefs(&self, service: Option<&str>, limit: usize) -> Vec<AlertBrief> {
        self.select(true, service, limit, AlertBrief::of)
    }
}

#[cfg(test)]
mod tests;
