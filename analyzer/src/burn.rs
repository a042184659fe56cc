//! Error budgets and burn rates of an SLO over the multi-window pairs of the SRE workbook
//! (multi-window, multi-burn-rate alerts). The workbook's windows are for a 30-day period
//! (page: 14.4x over 1h and 5m, 6x over 6h and 30m; ticket: 3x over 1d and 2h, 1x over 3d
//! and 6h); for another period each window is scaled by `period / 30d` and rounded to
//! whole minutes (at least one), as Pyrra does, so that a one-day SLO pages on a 2-minute
//! window rather than an hour. Each pair fires when both windows burn faster than the
//! rate that spends its share of the budget within the long window (2% for page-fast, 5%
//! for page-slow, 10% for the tickets): `share * period / long`, the workbook's 14.4, 6, 3
//! and 1 whenever the scaling is exact. `slo rules` writes the same windows and factors
//! into Prometheus rules, so the two agree (docs/ALERTS.md).
//!
//! The burn rate over a window is the window's bad ratio divided by the budget ratio
//! `1 - objective`: 1 spends the budget exactly over the period. Windows end at `at` and
//! count requests that started in `[at - window, at)`, by whole minutes.

use serde::{Deserialize, Serialize};

use crate::rollup::{MINUTE_NS, Rollups};
use crate::spec::Slo;
use crate::text::{rfc3339, window_name};

const HOUR: i64 = 60 * MINUTE_NS;
/// The period the workbook's windows are written for.
pub const WORKBOOK_PERIOD: i64 = 30 * 24 * HOUR;

/// One multi-window alert condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPair {
    /// The stable name: `page-fast`, `page-slow`, `ticket-fast`, `ticket-slow`.
    pub tier: &'static str,
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Long window for a 30-day period, ns.
    pub long: i64,
    /// Short window for a 30-day period, ns.
    pub short: i64,
    /// Share of the period's budget the long window may consume before alerting.
    pub budget_share: f64,
}

/// The four pairs of the workbook, most urgent first.
pub const PAIRS: [WindowPair; 4] = [
    WindowPair { tier: "page-fast", severity: "page", long: HOUR, short: 5 * MINUTE_NS, budget_share: 0.02 },
    WindowPair { tier: "page-slow", severity: "page", long: 6 * HOUR, short: 30 * MINUTE_NS, budget_share: 0.05 },
    WindowPair { tier: "ticket-fast", severity: "ticket", long: 24 * HOUR, short: 2 * HOUR, budget_share: 0.10 },
    WindowPair { tier: "ticket-slow", severity: "ticket", long: 72 * HOUR, short: 6 * HOUR, budget_share: 0.10 },
];

/// A workbook window scaled to `period`, in whole minutes (at least one), ns.
pub fn scale(window: i64, period: i64) -> i64 {
    let minutes = (window as f64 * period as f64 / WORKBOOK_PERIOD as f64 / MINUTE_NS as f64).round() as i64;
    minutes.max(1) * MINUTE_NS
}

impl WindowPair {
    /// (long, short) for an SLO period.
    pub fn windows(&self, period: i64) -> (i64, i64) {
        (scale(self.long, period), scale(self.short, period))
    }

    /// The burn-rate factor for an SLO period: `budget_share * period / long`.
    pub fn factor(&self, period: i64) -> f64 {
        self.budget_share * period as f64 / self.windows(period).0 as f64
    }
}

/// Every window the pairs use for `period`, shortest first.
pub fn windows(period: i64) -> Vec<i64> {
    let mut w: Vec<i64> = PAIRS.iter().flat_map(|p| <[i64; 2]>::from(p.windows(period))).collect();
    w.sort_unstable();
    w.dedup();
    w
}

/// A window's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Burn {
    /// `5m`, `1h`, ...
    pub window: String,
    /// Requests counted.
    pub total: f64,
    /// Bad requests.
    pub bad: f64,
    /// `bad / total / (1 - objective)`; `None` without requests.
    pub burn_rate: Option<f64>,
}

/// One alert condition's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// `page-fast`, `page-slow`, `ticket-fast` or `ticket-slow`.
    #[serde(default)]
    pub tier: String,
    /// `page` or `ticket`.
    pub severity: String,
    /// The long and short windows.
    pub windows: [String; 2],
    /// Both windows must burn faster than this.
    pub factor: f64,
    /// Whether both do.
    pub firing: bool,
}

/// An SLO at a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloStatus {
    /// The SLO.
    pub name: String,
    /// The SLI, described.
    pub sli: String,
    /// Target ratio of good requests.
    pub objective: f64,
    /// SLO period, seconds.
    pub period_s: i64,
    /// When, RFC 3339.
    pub at: String,
    /// Good ratio over the period (or the data there is of it).
    pub sli_value: Option<f64>,
    /// Share of the period's error budget left (negative when overspent).
    pub budget_remaining: Option<f64>,
    /// Seconds of the period the data covers (less than `period_s` for young data).
    pub covered_s: i64,
    /// Burn rate per window the alerts use, and 5m, shortest first.
    pub burn: Vec<Burn>,
    /// The multi-window conditions.
    pub alerts: Vec<AlertState>,
    /// At the page-fast long window's burn rate (1h for 30 days), seconds until the budget is spent (`None` when not burning or
    /// already spent).
    pub time_to_exhaustion_s: Option<f64>,
}

/// (good, total) of the SLO's requests that started in `[from, to)`.
pub fn good_total(slo: &Slo, rollups: &Rollups, from: i64, to: i64) -> (f64, f64) {
    let mut good = 0.0;
    let mut total = 0.0;
    for (_, cell) in rollups.minutes(&slo.service, slo.model.as_deref(), from, to) {
        let (g, t) = slo.sli.good_total(&cell);
        good += g;
        total += t;
    }
    (good, total)
}

/// The status of `slo` at `at` from rollups covering at least `[at - max(period, 3d), at)`.
pub fn status(slo: &Slo, rollups: &Rollups, at: i64) -> SloStatus {
    let budget = 1.0 - slo.objective;
    let burn_of = |w: i64| {
        let (good, total) = good_total(slo, rollups, at - w, at);
        let bad = total - good;
        Burn { window: window_name(w), total, bad, burn_rate: (total > 0.0).then(|| bad / total / budget) }
    };
    // The alerts' windows and 5m, the "current" burn rate (`slo:current_burn_rate:ratio`).
    let mut shown = windows(slo.period);
    if !shown.contains(&(5 * MINUTE_NS)) {
        shown.push(5 * MINUTE_NS);
        shown.sort_unstable();
    }
    let burn: Vec<Burn> = shown.into_iter().map(burn_of).collect();
    let rate = |w: i64| burn.iter().find(|b| b.window == window_name(w)).and_then(|b| b.burn_rate);
    let alerts = PAIRS
        .iter()
        .map(|p| {
            let factor = p.factor(slo.period);
            let (long, short) = p.windows(slo.period);
            let firing = rate(long).is_some_and(|r| r > factor) && rate(short).is_some_and(|r| r > factor);
            AlertState {
                tier: p.tier.into(),
                severity: p.severity.into(),
                windows: [window_name(long), window_name(short)],
                factor: (factor * 1000.0).round() / 1000.0,
                firing,
            }
        })
        .collect();
    let (good, total) = good_total(slo, rollups, at - slo.period, at);
    let covered_s =
        rollups.span().map_or(0, |(first, _)| (at - first.max(at - slo.period)).clamp(0, slo.period) / 1_000_000_000);
    let budget_remaining = (total > 0.0).then(|| 1.0 - (total - good) / (total * budget));
    let time_to_exhaustion_s = match (budget_remaining, rate(PAIRS[0].windows(slo.period).0)) {
        (Some(left), Some(r)) if left > 0.0 && r > 0.0 => Some(left * (slo.period as f64 / 1e9) / r),
        _ => None,
    };
    SloStatus {
        name: slo.name.clone(),
        sli: slo.sli.describe(),
        objective: slo.objective,
        period_s: slo.period / 1_000_000_000,
        at: rfc3339(at),
        sli_value: (total > 0.0).then(|| good / total),
        budget_remaining,
        covered_s,
        burn,
        alerts,
        time_to_exhaustion_s,
    }
}

/// Budget remaining at the end of each `step` over `(from, to]`, the last point at `to`:
/// at each point `t`, the
/// share of the budget left over the period ending at `t` (`None` where the period holds
/// no requests). One pass over the minutes with running sums, so a month of points costs
/// what one status does. `rollups` must cover `[from - period, to)`.
pub fn budget_series(slo: &Slo, rollups: &Rollups, from: i64, to: i64, step: i64) -> Vec<(i64, Option<f64>)> {
    let budget = 1.0 - slo.objective;
    let minutes = rollups.minutes(&slo.service, slo.model.as_deref(), from - slo.period, to);
    let per_minute: Vec<(i64, f64, f64)> = minutes
        .iter()
        .map(|(m, c)| {
            let (g, t) = slo.sli.good_total(c);
            (*m, g, t)
        })
        .collect();
    let mut out = Vec::new();
    let (mut good, mut total) = (0.0, 0.0);
    let (mut head, mut tail) = (0, 0);
    let step = step.max(MINUTE_NS);
    let mut t = to - (to - from - 1).max(0) / step * step;
    while t <= to {
        while head < per_minute.len() && per_minute[head].0 < t {
            good += per_minute[head].1;
            total += per_minute[head].2;
            head += 1;
        }
        while tail < head && per_minute[tail].0 < t - slo.period {
            good -= per_minute[tail].1;
            total -= per_minute[tail].2;
            tail += 1;
        }
        let left = (total > 0.5).then(|| 1.0 - (total - good) / (total * budget));
        out.push((t, left));
        t += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Cell;
    use crate::spec::Sli;

    #[test]
    fn windows_scale_with_the_period_in_whole_minutes_and_factors_keep_the_budget_share() {
        let day = 24 * HOUR;
        let mins = |p: &WindowPair, period| {
            let (l, s) = p.windows(period);
            (l / MINUTE_NS, s / MINUTE_NS)
        };
        let at_30d: Vec<_> = PAIRS.iter().map(|p| (mins(p, 30 * day), p.factor(30 * day))).collect();
        assert_eq!(at_30d, [((60, 5), 14.4), ((360, 30), 6.0), ((1440, 120), 3.0), ((4320, 360), 1.0)]);
        // 28 days: 56 min and 4.67 -> 5 min; the factor stays 14.4 (2% of the budget in 56 min).
        assert_eq!(mins(&PAIRS[0], 28 * day), (56, 5));
        assert!((PAIRS[0].factor(28 * day) - 14.4).abs() < 1e-9);
        // One day: short windows under a minute become one minute.
        let at_1d: Vec<_> = PAIRS.iter().map(|p| mins(p, day)).collect();
        assert_eq!(at_1d, [(2, 1), (12, 1), (48, 4), (144, 12)]);
        assert_eq!(windows(day).len(), 6, "1, 2, 4, 12, 48, 144 minutes");
    }

    #[test]
    fn the_budget_series_agrees_with_the_status_at_every_point() {
        let slo = Slo {
            name: "s".into(),
            service: "svc".into(),
            model: None,
            objective: 0.99,
            period: 60 * MINUTE_NS,
            sli: Sli::Errors,
            alerting: Default::default(),
        };
        let mut r = Rollups::new();
        let t0 = 10_000 * MINUTE_NS;
        for m in 0..180 {
            let errors = if (100..110).contains(&m) { 3 } else { 0 };
            r.insert("svc", "", t0 + m * MINUTE_NS, Cell { count: 100, errors, ..Cell::default() });
        }
        let series = budget_series(&slo, &r, t0 + 60 * MINUTE_NS, t0 + 180 * MINUTE_NS, 7 * MINUTE_NS);
        assert_eq!(series.len(), 18, "points every 7 min back from the end, inside (from, to]");
        for (t, left) in series {
            let want = status(&slo, &r, t).budget_remaining;
            match (left, want) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "at {t}: {a} vs {b}"),
                other => panic!("at {t}: {other:?}"),
            }
        }
    }
}
