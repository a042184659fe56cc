//! Charts drawn on the server as inline SVG: no script, no library, nothing fetched, so a
//! page is complete in its HTML, prints, and is the same bytes for the same data (which is
//! what the template snapshots compare). Hover details are SVG `<title>`s: every bucket
//! (its time and values) and every change marker (what changed, from and to).
//!
//! Every text that comes from data is escaped here, since the SVG goes into the page as
//! it is.

use std::fmt::Write as _;

use slo_analyzer::board::ChangeView;

/// Width and height of a chart's drawing, in SVG units (it scales to the page width).
pub(crate) const W: f64 = 960.0;
/// Height.
pub(crate) const H: f64 = 190.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// Changes a grouped marker's title lists at most.
pub(crate) const MARKER_LINES: usize = 6;

/// How a chart's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Milliseconds (`420 ms`, `1.9 s`).
    Ms,
    /// Per second.
    PerSec,
    /// A share, 0..1, written as a percentage.
    Share,
}

impl Unit {
    /// A value for people.
    pub(crate) fn fmt(self, v: f64) -> String {
        match self {
            Unit::Ms => slo_analyzer::text::ms(v),
            Unit::PerSec if v >= 1000.0 => format!("{:.1}k/s", v / 1000.0),
            Unit::PerSec if v >= 10.0 => format!("{v:.0}/s"),
            Unit::PerSec => format!("{v:.2}/s"),
            Unit::Share => format!("{:.1}%", v * 100.0),
        }
    }
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Its name in the legend.
    pub name: &'static str,
    /// CSS class (its colour, in the stylesheet).
    pub class: &'static str,
    /// One value per bucket; `None` is a gap.
    pub values: Vec<Option<f64>>,
}

/// A chart of lines over time.
#[derive(Debug, Clone)]
pub(crate) struct Chart<'a> {
    /// Id of the figure (for links and tests).
    pub id: &'static str,
    /// Title.
    pub title: &'static str,
    /// How values are written.
    pub unit: Unit,
    /// Start of each bucket, ms since the epoch.
    pub t_ms: Vec<i64>,
    /// Bucket width, ms.
    pub step_ms: i64,
    /// The lines.
    pub lines: Vec<Line>,
    /// Changes to mark.
    pub markers: &'a [ChangeView],
    /// A shaded span (the regression since its onset), ms.
    pub band: Option<(i64, i64)>,
    /// Where the y axis ends at least (1.0 for budgets); it starts at 0, or below where a
    /// value is negative (a budget overspent).
    pub y_max: Option<f64>,
}

/// Escapes text for HTML and SVG.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round number at or above `v` for an axis end (1, 2, 2.5, 5 x 10^n).
fn nice(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// `HH:MM` for ranges within a day, `MM-DD HH:MM` beyond (UTC, as every time here).
fn time_label(t_ms: i64, span_ms: i64) -> String {
    let s = slo_analyzer::text::rfc3339(t_ms * 1_000_000);
    if span_ms > 86_400_000 { format!("{} {}", &s[5..10], &s[11..16]) } else { s[11..16].to_string() }
}

/// The marker class of a change kind (its colour in the stylesheet).
pub(crate) fn marker_class(kind: &str) -> &'static str {
    match kind {
        "deploy" => "m-deploy",
        "scale_up" | "scale_down" => "m-scale",
        "cold_start" => "m-cold",
        "node_lost" | "node_added" => "m-node",
        "gpu_throttle" => "m-gpu",
        "oom_kill" | "eviction" | "scheduling_failure" => "m-fail",
        _ => "m-other",
    }
}

/// What a marker's hover says.
pub(crate) fn marker_title(c: &ChangeView) -> String {
    let mut t = format!("{} {} {}", &c.time[11..19], c.kind, c.object);
    if !c.from.is_empty() || !c.to.is_empty() {
        let _ = write!(t, "\n{} -> {}", c.from, c.to);
    }
    if !c.reason.is_empty() {
        let _ = write!(t, "\n{}", c.reason);
    }
    if !c.message.is_empty() {
        let msg: String = c.message.chars().take(200).collect();
        let _ = write!(t, ": {msg}");
    }
    t
}

impl Chart<'_> {
    /// The figure: a caption with the legend, then the SVG.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let n = self.t_ms.len();
        let (t0, t1) = match (self.t_ms.first(), self.t_ms.last()) {
            (Some(a), Some(b)) => (*a, *b + self.step_ms),
            _ => (0, 1),
        };
        let span = (t1 - t0).max(1) as f64;
        let x = |t: i64| LEFT + (t - t0) as f64 / span * (W - LEFT - RIGHT);
        let max = self.lines.iter().flat_map(|l| l.values.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
        let y_min = self.lines.iter().flat_map(|l| l.values.iter().flatten()).fold(0.0f64, |a, b| a.min(*b));
        let y_top = nice(max.max(self.y_max.unwrap_or(0.0)) * 1.05);
        let y_bottom = if y_min < 0.0 { -nice(-y_min * 1.05) } else { 0.0 };
        let y = |v: f64| TOP + (y_top - v) / (y_top - y_bottom) * (H - TOP - BOTTOM);
        let drawn = self.lines.iter().map(|l| l.values.iter().flatten().count()).sum::<usize>();

        let _ = write!(
            out,
            r#"<figure class="chart" id="{}" data-points="{drawn}"><figcaption><b>{}</b>"#,
            self.id,
            esc(self.title)
        );
        for l in &self.lines {
            let _ = write!(out, r#"<span class="key {}">{}</span>"#, l.class, esc(l.name));
        }
        let _ = write!(out, r#"</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#, esc(self.title));
        // Grid and y labels.
        for i in 0..=4 {
            let v = y_bottom + (y_top - y_bottom) * i as f64 / 4.0;
            let yy = y(v);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}"/><text class="yl" x="{:.1}" y="{:.1}">{}</text>"#,
                W - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                esc(&self.unit.fmt(v))
            );
        }
        // Time labels: about six.
        if n > 0 {
            let every = n.div_ceil(6).max(1);
            for i in (0..n).step_by(every) {
                let xx = x(self.t_ms[i]);
                let _ = write!(
                    out,
                    r#"<text class="xl" x="{xx:.1}" y="{:.1}">{}</text>"#,
                    H - 6.0,
                    time_label(self.t_ms[i], t1 - t0)
                );
            }
        }
        if let Some((a, b)) = self.band {
            let (xa, xb) = (x(a.max(t0)), x(b.min(t1)));
            if xb > xa {
                let _ = write!(
                    out,
                    r#"<rect class="band" x="{xa:.1}" y="{TOP}" width="{:.1}" height="{:.1}"><title>regression since {}</title></rect>"#,
                    xb - xa,
                    H - TOP - BOTTOM,
                    time_label(a, 0)
                );
            }
        }
        // Lines, broken at gaps; a lone point is a dot.
        for l in &self.lines {
            let mut d = String::new();
            let mut dots = Vec::new();
            let mut pen_down = false;
            for (i, v) in l.values.iter().enumerate() {
                match v {
                    Some(v) => {
                        let xx = x(self.t_ms[i] + self.step_ms / 2);
                        let _ = write!(d, "{}{xx:.1} {:.1}", if pen_down { "L" } else { "M" }, y(*v));
                        let lone = !pen_down && l.values.get(i + 1).is_none_or(|n| n.is_none());
                        if lone {
                            dots.push((xx, y(*v)));
                        }
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            let _ = write!(out, r#"<path class="ln {}" d="{d}"/>"#, l.class);
            for (cx, cy) in dots {
                let _ = write!(out, r#"<circle class="dot {}" cx="{cx:.1}" cy="{cy:.1}" r="3"/>"#, l.class);
            }
        }
        // Change markers: changes of one kind within one bucket share a marker (a rollout
        // starts ten pods cold in the same minute), placed at the first, all in its title.
        let mut groups: Vec<(usize, &ChangeView, Vec<&ChangeView>)> = Vec::new();
        for c in self.markers.iter().filter(|c| c.t_ms >= t0 && c.t_ms <= t1) {
            let bucket = ((c.t_ms - t0) / self.step_ms.max(1)) as usize;
            match groups.iter_mut().find(|(b, first, _)| *b == bucket && first.kind == c.kind) {
                Some((_, _, all)) => all.push(c),
                None => groups.push((bucket, c, vec![c])),
            }
        }
        for (_, first, all) in &groups {
            let xx = x(first.t_ms);
            let mut title: Vec<String> = all.iter().take(MARKER_LINES).map(|c| marker_title(c)).collect();
            if all.len() > MARKER_LINES {
                title.push(format!("and {} more {}", all.len() - MARKER_LINES, first.kind));
            }
            let _ = write!(
                out,
                r#"<g class="marker {}" data-kind="{}" data-t="{}" data-count="{}"><title>{}</title><line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}"/><rect x="{:.1}" y="{TOP}" width="6" height="{:.1}"/></g>"#,
                marker_class(&first.kind),
                esc(&first.kind),
                first.t_ms,
                all.len(),
                esc(&title.join("\n")),
                H - BOTTOM,
                xx - 3.0,
                H - TOP - BOTTOM
            );
        }
        // Hover targets: one per bucket with its values.
        let w = (W - LEFT - RIGHT) / n.max(1) as f64;
        for i in 0..n {
            let mut t = time_label(self.t_ms[i], 0);
            for l in &self.lines {
                let v = l.values[i].map_or("no requests".to_string(), |v| self.unit.fmt(v));
                let _ = write!(t, "\n{}: {}", l.name, v);
            }
            let _ = write!(
                out,
                r#"<rect class="hov" x="{:.1}" y="{TOP}" width="{w:.1}" height="{:.1}"><title>{}</title></rect>"#,
                x(self.t_ms[i]),
                H - TOP - BOTTOM,
                esc(&t)
            );
        }
        out.push_str("</svg></figure>");
        out
    }
}

/// A sparkline of one series (no axes), for the overview.
pub(crate) fn sparkline(values: &[Option<f64>]) -> String {
    let (w, h) = (120.0, 28.0);
    let max = values.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    if max <= 0.0 {
        return r#"<svg class="spark" viewBox="0 0 120 28"></svg>"#.to_string();
    }
    let n = values.len().max(2) - 1;
    let mut d = String::new();
    let mut pen = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if pen { "L" } else { "M" },
                    i as f64 / n as f64 * w,
                    h - 2.0 - v / max * (h - 4.0)
                );
                pen = true;
            }
            None => pen = false,
        }
    }
    format!(r#"<svg class="spark" viewBox="0 0 {w} {h}" preserveAspectRatio="none"><path d="{d}"/></svg>"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: &str, t_ms: i64, msg: &str) -> ChangeView {
        ChangeView {
            time: slo_analyzer::text::rfc3339(t_ms * 1_000_000),
            t_ms,
            kind: kind.into(),
            namespace: "default".into(),
            object: "deployment/x".into(),
            from: "v1".into(),
            to: "v2".into(),
            reason: String::new(),
            message: msg.into(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn a_chart_draws_its_lines_markers_and_escapes_what_comes_from_data() {
        let t: Vec<i64> = (0..10).map(|i| 1_700_000_000_000 + i * 60_000).collect();
        let markers = [change("deploy", t[4] + 1000, "<script>alert(1)</script>"), change("scale_down", 0, "outside")];
        let c = Chart {
            id: "latency",
            title: "Latency",
            unit: Unit::Ms,
            t_ms: t.clone(),
            step_ms: 60_000,
            lines: vec![Line {
                name: "p99",
                class: "p99",
                values: (0..10).map(|i| if i == 5 { None } else { Some(100.0 + i as f64) }).collect(),
            }],
            markers: &markers,
            band: Some((t[6], t[9] + 60_000)),
            y_max: None,
        };
        let svg = c.render();
        assert!(svg.contains(r#"data-points="9""#));
        assert_eq!(svg.matches(r#"class="marker "#).count(), 1, "the marker outside the range is not drawn");
        assert!(svg.contains(&format!(r#"data-t="{}""#, t[4] + 1000)));
        assert!(!svg.contains("<script>"), "data is escaped");
        assert!(svg.contains("&lt;script&gt;"));
        let d = svg.split(r#"<path class="ln p99" d=""#).nth(1).and_then(|s| s.split('"').next()).unwrap();
        assert_eq!(d.matches('M').count(), 2, "the gap breaks the line: {d}");
        assert!(svg.contains("no requests"), "the gap's hover says so");
        assert!(svg.contains(r#"class="band""#));

        // Ten cold starts in one minute are one marker that lists them.
        let colds: Vec<ChangeView> = (0..10).map(|i| change("cold_start", t[2] + i * 1000, "pod ready")).collect();
        let svg = Chart { markers: &colds, ..c.clone() }.render();
        assert_eq!(svg.matches(r#"class="marker "#).count(), 1);
        assert!(svg.contains(r#"data-count="10""#) && svg.contains("and 4 more cold_start"));
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.3), 10.0);
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(2100.0), 2500.0);
        assert!(sparkline(&[None, Some(1.0), Some(3.0)]).contains("<path"));
    }
}
