//! `dashboards/`: the checked-in Grafana dashboards are what `slo dashboards` generates,
//! are sound as Grafana JSON (schema version, unique panel ids, the data source as a
//! variable and never a fixed uid), and — against a real Prometheus fed by the simulator
//! (`paging.rs` runs it) — every query of every panel, variable and annotation, and every
//! rule `slo rules` generated, parses and returns data.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::slo;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The checked-in dashboards, by file name.
fn checked_in() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every `datasource` object anywhere in `v`.
fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push(x);
                }
                datasources(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
        _ => {}
    }
}

#[test]
fn dashboards_are_generated_and_sound() {
    let dir = tempfile::tempdir().unwrap();
    let out = slo(&["dashboards", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let boards = checked_in();
    let names: Vec<&str> = boards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["slo-gpu.json", "slo-inference.json", "slo-overview.json"]);
    for (name, board) in &boards {
        let fresh = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let ours = std::fs::read_to_string(root().join("dashboards").join(name)).unwrap();
        assert!(fresh == ours, "dashboards/{name} is stale: run `slo dashboards --out dashboards`");

        assert!(board["schemaVersion"].as_u64().unwrap() >= 36, "{name}: schemaVersion");
        assert!(board["uid"].as_str().is_some_and(|u| !u.is_empty() && u.len() <= 40), "{name}: uid");
        assert!(board.get("__inputs").is_none(), "{name}: an export for one Grafana (`__inputs`)");
        let vars = board["templating"]["list"].as_array().unwrap();
        let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap_or_else(|| panic!("{name}: no datasource"));
        assert_eq!((ds["type"].as_str(), ds["query"].as_str()), (Some("datasource"), Some("prometheus")), "{name}");
        let mut refs = Vec::new();
        datasources(board, &mut refs);
        for r in refs {
            let builtin = r["uid"] == "-- Grafana --" && r["type"] == "grafana";
            assert!(builtin || r["uid"] == "${datasource}", "{name}: a fixed data source {r}");
        }
        let mut ids = HashSet::new();
        for p in board["panels"].as_array().unwrap() {
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{name}: panel id {} twice", p["id"]);
            if p["type"] != "row" {
                let targets = p["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "{name}: {} has no query", p["title"]);
                assert!(targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())), "{name}");
            }
        }
    }
}

/// Grafana's variables as a test of "every value": the services, models, SLOs and nodes
/// the run has; the rate interval as Grafana would pick it for a 1 s scrape and a short
/// range.
fn substitute(expr: &str) -> String {
    let mut e = expr.replace("$__rate_interval", "1m").replace("$__interval", "5s").replace("$__range", "10m");
    for var in ["service", "model", "slo", "node"] {
        e = e.replace(&format!("${{{var}}}"), ".*").replace(&format!("${var}"), ".*");
    }
    e
}

/// Prometheus's HTTP API: `data` of a successful answer, or the error it gave.
pub(crate) fn api(prometheus: &str, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body: Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{prometheus}{path}"))
            .query(params)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    })?;
    if body["status"] == "success" { Ok(body["data"].clone()) } else { Err(body.to_string()) }
}

/// What a panel would draw over the run: the series a range query returns.
fn range(prometheus: &str, expr: &str, span: (f64, f64)) -> Result<usize, String> {
    let params =
        [("query", expr.to_string()), ("start", span.0.to_string()), ("end", span.1.to_string()), ("step", "5".into())];
    let data = api(prometheus, "/api/v1/query_range", &params)?;
    Ok(data["result"].as_array().map_or(0, Vec::len))
}

/// The vector selectors of a rule's expression (`name{...}`, or a bare name that is not a
/// label list of `by`/`on`/`without`).
fn selectors(expr: &str) -> Vec<String> {
    let token = regex::Regex::new(r"\b((?:slo|sloth|DCGM|vllm)[A-Za-z0-9_:]*)(\{[^{}]*\})?(.?)").unwrap();
    token
        .captures_iter(expr)
        .filter(|c| c.get(2).is_some() || !matches!(&c[3], ")" | ","))
        .map(|c| format!("{}{}", &c[1], c.get(2).map_or("", |m| m.as_str())))
        .collect()
}

/// Every query of every checked-in dashboard, and every rule Prometheus loaded, against
/// `prometheus` over `span` (Unix seconds): each parses, each returns data; every rule
/// evaluated without error. Called once the simulated run has fed it (`paging.rs`).
pub(crate) fn every_query_returns_data(prometheus: &str, span: (f64, f64)) {
    let mut failures = Vec::new();
    let mut checked = 0;
    let label_values = regex::Regex::new(r"^label_values\((.+), *([A-Za-z_]+)\)$").unwrap();
    for (name, board) in checked_in() {
        let mut queries: Vec<(String, String)> = Vec::new();
        for p in board["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                queries.push((format!("{name}: panel {:?}", p["title"]), t["expr"].as_str().unwrap().into()));
            }
        }
        for a in board["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = a["expr"].as_str() {
                queries.push((format!("{name}: annotation {:?}", a["name"]), expr.into()));
            }
        }
        for v in board["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
            let q = v["query"].as_str().unwrap();
            let c = label_values.captures(q).unwrap_or_else(|| panic!("{name}: variable {q:?} is not label_values"));
            // Grafana asks for the series and reads the label: the series must carry it.
            queries.push((format!("{name}: variable {:?}", v["name"]), format!("count by ({}) ({})", &c[2], &c[1])));
        }
        for (what, expr) in queries {
            checked += 1;
            match range(prometheus, &substitute(&expr), span) {
                Ok(0) => failures.push(format!("{what}: no data for {expr}")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{what}: {e} for {expr}")),
            }
        }
    }
    let rules = api(prometheus, "/api/v1/rules", &[]).expect("the rules API");
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let what = format!("rule {} ({})", rule["name"], group["name"]);
            let expr = rule["query"].as_str().unwrap();
            checked += 1;
            if rule["health"] != "ok" {
                failures.push(format!("{what}: health {} {}", rule["health"], rule["lastError"]));
            }
            // A record returns data; an alert's condition holds only while it fires, so
            // each series it reads must return data.
            let parts = if rule["type"] == "recording" { vec![expr.to_string()] } else { selectors(expr) };
            if let Err(e) = range(prometheus, expr, span) {
                failures.push(format!("{what}: {e}"));
            }
            for part in parts {
                match range(prometheus, &part, span) {
                    Ok(0) => failures.push(format!("{what}: no data for {part}")),
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{what}: {e} for {part}")),
                }
            }
        }
    }
    // Data, and the right data: the GPU panels' join names the services whose pods hold
    // the GPUs (not only idle or unattributed GPUs).
    let served = r#"count by (service) (slo_gpu_workload_info{service!="", pod!=""})"#;
    if !matches!(range(prometheus, served, span), Ok(n) if n >= 1) {
        failures.push(format!("no GPU attributed to a service: {served}"));
    }
    eprintln!("{checked} dashboard queries and rules checked against Prometheus, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rule_selectors_are_the_series_an_alert_reads() {
    let expr = "(\n  max(slo:sli_error:ratio_rate56m{sloth_id=\"a\", sloth_slo=\"b\"} > (14.4 * 0.01)) without (sloth_window)\n  \
                and on(sloth_id, sloth_slo) slo_regression_active == 1\n)";
    assert_eq!(
        selectors(expr),
        ["slo:sli_error:ratio_rate56m{sloth_id=\"a\", sloth_slo=\"b\"}", "slo_regression_active"],
        "label lists of without/on are not series"
    );
}
