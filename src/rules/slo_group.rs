//! The group of one SLO: its SLI and meta records and its burn-rate alerts.

use std::collections::{BTreeMap, BTreeSet};

use slo_analyzer::MINUTE_NS;
use slo_analyzer::burn::{self, PAIRS};
use slo_analyzer::spec::Slo;

use super::promql::{base_labels, duration, events, human, id, ids, num};
use super::{Group, Options, Rule, explain_command};

pub(super) fn slo_group(s: &Slo, opts: &Options) -> Group {
    let budget = 1.0 - s.objective;
    let period = duration(s.period);
    let labels = base_labels(s);
    let record = |name: String, expr: String, extra: &[(&str, &str)]| {
        let mut l = labels.clone();
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Rule { record: Some(name), expr, labels: l, ..Default::default() }
    };

    let mut windows: BTreeSet<i64> = burn::windows(s.period).into_iter().collect();
    windows.insert(5 * MINUTE_NS);
    let mut sli = Vec::new();
    for w in &windows {
        let w = duration(*w);
        let (bad, total) = events(s, "rate", &w);
        sli.push(record(
            format!("slo:sli_error:ratio_rate{w}"),
            format!("({bad})\n/\n({total})\n"),
            &[("sloth_window", &w)],
        ));
    }
    let (bad, total) = events(s, "increase", &period);
    sli.push(record(
        format!("slo:sli_error:ratio_rate{period}"),
        format!("({bad})\n/\n({total})\n"),
        &[("sloth_window", &period)],
    ));
    if s.alerting.traffic_aware {
        let mut longs: BTreeSet<i64> = PAIRS.iter().map(|p| p.windows(s.period).0).collect();
        longs.insert(s.period);
        for w in longs {
            let w = duration(w);
            let (_, total) = events(s, "increase", &w);
            sli.push(record(format!("slo:sli_total:increase{w}"), total, &[("sloth_window", &w)]));
        }
    }

    let ids = ids(s);
    let on = "on(sloth_id, sloth_slo, sloth_service) group_left";
    let mut info = labels.clone();
    info.insert("sloth_objective".into(), num(s.objective * 100.0));
    info.insert("sloth_mode".into(), "slo-rules".into());
    info.insert("sloth_spec".into(), "slo/v1".into());
    let meta = vec![
        record("slo:objective:ratio".into(), format!("vector({})", num(s.objective)), &[]),
        record("slo:error_budget:ratio".into(), format!("vector(1 - {})", num(s.objective)), &[]),
        record("slo:time_period:days".into(), format!("vector({})", num(s.period as f64 / 86_400e9)), &[]),
        record(
            "slo:current_burn_rate:ratio".into(),
            format!("slo:sli_error:ratio_rate5m{{{ids}}}\n/ {on}\nslo:error_budget:ratio{{{ids}}}\n"),
            &[],
        ),
        record(
            "slo:period_burn_rate:ratio".into(),
            format!("slo:sli_error:ratio_rate{period}{{{ids}}}\n/ {on}\nslo:error_budget:ratio{{{ids}}}\n"),
            &[],
        ),
        record(
            "slo:period_error_budget_remaining:ratio".into(),
            format!("1 - slo:period_burn_rate:ratio{{{ids}}}"),
            &[],
        ),
        Rule { record: Some("sloth_slo_info".into()), expr: "vector(1)".into(), labels: info, ..Default::default() },
    ];

    let mut alerts = Vec::new();
    for p in PAIRS.iter().filter(|p| !s.alerting.disable.contains(&p.tier)) {
        let (long, short) = p.windows(s.period);
        let factor = p.factor(s.period);
        let (l, sh) = (duration(long), duration(short));
        let threshold = if s.alerting.traffic_aware {
            // Pyrra's dynamic burn rate: the long window may spend `share` of the errors
            // the period's actual traffic allows, whatever the hour's share of traffic.
            format!(
                "on(sloth_id) ({} * max(slo:sli_total:increase{period}{{{ids}}}) by (sloth_id) / max(slo:sli_total:increase{l}{{{ids}}}) by (sloth_id))",
                num(p.budget_share * budget)
            )
        } else {
            format!("({} * {})", num(factor), num(budget))
        };
        let cond = |w: &str| format!("max(slo:sli_error:ratio_rate{w}{{{ids}}} > {threshold}) without (sloth_window)");
        let mut lab = labels.clone();
        lab.insert("severity".into(), p.severity.into());
        lab.extend(if p.severity == "page" {
            s.alerting.page_labels.clone()
        } else {
            s.alerting.ticket_labels.clone()
        });
        lab.insert("burnrate_tier".into(), p.tier.into());
        lab.insert("long".into(), l.clone());
        lab.insert("short".into(), sh.clone());
        lab.insert("exhaustion".into(), human((s.period as f64 / factor) as i64));
        lab.insert("slo".into(), s.name.clone());
        lab.insert("service".into(), s.service.clone());
        let mut ann = BTreeMap::new();
        let value = "{{ $value | humanizePercentage }}";
        let (sli_text, share) = (s.sli.describe(), p.budget_share * 100.0);
        let (summary, description) = if s.alerting.traffic_aware {
            (
                format!("{}: {} spent over {share}% of its {} error budget in {l}", s.service, s.name, human(s.period)),
                format!(
                    "{value} of the SLO's requests failed it over the last {l} ({sli_text}): at the traffic of the period so far, more than {share}% of the errors its budget allows."
                ),
            )
        } else {
            (
                format!(
                    "{}: {} error budget burning {}x over {l} and {sh}",
                    s.service,
                    s.name,
                    (factor * 100.0).round() / 100.0
                ),
                format!(
                    "{value} of the SLO's requests failed it over the last {l} ({sli_text}), against a budget of {}%; at this rate the {} budget lasts {}.",
                    (budget * 1e8).round() / 1e6,
                    human(s.period),
                    human((s.period as f64 / factor) as i64)
                ),
            )
        };
        ann.insert("summary".into(), summary);
        ann.insert("description".into(), description);
        ann.insert("explain".into(), explain_command(opts, &format!("--slo {}", s.name)));
        if let Some(url) = &opts.url {
            ann.insert("runbook_url".into(), format!("{}/slos/{}", url.trim_end_matches('/'), s.name));
        }
        ann.extend(s.alerting.annotations.clone());
        alerts.push(Rule {
            alert: Some(s.alerting.name.clone()),
            expr: format!("(\n  {}\n  and\n  {}\n)\n", cond(&l), cond(&sh)),
            labels: lab,
            annotations: ann,
            ..Default::default()
        });
    }
    // One group: its rules run in order at one evaluation time, so the alerts read the
    // ratios recorded in the same evaluation (across groups they would read this one's or
    // the previous one's, whichever group ran first).
    let mut rules = sli;
    rules.extend(meta);
    rules.extend(alerts);
    Group { name: format!("slo-{}", id(s)), rules }
}
