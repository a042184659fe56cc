//! What each dashboard page and its JSON endpoint read, gathered in one job on the query
//! runner: rollups (never raw rows) for series and SLOs, the `changes` table, and explain
//! reports through the [`Verdicts`] cache. The structs here are the JSON the API answers
//! and the context the templates render, so a page and its endpoint cannot disagree.

use std::sync::Arc;

use serde::Serialize;
use slo_analyzer::Source;
use slo_analyzer::board::{self, ChangeFilter, ChangeView, SeriesReport, ServiceLine};
use slo_analyzer::burn::{self, SloStatus};
use slo_analyzer::spec::Slo;
use slo_analyzer::text::{rfc3339, window_name};
use slo_analyzer::{MINUTE_NS, Rollups};
use slo_analyzer::{Query, Report, explain};

use crate::params::RangeAsked;
use crate::verdicts::{Key, Verdict, Verdicts};

/// Why a page could not be gathered.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Something named does not exist (404), with what does.
    NotFound(String),
    /// The analyzer's own error.
    Analyzer(slo_analyzer::Error),
}

impl From<slo_analyzer::Error> for Failure {
    fn from(e: slo_analyzer::Error) -> Failure {
        Failure::Analyzer(e)
    }
}

/// What the gathering needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// A snapshot of the store.
    pub source: Arc<Source>,
    /// The SLOs of the config.
    pub slos: Arc<Vec<Slo>>,
    /// Explain reports kept a while.
    pub verdicts: Verdicts,
    /// Alerts received from Alertmanager.
    pub alerts: crate::alerts::Alerts,
}

/// The range a page shows, placed on the data.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Range {
    /// Start, RFC 3339.
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
    /// `1h`, `6h`, ...
    pub window: String,
    /// The `at` asked for, when not live.
    pub at: Option<String>,
    /// Whether this is the live view (ends at the newest data and refreshes).
    pub live: bool,
    /// Start, ns (not in the JSON).
    #[serde(skip)]
    pub from_ns: i64,
    /// End, ns.
    #[serde(skip)]
    pub to_ns: i64,
}

/// End of the newest minute with requests; `None` when there are none.
async fn newest_end(source: &Source) -> slo_analyzer::Result<Option<i64>> {
    Ok(source.latest_request().await?.map(|t| (t.div_euclid(MINUTE_NS) + 1) * MINUTE_NS))
}

async fn place(ctx: &Ctx, asked: RangeAsked) -> Result<Range, Failure> {
    let newest = match asked.at {
        Some(_) => 0,
        None => newest_end(&ctx.source).await?.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            ((now as i64).div_euclid(MINUTE_NS) + 1) * MINUTE_NS
        }),
    };
    let (from, to) = asked.place(newest);
    Ok(Range {
        from: rfc3339(from),
        to: rfc3339(to),
        window: window_name(asked.window),
        at: asked.at.map(rfc3339),
        live: asked.at.is_none(),
        from_ns: from,
        to_ns: to,
    })
}

/// The short form of a report on the overview and in badges.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Brief {
    /// A regression was detected.
    pub detected: bool,
    /// Its onset, RFC 3339.
    pub onset: Option<String>,
    /// Top cause as `kind object` (`scale_down hpa/llama-70b`).
    pub top_cause: Option<String>,
    /// `high`, `medium`, `low`.
    pub confidence: Option<String>,
    /// One line: the change in p99, or why there is no regression (or no report).
    pub summary: String,
}

impl Brief {
    fn of(v: &Verdict) -> Brief {
        match v {
            Err(e) => Brief { detected: false, onset: None, top_cause: None, confidence: None, summary: e.clone() },
            Ok(r) => {
                let g = &r.regression;
                let summary = if g.detected {
                    match (g.p99_before_ms, g.p99_after_ms) {
                        (Some(b), Some(a)) => {
                            format!("p99 {} -> {}", slo_analyzer::text::ms(b), slo_analyzer::text::ms(a))
                        }
                        _ => "p99 regression".into(),
                    }
                } else {
                    g.reason.clone().unwrap_or_else(|| "no regression".into())
                };
                Brief {
                    detected: g.detected,
                    onset: g.onset.clone(),
                    top_cause: g
                        .detected
                        .then(|| r.causes.first().map(|c| format!("{} {}", c.kind, c.object)))
                        .flatten(),
                    confidence: r.confidence.as_ref().map(|c| c.level.clone()),
                    summary,
                }
            }
        }
    }
}

/// The explain report for `service` over the range, from the cache or computed.
pub(crate) async fn verdict(ctx: &Ctx, service: &str, asked: RangeAsked) -> Result<Verdict, Failure> {
    let key = (service.to_string(), asked.at, asked.window);
    if let Some(v) = ctx.verdicts.get(&key) {
        return Ok(v);
    }
    Ok(explain_into(&ctx.source, &ctx.verdicts, key).await?)
}

/// Explains `key` (service, end, window) and keeps the answer in `verdicts`, a user error
/// ("there are no requests ...") as its message: the one place a kept report is made, for
/// the pages, `/api/v1/explain` and [`crate::keep_warm`].
pub(crate) async fn explain_into(source: &Source, verdicts: &Verdicts, key: Key) -> slo_analyzer::Result<Verdict> {
    let q = Query::new(Some(key.0.clone()), key.1, key.2);
    let v = match explain(source, &q).await {
        Ok(r) => Ok(Arc::new(r)),
        Err(e) if e.is_user_error() => Err(e.to_string()),
        Err(e) => return Err(e),
    };
    verdicts.put(key, v.clone());
    Ok(v)
}

/// The longest SLO period of `slos` (or 3 days, the longest burn window), ns.
fn slo_reach(slos: &[&Slo]) -> i64 {
    slos.iter().map(|s| s.period).max().unwrap_or(0).max(3 * 1440 * MINUTE_NS)
}

/// One service on the overview.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OverviewRow {
    /// Traffic and tail from rollups.
    #[serde(flatten)]
    pub line: ServiceLine,
    /// Its SLOs at the end of the range.
    pub slos: Vec<SloStatus>,
    /// The smallest budget remaining of its SLOs (the sort key).
    pub budget_remaining: Option<f64>,
    /// Explain's answer, short.
    pub verdict: Brief,
}

/// `/` and `/api/v1/services`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    /// The range.
    pub range: Range,
    /// Services, least budget remaining first (then those without SLOs, by p99 change).
    pub services: Vec<OverviewRow>,
    /// SLOs of the config whose service has no requests in the range.
    pub idle_slos: Vec<String>,
    /// Alerts firing now (from Alertmanager, explained), newest first.
    pub alerts: Vec<crate::alerts::AlertBrief>,
}

/// Gathers the overview.
pub(crate) async fn overview(ctx: &Ctx, asked: RangeAsked) -> Result<Overview, Failure> {
    let range = place(ctx, asked).await?;
    let all: Vec<&Slo> = ctx.slos.iter().collect();
    let reach = if all.is_empty() { asked.window } else { slo_reach(&all).max(asked.window) };
    let rollups = ctx.source.rollups(None, range.to_ns - reach, range.to_ns).await?;
    let lines = board::service_lines(&rollups, range.from_ns, range.to_ns);
    let mut services = Vec::with_capacity(lines.len());
    for line in lines {
        let slos: Vec<SloStatus> = ctx
            .slos
            .iter()
            .filter(|s| s.service == line.service)
            .map(|s| burn::status(s, &rollups, range.to_ns))
            .collect();
        let budget_remaining = slos.iter().filter_map(|s| s.budget_remaining).reduce(f64::min);
        let v = verdict(ctx, &line.service, asked).await?;
        services.push(OverviewRow { verdict: Brief::of(&v), line, slos, budget_remaining });
    }
    services.sort_by(|a, b| {
        let key = |r: &OverviewRow| (r.budget_remaining.is_none(), r.budget_remaining.unwrap_or(0.0));
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(b.verdict.detected.cmp(&a.verdict.detected))
            .then(b.line.p99_ratio.unwrap_or(0.0).total_cmp(&a.line.p99_ratio.unwrap_or(0.0)))
            .then(a.line.service.cmp(&b.line.service))
    });
    let idle_slos = ctx
        .slos
        .iter()
        .filter(|s| !services.iter().any(|r| r.line.service == s.service))
        .map(|s| s.name.clone())
        .collect();
    Ok(Overview { range, services, idle_slos, alerts: ctx.alerts.briefs(None, ALERTS_SHOWN) })
}

/// `/services/{name}`: everything its page shows.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServiceView {
    /// The service.
    pub service: String,
    /// The range.
    pub range: Range,
    /// Its series.
    pub series: SeriesReport,
    /// Changes that belong on its charts, oldest first.
    pub changes: Vec<ChangeView>,
    /// Explain's report (or the message that stood in its place).
    pub report: Option<Arc<Report>>,
    /// Why there is no report.
    pub report_error: Option<String>,
    /// Its SLOs at the end of the range.
    pub slos: Vec<SloStatus>,
    /// When it last had requests, if not in the range.
    pub last_seen: Option<String>,
    /// The GPUs of its nodes over the last [`GPU_RANGE`] of the range.
    pub gpus: Vec<slo_analyzer::Gpu>,
    /// Start of the GPU panel's range, RFC 3339.
    pub gpus_from: String,
    /// Its alerts firing now, newest first.
    pub alerts: Vec<crate::alerts::AlertBrief>,
}

/// Firing alerts a page lists at most.
pub(crate) const ALERTS_SHOWN: usize = 20;

/// How far back the GPU panel looks from the end of the range: samples are scraped every
/// few seconds, so the panel reads at most an hour of them.
pub(crate) const GPU_RANGE: i64 = 60 * MINUTE_NS;

/// Services with requests in the last `reach` before `to`, for "no service named X" and
/// "last seen" messages.
async fn known_services(ctx: &Ctx, to: i64) -> Result<Rollups, Failure> {
    Ok(ctx.source.rollups(None, to - 7 * 1440 * MINUTE_NS, to).await?)
}

/// For a service without requests in the range: 404 when it had none in the last week
/// either (and no SLO names it), else when it was last seen.
async fn check_known(ctx: &Ctx, service: &str, range: &Range) -> Result<Option<String>, Failure> {
    let week = known_services(ctx, range.to_ns).await?;
    let names = week.services();
    if !names.contains_key(service) && !ctx.slos.iter().any(|s| s.service == service) {
        let known: Vec<&str> = names.keys().map(String::as_str).collect();
        return Err(Failure::NotFound(format!(
            "no service named {service:?} has requests in the 7 days before {} (services: {})",
            range.to,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    Ok(week.minutes(service, None, 0, range.to_ns).keys().next_back().map(|m| rfc3339(*m)))
}

/// `/api/v1/series`: one service's (or one model's) series, from rollups only.
pub(crate) async fn series(
    ctx: &Ctx,
    service: &str,
    model: Option<&str>,
    asked: RangeAsked,
) -> Result<SeriesReport, Failure> {
    let range = place(ctx, asked).await?;
    let rollups = ctx.source.rollups(Some(service), range.from_ns, range.to_ns).await?;
    if rollups.is_empty() {
        check_known(ctx, service, &range).await?;
    }
    let step = board::step_for(range.to_ns - range.from_ns);
    Ok(board::series(&rollups, service, model, range.from_ns, range.to_ns, step))
}

/// Gathers a service's page.
pub(crate) async fn service(ctx: &Ctx, service: &str, asked: RangeAsked) -> Result<ServiceView, Failure> {
    let range = place(ctx, asked).await?;
    let rollups = ctx.source.rollups(Some(service), range.from_ns, range.to_ns).await?;
    let last_seen = if rollups.is_empty() { check_known(ctx, service, &range).await? } else { None };
    let step = board::step_for(range.to_ns - range.from_ns);
    let series = board::series(&rollups, service, None, range.from_ns, range.to_ns, step);
    let changes = ctx
        .source
        .changes(range.from_ns, range.to_ns)
        .await?
        .iter()
        .filter(|c| board::belongs_to(service, c))
        .map(ChangeView::from)
        .collect();
    let (report, report_error) = if rollups.is_empty() {
        (None, None)
    } else {
        match verdict(ctx, service, asked).await? {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        }
    };
    let own: Vec<&Slo> = ctx.slos.iter().filter(|s| s.service == service).collect();
    let slos = if own.is_empty() {
        Vec::new()
    } else {
        let long = ctx.source.rollups(Some(service), range.to_ns - slo_reach(&own), range.to_ns).await?;
        own.iter().map(|s| burn::status(s, &long, range.to_ns)).collect()
    };
    let gpus_from = range.from_ns.max(range.to_ns - GPU_RANGE);
    let rows = ctx.source.gpu_minutes(gpus_from, range.to_ns).await?;
    let gpus = slo_analyzer::gpu_panel(service, &rows, gpus_from, range.to_ns);
    Ok(ServiceView {
        service: service.to_string(),
        range,
        series,
        changes,
        report,
        report_error,
        slos,
        last_seen,
        gpus,
        gpus_from: rfc3339(gpus_from),
        alerts: ctx.alerts.briefs(Some(service), ALERTS_SHOWN),
    })
}

/// `/changes`: the timeline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChangesView {
    /// The range.
    pub range: Range,
    /// The filter as given.
    pub namespace: Option<String>,
    /// Kind filter.
    pub kind: Option<String>,
    /// Object filter (a substring).
    pub object: Option<String>,
    /// Changes, newest first, each with the services it belongs to.
    pub changes: Vec<ChangeRow>,
    /// Kinds present in the range (for the filter's choices).
    pub kinds: Vec<String>,
    /// Namespaces present in the range.
    pub namespaces: Vec<String>,
}

/// A change on the timeline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChangeRow {
    /// The change.
    #[serde(flatten)]
    pub change: ChangeView,
    /// Services whose charts show it (node changes: every service with requests).
    pub services: Vec<String>,
}

/// Gathers the changes timeline.
pub(crate) async fn changes(ctx: &Ctx, asked: RangeAsked, filter: ChangeFilter) -> Result<ChangesView, Failure> {
    let range = place(ctx, asked).await?;
    let all = ctx.source.changes(range.from_ns, range.to_ns).await?;
    let rollups = ctx.source.rollups(None, range.from_ns, range.to_ns).await?;
    let services: Vec<String> = rollups.services().into_keys().collect();
    let mut kinds: Vec<String> = all.iter().map(|c| c.kind.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let mut namespaces: Vec<String> = all.iter().map(|c| c.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    let changes = all
        .iter()
        .rev()
        .filter(|c| filter.keeps(c))
        .map(|c| ChangeRow {
            change: ChangeView::from(c),
            services: services.iter().filter(|s| board::belongs_to(s, c)).cloned().collect(),
        })
        .collect();
    Ok(ChangesView {
        range,
        namespace: filter.namespace,
        kind: filter.kind,
        object: filter.object,
        changes,
        kinds,
        namespaces,
    })
}

/// `/slos/{name}`: one SLO over a range.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SloView {
    /// The range of the chart.
    pub range: Range,
    /// The SLO's status at the end of the range.
    pub status: SloStatus,
    /// Its service.
    pub service: String,
    /// Budget remaining at the end of each bucket: `[ms since the epoch, share or null]`.
    pub budget: Vec<(i64, Option<f64>)>,
    /// Bucket width of `budget`, seconds.
    pub step_s: i64,
}

/// The SLO named `name`, or 404 naming the ones there are.
pub(crate) fn find_slo<'a>(slos: &'a [Slo], name: &str) -> Result<&'a Slo, Failure> {
    slos.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = slos.iter().map(|s| s.name.as_str()).collect();
        Failure::NotFound(format!(
            "no SLO named {name:?} (SLOs: {})",
            if names.is_empty() { "none configured; see the README's \"SLOs\"".to_string() } else { names.join(", ") }
        ))
    })
}

/// Gathers an SLO's page; the default range is its period.
pub(crate) async fn slo(ctx: &Ctx, name: &str, asked: RangeAsked) -> Result<SloView, Failure> {
    let spec = find_slo(&ctx.slos, name)?.clone();
    let range = place(ctx, asked).await?;
    let reach = (range.to_ns - range.from_ns) + slo_reach(&[&spec]);
    let rollups = ctx.source.rollups(Some(&spec.service), range.to_ns - reach, range.to_ns).await?;
    let status = burn::status(&spec, &rollups, range.to_ns);
    let step = board::step_for(range.to_ns - range.from_ns);
    let budget = burn::budget_series(&spec, &rollups, range.from_ns, range.to_ns, step)
        .into_iter()
        .map(|(t, v)| (t / 1_000_000, v.map(|v| (v * 10_000.0).round() / 10_000.0)))
        .collect();
    Ok(SloView { range, status, service: spec.service.clone(), budget, step_s: step / 1_000_000_000 })
}

/// `/slos` and `/api/v1/slos`: every SLO at the end of the range.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SloList {
    /// The range.
    pub range: Range,
    /// Each SLO's status at its end.
    pub slos: Vec<SloStatus>,
}

/// Gathers the SLO list.
pub(crate) async fn slo_list(ctx: &Ctx, asked: RangeAsked) -> Result<SloList, Failure> {
    let range = place(ctx, asked).await?;
    let all: Vec<&Slo> = ctx.slos.iter().collect();
    if all.is_empty() {
        return Ok(SloList { range, slos: Vec::new() });
    }
    let rollups = ctx.source.rollups(None, range.to_ns - slo_reach(&all), range.to_ns).await?;
    let slos = ctx.slos.iter().map(|s| burn::status(s, &rollups, range.to_ns)).collect();
    Ok(SloList { range, slos })
}
