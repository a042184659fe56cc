//! `slo explain`: the regression of one service in a window, and its causes ranked with
//! evidence. Deterministic: the same data gives the same report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::candidates::{self, Candidate, Context};
use crate::changepoint::{self, Config};
use crate::error::{Error, Result};
use crate::evidence;
use crate::rollup::{Cell, MINUTE_NS};
use crate::series::{self, Series};
use crate::source::{Request, Source, rfc3339};

/// What to explain.
#[derive(Debug, Clone)]
pub struct Query {
    /// The service; `None` picks the one whose p99 regressed most.
    pub service: Option<String>,
    /// End of the window, ns; `None` is the newest request.
    pub at: Option<i64>,
    /// Window length, ns.
    pub window: i64,
    /// Change-point sensitivity.
    pub detection: Config,
    /// The SLO asked about (`--slo`): its service is explained and its budget and burn
    /// rates reported.
    pub slo: Option<crate::spec::Slo>,
}

impl Query {
    /// The last `window` ns before `at` (or before the newest data).
    pub fn new(service: Option<String>, at: Option<i64>, window: i64) -> Query {
        Query { service, at, window, detection: Config::default(), slo: None }
    }
}

/// The window looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start, RFC 3339.
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
}

/// The regression, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// Whether a regression was detected.
    pub detected: bool,
    /// Why not, when not (too little data, no significant change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Start of the bucket it began in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<String>,
    /// p99 of the baseline segment, ms (merged sketches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_before_ms: Option<f64>,
    /// p99 since the onset, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_after_ms: Option<f64>,
    /// Welch t-test p-value of the change point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Share of the slow tail's increase that is queue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_share: Option<f64>,
    /// ... compute time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_share: Option<f64>,
    /// Queue p99 before and after, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_p99_ms: Option<[f64; 2]>,
    /// Compute p99 before and after, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_p99_ms: Option<[f64; 2]>,
    /// Whether the newest bucket is still regressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ongoing: Option<bool>,
    /// p99 of the newest bucket, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_now_ms: Option<f64>,
}

/// One ranked cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// 1 is the most likely.
    pub rank: usize,
    /// Taxonomy kind.
    pub kind: String,
    /// The object.
    pub object: String,
    /// When it happened.
    pub time: String,
    /// Namespace (empty when not namespaced).
    #[serde(default)]
    pub namespace: String,
    /// Score in [0, 1].
    pub score: f64,
    /// Facts behind it.
    pub evidence: Vec<String>,
    /// `changes` or `metrics`.
    pub source: String,
    /// The factors of the score: timing, scope, mechanism, strength.
    pub factors: [f64; 4],
}

/// What the data was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Requests of the service in the window.
    pub requests: u64,
    /// Buckets used.
    pub buckets: usize,
    /// Their width, seconds.
    pub bucket_seconds: i64,
    /// Changes looked at.
    pub changes_considered: usize,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The service.
    pub service: String,
    /// The window.
    pub window: Window,
    /// The regression.
    pub regression: Regression,
    /// Causes, most likely first (at most five).
    pub causes: Vec<Cause>,
    /// What to look at next.
    pub next_steps: Vec<String>,
    /// What it was computed from.
    pub data: DataSummary,
    /// The SLO asked about: budget, burn rates, alert conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::burn::SloStatus>,
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn no_regression(reason: String) -> Regression {
    Regression {
        detected: false,
        reason: Some(reason),
        onset: None,
        p99_before_ms: None,
        p99_after_ms: None,
        p_value: None,
        queue_share: None,
        compute_share: None,
        queue_p99_ms: None,
        compute_p99_ms: None,
        ongoing: None,
        p99_now_ms: None,
    }
}

/// Runs the analysis.
pub async fn explain(source: &Source, q: &Query) -> Result<Report> {
    let to = match q.at {
        Some(t) => t,
        None => {
            let latest = source
                .latest_request()
                .await?
                .ok_or_else(|| Error::Usage("there are no requests in the store".into()))?;
            (latest / MINUTE_NS + 1) * MINUTE_NS
        }
    };
    let from = to - q.window;
    let service_arg = q.slo.as_ref().map(|s| s.service.clone()).or_else(|| q.service.clone());
    let slo = match &q.slo {
        Some(spec) => {
            let longest = spec.period.max(3 * 1440 * MINUTE_NS);
            let rollups = source.rollups(Some(&spec.service), to - longest, to).await?;
            Some(crate::burn::status(spec, &rollups, to))
        }
        None => None,
    };
    let mut report = explain_service(source, q, service_arg, from, to).await?;
    report.slo = slo;
    Ok(report)
}

async fn explain_service(
    source: &Source,
    q: &Query,
    service_arg: Option<String>,
    from: i64,
    to: i64,
) -> Result<Report> {
    let all = source.rollups(service_arg.as_deref(), from, to).await?;
    let services = all.services();
    let service = match &service_arg {
        Some(s) => {
            if !services.contains_key(s) {
                let services = source.rollups(None, from, to).await?.services();
                return Err(Error::Usage(format!(
                    "service {s:?} has no requests between {} and {} (services there: {})",
                    rfc3339(from),
                    rfc3339(to),
                    if services.is_empty() {
                        "none".to_string()
                    } else {
                        services.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            s.clone()
        }
        None => pick_service(&all, from, to, &q.detection).ok_or_else(|| {
            Error::Usage(format!("there are no requests between {} and {}", rfc3339(from), rfc3339(to)))
        })?,
    };
    let minutes = all.minutes(&service, None, from, to);
    let series = Series::from_minutes(&minutes);
    let requests: u64 = minutes.values().map(|c| c.count).sum();
    let window = Window { from: rfc3339(from), to: rfc3339(to) };
    let mut data = DataSummary {
        requests,
        buckets: series.buckets.len(),
        bucket_seconds: series.width / 1_000_000_000,
        changes_considered: 0,
    };
    let empty = |regression, data| Report {
        service: service.clone(),
        window: window.clone(),
        regression,
        causes: Vec::new(),
        next_steps: Vec::new(),
        data,
        slo: None,
    };
    if series.buckets.len() < series::MIN_BUCKETS {
        let why = format!(
            "too little data: {} bucket(s) of {} s with enough requests, {} needed",
            series.buckets.len(),
            series.width / 1_000_000_000,
            series::MIN_BUCKETS
        );
        return Ok(empty(no_regression(why), data));
    }
    let p99 = series.quantiles(0.99, |c| &c.duration);
    let Some(found) = series::find_regression(&series, &p99, &q.detection) else {
        let why = match series::find_improvement(&p99, &q.detection) {
            Some((i, before, after)) => format!(
                "p99 improved from {} to {} at {} (no regression after it)",
                crate::render::ms(before),
                crate::render::ms(after),
                rfc3339(series.start(i))
            ),
            None => format!(
                "no significant change in p99 beyond its normal variation (p < {} and at least {:.0}%)",
                q.detection.max_p_value,
                q.detection.min_relative_change * 100.0
            ),
        };
        let mut r = no_regression(why);
        r.p99_now_ms = p99.last().map(|v| round(*v, 1));
        return Ok(empty(r, data));
    };
    let onset = series.start(found.point.index);
    let base = series.merged(found.baseline.0, found.baseline.1);
    let reg = series.merged(found.regressed.0, found.regressed.1);
    let q99 = |c: &crate::rollup::Cell, f: fn(&crate::rollup::Cell) -> &crate::sketch::Sketch| {
        round(f(c).quantile(0.99).unwrap_or(0.0), 1)
    };

    // Request detail around the onset: at most 15 minutes and DETAIL_PER_SIDE requests a
    // side, the nearest to the onset.
    let horizon = 15 * MINUTE_NS;
    let (before_from, after_to) = detail_span(
        &minutes,
        onset,
        series.start(found.baseline.0).max(onset - horizon),
        series.start(found.regressed.1).min(onset + horizon),
        DETAIL_PER_SIDE,
    );
    let detail = source.requests(&service, before_from, after_to).await?;
    let before: Vec<&Request> = detail.iter().filter(|r| r.time < onset).collect();
    let after: Vec<&Request> = detail.iter().filter(|r| r.time >= onset).collect();
    let tail = evidence::tail_shift(&before, &after);
    let secs = |a: usize, b: usize| (series.start(b) - series.start(a)) as f64 / 1e9;
    let ctx = Context {
        service: &service,
        deployments: evidence::distinct(&detail.iter().collect::<Vec<_>>(), |r| &*r.deployment)
            .into_iter()
            .map(str::to_string)
            .collect(),
        namespace: detail.first().map(|r| r.namespace.to_string()).unwrap_or_default(),
        onset,
        width: series.width,
        tail,
        rate: (
            base.count as f64 / secs(found.baseline.0, found.baseline.1).max(1.0),
            reg.count as f64 / secs(found.regressed.0, found.regressed.1).max(1.0),
        ),
        input_tokens: (base.input_tokens.quantile(0.5).unwrap_or(0.0), reg.input_tokens.quantile(0.5).unwrap_or(0.0)),
        output_tokens: (
            base.output_tokens.quantile(0.5).unwrap_or(0.0),
            reg.output_tokens.quantile(0.5).unwrap_or(0.0),
        ),
        before,
        after,
    };
    let lookback = 30 * MINUTE_NS;
    // Nothing after the window's end: `--at` in the past answers as it would have then.
    let changes = source.changes(onset - lookback, (onset + 2 * series.width + MINUTE_NS).min(to)).await?;
    data.changes_considered = changes.len();
    let throttle = source.node_throttle(onset - lookback, to).await?;
    let rate_onset = nearest_upward(&series, &series.rates(), found.point.index, &q.detection);
    let tokens = series.quantiles(0.5, |c| &c.input_tokens);
    // A drift in prompt length begins where it begins; a step is found either way.
    let token_onset = changepoint::drift_start(&tokens, found.point.index)
        .filter(|i| i.abs_diff(found.point.index) <= 10)
        .map(|i| series.start(i))
        .or_else(|| nearest_upward(&series, &tokens, found.point.index, &q.detection));
    let mut cands: Vec<Candidate> = candidates::from_changes(&ctx, &changes);
    cands.extend(candidates::from_metrics(&ctx, &throttle, rate_onset, token_onset));
    candidates::score(&ctx, &mut cands);
    let (before_p99, after_p99) = (q99(&base, |c| &c.duration), q99(&reg, |c| &c.duration));
    if let Some(why) = faster_rollout(&cands, &ctx, before_p99, after_p99) {
        let mut r = no_regression(why);
        r.p99_now_ms = p99.last().map(|v| round(*v, 1));
        return Ok(Report {
            service,
            window,
            regression: r,
            causes: Vec::new(),
            next_steps: Vec::new(),
            data,
            slo: None,
        });
    }
    let causes: Vec<Cause> = cands
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, c)| Cause {
            rank: i + 1,
            kind: c.kind.clone(),
            object: c.object.clone(),
            time: rfc3339(c.time),
            namespace: c.namespace.clone(),
            score: round(c.score, 3),
            evidence: c.evidence.clone(),
            source: c.source.to_string(),
            factors: [round(c.timing, 3), round(c.scope, 3), round(c.mechanism, 3), round(c.strength, 3)],
        })
        .collect();
    let next_steps = causes.first().map(next_steps).unwrap_or_default();
    let regression = Regression {
        detected: true,
        reason: None,
        onset: Some(rfc3339(onset)),
        p99_before_ms: Some(before_p99),
        p99_after_ms: Some(after_p99),
        p_value: Some(found.point.p_value),
        queue_share: tail.map(|t| round(t.queue_share, 3)),
        compute_share: tail.map(|t| round(t.compute_share, 3)),
        queue_p99_ms: Some([q99(&base, |c| &c.queue), q99(&reg, |c| &c.queue)]),
        compute_p99_ms: Some([q99(&base, |c| &c.compute), q99(&reg, |c| &c.compute)]),
        ongoing: Some(found.ongoing),
        p99_now_ms: p99.last().map(|v| round(*v, 1)),
    };
    Ok(Report { service, window, regression, causes, next_steps, data, slo: None })
}

/// A rollout of the service's own deployment in progress at the onset whose new pods
/// compute faster than the old: the brief rise of p99 while pods are replaced is the
/// rollout's capacity dip, not a regression, as long as it is modest (under 1.5x).
fn faster_rollout(cands: &[Candidate], ctx: &Context<'_>, before: f64, after: f64) -> Option<String> {
    if after >= 1.5 * before {
        return None;
    }
    let c = cands.iter().find(|c| {
        c.kind == "deploy"
            && c.object.strip_prefix("deployment/").is_some_and(|d| ctx.deployments.contains(d))
            && c.local_ratio.is_some_and(|r| r < 0.9)
            && (ctx.onset - 10 * MINUTE_NS..=ctx.onset + ctx.width).contains(&c.time)
    })?;
    Some(format!(
        "p99 rose from {} to {} while {} rolled out (from {}), but its new pods compute {:.2}x the old ones' time: \
         the rollout's brief capacity dip, not a regression",
        crate::render::ms(before),
        crate::render::ms(after),
        c.object,
        rfc3339(c.time),
        c.local_ratio.unwrap_or(1.0)
    ))
}

/// Requests read a side of the onset for the before/after tests. Above it the tests are
/// already decided (their p-values are far below any threshold), and the reading cost
/// grows with the traffic: at 1,000 requests/s the 15 minutes a side are 900,000 requests.
pub const DETAIL_PER_SIDE: u64 = 150_000;

/// The span `[from, to)` within `[lo, hi)` around `onset`, in whole minutes, that holds at
/// most `cap` requests a side by the minute counts (at least one minute a side).
fn detail_span(minutes: &BTreeMap<i64, Cell>, onset: i64, lo: i64, hi: i64, cap: u64) -> (i64, i64) {
    let mut from = onset;
    let mut taken = 0;
    for (&m, c) in minutes.range(lo..onset).rev() {
        if from < onset && taken + c.count > cap {
            break;
        }
        taken += c.count;
        from = m.max(lo);
    }
    let mut to = onset;
    let mut taken = 0;
    for (&m, c) in minutes.range(onset..hi) {
        if to > onset && taken + c.count > cap {
            break;
        }
        taken += c.count;
        to = (m + MINUTE_NS).min(hi);
    }
    (from.min(lo.max(onset - MINUTE_NS)), to.max(hi.min(onset + MINUTE_NS)))
}

/// The upward change point of `values` nearest to bucket `index` (within 10 buckets).
fn nearest_upward(series: &Series, values: &[f64], index: usize, cfg: &Config) -> Option<i64> {
    changepoint::detect(values, cfg)
        .into_iter()
        .filter(|c| c.mean_after > c.mean_before && c.index.abs_diff(index) <= 10)
        .min_by_key(|c| c.index.abs_diff(index))
        .map(|c| series.start(c.index))
}

/// The service whose p99 rose most (relative) in the window.
fn pick_service(all: &crate::rollup::Rollups, from: i64, to: i64, cfg: &Config) -> Option<String> {
    let mut best: Option<(f64, String)> = None;
    for s in all.services().keys() {
        let series = Series::from_minutes(&all.minutes(s, None, from, to));
        let p99 = series.quantiles(0.99, |c| &c.duration);
        let rise = series::find_regression(&series, &p99, cfg).map_or(0.0, |f| f.point.relative_change());
        if best.as_ref().is_none_or(|b| rise > b.0) {
            best = Some((rise, s.clone()));
        }
    }
    best.map(|b| b.1)
}

fn next_steps(c: &Cause) -> Vec<String> {
    let ns = if c.namespace.is_empty() { String::new() } else { format!(" -n {}", c.namespace) };
    let name = c.object.split_once('/').map_or(c.object.as_str(), |x| x.1);
    match c.kind.as_str() {
        "scale_down" => vec![
            format!("kubectl describe hpa {name}{ns}   # target, metric, recent rescales"),
            "check behavior.scaleDown (stabilizationWindowSeconds, policies) and the target".into(),
            "raise minReplicas or lower the target until the queue drains".into(),
        ],
        "deploy" => vec![
            format!("kubectl rollout history {}{ns}   # what changed: image, model, flags", c.object),
            format!("kubectl rollout undo {}{ns}   # if the new version is the slow one", c.object),
        ],
        "gpu_throttle" => vec![
            format!("check DCGM_FI_DEV_CLOCKS_EVENT_REASONS, GPU temperature and power on {name}"),
            format!(
                "kubectl cordon {name} && kubectl drain {name} --ignore-daemonsets   # move the pods off the hot node"
            ),
        ],
        "node_lost" => vec![
            format!("kubectl describe node {name}"),
            format!("kubectl get pods{ns} -o wide   # are the replacement pods scheduled and ready?"),
        ],
        "oom_kill" => vec![
            format!("kubectl describe {}{ns}   # last state OOMKilled, memory limit", c.object),
            "raise the memory limit, or lower --max-num-seqs / --gpu-memory-utilization".into(),
        ],
        "traffic_surge" => vec![
            "find who sends the extra traffic (gateway logs by client)".into(),
            format!("kubectl describe hpa{ns}   # is maxReplicas or GPU capacity the ceiling?"),
        ],
        "workload_shift" => vec![
            "prompts or outputs got longer: check which clients changed".into(),
            "consider --enable-chunked-prefill / --max-num-batched-tokens, or a separate long-context pool".into(),
        ],
        "cold_start" => vec![
            format!("kubectl get pods{ns}   # pods not ready yet; check image pull and model load times"),
            "keep warm capacity (minReplicas) or pre-pull images on the GPU nodes".into(),
        ],
        _ => vec![format!("kubectl describe {}{ns}", c.object)],
    }
}

/// Parses a window length: a whole number and a unit, `90s`, `30m`, `2h`, `1d` (or a
/// sum of them, `1h30m`), at least a minute.
pub fn parse_window(s: &str) -> Result<i64> {
    let bad = |why: &str| Error::Usage(format!("window {s:?}: {why} (examples: 30m, 2h, 1d, 1h30m)"));
    let mut total: i64 = 0;
    let mut num = String::new();
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit: i64 = match ch {
            's' => 1_000_000_000,
            'm' => MINUTE_NS,
            'h' => 60 * MINUTE_NS,
            'd' => 24 * 60 * MINUTE_NS,
            _ => return Err(bad(&format!("unknown unit {ch:?}"))),
        };
        let n: i64 = num.parse().map_err(|_| bad("a unit needs a number before it"))?;
        num.clear();
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| bad("too long"))?;
    }
    if !num.is_empty() {
        return Err(bad("a number needs a unit"));
    }
    if total < MINUTE_NS {
        return Err(bad("must be at least a minute"));
    }
    Ok(total)
}

/// Parses an RFC 3339 time to ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| Error::Usage(format!("time {s:?}: not an RFC 3339 time such as 2026-11-22T14:30:00Z")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_bad_ones_are_named() {
        assert_eq!(parse_window("30m").unwrap(), 30 * MINUTE_NS);
        assert_eq!(parse_window("1h30m").unwrap(), 90 * MINUTE_NS);
        assert_eq!(parse_window("1d").unwrap(), 1440 * MINUTE_NS);
        for bad in ["", "30", "5x", "m", "30s"] {
            let e = parse_window(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(parse_time("2026-11-22T14:30:00Z").is_ok());
        assert!(parse_time("yesterday").unwrap_err().to_string().contains("yesterday"));
    }

    #[test]
    fn detail_span_keeps_the_nearest_minutes_under_the_cap() {
        let m = MINUTE_NS;
        let minutes = |per: u64| -> BTreeMap<i64, Cell> {
            (0..30).map(|i| (i * m, Cell { count: per, ..Cell::default() })).collect()
        };
        let onset = 15 * m;
        // Thin traffic: the whole horizon.
        assert_eq!(detail_span(&minutes(50), onset, 0, 30 * m, 1000), (0, 30 * m));
        // 100 a minute, at most 1000 a side: ten minutes each way.
        assert_eq!(detail_span(&minutes(100), onset, 0, 30 * m, 1000), (5 * m, 25 * m));
        // 300 a minute, at most 1000 a side: three minutes each way.
        assert_eq!(detail_span(&minutes(300), onset, 0, 30 * m, 1000), (12 * m, 18 * m));
        // One minute already over the cap: still one minute a side.
        assert_eq!(detail_span(&minutes(5000), onset, 0, 30 * m, 1000), (14 * m, 16 * m));
        // No rows before the onset in range: one minute, within the bounds.
        assert_eq!(detail_span(&BTreeMap::new(), onset, 10 * m, 20 * m, 1000), (14 * m, 16 * m));
        assert_eq!(detail_span(&BTreeMap::new(), onset, onset, onset + 30, 1000), (onset, onset + 30));
    }
}
