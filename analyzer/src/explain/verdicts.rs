//! Rises that are no regression, said as such: the service's own rollout replacing its
//! pods (a capacity dip while new pods start, watched until they serve), and an
//! autoscaler catching up with load the service has served before (traffic that
//! breathes). Each is a verdict on a rise `chain::detect` found, made once its causes are
//! ranked, since both rest on the changes around it.

use super::LOOKBACK;
use crate::candidates::{Candidate, Context, scope};
use crate::changepoint::Config;
use crate::error::Result;
use crate::rollup::MINUTE_NS;
use crate::series::{Found, MATERIAL_AT_ONCE, Series};
use crate::source::{Change, Source};
use crate::text::{hm, ms, rfc3339};

/// A rollout of the service's own deployment at the onset (from ten minutes before it to
/// the end of its bucket): the candidate the rollout verdicts below are about.
pub(super) fn own_rollout<'c>(cands: &'c [Candidate], ctx: &Context<'_>) -> Option<&'c Candidate> {
    cands.iter().find(|c| {
        c.kind == "deploy"
            && c.object.strip_prefix("deployment/").is_some_and(|d| ctx.deployments.contains(d))
            && (ctx.onset - 10 * MINUTE_NS..=ctx.onset + ctx.width).contains(&c.time)
    })
}

/// A bump that came back down while the service's own deployment rolled out: its new
/// pods may not have served inside the bump (a rollout's first pods load for minutes), so
/// they are compared with the old ones over the requests from the deploy on — up to 15
/// minutes, at most [`super::chain::DETAIL_PER_SIDE`] requests — as the new ReplicaSet's compute
/// over the old one's.
pub(super) async fn later_rollout_ratio(
    source: &Source,
    ctx: &Context<'_>,
    rollout: &Candidate,
    minutes: &std::collections::BTreeMap<i64, crate::rollup::Cell>,
    to: i64,
) -> Result<Option<f64>> {
    let from = rollout.time;
    let (_, until) =
        super::chain::detail_span(minutes, from, from, to.min(from + 15 * MINUTE_NS), super::chain::DETAIL_PER_SIDE);
    if until <= from {
        return Ok(None);
    }
    let later = source.requests(ctx.service, from, until).await?;
    let later: Vec<&crate::source::Request> = later.iter().collect();
    let old = crate::evidence::distinct(&ctx.before, |r| &*r.replicaset);
    let new_rs = crate::evidence::distinct(&later, |r| &*r.replicaset).into_iter().find(|rs| !old.contains(rs));
    Ok(new_rs.and_then(|rs| crate::evidence::compare(&later, rs, |r| *r.replicaset == *rs)).map(|c| c.ratio()))
}

/// The service's own rollout at the onset, with its new pods' compute over the old ones'
/// (`ratio`, when they served enough to compare), says the rise is no regression:
/// - new pods compute under 0.9x the old: the rollout's capacity dip while pods are
///   replaced, as long as it is modest (under 1.5x);
/// - no new pods to compare yet, the rise still going on, under [`MATERIAL_AT_ONCE`] and
///   at most [`ROLLOUT_WATCH_NS`] old: a rolling update takes pods out of service by
///   design, and until the new ones serve nothing tells a slower version from that dip;
///   watched. The old bound, [`crate::series::MATERIAL_SHORT`], called a dip of 1.28x for
///   two minutes a regression (`faster-deploy` seed 19: a rollout to a *faster* version,
///   the batches of the pods left slower while the new ones loaded); a slower version is
///   still called as soon as its pods serve, since they are then compared.
pub(super) fn rollout_verdict(
    c: &Candidate,
    ratio: Option<f64>,
    found: &crate::series::Found,
    before: f64,
    after: f64,
    width: i64,
) -> Option<String> {
    match ratio {
        Some(r) if r < 0.9 && after < 1.5 * before => Some(format!(
            "p99 rose from {} to {} while {} rolled out (from {}), but its new pods compute {r:.2}x the old ones' \
             time: the rollout's brief capacity dip, not a regression",
            ms(before),
            ms(after),
            c.object,
            rfc3339(c.time),
        )),
        None if found.ongoing
            && after < MATERIAL_AT_ONCE * before
            && (found.regressed.1 - found.regressed.0) as i64 * width <= ROLLOUT_WATCH_NS =>
        {
            let minutes = (found.regressed.1 - found.regressed.0) as i64 * width / MINUTE_NS;
            Some(format!(
                "watching: p99 {} -> {} ({:.2}x) for {minutes} min while {} rolls out (from {}); its new pods have \
                 not served enough to compare: a rollout's capacity dip until they do, a regression if they are slower",
                ms(before),
                ms(after),
                after / before.max(f64::MIN_POSITIVE),
                c.object,
                rfc3339(c.time),
            ))
        }
        _ => None,
    }
}

/// How long a rise during the service's own rollout is watched while its new pods have
/// not served: a model server's first pods pull an image and load weights for minutes,
/// but a rollout whose pods still do not serve after ten is stuck, and the rise is a
/// regression.
const ROLLOUT_WATCH_NS: i64 = 10 * MINUTE_NS;

/// Minutes the busiest load a service served is sustained over: one minute of a burst is
/// not load it has shown it handles.
const BUSIEST_MINUTES: usize = 3;

/// Buckets just before the onset whose rate the rise is measured from.
const RATE_BEFORE_BUCKETS: usize = 5;

/// The load around a rise, in requests a second.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Load {
    /// Mean rate over the [`RATE_BEFORE_BUCKETS`] before the onset.
    pub before: f64,
    /// Mean rate since the onset, and the highest of its buckets.
    pub during: f64,
    pub peak: f64,
    /// The busiest [`BUSIEST_MINUTES`] in the [`LOOKBACK`] before the onset (their mean
    /// rate), and when they began.
    pub busiest: f64,
    pub busiest_at: i64,
}

/// An autoscaler catching up with load the service has served before, not a regression:
/// p99 rose as the request rate rose, that rate stays within the busiest minutes of the
/// last day, and the service's own autoscaler is scaling up. Traffic that breathes does
/// this every day: in the quiet hours the HPA scales down, as it should; when the load
/// comes back p99 leads the new pods by a few minutes (`diurnal` seed 19: 1.32x from
/// 14:19 while the HPA climbed back from 5 to 11). Paging for it teaches the on-call
/// engineer to ignore the page; a larger rise ([`MATERIAL_AT_ONCE`] times the p99 before
/// it), load beyond anything served in the last day, an autoscaler not scaling up, or a
/// top cause other than the service's own autoscaler or traffic is still a regression.
#[allow(clippy::too_many_arguments)]
pub(super) async fn catching_up(
    source: &Source,
    ctx: &Context<'_>,
    cands: &[Candidate],
    series: &Series,
    found: &Found,
    p99: (f64, f64),
    to: i64,
    cfg: &Config,
) -> Result<Option<String>> {
    // What the series alone rules out first: a day of rollups is read only for a rise
    // that came with traffic and whose top cause is the service's own capacity.
    let Some((before, during, peak)) = rates_around(series, found) else { return Ok(None) };
    if !cands.first().is_some_and(own_capacity) || !rose(before, during, cfg) {
        return Ok(None);
    }
    let history = source.rollups(Some(ctx.service), ctx.onset - LOOKBACK, ctx.onset).await?;
    let Some((busiest, busiest_at)) = busiest(&history.minutes(ctx.service, None, ctx.onset - LOOKBACK, ctx.onset))
    else {
        return Ok(None);
    };
    let load = Load { before, during, peak, busiest, busiest_at };
    // The steps while it lasted: once p99 is back, the autoscaler scaling down as the load
    // falls again is no part of it.
    let until = if found.regressed.1 < series.buckets.len() { series.start(found.regressed.1) } else { to };
    let changes = source.changes(ctx.onset - ctx.width, until.min(to)).await?;
    Ok(load_verdict(ctx, &load, &own_steps(ctx, &changes), p99, found.ongoing, cfg))
}

/// The top cause is the service's own autoscaler or its own traffic.
fn own_capacity(top: &Candidate) -> bool {
    matches!(top.kind.as_str(), "scale_down" | "traffic_surge") && top.scope >= 1.0
}

/// The request rates (a second) before the onset, since it, and its busiest bucket, from
/// the series' buckets.
fn rates_around(series: &Series, found: &Found) -> Option<(f64, f64, f64)> {
    let rates = series.rates();
    let (a, b) = (found.regressed.0, found.regressed.1.min(rates.len()));
    if a == 0 || b <= a {
        return None;
    }
    let before = crate::stats::mean(&rates[a.saturating_sub(RATE_BEFORE_BUCKETS)..a]);
    Some((before, crate::stats::mean(&rates[a..b]), rates[a..b].iter().copied().fold(0.0, f64::max)))
}

/// The rate since the onset is the minimum change above the rate before it.
fn rose(before: f64, during: f64, cfg: &Config) -> bool {
    during >= before * (1.0 + cfg.min_relative_change)
}

/// The highest mean rate (requests a second) over [`BUSIEST_MINUTES`] consecutive
/// minutes, and the first of them.
fn busiest(minutes: &std::collections::BTreeMap<i64, crate::rollup::Cell>) -> Option<(f64, i64)> {
    let counts: Vec<(i64, u64)> = minutes.iter().map(|(&m, c)| (m, c.count)).collect();
    counts
        .windows(BUSIEST_MINUTES)
        .filter(|w| w[BUSIEST_MINUTES - 1].0 - w[0].0 == (BUSIEST_MINUTES as i64 - 1) * MINUTE_NS)
        .map(|w| (w.iter().map(|x| x.1).sum::<u64>() as f64 / (BUSIEST_MINUTES as f64 * 60.0), w[0].0))
        .max_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)))
}

/// The service's own autoscaler steps (an `hpa/` or `scaledobject/` of its namespace that
/// [`scope`] counts as its own), in time order.
fn own_steps<'c>(ctx: &Context<'_>, changes: &'c [Change]) -> Vec<&'c Change> {
    changes
        .iter()
        .filter(|c| matches!(c.kind.as_str(), "scale_up" | "scale_down") && c.namespace == ctx.namespace)
        .filter(|c| (c.object.starts_with("hpa/") || c.object.starts_with("scaledobject/")) && scope(ctx, c) >= 1.0)
        .collect()
}

/// [`catching_up`]'s rule on what it read: the rate since the onset is the minimum change
/// above the rate before it, its busiest bucket within the minimum change of the busiest
/// minutes before, p99 under [`MATERIAL_AT_ONCE`] times what it was, and the service's own
/// autoscaler scaled up while it lasted (from the bucket before the onset), never down.
fn load_verdict(
    ctx: &Context<'_>,
    load: &Load,
    steps: &[&Change],
    p99: (f64, f64),
    ongoing: bool,
    cfg: &Config,
) -> Option<String> {
    let rose = rose(load.before, load.during, cfg);
    let served = load.peak <= load.busiest * (1.0 + cfg.min_relative_change);
    if !(rose && served) || p99.1 >= MATERIAL_AT_ONCE * p99.0 {
        return None;
    }
    let since: Vec<&&Change> = steps.iter().filter(|c| c.time >= ctx.onset - ctx.width).collect();
    let (first, last) = (since.first()?, since.last()?);
    if since.iter().any(|c| c.kind != "scale_up") {
        return None;
    }
    Some(format!(
        "p99 rose from {} to {} ({:.2}x) from {} as traffic rose from {:.1}/s to {:.1}/s, within the {:.1}/s served \
         from {}; {} is scaling up ({} -> {} since {}): the autoscaler catching up with load, not a regression{}",
        ms(p99.0),
        ms(p99.1),
        p99.1 / p99.0.max(f64::MIN_POSITIVE),
        hm(ctx.onset),
        load.before,
        load.during,
        load.busiest,
        hm(load.busiest_at),
        last.object,
        first.from,
        last.to,
        hm(first.time),
        if ongoing { " (still catching up)" } else { "" },
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::changepoint::ChangePoint;
    use crate::explain::tests::{ONSET, S, ctx, deploy};

    fn found(ongoing: bool) -> Found {
        let point = ChangePoint { index: 11, mean_before: 10_000.0, mean_after: 11_500.0, p_value: 0.0, energy: 0.0 };
        Found { point, baseline: (0, 11), regressed: (11, 14), ongoing, material: true }
    }

    /// A rise under 1.5x still going on, at most ten minutes old, while the service's own
    /// rollout has no new pods to compare is watched; a larger or longer one, one that came
    /// back down, or a rollout whose new pods were compared and are not faster is not
    /// this; new pods faster is a dip.
    #[test]
    fn a_rise_during_the_services_own_rollout_is_a_dip_or_watched_until_its_pods_serve() {
        let (c, f, d) = (ctx(), found(true), deploy(None));
        assert!(std::ptr::eq(own_rollout(std::slice::from_ref(&d), &c).unwrap(), &d));
        let why = rollout_verdict(&d, None, &f, 10_000.0, 11_500.0, 60 * S).expect("watched");
        assert!(why.starts_with("watching: p99 10.0 s -> 11.5 s (1.15x) for 3 min while deployment/qwen-32b"), "{why}");
        // faster-deploy seed 19: 1.28x for two minutes before the new pods served.
        assert!(rollout_verdict(&d, None, &f, 9_800.0, 12_500.0, 60 * S).is_some(), "1.28x is watched");
        assert!(rollout_verdict(&d, None, &f, 10_000.0, 15_000.0, 60 * S).is_none(), "1.5x is called");
        let mut stuck = found(true);
        stuck.regressed.1 = stuck.regressed.0 + 11;
        assert!(rollout_verdict(&d, None, &stuck, 10_000.0, 11_500.0, 60 * S).is_none(), "11 min is called");
        assert!(rollout_verdict(&d, None, &found(false), 10_000.0, 11_500.0, 60 * S).is_none());
        assert!(rollout_verdict(&d, Some(1.4), &f, 10_000.0, 11_500.0, 60 * S).is_none());
        let why = rollout_verdict(&d, Some(0.6), &found(false), 10_000.0, 12_000.0, 60 * S).expect("a dip");
        assert!(why.contains("new pods compute 0.60x"), "{why}");
        assert!(rollout_verdict(&d, Some(0.6), &f, 10_000.0, 16_000.0, 60 * S).is_none(), "1.6x is called");
        let mut other = deploy(None);
        other.object = "deployment/gemma-9b".into();
        assert!(own_rollout(&[other], &c).is_none());
    }

    fn step(kind: &str, object: &str, at_s: i64, from: &str, to: &str) -> Change {
        Change {
            time: ONSET + at_s * S,
            kind: kind.into(),
            namespace: "serving".into(),
            object: object.into(),
            from: from.into(),
            to: to.into(),
            reason: String::new(),
            message: String::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// `diurnal` seed 19 (14:19): qwen-32b's HPA scaled 12 -> 5 in the trough, the next
    /// rise lifted p99 10.0 s -> 13.2 s while the rate rose 27.9/s -> 46.7/s (the first
    /// peak served 63.3/s) and the HPA scaled 5 -> 8 from 14:19:30. Each condition of the
    /// rule, broken alone, leaves a regression.
    #[test]
    fn a_rise_with_load_served_before_while_the_hpa_scales_up_is_the_autoscaler_catching_up() {
        let (c, cfg) = (ctx(), Config::default());
        let load = Load { before: 27.9, during: 46.7, peak: 54.8, busiest: 63.3, busiest_at: ONSET - 16 * 60 * S };
        let steps = [
            step("scale_down", "hpa/qwen-32b", -105, "6", "5"),
            step("scale_up", "hpa/qwen-32b", 30, "5", "7"),
            step("scale_up", "hpa/qwen-32b", 90, "7", "8"),
        ];
        let all: Vec<&Change> = steps.iter().collect();
        let why = load_verdict(&c, &load, &all, (10_000.0, 13_200.0), true, &cfg).expect("catching up");
        assert_eq!(
            why,
            "p99 rose from 10.0 s to 13.2 s (1.32x) from 14:12:00 as traffic rose from 27.9/s to 46.7/s, within the \
             63.3/s served from 13:56:00; hpa/qwen-32b is scaling up (5 -> 8 since 14:12:30): the autoscaler catching up \
             with load, not a regression (still catching up)"
        );
        // p99 1.5x what it was: a regression, whatever the load.
        assert!(load_verdict(&c, &load, &all, (10_000.0, 15_000.0), true, &cfg).is_none());
        // Traffic that did not rise the minimum change.
        let flat = Load { during: 30.0, ..load.clone() };
        assert!(load_verdict(&c, &flat, &all, (10_000.0, 13_200.0), true, &cfg).is_none());
        // Load beyond the busiest minutes served before (a surge).
        let beyond = Load { peak: 70.0, ..load.clone() };
        assert!(load_verdict(&c, &beyond, &all, (10_000.0, 13_200.0), true, &cfg).is_none());
        // No scale-up yet, or a scale-down since the onset: not catching up.
        assert!(load_verdict(&c, &load, &all[..1], (10_000.0, 13_200.0), true, &cfg).is_none());
        let down = step("scale_down", "hpa/qwen-32b", 120, "8", "6");
        let mut oscillating = all.clone();
        oscillating.push(&down);
        assert!(load_verdict(&c, &load, &oscillating, (10_000.0, 13_200.0), true, &cfg).is_none());
    }

    #[test]
    fn the_busiest_load_is_three_consecutive_minutes_and_the_own_steps_are_the_services() {
        let m = MINUTE_NS;
        let cell = |n: u64| crate::rollup::Cell { count: n, ..Default::default() };
        // A burst minute (9,000) beside quiet ones is not sustained load; 3,600 a minute
        // for three minutes is (60/s).
        let minutes: BTreeMap<i64, _> = [(0, 600), (1, 9000), (2, 600), (5, 3600), (6, 3600), (7, 3600), (8, 600)]
            .map(|(i, n)| (i * m, cell(n)))
            .into();
        assert_eq!(busiest(&minutes), Some((60.0, 5 * m)));
        // Minutes with a gap between them are not consecutive.
        let gappy: BTreeMap<i64, _> = [(0, 3600), (1, 3600), (3, 3600)].map(|(i, n)| (i * m, cell(n))).into();
        assert_eq!(busiest(&gappy), None);

        let mut targeted = step("scale_up", "scaledobject/qwen-autoscaler", 0, "2", "3");
        targeted.attributes.insert("target".into(), "qwen-32b".into());
        let changes = [
            step("scale_up", "hpa/qwen-32b", 0, "5", "6"),
            step("scale_up", "hpa/gemma-9b", 0, "2", "3"),
            step("deploy", "deployment/qwen-32b", 0, "", ""),
            targeted,
        ];
        let own: Vec<&str> = own_steps(&ctx(), &changes).iter().map(|c| c.object.as_str()).collect();
        assert_eq!(own, ["hpa/qwen-32b", "scaledobject/qwen-autoscaler"]);
        assert!(own_capacity(&Candidate { kind: "scale_down".into(), ..deploy(None) }));
        assert!(!own_capacity(&deploy(None)));
        assert!(!own_capacity(&Candidate { kind: "scale_down".into(), scope: 0.1, ..deploy(None) }));
    }
}
