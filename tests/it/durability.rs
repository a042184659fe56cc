//! Nothing acknowledged is lost: `kill -9` during sustained load, restart, count.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;

use crate::support::{FAST_CONFIG, Server, export_request};

const SPANS_PER_EXPORT: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9_during_load() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Flush every second, so some acknowledged spans are in segments and some only in the WAL.
    let config = FAST_CONFIG.replace("flush_interval_s: 2", "flush_interval_s: 1");
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

    let server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    let rows =
        tokio::task::block_in_place(|| server.query("SELECT DISTINCT substr(trace_id, 1, 16) AS seed FROM spans"));
    let stored: HashSet<String> = rows.iter().map(|r| r["seed"].as_str().unwrap().to_string()).collect();
    let lost: Vec<&u64> = acked.iter().filter(|s| !stored.contains(&format!("{s:016x}"))).collect();
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
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Assembly waits a minute: at shutdown every trace is still in flight.
    let slow =
        FAST_CONFIG.replace("idle_ms: 300", "idle_ms: 60000").replace("max_wait_ms: 2000", "max_wait_ms: 120000");
    let (d, c) = (data.clone(), slow.clone());
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&d, &c)).await.unwrap();
    let body = export_request(77, 25).encode_to_vec();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/traces", server.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", 25));
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM requests")), 0);
    assert!(tokio::task::block_in_place(|| server.stop()).success());

    // The spans are in a segment; the assembler's state file holds the traces.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["state_file"].is_string(), "{manifest}");
    let server = tokio::task::spawn_blocking(move || Server::start_in(&data, FAST_CONFIG)).await.unwrap();
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM requests", 25));
    assert_eq!(tokio::task::block_in_place(|| srv.count("SELECT count(*) FROM spans")), 25, "no span duplicated");
}
