//! What the analyzer reads from the store, through the same SQL tables every user sees.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use slo_store::Snapshot;

use crate::columns::{self, f64_at, i64_at, str_at};
use crate::error::Result;
use std::collections::HashMap;
use std::sync::Arc;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use slo_store::SegmentFile;
use slo_store::schema::{REQUESTS, col};

use crate::error::Error;
use crate::rollup::{ROLLUPS, Rollups, minute_of};
use crate::text::rfc3339;

/// An RFC 3339 literal for SQL from ns since the epoch.
pub(crate) fn sql_time(ns: i64) -> String {
    format!("'{}'", rfc3339(ns))
}

/// A SQL string literal.
pub(crate) fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One Kubernetes change, as the `changes` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// When it happened, ns.
    pub time: i64,
    /// Taxonomy kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// `hpa/x`, `deployment/x`, `node/x`, `pod/x`.
    pub object: String,
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
    /// Why (an HPA's condition, an Event reason).
    pub reason: String,
    /// Free text.
    pub message: String,
    /// Extra facts (`target`, `to_replicaset`, `node`, ...).
    pub attributes: BTreeMap<String, String>,
}

/// One request, the columns the before/after comparisons need.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Start, ns.
    pub time: i64,
    /// Pod that served it.
    pub pod: Arc<str>,
    /// Its ReplicaSet.
    pub replicaset: Arc<str>,
    /// Its Deployment.
    pub deployment: Arc<str>,
    /// Its namespace.
    pub namespace: Arc<str>,
    /// Its node.
    pub node: Arc<str>,
    /// Total, queue and compute milliseconds.
    pub duration: f64,
    /// Queue ms.
    pub queue: f64,
    /// Compute ms.
    pub compute: f64,
    /// Prompt tokens (0 when unknown).
    pub input_tokens: f64,
    /// Generated tokens (0 when unknown).
    pub output_tokens: f64,
    /// `status = 'error'`.
    pub error: bool,
}

/// GPU clock-event (throttle) reasons on one node in one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeThrottle {
    /// Node name.
    pub node: String,
    /// Minute, ns.
    pub minute: i64,
    /// GPUs that reported a throttle reason in the minute.
    pub gpus: i64,
    /// The reasons' bits, OR-ed over the node's GPUs and the minute's scrapes.
    pub reasons: i64,
}

/// NVML clock-event reasons that slow a GPU down: SW power cap (0x4), HW slowdown (0x8),
/// SW thermal (0x20), HW thermal (0x40), HW power brake (0x80).
pub(crate) const THROTTLE_REASONS: i64 = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;

/// Names of the throttle bits set in `reasons`.
pub(crate) fn reason_names(reasons: i64) -> Vec<&'static str> {
    [(0x4, "SW power cap"), (0x8, "HW slowdown"), (0x20, "SW thermal"), (0x40, "HW thermal"), (0x80, "HW power brake")]
        .into_iter()
        .filter(|(bit, _)| reasons & bit != 0)
        .map(|(_, n)| n)
        .collect()
}

/// Reads the store for the analyzer.
#[derive(Debug, Clone)]
pub struct Source {
    snapshot: Snapshot,
}

impl Source {
    /// Over a snapshot of the store.
    pub fn new(snapshot: Snapshot) -> Source {
        Source { snapshot }
    }

    async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.snapshot.sql(sql).await?)
    }

    /// SQL over only the segments that may hold rows of `[from, to)`.
    async fn sql_in(&self, from: i64, to: i64, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.snapshot.restrict(from, to).sql(sql).await?)
    }

    /// Newest request start, ns (from the manifest and the unflushed rows; no scan).
    pub async fn latest_request(&self) -> Result<Option<i64>> {
        Ok(self.snapshot.max_time(REQUESTS))
    }

    /// Rollups of the requests that started in the minutes `[from, to)` (one service, or
    /// all): the persisted rollup of each flush that has one, the requests segments of
    /// flushes that have none (data written before rollups existed, or a rollup that would
    /// not decode), and the rows not flushed yet.
    pub async fn rollups(&self, service: Option<&str>, from: i64, to: i64) -> Result<Rollups> {
        let (lo, hi) = (minute_of(from), to);
        let snapshot = self.snapshot.clone();
        let overlapping = |table: &str| -> Vec<SegmentFile> {
            snapshot
                .files()
                .iter()
                .filter(|f| f.table == table && f.max_time >= lo && f.min_time < hi)
                .cloned()
                .collect()
        };
        let rollup_files = overlapping(ROLLUPS);
        let fetched = fetch_all(&snapshot, &rollup_files).await;
        let owned = service.map(str::to_string);
        let (mut out, covered) =
            blocking(move || decode_rollups(rollup_files, fetched, owned.as_deref(), lo, hi)).await??;
        let uncovered: Vec<SegmentFile> = overlapping(REQUESTS)
            .into_iter()
            .filter(|f| flush_key(&f.path, REQUESTS).is_none_or(|k| !covered.has(&k)))
            .collect();
        // Without a rollup, a flush is read from its requests segment: one at a time (a day
        // of them is gigabytes), the local ones by their projected columns only.
        let owned = service.map(str::to_string);
        for f in uncovered {
            let segment = if f.uploaded && snapshot.has_remote() {
                Segment::Bytes(snapshot.read(&f).await.map_err(|e| Error::Data(format!("{}: {e}", f.path)))?)
            } else {
                Segment::File(snapshot.data_dir().join(&f.path))
            };
            let owned = owned.clone();
            let r = blocking(move || {
                let mut r = rollups_of_segment(&f.path, segment)?;
                keep(&mut r, owned.as_deref(), lo, hi);
                Ok::<_, Error>(r)
            })
            .await??;
            out.merge(&r);
        }
        let rest = blocking(move || {
            let mut r = Rollups::new();
            for b in snapshot.memory(REQUESTS) {
                r.add_requests(b)?;
            }
            keep(&mut r, owned.as_deref(), lo, hi);
            Ok::<_, Error>(r)
        })
        .await??;
        out.merge(&rest);
        Ok(out)
    }

    /// The same rollups by scanning `requests` with SQL (the reference the persisted ones
    /// are tested against, and what a store without them costs).
    pub async fn rollups_by_scan(&self, service: Option<&str>, from: i64, to: i64) -> Result<Rollups> {
        let mut sql = format!(
            "SELECT time, service, model, status, duration_ms, queue_ms, compute_ms, ttft_ms, input_tokens, output_tokens \
             FROM requests WHERE time >= {} AND time < {}",
            sql_time(from),
            sql_time(to)
        );
        if let Some(s) = service {
            sql.push_str(&format!(" AND service = {}", sql_str(s)));
        }
        let mut r = Rollups::new();
        for b in self.sql(&sql).await? {
            r.add_requests(&b)?;
        }
        Ok(r)
    }

    /// Changes in `[from, to)`, oldest first, each key once: a change two collectors stored
    /// (the watch handed over between them, see `src/watcher.rs`) is one change, and an
    /// Event stored alone is not repeated beside the change it was merged into
    /// (`event_key`).
    pub async fn changes(&self, from: i64, to: i64) -> Result<Vec<Change>> {
        let sql = format!(
            "SELECT time, kind, namespace, object, \"from\", \"to\", reason, message, attributes, key FROM changes \
             WHERE time >= {} AND time < {} ORDER BY time, kind, object, key, \"from\"",
            sql_time(from),
            sql_time(to)
        );
        let mut out = Vec::new();
        let mut keys = Vec::new();
        for b in self.sql_in(from, to, &sql).await? {
            let key = columns::strings(&b, col::KEY)?;
            let time = columns::times(&b, col::TIME)?;
            let s = |n: &str| columns::strings(&b, n);
            let (kind, ns, object, from, to, reason, message) = (
                s(col::KIND)?,
                s(col::NAMESPACE)?,
                s(col::OBJECT)?,
                s(col::FROM)?,
                s(col::TO)?,
                s(col::REASON)?,
                s(col::MESSAGE)?,
            );
            let attrs = b.column_by_name(col::ATTRIBUTES).map(|c| c.as_map().clone());
            for i in 0..b.num_rows() {
                let Some(t) = i64_at(&time, i) else { continue };
                let mut attributes = BTreeMap::new();
                if let Some(m) = &attrs
                    && !m.is_null(i)
                {
                    let entry = m.value(i);
                    let keys = arrow::compute::cast(entry.column(0), &arrow::datatypes::DataType::Utf8)?;
                    let vals = arrow::compute::cast(entry.column(1), &arrow::datatypes::DataType::Utf8)?;
                    let (keys, vals) = (keys.as_string::<i32>(), vals.as_string::<i32>());
                    for j in 0..keys.len() {
                        attributes.insert(keys.value(j).to_string(), vals.value(j).to_string());
                    }
                }
                let g = |a: &arrow::array::StringArray| str_at(a, i).unwrap_or("").to_string();
                keys.push(slo_store::canonical_change_key(str_at(&key, i).unwrap_or("")).into_owned());
                out.push(Change {
                    time: t,
                    kind: g(&kind),
                    namespace: g(&ns),
                    object: g(&object),
                    from: g(&from),
                    to: g(&to),
                    reason: g(&reason),
                    message: g(&message),
                    attributes,
                });
            }
        }
        Ok(once_per_key(out, keys))
    }

    /// The requests of `service` in `[from, to)` with the columns comparisons need.
    pub async fn requests(&self, service: &str, from: i64, to: i64) -> Result<Vec<Request>> {
        let sql = format!(
            "SELECT time, pod, replicaset, deployment, namespace, node, duration_ms, queue_ms, compute_ms, input_tokens, output_tokens, status \
             FROM requests WHERE service = {} AND time >= {} AND time < {}",
            sql_str(service),
            sql_time(from),
            sql_time(to)
        );
        let batches = self.sql_in(from, to, &sql).await?;
        // Hundreds of thousands of rows at high traffic: off the async workers.
        tokio::task::spawn_blocking(move || requests_from(&batches))
            .await
            .map_err(|e| Error::Data(format!("request detail task failed: {e}")))?
    }

    /// Per GPU, metric and minute in `[from, to)`: the mean of the dashboard's GPU gauges
    /// ([`crate::gpus::METRICS`]) and the pod the GPU was attributed to, with how.
    pub async fn gpu_minutes(&self, from: i64, to: i64) -> Result<Vec<crate::gpus::GpuMinute>> {
        let metrics: Vec<String> = crate::gpus::METRICS.iter().map(|m| sql_str(m)).collect();
        let sql = format!(
            "SELECT node, gpu, metric, date_trunc('minute', time) AS minute, avg(value) AS v, \
             max(pod) AS pod, max(attribution) AS attribution FROM samples \
             WHERE metric IN ({}) AND time >= {} AND time < {} AND gpu IS NOT NULL AND node IS NOT NULL \
             GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            metrics.join(", "),
            sql_time(from),
            sql_time(to)
        );
        let mut out = Vec::new();
        for b in self.sql_in(from, to, &sql).await? {
            let s = |n: &str| columns::strings(&b, n);
            let (node, gpu, metric, pod, how) =
                (s(col::NODE)?, s(col::GPU)?, s(col::METRIC)?, s(col::POD)?, s(col::ATTRIBUTION)?);
            let minute = columns::times(&b, "minute")?;
            let v = columns::floats(&b, "v")?;
            for i in 0..b.num_rows() {
                let (Some(n), Some(g), Some(m), Some(t), Some(v)) =
                    (str_at(&node, i), str_at(&gpu, i), str_at(&metric, i), i64_at(&minute, i), f64_at(&v, i))
                else {
                    continue;
                };
                out.push(crate::gpus::GpuMinute {
                    node: n.to_string(),
                    gpu: g.to_string(),
                    metric: m.to_string(),
                    minute: t,
                    value: v,
                    pod: str_at(&pod, i).unwrap_or("").to_string(),
                    attribution: str_at(&how, i).unwrap_or("").to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Per (node, minute): how many GPUs reported a throttle reason (dcgm-exporter's
    /// `DCGM_FI_DEV_CLOCKS_EVENT_REASONS`), in `[from, to)`.
    pub async fn node_throttle(&self, from: i64, to: i64) -> Result<Vec<NodeThrottle>> {
        let sql = format!(
            "SELECT node, date_trunc('minute', time) AS minute, \
             count(DISTINCT CASE WHEN (CAST(value AS BIGINT) & {THROTTLE_REASONS}) != 0 THEN gpu END) AS gpus, \
             bit_or(CAST(value AS BIGINT) & {THROTTLE_REASONS}) AS reasons FROM samples \
             WHERE metric IN ('DCGM_FI_DEV_CLOCKS_EVENT_REASONS', 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS') \
             AND time >= {} AND time < {} AND node IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            sql_time(from),
            sql_time(to)
        );
        let mut out = Vec::new();
        for b in self.sql_in(from, to, &sql).await? {
            let node = columns::strings(&b, col::NODE)?;
            let minute = columns::times(&b, "minute")?;
            let (gpus, reasons) = (columns::ints(&b, "gpus")?, columns::ints(&b, "reasons")?);
            for i in 0..b.num_rows() {
                if let (Some(n), Some(m)) = (str_at(&node, i), i64_at(&minute, i)) {
                    out.push(NodeThrottle {
                        node: n.to_string(),
                        minute: m,
                        gpus: i64_at(&gpus, i).unwrap_or(0),
                        reasons: i64_at(&reasons, i).unwrap_or(0),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// `changes` (in query order) with `keys[i]` the key of `changes[i]`: one row of each key
/// kept, and an Event left out where another change says it merged that Event
/// (`event_key`). Rows without a key are all kept.
///
/// Copies of one key can differ in `from`: a collector that took the watch over from one
/// that stalled computes a change from the older baseline it was handed (an HPA's 6 -> 12
/// where the stalled one stored 11 -> 12). The copy whose `from` is the object's previous
/// `to` is kept, else the first.
fn once_per_key(changes: Vec<Change>, keys: Vec<String>) -> Vec<Change> {
    use std::collections::{HashMap, HashSet};
    let merged: HashSet<&str> =
        changes.iter().filter_map(|c| c.attributes.get("event_key").map(String::as_str)).collect();
    let mut copies: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if !k.is_empty() && !merged.contains(k.as_str()) {
            copies.entry(k.as_str()).or_default().push(i);
        }
    }
    let mut keep = vec![false; changes.len()];
    let mut last_to: HashMap<(&str, &str), &str> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let chosen = if k.is_empty() {
            i
        } else {
            match copies.get(k.as_str()) {
                // Decided at the key's first row.
                Some(rows) if rows[0] == i => {
                    let c = &changes[i];
                    let before = last_to.get(&(c.namespace.as_str(), c.object.as_str()));
                    *rows.iter().find(|&&j| before == Some(&changes[j].from.as_str())).unwrap_or(&i)
                }
                _ => continue,
            }
        };
        keep[chosen] = true;
        let c = &changes[chosen];
        last_to.insert((c.namespace.as_str(), c.object.as_str()), c.to.as_str());
    }
    changes.into_iter().zip(keep).filter_map(|(c, k)| k.then_some(c)).collect()
}

/// The analyzer's requests from rows of [`Source::requests`]'s query, oldest first.
fn requests_from(batches: &[RecordBatch]) -> Result<Vec<Request>> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    // Pods, nodes and ReplicaSets repeat on every row: one allocation per distinct name.
    let mut interner = Interner::default();
    for b in batches {
        let time = columns::times(b, col::TIME)?;
        let s = |n: &str| columns::strings(b, n);
        let (pod, rs, deployment, namespace, node, status) = (
            s(col::POD)?,
            s(col::REPLICASET)?,
            s(col::DEPLOYMENT)?,
            s(col::NAMESPACE)?,
            s(col::NODE)?,
            s(col::STATUS)?,
        );
        let f = |n: &str| columns::floats(b, n);
        let (d, q, c) = (f(col::DURATION_MS)?, f(col::QUEUE_MS)?, f(col::COMPUTE_MS)?);
        let (inp, outp) = (columns::ints(b, col::INPUT_TOKENS)?, columns::ints(b, col::OUTPUT_TOKENS)?);
        for i in 0..b.num_rows() {
            let Some(t) = i64_at(&time, i) else { continue };
            let mut get = |a: &arrow::array::StringArray| interner.get(str_at(a, i).unwrap_or(""));
            out.push(Request {
                time: t,
                pod: get(&pod),
                replicaset: get(&rs),
                deployment: get(&deployment),
                namespace: get(&namespace),
                node: get(&node),
                duration: f64_at(&d, i).unwrap_or(0.0),
                queue: f64_at(&q, i).unwrap_or(0.0),
                compute: f64_at(&c, i).unwrap_or(0.0),
                input_tokens: i64_at(&inp, i).unwrap_or(0) as f64,
                output_tokens: i64_at(&outp, i).unwrap_or(0) as f64,
                error: str_at(&status, i) == Some("error"),
            });
        }
    }
    out.sort_by_key(|r| r.time);
    Ok(out)
}

/// Shares one `Arc<str>` per distinct string.
#[derive(Default)]
struct Interner(std::collections::HashMap<Box<str>, Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(s.into(), a.clone());
        a
    }
}

/// The flushes a segment or rollup file belongs to: the collector's prefix (empty for a
/// data directory; several collectors' flush ids overlap) and the first and last flush id,
/// from paths such as `requests/date=…/hour=…/000000000042.parquet`,
/// `c1/rollups/000000000042.bin` or, merged by compaction, `rollups/000000000042-000000000101.bin`.
fn flush_key(path: &str, table: &str) -> Option<(String, (u64, u64))> {
    let parts: Vec<&str> = path.split('/').collect();
    let range = slo_store::flush_range(path)?;
    let at = parts.iter().rposition(|p| *p == table)?;
    Some((parts[..at].join("/"), range))
}

/// The flushes persisted rollups cover, per collector prefix: ranges sorted by their first
/// flush ([`Covered::sorted`]), which do not overlap (each flush's rollup is in one file).
#[derive(Debug, Default)]
struct Covered(HashMap<String, Vec<(u64, u64)>>);

impl Covered {
    fn add(&mut self, (prefix, range): (String, (u64, u64))) {
        self.0.entry(prefix).or_default().push(range);
    }

    fn sorted(mut self) -> Covered {
        for ranges in self.0.values_mut() {
            ranges.sort_unstable();
        }
        self
    }

    /// Whether the flush a requests segment belongs to has a persisted rollup: the last
    /// range starting at or before it, by bisection (a month unmerged is 43,000 files a
    /// side).
    fn has(&self, (prefix, (id, _)): &(String, (u64, u64))) -> bool {
        self.0.get(prefix).is_some_and(|ranges| {
            let after = ranges.partition_point(|(a, _)| a <= id);
            after > 0 && ranges[after - 1].1 >= *id
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Data(format!("rollup task failed: {e}")))
}

/// Files read at once: an object store answers each GET in tens of milliseconds and many
/// in parallel (a day is 1,440 rollup files at the default flush interval).
const FETCH_AT_ONCE: usize = 64;

/// The bytes of `files`, many at a time (the object store answers in parallel).
async fn fetch_all(snapshot: &Snapshot, files: &[SegmentFile]) -> Vec<Result<bytes::Bytes>> {
    use futures::StreamExt;
    // Owned futures: borrowed ones trip the compiler's higher-ranked lifetimes in callers'
    // `Send` checks.
    let shared = Arc::new(snapshot.clone());
    futures::stream::iter(files.to_vec())
        .map(move |f| {
            let snapshot = shared.clone();
            async move { snapshot.read(&f).await.map_err(|e| Error::Data(format!("{}: {e}", f.path))) }
        })
        .buffered(FETCH_AT_ONCE)
        .collect()
        .await
}

/// The persisted rollups that decode, kept to `[lo, hi)` and `service`, and the flushes
/// they cover; one that does not decode is read from its requests instead.
fn decode_rollups(
    files: Vec<SegmentFile>,
    fetched: Vec<Result<bytes::Bytes>>,
    service: Option<&str>,
    lo: i64,
    hi: i64,
) -> Result<(Rollups, Covered)> {
    let mut out = Rollups::new();
    let mut covered = Covered::default();
    for (f, bytes) in files.iter().zip(fetched) {
        match bytes.and_then(|b| Rollups::decode(&b).map_err(|e| Error::Data(e.to_string()))) {
            Ok(mut r) => {
                keep(&mut r, service, lo, hi);
                out.merge(&r);
                if let Some(k) = flush_key(&f.path, ROLLUPS) {
                    covered.add(k);
                }
            }
            Err(e) => {
                tracing::warn!(path = %f.path, error = %e, "unreadable rollup file; reading its requests instead")
            }
        }
    }
    Ok((out, covered.sorted()))
}

/// Keeps the minutes `[lo, hi)` of `service` (all services: `None`).
fn keep(r: &mut Rollups, service: Option<&str>, lo: i64, hi: i64) {
    r.retain(|k| k.minute >= lo && k.minute < hi && service.is_none_or(|s| s == k.service));
}

/// A `requests` segment to roll up: a local file, or an object's bytes.
enum Segment {
    File(std::path::PathBuf),
    Bytes(bytes::Bytes),
}

/// Rollups of one `requests` segment (its projected columns only).
fn rollups_of_segment(path: &str, segment: Segment) -> Result<Rollups> {
    match segment {
        Segment::File(p) => {
            let file = std::fs::File::open(&p).map_err(|e| Error::Io { op: "open", path: p.clone(), source: e })?;
            rollups_of_parquet(path, file)
        }
        Segment::Bytes(b) => rollups_of_parquet(path, b),
    }
}

fn rollups_of_parquet<R: parquet::file::reader::ChunkReader + 'static>(path: &str, reader: R) -> Result<Rollups> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| Error::Data(format!("{path}: {e}")))?;
    let wanted = [
        col::TIME,
        col::SERVICE,
        col::MODEL,
        col::STATUS,
        col::DURATION_MS,
        col::QUEUE_MS,
        col::COMPUTE_MS,
        col::TTFT_MS,
        col::INPUT_TOKENS,
        col::OUTPUT_TOKENS,
    ];
    let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
    let reader = builder.with_projection(mask).build().map_err(|e| Error::Data(format!("{path}: {e}")))?;
    let mut r = Rollups::new();
    for b in reader {
        r.add_requests(&b?)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
