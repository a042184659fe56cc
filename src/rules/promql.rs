//! PromQL and YAML text for the rules: literals, durations, selectors, the SLI's events.

use std::collections::BTreeMap;

use slo_analyzer::MINUTE_NS;
use slo_analyzer::spec::{Sli, Slo};
use slo_analyzer::text::window_name;
use slo_collector::sli::le_label;

use super::sli_metric;

/// A PromQL string literal.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Prometheus duration: `5m`, `1h30m`, `2d19h12m`.
pub(crate) fn duration(ns: i64) -> String {
    // Windows are whole minutes, named as the analyzer names them; a scrape interval may be
    // seconds.
    if ns > 0 && ns % MINUTE_NS == 0 { window_name(ns) } else { format!("{}s", ns / 1_000_000_000) }
}

/// A duration for people, to two units: `1d22h`, `4h48m`, `56m`.
pub(super) fn human(ns: i64) -> String {
    let m = ns / MINUTE_NS;
    match m {
        m if m >= 1440 => {
            format!("{}d{}", m / 1440, if m % 1440 >= 60 { format!("{}h", m % 1440 / 60) } else { "".into() })
        }
        m if m >= 60 => format!("{}h{}", m / 60, if m % 60 > 0 { format!("{}m", m % 60) } else { "".into() }),
        m => format!("{}m", m.max(1)),
    }
}

/// The Sloth id of an SLO: `<service>-<name>`.
pub(super) fn id(s: &Slo) -> String {
    format!("{}-{}", s.service, s.name)
}

/// The SLO's request selector, inside braces.
pub(super) fn selector(s: &Slo, extra: &str) -> String {
    let mut m = vec![format!("service={}", quote(&s.service))];
    if let Some(model) = &s.model {
        m.push(format!("model={}", quote(model)));
    }
    if !extra.is_empty() {
        m.push(extra.to_string());
    }
    m.join(",")
}

/// `(bad, total)` event expressions of `func` (`rate` or `increase`) over `w`.
pub(super) fn events(s: &Slo, func: &str, w: &str) -> (String, String) {
    match &s.sli {
        Sli::Errors => (
            format!("sum({func}(slo_requests_total{{{}}}[{w}]))", selector(s, "outcome=\"error\"")),
            format!("sum({func}(slo_requests_total{{{}}}[{w}]))", selector(s, "")),
        ),
        Sli::Latency { metric, threshold_ms } => {
            let h = sli_metric(*metric).histogram();
            let total = format!("sum({func}({h}_count{{{}}}[{w}]))", selector(s, ""));
            let le = format!("le={}", quote(&le_label(threshold_ms / 1000.0)));
            let good = format!("sum({func}({h}_bucket{{{}}}[{w}]))", selector(s, &le));
            (format!("({total} - {good})"), total)
        }
    }
}

/// The label matchers that pick one SLO's recordings.
pub(super) fn ids(s: &Slo) -> String {
    format!("sloth_id={}, sloth_service={}, sloth_slo={}", quote(&id(s)), quote(&s.service), quote(&s.name))
}

pub(super) fn base_labels(s: &Slo) -> BTreeMap<String, String> {
    let mut l = s.alerting.labels.clone();
    l.insert("sloth_id".into(), id(s));
    l.insert("sloth_service".into(), s.service.clone());
    l.insert("sloth_slo".into(), s.name.clone());
    l
}

/// A number for a rule: rounded to 12 decimals, so that `1 - 0.999` reads `0.001` rather
/// than `0.0009999999999998899`.
pub(super) fn num(x: f64) -> String {
    let r = (x * 1e12).round() / 1e12;
    format!("{r:?}")
}
