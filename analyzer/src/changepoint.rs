//! Change points in a series: E-Divisive means with a t-test, the way Apache Otava
//! (formerly Hunter, used on CI benchmark series at MongoDB and DataStax) does it.
//!
//! The split that maximizes the energy statistic of Matteson & James (2014, alpha = 1) is
//! found for each segment; a Welch t-test between the two sides decides whether it is a
//! change. Inference incidents are often bumps that recover (the HPA catches up, the
//! replacement pod gets ready), which one split barely sees: [`best_interval`] finds the
//! most different inner interval (circular binary segmentation) for the caller to test
//! with the requests themselves (see `series`). Splitting goes on recursively while splits are significant (`p < max_p_value`)
//! and large enough (`min_relative_change`); then every accepted point is re-tested against
//! the segments between its neighbours and the weakest insignificant one is dropped until
//! all stand. The energy statistic of every split of a segment is computed in
//! O(n log n) with Fenwick trees over value ranks, so 10,000 points take milliseconds.

use crate::stats;

/// How sensitive detection is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// A split is a change when the two sides' means differ with a p-value below this.
    pub max_p_value: f64,
    /// ... and by at least this fraction of the smaller mean.
    pub min_relative_change: f64,
    /// Fewest points a segment may have on each side of a change.
    pub min_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config { max_p_value: 0.001, min_relative_change: 0.10, min_size: 3 }
    }
}

/// One change: the series is different from `index` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    /// First index of the new level.
    pub index: usize,
    /// Mean of the segment before (back to the previous change point).
    pub mean_before: f64,
    /// Mean of the segment after (up to the next change point).
    pub mean_after: f64,
    /// Welch t-test p-value between the two segments.
    pub p_value: f64,
    /// The energy statistic of the split.
    pub energy: f64,
}

impl ChangePoint {
    /// `mean_after / mean_before - 1`.
    pub fn relative_change(&self) -> f64 {
        if self.mean_before.abs() < f64::EPSILON {
            if self.mean_after.abs() < f64::EPSILON { 0.0 } else { f64::INFINITY }
        } else {
            self.mean_after / self.mean_before - 1.0
        }
    }
}

/// Change points of `x`, in index order.
pub fn detect(x: &[f64], cfg: &Config) -> Vec<ChangePoint> {
    let min_size = cfg.min_size.max(2);
    let mut points: Vec<usize> = Vec::new();
    let mut queue = vec![(0usize, x.len())];
    while let Some((a, b)) = queue.pop() {
        let Some((tau, _)) = best_split(&x[a..b], min_size) else { continue };
        let tau = a + tau;
        if significant(&x[a..tau], &x[tau..b], cfg) {
            points.push(tau);
            queue.push((a, tau));
            queue.push((tau, b));
        }
    }
    points.sort_unstable();
    // Re-test each point between its neighbours; drop the weakest failing one at a time.
    loop {
        let tested: Vec<(usize, f64, bool)> = points
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let lo = if i == 0 { 0 } else { points[i - 1] };
                let hi = points.get(i + 1).copied().unwrap_or(x.len());
                let pv = stats::welch_t_test(&x[lo..p], &x[p..hi]).unwrap_or(1.0);
                (i, pv, significant(&x[lo..p], &x[p..hi], cfg))
            })
            .collect();
        let weakest = tested.iter().filter(|t| !t.2).max_by(|a, b| a.1.total_cmp(&b.1));
        match weakest {
            Some(&(i, _, _)) => {
                points.remove(i);
            }
            None => break,
        }
    }
    points
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let lo = if i == 0 { 0 } else { points[i - 1] };
            let hi = points.get(i + 1).copied().unwrap_or(x.len());
            let (before, after) = (&x[lo..p], &x[p..hi]);
            ChangePoint {
                index: p,
                mean_before: stats::mean(before),
                mean_after: stats::mean(after),
                p_value: stats::welch_t_test(before, after).unwrap_or(1.0),
                energy: best_split(&x[lo..hi], 1).map_or(0.0, |_| energy_at(&x[lo..hi], p - lo)),
            }
        })
        .collect()
}

fn significant(before: &[f64], after: &[f64], cfg: &Config) -> bool {
    let Some(p) = stats::welch_t_test(before, after) else { return false };
    let (mb, ma) = (stats::mean(before), stats::mean(after));
    let smaller = mb.abs().min(ma.abs());
    let rel = if smaller < f64::EPSILON { f64::INFINITY } else { (ma - mb).abs() / smaller };
    p < cfg.max_p_value && rel >= cfg.min_relative_change
}

/// The interval `[i, j)` (at least `min_size` long, with at least `min_size` points on
/// each side of it) whose mean is most above the rest's: circular binary segmentation
/// (Olshen et al., 2004) looking one way, for a bump that came back down where a single
/// split sees little (a dip is not a regression, and must not hide a smaller bump).
/// `None` when no interval is above the rest. O(n^2) with prefix sums.
pub(crate) fn best_interval(x: &[f64], min_size: usize) -> Option<(usize, usize)> {
    let n = x.len();
    if n < 3 * min_size {
        return None;
    }
    let mut s = vec![0.0; n + 1];
    for (k, v) in x.iter().enumerate() {
        s[k + 1] = s[k] + v;
    }
    let tot = s[n];
    let mut best: Option<(usize, usize, f64)> = None;
    for i in min_size..n {
        for j in (i + min_size)..=(n - min_size) {
            let m = (j - i) as f64;
            let k = (n - (j - i)) as f64;
            let si = s[j] - s[i];
            // Olshen's statistic with one scale for the whole segment: the mean difference
            // weighted by sqrt(m k / n); the scale does not move the argmax.
            let t = (si / m - (tot - si) / k) * (m * k / n as f64).sqrt();
            if best.is_none_or(|b| t > b.2) {
                best = Some((i, j, t));
            }
        }
    }
    best.filter(|b| b.2 > 0.0).map(|(i, j, _)| (i, j))
}

/// Where an upward drift began: Page's CUSUM (k = 0.5 sd, h = 5 sd) over `x` with the mean
/// and spread of `x[..baseline_end]`, and the change dated at the start of the unbroken
/// run of points more than 2 sd above the mean that ends where the sum first crosses `h`. A ramp (prompts lengthening over fifteen minutes)
/// begins where it begins, where a split between two levels lands in its middle. `None`
/// without four baseline points or an alarm.
pub(crate) fn drift_start(x: &[f64], baseline_end: usize) -> Option<usize> {
    let base = &x[..baseline_end.min(x.len())];
    if base.len() < 4 {
        return None;
    }
    let (mean, var) = stats::mean_var(base)?;
    // A floor on the spread: per-minute medians over thousands of requests barely move.
    let sd = var.sqrt().max(mean.abs() * 0.01).max(f64::MIN_POSITIVE);
    let (k, h) = (0.5 * sd, 5.0 * sd);
    let mut sum = 0.0;
    let mut last_zero = 0;
    for (i, v) in x.iter().enumerate() {
        sum = (sum + v - mean - k).max(0.0);
        if sum == 0.0 {
            last_zero = i + 1;
        } else if sum > h {
            // The sum can start points early on noise above the mean; the drift begins
            // where the unbroken run of points clearly above it (2 sd) that ends here does.
            let mut start = i;
            while start > last_zero && x[start - 1] >= mean + 2.0 * sd {
                start -= 1;
            }
            return Some(start);
        }
    }
    None
}

/// A Fenwick tree of counts and sums over value ranks.
struct Fenwick {
    count: Vec<f64>,
    sum: Vec<f64>,
}

impl Fenwick {
    fn new(n: usize) -> Fenwick {
        Fenwick { count: vec![0.0; n + 1], sum: vec![0.0; n + 1] }
    }

    fn add(&mut self, rank: usize, v: f64) {
        let mut i = rank + 1;
        while i < self.count.len() {
            self.count[i] += 1.0;
            self.sum[i] += v;
            i += i & i.wrapping_neg();
        }
    }

    /// (count, sum) of ranks `< rank`.
    fn below(&self, rank: usize) -> (f64, f64) {
        let (mut c, mut s) = (0.0, 0.0);
        let mut i = rank;
        while i > 0 {
            c += self.count[i];
            s += self.sum[i];
            i -= i & i.wrapping_neg();
        }
        (c, s)
    }
}

/// `sum |v - y|` over the values in a tree (total count and sum given) for `v` of `rank`.
fn abs_dev(t: &Fenwick, total: (f64, f64), rank: usize, v: f64) -> f64 {
    let (cb, sb) = t.below(rank);
    let (ca, sa) = (total.0 - cb, total.1 - sb);
    (v * cb - sb) + (sa - v * ca)
}

fn ranks(x: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(a.cmp(&b)));
    let mut r = vec![0; x.len()];
    for (rank, i) in idx.into_iter().enumerate() {
        r[i] = rank;
    }
    r
}

/// The energy statistic of every split `tau` in `min_size..=n-min_size`, as
/// `(tau, q)`; the best one is returned.
fn best_split(x: &[f64], min_size: usize) -> Option<(usize, f64)> {
    let n = x.len();
    if n < 2 * min_size.max(1) || n < 4 {
        return None;
    }
    let r = ranks(x);
    // All values in one tree to get the right side as (all - left).
    let mut all = Fenwick::new(n);
    for i in 0..n {
        all.add(r[i], x[i]);
    }
    let total = (n as f64, x.iter().sum::<f64>());
    // Within-right pair sum at tau = 0 is the within-all pair sum.
    let mut within_right = 0.0;
    {
        let mut t = Fenwick::new(n);
        let mut tot = (0.0, 0.0);
        for i in 0..n {
            within_right += abs_dev(&t, tot, r[i], x[i]);
            t.add(r[i], x[i]);
            tot = (tot.0 + 1.0, tot.1 + x[i]);
        }
    }
    let mut left = Fenwick::new(n);
    let mut left_tot = (0.0, 0.0);
    let (mut within_left, mut between) = (0.0, 0.0);
    let mut best: Option<(usize, f64)> = None;
    for tau in 1..n {
        // Move x[tau - 1] from the right side to the left.
        let (e, re) = (x[tau - 1], r[tau - 1]);
        let d_left = abs_dev(&left, left_tot, re, e);
        // The right side after removing e: all - left - e.
        let d_all = abs_dev(&all, total, re, e);
        let d_right = d_all - d_left;
        within_left += d_left;
        within_right -= d_right;
        between += d_right - d_left;
        left.add(re, e);
        left_tot = (left_tot.0 + 1.0, left_tot.1 + e);
        let (m, k) = (tau as f64, (n - tau) as f64);
        if tau < min_size || n - tau < min_size || tau < 2 || n - tau < 2 {
            continue;
        }
        let q = energy(m, k, within_left, within_right, between);
        if best.is_none_or(|b| q > b.1) {
            best = Some((tau, q));
        }
    }
    best
}

fn energy(m: f64, k: f64, within_left: f64, within_right: f64, between: f64) -> f64 {
    let e = 2.0 * between / (m * k) - 2.0 * within_left / (m * (m - 1.0)) - 2.0 * within_right / (k * (k - 1.0));
    m * k / (m + k) * e
}

/// The energy statistic of one split, computed directly (O(n^2); for reporting and tests).
pub(crate) fn energy_at(x: &[f64], tau: usize) -> f64 {
    let (l, r) = x.split_at(tau);
    if l.len() < 2 || r.len() < 2 {
        return 0.0;
    }
    let pairs = |s: &[f64]| {
        let mut t = 0.0;
        for i in 0..s.len() {
            for j in i + 1..s.len() {
                t += (s[i] - s[j]).abs();
            }
        }
        t
    };
    let between: f64 = l.iter().map(|a| r.iter().map(|b| (a - b).abs()).sum::<f64>()).sum();
    energy(l.len() as f64, r.len() as f64, pairs(l), pairs(r), between)
}

#[cfg(test)]
mod tests;
