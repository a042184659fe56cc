//! The steps of `slo explain`, in the order they run: which service, whether its p99
//! regressed (and if not, why not), the requests around the onset, the candidate causes
//! ranked, and the regression's figures.

use std::collections::BTreeMap;

use super::{Regression, no_regression, round};
use crate::candidates::{self, Candidate, Context};
use crate::changepoint::{self, Config};
use crate::error::{Error, Result};
use crate::evidence;
use crate::rollup::{Cell, MINUTE_NS, Rollups};
use crate::series::{self, Found, Series};
use crate::source::{Request, Source};
use crate::text::{hm, ms, rfc3339};

/// The service asked about, or the one whose p99 rose most; a service without requests
/// in the window is a usage error naming the ones there are.
pub(super) async fn resolve_service(
    source: &Source,
    all: &Rollups,
    asked: Option<String>,
    from: i64,
    to: i64,
    cfg: &Config,
) -> Result<String> {
    match asked {
        Some(s) if all.services().contains_key(&s) => Ok(s),
        Some(s) => {
            let services = source.rollups(None, from, to).await?.services();
            Err(Error::Usage(format!(
                "service {s:?} has no requests between {} and {} (services there: {})",
                rfc3339(from),
                rfc3339(to),
                if services.is_empty() {
                    "none".to_string()
                } else {
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )))
        }
        None => pick_service(all, from, to, cfg).ok_or_else(|| {
            Error::Usage(format!("there are no requests between {} and {}", rfc3339(from), rfc3339(to)))
        }),
    }
}

/// How the answer begins when nothing in the window is beyond normal variation (not
/// watching a rise, not an improvement, not too little data): what the lookback past the
/// window keys on.
pub(super) const NO_CHANGE: &str = "no significant change in p99";

/// The regression in the series, or the answer that there is none and why: too little
/// data, an improvement, or nothing beyond the service's normal variation.
pub(super) fn detect(series: &Series, p99: &[f64], cfg: &Config) -> std::result::Result<Found, Box<Regression>> {
    if series.buckets.len() < series::MIN_BUCKETS {
        return Err(Box::new(no_regression(format!(
            "too little data: {} bucket(s) of {} s with enough requests, {} needed",
            series.buckets.len(),
            series.width / 1_000_000_000,
            series::MIN_BUCKETS
        ))));
    }
    let found = series::find_regression(series, p99, cfg);
    if let Some(found) = found.iter().find(|f| f.material) {
        return Ok(found.clone());
    }
    let why = match (found, series::find_improvement(p99, cfg)) {
        // A rise beyond normal, too small and short so far: said, with what would make it one.
        (Some(f), _) => {
            let (ratio, seconds) = series::size_of(series, &f);
            format!(
                "watching: p99 {:.2}x its baseline since {} ({} min, {}); a regression at {}x, at {}x for {} min, or after {} min",
                ratio,
                hm(series.start(f.regressed.0)),
                seconds / 60,
                if f.ongoing { "still up" } else { "since recovered" },
                series::MATERIAL_AT_ONCE,
                series::MATERIAL_SHORT,
                series::MATERIAL_SHORT_S / 60,
                series::MATERIAL_SUSTAINED_S / 60
            )
        }
        (None, Some((i, before, after))) => format!(
            "p99 improved from {} to {} at {} (no regression after it)",
            ms(before),
            ms(after),
            rfc3339(series.start(i))
        ),
        (None, None) => format!(
            "{NO_CHANGE} beyond its normal variation (p < {} and at least {:.0}%)",
            cfg.max_p_value,
            cfg.min_relative_change * 100.0
        ),
    };
    let mut r = no_regression(why);
    r.p99_now_ms = p99.last().map(|v| round(*v, 1));
    Err(Box::new(r))
}

/// A second rise inside the regression: the first bucket, at least two after the onset,
/// that begins two buckets in a row at [`series::MATERIAL_AT_ONCE`] times the median
/// bucket p99 since the onset. Two causes at once rarely land in the same minute (a
/// rollout and the scale-down its new HPA target brings, a node lost while a surge is
/// absorbed), and a level that jumps again inside a regression is what the second did. A
/// change-point test over a handful of minutes as noisy as an oscillating autoscaler makes
/// them would not call it; two minutes at 1.5x, each a p99 over hundreds of requests, is
/// not noise. Returned as the regression it would be on its own: the first regressed
/// level as its baseline.
pub(super) fn later_step(p99: &[f64], found: &Found) -> Option<Found> {
    let (a, b) = found.regressed;
    let k = (a + 2..b.min(p99.len()).saturating_sub(1)).find(|&k| {
        let level = crate::stats::median(&p99[a..k]).unwrap_or(f64::INFINITY);
        p99[k] >= series::MATERIAL_AT_ONCE * level && p99[k + 1] >= series::MATERIAL_AT_ONCE * level
    })?;
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;
    let point = changepoint::ChangePoint {
        index: k,
        mean_before: mean(&p99[a..k]),
        mean_after: mean(&p99[k..b]),
        p_value: found.point.p_value,
        energy: 0.0,
    };
    Some(Found { point, baseline: (a, k), regressed: (k, b), ongoing: found.ongoing, material: true })
}

/// Request detail around the onset: at most 15 minutes and [`DETAIL_PER_SIDE`] requests a
/// side, the nearest to the onset.
pub(super) async fn read_detail(
    source: &Source,
    service: &str,
    minutes: &BTreeMap<i64, Cell>,
    series: &Series,
    found: &Found,
) -> Result<Vec<Request>> {
    let onset = series.start(found.point.index);
    let horizon = 15 * MINUTE_NS;
    let (from, to) = detail_span(
        minutes,
        onset,
        series.start(found.baseline.0).max(onset - horizon),
        series.start(found.regressed.1).min(onset + horizon),
        DETAIL_PER_SIDE,
    );
    source.requests(service, from, to).await
}

/// What scoring knows: the requests before and after the onset, the tail's split, rates
/// and token medians of the baseline and the regressed period.
pub(super) fn context<'a>(service: &'a str, detail: &'a [Request], series: &Series, found: &Found) -> Context<'a> {
    let onset = series.start(found.point.index);
    let base = series.merged(found.baseline.0, found.baseline.1);
    let reg = series.merged(found.regressed.0, found.regressed.1);
    let before: Vec<&Request> = detail.iter().filter(|r| r.time < onset).collect();
    let after: Vec<&Request> = detail.iter().filter(|r| r.time >= onset).collect();
    let secs = |a: usize, b: usize| (series.start(b) - series.start(a)) as f64 / 1e9;
    let median = |c: &Cell, f: fn(&Cell) -> &crate::sketch::Sketch| f(c).quantile(0.5).unwrap_or(0.0);
    Context {
        service,
        deployments: evidence::distinct(&detail.iter().collect::<Vec<_>>(), |r| &*r.deployment)
            .into_iter()
            .map(str::to_string)
            .collect(),
        namespace: detail.first().map(|r| r.namespace.to_string()).unwrap_or_default(),
        onset,
        width: series.width,
        tail: evidence::tail_shift(&before, &after),
        rate: (
            base.count as f64 / secs(found.baseline.0, found.baseline.1).max(1.0),
            reg.count as f64 / secs(found.regressed.0, found.regressed.1).max(1.0),
        ),
        input_tokens: (median(&base, |c| &c.input_tokens), median(&reg, |c| &c.input_tokens)),
        output_tokens: (median(&base, |c| &c.output_tokens), median(&reg, |c| &c.output_tokens)),
        before,
        after,
    }
}

/// The candidates from the changes around the onset (never after the window's end:
/// `--at` in the past answers as it would have then) and from the data, scored and
/// sorted; with how many changes were looked at.
pub(super) async fn rank(
    source: &Source,
    ctx: &Context<'_>,
    series: &Series,
    found: &Found,
    to: i64,
    cfg: &Config,
) -> Result<(Vec<Candidate>, usize)> {
    let onset = ctx.onset;
    let lookback = 30 * MINUTE_NS;
    let changes = source.changes(onset - lookback, (onset + 2 * series.width + MINUTE_NS).min(to)).await?;
    let throttle = source.node_throttle(onset - lookback, to).await?;
    let rate_onset = nearest_upward(series, &series.rates(), found.point.index, cfg);
    let tokens = series.quantiles(0.5, |c| &c.input_tokens);
    // A drift in prompt length begins where it begins; a step is found either way.
    let token_onset = changepoint::drift_start(&tokens, found.point.index)
        .filter(|i| i.abs_diff(found.point.index) <= 10)
        .map(|i| series.start(i))
        .or_else(|| nearest_upward(series, &tokens, found.point.index, cfg));
    let mut cands = candidates::from_changes(ctx, &changes);
    cands.extend(candidates::from_metrics(ctx, &throttle, rate_onset, token_onset));
    candidates::score(ctx, &mut cands);
    Ok((cands, changes.len()))
}

/// The regression's figures: onset, p99 before and after (merged sketches), the tail's
/// split, queue and compute p99s, whether it is going on, and the newest bucket's p99.
pub(super) fn regression(series: &Series, p99: &[f64], found: &Found, ctx: &Context<'_>) -> Regression {
    let base = series.merged(found.baseline.0, found.baseline.1);
    let reg = series.merged(found.regressed.0, found.regressed.1);
    let q99 = |c: &Cell, f: fn(&Cell) -> &crate::sketch::Sketch| round(f(c).quantile(0.99).unwrap_or(0.0), 1);
    Regression {
        detected: true,
        reason: None,
        onset: Some(rfc3339(ctx.onset)),
        p99_before_ms: Some(q99(&base, |c| &c.duration)),
        p99_after_ms: Some(q99(&reg, |c| &c.duration)),
        p_value: Some(found.point.p_value),
        queue_share: ctx.tail.map(|t| round(t.queue_share, 3)),
        compute_share: ctx.tail.map(|t| round(t.compute_share, 3)),
        queue_p99_ms: Some([q99(&base, |c| &c.queue), q99(&reg, |c| &c.queue)]),
        compute_p99_ms: Some([q99(&base, |c| &c.compute), q99(&reg, |c| &c.compute)]),
        ongoing: Some(found.ongoing),
        p99_now_ms: p99.last().map(|v| round(*v, 1)),
        note: None,
    }
}

/// Requests read a side of the onset for the before/after tests. Above it the tests are
/// already decided (their p-values are far below any threshold), and the reading cost
/// grows with the traffic: at 1,000 requests/s the 15 minutes a side are 900,000 requests.
pub(super) const DETAIL_PER_SIDE: u64 = 150_000;

/// The span `[from, to)` within `[lo, hi)` around `onset`, in whole minutes, that holds at
/// most `cap` requests a side by the minute counts (at least one minute a side).
pub(super) fn detail_span(minutes: &BTreeMap<i64, Cell>, onset: i64, lo: i64, hi: i64, cap: u64) -> (i64, i64) {
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

/// The upward change point of `values` nearest to bucket `index` (within 10 buckets),
/// moved back to the first bucket of the rise: a split between two levels can fall after a
/// bucket that is already part way up (a surge that began inside a minute), and when the
/// rise began is what it is timed by.
fn nearest_upward(series: &Series, values: &[f64], index: usize, cfg: &Config) -> Option<i64> {
    let cp = changepoint::detect(values, cfg)
        .into_iter()
        .filter(|c| c.mean_after > c.mean_before && c.index.abs_diff(index) <= 10)
        .min_by_key(|c| c.index.abs_diff(index))?;
    Some(series.start(rise_start(values, cp.index, cp.mean_before, cfg)))
}

/// The first bucket of the run before `at` whose values are all at least the minimum
/// change above `before`.
fn rise_start(values: &[f64], at: usize, before: f64, cfg: &Config) -> usize {
    let mut k = at;
    while k > 0 && values[k - 1] > before * (1.0 + cfg.min_relative_change) {
        k -= 1;
    }
    k
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_is_timed_from_its_first_bucket_part_way_up() {
        let cfg = Config::default();
        let m = MINUTE_NS;
        let series = |per_minute: &[u64]| {
            let minutes: BTreeMap<i64, Cell> = per_minute
                .iter()
                .enumerate()
                .map(|(i, &n)| (i as i64 * m, Cell { count: n, ..Cell::default() }))
                .collect();
            Series::from_minutes(&minutes)
        };
        // A surge that began inside minute 12 (2,200 a minute, then 5,400): that minute is
        // part way up, and the surge is timed from it, not from the first full minute.
        let mut counts = vec![2200; 12];
        counts.push(3700);
        counts.extend(vec![5400; 6]);
        let s = series(&counts);
        assert_eq!(nearest_upward(&s, &s.rates(), 12, &cfg), Some(12 * m));
        // A minute within the minimum change of the level before is not part of the rise.
        counts[12] = 2300;
        let s = series(&counts);
        assert_eq!(nearest_upward(&s, &s.rates(), 12, &cfg), Some(13 * m));
    }

    /// Two causes at once (two-causes, seed 1): a slower rollout lifts p99 from 14:14, and
    /// the scale-down its new HPA target brings doubles it again at 14:17.
    #[test]
    fn a_second_rise_inside_the_regression_is_its_own_step() {
        let mut p99 = vec![11.2, 10.6, 10.6, 10.8, 11.0, 9.8, 11.1, 10.4, 11.5, 10.6, 10.3, 10.7, 11.1, 11.1];
        p99.extend([12.3, 16.3, 18.1, 38.6, 40.4, 36.4, 18.5, 14.5, 15.4, 13.9, 13.1, 16.3, 25.7, 33.8, 41.1, 27.2]);
        let point =
            changepoint::ChangePoint { index: 14, mean_before: 10.7, mean_after: 24.0, p_value: 0.0, energy: 0.0 };
        let found = Found { point, baseline: (0, 14), regressed: (14, 30), ongoing: true, material: true };
        let step = later_step(&p99, &found).expect("the second rise");
        assert_eq!(step.point.index, 17, "{step:?}");
        assert_eq!((step.baseline, step.regressed), ((14, 17), (17, 30)));
        // A regression at one level has no second step.
        let flat: Vec<f64> = (0..30).map(|i| if i < 14 { 10.0 } else { 20.0 + (i % 3) as f64 }).collect();
        assert!(later_step(&flat, &found).is_none());
        // Nor one whose jump lasts a single bucket.
        let mut blip = flat.clone();
        blip[20] = 60.0;
        assert!(later_step(&blip, &found).is_none());
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
