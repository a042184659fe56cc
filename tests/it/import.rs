//! `slo import` and `slo query --data-dir`.

use crate::support::slo;

const EXAMPLE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp/opentelemetry-proto_examples_trace.json");

#[test]
fn official_otlp_json_example_imports_with_16_byte_trace_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = slo(&["import", "--data-dir", data, EXAMPLE]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 span(s) stored"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = slo(&[
        "query",
        "--data-dir",
        data,
        "--format",
        "json",
        "SELECT trace_id, span_id, parent_span_id, kind, service, duration_ms, attributes['my.span.attr'] AS attr FROM spans",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(row["trace_id"].as_str().unwrap().len(), 32, "16 bytes");
    assert_eq!(row["span_id"], "eee19b7ec3c1b174");
    assert_eq!(row["parent_span_id"], "eee19b7ec3c1b173");
    assert_eq!(row["kind"], "server");
    assert_eq!(row["service"], "my.service");
    assert_eq!(row["duration_ms"], 1000.0);
    assert_eq!(row["attr"], "some value");
    // Its server span has a remote parent: it is an entry span, so it is one request.
    let out = slo(&[
        "query",
        "--data-dir",
        data,
        "--format",
        "csv",
        "SELECT trace_id, split_source, duration_ms FROM requests",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "trace_id,split_source,duration_ms\n5b8efff798038103d269b633813fc60c,none,1000.0\n"
    );
}

#[test]
fn bad_files_and_bad_sql_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, "{\"resourceSpans\": [ {\"scopeSpans\": 7} ]}").unwrap();
    let out = slo(&["import", "--data-dir", data, EXAMPLE, bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json") && err.contains("line 1 column"), "{err}");
    // The good file before it was kept.
    let out = slo(&["query", "--data-dir", data, "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n1\n");
    let out = slo(&["query", "--data-dir", data, "SELECT no_such_column FROM requests"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_column"));
    let out = slo(&["query", "--data-dir", dir.path().join("nowhere").to_str().unwrap(), "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}
