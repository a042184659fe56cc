//! Query benchmark for BENCHMARKS.md: per-minute p99 by model over N `requests` rows.
//!
//! Writes N synthetic request rows (24 hours, 8 models, log-normal-ish latencies) into a
//! fresh data dir through the store's own flush path (Parquet segments by hour), then
//! times the README's query through the same DataFusion session `slo query` uses.
//!
//! cargo run --release --example query_bench -- 10000000 /tmp/slo-bench-data

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slo_store::{RequestRow, requests_batch};
use slo_store::{Store, StoreConfig, StoreMetrics};

const QUERY: &str = "SELECT date_trunc('minute', time) m, model, \
    approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) p99, \
    approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY queue_ms) q99 \
    FROM requests GROUP BY 1, 2 ORDER BY 1";

/// xorshift, so the data is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let dir = args.next().unwrap_or_else(|| "/tmp/slo-query-bench".into());
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = StoreConfig::new(&dir);
    cfg.retention = None;
    let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered())?;
    let models =
        ["llama-70b", "llama-8b", "mixtral-8x7b", "qwen-72b", "gemma-27b", "phi-3", "mistral-7b", "deepseek-v3"];
    let end = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let start = end - Duration::from_secs(24 * 3600).as_nanos() as u64;
    let step = (end - start) / n as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let written = Instant::now();
    let chunk = 1_000_000;
    let mut i = 0;
    while i < n {
        let rows: Vec<RequestRow> = (i..(i + chunk).min(n))
            .map(|k| {
                let queue = (-rng.unit().max(1e-9).ln()) * 80.0;
                let compute = 200.0 + rng.unit() * 1800.0;
                RequestRow {
                    time_unix_nano: start + k as u64 * step,
                    trace_id: format!("{k:032x}"),
                    service: "vllm".into(),
                    model: Some(models[k % models.len()].into()),
                    status: "ok",
                    duration_ms: queue + compute + 5.0,
                    queue_ms: queue,
                    compute_ms: compute,
                    other_ms: 5.0,
                    split_source: "attributes",
                    ..Default::default()
                }
            })
            .collect();
        store.append(None, Some(requests_batch(&rows)?));
        store.flush_now(&mut wal)?;
        i += chunk;
    }
    let files = store.snapshot().files().len();
    println!("wrote {n} rows in {files} segments in {:.1} s", written.elapsed().as_secs_f64());
    let mut times = Vec::new();
    let mut groups = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let batches = store.snapshot().sql(QUERY).await?;
        times.push(t.elapsed().as_secs_f64());
        groups = batches.iter().map(|b| b.num_rows()).sum();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "per-minute p99 by model over {n} rows: {groups} groups, best {:.2} s, median {:.2} s (3 runs)",
        times[0], times[1]
    );
    Ok(())
}
