//! The text form of a [`Report`] for a person on call: one screen, the verdict first, then
//! the evidence, then what to look at next.

use std::fmt::Write;

use crate::explain::Report;
use crate::text::ms;

fn hm(rfc: &str) -> &str {
    rfc.get(11..19).unwrap_or(rfc)
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Lines are cut to this many columns.
pub(crate) const COLUMNS: usize = 100;

/// The most lines the text has: one screen.
pub(crate) const LINES: usize = 24;

/// Renders the report as text: at most [`LINES`] lines of [`COLUMNS`] columns.
pub fn text(r: &Report) -> String {
    let full = full_text(r);
    let mut o = String::new();
    for line in full.lines().take(LINES) {
        if line.chars().count() > COLUMNS {
            o.extend(line.chars().take(COLUMNS - 3));
            o.push_str("...");
        } else {
            o.push_str(line);
        }
        o.push('\n');
    }
    o
}

/// `text` in lines of at most `width` columns, broken between words (a word longer than
/// the width is a line of its own, cut by [`text`]): a verdict's reason is read whole.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn slo_lines(r: &Report) -> Vec<String> {
    let Some(s) = &r.slo else { return Vec::new() };
    let mut out = Vec::new();
    let burn = |w: &str| s.burn.iter().find(|b| b.window == w).and_then(|b| b.burn_rate);
    // The current rate and the page alerts' long windows (1h and 6h for 30 days).
    let mut shown = vec!["5m"];
    shown.extend(s.alerts.iter().filter(|a| a.severity == "page").map(|a| a.windows[0].as_str()));
    shown.dedup();
    let rates: Vec<String> = shown.iter().filter_map(|w| burn(w).map(|b| format!("{w} {b:.1}x"))).collect();
    let firing: Vec<String> = s
        .alerts
        .iter()
        .filter(|a| a.firing)
        .map(|a| format!("{} ({}/{} > {}x)", a.severity.to_uppercase(), a.windows[0], a.windows[1], a.factor))
        .collect();
    out.push(format!(
        "SLO {}: {:.2}% of {} over {}: burn {}{}",
        s.name,
        s.objective * 100.0,
        s.sli,
        crate::text::window_name(s.period_s * 1_000_000_000),
        if rates.is_empty() { "-".to_string() } else { rates.join(", ") },
        if firing.is_empty() { String::new() } else { format!("; firing: {}", firing.join(", ")) }
    ));
    let mut line = match s.budget_remaining {
        Some(b) => format!("  error budget {:.0}% left", b * 100.0),
        None => "  no requests in the SLO period".to_string(),
    };
    if s.covered_s < s.period_s {
        line.push_str(&format!(" (data covers {} of the period)", duration(s.covered_s as f64)));
    }
    if let Some(t) = s.time_to_exhaustion_s {
        line.push_str(&format!(", spent in {} at the 1h burn rate", duration(t)));
    }
    out.push(line);
    out
}

fn full_text(r: &Report) -> String {
    let mut o = full_text_without_slo(r);
    let lines = slo_lines(r);
    if !lines.is_empty() {
        let (first, rest) = o.split_once('\n').unwrap_or((o.as_str(), ""));
        o = format!("{first}\n{}\n{rest}", lines.join("\n"));
    }
    o
}

fn full_text_without_slo(r: &Report) -> String {
    let mut o = String::new();
    let g = &r.regression;
    if !g.detected {
        let _ = writeln!(o, "{}: no p99 regression between {} and {}", r.service, r.window.from, r.window.to);
        if let Some(why) = &g.reason {
            for line in wrap(why, COLUMNS - 2) {
                let _ = writeln!(o, "  {line}");
            }
        }
        if let Some(now) = g.p99_now_ms {
            let _ = writeln!(o, "  p99 in the newest bucket: {}", ms(now));
        }
        let _ = writeln!(
            o,
            "  {} requests in {} bucket(s) of {} s",
            r.data.requests, r.data.buckets, r.data.bucket_seconds
        );
        return o;
    }
    let onset = g.onset.as_deref().unwrap_or("?");
    let state = if g.ongoing == Some(true) { "still regressed" } else { "since recovered" };
    let _ = writeln!(
        o,
        "{}: p99 {} -> {} from {} UTC (p={}), {state}",
        r.service,
        ms(g.p99_before_ms.unwrap_or(0.0)),
        ms(g.p99_after_ms.unwrap_or(0.0)),
        hm(onset),
        crate::text::p_text(g.p_value.unwrap_or(1.0)),
    );
    if let Some(note) = &g.note {
        let _ = writeln!(o, "  {note}");
    }
    if let (Some(q), Some(c)) = (g.queue_share, g.compute_share) {
        let dominant = if q >= c { "mostly queue time" } else { "mostly compute time" };
        let _ = writeln!(o, "  slow tail's increase: {} queue, {} compute ({dominant})", pct(q), pct(c));
    }
    if let (Some(qp), Some(cp)) = (g.queue_p99_ms, g.compute_p99_ms) {
        let _ = writeln!(o, "  queue p99 {} -> {}, compute p99 {} -> {}", ms(qp[0]), ms(qp[1]), ms(cp[0]), ms(cp[1]));
    }
    match r.causes.first() {
        Some(top) => {
            let _ = writeln!(o);
            let _ =
                writeln!(o, "likely cause: {} {} at {} (score {:.2})", top.kind, top.object, hm(&top.time), top.score);
            for e in top.evidence.iter().take(5) {
                let _ = writeln!(o, "  - {e}");
            }
            confidence(&mut o, r.confidence.as_ref());
        }
        None => {
            let _ =
                writeln!(o, "\nno candidate cause: no change in the cluster and no shift in the data before the onset");
            confidence(&mut o, r.confidence.as_ref());
        }
    }
    let worse = r.causes.iter().skip(1).find(|c| c.made_worse.is_some());
    if let Some(c) = worse {
        let _ = writeln!(o, "\nthen made worse by: {} {} at {} (score {:.2})", c.kind, c.object, hm(&c.time), c.score);
        let _ = writeln!(o, "  - {}", c.made_worse.as_deref().unwrap_or_default());
        for e in c.evidence.iter().take(2) {
            let _ = writeln!(o, "  - {e}");
        }
    }
    let mut tail = String::new();
    if !r.next_steps.is_empty() {
        let _ = writeln!(tail, "\nnext:");
        for s in &r.next_steps {
            let _ = writeln!(tail, "  {s}");
        }
    }
    let _ = writeln!(
        tail,
        "\n{} requests in {} buckets of {} s, {} changes; window {} - {} UTC",
        r.data.requests,
        r.data.buckets,
        r.data.bucket_seconds,
        r.data.changes_considered,
        r.window.from.replace('T', " ").trim_end_matches('Z'),
        hm(&r.window.to)
    );
    // The rivals get the lines the screen has left (a blank and a heading, then one each).
    let room = LINES.saturating_sub(o.lines().count() + tail.lines().count() + 2).min(4);
    let rest: Vec<_> = r.causes.iter().skip(1).filter(|c| c.made_worse.is_none()).take(room).collect();
    if !rest.is_empty() {
        let _ = writeln!(o, "\nless likely:");
        for c in rest {
            let why = c.evidence.first().map(String::as_str).unwrap_or("");
            let _ = writeln!(o, "  {}. {} {} at {} ({:.2}) {why}", c.rank, c.kind, c.object, hm(&c.time), c.score);
        }
    }
    o.push_str(&tail);
    o
}

/// `confidence: medium (the regression is 2 min old); would settle it: 1 more min of data`.
fn confidence(o: &mut String, c: Option<&crate::explain::Confidence>) {
    let Some(c) = c else { return };
    let why = if c.because.is_empty() { String::new() } else { format!(" ({})", c.because.join("; ")) };
    let _ = writeln!(o, "  confidence: {}{why}", c.level);
    if let Some(s) = &c.settle {
        let _ = writeln!(o, "  would settle it: {s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_wrapped_whole_not_cut() {
        let reason = "p99 rose from 10.00 s to 13.2 s (1.32x) from 14:19:00 as traffic rose from 27.9/s to 42.6/s, \
                      within the 63.3/s served from 14:03:00; hpa/qwen-32b is scaling up (5 -> 8 since 14:19:30): the \
                      autoscaler catching up with load, not a regression";
        let lines = wrap(reason, COLUMNS - 2);
        assert!(lines.len() >= 2 && lines.iter().all(|l| l.chars().count() <= COLUMNS - 2), "{lines:?}");
        assert_eq!(lines.join(" "), reason);
        assert_eq!(wrap("", 10), Vec::<String>::new());
        assert_eq!(wrap("a-very-long-word b", 5), ["a-very-long-word", "b"]);
    }
}
