//! Overload sheds, never crashes: beyond the ingest budget, 429 with Retry-After (HTTP)
//! and UNAVAILABLE (gRPC), and the server keeps serving.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

use crate::support::{FAST_CONFIG, Server, export_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_queue_budget_exports_are_shed_with_a_retry_hint() {
    // A queue of 64 KiB holds one of these exports at a time. Every span is stored (no
    // tail sampling), so that what was acknowledged can be counted span for span.
    let config = FAST_CONFIG
        .replace("collector:\n", "collector:\n  ingest:\n    queue_bytes: 65536\n  sampling:\n    keep_share: 1\n");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    let url = format!("{}/v1/traces", server.http);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let body = export_request(1000 + i, 400).encode_to_vec();
            let r = client.post(&url).header("content-type", "application/x-protobuf").body(body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()),
                r.text().await.unwrap(),
            )
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                shed += 1;
                assert_eq!(retry.as_deref(), Some("1"), "429 without Retry-After");
                assert!(body.contains("queue full"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}: the budget did not shed");

    // gRPC sheds with UNAVAILABLE, which OTLP clients retry.
    let mut grpc = Vec::new();
    for i in 0..32u64 {
        let endpoint = server.grpc.clone();
        grpc.push(tokio::spawn(async move {
            let mut c = TraceServiceClient::connect(endpoint).await.unwrap();
            c.export(export_request(2000 + i, 400)).await.map(|_| ()).map_err(|s| s.code())
        }));
    }
    let codes: Vec<_> = futures_join(grpc).await;
    assert!(codes.iter().all(|c| matches!(c, Ok(()) | Err(tonic::Code::Unavailable))), "{codes:?}");
    assert!(codes.iter().any(|c| c.is_err()), "no gRPC export was shed: {codes:?}");

    // Still serving, and what was acknowledged is stored.
    assert!(tokio::task::block_in_place(|| server.alive()));
    let acked = ok + codes.iter().filter(|c| c.is_ok()).count() as i64;
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", acked * 400));
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
