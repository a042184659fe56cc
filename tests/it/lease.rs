//! The Kubernetes watch elected through a Lease (`kubernetes.lease`) among two collectors
//! writing one bucket (moto's S3 server) and watching the simulator's API: one holds the
//! Lease and watches; killed with -9, the other takes the watch over within the lease
//! duration, from the baseline the first uploaded; back, the first waits. Every change is
//! in the bucket once, and each injected one is there. Stopped with SIGTERM, a holder
//! gives the Lease up and the other takes it at once. Stalled (SIGSTOP) past the Lease,
//! a holder loses the watch to the other; a change both stored has one key, and a query
//! node over the bucket shows it once.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kube::{assert_each_injected_change, fact_of, start_sim};
use crate::object_store::{QueryNode, S3, aws_env, metric, slo_with, wait_until};
use crate::support::{Launch, Server, http_get};

const BUCKET: &str = "s3://slo/fleet";

fn config(name: &str) -> String {
    format!(
        "collector:\n  assembly:\n    idle_ms: 300\n    max_wait_ms: 2000\nstore:\n  flush_interval_s: 1\n  \
         retention_hours: 0\n  collector: {name}\n  object_store:\n    url: {BUCKET}\nshutdown_grace_s: 10\n\
         query_timeout_s: 3\nscrape:\n  interval_s: 1\nkubernetes:\n  lease:\n    duration_s: 4\n    \
         renew_deadline_s: 3\n    retry_s: 0.5\n"
    )
}

/// `rows` with each key once (the first row of it), after checking that no fact (kind,
/// object, time) is there under two keys.
fn one_key_per_fact(rows: &[Value]) -> Vec<Value> {
    let mut keys = std::collections::BTreeMap::new();
    let mut once = Vec::new();
    for r in rows {
        let fact = fact_of(r);
        let key = r["key"].as_str().unwrap();
        let first = keys.entry(fact.clone()).or_insert_with(|| key.to_string());
        assert_eq!(first, key, "{fact} under two keys: {rows:#?}");
        if !once.iter().any(|o: &Value| o["key"] == r["key"]) {
            once.push(r.clone());
        }
    }
    once
}

fn leader(s: &Server) -> bool {
    metric(s, "slo_kube_leader") == 1.0
}

#[test]
fn the_watch_moves_to_the_other_collector_when_its_holder_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s3 = S3::start(port);
    s3.create_bucket("slo");
    let env = aws_env(&format!("http://127.0.0.1:{port}"));
    let changes = |sql: &str| -> Vec<Value> {
        let out = slo_with(&env, &["query", "--bucket", BUCKET, "--format", "json", sql]);
        if !out.status.success() {
            return Vec::new(); // nothing uploaded yet
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let has = |kind: &str, object: &str| {
        let sql = format!("SELECT count(*) AS n FROM changes WHERE kind = '{kind}' AND object LIKE '{object}%'");
        changes(&sql).first().and_then(|r| r["n"].as_i64()).unwrap_or(0) > 0
    };

    let (sim, truth_path) = start_sim(tmp.path());
    let kubeconfig = sim.kubeconfig.to_str().unwrap().to_string();
    let launch = |name: &str| {
        let extra = ["--kubeconfig", kubeconfig.as_str()];
        Server::launch(
            &tmp.path().join(name),
            &config(name),
            Launch { env: env.clone(), extra: &extra, ..Default::default() },
        )
    };
    let mut servers = vec![launch("c1"), launch("c2")];

    // One holds the Lease, and only one.
    wait_until(Duration::from_secs(20), "a collector holding the Lease", || servers.iter().any(leader));
    std::thread::sleep(Duration::from_secs(2));
    let holding: Vec<usize> = (0..2).filter(|&i| leader(&servers[i])).collect();
    assert_eq!(holding.len(), 1, "exactly one holder");
    let (holder, other) = (holding[0], 1 - holding[0]);

    // The rollout is in the bucket; the holder dies before the HPA scale-down.
    wait_until(Duration::from_secs(60), "the embedder rollout uploaded", || has("deploy", "deployment/embedder"));
    servers[holder].kill9();
    let killed = Instant::now();
    wait_until(Duration::from_secs(20), "the other collector holding the Lease", || leader(&servers[other]));
    // Lease duration 4 s + one retry 0.5 s, and the time to see it: well under 10 s.
    assert!(killed.elapsed() < Duration::from_secs(10), "took over after {:?}", killed.elapsed());
    // It continues from the baseline the dead holder uploaded, not from a fresh list (the
    // term is counted once the bucket's baseline and keys are read).
    let handed_over = "slo_kube_terms_total{baseline=\"handed_over\"}";
    wait_until(Duration::from_secs(10), "the term begun from the handed-over baseline", || {
        metric(&servers[other], handed_over) == 1.0
    });
    assert_eq!(metric(&servers[other], "slo_kube_terms_total{baseline=\"fresh\"}"), 0.0);

    // Back on its data directory, the first collector waits: the Lease is held.
    let name = |i: usize| if i == 0 { "c1" } else { "c2" };
    servers[holder] = launch(name(holder));
    assert!(!leader(&servers[holder]) && leader(&servers[other]), "the Lease stays with the new holder");

    // The holder stalls (SIGSTOP) just after it stored an HPA rescale, likely before that
    // went up (uploads run every second), for longer than the Lease lasts. The restarted
    // collector takes the watch over from the baseline the stalled one last uploaded, which
    // can be older than that rescale, and then computes it again from another `from`.
    // Resumed, the stalled one finds the Lease lost and stops watching; what it stored goes
    // up too. A rescale both stored has one key, and a query node reads it once (below).
    let rescales = "SELECT count(*) FROM changes WHERE object LIKE 'hpa/%'";
    let before = servers[other].count(rescales);
    wait_until(Duration::from_secs(30), "a new rescale stored by the holder", || {
        servers[other].count(rescales) > before
    });
    servers[other].signal("STOP");
    let stalled = Instant::now();
    wait_until(Duration::from_secs(20), "the restarted collector holding the Lease", || leader(&servers[holder]));
    assert!(stalled.elapsed() < Duration::from_secs(10), "took over after {:?}", stalled.elapsed());
    wait_until(Duration::from_secs(10), "its term begun from the handed-over baseline", || {
        metric(&servers[holder], handed_over) == 1.0
    });
    servers[other].signal("CONT");
    wait_until(Duration::from_secs(20), "the resumed collector watching no more", || !leader(&servers[other]));
    // The restarted collector holds the Lease now.
    let (holder, other) = (other, holder);
    wait_until(Duration::from_secs(60), "the node loss uploaded", || has("node_lost", "node/gpu-h100-2"));
    assert!(!leader(&servers[holder]) && leader(&servers[other]), "the Lease stays with the new holder");
    wait_until(Duration::from_secs(60), "the OOM kill uploaded", || has("oom_kill", "pod/llama-70b"));

    // A holder that stops cleanly gives the Lease up after its last upload: the other takes
    // it at its next try (0.5 s here), not a lease duration later, from the stopped one's
    // final baseline (its second term begun from a handed-over baseline).
    // (Timed from its exit: its shutdown, slow or not on a loaded machine, renews nothing,
    // so without the release the Lease would last 4 s from the shutdown's start.)
    assert!(servers[other].stop().success());
    let exited = Instant::now();
    wait_until(Duration::from_secs(10), "the resumed collector holding the Lease", || leader(&servers[holder]));
    assert!(exited.elapsed() < Duration::from_millis(2500), "took over {:?} after the exit", exited.elapsed());
    wait_until(Duration::from_secs(10), "its term begun from the handed-over baseline", || {
        metric(&servers[holder], handed_over) == 2.0
    });
    servers[other] = launch(name(other));

    sim.wait(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(7));
    let all =
        "SELECT kind, object, \"from\", \"to\", reason, key, CAST(time AS BIGINT) AS t FROM changes ORDER BY time, key";
    let rows = changes(all);
    assert!(!rows.is_empty());

    // No fact under two keys in the bucket (one key may be there twice: stored by the
    // stalled holder and by the next), and every injected change there.
    let once = one_key_per_fact(&rows);
    assert_each_injected_change(&once, &truth_path);
    // The analyzer reads each key once: a query node's changes are those facts, each once.
    let node = QueryNode::over(BUCKET, tmp.path(), &env);
    let newest_s = rows.iter().filter_map(|r| r["t"].as_i64()).max().unwrap() / 1_000_000_000 + 60;
    let at = chrono::DateTime::from_timestamp(newest_s, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (code, body) = http_get(&format!("{}/api/v1/changes?at={at}&window=1h", node.web));
    assert_eq!(code, 200, "{body}");
    let served: Value = serde_json::from_str(&body).unwrap();
    // Its rows as the bucket's, for the same checks.
    let served: Vec<Value> = served["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut r = c.clone();
            r["t"] = (c["t_ms"].as_i64().unwrap() * 1_000_000).into();
            r
        })
        .collect();
    // (No key here: the new value tells an Event from the watch's record, as `fact_of` does.)
    let mut facts: Vec<String> =
        served.iter().map(|r| format!("{} {} {} -> {}", r["kind"], r["object"], r["t"], r["to"])).collect();
    facts.sort();
    let n = facts.len();
    facts.dedup();
    assert_eq!(facts.len(), n, "a change twice in the query node's changes: {served:#?}");
    assert_each_injected_change(&served, &truth_path);
    drop(node);
    // Each collector stored some: the watch did move.
    for s in &servers {
        assert!(s.count("SELECT count(*) FROM changes") > 0, "{}: no changes of its own", s.data_dir.display());
    }

    drop(servers);
    drop(s3);
}
