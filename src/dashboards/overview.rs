//! SLO overview: every SLO `slo rules` generated, from its Sloth-compatible records only
//! (`slo:*` with `sloth_service`, `sloth_slo`), so any window and any objective works.

use serde_json::Value;

use super::{Board, Panel, instant, q};

/// Records of the selected SLOs.
const SEL: &str = r#"sloth_service=~"$service", sloth_slo=~"$slo""#;
const BY: &str = "max by (sloth_service, sloth_slo)";

pub(super) fn board(url: &str) -> Value {
    let mut b = Board::new(
        "slo-overview",
        "slo / SLO overview",
        "Error budgets and burn rates of every SLO `slo rules` generated (Sloth-compatible records).",
        url,
    );
    b.variable("service", "Service", "label_values(sloth_slo_info, sloth_service)");
    b.variable("slo", "SLO", r#"label_values(sloth_slo_info{sloth_service=~"$service"}, sloth_slo)"#);
    b.annotation(
        "SLO alerts",
        r#"ALERTS{alertstate="firing", sloth_service=~"$service", sloth_slo=~"$slo"}"#,
        "{{alertname}} {{severity}}",
        "{{sloth_slo}}: {{burnrate_tier}} ({{long}} and {{short}})",
        "red",
    );
    b.link("slo: SLOs, explained", "${slo_url}/slos");

    b.row("Every selected SLO, now");
    b.add(
        Panel::table(
            "SLOs",
            "Objective, what the period holds so far, the budget left and how fast it burns now (5 minutes). \
             A burn rate of 1 spends the budget exactly over the period; the page alerts start at 14.4 and 6.",
            vec![
                instant(format!("{BY} (slo:objective:ratio{{{SEL}}})"), "objective"),
                instant(format!("{BY} (slo:time_period:days{{{SEL}}})"), "period"),
                instant(
                    format!("1 - {BY} (slo:period_burn_rate:ratio{{{SEL}}}) * {BY} (slo:error_budget:ratio{{{SEL}}})"),
                    "sli",
                ),
                instant(format!("{BY} (slo:period_error_budget_remaining:ratio{{{SEL}}})"), "remaining"),
                instant(format!("{BY} (slo:current_burn_rate:ratio{{{SEL}}})"), "burn"),
            ],
            &[
                ("sloth_service", "Service"),
                ("sloth_slo", "SLO"),
                ("Value #A", "Objective"),
                ("Value #B", "Period (days)"),
                ("Value #C", "SLI over the period"),
                ("Value #D", "Budget remaining"),
                ("Value #E", "Burn rate (5m)"),
            ],
        )
        .thresholds("red", &[(0.0, "orange"), (0.25, "green")])
        .colored_cells()
        .size(24, 7),
    );
    b.add(Panel::stat(
        "SLOs over budget",
        "SLOs whose budget for the period is spent (remaining below zero).",
        "none",
        instant(format!("count(slo:period_error_budget_remaining:ratio{{{SEL}}} < 0) or vector(0)"), ""),
    ));
    b.add(Panel::stat(
        "SLOs burning too fast",
        "SLOs burning faster than the period allows (5-minute burn rate above 1).",
        "none",
        instant(format!("count(slo:current_burn_rate:ratio{{{SEL}}} > 1) or vector(0)"), ""),
    ));
    b.add(
        Panel::stat(
            "Lowest budget remaining",
            "The selected SLO with the least budget left, as a share of its budget.",
            "percentunit",
            instant(format!("min(slo:period_error_budget_remaining:ratio{{{SEL}}})"), ""),
        )
        .thresholds("red", &[(0.0, "orange"), (0.25, "green")]),
    );

    b.row("Over time");
    b.add(
        Panel::timeseries(
            "Error budget remaining (period)",
            "The share of the period's error budget not yet spent; below zero the SLO is missed for this period.",
            "percentunit",
            vec![q(format!("slo:period_error_budget_remaining:ratio{{{SEL}}}"), "{{sloth_service}} / {{sloth_slo}}")],
        )
        .thresholds("red", &[(0.0, "green")]),
    );
    b.add(
        Panel::timeseries(
            "Burn rate (5m)",
            "How many times faster than allowed the budget burns; dashed lines at 1 (the period's pace), 6 and \
             14.4 (the page tiers).",
            "none",
            vec![q(format!("slo:current_burn_rate:ratio{{{SEL}}}"), "{{sloth_service}} / {{sloth_slo}}")],
        )
        .thresholds("green", &[(1.0, "yellow"), (6.0, "orange"), (14.4, "red")]),
    );
    b.add(
        Panel::timeseries(
            "Error ratio by alert window",
            "Each window the burn-rate alerts compare (the workbook's windows scaled to the SLO's period), \
             and the period's own ratio.",
            "percentunit",
            vec![q(format!(r#"{{__name__=~"slo:sli_error:ratio_rate.+", {SEL}}}"#), "{{sloth_slo}} {{sloth_window}}")],
        )
        .size(24, 8),
    );
    b.finish()
}
