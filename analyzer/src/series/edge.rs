//! A regression still going on at the window's end, found from the requests themselves.
//!
//! A change-point test over per-bucket p99s needs several buckets on each side of the
//! change; minutes after the onset there are one or two. But those minutes hold hundreds of
//! requests each, and the requests settle it: the share of them above the history's p99 is
//! 1% while nothing changed. For every start `s` among the last buckets, the requests from
//! `s` to the end are tested against that share, with the variance scaled by how much the
//! share already varies from bucket to bucket in the history (a quasi-binomial test:
//! traffic that breathes — bursts, diurnal swings — widens its own yardstick), and
//! Bonferroni-corrected for the starts tried. The start with the strongest evidence is the
//! onset.

use super::{Found, Series};
use crate::changepoint::{ChangePoint, Config};
use crate::sketch::Sketch;

/// Buckets of history a start needs before it.
pub(crate) const MIN_HISTORY: usize = 5;
/// Newest buckets tried as the start of a regression still going on: half an hour of
/// minutes, so that an incident's onset stays in reach while it goes on.
pub(crate) const MAX_TRAILING: usize = 30;

/// The share of requests of each bucket above `threshold`: (above, count) per bucket.
fn above(series: &Series, threshold: f64, a: usize, b: usize) -> Vec<(f64, f64)> {
    series.buckets[a..b]
        .iter()
        .map(|bk| {
            let d = &bk.cell.duration;
            ((d.count() - d.count_at_or_below(threshold)) as f64, d.count() as f64)
        })
        .collect()
}

/// How much more the share varies between buckets than a binomial would (>= 1): Pearson's
/// chi-square over the buckets divided by its degrees of freedom.
fn dispersion(per_bucket: &[(f64, f64)], p0: f64) -> f64 {
    if per_bucket.len() < 2 || p0 <= 0.0 || p0 >= 1.0 {
        return 1.0;
    }
    let chi2: f64 = per_bucket
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(x, n)| {
            let e = n * p0;
            (x - e) * (x - e) / (e * (1.0 - p0))
        })
        .sum();
    (chi2 / (per_bucket.len() - 1) as f64).max(1.0)
}

/// The requests of buckets `recent` against those of buckets `history`: the share above
/// the history's p99 against the history's own share, its variance widened by the
/// history's dispersion, Bonferroni-corrected for `tries`. `Some((z, p))` when the recent
/// requests are significantly more often slow and their p99 is the minimum change above.
fn test(
    series: &Series,
    history: (usize, usize),
    recent: (usize, usize),
    tries: f64,
    cfg: &Config,
) -> Option<(f64, f64)> {
    let mut past_sketch = Sketch::new();
    for b in &series.buckets[history.0..history.1] {
        past_sketch.merge(&b.cell.duration);
    }
    let threshold = past_sketch.quantile(0.99)?;
    let past = above(series, threshold, history.0, history.1);
    let (x0, n0) = past.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let (x, m) = above(series, threshold, recent.0, recent.1).iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    if n0 < 1.0 || m < 1.0 {
        return None;
    }
    let p0 = (x0 / n0).max(0.5 / n0);
    let se = (dispersion(&past, p0) * p0 * (1.0 - p0) / m).sqrt();
    let z = (x / m - p0) / se;
    let p = (crate::stats::normal_sf(z) * tries).min(1.0);
    let level = series.merged_duration(recent.0, recent.1).quantile(0.99)?;
    (z > 0.0 && p < cfg.max_p_value && level >= threshold * (1.0 + cfg.min_relative_change)).then_some((z, p))
}

/// The regression at the end of `series`, if the newest buckets' requests show one.
pub(crate) fn find_ongoing(series: &Series, p99: &[f64], cfg: &Config) -> Option<Found> {
    let n = series.buckets.len();
    if n < MIN_HISTORY + 1 {
        return None;
    }
    let first = (n - MAX_TRAILING.min(n - MIN_HISTORY)).max(MIN_HISTORY);
    let tries = (n - first) as f64;
    let mut best: Option<(f64, f64, usize)> = None;
    for s in first..n {
        let Some((z, p)) = test(series, (0, s), (s, n), tries, cfg) else { continue };
        // Going on means the newest buckets too, not a bump inside [s, n) that came back
        // down (those are `find_bumps`' to find).
        let newest = (n - 3).max(s);
        if newest > s && test(series, (0, s), (newest, n), 1.0, cfg).is_none() {
            continue;
        }
        if best.is_none_or(|b| z > b.0) {
            best = Some((z, p, s));
        }
    }
    let (_, p_value, s) = best?;
    let point = ChangePoint {
        index: s,
        mean_before: crate::stats::mean(&p99[..s]),
        mean_after: crate::stats::mean(&p99[s..]),
        p_value,
        energy: crate::changepoint::energy_at(p99, s),
    };
    Some(Found { point, baseline: (0, s), regressed: (s, n), ongoing: true, material: false })
}

/// Whether bucket `k`'s requests alone are significantly slower than those of the buckets
/// before it (one try).
pub(crate) fn bucket_elevated(series: &Series, k: usize, cfg: &Config) -> bool {
    k >= MIN_HISTORY && test(series, (0, k), (k, k + 1), 1.0, cfg).is_some()
}

/// Whether the newest buckets (the last one, two or three) are still slow against a
/// regression's baseline: an episode that came back down and rose again is one incident
/// still going on, even where the history's peaks already hold the first episode.
pub(crate) fn still_elevated(series: &Series, baseline: (usize, usize), cfg: &Config) -> bool {
    let n = series.buckets.len();
    (1..=3.min(n.saturating_sub(baseline.1))).any(|k| test(series, baseline, (n - k, n), 3.0, cfg).is_some())
}
