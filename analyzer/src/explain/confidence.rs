//! How sure the answer is, and what would settle it: the on-call engineer acts on a
//! "high" (roll back, drain the node) and checks a "low" first. The level rests on what
//! the answer stands on, each said in words: how long the regression has lasted, how
//! many requests show it, how well the first cause scores and by how much it leads the
//! next, and whether its before/after test had the requests to run.

use serde::{Deserialize, Serialize};

use super::Cause;
use crate::rollup::MINUTE_NS;

/// How sure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confidence {
    /// `high`, `medium` or `low`.
    pub level: String,
    /// What lowers it, one fact each (empty when high).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub because: Vec<String>,
    /// What would settle it, when it is not high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<String>,
}

/// A regression younger than this is said to rest on few minutes.
pub(super) const MIN_MINUTES: i64 = 3;
/// ... on fewer requests since the onset than this, on few requests.
pub(super) const MIN_REQUESTS: u64 = 1000;
/// A first cause scoring under this is weak.
pub(super) const WEAK_SCORE: f64 = 0.4;
/// A first cause leading the next by less than this is close.
pub(super) const CLOSE_MARGIN: f64 = 0.1;
/// High needs the first cause at this score at least ...
pub(super) const HIGH_SCORE: f64 = 0.6;
/// ... and this lead over the next.
pub(super) const HIGH_MARGIN: f64 = 0.2;

/// What the level is judged from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Basis {
    /// Since the onset, ns.
    pub lasted: i64,
    /// Requests since the onset.
    pub requests: u64,
    /// Whether the first cause's kind compares its own requests with the others' (a new
    /// ReplicaSet, one node) and that comparison could not run.
    pub untested: bool,
}

/// The confidence of an answer whose causes are `causes` (ranked; a second-rise cause
/// is not a rival of the first).
pub(super) fn judge(causes: &[Cause], basis: Basis) -> Confidence {
    let mut because = Vec::new();
    let mut settle = Vec::new();
    let minutes = basis.lasted / MINUTE_NS;
    if minutes < MIN_MINUTES {
        because.push(format!("the regression is {minutes} min old"));
        settle.push(format!("{} more min of data", MIN_MINUTES - minutes));
    }
    if basis.requests < MIN_REQUESTS {
        because.push(format!("{} requests since the onset", basis.requests));
        if minutes >= MIN_MINUTES {
            settle.push("more requests (a wider window or a longer wait)".to_string());
        }
    }
    let Some(top) = causes.first() else {
        because.push("no change and no shift in the data explains it".to_string());
        return Confidence {
            level: "low".into(),
            because,
            settle: Some(
                "look at what slo does not watch: config maps and flags, upstream services, a new client".into(),
            ),
        };
    };
    let rival = causes.iter().skip(1).find(|c| c.made_worse.is_none());
    let margin = top.score - rival.map_or(0.0, |c| c.score);
    if top.score < WEAK_SCORE {
        because.push(format!("the first cause scores {:.2}", top.score));
    }
    if let Some(r) = rival.filter(|_| margin < CLOSE_MARGIN) {
        because.push(format!("{} {} scores {:.2}, close to the first's {:.2}", r.kind, r.object, r.score, top.score));
        settle.push(tiebreak(top, r));
    }
    if basis.untested {
        because
            .push(format!("{} {}'s own pods have not served enough to compare with the others", top.kind, top.object));
        settle.push("its pods serving a few minutes".to_string());
    }
    let level = if because.is_empty() && top.score >= HIGH_SCORE && margin >= HIGH_MARGIN {
        "high"
    } else if because.len() >= 2 || top.score < WEAK_SCORE {
        "low"
    } else {
        "medium"
    };
    if level != "high" && because.is_empty() {
        because.push(format!("the first cause scores {:.2}, {margin:.2} ahead of the next", top.score));
    }
    settle.dedup();
    Confidence {
        level: level.into(),
        because,
        settle: if level == "high" || settle.is_empty() { None } else { Some(settle.join("; ")) },
    }
}

/// What tells two close causes apart.
fn tiebreak(a: &Cause, b: &Cause) -> String {
    let one = |c: &Cause| match c.kind.as_str() {
        "deploy" => format!("the new ReplicaSet of {} against the old on the same nodes", c.object),
        "gpu_throttle" => format!("the SM clocks and temperature of {}", c.object),
        "scale_down" | "cold_start" => "whether the queue drains once the pods are back".to_string(),
        "traffic_surge" | "workload_shift" => "the request rate and prompt lengths by client".to_string(),
        _ => format!("kubectl describe {}", c.object),
    };
    let (x, y) = (one(a), one(b));
    if x == y { x } else { format!("{x}, or {y}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(kind: &str, score: f64) -> Cause {
        Cause {
            rank: 1,
            kind: kind.into(),
            object: format!("{kind}/x"),
            time: String::new(),
            namespace: String::new(),
            score,
            evidence: Vec::new(),
            source: "changes".into(),
            factors: [1.0; 4],
            made_worse: None,
        }
    }

    const SETTLED: Basis = Basis { lasted: 10 * MINUTE_NS, requests: 20_000, untested: false };

    #[test]
    fn a_strong_lead_on_enough_data_is_high_and_says_nothing_more() {
        let c = judge(&[cause("deploy", 0.83), cause("cold_start", 0.43)], SETTLED);
        assert_eq!((c.level.as_str(), c.because.len(), c.settle), ("high", 0, None));
    }

    #[test]
    fn young_thin_or_close_answers_say_why_and_what_would_settle_them() {
        let young = Basis { lasted: MINUTE_NS, requests: 600, untested: false };
        let c = judge(&[cause("scale_down", 0.9), cause("deploy", 0.2)], young);
        assert_eq!(c.level, "low");
        assert_eq!(c.because, ["the regression is 1 min old", "600 requests since the onset"]);
        assert_eq!(c.settle.as_deref(), Some("2 more min of data"));

        let c = judge(&[cause("deploy", 0.7), cause("gpu_throttle", 0.65)], SETTLED);
        assert_eq!(c.level, "medium");
        assert!(c.because[0].starts_with("gpu_throttle gpu_throttle/x scores 0.65"), "{c:?}");
        assert!(c.settle.unwrap().contains("the new ReplicaSet of deploy/x against the old on the same nodes, or"));

        let c = judge(&[cause("deploy", 0.7)], Basis { untested: true, ..SETTLED });
        assert_eq!(c.level, "medium");
        assert_eq!(c.settle.as_deref(), Some("its pods serving a few minutes"));

        let c = judge(&[cause("traffic_surge", 0.3)], SETTLED);
        assert_eq!(c.level, "low");

        let c = judge(&[cause("deploy", 0.5), cause("scale_down", 0.35)], SETTLED);
        assert_eq!(
            (c.level.as_str(), c.because[0].as_str()),
            ("medium", "the first cause scores 0.50, 0.15 ahead of the next")
        );
    }

    #[test]
    fn a_second_rises_cause_is_no_rival_and_no_cause_is_low() {
        let mut worse = cause("scale_down", 0.83);
        worse.made_worse = Some("p99 rose again".into());
        let c = judge(&[cause("deploy", 0.83), worse], SETTLED);
        assert_eq!(c.level, "high");
        let c = judge(&[], SETTLED);
        assert_eq!(c.level, "low");
        assert!(c.settle.is_some());
    }
}
