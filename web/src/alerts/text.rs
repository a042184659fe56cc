//! The text of a forwarded alert (Slack's `text`, mrkdwn): what fired, the verdict and its
//! likely cause, the command that explains it and the dashboard link.

use slo_analyzer::Report;
use slo_analyzer::text::ms;

use super::Entry;

/// One line: the regression and its top cause, or why there is none.
pub(super) fn verdict(r: &Report) -> String {
    let g = &r.regression;
    if !g.detected {
        return format!("no p99 regression: {}", g.reason.as_deref().unwrap_or("no significant change"));
    }
    let mut s = String::from("p99 regression");
    if let (Some(b), Some(a)) = (g.p99_before_ms, g.p99_after_ms) {
        s.push_str(&format!(" {} -> {}", ms(b), ms(a)));
    }
    if let Some(o) = &g.onset {
        s.push_str(&format!(" since {}", o.get(11..19).unwrap_or(o)));
    }
    if let Some(q) = g.queue_share {
        s.push_str(&format!(" ({:.0}% queue)", q * 100.0));
    }
    match r.causes.first() {
        Some(c) => s.push_str(&format!("; likely cause: {} {} (score {:.2})", c.kind, c.object, c.score)),
        None => s.push_str("; no candidate cause found"),
    }
    s
}

/// The whole message.
pub(super) fn slack(e: &Entry, dashboard: Option<&str>) -> String {
    let name = e.labels.get("alertname").map_or("alert", String::as_str);
    let mut lines = vec![format!(
        "*[{}] {name}* {}{}",
        e.status.to_uppercase(),
        e.service.as_deref().unwrap_or(""),
        e.labels.get("burnrate_tier").map(|t| format!(" ({t})")).unwrap_or_default()
    )];
    if let Some(s) = e.annotations.get("summary") {
        lines.push(s.clone());
    }
    match (&e.report, &e.note) {
        (Some(r), _) => {
            lines.push(verdict(r));
            if let Some(c) = r.causes.first()
                && let Some(ev) = c.evidence.first()
            {
                lines.push(format!("> {ev}"));
            }
        }
        (None, Some(n)) => lines.push(format!("not explained: {n}")),
        (None, None) => {}
    }
    if let Some(cmd) = e.annotations.get("explain") {
        lines.push(format!("`{cmd}`"));
    } else if let Some(s) = &e.service {
        lines.push(format!("`slo explain --service {s}`"));
    }
    if let (Some(url), Some(s)) = (dashboard, &e.service) {
        lines.push(format!("{}/services/{s}", url.trim_end_matches('/')));
    }
    lines.join("\n")
}
