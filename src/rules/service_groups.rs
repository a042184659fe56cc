//! Groups over services rather than SLOs: absent data, and the p99 regression verdict.

use std::collections::{BTreeMap, BTreeSet};

use slo_analyzer::spec::Slo;

use super::promql::{duration, selector};
use super::{Group, Options, Rule, explain_command};

/// One absent-data alert per (service, model, window) among the SLOs.
pub(super) fn absent_group(slos: &[Slo], opts: &Options) -> Group {
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for s in slos {
        let Some(w) = s.alerting.absent else { continue };
        if !seen.insert((s.service.clone(), s.model.clone(), w)) {
            continue;
        }
        let (w, sel) = (duration(w), selector(s, ""));
        let mut labels = BTreeMap::from([("severity".to_string(), "ticket".to_string())]);
        labels.insert("service".into(), s.service.clone());
        if let Some(m) = &s.model {
            labels.insert("model".into(), m.clone());
        }
        let mut ann = BTreeMap::new();
        ann.insert("summary".into(), format!("no requests from {} for {w}: its SLOs cannot be judged", s.service));
        ann.insert(
            "description".into(),
            "Either the service receives no traffic, or its traces no longer reach slo: check the \
             service, the OpenTelemetry pipeline, and slo_collector_spans_accepted_total."
                .into(),
        );
        ann.insert("explain".into(), explain_command(opts, &format!("--service {}", s.service)));
        rules.push(Rule {
            alert: Some("SLOTrafficAbsent".into()),
            expr: format!(
                "absent_over_time(slo_requests_total{{{sel}}}[{w}])\nor\nsum(increase(slo_requests_total{{{sel}}}[{w}])) == 0\n"
            ),
            labels,
            annotations: ann,
            ..Default::default()
        });
    }
    Group { name: "slo-traffic".into(), rules }
}

/// `InferenceP99Regression`: the continuous analyzer's verdict, one series per service.
pub(super) fn regression_group(opts: &Options) -> Group {
    let value = |metric: &str, filter: &str| {
        format!(
            "{{{{ with printf `{metric}{{service=%q}}` $labels.service | query }}}}{{{{ . | first | value | {filter} }}}}{{{{ end }}}}"
        )
    };
    let mut ann = BTreeMap::new();
    ann.insert(
        "summary".into(),
        "{{ $labels.service }}: p99 regression; likely cause {{ $labels.cause_kind }} {{ $labels.cause_object }}"
            .into(),
    );
    ann.insert(
        "description".into(),
        format!(
            "p99 {} since the onset, against {} before; {} of the rise is queueing. slo's analyzer names {{{{ $labels.cause_kind }}}} {{{{ $labels.cause_object }}}} as the likely cause.",
            value("slo_regression_p99_after_seconds", "humanizeDuration"),
            value("slo_regression_p99_before_seconds", "humanizeDuration"),
            value("slo_regression_queue_share", "humanizePercentage"),
        ),
    );
    ann.insert("explain".into(), explain_command(opts, "--service {{ $labels.service }}"));
    if let Some(url) = &opts.url {
        ann.insert("runbook_url".into(), format!("{}/services/{{{{ $labels.service }}}}", url.trim_end_matches('/')));
    }
    let labels = BTreeMap::from([("severity".to_string(), opts.regression_severity.clone())]);
    Group {
        name: "slo-regression".into(),
        rules: vec![Rule {
            alert: Some("InferenceP99Regression".into()),
            expr: "slo_regression_active == 1".into(),
            labels,
            annotations: ann,
            ..Default::default()
        }],
    }
}
