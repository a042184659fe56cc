//! Per-bucket series of one service from its rollups, and the regression in them.
//!
//! Buckets are a minute wide unless traffic is too thin for a per-minute p99 to mean
//! anything: the width grows (2, 5, 10, 15, 30, 60 minutes) until the median bucket holds
//! [`MIN_PER_BUCKET`] requests. Partial buckets at the edges of the data (a run that starts
//! or ends mid-minute, where only the requests that straddle the edge are seen) are left
//! out.

use std::collections::BTreeMap;

use crate::changepoint::{self, ChangePoint};

pub(crate) mod edge;
use crate::rollup::{Cell, MINUTE_NS};

/// Requests the median bucket must hold for its p99 to be used.
pub(crate) const MIN_PER_BUCKET: u64 = 100;
/// Buckets a series needs before change points are looked for.
pub(crate) const MIN_BUCKETS: usize = 8;
const WIDTHS: [i64; 7] = [1, 2, 5, 10, 15, 30, 60];

/// One bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Start, ns.
    pub start: i64,
    /// Everything in it.
    pub cell: Cell,
}

/// A service's buckets.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Bucket width, ns.
    pub width: i64,
    /// Buckets in time order (empty ones left out).
    pub buckets: Vec<Bucket>,
}

impl Series {
    /// Buckets from per-minute cells, the width chosen by traffic.
    pub(crate) fn from_minutes(minutes: &BTreeMap<i64, Cell>) -> Series {
        let mut chosen = None;
        for w in WIDTHS {
            let s = Series::with_width(minutes, w * MINUTE_NS);
            let mut counts: Vec<u64> = s.buckets.iter().map(|b| b.cell.count).collect();
            counts.sort_unstable();
            let median = counts.get(counts.len() / 2).copied().unwrap_or(0);
            let enough = median >= MIN_PER_BUCKET;
            chosen = Some(s);
            if enough {
                break;
            }
        }
        let mut s = chosen.unwrap_or(Series { width: MINUTE_NS, buckets: Vec::new() });
        s.trim_partial_edges();
        s
    }

    fn with_width(minutes: &BTreeMap<i64, Cell>, width: i64) -> Series {
        let mut buckets: BTreeMap<i64, Cell> = BTreeMap::new();
        for (m, c) in minutes {
            buckets.entry(m.div_euclid(width) * width).or_default().merge(c);
        }
        Series { width, buckets: buckets.into_iter().map(|(start, cell)| Bucket { start, cell }).collect() }
    }

    fn trim_partial_edges(&mut self) {
        // A bucket with less than half its neighbour's requests at either edge is partial.
        while self.buckets.len() >= 2 && self.buckets[0].cell.count * 2 < self.buckets[1].cell.count {
            self.buckets.remove(0);
        }
        while self.buckets.len() >= 2 {
            let n = self.buckets.len();
            if self.buckets[n - 1].cell.count * 2 < self.buckets[n - 2].cell.count {
                self.buckets.pop();
            } else {
                break;
            }
        }
    }

    /// A quantile of one field per bucket.
    pub(crate) fn quantiles(&self, q: f64, field: impl Fn(&Cell) -> &crate::sketch::Sketch) -> Vec<f64> {
        self.buckets.iter().map(|b| field(&b.cell).quantile(q).unwrap_or(0.0)).collect()
    }

    /// Requests per second per bucket.
    pub(crate) fn rates(&self) -> Vec<f64> {
        let secs = self.width as f64 / 1e9;
        self.buckets.iter().map(|b| b.cell.count as f64 / secs).collect()
    }

    /// Everything in buckets `[a, b)` merged.
    pub(crate) fn merged(&self, a: usize, b: usize) -> Cell {
        let mut c = Cell::default();
        for bucket in &self.buckets[a.min(self.buckets.len())..b.min(self.buckets.len())] {
            c.merge(&bucket.cell);
        }
        c
    }

    /// The durations of buckets `[a, b)` merged.
    pub(crate) fn merged_duration(&self, a: usize, b: usize) -> crate::sketch::Sketch {
        let mut d = crate::sketch::Sketch::new();
        for bucket in &self.buckets[a.min(self.buckets.len())..b.min(self.buckets.len())] {
            d.merge(&bucket.cell.duration);
        }
        d
    }

    /// Start of bucket `i` (or the end of the series for `i == len`).
    pub(crate) fn start(&self, i: usize) -> i64 {
        match self.buckets.get(i) {
            Some(b) => b.start,
            None => self.buckets.last().map_or(0, |b| b.start + self.width),
        }
    }
}

/// The regression found in a series, if any.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The change point where it began.
    pub point: ChangePoint,
    /// Buckets of the baseline: `[baseline.0, baseline.1)`.
    pub baseline: (usize, usize),
    /// Buckets of the regressed period.
    pub regressed: (usize, usize),
    /// Whether the latest bucket is still regressed.
    pub ongoing: bool,
    /// Whether it is large or long enough to call a regression ([`material`]); one that is
    /// not is reported as being watched, not as a regression.
    pub material: bool,
}

/// A rise this many times its baseline p99 is a regression from its first bucket.
pub(crate) const MATERIAL_AT_ONCE: f64 = 1.5;
/// ... this many times, once it has lasted [`MATERIAL_SHORT_S`].
pub(crate) const MATERIAL_SHORT: f64 = 1.25;
/// Seconds a rise must last at [`MATERIAL_SHORT`].
pub(crate) const MATERIAL_SHORT_S: i64 = 120;
/// Seconds after which any rise beyond normal is a regression.
pub(crate) const MATERIAL_SUSTAINED_S: i64 = 180;

/// Whether a rise beyond normal is large or long enough to be a regression: 1.5x its
/// baseline at once, 1.25x for two minutes, or the minimum change (10%) for three. Traffic
/// that breathes, a rollout's capacity dip and an autoscaler one step behind rising load
/// all lift p99 by 10-40% for a minute or two and then settle; an on-call engineer paged
/// for those stops trusting the page (as an alert's `for:` clause and a burn-rate alert's
/// two windows keep them quiet). Measured on the built-in scenarios (BENCHMARKS.md).
pub(crate) fn material(series: &Series, f: &Found, cfg: &changepoint::Config) -> bool {
    let (ratio, seconds) = size_of(series, f);
    // Settled onto its run of slow buckets, it is still the minimum change above the
    // requests before it.
    ratio >= 1.0 + cfg.min_relative_change
        && (ratio >= MATERIAL_AT_ONCE
            || (ratio >= MATERIAL_SHORT && seconds >= MATERIAL_SHORT_S)
            || seconds >= MATERIAL_SUSTAINED_S)
}

/// A regression's size: the p99 of its requests over that of the requests before it, and
/// how long it has lasted in seconds.
pub(crate) fn size_of(series: &Series, f: &Found) -> (f64, i64) {
    let (a, b) = f.regressed;
    let before = series.merged_duration(0, a).quantile(0.99).unwrap_or(0.0);
    let level = series.merged_duration(a, b).quantile(0.99).unwrap_or(0.0);
    let ratio = if before > 0.0 { level / before } else { 0.0 };
    (ratio, (b - a) as i64 * series.width / 1_000_000_000)
}

/// The regression of a p99 series, or `None` when what changed stays within the
/// service's own normal variation.
///
/// Three searches each propose where a regression began: an upward change point into a
/// level above both the one before it and the window's first level ([`changepoint`]); a
/// bump that came back down ([`find_bump`]); and a regression still going on at the
/// window's end, from its requests ([`edge::find_ongoing`]), which needs no buckets after
/// the onset to be sure. A proposal stands only when its requests' p99 is beyond what the
/// history before it shows as normal ([`beyond_normal`]); the earliest that stands is the
/// regression — on call, the start of the trouble is what leads to its cause, and an
/// autoscaler that oscillates repeats the same cause later.
pub(crate) fn find_regression(series: &Series, p99: &[f64], cfg: &changepoint::Config) -> Option<Found> {
    let mut proposals = from_change_points(p99, cfg);
    proposals.extend(find_bumps(series, p99, cfg));
    proposals.extend(edge::find_ongoing(series, p99, cfg));
    let mut standing: Vec<Found> = proposals.into_iter().filter(|f| beyond_normal(series, p99, f, cfg)).collect();
    standing.sort_by_key(|f| f.point.index);
    let settled: Vec<Found> = standing
        .iter()
        .map(|f| {
            let proposed = f.point.index;
            let mut f = f.clone();
            settle_onset(series, p99, &mut f, cfg);
            // One incident with its repeats: when a later episode is still going on, so is
            // this.
            let later_ongoing = standing.iter().any(|g| g.ongoing && g.point.index >= proposed);
            if !f.ongoing && (later_ongoing || edge::still_elevated(series, f.baseline, cfg)) {
                f.ongoing = true;
                f.regressed.1 = p99.len();
            }
            f.material = material(series, &f, cfg);
            f
        })
        .collect();
    // The earliest regression; when none is material yet, the earliest rise being watched
    // that still stands once settled (a later proposal can settle into a run of buckets
    // that are only just slow).
    settled.iter().find(|f| f.material).or_else(|| settled.iter().find(|f| beyond_normal(series, p99, f, cfg))).cloned()
}

/// An improvement still in effect: the newest downward change point whose level after it
/// (to the end) is the minimum change below the level before it, as (index, level before,
/// level after). A service that got faster has no regression, and says so.
pub(crate) fn find_improvement(p99: &[f64], cfg: &changepoint::Config) -> Option<(usize, f64, f64)> {
    let cp = changepoint::detect(p99, cfg).into_iter().rev().find(|c| c.mean_after < c.mean_before)?;
    let after = crate::stats::mean(&p99[cp.index..]);
    let before = crate::stats::mean(&p99[..cp.index]);
    (after < before * (1.0 - cfg.min_relative_change)).then_some((cp.index, before, after))
}

/// Moves a regression's onset to its first bucket that is itself elevated: a split between
/// two levels, or an interval, can begin a bucket or two before the rise (those buckets
/// are normal; the level after them carries the test) or after it (the most different
/// interval of a bump may leave out its first, smaller step), and the onset is what the
/// causes are timed against.
fn settle_onset(series: &Series, p99: &[f64], f: &mut Found, cfg: &changepoint::Config) {
    // One criterion both ways, which depends only on the data before each bucket: the
    // onset is the start of the run of slow buckets the proposal begins in or next to,
    // whichever search proposed it and wherever the window ends.
    let elevated = |k: usize| edge::bucket_elevated(series, k, cfg);
    // A bucket between two slow ones that fell just short of slow (a rise in two steps, as
    // an HPA removing pods one at a time makes, is one onset), as opposed to one back at
    // the level before: a single slow minute two minutes before an OOM kill loop is noise,
    // and an onset on it times the cause as coming after its own effect (`oom-kill-loop`
    // seed 10: 13.0 s at 14:10, 11.3 s at 14:11, the kills from 14:12 ranked below a node
    // that merely looked slower).
    let fell_just_short =
        |k: usize| series.merged_duration(0, k - 1).quantile(0.99).is_some_and(|before| p99[k] > before);
    let end = f.regressed.1;
    let mut start = f.regressed.0;
    // Forward to the first slow bucket that is not alone: one followed by a bucket back at
    // the level before, with a slow one in the two after, is noise ahead of the rise. The
    // look ahead is short and at most two such buckets are passed over: each look tests a
    // bucket against all before it, and a series that alternates for hours (bursts) must
    // not cost a test per bucket of the day.
    let mut passed = 0;
    loop {
        while end - start > 1 && !elevated(start) {
            start += 1;
        }
        let alone = passed < 2
            && start + 2 < end
            && !elevated(start + 1)
            && !fell_just_short(start + 1)
            && (start + 2..end.min(start + 4)).any(elevated);
        if !alone {
            break;
        }
        start += 1;
        passed += 1;
    }
    // Back over slow buckets, and over one that fell just short between two slow ones.
    loop {
        if start > 0 && elevated(start - 1) {
            start -= 1;
        } else if start > 1 && fell_just_short(start - 1) && elevated(start - 2) {
            start -= 2;
        } else {
            break;
        }
    }
    f.regressed.0 = start;
    // Settled back past its baseline's start (a later episode whose run of slow buckets
    // reaches back): the baseline is then everything before it.
    if start <= f.baseline.0 {
        f.baseline.0 = 0;
    }
    f.baseline.1 = start;
    f.point.index = start;
    f.point.mean_before = crate::stats::mean(&p99[f.baseline.0..start]);
}

/// Upward change points into a level above the one before it and the window's first.
fn from_change_points(p99: &[f64], cfg: &changepoint::Config) -> Vec<Found> {
    let cps = changepoint::detect(p99, cfg);
    let mut bounds = vec![0];
    bounds.extend(cps.iter().map(|c| c.index));
    bounds.push(p99.len());
    let levels: Vec<f64> = bounds.windows(2).map(|w| crate::stats::mean(&p99[w[0]..w[1]])).collect();
    let elevated = |level: f64, base: f64| level > base * (1.0 + cfg.min_relative_change);
    let base = levels[0];
    cps.iter()
        .enumerate()
        .filter_map(|(k, cp)| {
            let up =
                cp.mean_after > cp.mean_before && elevated(levels[k + 1], levels[k]) && elevated(levels[k + 1], base);
            if !up {
                return None;
            }
            let ongoing = levels[k + 1..].iter().all(|l| elevated(*l, base));
            let end = if ongoing { p99.len() } else { bounds[k + 2] };
            Some(Found {
                point: *cp,
                baseline: (bounds[k], bounds[k + 1]),
                regressed: (bounds[k + 1], end),
                ongoing,
                material: false,
            })
        })
        .collect()
}

/// Whether a proposed regression is beyond the service's normal variation: the p99 of its
/// requests is at least the minimum change above the p99 of every request before it, and
/// half the minimum change above the worst stretch of the history as long as it
/// ([`worst_stretch`]; traffic that breathes — diurnal swings the autoscaler follows,
/// periodic bursts — shows its peaks there first, and the next peak is a little higher or
/// lower).
pub(crate) fn beyond_normal(series: &Series, p99: &[f64], f: &Found, cfg: &changepoint::Config) -> bool {
    let start = f.regressed.0;
    if start < cfg.min_size.max(2) {
        return false;
    }
    let (Some(before), Some(level)) =
        (series.merged_duration(0, start).quantile(0.99), series.merged_duration(start, f.regressed.1).quantile(0.99))
    else {
        return false;
    };
    let peak = worst_stretch(series, p99, start, f.regressed.1 - start);
    level >= before * (1.0 + cfg.min_relative_change) && level > peak * (1.0 + cfg.min_relative_change / 2.0)
}

/// Longest stretch of history [`worst_stretch`] compares a regression with, in buckets.
const STRETCH_MAX: usize = 10;

/// The highest p99 of any `len` consecutive buckets before bucket `start` (their requests
/// merged), `len` capped at [`STRETCH_MAX`] and at half the history. Like is compared with
/// like: a regression's p99 over its requests is one figure over many minutes, and the
/// highest single minute of a long history is an extreme of its noise. In `hpa-scale-down`
/// seed 11 the scale-down lifted p99 about 1.11x for 17 minutes (the queue's p99 from
/// 50 ms to 0.3-1.6 s), and its p99 stayed under 1.05x the slowest single minute of the
/// 13 before (12.9 s against a typical 11.8 s): it was called no change. A one-bucket rise
/// is still compared with the slowest single buckets. Stretches start every `len / 2`
/// buckets (and one ends at `start`), so that a day of minutes costs about 3,000 sketch
/// merges a call, not 15,000.
fn worst_stretch(series: &Series, p99: &[f64], start: usize, len: usize) -> f64 {
    let len = len.min(STRETCH_MAX).min(start / 2).max(1);
    if len == 1 {
        return p99[..start].iter().copied().fold(f64::MIN, f64::max);
    }
    (0..=start - len)
        .step_by(len / 2)
        .chain(std::iter::once(start - len))
        .filter_map(|i| series.merged_duration(i, i + len).quantile(0.99))
        .fold(f64::MIN, f64::max)
}

/// Bumps that came back down: the most different interval of the p99 series (circular
/// binary segmentation), tested on the requests themselves, since a few minutes of p99s
/// are too few points for a t-test: the share of requests above the p99 of those before it
/// inside the interval against the 1% before it (two-proportion z-test), Bonferroni-
/// corrected for the number of intervals searched, and the interval's p99 level at least
/// the minimum change above the level before it. Then again before the one found, for as
/// long as one is significant.
fn find_bumps(series: &Series, p99: &[f64], cfg: &changepoint::Config) -> Vec<Found> {
    // The most different bump, then again before it, for as long as one is significant:
    // the earliest is where the trouble began.
    let mut found = Vec::new();
    let mut end = p99.len();
    while let Some(mut bump) = bump_in(series, &p99[..end], cfg) {
        end = bump.point.index;
        bump.ongoing = bump.regressed.1 == p99.len();
        found.push(bump);
    }
    found
}

/// The most different interval of `p99` (a prefix of the series) if it is a significant
/// bump.
fn bump_in(series: &Series, p99: &[f64], cfg: &changepoint::Config) -> Option<Found> {
    let n = p99.len();
    let (i, j) = changepoint::best_interval(p99, cfg.min_size.max(2))?;
    // Against the requests before the bump only: a slow period at the start of the
    // window that got faster (an improvement) is no bump.
    let outer = series.merged(0, i);
    let inner = series.merged(i, j);
    let threshold = outer.duration.quantile(0.99)?;
    let above = |c: &crate::rollup::Cell| (c.duration.count() - c.duration.count_at_or_below(threshold)) as f64;
    let (n_in, n_out) = (inner.duration.count() as f64, outer.duration.count() as f64);
    if n_in < 1.0 || n_out < 1.0 {
        return None;
    }
    let (x_in, x_out) = (above(&inner), above(&outer));
    let pooled = (x_in + x_out) / (n_in + n_out);
    let se = (pooled * (1.0 - pooled) * (1.0 / n_in + 1.0 / n_out)).sqrt();
    let z = if se > 0.0 { (x_in / n_in - x_out / n_out) / se } else { 0.0 };
    let p = crate::stats::normal_sf(z);
    let intervals = (n * n / 2).max(1) as f64;
    let level_in = crate::stats::mean(&p99[i..j]);
    let level_out = crate::stats::mean(&p99[..i]);
    if z <= 0.0 || p * intervals >= cfg.max_p_value || level_in < level_out * (1.0 + cfg.min_relative_change) {
        return None;
    }
    let point = changepoint::ChangePoint {
        index: i,
        mean_before: crate::stats::mean(&p99[..i]),
        mean_after: level_in,
        p_value: (p * intervals).min(1.0),
        energy: changepoint::energy_at(&p99[..j], i),
    };
    Some(Found { point, baseline: (0, i), regressed: (i, j), ongoing: j == n, material: false })
}

#[cfg(test)]
mod tests;
