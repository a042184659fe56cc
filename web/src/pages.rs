//! The dashboard: server-rendered pages (tera templates embedded in the binary) and the
//! JSON endpoints that give every number they show.
//!
//! | page                 | JSON                                   |
//! |----------------------|----------------------------------------|
//! | `/`                  | `/api/v1/services`                     |
//! | `/services/{name}`   | `/api/v1/services/{name}` (+ `/api/v1/series`, `/api/v1/explain`) |
//! | `/changes`           | `/api/v1/changes`                      |
//! | `/slos`, `/slos/{n}` | `/api/v1/slos`, `/api/v1/slos/{name}`  |
//!
//! Each page is one job on the query runner (bounded, timed out) that gathers what the
//! page shows ([`crate::gather`]); a failure is a page of its own with its status and a
//! sentence naming the problem. Pages are deep links (`window`, `at` in the URL) and the
//! live view (no `at`) reloads itself. Nothing is fetched from elsewhere: the stylesheet
//! is served from the binary and the Content-Security-Policy allows nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use slo_analyzer::MINUTE_NS;
use slo_analyzer::Source;
use slo_analyzer::board::{ChangeFilter, SeriesReport};

use crate::chart::{self, Chart, Line, Unit};
use crate::gather::{self, Ctx, Failure};
use crate::params::{BadParam, Params};
use crate::{Refusal, WebState};

/// Seconds between reloads of a live page.
pub(crate) const REFRESH_S: u64 = 15;
/// Ranges the picker offers.
pub(crate) const WINDOWS: [&str; 4] = ["1h", "6h", "24h", "7d"];
const HOUR: i64 = 60 * MINUTE_NS;

/// What every page answers with besides its body.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The routes of the dashboard and its API.
pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(overview_page))
        .route("/services/{name}", get(service_page))
        .route("/changes", get(changes_page))
        .route("/slos", get(slos_page))
        .route("/slos/{name}", get(slo_page))
        .route("/assets/style.css", get(stylesheet))
        .route("/api/v1/services", get(overview_json))
        .route("/api/v1/services/{name}", get(service_json))
        .route("/api/v1/series", get(series_json))
        .route("/api/v1/changes", get(changes_json))
        .route("/api/v1/slos", get(slos_json))
        .route("/api/v1/slos/{name}", get(slo_json))
}

/// Why a request got no page.
#[derive(Debug)]
pub(crate) enum Problem {
    /// A bad parameter (400).
    Bad(String),
    /// An unknown name (404).
    NotFound(String),
    /// The runner refused or timed out.
    Refused(Refusal),
    /// The analyzer failed.
    Internal(String),
}

impl From<BadParam> for Problem {
    fn from(e: BadParam) -> Problem {
        Problem::Bad(e.0)
    }
}

impl Problem {
    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            Problem::Bad(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Problem::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Problem::Refused(Refusal::Busy(n)) => {
                (StatusCode::TOO_MANY_REQUESTS, format!("{n} queries are running; retry when one has finished"))
            }
            Problem::Refused(Refusal::TimedOut(t)) => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("gathering this page ran past {t:?} and was stopped; a shorter window answers faster"),
            ),
            Problem::Refused(Refusal::Failed(e)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("the page's task failed: {e}"))
            }
            Problem::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m.clone()),
        }
    }

    /// The problem as JSON `{"error": ...}`.
    pub(crate) fn json(&self) -> Response {
        let (status, msg) = self.status_and_message();
        self.retry_hint(with_headers((status, axum::Json(json!({ "error": msg }))).into_response(), "no-store"))
    }

    /// Shed work (429) says when to come back, as the query API does.
    fn retry_hint(&self, mut r: Response) -> Response {
        if matches!(self, Problem::Refused(Refusal::Busy(_))) {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }

    /// The problem as a page.
    pub(crate) fn page(&self) -> Response {
        let (status, msg) = self.status_and_message();
        let mut ctx = base_context("", None, "", String::new());
        ctx.insert("status", &format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")));
        ctx.insert("message", &msg);
        match render("error.html", &ctx) {
            Ok(html) => self.retry_hint(with_headers((status, axum::response::Html(html)).into_response(), "no-store")),
            Err(e) => (status, e).into_response(),
        }
    }
}

fn with_headers(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn gathered<T, F, Fut>(st: &WebState, job: F) -> Result<T, Problem>
where
    F: FnOnce(Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    T: Send + 'static,
{
    let ctx = Ctx {
        source: Arc::new(Source::new(st.store.snapshot())),
        slos: st.slos.clone(),
        verdicts: st.verdicts.clone(),
        alerts: st.alerts.clone(),
    };
    match st.runner.run(async move { job(ctx).await }).await {
        Err(r) => Err(Problem::Refused(r)),
        Ok(Err(Failure::NotFound(m))) => Err(Problem::NotFound(m)),
        Ok(Err(Failure::Analyzer(e))) if e.is_user_error() => Err(Problem::Bad(e.to_string())),
        Ok(Err(Failure::Analyzer(e))) => {
            tracing::error!(error = %e, "gathering a page failed");
            Err(Problem::Internal(e.to_string()))
        }
        Ok(Ok(v)) => Ok(v),
    }
}

fn json_of<T: Serialize>(r: Result<T, Problem>) -> Response {
    match r {
        Ok(v) => with_headers(axum::Json(v).into_response(), "no-store"),
        Err(p) => p.json(),
    }
}

// ---------------------------------------------------------------------------------------
// Templates.

fn engine() -> &'static Result<tera::Tera, String> {
    static ENGINE: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut t = tera::Tera::default();
        t.add_raw_templates([
            ("base.html", include_str!("../templates/base.html")),
            ("overview.html", include_str!("../templates/overview.html")),
            ("service.html", include_str!("../templates/service.html")),
            ("changes.html", include_str!("../templates/changes.html")),
            ("slos.html", include_str!("../templates/slos.html")),
            ("slo.html", include_str!("../templates/slo.html")),
            ("error.html", include_str!("../templates/error.html")),
        ])
        .map_err(|e| format!("{e:?}"))?;
        crate::filters::register(&mut t);
        Ok(t)
    })
}

/// Renders a template (errors are bugs: the templates are compiled in and tested).
pub(crate) fn render(name: &str, ctx: &tera::Context) -> Result<String, String> {
    let t = engine().as_ref().map_err(|e| format!("templates: {e}"))?;
    t.render(name, ctx).map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        tracing::error!(template = name, error = %msg, "rendering failed");
        msg
    })
}

/// What every page's context holds: the nav, the range and links that keep it.
fn base_context(nav: &str, range: Option<&gather::Range>, api: &str, extra: String) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("nav", nav);
    ctx.insert("windows", &WINDOWS);
    ctx.insert("refresh_s", &REFRESH_S);
    ctx.insert("api", api);
    ctx.insert("extra", &extra);
    let mut keep = String::new();
    if let Some(r) = range {
        ctx.insert("range", r);
        keep = format!("?window={}", r.window);
        if let Some(at) = &r.at {
            keep.push_str(&format!("&at={}", crate::params::encode(at)));
        }
    }
    ctx.insert("keep", &keep);
    ctx.insert("hidden", &BTreeMap::<String, String>::new());
    ctx
}

fn api_url(path: &str, range: &gather::Range) -> String {
    let mut u = format!("{path}?window={}", range.window);
    if let Some(at) = &range.at {
        u.push_str(&format!("&at={}", crate::params::encode(at)));
    }
    u
}

async fn stylesheet() -> Response {
    let mut r =
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../assets/style.css")).into_response();
    r = with_headers(r, "public, max-age=300");
    r
}

// ---------------------------------------------------------------------------------------
// Overview.

async fn overview_data(st: &WebState, raw: Option<String>) -> Result<gather::Overview, Problem> {
    let p = Params::parse(raw.as_deref(), &["window", "at"])?;
    let asked = p.range(HOUR)?;
    gathered(st, move |ctx| async move { gather::overview(&ctx, asked).await }).await
}

async fn overview_json(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    json_of(overview_data(&st, raw).await)
}

async fn overview_page(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    match overview_data(&st, raw).await {
        Err(p) => p.page(),
        Ok(o) => html_of("overview.html", overview_html(&o)),
    }
}

fn html_of(name: &str, r: Result<String, String>) -> Response {
    match r {
        Ok(html) => with_headers(axum::response::Html(html).into_response(), "no-store"),
        Err(e) => Problem::Internal(format!("rendering {name}: {e}")).page(),
    }
}

/// The overview page's HTML.
pub(crate) fn overview_html(o: &gather::Overview) -> Result<String, String> {
    let mut ctx = base_context("overview", Some(&o.range), &api_url("/api/v1/services", &o.range), String::new());
    let sparks: Vec<String> = o.services.iter().map(|r| chart::sparkline(&r.line.sparkline)).collect();
    ctx.insert("sparks", &sparks);
    ctx.insert("page", o);
    render("overview.html", &ctx)
}

// ---------------------------------------------------------------------------------------
// Service.

async fn service_data(st: &WebState, name: String, raw: Option<String>) -> Result<gather::ServiceView, Problem> {
    let p = Params::parse(raw.as_deref(), &["window", "at"])?;
    let asked = p.range(HOUR)?;
    check_name("service", &name)?;
    gathered(st, move |ctx| async move { gather::service(&ctx, &name, asked).await }).await
}

/// Names come from the URL: bounded and printable, so a message can quote them.
fn check_name(what: &str, name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
        return Err(Problem::Bad(format!("{what} name: 1 to 253 printable characters")));
    }
    Ok(())
}

async fn service_json(State(st): State<WebState>, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Response {
    json_of(service_data(&st, name, raw).await)
}

/// The charts of a service's page, from its series.
pub(crate) fn service_charts(v: &gather::ServiceView) -> Vec<String> {
    let s: &SeriesReport = &v.series;
    let t_ms: Vec<i64> = s.points.iter().map(|p| p.t_ms).collect();
    let step_ms = s.step_s * 1000;
    let band = v.report.as_ref().and_then(|r| {
        let onset = r.regression.onset.as_deref()?;
        let t = slo_analyzer::text::parse_time(onset).ok()? / 1_000_000;
        r.regression.detected.then_some((t, t_ms.last().map_or(t, |l| l + step_ms)))
    });
    let col = |f: fn(&slo_analyzer::board::Point) -> Option<f64>| s.points.iter().map(f).collect::<Vec<_>>();
    let mk = |id, title, unit, lines| {
        Chart { id, title, unit, t_ms: t_ms.clone(), step_ms, lines, markers: &v.changes, band, y_max: None }.render()
    };
    vec![
        mk(
            "latency",
            "Duration percentiles",
            Unit::Ms,
            vec![
                Line { name: "p50", class: "p50", values: col(|p| p.p50) },
                Line { name: "p95", class: "p95", values: col(|p| p.p95) },
                Line { name: "p99", class: "p99", values: col(|p| p.p99) },
            ],
        ),
        mk(
            "split",
            "p99: queue and compute time",
            Unit::Ms,
            vec![
                Line { name: "p99 duration", class: "p99", values: col(|p| p.p99) },
                Line { name: "p99 queue", class: "queue", values: col(|p| p.queue_p99) },
                Line { name: "p99 compute", class: "compute", values: col(|p| p.compute_p99) },
            ],
        ),
        mk(
            "ttft",
            "Time to first token, p99",
            Unit::Ms,
            vec![Line { name: "TTFT p99", class: "ttft", values: col(|p| p.ttft_p99) }],
        ),
        mk(
            "traffic",
            "Requests and errors per second",
            Unit::PerSec,
            vec![
                Line { name: "requests", class: "rate", values: col(|p| Some(p.rate)) },
                Line {
                    name: "errors",
                    class: "err",
                    values: col(|p| Some(p.errors as f64 * p.rate / (p.requests.max(1) as f64))),
                },
            ],
        ),
        mk(
            "tokens",
            "Tokens per second",
            Unit::PerSec,
            vec![
                Line { name: "prompt", class: "tin", values: col(|p| Some(p.input_tokens_rate)) },
                Line { name: "output", class: "tout", values: col(|p| Some(p.output_tokens_rate)) },
            ],
        ),
    ]
}

async fn service_page(State(st): State<WebState>, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Response {
    match service_data(&st, name, raw).await {
        Err(p) => p.page(),
        Ok(v) => html_of("service.html", service_html(&v)),
    }
}

/// A service page's HTML.
pub(crate) fn service_html(v: &gather::ServiceView) -> Result<String, String> {
    let api = api_url(&format!("/api/v1/services/{}", crate::params::encode(&v.service)), &v.range);
    let mut ctx = base_context("service", Some(&v.range), &api, String::new());
    ctx.insert("charts", &service_charts(v));
    let gpu_sparks: Vec<String> = v.gpus.iter().map(|g| chart::sparkline(&g.sm_clock)).collect();
    ctx.insert("gpu_sparks", &gpu_sparks);
    ctx.insert("total", &v.series.points.iter().map(|p| p.requests).sum::<u64>());
    ctx.insert("page", v);
    ctx.insert("report", &v.report.as_deref().map(report_for_template));
    render("service.html", &ctx)
}

/// The report as the template reads it: every optional field present (null or empty),
/// since a template that tests a field the JSON left out is an error.
fn report_for_template(r: &slo_analyzer::Report) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    let fill = |o: &mut Value, keys: &[&str], empty: Value| {
        if let Some(o) = o.as_object_mut() {
            for k in keys {
                o.entry(k.to_string()).or_insert_with(|| empty.clone());
            }
        }
    };
    fill(
        &mut v["regression"],
        &[
            "reason",
            "onset",
            "p99_before_ms",
            "p99_after_ms",
            "p_value",
            "queue_share",
            "compute_share",
            "queue_p99_ms",
            "compute_p99_ms",
            "ongoing",
            "p99_now_ms",
            "note",
        ],
        Value::Null,
    );
    if v["confidence"].is_object() {
        fill(&mut v["confidence"], &["settle"], Value::Null);
        fill(&mut v["confidence"], &["because"], json!([]));
    } else if let Some(o) = v.as_object_mut() {
        o.insert("confidence".into(), Value::Null);
    }
    if let Some(o) = v.as_object_mut() {
        o.entry("common").or_insert_with(|| json!([]));
        o.entry("canary").or_insert_with(|| json!([]));
    }
    if let Some(causes) = v["causes"].as_array_mut() {
        for c in causes {
            fill(c, &["made_worse"], Value::Null);
        }
    }
    v
}

async fn series_json(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    let run = async {
        let p = Params::parse(raw.as_deref(), &["service", "model", "window", "at"])?;
        let service =
            p.get("service").ok_or_else(|| Problem::Bad("parameter \"service\" is required".into()))?.to_string();
        check_name("service", &service)?;
        let model = p.get("model").map(str::to_string);
        let asked = p.range(HOUR)?;
        gathered(&st, move |ctx| async move { gather::series(&ctx, &service, model.as_deref(), asked).await }).await
    };
    json_of(run.await)
}

// ---------------------------------------------------------------------------------------
// Changes.

async fn changes_data(st: &WebState, raw: Option<String>) -> Result<gather::ChangesView, Problem> {
    let p = Params::parse(raw.as_deref(), &["window", "at", "namespace", "kind", "object"])?;
    let asked = p.range(HOUR)?;
    let filter = ChangeFilter {
        namespace: p.get("namespace").map(str::to_string),
        kind: p.get("kind").map(str::to_string),
        object: p.get("object").map(str::to_string),
    };
    gathered(st, move |ctx| async move { gather::changes(&ctx, asked, filter).await }).await
}

async fn changes_json(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    json_of(changes_data(&st, raw).await)
}

async fn changes_page(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    match changes_data(&st, raw).await {
        Err(p) => p.page(),
        Ok(v) => html_of("changes.html", changes_html(&v)),
    }
}

/// The changes page's HTML.
pub(crate) fn changes_html(v: &gather::ChangesView) -> Result<String, String> {
    let mut extra = String::new();
    let mut hidden = BTreeMap::new();
    for (k, val) in [("namespace", &v.namespace), ("kind", &v.kind), ("object", &v.object)] {
        if let Some(val) = val {
            extra.push_str(&format!("&{k}={}", crate::params::encode(val)));
            hidden.insert(k.to_string(), val.clone());
        }
    }
    let mut ctx = base_context("changes", Some(&v.range), &api_url("/api/v1/changes", &v.range), extra);
    ctx.insert("hidden", &hidden);
    ctx.insert("page", v);
    render("changes.html", &ctx)
}

// ---------------------------------------------------------------------------------------
// SLOs.

async fn slos_data(st: &WebState, raw: Option<String>) -> Result<gather::SloList, Problem> {
    let p = Params::parse(raw.as_deref(), &["window", "at"])?;
    let asked = p.range(HOUR)?;
    gathered(st, move |ctx| async move { gather::slo_list(&ctx, asked).await }).await
}

async fn slos_json(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    json_of(slos_data(&st, raw).await)
}

async fn slos_page(State(st): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    match slos_data(&st, raw).await {
        Err(p) => p.page(),
        Ok(list) => html_of("slos.html", slos_html(&list)),
    }
}

/// The SLO list's HTML.
pub(crate) fn slos_html(list: &gather::SloList) -> Result<String, String> {
    let mut ctx = base_context("slos", Some(&list.range), &api_url("/api/v1/slos", &list.range), String::new());
    ctx.insert("slos", &list.slos);
    render("slos.html", &ctx)
}

async fn slo_data(st: &WebState, name: String, raw: Option<String>) -> Result<gather::SloView, Problem> {
    let p = Params::parse(raw.as_deref(), &["window", "at"])?;
    check_name("SLO", &name)?;
    let spec = gather::find_slo(&st.slos, &name).map_err(|f| match f {
        Failure::NotFound(m) => Problem::NotFound(m),
        Failure::Analyzer(e) => Problem::Internal(e.to_string()),
    })?;
    let asked = p.range(spec.period.min(crate::params::MAX_RANGE))?;
    gathered(st, move |ctx| async move { gather::slo(&ctx, &name, asked).await }).await
}

async fn slo_json(State(st): State<WebState>, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Response {
    json_of(slo_data(&st, name, raw).await)
}

async fn slo_page(State(st): State<WebState>, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Response {
    match slo_data(&st, name, raw).await {
        Err(p) => p.page(),
        Ok(v) => html_of("slo.html", slo_html(&v)),
    }
}

/// An SLO page's HTML.
pub(crate) fn slo_html(v: &gather::SloView) -> Result<String, String> {
    let api = api_url(&format!("/api/v1/slos/{}", crate::params::encode(&v.status.name)), &v.range);
    let mut ctx = base_context("slos", Some(&v.range), &api, String::new());
    let chart = Chart {
        id: "budget",
        title: "Error budget left over the period",
        unit: Unit::Share,
        t_ms: v.budget.iter().map(|(t, _)| t - v.step_s * 1000).collect(),
        step_ms: v.step_s * 1000,
        lines: vec![Line { name: "budget left", class: "budget", values: v.budget.iter().map(|(_, b)| *b).collect() }],
        markers: &[],
        band: None,
        y_max: Some(1.0),
    };
    ctx.insert("chart", &chart.render());
    ctx.insert("page", v);
    render("slo.html", &ctx)
}

/// A page for paths that are none of the above (JSON under `/api/`).
pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    let p = Problem::NotFound(format!("no page at {:?}", uri.path()));
    if uri.path().starts_with("/api/") { p.json() } else { p.page() }
}

#[cfg(test)]
mod tests;
