//! `slo dashboards`: the Grafana dashboards in `dashboards/`, generated so that every panel
//! follows the same rules (docs/DASHBOARDS.md has the contract):
//!
//! - the data source is the `${datasource}` variable, never a fixed uid, so a dashboard
//!   imports into any Grafana whose Prometheus scrapes `slo serve`;
//! - the SLO overview reads only the Sloth-compatible records `slo rules` writes, so it
//!   shows every SLO generated, whatever its window;
//! - inference latency reads `slo`'s SLI histograms and the continuous analyzer's verdict
//!   (annotations), beside the model server's own metrics (vLLM);
//! - GPU by workload joins dcgm-exporter's series to the pod and service `slo` attributed
//!   each GPU to (`slo_gpu_workload_info`, on `UUID`).
//!
//! The files are checked in; a test regenerates them and fails on any difference.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::cli::Failure;

mod gpu;
mod inference;
mod overview;
#[cfg(test)]
mod tests;

/// `slo dashboards`.
#[derive(Debug, Args)]
pub(crate) struct DashboardsArgs {
    /// Where to write the dashboards' JSON files (created if missing).
    #[arg(long, default_value = "dashboards", value_name = "DIR")]
    pub out: PathBuf,
    /// Where people reach `slo serve`'s web port: the default of each dashboard's `slo_url`
    /// variable, used by the links to `slo`'s own pages.
    #[arg(long, default_value = "http://slo.slo:8080", value_name = "URL")]
    pub url: String,
}

/// Writes every dashboard into `args.out`.
pub(crate) async fn run(args: DashboardsArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.out).map_err(|e| Failure::usage_msg(format!("--out {}: {e}", args.out.display())))?;
    for (file, board) in all(&args.url) {
        let path = args.out.join(file);
        let mut text = serde_json::to_string_pretty(&board)?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| Failure::usage_msg(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Every dashboard, by file name.
pub(crate) fn all(url: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("slo-overview.json", overview::board(url)),
        ("slo-inference.json", inference::board(url)),
        ("slo-gpu.json", gpu::board(url)),
    ]
}

/// The Grafana JSON model these dashboards are written in (Grafana 10 and later).
pub(crate) const SCHEMA_VERSION: u64 = 39;

/// The data-source reference every panel, target, variable and annotation uses.
fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

/// One PromQL query of a panel.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    expr: String,
    legend: String,
    /// An instant query (tables and stats of "now") rather than a range.
    instant: bool,
}

/// A range query with its legend.
pub(crate) fn q(expr: impl Into<String>, legend: &str) -> Query {
    Query { expr: expr.into(), legend: legend.into(), instant: false }
}

/// An instant query with its legend.
pub(crate) fn instant(expr: impl Into<String>, legend: &str) -> Query {
    Query { expr: expr.into(), legend: legend.into(), instant: true }
}

/// One panel before layout.
#[derive(Debug, Clone)]
pub(crate) struct Panel {
    kind: &'static str,
    title: String,
    description: String,
    width: u64,
    height: u64,
    queries: Vec<Query>,
    /// `fieldConfig.defaults`.
    defaults: Value,
    options: Value,
    transformations: Vec<Value>,
}

impl Panel {
    fn new(kind: &'static str, title: &str, description: &str, unit: &str, queries: Vec<Query>) -> Panel {
        Panel {
            kind,
            title: title.into(),
            description: description.into(),
            width: 12,
            height: 8,
            queries,
            defaults: json!({ "unit": unit }),
            options: json!({}),
            transformations: Vec::new(),
        }
    }

    /// A time series panel with a legend table (last, max) and a shared tooltip.
    pub(crate) fn timeseries(title: &str, description: &str, unit: &str, queries: Vec<Query>) -> Panel {
        let mut p = Panel::new("timeseries", title, description, unit, queries);
        p.defaults["custom"] = json!({ "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": false });
        p.options = json!({
            "legend": { "displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"] },
            "tooltip": { "mode": "multi", "sort": "desc" }
        });
        p
    }

    /// A single-value panel of the newest value.
    pub(crate) fn stat(title: &str, description: &str, unit: &str, query: Query) -> Panel {
        let mut p = Panel::new("stat", title, description, unit, vec![query]);
        p.width = 4;
        p.height = 4;
        p.options = json!({
            "reduceOptions": { "calcs": ["lastNotNull"], "fields": "", "values": false },
            "colorMode": "value", "graphMode": "area", "textMode": "auto"
        });
        p
    }

    /// A table of instant queries merged on their labels.
    pub(crate) fn table(title: &str, description: &str, queries: Vec<Query>, rename: &[(&str, &str)]) -> Panel {
        let mut p = Panel::new("table", title, description, "", queries);
        p.width = 24;
        p.options = json!({ "showHeader": true, "cellHeight": "sm" });
        let names: serde_json::Map<String, Value> =
            rename.iter().map(|(from, to)| (from.to_string(), Value::from(*to))).collect();
        p.transformations = vec![
            json!({ "id": "merge", "options": {} }),
            json!({ "id": "organize", "options": { "excludeByName": { "Time": true }, "renameByName": names } }),
        ];
        p
    }

    pub(crate) fn size(mut self, width: u64, height: u64) -> Panel {
        self.width = width;
        self.height = height;
        self
    }

    /// Stacks the series (the parts of a whole).
    pub(crate) fn stacked(mut self) -> Panel {
        self.defaults["custom"]["stacking"] = json!({ "mode": "normal", "group": "A" });
        self.defaults["custom"]["fillOpacity"] = json!(40);
        self
    }

    /// Colour steps: `(value, colour)` after a base colour; drawn as lines on time series.
    pub(crate) fn thresholds(mut self, base: &str, steps: &[(f64, &str)]) -> Panel {
        let mut list = vec![json!({ "color": base, "value": null })];
        list.extend(steps.iter().map(|(v, c)| json!({ "color": c, "value": v })));
        self.defaults["thresholds"] = json!({ "mode": "absolute", "steps": list });
        if self.kind == "timeseries" {
            self.defaults["custom"]["thresholdsStyle"] = json!({ "mode": "dashed" });
        }
        self
    }

    /// Value mappings: exact value -> text and colour.
    pub(crate) fn mappings(mut self, values: &[(&str, &str, &str)]) -> Panel {
        let options: serde_json::Map<String, Value> = values
            .iter()
            .enumerate()
            .map(|(i, (v, text, color))| (v.to_string(), json!({ "text": text, "color": color, "index": i })))
            .collect();
        self.defaults["mappings"] = json!([{ "type": "value", "options": options }]);
        self
    }

    /// Colour the cells of a table column by its thresholds.
    pub(crate) fn colored_cells(mut self) -> Panel {
        self.defaults["custom"] = json!({ "cellOptions": { "type": "color-text" } });
        self
    }

    fn json(&self, id: u64, x: u64, y: u64) -> Value {
        let targets: Vec<Value> = self
            .queries
            .iter()
            .zip('A'..)
            .map(|(q, ref_id)| {
                let mut t = json!({
                    "datasource": datasource(),
                    "refId": ref_id.to_string(),
                    "expr": q.expr,
                    "legendFormat": q.legend,
                    "range": !q.instant,
                    "instant": q.instant,
                });
                if self.kind == "table" {
                    t["format"] = json!("table");
                }
                t
            })
            .collect();
        json!({
            "id": id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": datasource(),
            "gridPos": { "h": self.height, "w": self.width, "x": x, "y": y },
            "targets": targets,
            "fieldConfig": { "defaults": self.defaults, "overrides": [] },
            "options": self.options,
            "transformations": self.transformations,
        })
    }
}

/// A dashboard being laid out: rows of panels, left to right, wrapping at 24 columns.
#[derive(Debug)]
pub(crate) struct Board {
    uid: &'static str,
    title: &'static str,
    description: &'static str,
    tags: Vec<&'static str>,
    variables: Vec<Value>,
    annotations: Vec<Value>,
    links: Vec<Value>,
    panels: Vec<Value>,
    x: u64,
    y: u64,
    line_height: u64,
}

impl Board {
    /// A dashboard with the `datasource` variable and the `slo_url` text box.
    pub(crate) fn new(uid: &'static str, title: &'static str, description: &'static str, url: &str) -> Board {
        let builtin = json!({
            "builtIn": 1, "datasource": { "type": "grafana", "uid": "-- Grafana --" }, "enable": true,
            "hide": true, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"
        });
        Board {
            uid,
            title,
            description,
            tags: vec!["slo", "inference"],
            variables: vec![
                json!({
                    "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
                    "current": {}, "hide": 0, "includeAll": false, "multi": false, "options": [], "refresh": 1,
                    "regex": ""
                }),
                json!({
                    "name": "slo_url", "label": "slo web", "type": "textbox", "query": url, "hide": 2,
                    "current": { "text": url, "value": url }, "options": [{ "selected": true, "text": url, "value": url }],
                    "description": "where slo serve's web port is reached: the links to its pages"
                }),
            ],
            annotations: vec![builtin],
            links: Vec::new(),
            panels: Vec::new(),
            x: 0,
            y: 0,
            line_height: 0,
        }
    }

    /// A query variable over label values (several values, "All" matching anything).
    pub(crate) fn variable(&mut self, name: &str, label: &str, query: &str) {
        self.variables.push(json!({
            "name": name, "label": label, "type": "query", "datasource": datasource(),
            "query": query, "definition": query, "refresh": 2, "sort": 1,
            "multi": true, "includeAll": true, "allValue": ".*",
            "current": { "text": ["All"], "value": ["$__all"] }, "options": [], "hide": 0, "regex": ""
        }));
    }

    /// An annotation from a PromQL expression (a marker wherever it has a value).
    pub(crate) fn annotation(&mut self, name: &str, expr: &str, title: &str, text: &str, color: &str) {
        self.annotations.push(json!({
            "name": name, "datasource": datasource(), "enable": true, "hide": false, "iconColor": color,
            "expr": expr, "step": "60s", "titleFormat": title, "textFormat": text, "useValueForTime": false
        }));
    }

    /// A link in the dashboard's header.
    pub(crate) fn link(&mut self, title: &str, url: &str) {
        self.links.push(json!({
            "title": title, "type": "link", "url": url, "targetBlank": true, "icon": "external link",
            "includeVars": false, "keepTime": false
        }));
    }

    /// Starts a row with a title.
    pub(crate) fn row(&mut self, title: &str) {
        self.new_line();
        let id = self.next_id();
        self.panels.push(json!({
            "id": id, "type": "row", "title": title, "collapsed": false, "panels": [],
            "gridPos": { "h": 1, "w": 24, "x": 0, "y": self.y }
        }));
        self.y += 1;
    }

    /// Places a panel after the previous one, on a new line when it does not fit.
    pub(crate) fn add(&mut self, panel: Panel) {
        if self.x + panel.width > 24 {
            self.new_line();
        }
        let id = self.next_id();
        self.panels.push(panel.json(id, self.x, self.y));
        self.x += panel.width;
        self.line_height = self.line_height.max(panel.height);
    }

    fn new_line(&mut self) {
        self.y += self.line_height;
        self.x = 0;
        self.line_height = 0;
    }

    fn next_id(&self) -> u64 {
        self.panels.len() as u64 + 1
    }

    /// The dashboard's JSON model.
    pub(crate) fn finish(self) -> Value {
        json!({
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": true,
            "graphTooltip": 1,
            "refresh": "1m",
            "time": { "from": "now-6h", "to": "now" },
            "timepicker": {},
            "timezone": "",
            "fiscalYearStartMonth": 0,
            "liveNow": false,
            "templating": { "list": self.variables },
            "annotations": { "list": self.annotations },
            "links": self.links,
            "panels": self.panels,
        })
    }
}
