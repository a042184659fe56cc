use std::time::Duration;

use slo_store::{RequestRow, requests_batch};
use slo_store::{Store, StoreConfig, StoreMetrics};

use super::*;
use crate::rollup::{MINUTE_NS, RollupDerive};

const T0: i64 = 1_763_900_040_000_000_000;

fn rows(from_s: i64, n: usize) -> Vec<RequestRow> {
    (0..n)
        .map(|i| {
            let t = T0 + (from_s + i as i64) * 1_000_000_000;
            RequestRow {
                time_unix_nano: t as u64,
                trace_id: format!("{t:032x}"),
                service: if i % 3 == 0 { "embedder".into() } else { "llama".into() },
                model: Some(if i % 5 == 0 { "m2".into() } else { "m1".into() }),
                status: if i % 17 == 0 { "error" } else { "ok" },
                duration_ms: 50.0 + (i * 37 % 1000) as f64,
                queue_ms: (i * 13 % 100) as f64,
                compute_ms: 40.0 + (i * 37 % 900) as f64,
                ttft_ms: (i % 4 != 0).then_some(20.0 + (i % 50) as f64),
                input_tokens: Some(100 + (i % 700) as i64),
                output_tokens: Some(10 + (i % 90) as i64),
                split_source: "none",
                ..Default::default()
            }
        })
        .collect()
}

fn open(dir: &std::path::Path) -> (Store, slo_store::Wal) {
    let mut cfg = StoreConfig::new(dir);
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.retention = None;
    cfg.derive = Some(std::sync::Arc::new(RollupDerive));
    let (store, wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
    (store, wal)
}

fn flush(store: &Store, wal: &mut slo_store::Wal) {
    store.flush_now(wal).unwrap();
}

#[tokio::test]
async fn persisted_rollups_equal_a_scan_of_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal) = open(dir.path());
    // Two flushes that share a minute, then rows still in memory.
    store.append(None, Some(requests_batch(&rows(0, 400)).unwrap()));
    flush(&store, &mut wal);
    store.append(None, Some(requests_batch(&rows(400, 500)).unwrap()));
    flush(&store, &mut wal);
    store.append(None, Some(requests_batch(&rows(900, 300)).unwrap()));
    let snap = store.snapshot();
    let rollup_files = snap.files().iter().filter(|f| f.table == ROLLUPS).count();
    assert_eq!(rollup_files, 2, "one rollup per flush");
    let src = Source::new(snap);
    let (from, to) = (T0 - MINUTE_NS, T0 + 30 * MINUTE_NS);
    for service in [None, Some("llama"), Some("embedder")] {
        let persisted = src.rollups(service, from, to).await.unwrap();
        let scanned = src.rollups_by_scan(service, from, to).await.unwrap();
        assert!(!persisted.is_empty());
        assert_eq!(persisted, scanned, "{service:?}");
    }
    // A narrower window: whole minutes only.
    let (a, b) = (T0 + 5 * MINUTE_NS, T0 + 12 * MINUTE_NS);
    assert_eq!(
        src.rollups(Some("llama"), a, b).await.unwrap(),
        src.rollups_by_scan(Some("llama"), a, b).await.unwrap()
    );
}

#[tokio::test]
async fn a_lost_or_corrupt_rollup_is_rebuilt_from_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal) = open(dir.path());
    store.append(None, Some(requests_batch(&rows(0, 600)).unwrap()));
    flush(&store, &mut wal);
    store.append(None, Some(requests_batch(&rows(600, 600)).unwrap()));
    flush(&store, &mut wal);
    let snap = store.snapshot();
    let files: Vec<_> = snap.files().iter().filter(|f| f.table == ROLLUPS).cloned().collect();
    std::fs::write(dir.path().join(&files[0].path), b"SLOROLL1 garbage").unwrap();
    let src = Source::new(snap);
    let (from, to) = (T0 - MINUTE_NS, T0 + 30 * MINUTE_NS);
    assert_eq!(src.rollups(None, from, to).await.unwrap(), src.rollups_by_scan(None, from, to).await.unwrap());
}

/// A bucket (a directory as the object store) where collectors `c1` and `c2` each uploaded
/// `flushes` flushes of 500 requests (c2's 5 minutes after c1's), and their data dirs.
async fn two_collectors_uploaded(flushes: usize) -> (tempfile::TempDir, slo_store::Remote, Vec<tempfile::TempDir>) {
    let bucket = tempfile::tempdir().unwrap();
    let root = slo_store::Remote::open(&slo_store::RemoteOptions {
        url: format!("file://{}/", bucket.path().display()),
        ..Default::default()
    })
    .unwrap();
    let mut dirs = Vec::new();
    for (name, from_s) in [("c1", 0), ("c2", 300)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.retention = None;
        cfg.derive = Some(std::sync::Arc::new(RollupDerive));
        cfg.remote = Some(root.child(name));
        let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
        for part in 0..flushes {
            store.append(None, Some(requests_batch(&rows(from_s + part as i64 * 600, 500)).unwrap()));
            flush(&store, &mut wal);
        }
        let uploaded = store.upload_round().await.unwrap().uploaded;
        assert_eq!(uploaded as usize, 2 * flushes, "{name}: a segment and a rollup a flush");
        dirs.push(dir);
    }
    (bucket, root, dirs)
}

/// Two collectors in one bucket repeat each other's flush ids: a corrupt rollup of one is
/// rebuilt from that collector's own requests (read from the object store), not taken as
/// covered by the other's rollup of the same id.
#[tokio::test]
async fn rollups_over_a_bucket_of_two_collectors_equal_a_scan() {
    let (bucket, root, _dirs) = two_collectors_uploaded(2).await;
    let c2_first_rollup = bucket.path().join("c2/rollups/000000000001.bin");
    assert!(c2_first_rollup.exists());
    std::fs::write(&c2_first_rollup, b"SLOROLL1 garbage").unwrap();
    let (store, _) = Store::open_bucket(root).await.unwrap();
    let src = Source::new(store.snapshot());
    let (from, to) = (T0 - MINUTE_NS, T0 + 40 * MINUTE_NS);
    let rolled = src.rollups(None, from, to).await.unwrap();
    assert_eq!(rolled, src.rollups_by_scan(None, from, to).await.unwrap());
    assert!(!rolled.is_empty());
}

#[tokio::test]
async fn request_detail_reads_flushed_and_unflushed_rows_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal) = open(dir.path());
    let named = |from_s, n| {
        let mut rs = rows(from_s, n);
        for (i, r) in rs.iter_mut().enumerate() {
            r.pod = Some(format!("llama-{}", i % 4));
            r.node = Some(format!("gpu-{}", i % 2));
            r.namespace = Some("inference".into());
        }
        rs
    };
    // Rows from a flushed segment and rows still in memory.
    store.append(None, Some(requests_batch(&named(0, 300)).unwrap()));
    flush(&store, &mut wal);
    store.append(None, Some(requests_batch(&named(300, 300)).unwrap()));
    let src = Source::new(store.snapshot());
    let got = src.requests("llama", T0, T0 + 10 * MINUTE_NS).await.unwrap();
    let want: Vec<RequestRow> =
        named(0, 300).into_iter().chain(named(300, 300)).filter(|r| r.service == "llama").collect();
    assert_eq!(got.len(), want.len());
    assert!(got.windows(2).all(|w| w[0].time <= w[1].time), "oldest first");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.time, w.time_unix_nano as i64);
        assert_eq!(Some(&*g.pod), w.pod.as_deref());
        assert_eq!(Some(&*g.node), w.node.as_deref());
        assert_eq!(&*g.namespace, "inference");
        assert_eq!(&*g.deployment, "", "absent is empty");
        assert_eq!(g.duration, w.duration_ms);
        assert_eq!(g.error, w.status == "error");
    }
}

/// One collector's `manifest.json` that does not decode costs only that collector: a new
/// reader names it and reads the other; a reader that had read it keeps its files.
#[tokio::test]
async fn a_collector_whose_manifest_is_unreadable_costs_only_itself() {
    let (bucket, root, _dirs) = two_collectors_uploaded(1).await;
    let (from, to) = (T0 - MINUTE_NS, T0 + 40 * MINUTE_NS);
    let (reader, views) = Store::open_bucket(root.clone()).await.unwrap();
    assert!(views.iter().all(|v| v.problem.is_none()), "{views:?}");
    let both = Source::new(reader.snapshot()).rollups_by_scan(None, from, to).await.unwrap();

    std::fs::write(bucket.path().join("c2/manifest.json"), b"{ not json").unwrap();
    let (fresh, views) = Store::open_bucket(root.clone()).await.unwrap();
    let c2 = views.iter().find(|v| v.prefix == "c2").expect("c2 named");
    assert!(c2.problem.as_deref().is_some_and(|p| p.contains("manifest")), "{c2:?}");
    let said = slo_store::lagging(&views, 5 * MINUTE_NS);
    assert!(said.iter().any(|(v, s)| v.prefix == "c2" && s.contains("could not be read")), "{said:?}");
    let one = Source::new(fresh.snapshot()).rollups_by_scan(None, from, to).await.unwrap();
    assert!(!one.is_empty() && one != both, "c1's data alone");

    // The reader that had read c2 keeps its files through the refresh.
    let views = reader.refresh_bucket().await.unwrap();
    assert!(views.iter().any(|v| v.prefix == "c2" && v.problem.is_some()));
    assert_eq!(Source::new(reader.snapshot()).rollups_by_scan(None, from, to).await.unwrap(), both);

    // Every manifest unreadable: an error that says why.
    std::fs::write(bucket.path().join("c1/manifest.json"), b"{ not json").unwrap();
    let e = Store::open_bucket(root).await.unwrap_err().to_string();
    assert!(e.contains("could be read") && e.contains("c1") && e.contains("c2"), "{e}");
}

/// `flushes` flushes of 20 requests 30 s apart into `store`.
fn many_flushes(store: &Store, wal: &mut slo_store::Wal, flushes: usize) {
    for part in 0..flushes {
        store.append(None, Some(requests_batch(&rows(part as i64 * 30, 20)).unwrap()));
        flush(store, wal);
    }
}

fn rollup_paths(store: &Store) -> Vec<String> {
    store.snapshot().files().iter().filter(|f| f.table == ROLLUPS).map(|f| f.path.clone()).collect()
}

/// Compaction merges 60 flushes' rollups into one file that answers as they did; a part
/// that does not read or is missing is dropped (its requests stand in), and no run crosses it.
#[tokio::test]
async fn merged_rollups_answer_as_the_flushes_they_replace() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal) = open(dir.path());
    many_flushes(&store, &mut wal, 185);
    let (from, to) = (T0 - MINUTE_NS, T0 + 100 * MINUTE_NS);
    let before = Source::new(store.snapshot()).rollups(None, from, to).await.unwrap();
    assert_eq!(before, Source::new(store.snapshot()).rollups_by_scan(None, from, to).await.unwrap());
    std::fs::write(dir.path().join("rollups/000000000030.bin"), b"SLOROLL1 garbage").unwrap();
    std::fs::remove_file(dir.path().join("rollups/000000000100.bin")).unwrap();

    // 1-60 meets the corrupt 30 (dropped), 31-90 merges, 91-150 meets the missing 100
    // (dropped), 101-160 merges; 1-29, 91-99 and 161-185 stay as they are.
    // At time 0 no hour is over: rollup files merge, segments not.
    assert_eq!(store.compact_all(0).await.unwrap(), 122);
    let paths = rollup_paths(&store);
    assert_eq!(paths.len(), 2 + 29 + 9 + 25, "{paths:?}");
    for merged in ["rollups/000000000031-000000000090.bin", "rollups/000000000101-000000000160.bin"] {
        assert!(paths.contains(&merged.to_string()), "{paths:?}");
    }
    assert!(!paths.contains(&"rollups/000000000030.bin".to_string()));
    // The parts stay on disk for the queries that listed them, then go.
    assert!(dir.path().join("rollups/000000000031.bin").exists());
    store.delete_local_copies(Duration::ZERO);
    assert!(!dir.path().join("rollups/000000000031.bin").exists());
    assert_eq!(std::fs::read_dir(dir.path().join("rollups")).unwrap().count(), paths.len());

    for (a, b) in [(from, to), (T0 + 10 * MINUTE_NS, T0 + 70 * MINUTE_NS)] {
        let src = Source::new(store.snapshot());
        let merged = src.rollups(Some("llama"), a, b).await.unwrap();
        assert!(!merged.is_empty());
        assert_eq!(merged, src.rollups_by_scan(Some("llama"), a, b).await.unwrap());
    }
    assert_eq!(Source::new(store.snapshot()).rollups(None, from, to).await.unwrap(), before);
    drop((store, wal));
    let (store, _wal) = open(dir.path());
    assert_eq!(rollup_paths(&store).len(), 65, "nothing unlisted or lost across a restart");
    assert_eq!(Source::new(store.snapshot()).rollups(None, from, to).await.unwrap(), before);
}

/// Requests segments merged by hour (`slo-store`'s `compact_segments.rs`) answer the
/// rollups as before: covered by the rollup files, and, when a rollup file is lost after
/// the merge, from their requests, each flush once.
#[tokio::test]
async fn merged_requests_segments_keep_the_rollups_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal) = open(dir.path());
    // Flushes 1-92 start in one hour, 93-185 in the next.
    many_flushes(&store, &mut wal, 185);
    let (from, to) = (T0 - MINUTE_NS, T0 + 100 * MINUTE_NS);
    let scan = Source::new(store.snapshot()).rollups_by_scan(None, from, to).await.unwrap();
    std::fs::write(dir.path().join("rollups/000000000030.bin"), b"SLOROLL1 garbage").unwrap();
    store.compact_all(T0 + 1_000 * 60 * MINUTE_NS).await.unwrap();
    let mut merged: Vec<String> = store
        .snapshot()
        .files()
        .iter()
        .filter(|f| f.table == "requests")
        .map(|f| f.path.rsplit('/').next().unwrap().to_string())
        .filter(|name| name.contains('-'))
        .collect();
    merged.sort();
    // Each within one rollup file's flushes (30's was dropped, 31-90 and 91-150 merged).
    assert_eq!(
        merged,
        ["000000000031-000000000090.parquet", "000000000091-000000000092.parquet", "000000000093-000000000150.parquet"]
    );
    let src = Source::new(store.snapshot());
    assert_eq!(src.rollups(None, from, to).await.unwrap(), scan);
    assert_eq!(src.rollups_by_scan(None, from, to).await.unwrap(), scan);
    // A rollup file lost now uncovers whole merged segments, read from their requests.
    std::fs::write(dir.path().join("rollups/000000000091-000000000150.bin"), b"SLOROLL1 garbage").unwrap();
    let src = Source::new(store.snapshot());
    assert_eq!(src.rollups(None, from, to).await.unwrap(), scan);
    for service in ["llama", "embedder"] {
        assert_eq!(
            src.rollups(Some(service), from, to).await.unwrap(),
            src.rollups_by_scan(Some(service), from, to).await.unwrap()
        );
    }
}

/// With an object store, a merged file goes up in the next round and its parts are
/// deleted there after the object store's manifest drops them; a reader of the bucket gets
/// the same rollups.
#[tokio::test]
async fn merged_rollups_replace_their_parts_in_the_object_store() {
    let bucket = tempfile::tempdir().unwrap();
    let root = slo_store::Remote::open(&slo_store::RemoteOptions {
        url: format!("file://{}/", bucket.path().display()),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.retention = None;
    cfg.derive = Some(std::sync::Arc::new(RollupDerive));
    cfg.remote = Some(root.child("c1"));
    cfg.remote_read_grace = std::time::Duration::ZERO;
    let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
    many_flushes(&store, &mut wal, 61);
    assert_eq!(store.upload_round().await.unwrap().uploaded, 122);
    let (from, to) = (T0 - MINUTE_NS, T0 + 40 * MINUTE_NS);
    let (reader, _) = Store::open_bucket(root.clone()).await.unwrap();
    let before = Source::new(reader.snapshot()).rollups(None, from, to).await.unwrap();

    assert_eq!(store.compact_derived().await.unwrap(), 60);
    // The merged file goes up and the bucket's manifest drops the parts; they are deleted
    // there at the next round after the remote read grace (zero here).
    let round = store.upload_round().await.unwrap();
    assert_eq!((round.uploaded, round.deleted), (1, 0));
    let round = store.upload_round().await.unwrap();
    assert_eq!((round.uploaded, round.deleted), (0, 60));
    let mut in_bucket: Vec<_> = std::fs::read_dir(bucket.path().join("c1/rollups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    in_bucket.sort();
    assert_eq!(in_bucket, ["000000000001-000000000060.bin", "000000000061.bin"]);

    let (reader, _) = Store::open_bucket(root).await.unwrap();
    let src = Source::new(reader.snapshot());
    let after = src.rollups(None, from, to).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after, src.rollups_by_scan(None, from, to).await.unwrap());
}

#[test]
fn covered_flushes_are_found_in_sorted_ranges() {
    let mut c = Covered::default();
    for (prefix, range) in [("", (61, 61)), ("", (1, 60)), ("c2", (5, 5)), ("", (70, 129))] {
        c.add((prefix.to_string(), range));
    }
    let c = c.sorted();
    let has = |prefix: &str, id| c.has(&(prefix.to_string(), (id, id)));
    assert!(has("", 1) && has("", 60) && has("", 61) && has("", 70) && has("", 129));
    assert!(!has("", 0) && !has("", 62) && !has("", 69) && !has("", 130));
    assert!(has("c2", 5) && !has("c2", 4) && !has("c2", 6) && !has("c3", 5));
}

#[test]
fn a_change_stored_by_two_collectors_is_read_once() {
    let change = |object: &str, event_key: Option<&str>| Change {
        time: T0,
        kind: "scale_down".into(),
        namespace: "ml".into(),
        object: object.into(),
        from: "6".into(),
        to: "2".into(),
        reason: "SuccessfulRescale".into(),
        message: String::new(),
        attributes: event_key.map(|k| ("event_key".to_string(), k.to_string())).into_iter().collect(),
    };
    let changes = vec![
        change("hpa/a", Some("event/u1/1")),
        change("hpa/a", Some("event/u1/1")),
        change("hpa/a", None),
        change("deployment/b", None),
        change("deployment/c", None),
        change("deployment/d", None),
    ];
    let keys = ["hpa/u/6->2", "hpa/u/6->2", "event/u1/1", "rollout/b", "", ""].map(String::from).to_vec();
    let kept = once_per_key(changes.clone(), keys);
    // The second copy of the HPA change and the Event it merged are left out; keyless rows stay.
    assert_eq!(kept, vec![changes[0].clone(), changes[3].clone(), changes[4].clone(), changes[5].clone()]);
}

#[test]
fn of_two_copies_of_a_change_the_one_that_continues_the_object_is_read() {
    let change = |time: i64, from: &str, to: &str| Change {
        time,
        kind: "scale_up".into(),
        namespace: "ml".into(),
        object: "hpa/llama-70b".into(),
        from: from.into(),
        to: to.into(),
        reason: "SuccessfulRescale".into(),
        message: format!("replicas {from} -> {to}"),
        attributes: BTreeMap::new(),
    };
    // The stalled holder stored 6 -> 11 and 11 -> 12; the next, from the baseline it was
    // handed (6), computed 6 -> 12: same rescale, same key. Query order puts "11" first,
    // then "6", by `from`.
    let changes = vec![change(T0, "6", "11"), change(T0 + 30, "11", "12"), change(T0 + 30, "6", "12")];
    let keys = ["hpa/u/->11@1", "hpa/u/->12@2", "hpa/u/->12@2"].map(String::from).to_vec();
    assert_eq!(once_per_key(changes.clone(), keys), vec![changes[0].clone(), changes[1].clone()]);
    // Where neither continues the object (nothing before it read), the first; where the
    // later copy does, that one.
    let keys = ["hpa/u/->12@2", "hpa/u/->12@2"].map(String::from).to_vec();
    let (a, b) = (change(T0 + 30, "6", "12"), change(T0 + 30, "11", "12"));
    assert_eq!(once_per_key(vec![a.clone(), b.clone()], keys), vec![a.clone()]);
    let before = change(T0, "2", "6");
    let keys = ["hpa/u/->6@0", "hpa/u/->12@2", "hpa/u/->12@2"].map(String::from).to_vec();
    assert_eq!(once_per_key(vec![before.clone(), b, a.clone()], keys), vec![before, a]);
}
