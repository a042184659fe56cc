//! SLO specs: OpenSLO v1 `SLO` documents (the subset that fits request SLIs) and a short
//! native form, from one YAML file of one or more documents.
//!
//! The file may be `slo serve`'s config: its `slos:` section is the native form, and
//! OpenSLO documents may follow it after `---`.
//!
//! Native form (a document with `slos:`):
//!
//! ```yaml
//! slos:
//!   - name: llama-70b-latency
//!     service: llama-70b
//!     objective: 99%              # or 0.99
//!     window: 28d                 # the SLO period (default 30d)
//!     latency: { metric: duration, threshold: 1s }   # duration | ttft | queue | compute
//!   - name: llama-70b-errors
//!     service: llama-70b
//!     objective: 99.9%
//!     errors: {}                  # requests with status "error" are bad
//! ```
//!
//! OpenSLO v1 (`apiVersion: openslo/v1`, `kind: SLO`): `spec.service`, an inline
//! `spec.indicator` whose `thresholdMetric.metricSource` is `{type: slo, spec: {field:
//! duration_ms | ttft_ms | queue_ms | compute_ms}}` with `objectives[0]` giving `op`
//! (`lt`/`lte`), `value` (ms) and `target`; or whose `ratioMetric` counts `good` (`{status:
//! ok}`) or `bad` (`{status: error}`) over `total` (`{}`); `timeWindow[0].duration`;
//! `budgetingMethod: Occurrences`. Anything else is refused with the document and field.

use std::path::Path;

use serde_yaml::Value;
use slo_store::schema::col;

use crate::error::{Error, Result};
use crate::rollup::Cell;
use crate::sketch::Sketch;
use crate::text::parse_window;

pub mod alerting;
pub use alerting::Alerting;

/// Which latency a latency SLI measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyMetric {
    /// `duration_ms`.
    Duration,
    /// `ttft_ms` (requests without one are not counted).
    Ttft,
    /// `queue_ms`.
    Queue,
    /// `compute_ms`.
    Compute,
}

impl LatencyMetric {
    fn parse(s: &str) -> Option<LatencyMetric> {
        Some(match s.trim_end_matches("_ms") {
            "duration" | "latency" => LatencyMetric::Duration,
            "ttft" | "time_to_first_token" => LatencyMetric::Ttft,
            "queue" => LatencyMetric::Queue,
            "compute" => LatencyMetric::Compute,
            _ => return None,
        })
    }

    /// The column name.
    pub fn column(self) -> &'static str {
        match self {
            LatencyMetric::Duration => col::DURATION_MS,
            LatencyMetric::Ttft => col::TTFT_MS,
            LatencyMetric::Queue => col::QUEUE_MS,
            LatencyMetric::Compute => col::COMPUTE_MS,
        }
    }

    fn sketch(self, c: &Cell) -> &Sketch {
        match self {
            LatencyMetric::Duration => &c.duration,
            LatencyMetric::Ttft => &c.ttft,
            LatencyMetric::Queue => &c.queue,
            LatencyMetric::Compute => &c.compute,
        }
    }
}

/// What makes a request good.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// The metric is at or below `threshold_ms`.
    Latency {
        /// Which latency.
        metric: LatencyMetric,
        /// Good when at or below this.
        threshold_ms: f64,
    },
    /// The request did not fail.
    Errors,
}

impl Sli {
    /// (good, total) in a rollup cell. Latency thresholds are read from the sketch, so a
    /// request within its 1% relative error of the threshold may count on either side.
    pub fn good_total(&self, c: &Cell) -> (f64, f64) {
        match self {
            Sli::Latency { metric, threshold_ms } => {
                let s = metric.sketch(c);
                (s.count_at_or_below(*threshold_ms) as f64, s.count() as f64)
            }
            Sli::Errors => ((c.count - c.errors) as f64, c.count as f64),
        }
    }

    /// A short description.
    pub fn describe(&self) -> String {
        match self {
            Sli::Latency { metric, threshold_ms } => format!("{} <= {threshold_ms} ms", metric.column()),
            Sli::Errors => "status != error".into(),
        }
    }
}

/// One SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Its name.
    pub name: String,
    /// The `service` of its requests.
    pub service: String,
    /// Only this model's requests, when set.
    pub model: Option<String>,
    /// Target ratio of good requests, e.g. 0.99.
    pub objective: f64,
    /// The SLO period, ns.
    pub period: i64,
    /// What makes a request good.
    pub sli: Sli,
    /// How it pages (`slo rules`).
    pub alerting: Alerting,
}

/// Loads every SLO of a file; a file without any is an error.
pub fn load(path: &Path) -> Result<Vec<Slo>> {
    let slos = load_any(path)?;
    if slos.is_empty() {
        return Err(Error::Spec { path: path.to_path_buf(), msg: NONE.into() });
    }
    Ok(slos)
}

/// Loads the SLOs of a file that may have none (a server config).
pub fn load_any(path: &Path) -> Result<Vec<Slo>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Io { op: "read", path: path.to_path_buf(), source: e })?;
    parse_any(&text).map_err(|msg| Error::Spec { path: path.to_path_buf(), msg })
}

const NONE: &str = "no SLO in the file: add a slos: list or OpenSLO v1 SLO documents";

/// Parses SLO documents (at least one); the error names the document and field.
pub fn parse(text: &str) -> Result<Vec<Slo>, String> {
    let slos = parse_any(text)?;
    if slos.is_empty() {
        return Err(NONE.into());
    }
    Ok(slos)
}

/// Parses SLO documents, which may be none.
pub fn parse_any(text: &str) -> Result<Vec<Slo>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| format!("document {}: not YAML: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let at = |what: String| format!("document {}: {what}", i + 1);
        if value.get("slos").is_some() {
            let list = value["slos"].as_sequence().ok_or_else(|| at("slos: must be a list".into()))?;
            for (k, s) in list.iter().enumerate() {
                out.push(native(s).map_err(|e| at(format!("slos[{k}]{}", e)))?);
            }
        } else if value.get("apiVersion").is_some() {
            out.push(openslo(&value).map_err(at)?);
        } else if !value.is_mapping() {
            return Err(at("neither an OpenSLO document (apiVersion: openslo/v1) nor a mapping with slos:".into()));
        }
        // Other mappings are the server's own config sharing the file.
    }
    let mut names: Vec<&str> = out.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("two SLOs are named {:?}", w[0]));
    }
    Ok(out)
}

fn text<'a>(v: &'a Value, field: &str) -> std::result::Result<&'a str, String> {
    match v.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(format!(".{field}: must be a non-empty string")),
        None => Err(format!(".{field}: missing")),
    }
}

/// `99%`, `99.9 %`, `0.99` -> ratio in (0, 1).
fn objective(v: &Value, field: &str) -> std::result::Result<f64, String> {
    let bad = || format!(".{field}: must be a ratio in (0, 1) such as 0.99, or a percentage such as 99.9%");
    let r = match v.get(field) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        Some(Value::String(s)) => {
            let s = s.trim();
            match s.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
                None => s.parse::<f64>().map_err(|_| bad())?,
            }
        }
        Some(_) => return Err(bad()),
        None => return Err(format!(".{field}: missing")),
    };
    if r > 0.0 && r < 1.0 { Ok(r) } else { Err(bad()) }
}

fn duration_ms(v: &Value, field: &str) -> std::result::Result<f64, String> {
    match v.get(field) {
        Some(Value::Number(n)) => n.as_f64().filter(|x| *x > 0.0).ok_or_else(|| format!(".{field}: must be > 0 (ms)")),
        Some(Value::String(s)) => {
            let s = s.trim();
            let (num, scale) = if let Some(x) = s.strip_suffix("ms") {
                (x, 1.0)
            } else if let Some(x) = s.strip_suffix('s') {
                (x, 1000.0)
            } else {
                (s, 1.0)
            };
            num.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .map(|x| x * scale)
                .ok_or_else(|| format!(".{field}: {s:?} is not a duration such as 1s, 250ms or 250"))
        }
        _ => Err(format!(".{field}: missing")),
    }
}

fn period(v: &Value, field: &str, default: &str) -> std::result::Result<i64, String> {
    let s = match v.get(field) {
        None => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(format!(".{field}: must be a duration such as 28d")),
    };
    parse_window(&s).map_err(|e| format!(".{field}: {e}"))
}

fn native(s: &Value) -> std::result::Result<Slo, String> {
    let name = text(s, "name")?.to_string();
    let service = text(s, "service")?.to_string();
    let model = s.get("model").and_then(Value::as_str).map(str::to_string);
    let objective = objective(s, "objective")?;
    let period = period(s, "window", "30d")?;
    let sli = match (s.get("latency"), s.get("errors")) {
        (Some(l), None) => {
            let metric = match l.get("metric") {
                None => LatencyMetric::Duration,
                Some(Value::String(m)) => LatencyMetric::parse(m)
                    .ok_or_else(|| format!(".latency.metric: {m:?} is not one of duration, ttft, queue, compute"))?,
                Some(_) => return Err(".latency.metric: must be a string".into()),
            };
            Sli::Latency { metric, threshold_ms: duration_ms(l, "threshold").map_err(|e| format!(".latency{e}"))? }
        }
        (None, Some(_)) => Sli::Errors,
        (Some(_), Some(_)) => return Err(": has both latency and errors; one SLI per SLO".into()),
        (None, None) => return Err(": needs an SLI: latency: {metric, threshold} or errors: {}".into()),
    };
    let alerting = alerting::native(s.get("alerting"))?;
    Ok(Slo { name, service, model, objective, period, sli, alerting })
}

fn openslo(v: &Value) -> std::result::Result<Slo, String> {
    match v.get("apiVersion").and_then(Value::as_str) {
        Some("openslo/v1") => {}
        other => return Err(format!("apiVersion: {} is not supported (openslo/v1 is)", other.unwrap_or("missing"))),
    }
    match v.get("kind").and_then(Value::as_str) {
        Some("SLO") => {}
        other => {
            return Err(format!(
                "kind: {}: only SLO documents are read (define the SLI inline)",
                other.unwrap_or("missing")
            ));
        }
    }
    let name = text(&v["metadata"], "name").map_err(|e| format!("metadata{e}"))?.to_string();
    let spec = v.get("spec").ok_or("spec: missing")?;
    let at = |e: String| format!("SLO {name:?}: spec{e}");
    let service = text(spec, "service").map_err(at)?.to_string();
    if let Some(m) = spec.get("budgetingMethod").and_then(Value::as_str)
        && m != "Occurrences"
    {
        return Err(at(format!(".budgetingMethod: {m:?} is not supported (Occurrences is)")));
    }
    if spec.get("indicatorRef").is_some() {
        return Err(at(".indicatorRef: not supported; put the SLI inline in spec.indicator".into()));
    }
    let ind = spec.get("indicator").and_then(|i| i.get("spec")).ok_or_else(|| at(".indicator.spec: missing".into()))?;
    let window = spec.get("timeWindow").and_then(Value::as_sequence).and_then(|w| w.first());
    let period = match window {
        Some(w) => period(w, "duration", "30d").map_err(|e| at(format!(".timeWindow[0]{e}")))?,
        None => parse_window("30d").map_err(|e| e.to_string())?,
    };
    let obj = spec
        .get("objectives")
        .and_then(Value::as_sequence)
        .and_then(|o| o.first())
        .ok_or_else(|| at(".objectives: needs one objective".into()))?;
    let objective = objective(obj, "target").map_err(|e| at(format!(".objectives[0]{e}")))?;
    let source = |m: &Value, path: &str| -> std::result::Result<Value, String> {
        let src = m.get("metricSource").ok_or_else(|| at(format!(".indicator.spec.{path}.metricSource: missing")))?;
        match src.get("type").and_then(Value::as_str) {
            Some("slo") => Ok(src.get("spec").cloned().unwrap_or(Value::Null)),
            other => Err(at(format!(
                ".indicator.spec.{path}.metricSource.type: {other:?}; slo reads its own requests table (type: slo)"
            ))),
        }
    };
    let sli = if let Some(t) = ind.get("thresholdMetric") {
        let src = source(t, "thresholdMetric")?;
        let field = src.get("field").and_then(Value::as_str).unwrap_or(col::DURATION_MS);
        let metric = LatencyMetric::parse(field).ok_or_else(|| {
            at(format!(".indicator.spec.thresholdMetric.metricSource.spec.field: {field:?} is not a latency column"))
        })?;
        match obj.get("op").and_then(Value::as_str) {
            Some("lt" | "lte") => {}
            other => return Err(at(format!(".objectives[0].op: {other:?}; latency SLIs need lt or lte"))),
        }
        Sli::Latency { metric, threshold_ms: duration_ms(obj, "value").map_err(|e| at(format!(".objectives[0]{e}")))? }
    } else if let Some(r) = ind.get("ratioMetric") {
        let status = |v: &Value| v.get("status").and_then(Value::as_str).map(str::to_string);
        let good = r.get("good").map(|g| source(g, "ratioMetric.good")).transpose()?;
        let bad = r.get("bad").map(|b| source(b, "ratioMetric.bad")).transpose()?;
        r.get("total").ok_or_else(|| at(".indicator.spec.ratioMetric.total: missing".into()))?;
        match (good.as_ref().and_then(status), bad.as_ref().and_then(status)) {
            (Some(g), None) if g == "ok" => Sli::Errors,
            (None, Some(b)) if b == "error" => Sli::Errors,
            _ => {
                return Err(at(
                    ".indicator.spec.ratioMetric: good must select {status: ok} or bad {status: error}".into()
                ));
            }
        }
    } else {
        return Err(at(".indicator.spec: needs thresholdMetric or ratioMetric".into()));
    };
    let alerting = alerting::openslo(v.get("metadata")).map_err(|e| format!("SLO {name:?}: {e}"))?;
    Ok(Slo { name, service, model: None, objective, period, sli, alerting })
}

#[cfg(test)]
mod tests;
