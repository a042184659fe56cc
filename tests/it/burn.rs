//! Burn rates agree with Prometheus: the same per-minute requests become counters for
//! `promtool test rules`, whose recording rules compute the burn rate over each window
//! and whose alert is the multi-window page condition; the expected values and alert
//! states promtool checks are what `slo_analyzer::burn` computes.
//!
//! Our windows count every request that started in the minutes `[at - W, at)`. Prometheus
//! 2.x selects the range `[at - W, at]` of counters sampled at the end of each minute, so
//! `increase` sees exactly those minutes' increments: the numbers must be equal. Prometheus
//! 3 made ranges left-open (`(at - W, at]`): it sees one minute less, and the expected
//! value is computed over the same minutes then.

use std::fmt::Write;
use std::process::Command;

use crate::support::{promtool, promtool_ok};

use slo_analyzer::burn::{self, PAIRS};
use slo_analyzer::spec::{Sli, Slo};
use slo_analyzer::text::window_name;
use slo_analyzer::{Cell, MINUTE_NS, Rollups};

const TOTAL_PER_MIN: u64 = 600;

/// Bad requests in minute `m`: 0.1% for two hours, a 20% burst for an hour, 0.5% after.
fn bad(m: i64) -> u64 {
    match m {
        0..120 => u64::from((m as u64).is_multiple_of(3)),
        120..180 => 120,
        _ => 3,
    }
}

/// Whether this promtool's range selectors are left-open (Prometheus 3).
fn left_open(promtool: &str) -> bool {
    let out = Command::new(promtool).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text.split("version ").nth(1).unwrap_or("2");
    !version.starts_with('2') && !version.starts_with('1')
}

#[test]
fn burn_rates_and_page_alerts_agree_with_promtool() {
    let Some(promtool) = promtool() else { return };
    let skip_first_minute = if left_open(promtool) { MINUTE_NS } else { 0 };
    let minutes = 240;
    let slo = Slo {
        name: "llama-errors".into(),
        service: "llama-70b".into(),
        model: None,
        objective: 0.99,
        period: 30 * 1440 * MINUTE_NS,
        sli: Sli::Errors,
        alerting: Default::default(),
    };
    let mut rollups = Rollups::new();
    for m in 0..minutes {
        let cell = Cell { count: TOTAL_PER_MIN, errors: bad(m), ..Cell::default() };
        rollups.insert("llama-70b", "m", m * MINUTE_NS, cell);
    }
    // Counters sampled at the end of each minute: sample k counts minutes < k.
    let (mut total, mut bads) = (String::from("0"), String::from("0"));
    let (mut t, mut b) = (0u64, 0u64);
    for m in 0..minutes {
        t += TOTAL_PER_MIN;
        b += bad(m);
        write!(total, " {t}").unwrap();
        write!(bads, " {b}").unwrap();
    }
    let windows = [5 * MINUTE_NS, 30 * MINUTE_NS, 60 * MINUTE_NS, 360 * MINUTE_NS];
    let page: Vec<_> = PAIRS.iter().filter(|p| p.severity == "page").collect();
    let factor = |i: usize| page[i].factor(slo.period);
    let mut rules = String::from("groups:\n  - name: slo\n    rules:\n");
    for w in windows {
        let n = window_name(w);
        write!(
            rules,
            "      - record: slo:burn_rate:ratio_rate{n}\n        expr: (sum by (service) (increase(slo_requests_bad_total[{n}])) / sum by (service) (increase(slo_requests_total[{n}]))) / (1 - 0.99)\n"
        )
        .unwrap();
    }
    write!(
        rules,
        "      - alert: SLOBurnPage\n        expr: (slo:burn_rate:ratio_rate1h > {f0} and slo:burn_rate:ratio_rate5m > {f0}) or (slo:burn_rate:ratio_rate6h > {f1} and slo:burn_rate:ratio_rate30m > {f1})\n        labels: {{ severity: page }}\n",
        f0 = factor(0),
        f1 = factor(1)
    )
    .unwrap();
    let mut tests = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'slo_requests_total{{service=\"llama-70b\"}}'\n        values: '{total}'\n      - series: 'slo_requests_bad_total{{service=\"llama-70b\"}}'\n        values: '{bads}'\n    promql_expr_test:\n"
    );
    let mut alerts = String::from("    alert_rule_test:\n");
    let mut fired = 0;
    for at_min in [60i64, 125, 150, 175, 185, 200, 239] {
        let at = at_min * MINUTE_NS;
        for w in windows {
            // The minutes Prometheus sees (all of them, for windows longer than the data).
            let from = (at - w + skip_first_minute).max(0);
            let (good, total) = burn::good_total(&slo, &rollups, from, at);
            let ours = (total - good) / total / (1.0 - slo.objective);
            let n = window_name(w);
            write!(
                tests,
                "      - expr: slo:burn_rate:ratio_rate{n}\n        eval_time: {at_min}m\n        exp_samples:\n          - labels: 'slo:burn_rate:ratio_rate{n}{{service=\"llama-70b\"}}'\n            value: {ours:e}\n"
            )
            .unwrap();
        }
        let status = burn::status(&slo, &rollups, at);
        let firing = status.alerts.iter().any(|a| a.severity == "page" && a.firing);
        fired += firing as usize;
        let exp = if firing { "\n          - exp_labels: { severity: page, service: llama-70b }" } else { " []" };
        write!(alerts, "      - eval_time: {at_min}m\n        alertname: SLOBurnPage\n        exp_alerts:{exp}\n")
            .unwrap();
    }
    assert!((2..=5).contains(&fired), "the burst should page for part of the evaluations, not all: {fired}");
    tests.push_str(&alerts);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), &tests).unwrap();
    promtool_ok(promtool, &["check", "rules", "rules.yml"], dir.path());
    promtool_ok(promtool, &["test", "rules", "test.yml"], dir.path());
}

#[test]
fn budget_and_exhaustion_follow_from_the_counts() {
    let slo = Slo {
        name: "x".into(),
        service: "s".into(),
        model: None,
        objective: 0.99,
        period: 1440 * MINUTE_NS,
        sli: Sli::Errors,
        alerting: Default::default(),
    };
    let mut rollups = Rollups::new();
    // A day of 100 requests a minute; the first 23 hours 0.5% bad, the last hour 5% bad.
    for m in 0..1440i64 {
        let errors = if m < 1380 { u64::from(m % 2 == 0) } else { 5 };
        rollups.insert("s", "", m * MINUTE_NS, Cell { count: 100, errors, ..Cell::default() });
    }
    let st = burn::status(&slo, &rollups, 1440 * MINUTE_NS);
    let bad = 690.0 + 300.0;
    let total = 144_000.0;
    assert!((st.sli_value.unwrap() - (1.0 - bad / total)).abs() < 1e-12);
    let left = 1.0 - bad / (total * 0.01);
    assert!((st.budget_remaining.unwrap() - left).abs() < 1e-12);
    // A one-day period scales the page-fast long window (1h for 30 days) to 2 minutes.
    let page_fast = st.burn.iter().find(|b| b.window == "2m").unwrap();
    assert!((page_fast.burn_rate.unwrap() - 5.0).abs() < 1e-12);
    assert!((st.time_to_exhaustion_s.unwrap() - left * 86_400.0 / 5.0).abs() < 1e-6);
    assert_eq!(st.covered_s, 86_400);
}
