use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};

use super::*;
use crate::records::{ResourceSpans, SpanBatch, SpanRecord};
use crate::remote::{Remote, RemoteOptions};
use crate::rows::{RequestRow, requests_batch};
use crate::{StoreConfig, StoreMetrics};

const MINUTE: i64 = 60_000_000_000;
/// 2025-01-01 10:00 UTC.
const T0: i64 = 1_735_725_600_000_000_000;

fn requests(t: i64, n: i64) -> RecordBatch {
    let r = |i: i64| RequestRow {
        time_unix_nano: (t + i * 1_000_000) as u64,
        trace_id: format!("{:032x}", t + i),
        service: "vllm".into(),
        status: "ok",
        duration_ms: 10.0 + i as f64,
        split_source: "none",
        ..Default::default()
    };
    requests_batch(&(0..n).map(r).collect::<Vec<_>>()).unwrap()
}

/// One span at `t`; in the schema `spans` had before tail sampling when `old`.
fn spans(t: i64, old: bool) -> RecordBatch {
    let span = SpanRecord {
        trace_id: t.to_le_bytes().repeat(2),
        span_id: t.to_le_bytes().to_vec(),
        name: "llm_request".into(),
        kind: 2,
        start_unix_nano: t as u64,
        end_unix_nano: t as u64 + 1_000_000,
        ..Default::default()
    };
    let batch = SpanBatch {
        resources: vec![ResourceSpans { service: "vllm".into(), resource: vec![], spans: vec![span] }],
        ..Default::default()
    };
    let new = crate::rows::spans_batch([&batch]).unwrap();
    if !old {
        return new;
    }
    let keep: Vec<usize> = (0..new.num_columns())
        .filter(|&i| {
            ![schema::col::ADJUSTED_COUNT, schema::col::SAMPLED_BY].contains(&new.schema().field(i).name().as_str())
        })
        .collect();
    new.project(&keep).unwrap()
}

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.retention = None;
    cfg.read_grace = Duration::ZERO;
    cfg.flush_interval = Duration::from_secs(60);
    cfg
}

/// Six flushes into 10:00-11:00 (the first one's spans in the old schema), two into 11:00.
fn six_and_two(store: &Store, wal: &mut crate::Wal) {
    for i in 0..6 {
        let t = T0 + i * 5 * MINUTE;
        store.append(Some(spans(t, i == 0)), Some(requests(t, 10)));
        store.flush_now(wal).unwrap();
    }
    for i in 0..2 {
        let t = T0 + 65 * MINUTE + i * MINUTE;
        store.append(Some(spans(t, false)), Some(requests(t, 10)));
        store.flush_now(wal).unwrap();
    }
}

/// What the tables hold, as numbers a merge must keep.
async fn totals(store: &Store) -> Vec<(i64, f64, i64)> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*), sum(duration_ms), count(DISTINCT trace_id) FROM requests",
        "SELECT count(*), CAST(count(adjusted_count) AS DOUBLE), count(sampled_by) FROM spans",
    ] {
        let b = store.snapshot().sql(sql).await.unwrap();
        let b = &b[0];
        let n = b.column(0).as_primitive::<Int64Type>().value(0);
        let x = b.column(1).as_primitive::<Float64Type>().value(0);
        out.push((n, x, b.column(2).as_primitive::<Int64Type>().value(0)));
    }
    out
}

fn paths(store: &Store, table: &str) -> Vec<String> {
    let mut p: Vec<String> = store.manifest().files.into_iter().filter(|f| f.table == table).map(|f| f.path).collect();
    p.sort();
    p
}

/// An hour's segments become one file per table once the hour has settled, one row group
/// a part (so time statistics still prune by the minute); the rows, an older part's
/// schema included, read the same; the parts go after the read grace and nothing is left
/// unlisted across a restart.
#[tokio::test]
async fn an_hours_segments_become_one_file_that_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal, _) = Store::open(config(dir.path()), StoreMetrics::unregistered()).unwrap();
    six_and_two(&store, &mut wal);
    let before = totals(&store).await;
    assert_eq!(before[0].0, 80);
    assert_eq!((before[1].0, before[1].2), (8, 7), "the old part's spans read the new columns as null");

    // 11:00 is over, but not settled yet: nothing is due.
    let settled = (SETTLE + Duration::from_secs(120)).as_nanos() as i64;
    assert_eq!(store.compact_all(T0 + 60 * MINUTE + settled - 1).await.unwrap(), 0);
    assert_eq!(store.compact_all(T0 + 60 * MINUTE + settled).await.unwrap(), 12);
    let hour10 = "date=2025-01-01/hour=10";
    let requests_paths = paths(&store, REQUESTS);
    assert_eq!(
        requests_paths,
        [
            format!("requests/{hour10}/000000000001-000000000006.parquet"),
            "requests/date=2025-01-01/hour=11/000000000007.parquet".into(),
            "requests/date=2025-01-01/hour=11/000000000008.parquet".into(),
        ]
    );
    assert_eq!(paths(&store, "spans")[0], format!("spans/{hour10}/000000000001-000000000006.parquet"));
    assert_eq!(totals(&store).await, before);
    let merged = store.manifest().files.into_iter().find(|f| f.path == requests_paths[0]).unwrap();
    assert_eq!((merged.rows, merged.min_time, merged.max_time), (60, T0, T0 + 25 * MINUTE + 9_000_000));
    assert_eq!(store.metrics().compacted_segments.get(), 12);

    // One row group a part, each with its own time range.
    let file = std::fs::File::open(dir.path().join(&merged.path)).unwrap();
    let meta =
        parquet::file::reader::FileReader::metadata(&parquet::file::reader::SerializedFileReader::new(file).unwrap())
            .clone();
    assert_eq!(meta.num_row_groups(), 6);
    let time = meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == "time").unwrap();
    for (i, rg) in meta.row_groups().iter().enumerate() {
        let Some(parquet::file::statistics::Statistics::Int64(s)) = rg.column(time).statistics() else {
            panic!("row group {i} has no time statistics")
        };
        assert_eq!(*s.min_opt().unwrap(), T0 + i as i64 * 5 * MINUTE, "row group {i}");
    }
    // A query of five minutes reads its rows.
    let five = "SELECT count(*) FROM requests WHERE time >= '2025-01-01T10:10:00Z' AND time < '2025-01-01T10:15:00Z'";
    let got = store.snapshot().sql(five).await.unwrap();
    assert_eq!(got[0].column(0).as_primitive::<Int64Type>().value(0), 10);

    // The parts stay for the queries that listed them, then go.
    let part = dir.path().join(format!("requests/{hour10}/000000000003.parquet"));
    assert!(part.exists());
    store.delete_local_copies(Duration::ZERO);
    assert!(!part.exists());
    drop((store, wal));
    let (store, _wal, _) = Store::open(config(dir.path()), StoreMetrics::unregistered()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("requests").join(hour10)).unwrap().count(), 1);
    assert_eq!(totals(&store).await, before, "after a restart");
    // A merged file is not merged again; 11:00 merges once settled.
    assert_eq!(store.compact_all(T0 + 120 * MINUTE + settled).await.unwrap(), 4);
    assert_eq!(store.compact_all(T0 + 1_000 * MINUTE).await.unwrap(), 0);
    assert_eq!(paths(&store, REQUESTS).len(), 2);
    assert_eq!(totals(&store).await, before);
}

/// A part that does not read stays as it is and out of later runs; the others still merge.
#[tokio::test]
async fn a_part_that_does_not_read_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal, _) = Store::open(config(dir.path()), StoreMetrics::unregistered()).unwrap();
    six_and_two(&store, &mut wal);
    let bad = "requests/date=2025-01-01/hour=10/000000000002.parquet";
    std::fs::write(dir.path().join(bad), b"not parquet").unwrap();
    let later = T0 + 1_000 * MINUTE;
    assert_eq!(store.compact(later).await.unwrap(), 0, "the run with the bad part stops");
    assert!(store.unmergeable().contains(bad));
    let hour = std::fs::read_dir(dir.path().join("requests/date=2025-01-01/hour=10")).unwrap();
    let names: Vec<String> = hour.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names.len(), 6, "the merge that stopped left nothing behind: {names:?}");
    // 3-6 merge now, and nothing touched the bad part.
    store.compact_all(later).await.unwrap();
    let got = paths(&store, REQUESTS);
    assert!(
        got.contains(&bad.to_string()) && got.iter().any(|p| p.ends_with("000000000003-000000000006.parquet")),
        "{got:?}"
    );
    assert_eq!(std::fs::read(dir.path().join(bad)).unwrap(), b"not parquet");
}

fn file(table: &str, path: &str, max_time: i64) -> SegmentFile {
    SegmentFile {
        table: table.into(),
        path: path.into(),
        rows: 1,
        bytes: 1,
        min_time: max_time,
        max_time,
        uploaded: false,
    }
}

/// The runs `plan` makes of `m`, applied one after another as compaction would.
fn runs(mut m: Manifest, derived: Option<&str>, skip: &HashSet<String>, uploaded_ok: bool) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    while let Some(run) = plan(&m, derived, i64::MAX, skip, uploaded_ok) {
        let ids: Vec<u64> = run.parts.iter().map(|f| flush_range(&f.path).unwrap().0).collect();
        let (a, b) = (ids[0], *ids.last().unwrap());
        let gone: HashSet<&str> = run.parts.iter().map(|f| f.path.as_str()).collect();
        m.files.retain(|f| !gone.contains(f.path.as_str()));
        m.files.push(file(run.table, &format!("{}/h/{a:012}-{b:012}.parquet", run.table), 0));
        out.push(ids);
    }
    out
}

fn hour_of(ids: impl IntoIterator<Item = u64>, rollups: &[&str]) -> Manifest {
    let mut m = Manifest::default();
    for id in ids {
        m.files.push(file(REQUESTS, &format!("requests/h/{id:012}.parquet"), 0));
    }
    for r in rollups {
        m.files.push(file("rollups", &format!("rollups/{r}.bin"), 0));
    }
    m
}

/// A merged requests segment holds flushes of one rollup file, or of none: a reader's
/// coverage test of its first flush then holds for all of it.
#[test]
fn requests_merge_within_one_rollup_files_flushes() {
    let none = HashSet::new();
    // Without rollups: the hour at once.
    assert_eq!(runs(hour_of(1..=6, &[]), None, &none, false), [vec![1, 2, 3, 4, 5, 6]]);
    // Rollups not merged yet: each flush its own file, so nothing merges.
    let singles: Vec<String> = (1..=6).map(|id| format!("{id:012}")).collect();
    let singles: Vec<&str> = singles.iter().map(String::as_str).collect();
    assert!(runs(hour_of(1..=6, &singles), Some("rollups"), &none, false).is_empty());
    // 1-2 in one rollup file, 3 and 4 in none (lost, or never derived), 5-6 in another
    // that also covers later flushes.
    let m = hour_of(1..=6, &["000000000001-000000000002", "000000000005-000000000064"]);
    assert_eq!(runs(m, Some("rollups"), &none, false), [vec![1, 2], vec![3, 4], vec![5, 6]]);
    // Other tables merge whatever the rollups.
    let mut m = hour_of([], &["000000000001", "000000000002"]);
    m.files.push(file("spans", "spans/h/000000000001.parquet", 0));
    m.files.push(file("spans", "spans/h/000000000002.parquet", 0));
    assert_eq!(runs(m, Some("rollups"), &none, false), [vec![1, 2]]);
}

#[test]
fn runs_stay_in_an_hour_settled_readable_and_small() {
    let none = HashSet::new();
    let mut m = hour_of(1..=3, &[]);
    m.files.push(file(REQUESTS, "requests/h2/000000000004.parquet", 0));
    m.files.push(file(REQUESTS, "requests/h2/000000000005.parquet", 0));
    assert_eq!(runs(m.clone(), None, &none, false), [vec![1, 2, 3], vec![4, 5]]);
    // A part that would not read ends a run.
    let skip: HashSet<String> = ["requests/h/000000000002.parquet".to_string()].into();
    assert_eq!(runs(hour_of(1..=5, &[]), None, &skip, false), [vec![3, 4, 5]]);
    // An hour not over before `closed_before` waits; the hour ending at it does not.
    let hour = |h: i64| file(REQUESTS, &format!("requests/x/{h:012}.parquet"), 5 * HOUR_NS + 1);
    let m = Manifest { files: vec![hour(1), hour(2)], ..Manifest::default() };
    assert_eq!(plan(&m, None, 6 * HOUR_NS - 1, &none, false), None);
    assert!(plan(&m, None, 6 * HOUR_NS, &none, false).is_some());
    // Files already uploaded merge only where there is an object store to delete them from.
    let mut up = hour_of(1..=3, &[]);
    up.files[0].uploaded = true;
    assert_eq!(runs(up.clone(), None, &none, false), [vec![2, 3]]);
    assert_eq!(runs(up, None, &none, true), [vec![1, 2, 3]]);
    // The size bound: two parts of 60 MiB fit, a third does not.
    let mut big = hour_of(1..=5, &[]);
    for f in &mut big.files {
        f.bytes = 60 << 20;
    }
    assert_eq!(runs(big, None, &none, false), [vec![1, 2], vec![3, 4]]);
    // An hour past the bound is cut in even pieces: 60 parts of 2.4 MB, two of 30.
    let mut hour = hour_of(1..=60, &[]);
    for f in &mut hour.files {
        f.bytes = 2_400_000;
    }
    let cut: Vec<usize> = runs(hour, None, &none, false).iter().map(Vec::len).collect();
    assert_eq!(cut, [30, 30]);
}

/// With an object store, the merged file is uploaded before the swap; the object store's
/// next manifest lists it and drops the parts in one write, and the parts are deleted
/// there after the remote read grace. A reader of the bucket counts the same rows at every
/// step.
#[tokio::test]
async fn with_an_object_store_the_merged_file_goes_up_before_its_parts_leave() {
    let objects = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(objects.path()).unwrap().to_string();
    let root = Remote::open(&RemoteOptions { url, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.remote = Some(root.child("c1"));
    cfg.collector = "c1".into();
    let grace = cfg.remote_read_grace;
    let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).unwrap();
    six_and_two(&store, &mut wal);
    assert_eq!(store.upload_round().await.unwrap().uploaded, 16);
    store.delete_local_copies(Duration::ZERO);
    let in_bucket = || async {
        let (reader, views) = Store::open_bucket(root.clone()).await.unwrap();
        (totals(&reader).await, views[0].files)
    };
    let (before, listed) = in_bucket().await;
    assert_eq!((before[0].0, listed), (80, 16));

    let now = T0 + 1_000 * MINUTE;
    let cached = store.config().remote.as_ref().unwrap().cached_bytes();
    assert_eq!(store.compact_all(now).await.unwrap(), 16);
    assert_eq!(
        store.config().remote.as_ref().unwrap().cached_bytes(),
        cached,
        "parts are read past the cache: they would push out the rollups"
    );
    let merged = store
        .manifest()
        .files
        .into_iter()
        .filter(|f| f.path.rsplit('/').next().is_some_and(|n| n.contains('-')))
        .collect::<Vec<_>>();
    assert_eq!(merged.len(), 4);
    assert!(merged.iter().all(|f| f.uploaded), "merged files are up before the swap");
    let c1 = root.child("c1");
    assert_eq!(c1.list().await.unwrap().len(), 16 + 4 + 1, "parts, merged files, manifest");
    assert_eq!(in_bucket().await, (before.clone(), 16), "the bucket's manifest still lists the parts");
    let round = store.upload_round().await.unwrap();
    assert_eq!((round.uploaded, round.deleted), (0, 0));
    assert_eq!(in_bucket().await, (before.clone(), 4), "one write swapped them");
    let later = crate::store::now_ns() + grace.as_nanos() as i64;
    assert_eq!(store.upload_round_at(later).await.unwrap().deleted, 16);
    assert_eq!(c1.list().await.unwrap().len(), 4 + 1);
    assert_eq!(in_bucket().await, (before, 4));
    assert_eq!(totals(&store).await, in_bucket().await.0);
}

/// `samples` and `changes` merge as `requests` and `spans` do: their rows, labels and
/// attributes included, read the same from the merged file.
#[tokio::test]
async fn samples_and_changes_merge_too() {
    use crate::records::{ChangeRecord, SampleRecord};
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal, _) = Store::open(config(dir.path()), StoreMetrics::unregistered()).unwrap();
    for i in 0..3i64 {
        let t = T0 + i * 10 * MINUTE;
        let sample = SampleRecord {
            time_unix_nano: t,
            metric: "DCGM_FI_DEV_GPU_UTIL".into(),
            value: 50.0 + i as f64,
            target: "http://dcgm:9400/metrics".into(),
            node: "gpu-1".into(),
            labels: vec![crate::records::Attr { key: "gpu".into(), value: i.to_string() }],
            ..Default::default()
        };
        let change = ChangeRecord {
            time_unix_nano: t,
            kind: "scale_down".into(),
            namespace: "ml".into(),
            object_kind: "HorizontalPodAutoscaler".into(),
            object: format!("hpa/llama-{i}"),
            key: format!("hpa/u/->{i}@{t}"),
            ..Default::default()
        };
        let batch = SpanBatch { samples: vec![sample], changes: vec![change], ..Default::default() };
        store.append_tables(crate::cluster_batches(&[&batch]).unwrap());
        store.flush_now(&mut wal).unwrap();
    }
    let read = |store: &Store| {
        let snap = store.snapshot();
        async move {
            let mut out = Vec::new();
            for sql in [
                "SELECT time, metric, value, node, labels['gpu'] AS gpu FROM samples ORDER BY time",
                "SELECT time, kind, object, key FROM changes ORDER BY time",
            ] {
                let b = snap.sql(sql).await.unwrap();
                out.push(arrow::util::pretty::pretty_format_batches(&b).unwrap().to_string());
            }
            out
        }
    };
    let before = read(&store).await;
    assert!(before[0].contains("gpu-1") && before[1].contains("hpa/llama-2"), "{before:?}");
    assert_eq!(store.compact_all(T0 + 1_000 * MINUTE).await.unwrap(), 6);
    for table in ["samples", "changes"] {
        assert_eq!(
            paths(&store, table),
            [format!("{table}/date=2025-01-01/hour=10/000000000001-000000000003.parquet")]
        );
    }
    assert_eq!(read(&store).await, before);
}

/// Without an object store, the compactor thread merges the hours that have settled with
/// no flush to wake it (an idle collector), deletes the parts once merged, and ends when
/// the flusher does (its tick sender dropped).
#[test]
fn an_idle_compactor_merges_without_a_flush_and_ends_with_the_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut wal, _) = Store::open(config(dir.path()), StoreMetrics::unregistered()).unwrap();
    six_and_two(&store, &mut wal);
    let part = dir.path().join("requests/date=2025-01-01/hour=10/000000000001.parquet");
    assert!(part.exists());
    let (tick, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let (done, ended) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || {
        crate::flusher::compact_after_flushes(s, ticks, std::sync::Arc::new(|| false), Duration::from_millis(50));
        let _ = done.send(());
    });
    // Both hours are long settled by the wall clock: each table's eight parts become two.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while paths(&store, REQUESTS).len() + paths(&store, "spans").len() > 4 || part.exists() {
        assert!(std::time::Instant::now() < deadline, "not merged: {:?}", paths(&store, REQUESTS));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.metrics().compacted_segments.get(), 16);
    assert!(ended.try_recv().is_err(), "the compactor waits for the next flush or look");
    drop(tick);
    ended.recv_timeout(Duration::from_secs(30)).expect("the compactor ends with the flusher");
}

/// A backlog drains paced: after each step that merged something, a pause as long as the
/// step took, whole even while flushes tick every 10 ms; a step that merges nothing ends it.
/// Four steps of 150 ms each take at least 1.2 s (150 ms of work and 150 ms of pause each);
/// a tick ending the pause early, or no pause, makes it about 0.6 s.
#[test]
fn compaction_pauses_as_long_as_each_merge_took_while_flushes_tick() {
    let (tick, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let ticking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ticker = {
        let ticking = ticking.clone();
        std::thread::spawn(move || {
            while ticking.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = tick.try_send(());
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut steps = Vec::new();
    let started = std::time::Instant::now();
    let step = || {
        steps.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(150));
        Ok(if steps.len() <= 4 { 1 } else { 0 })
    };
    crate::flusher::merge_paced(step, &ticks, &|| false);
    let took = started.elapsed();
    ticking.store(false, std::sync::atomic::Ordering::Relaxed);
    ticker.join().unwrap();
    assert_eq!(steps.len(), 5, "four steps that merged and the one that found nothing");
    for pair in steps.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(300),
            "a step came {:?} after the one before",
            pair[1] - pair[0]
        );
    }
    assert!(took >= Duration::from_millis(1_350), "{took:?}");
}

/// The flusher ending (its tick sender dropped) ends a pause at once, so a shutdown never
/// waits out a pause as long as a long merge: a step of 3 s, the sender dropped 0.1 s into
/// its 3 s pause, and the next step (which finds nothing) comes at once. Stopping ends the
/// steps themselves.
#[test]
fn compaction_stops_pausing_when_the_flusher_ends() {
    let (tick, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let started = std::time::Instant::now();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(3_100));
        drop(tick);
    });
    let mut steps = Vec::new();
    let step = || {
        steps.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(if steps.len() == 1 { 3_000 } else { 0 }));
        Ok(if steps.len() == 1 { 1 } else { 0 })
    };
    crate::flusher::merge_paced(step, &ticks, &|| false);
    dropper.join().unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(steps[1] < Duration::from_millis(5_500), "the pause outlived the flusher: {steps:?}");
    let (_tick, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let mut steps = 0;
    let step = || {
        steps += 1;
        Ok(1)
    };
    crate::flusher::merge_paced(step, &ticks, &|| true);
    assert_eq!(steps, 0, "no step once the process stops");
}
