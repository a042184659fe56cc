//! Bad input gets a clear error and costs nothing else (README, "Operating it").

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};
use prost::Message;

use crate::support::{FAST_CONFIG, Server, export_request};

fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue { value: Some(Value::StringValue("leaf".into())) };
    for _ in 0..depth {
        v = AnyValue { value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })) };
    }
    v
}

fn deep_request(depth: usize) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut req = export_request(99, 1);
    req.resource_spans[0].scope_spans[0].spans[0].attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(nested(depth)),
        ..Default::default()
    });
    req
}

async fn post(url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req =
        reqwest::Client::new().post(format!("{url}/v1/traces")).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    match req.send().await {
        Ok(r) => (r.status().as_u16(), String::from_utf8_lossy(&r.bytes().await.unwrap()).to_string()),
        Err(e) => (0, e.to_string()),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_payloads_get_clear_errors_and_cost_nothing() {
    let mut server = tokio::task::spawn_blocking(Server::start).await.unwrap();
    let url = server.http.clone();
    let good = export_request(1, 10).encode_to_vec();
    assert_eq!(post(&url, "application/x-protobuf", None, good.clone()).await.0, 200);

    let truncated = good[..good.len() / 2].to_vec();
    let json_deep = {
        let mut s = String::from(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"deep","value":"#,
        );
        s.push_str(&r#"{"arrayValue":{"values":["#.repeat(300));
        s.push_str(r#"{"stringValue":"x"}"#);
        s.push_str(&"]}}".repeat(300));
        s.push_str("}]}]}]}]}");
        s.into_bytes()
    };
    // (what, content type, content encoding, body, status, what the message must name)
    type Case = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            "garbage protobuf",
            "application/x-protobuf",
            None,
            b"\xff\xff\xff\xffnot a protobuf".to_vec(),
            400,
            "invalid OTLP protobuf",
        ),
        ("truncated protobuf", "application/x-protobuf", None, truncated, 400, "invalid OTLP protobuf"),
        ("garbage json", "application/json", None, b"{\"resourceSpans\": [".to_vec(), 400, "OTLP/JSON"),
        ("wrong content type", "text/plain", None, good.clone(), 415, "unsupported content type"),
        // Refused before it is read, and larger than the socket buffers: the client is still
        // sending when the answer is ready, and must get it, not a closed connection.
        ("wrong content type, 32 MB", "text/plain", None, vec![0x0a; 32 << 20], 415, "unsupported content type"),
        ("unknown encoding", "application/x-protobuf", Some("br"), good.clone(), 415, "content encoding"),
        ("gzip that is not", "application/x-protobuf", Some("gzip"), good.clone(), 400, "gzip"),
        ("gzip bomb", "application/x-protobuf", Some("gzip"), gzip(&vec![0u8; 200 << 20]), 413, "decompressed body"),
        ("100 MB body", "application/x-protobuf", None, vec![0x0a; 100 << 20], 413, "over the limit"),
        ("deeply nested protobuf", "application/x-protobuf", None, deep_request(200).encode_to_vec(), 400, "recursion"),
        ("deeply nested json", "application/json", None, json_deep, 400, "recursion"),
    ];
    for (what, ct, enc, body, status, needle) in cases {
        let (got, msg) = post(&url, ct, enc, body).await;
        assert_eq!(got, status, "{what}: {msg}");
        assert!(msg.contains(needle), "{what}: {msg:?} does not name the problem ({needle})");
        assert!(tokio::task::block_in_place(|| server.alive()), "server died on {what}");
    }

    // A partially bad export keeps the good spans and says what it rejected.
    let mut partial = export_request(2, 3);
    partial.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
    let (status, body) = post(&url, "application/json", None, serde_json::to_vec(&partial).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let resp: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedSpans"], "1", "{body}");
    assert!(resp["partialSuccess"]["errorMessage"].as_str().unwrap().contains("spans[1]: trace_id"), "{body}");

    // Moderately nested attributes is fine: cut at the depth limit, stored.
    assert_eq!(post(&url, "application/x-protobuf", None, deep_request(30).encode_to_vec()).await.0, 200);

    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", 10 + 2 + 1));
    let cut = tokio::task::block_in_place(|| {
        srv.query("SELECT attributes['deep'] AS v FROM spans WHERE attributes['deep'] IS NOT NULL")
    });
    assert_eq!(cut[0]["v"], format!("{}\"…\"{}", "[".repeat(8), "]".repeat(8)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_payloads_get_the_right_codes() {
    let config = FAST_CONFIG.replace("collector:\n", "collector:\n  otlp:\n    max_decompressed_bytes: 1048576\n");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = tokio::task::spawn_blocking(move || Server::start_in(&data, &config)).await.unwrap();
    let mut client = TraceServiceClient::connect(server.grpc.clone()).await.unwrap();

    let ok = client.export(export_request(3, 5)).await.unwrap().into_inner();
    assert!(ok.partial_success.is_none());

    let err = client.export(deep_request(200)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("decode"), "{err}");

    let mut big = export_request(4, 1);
    big.resource_spans[0].scope_spans[0].spans[0].attributes.push(KeyValue {
        key: "blob".into(),
        value: Some(AnyValue { value: Some(Value::StringValue("x".repeat(2 << 20))) }),
        ..Default::default()
    });
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");

    let mut partial = export_request(5, 2);
    partial.resource_spans[0].scope_spans[0].spans[0].span_id = vec![];
    let resp = client.export(partial).await.unwrap().into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("span_id"), "{}", ps.error_message);

    assert!(tokio::task::block_in_place(|| server.alive()));
    let srv = &server;
    tokio::task::block_in_place(|| srv.wait_count("SELECT count(*) FROM spans", 5 + 1));
}
