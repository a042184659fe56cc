//! Error budgets and burn rates of an SLO over the multi-window pairs of the SRE workbook
//! (the SRE workbook's multi-window, multi-burn-rate alerts), scaled to the SLO period the way Sloth does: each pair alerts
//! when the budget would be spent at a rate that consumes a fixed share of it within the
//! long window (page: 2% in 1h, 5% in 6h; ticket: 10% in 1d, 10% in 3d), so for 30 days
//! the factors are the workbook's 14.4, 6, 3 and 1.
//!
//! The burn rate over a window is the window's bad ratio divided by the budget ratio
//! `1 - objective`: 1 spends the budget exactly over the period. Windows end at `at` and
//! count requests that started in `[at - window, at)`, by whole minutes.

use serde::{Deserialize, Serialize};

use crate::rollup::{MINUTE_NS, Rollups};
use crate::spec::Slo;
use crate::text::{rfc3339, window_name};

const HOUR: i64 = 60 * MINUTE_NS;

/// One multi-window alert condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPair {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Long window, ns.
    pub long: i64,
    /// Short window, ns.
    pub short: i64,
    /// Share of the period's budget the long window may consume before alerting.
    pub budget_share: f64,
}

/// The four pairs of the workbook.
pub const PAIRS: [WindowPair; 4] = [
    WindowPair { severity: "page", long: HOUR, short: 5 * MINUTE_NS, budget_share: 0.02 },
    WindowPair { severity: "page", long: 6 * HOUR, short: 30 * MINUTE_NS, budget_share: 0.05 },
    WindowPair { severity: "ticket", long: 24 * HOUR, short: 2 * HOUR, budget_share: 0.10 },
    WindowPair { severity: "ticket", long: 72 * HOUR, short: 6 * HOUR, budget_share: 0.10 },
];

impl WindowPair {
    /// The burn-rate factor for an SLO period: `budget_share * period / long`.
    pub fn factor(&self, period: i64) -> f64 {
        self.budget_share * period as f64 / self.long as f64
    }
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
    /// Burn rate per window, shortest first.
    pub burn: Vec<Burn>,
    /// The multi-window conditions.
    pub alerts: Vec<AlertState>,
    /// At the 1h burn rate, seconds until the budget is spent (`None` when not burning or
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
    let mut windows: Vec<i64> = PAIRS.iter().flat_map(|p| [p.short, p.long]).collect();
    windows.sort_unstable();
    windows.dedup();
    let burn: Vec<Burn> = windows.iter().map(|w| burn_of(*w)).collect();
    let rate = |w: i64| burn.iter().find(|b| b.window == window_name(w)).and_then(|b| b.burn_rate);
    let alerts = PAIRS
        .iter()
        .map(|p| {
            let factor = p.factor(slo.period);
            let firing = rate(p.long).is_some_and(|r| r > factor) && rate(p.short).is_some_and(|r| r > factor);
            AlertState {
                severity: p.severity.into(),
                windows: [window_name(p.long), window_name(p.short)],
                factor: (factor * 1000.0).round() / 1000.0,
                firing,
            }
        })
        .collect();
    let (good, total) = good_total(slo, rollups, at - slo.period, at);
    let covered_s =
        rollups.span().map_or(0, |(first, _)| (at - first.max(at - slo.period)).clamp(0, slo.period) / 1_000_000_000);
    let budget_remaining = (total > 0.0).then(|| 1.0 - (total - good) / (total * budget));
    let time_to_exhaustion_s = match (budget_remaining, rate(HOUR)) {
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
    fn the_budget_series_agrees_with_the_status_at_every_point() {
        let slo = Slo {
            name: "s".into(),
            service: "svc".into(),
            model: None,
            objective: 0.99,
            period: 60 * MINUTE_NS,
            sli: Sli::Errors,
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
