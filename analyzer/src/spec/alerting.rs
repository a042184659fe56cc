//! How an SLO pages: the `alerting:` section of a native SLO (`metadata.labels` and
//! `metadata.annotations` of an OpenSLO one), read by `slo rules` (docs/ALERTS.md).
//!
//! ```yaml
//! alerting:
//!   name: Llama70bLatencyBudgetBurn  # alert name (default SLOErrorBudgetBurn)
//!   labels: { team: inference }      # on every alert of this SLO
//!   annotations: { summary: "..." }  # on every alert of this SLO
//!   page_labels: { severity: critical }
//!   ticket_labels: { severity: warning }
//!   disable: [ticket-slow]           # tiers: page-fast, page-slow, ticket-fast, ticket-slow
//!   traffic_aware: true              # thresholds from the budget's absolute error count
//!   absent: 15m                      # no requests for this long alerts; "off" disables
//! ```

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::burn::PAIRS;
use crate::text::parse_window;

/// The `alerting:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    /// The burn-rate alerts' name.
    pub name: String,
    /// Labels on every alert of the SLO.
    pub labels: BTreeMap<String, String>,
    /// Annotations on every alert of the SLO.
    pub annotations: BTreeMap<String, String>,
    /// Labels on its page alerts (may override `severity`).
    pub page_labels: BTreeMap<String, String>,
    /// Labels on its ticket alerts.
    pub ticket_labels: BTreeMap<String, String>,
    /// Tiers not generated (`burn::PAIRS`' names).
    pub disable: Vec<&'static str>,
    /// Thresholds from the budget's absolute error count (for low traffic).
    pub traffic_aware: bool,
    /// No requests for this long alerts (ns); `None`: no absent-data alert.
    pub absent: Option<i64>,
}

/// The default burn-rate alert name.
pub const DEFAULT_NAME: &str = "SLOErrorBudgetBurn";
/// The default absent-data window, ns.
pub const DEFAULT_ABSENT_NS: i64 = 15 * 60 * 1_000_000_000;

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            name: DEFAULT_NAME.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            page_labels: BTreeMap::new(),
            ticket_labels: BTreeMap::new(),
            disable: Vec::new(),
            traffic_aware: false,
            absent: Some(DEFAULT_ABSENT_NS),
        }
    }
}

/// Labels `slo rules` sets itself; an SLO may not set them.
pub const RESERVED: [&str; 8] =
    ["sloth_id", "sloth_service", "sloth_slo", "sloth_window", "slo", "service", "burnrate_tier", "alertname"];

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A map of label (or annotation) names to strings; `labels` refuses the reserved names.
fn map(v: Option<&Value>, field: &str, labels: bool) -> Result<BTreeMap<String, String>, String> {
    let Some(v) = v else { return Ok(BTreeMap::new()) };
    let m = v.as_mapping().ok_or_else(|| format!(".{field}: must be a mapping of names to strings"))?;
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let k = k.as_str().ok_or_else(|| format!(".{field}: names must be strings"))?;
        if !valid_name(k) {
            return Err(format!(".{field}.{k}: not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
        if labels && RESERVED.contains(&k) {
            return Err(format!(".{field}.{k}: slo rules sets this label itself"));
        }
        let s = match val {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(format!(".{field}.{k}: must be a string")),
        };
        out.insert(k.to_string(), s);
    }
    Ok(out)
}

/// Reads a native SLO's `alerting:` (absent: the defaults).
pub fn native(v: Option<&Value>) -> Result<Alerting, String> {
    let mut a = Alerting::default();
    let Some(v) = v else { return Ok(a) };
    let at = |e: String| format!(".alerting{e}");
    if !v.is_mapping() {
        return Err(at(": must be a mapping".into()));
    }
    const KNOWN: [&str; 8] =
        ["name", "labels", "annotations", "page_labels", "ticket_labels", "disable", "traffic_aware", "absent"];
    for k in v.as_mapping().into_iter().flatten().filter_map(|(k, _)| k.as_str()) {
        if !KNOWN.contains(&k) {
            return Err(at(format!(".{k}: unknown field (known: {})", KNOWN.join(", "))));
        }
    }
    if let Some(n) = v.get("name") {
        let n = n.as_str().filter(|n| valid_name(n)).ok_or_else(|| at(".name: must be a valid alert name".into()))?;
        a.name = n.to_string();
    }
    a.labels = map(v.get("labels"), "labels", true).map_err(at)?;
    a.annotations = map(v.get("annotations"), "annotations", false).map_err(at)?;
    a.page_labels = map(v.get("page_labels"), "page_labels", true).map_err(at)?;
    a.ticket_labels = map(v.get("ticket_labels"), "ticket_labels", true).map_err(at)?;
    if let Some(d) = v.get("disable") {
        let list = d.as_sequence().ok_or_else(|| at(".disable: must be a list of tiers".into()))?;
        for t in list {
            let name = t.as_str().unwrap_or_default();
            let tier = PAIRS.iter().find(|p| p.tier == name).ok_or_else(|| {
                at(format!(".disable: {t:?} is not one of page-fast, page-slow, ticket-fast, ticket-slow"))
            })?;
            a.disable.push(tier.tier);
        }
    }
    match v.get("traffic_aware") {
        None => {}
        Some(Value::Bool(b)) => a.traffic_aware = *b,
        Some(_) => return Err(at(".traffic_aware: must be true or false".into())),
    }
    match v.get("absent") {
        None => {}
        Some(Value::String(s)) if s == "off" => a.absent = None,
        Some(Value::Bool(false)) => a.absent = None,
        Some(Value::String(s)) => a.absent = Some(parse_window(s).map_err(|e| at(format!(".absent: {e}")))?),
        Some(_) => return Err(at(".absent: must be a duration such as 15m, or off".into())),
    }
    Ok(a)
}

/// An OpenSLO SLO's alerting: its metadata's labels and annotations, defaults otherwise.
pub fn openslo(metadata: Option<&Value>) -> Result<Alerting, String> {
    let mut a = Alerting::default();
    if let Some(m) = metadata {
        a.labels = map(m.get("labels"), "metadata.labels", true)?;
        a.annotations = map(m.get("annotations"), "metadata.annotations", false)?;
    }
    Ok(a)
}
