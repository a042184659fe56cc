//! `slo explain`: the regression of one service in a window, and its causes ranked with
//! evidence. Deterministic: the same data gives the same report.

use serde::{Deserialize, Serialize};

use crate::candidates::{Candidate, Context};
use crate::changepoint::Config;
use crate::error::{Error, Result};
use crate::rollup::MINUTE_NS;
use crate::series::Series;
use crate::source::Source;
use crate::text::{ms, rfc3339};

mod chain;
mod confidence;
mod verdicts;

pub(crate) use confidence::{Basis, Confidence};

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
    /// Set when the regression began before the window asked about and was found by
    /// looking further back ([`LOOKBACK`]): what the window alone showed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
    /// For a cause of a second rise inside the regression (two causes at once): that rise,
    /// `p99 rose again from HH:MM:SS: X -> Y (xR), N min after the onset` (bucket means).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_worse: Option<String>,
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
    /// How sure the ranking is and what would settle it (with a regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// What to look at next.
    pub next_steps: Vec<String>,
    /// What the slow requests since the onset have in common (with a regression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common: Vec<crate::common::Common>,
    /// p99, queue and compute per ReplicaSet, node and pod, before and since the onset
    /// (with a regression).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<crate::canary::Row>,
    /// What it was computed from.
    pub data: DataSummary,
    /// The SLO asked about: budget, burn rates, alert conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::burn::SloStatus>,
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

pub(crate) fn no_regression(reason: String) -> Regression {
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
        note: None,
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
    if let Some(older) = older_regression(source, q, &report, from, to).await? {
        report = older;
    }
    report.slo = slo;
    Ok(report)
}

/// How far back a regression older than the window is looked for: a day and two hours,
/// so that the same hours yesterday (where the data reaches that far) are in the history
/// a rise is judged against, and a daily peak is its normal variation, not a regression.
pub(crate) const LOOKBACK: i64 = 26 * 60 * MINUTE_NS;

/// A regression still going on that began before the window: a window that shows no
/// change can sit entirely inside one (a slow deploy 78 minutes ago, still slow). Where
/// the window alone found nothing beyond normal variation, the last [`LOOKBACK`] is
/// explained; a regression there that is still going on and began before the window is
/// the answer, with a note of what the window alone showed.
async fn older_regression(source: &Source, q: &Query, report: &Report, from: i64, to: i64) -> Result<Option<Report>> {
    let quiet = !report.regression.detected
        && report.regression.reason.as_deref().is_some_and(|r| r.starts_with(chain::NO_CHANGE));
    if !quiet || q.window >= LOOKBACK {
        return Ok(None);
    }
    let long = explain_service(source, q, Some(report.service.clone()), to - LOOKBACK, to).await?;
    let onset = long.regression.onset.as_deref().and_then(|o| crate::text::parse_time(o).ok());
    match onset {
        Some(onset) if long.regression.detected && long.regression.ongoing == Some(true) && onset < from => {
            let mut long = long;
            let m = (to - onset) / MINUTE_NS;
            let ago = if m >= 60 { format!("{}h {}m", m / 60, m % 60) } else { format!("{m} min") };
            long.regression.note = Some(format!(
                "began {ago} before the end of the {} window asked about, which shows no change: looked back {}",
                crate::text::window_name(q.window),
                crate::text::window_name(LOOKBACK)
            ));
            Ok(Some(long))
        }
        _ => Ok(None),
    }
}

/// The chain ARCHITECTURE.md draws, one named step each: which service, is there a
/// regression (and if not, why not), the requests around its onset, the causes ranked,
/// and the report.
async fn explain_service(
    source: &Source,
    q: &Query,
    service_arg: Option<String>,
    from: i64,
    to: i64,
) -> Result<Report> {
    let all = source.rollups(service_arg.as_deref(), from, to).await?;
    let service = chain::resolve_service(source, &all, service_arg, from, to, &q.detection).await?;
    let minutes = all.minutes(&service, None, from, to);
    let series = Series::from_minutes(&minutes);
    let mut report = Report {
        service,
        window: Window { from: rfc3339(from), to: rfc3339(to) },
        regression: no_regression(String::new()),
        causes: Vec::new(),
        confidence: None,
        next_steps: Vec::new(),
        common: Vec::new(),
        canary: Vec::new(),
        data: DataSummary {
            requests: minutes.values().map(|c| c.count).sum(),
            buckets: series.buckets.len(),
            bucket_seconds: series.width / 1_000_000_000,
            changes_considered: 0,
        },
        slo: None,
    };
    let p99 = series.quantiles(0.99, |c| &c.duration);
    let found = match chain::detect(&series, &p99, &q.detection) {
        Ok(found) => found,
        Err(quiet) => {
            report.regression = *quiet;
            return Ok(report);
        }
    };
    let detail = chain::read_detail(source, &report.service, &minutes, &series, &found).await?;
    let ctx = chain::context(&report.service, &detail, &series, &found);
    let (mut cands, considered) = chain::rank(source, &ctx, &series, &found, to, &q.detection).await?;
    report.data.changes_considered = considered;
    let regression = chain::regression(&series, &p99, &found, &ctx);
    let (before, after) = (regression.p99_before_ms.unwrap_or(0.0), regression.p99_after_ms.unwrap_or(0.0));
    let mut not_one = None;
    if let Some(c) = verdicts::own_rollout(&cands, &ctx) {
        let ratio = match c.local_ratio {
            None if !found.ongoing => verdicts::later_rollout_ratio(source, &ctx, c, &minutes, to).await?,
            r => r,
        };
        not_one = verdicts::rollout_verdict(c, ratio, &found, before, after, series.width);
    }
    if not_one.is_none() {
        not_one =
            verdicts::catching_up(source, &ctx, &cands, &series, &found, (before, after), to, &q.detection).await?;
    }
    if let Some(why) = not_one {
        report.regression = no_regression(why);
        report.regression.p99_now_ms = regression.p99_now_ms;
        return Ok(report);
    }
    report.regression = regression;
    report.common = crate::common::common(&ctx.before, &ctx.after);
    report.canary = crate::canary::table(&ctx.before, &ctx.after);
    // Read and ranked only once the answer is a regression.
    let mut made_worse = None;
    if let Some(step) = chain::later_step(&p99, &found) {
        let detail = chain::read_detail(source, &report.service, &minutes, &series, &step).await?;
        let later_ctx = chain::context(&report.service, &detail, &series, &step);
        let (later, _) = chain::rank(source, &later_ctx, &series, &step, to, &q.detection).await?;
        made_worse = add_later_cause(&mut cands, later, &ctx, later_ctx.onset, &step.point);
    }
    report.causes = cands
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
            made_worse: None,
        })
        .collect();
    let basis = Basis {
        lasted: series.start(found.regressed.1) - ctx.onset,
        requests: series.merged(found.regressed.0, found.regressed.1).count,
        untested: cands
            .first()
            .is_some_and(|c| matches!(c.kind.as_str(), "deploy" | "gpu_throttle") && c.local_ratio.is_none()),
    };
    report.next_steps = report.causes.first().map(next_steps).unwrap_or_default();
    if let Some((at, text)) = made_worse
        && let Some(c) = report.causes.get_mut(at)
    {
        c.made_worse = Some(text);
        let more = next_steps(c).into_iter().next().filter(|s| !report.next_steps.contains(s));
        report.next_steps.extend(more);
    }
    report.confidence = Some(confidence::judge(&report.causes, basis));
    Ok(report)
}

/// The least score a second rise's cause needs to be named.
const LATER_MIN_SCORE: f64 = 0.7;

/// The cause of a second rise inside the regression ([`chain::later_step`]): one that
/// happened after the onset's bucket, other than the first cause, scoring at least
/// [`LATER_MIN_SCORE`] against the rise (a node that merely looks slower while a rollout
/// moves pods scores about 0.6 there). Its score is at most the first's, and it is ranked
/// among the others by it. An entry of the same kind and object timed against the onset
/// gives way to it (an autoscaler's earlier step is not what made it worse). Returns its
/// rank (0-based) and what the rise was, for [`Cause::made_worse`].
fn add_later_cause(
    cands: &mut Vec<Candidate>,
    later: Vec<Candidate>,
    ctx: &Context<'_>,
    step_onset: i64,
    p: &crate::changepoint::ChangePoint,
) -> Option<(usize, String)> {
    let same = |a: &Candidate, b: &Candidate| a.kind == b.kind && a.object == b.object;
    let mut c = later.into_iter().find(|c| {
        c.score >= LATER_MIN_SCORE
            && c.began.unwrap_or(c.time) >= ctx.onset + ctx.width
            && cands.first().is_none_or(|top| !same(top, c))
    })?;
    if let Some(top) = cands.first() {
        c.score = c.score.min(top.score);
    }
    // Its facts were timed against the second rise, not the regression's onset.
    for e in &mut c.evidence {
        *e = e.replace("the onset", "the second rise");
    }
    cands.retain(|x| !same(x, &c));
    let at = cands.len().min(1) + cands.iter().skip(1).take_while(|x| x.score > c.score).count();
    cands.insert(at, c);
    let text = format!(
        "p99 rose again from {}: {} -> {} (x{:.2}), {} min after the onset",
        crate::text::hm(step_onset),
        ms(p.mean_before),
        ms(p.mean_after),
        p.mean_after / p.mean_before.max(f64::MIN_POSITIVE),
        (step_onset - ctx.onset) / MINUTE_NS,
    );
    Some((at, text))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::changepoint::ChangePoint;

    pub(super) const S: i64 = 1_000_000_000;
    pub(super) const ONSET: i64 = 1_763_820_720 * S;

    pub(super) fn ctx() -> Context<'static> {
        Context {
            service: "qwen-32b",
            deployments: BTreeSet::from(["qwen-32b".to_string()]),
            namespace: "serving".into(),
            onset: ONSET,
            width: 60 * S,
            tail: None,
            before: Vec::new(),
            after: Vec::new(),
            rate: (1.0, 1.0),
            input_tokens: (800.0, 800.0),
            output_tokens: (150.0, 150.0),
        }
    }

    pub(super) fn deploy(local_ratio: Option<f64>) -> Candidate {
        Candidate {
            kind: "deploy".into(),
            object: "deployment/qwen-32b".into(),
            time: ONSET + 60 * S,
            namespace: "serving".into(),
            source: "changes",
            evidence: Vec::new(),
            timing: 1.0,
            scope: 1.0,
            mechanism: 1.0,
            strength: 0.4,
            local_ratio,
            began: None,
            score: 0.5,
        }
    }

    /// Two causes at once: the scale-down that came 3 minutes into a rollout's regression
    /// is ranked second, in place of the HPA's earlier step, at most as likely as the first,
    /// its facts timed against the second rise; one inside the onset's bucket, the first
    /// cause again, or a weak one is not.
    #[test]
    fn the_cause_of_a_second_rise_is_ranked_second() {
        let c = ctx();
        let step = ChangePoint { index: 17, mean_before: 15_500.0, mean_after: 25_700.0, p_value: 0.0, energy: 0.0 };
        let scale_down = |time: i64, score: f64| {
            let mut d = deploy(None);
            d.kind = "scale_down".into();
            d.object = "hpa/qwen-32b".into();
            d.time = time;
            d.score = score;
            d.evidence = vec!["at the onset".into()];
            d
        };
        let first = vec![deploy(Some(1.4)), scale_down(ONSET - 900 * S, 0.3)];
        let mut cands = first.clone();
        let text = add_later_cause(&mut cands, vec![scale_down(ONSET + 180 * S, 0.99)], &c, ONSET + 180 * S, &step);
        let (at, text) = text.expect("the second rise's cause");
        assert_eq!(
            (at, text.as_str()),
            (1, "p99 rose again from 14:15:00: 15.5 s -> 25.7 s (x1.66), 3 min after the onset")
        );
        assert_eq!(cands.len(), 2);
        assert_eq!((cands[1].kind.as_str(), cands[1].time, cands[1].score), ("scale_down", ONSET + 180 * S, 0.5));
        assert_eq!(cands[1].evidence, ["at the second rise"]);
        // Ranked by its score among the others.
        let mut cands = vec![deploy(Some(1.4)), scale_down(ONSET - 900 * S, 0.45)];
        cands[1].kind = "cold_start".into();
        let (at, _) = add_later_cause(&mut cands, vec![scale_down(ONSET + 180 * S, 0.75)], &c, ONSET + 180 * S, &step)
            .expect("the second rise's cause");
        assert_eq!((at, cands[at].score), (1, 0.5));
        cands[0].score = 0.9;
        let mut again = vec![cands[0].clone(), scale_down(ONSET - 900 * S, 0.8)];
        again[1].kind = "cold_start".into();
        let (at, _) = add_later_cause(&mut again, vec![scale_down(ONSET + 180 * S, 0.75)], &c, ONSET + 180 * S, &step)
            .expect("the second rise's cause");
        assert_eq!(at, 2, "below a rival that scores more");
        for later in [scale_down(ONSET + 30 * S, 0.99), deploy(None), scale_down(ONSET + 180 * S, 0.6)] {
            let mut cands = first.clone();
            assert!(add_later_cause(&mut cands, vec![later], &c, ONSET + 180 * S, &step).is_none());
            assert_eq!(cands, first);
        }
    }
}
