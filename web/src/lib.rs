//! The web side of `slo`: health, readiness, `/metrics`, the read-only JSON API and the
//! dashboard's pages ([`pages`]: templates, [`chart`]: server-drawn SVG, [`gather`]: what
//! each page reads); and
//! how every port of the process is served ([`listen`]: connection bounds, timeouts, TLS)
//! and locked ([`auth`]: bearer tokens).
//!
//! Architecture invariant: nothing here writes to the store; the query API runs only
//! queries (see `slo_store::query`). The one file written is the alert log
//! ([`alerts::log`]), under the data directory.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use slo_store::Store;
use slo_store::output::{self, Format};

mod alerts;
mod auth;
mod chart;
mod filters;
mod gather;
mod listen;
mod pages;
mod params;
mod runner;
mod verdicts;
mod watch;

pub use alerts::{Alerts, AlertsConfig, Queue as AlertQueue, run as run_alerts};
pub use auth::{AuthConfig, Guard, Tokens};
pub use listen::{ListenConfig, ListenMetrics, TlsConfig, serve};
pub use runner::{Refusal, Runner, RunnerConfig};
pub use verdicts::Verdicts;
pub use watch::{RegressionMetrics, run as watch_regressions};

/// Whether the service is ready, and why not.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The health of every scrape target, as JSON (an array of objects).
pub type TargetsStatus = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    /// The store, read through snapshots.
    pub store: Store,
    /// Every metric of the process.
    pub registry: Arc<Registry>,
    /// The readiness check.
    pub ready: Readiness,
    /// Where queries and explanations run (own threads, bounded, timed out).
    pub runner: Runner,
    /// Scrape targets and their health (`/api/v1/targets`).
    pub targets: TargetsStatus,
    /// The SLOs of the config (`/api/v1/explain?slo=NAME`).
    pub slos: Arc<Vec<slo_analyzer::spec::Slo>>,
    /// Explain reports the pages reuse a short while.
    pub verdicts: Verdicts,
    /// Alerts received from Alertmanager, with their explanations.
    pub alerts: alerts::Alerts,
}

/// Explains again, ahead of expiry, the live views someone is watching
/// ([`Verdicts::due`]), one at a time on the query runner, until `cancel`.
pub async fn keep_warm(state: WebState, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for key in state.verdicts.due() {
            let source = slo_analyzer::Source::new(state.store.snapshot());
            let (verdicts, service) = (state.verdicts.clone(), key.0.clone());
            match state.runner.run(async move { gather::explain_into(&source, &verdicts, key).await }).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, service, "explaining a watched view failed"),
                // Busy or timed out: the page explains it itself when it comes.
                Err(_) => break,
            }
        }
    }
}

/// The routes of the web port.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/query", get(query_get).post(query_post))
        .route("/api/v1/explain", get(explain))
        .route(
            "/api/v1/alerts",
            get(alerts::list).post(alerts::receive).layer(axum::extract::DefaultBodyLimit::max(alerts::MAX_BODY)),
        )
        .route("/api/v1/targets", get(|State(st): State<WebState>| async move { Json((st.targets)()) }))
        .merge(pages::routes())
        .fallback(pages::not_found)
        .with_state(state)
}

async fn readyz(State(st): State<WebState>) -> Response {
    match (st.ready)() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(st): State<WebState>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &st.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response(),
    }
}

/// A query request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL statement over the tables the README lists.
    pub sql: String,
    /// `json` (default), `csv` or `table`.
    #[serde(default)]
    pub format: Option<String>,
}

async fn query_get(State(st): State<WebState>, Query(q): Query<QueryRequest>) -> Response {
    run_query(st, q).await
}

async fn query_post(State(st): State<WebState>, Json(q): Json<QueryRequest>) -> Response {
    run_query(st, q).await
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

fn refused(what: &str, r: Refusal) -> Response {
    match r {
        Refusal::Busy(n) => {
            let mut resp =
                error(StatusCode::TOO_MANY_REQUESTS, format!("{n} queries are running; retry when one has finished"));
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
        Refusal::TimedOut(t) => error(StatusCode::GATEWAY_TIMEOUT, format!("{what} ran past {t:?} and was stopped")),
        Refusal::Failed(e) => {
            tracing::error!(error = %e, "{what} task failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed: {e}"))
        }
    }
}

async fn run_query(st: WebState, q: QueryRequest) -> Response {
    let format = match q.format.as_deref().unwrap_or("json").parse::<Format>() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let snapshot = st.store.snapshot();
    let limits = st.runner.limits().clone();
    let result = st.runner.run(async move { snapshot.query(&q.sql, &limits).await }).await;
    let batches = match result {
        Err(r) => return refused("query", r),
        Ok(Err(e)) if e.is_user_error() => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "query failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Ok(Ok(b)) => b,
    };
    match output::render(&batches, format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/explain?service=S&at=RFC3339&window=1h`: the report of `slo explain` (a
/// service's kept for the pages' while: [`verdicts`]).
#[derive(Debug, Deserialize)]
struct ExplainRequest {
    service: Option<String>,
    slo: Option<String>,
    at: Option<String>,
    window: Option<String>,
}

async fn explain(State(st): State<WebState>, Query(q): Query<ExplainRequest>) -> Response {
    let window = match slo_analyzer::text::parse_window(q.window.as_deref().unwrap_or("1h")) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let at = match q.at.as_deref().map(slo_analyzer::text::parse_time).transpose() {
        Ok(Some(t)) if !(params::EARLIEST_AT..=params::LATEST_AT).contains(&t) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("at {:?} is not between 1970 and 2200", q.at.unwrap_or_default()),
            );
        }
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut query = slo_analyzer::Query::new(q.service, at, window);
    if let Some(name) = &q.slo {
        match st.slos.iter().find(|s| &s.name == name) {
            Some(s) => query.slo = Some(s.clone()),
            None => {
                let names: Vec<&str> = st.slos.iter().map(|s| s.name.as_str()).collect();
                let known = if names.is_empty() { "none configured".to_string() } else { names.join(", ") };
                return error(StatusCode::BAD_REQUEST, format!("no SLO named {name:?} (SLOs: {known})"));
            }
        }
    }
    // A service's report without an SLO is the one the pages show: kept a while and shared
    // with them, so the page and the API give the same answer at the same moment.
    let key = match (&query.service, &query.slo) {
        (Some(s), None) => Some((s.clone(), query.at, query.window)),
        _ => None,
    };
    let source = slo_analyzer::Source::new(st.store.snapshot());
    let result = match key {
        Some(k) => {
            let kept = st.verdicts.get(&k);
            let verdicts = st.verdicts.clone();
            match kept {
                Some(v) => Ok(Ok(v)),
                None => st.runner.run(async move { gather::explain_into(&source, &verdicts, k).await }).await,
            }
        }
        None => {
            st.runner.run(async move { slo_analyzer::explain(&source, &query).await.map(|r| Ok(Arc::new(r))) }).await
        }
    };
    match result {
        Err(r) => refused("explain", r),
        Ok(Ok(Ok(report))) => Json(report.as_ref()).into_response(),
        Ok(Ok(Err(msg))) => error(StatusCode::BAD_REQUEST, msg),
        Ok(Err(e)) if e.is_user_error() => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "explain failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
