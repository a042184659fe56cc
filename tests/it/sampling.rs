//! Tail sampling of `spans` with the default settings, through a real server: every trace
//! gives its request row; slow and failed traces keep every span; of the rest a tenth is
//! kept, each span saying why and how many traces it stands for.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;

use crate::support::{FAST_CONFIG, Server, export_request, post_ok};

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn by(server: &Server) -> std::collections::HashMap<String, (i64, f64)> {
    server
        .query("SELECT sampled_by, count(*) AS n, sum(adjusted_count) AS w FROM spans GROUP BY sampled_by")
        .iter()
        .map(|r| (r["sampled_by"].as_str().unwrap().to_string(), (r["n"].as_i64().unwrap(), r["w"].as_f64().unwrap())))
        .collect()
}

/// A server with `shards` ingest shards that has taken [`traffic`], and its spans counted
/// by `sampled_by` (the server's data is in the returned directory).
async fn sampled(shards: usize) -> (tempfile::TempDir, Server, std::collections::HashMap<String, (i64, f64)>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = FAST_CONFIG.replace("collector:\n", &format!("collector:\n  ingest:\n    shards: {shards}\n"));
    let server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    traffic(&server).await;
    let srv = &server;
    let counts = tokio::task::block_in_place(|| by(srv));
    (tmp, server, counts)
}

/// What both sampling tests send, and waits until it is all requests.
async fn traffic(server: &Server) {
    // 1,000 ordinary requests (60 ms each) give the service its recent p99; until then
    // every trace is kept (`low_traffic`).
    for seed in 1..=4 {
        post_ok(&server.http, export_request(seed, 250).encode_to_vec()).await;
    }
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 1000));
    // Then 2,000 more: 20 ten times slower, 10 failed, the rest ordinary.
    for seed in 5..=12 {
        let mut export = export_request(seed, 250);
        for (i, s) in export.resource_spans[0].scope_spans[0].spans.iter_mut().enumerate() {
            if seed == 5 && i < 20 {
                s.start_time_unix_nano = s.end_time_unix_nano - 600_000_000;
            }
            if seed == 6 && i < 10 {
                s.status = Some(Status { code: 2, message: "boom".into() });
            }
        }
        post_ok(&server.http, export.encode_to_vec()).await;
    }
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 3000));
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_failed_traces_keep_their_spans_and_a_tenth_of_the_rest_is_sampled() {
    // One ingest shard: the counts below are exact for one sampler.
    let (_tmp, server, counts) = sampled(1).await;
    let srv = &server;
    assert_eq!(counts.get("low_traffic").map(|c| c.0), Some(1000), "{counts:?}");
    assert_eq!(counts.get("slow"), Some(&(20, 20.0)), "every slow trace: {counts:?}");
    assert_eq!(counts.get("error"), Some(&(10, 10.0)), "every failed trace: {counts:?}");
    let (share, weight) = counts["share"];
    // 1,970 ordinary traces at 10%: 197 expected, sd 13.
    assert!((140..=260).contains(&share), "{share} of 1,970 ordinary traces kept: {counts:?}");
    assert!((weight - share as f64 * 10.0).abs() < 1e-6, "each stands for ten: {counts:?}");
    let slow_ids = tokio::task::block_in_place(|| {
        srv.query("SELECT trace_id FROM requests WHERE duration_ms > 500 ORDER BY trace_id")
    });
    assert_eq!(slow_ids.len(), 20);

    // Late spans follow their trace: a child of a slow trace is stored, one of a trace
    // left out is not.
    let kept: std::collections::HashSet<String> = tokio::task::block_in_place(|| {
        srv.query("SELECT DISTINCT trace_id FROM spans")
            .iter()
            .map(|r| r["trace_id"].as_str().unwrap().to_string())
            .collect()
    });
    let export = export_request(7, 250);
    let spans = &export.resource_spans[0].scope_spans[0].spans;
    let dropped = spans.iter().find(|s| !kept.contains(&hex(&s.trace_id))).unwrap();
    let mut late = export_request(5, 1);
    let child = |parent: &Span, id: u8| Span {
        trace_id: parent.trace_id.clone(),
        span_id: vec![id; 8],
        parent_span_id: parent.span_id.clone(),
        name: "late child".into(),
        kind: 1,
        start_time_unix_nano: parent.start_time_unix_nano,
        end_time_unix_nano: parent.end_time_unix_nano,
        ..Default::default()
    };
    let slow_parent = late.resource_spans[0].scope_spans[0].spans[0].clone();
    late.resource_spans[0].scope_spans[0].spans = vec![child(&slow_parent, 0xaa), child(dropped, 0xbb)];
    post_ok(&server.http, late.encode_to_vec()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let late_rows =
        tokio::task::block_in_place(|| srv.query("SELECT trace_id, sampled_by FROM spans WHERE name = 'late child'"));
    assert_eq!(late_rows.len(), 1, "{late_rows:?}");
    assert_eq!(late_rows[0]["trace_id"], hex(&slow_parent.trace_id));
    assert_eq!(late_rows[0]["sampled_by"], "slow");
    // Every request row stays, and /metrics says what was left out.
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM requests")), 3000);
    let metrics = reqwest::get(format!("{}/metrics", server.web)).await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("slo_collector_spans_not_stored_total")).unwrap();
    let not_stored: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(not_stored as i64, 3000 - 1000 - 20 - 10 - share + 1, "{line}");
}

/// Two ingest shards, each with its own sampler judging its half of the requests: together
/// they keep the first 1,000 as `low_traffic` (each its first 500), every failed trace, and
/// every slow one (as `slow`, or as `low_traffic` where a shard had not yet seen its 500),
/// and about a tenth of the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_sample_as_one_collector_does() {
    let (_tmp, server, counts) = sampled(2).await;
    let srv = &server;
    assert_eq!(counts.get("low_traffic").map(|c| c.0), Some(1000), "{counts:?}");
    assert_eq!(counts.get("error"), Some(&(10, 10.0)), "every failed trace: {counts:?}");
    let slow_kept = tokio::task::block_in_place(|| {
        srv.count(
            "SELECT count(*) FROM spans s JOIN requests r ON s.trace_id = r.trace_id \
             WHERE r.duration_ms > 500 AND s.sampled_by IN ('slow', 'low_traffic')",
        )
    });
    assert_eq!(slow_kept, 20, "every slow trace kept: {counts:?}");
    let (share, _) = counts["share"];
    assert!((140..=260).contains(&share), "{share} of about 1,970 ordinary traces kept: {counts:?}");
}
