//! Label and field selectors, parsed as the API server parses them and
//! applied to lists and watches alike.

use serde_json::Value;

use super::{ResourceType, Status};

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    /// The field label as given, e.g. `spec.nodeName`.
    field: String,
    value: String,
    negate: bool,
}

/// The `labelSelector` and `fieldSelector` of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selectors {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Selectors {
    /// Parses both selectors; a bad one is a 400 naming the problem.
    pub(super) fn parse(resource: &ResourceType, labels: Option<&str>, fields: Option<&str>) -> Result<Self, Status> {
        let labels = match labels {
            Some(s) => parse_labels(s).map_err(|e| Status::bad_request(format!("unable to parse requirement: {e}")))?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(s) => parse_fields(resource, s)?,
            None => Vec::new(),
        };
        Ok(Selectors { labels, fields })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// True when `obj` satisfies every requirement.
    pub(super) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        });
        labels_ok && self.fields.iter().all(|req| (field_value(obj, &req.field) == req.value) != req.negate)
    }
}

/// Splits at commas outside parentheses (`a in (x,y),b` is two terms).
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

fn parse_labels(s: &str) -> Result<Vec<LabelReq>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_terms(s).into_iter().map(parse_label_term).collect()
}

fn parse_label_term(term: &str) -> Result<LabelReq, String> {
    let term = term.trim();
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(label_key(key)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelReq::NotEq(label_key(k)?, label_value(v)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelReq::Eq(label_key(k)?, label_value(v)?));
    }
    for (op, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = term.split_once(op) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("{term:?}: expected a parenthesized set of values"))?;
            let values = inner.split(',').map(label_value).collect::<Result<Vec<_>, _>>()?;
            let key = label_key(k)?;
            return Ok(if negate { LabelReq::NotIn(key, values) } else { LabelReq::In(key, values) });
        }
    }
    Ok(LabelReq::Exists(label_key(term)?))
}

fn label_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    });
    if name_ok && prefix_ok { Ok(k.to_string()) } else { Err(format!("invalid label key {k:?}")) }
}

fn label_value(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok { Ok(v.to_string()) } else { Err(format!("invalid label value {v:?}")) }
}

fn parse_fields(resource: &ResourceType, s: &str) -> Result<Vec<FieldReq>, Status> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|term| {
            let term = term.trim();
            let (field, value, negate) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, false)
            } else {
                return Err(Status::bad_request(format!("invalid selector: '{term}'; can't understand '{term}'")));
            };
            let field = field.trim();
            let known = matches!(field, "metadata.name" | "metadata.namespace") || resource.fields.contains(&field);
            if !known {
                return Err(Status::bad_request(format!("field label not supported: {field}")));
            }
            Ok(FieldReq { field: field.to_string(), value: value.trim().to_string(), negate })
        })
        .collect()
}

/// The value a field label selects, as the API server renders it: missing is "".
fn field_value(obj: &Value, field: &str) -> String {
    // `source` of a core Event is its `source.component`.
    let path = if field == "source" { "source.component" } else { field };
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::kubeapi::RESOURCES;
    use serde_json::json;

    fn pods() -> &'static ResourceType {
        &RESOURCES[0]
    }

    #[test]
    fn label_selectors_match_like_the_api_server() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "llm", "tier": "gpu"}}});
        let sel = |s: &str| Selectors::parse(pods(), Some(s), None).unwrap_or_else(|e| panic!("{s}: {}", e.message));
        assert!(sel("app=llm").matches(&obj));
        assert!(sel("app==llm,tier").matches(&obj));
        assert!(!sel("app!=llm").matches(&obj));
        assert!(sel("missing!=x").matches(&obj));
        assert!(sel("!missing").matches(&obj));
        assert!(!sel("!app").matches(&obj));
        assert!(sel("tier in (cpu,gpu),app").matches(&obj));
        assert!(!sel("tier notin (gpu)").matches(&obj));
        assert!(sel("").matches(&obj));
        assert!(Selectors::parse(pods(), Some("app=(x"), None).is_err());
        assert!(Selectors::parse(pods(), Some("=x"), None).is_err());
    }

    #[test]
    fn field_selectors_know_their_labels() {
        let obj = json!({"metadata": {"name": "a", "namespace": "ml"}, "spec": {"nodeName": "gpu-1"}});
        let sel = |s: &str| Selectors::parse(pods(), None, Some(s)).unwrap_or_else(|e| panic!("{s}: {}", e.message));
        assert!(sel("spec.nodeName=gpu-1,metadata.namespace==ml").matches(&obj));
        assert!(!sel("spec.nodeName!=gpu-1").matches(&obj));
        assert!(sel("status.phase=").matches(&obj));
        let err = Selectors::parse(pods(), None, Some("spec.foo=bar")).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("field label not supported: spec.foo"));
    }
}
