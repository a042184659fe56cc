//! Nothing acknowledged is lost: `kill -9` during sustained load, restart, count.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;

use crate::support::{FAST_CONFIG, Server, export_request, post_ok, slo};

const SPANS_PER_EXPORT: usize = 50;

/// [`FAST_CONFIG`] with assembly waiting minutes (every trace stays in flight) and a flush
/// every second.
fn holding_traces() -> String {
    FAST_CONFIG
        .replace("idle_ms: 300", "idle_ms: 60000")
        .replace("max_wait_ms: 2000", "max_wait_ms: 120000")
        .replace("flush_interval_s: 2", "flush_interval_s: 1")
}

/// `config` with `n` ingest shards.
fn sharded(config: &str, n: usize) -> String {
    config.replace("collector:\n", &format!("collector:\n  ingest:\n    shards: {n}\n"))
}

/// `config` with tail sampling keeping every span (`keep_share: 1`).
fn keeping_all(config: &str) -> String {
    config.replace("collector:\n", "collector:\n  sampling:\n    keep_share: 1\n")
}

/// Waits (20 s at most) for a flush that left traces in flight; its manifest.
async fn flushed_with_traces_in_flight(data: &std::path::Path) -> serde_json::Value {
    let manifest = || -> serde_json::Value {
        std::fs::read(data.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = manifest();
        if m["state_file"].is_string() && m["wal_checkpoint"].as_u64() >= Some(1) {
            return m;
        }
        assert!(Instant::now() < deadline, "no flush with traces in flight: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9_during_load() {
    kill_9_during_load(1).await;
}

/// Three shards, each its own WAL and checkpoint, a flush gathered from all three: the
/// same promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9_during_load_with_three_shards() {
    kill_9_during_load(3).await;
}

async fn kill_9_during_load(shards: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Flush every second, so some acknowledged spans are in segments and some only in the
    // WAL. Every trace's spans are stored (no tail sampling), so every one can be checked.
    let config = sharded(&keeping_all(&FAST_CONFIG.replace("flush_interval_s: 2", "flush_interval_s: 1")), shards);
    let d = data.clone();
    let c = config.clone();
    let server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
    let url = format!("{}/v1/traces", server.http);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let stop_at = Instant::now() + Duration::from_secs(10);
    let mut senders = Vec::new();
    for worker in 0..4u64 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut k = 0u64;
            while Instant::now() < stop_at {
                k += 1;
                let seed = (worker + 1) << 32 | k;
                let body = export_request(seed, SPANS_PER_EXPORT).encode_to_vec();
                let sent = client.post(&url).header("content-type", "application/x-protobuf").body(body).send().await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().push(seed),
                    Ok(_) => {}
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let the load run, then kill -9 in the middle of it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut server = server;
    tokio::task::spawn_blocking(move || server.kill9()).await.unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked: Vec<u64> = acked.lock().clone();
    assert!(acked.len() > 20, "only {} exports acknowledged before the kill", acked.len());
    for k in 1..shards {
        assert!(data.join(format!("wal-{k}")).is_dir(), "shard {k} has its own WAL");
    }

    let server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    // Replayed traces are stored once assembled again (idle_ms after the restart).
    let mut lost: Vec<&u64>;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows =
            tokio::task::block_in_place(|| server.query("SELECT DISTINCT substr(trace_id, 1, 16) AS seed FROM spans"));
        let stored: HashSet<String> = rows.iter().map(|r| r["seed"].as_str().unwrap().to_string()).collect();
        lost = acked.iter().filter(|s| !stored.contains(&format!("{s:016x}"))).collect();
        if lost.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged exports lost, e.g. {:x?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let srv = &server;
    let (total, distinct) = tokio::task::block_in_place(|| {
        (srv.count("SELECT count(*) FROM spans"), srv.count("SELECT count(DISTINCT trace_id || span_id) FROM spans"))
    });
    assert_eq!(total, distinct, "replay duplicated spans");
    assert!(total >= (acked.len() * SPANS_PER_EXPORT) as i64);
    // Every span is its own trace here, so every stored span becomes one request row.
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_in_flight_at_shutdown_become_requests_after_restart() {
    in_flight_at_shutdown(1, 1).await;
}

/// Stopped with three shards holding traces in flight, started again with one: the old WAL
/// is replayed with three first, so nothing is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_fewer_shards_loses_and_repeats_nothing() {
    in_flight_at_shutdown(3, 1).await;
}

/// And from one shard to two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_more_shards_loses_and_repeats_nothing() {
    in_flight_at_shutdown(1, 2).await;
}

async fn in_flight_at_shutdown(before: usize, after: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Assembly waits a minute: at shutdown every trace is still in flight.
    let (d, c) = (data.clone(), sharded(&holding_traces(), before));
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
    post_ok(&server.http, export_request(77, 25).encode_to_vec()).await;
    let srv = &server;
    // Acknowledged, so in the WAL; but neither requests nor spans rows until each trace is
    // assembled (its spans are stored then, if tail sampling keeps it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM requests")), 0);
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM spans")), 0);
    assert!(tokio::task::block_in_place(|| server.stop()).success());

    // The spans are in the WAL; the assembler's state file says where each trace begins.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["state_file"].is_string(), "{manifest}");
    assert_eq!(manifest["wal_shards"].as_array().map_or(0, Vec::len), before - 1, "{manifest}");
    let config = sharded(FAST_CONFIG, after);
    let d = data.clone();
    let server = tokio::task::spawn_blocking(move || Server::start_in(&d, &config)).await.unwrap();
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 25));
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", 25));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM spans")), 25, "no span duplicated");
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM requests")), 25, "no request twice");
    for k in after..before {
        assert!(!data.join(format!("wal-{k}")).exists(), "shard {k}'s WAL removed once replayed");
    }
}

/// A trace whose entry span was flushed while the trace waited, and whose child came after
/// the flush, is one request after `kill -9`: the flush kept the WAL segment holding the
/// entry span (rather than a copy of it), and the restart took the span back from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_split_by_a_flush_and_a_kill_9_is_assembled_whole() {
    split_by_a_flush_and_a_kill_9(1).await;
}

/// The same with two shards: each keeps the WAL segments its own traces in flight need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_split_by_a_flush_and_a_kill_9_is_assembled_whole_with_two_shards() {
    split_by_a_flush_and_a_kill_9(2).await;
}

async fn split_by_a_flush_and_a_kill_9(shards: usize) {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (d, c) = (data.clone(), sharded(&holding_traces(), shards));
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
    // Ten server spans without latency attributes: their split can only come from a child.
    let mut entries = export_request(93, 10);
    let mut children = entries.clone();
    for s in &mut entries.resource_spans[0].scope_spans[0].spans {
        s.attributes.retain(|a| !a.key.starts_with("gen_ai.latency."));
    }
    post_ok(&server.http, entries.encode_to_vec()).await;
    // Wait for a flush that leaves the ten traces in flight.
    let m = flushed_with_traces_in_flight(&data).await;
    let (keep_from, checkpoint) = (m["wal_keep_from"].as_u64().unwrap(), m["wal_checkpoint"].as_u64().unwrap());
    assert!(keep_from <= checkpoint, "the entry spans' segment is kept: {m}");
    assert!(data.join(format!("wal/{keep_from:020}.wal")).exists(), "{m}");
    for s in &mut children.resource_spans[0].scope_spans[0].spans {
        let parent = s.span_id.clone();
        *s = Span {
            trace_id: s.trace_id.clone(),
            span_id: [parent.as_slice(), b"q"].concat()[1..].to_vec(),
            parent_span_id: parent,
            name: "queue wait".into(),
            kind: 1,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.start_time_unix_nano + 30_000_000,
            ..Default::default()
        };
    }
    post_ok(&server.http, children.encode_to_vec()).await;
    tokio::task::block_in_place(|| server.kill9());

    let config = sharded(FAST_CONFIG, shards);
    let server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 10));
    let rows = tokio::task::block_in_place(|| {
        srv.query("SELECT split_source, count(*) n, min(queue_ms) q FROM requests GROUP BY split_source")
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["split_source"], "child_spans", "{rows:?}");
    assert_eq!(rows[0]["q"].as_f64(), Some(30.0), "{rows:?}");
    // Past max_wait: nothing else turns into a request, and no span came back twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM requests")), 10);
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM spans")), 20);
}

/// A collector that keeps every span (`keep_share: 1`) stores each span's row as it
/// receives it, so the spans of traces in flight at a flush are in the segments already:
/// `slo query --data-dir` over its directory (after `kill -9`, the WAL still holding them)
/// counts each span once, not once from the segments and again from the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_query_of_a_keep_all_directory_counts_each_span_once() {
    read_only_query_after_kill_9(1).await;
}

/// The same over a directory of three WAL shards: each shard's WAL and state are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_query_of_three_shards_counts_each_span_once() {
    read_only_query_after_kill_9(3).await;
}

async fn read_only_query_after_kill_9(shards: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (d, c) = (data.clone(), sharded(&keeping_all(&holding_traces()), shards));
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
    post_ok(&server.http, export_request(51, 12).encode_to_vec()).await;
    // A flush that leaves the twelve traces in flight, their spans in its segments.
    let m = flushed_with_traces_in_flight(&data).await;
    assert!(m["files"].as_array().is_some_and(|f| !f.is_empty()), "{m}");
    // Newer spans after the flush, in the WAL only.
    post_ok(&server.http, export_request(52, 5).encode_to_vec()).await;
    tokio::task::block_in_place(|| server.kill9());
    let dir = data.to_str().unwrap();
    let out = slo(&["query", "--data-dir", dir, "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "n\n17", "each span once");
    let out = slo(&["query", "--data-dir", dir, "--format", "csv", "SELECT count(*) AS n FROM requests"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "n\n17", "every trace shown whole");
}

/// A restart with `keep_share` changed to or from 1 stores each span of the traces in
/// flight at the last flush once: a collector keeping every span stored them as received
/// (the state file says so, and a sampling successor leaves them out), and one sampling
/// did not (a successor keeping every span stores them when their traces are emitted).
/// Few traces are all low-traffic ones, which sampling keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_changes_keep_share_stores_each_span_once() {
    let slow = holding_traces();
    for (before, after) in [(keeping_all(&slow), FAST_CONFIG.to_string()), (slow.clone(), keeping_all(FAST_CONFIG))] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let (d, c) = (data.clone(), before.clone());
        let mut server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
        post_ok(&server.http, export_request(61, 9).encode_to_vec()).await;
        flushed_with_traces_in_flight(&data).await;
        tokio::task::block_in_place(|| server.kill9());
        let (d, c) = (data.clone(), after.clone());
        let server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
        let srv = &server;
        tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 9));
        tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", 9));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM spans"));
        assert_eq!(
            n,
            9,
            "each span once, keep_share 1 {}",
            if before.contains("keep_share") { "before" } else { "after" }
        );
    }
}
