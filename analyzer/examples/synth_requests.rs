//! Writes a data directory of synthetic requests for the analyzer's benchmarks, through the
//! store's own flush path (Parquet segments and persisted rollups):
//!
//! ```text
//! cargo run --release -p slo-analyzer --example synth_requests -- DIR [RPS] [HOURS]
//! ```
//!
//! RPS requests per second (default 1000) for HOURS (default 24) ending 2025-11-22T00:00Z,
//! split over `llama-70b` (two models, 70%) and `embedder` (30%), flushed once per minute
//! of data as a server flushing every 60 s would. At 80% of the span the `llama-70b` HPA
//! scales 8 -> 6 (a `changes` row) and its requests queue: queue time grows by a few
//! seconds on a third of them from two minutes later. Deterministic (splitmix64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use slo_analyzer::RollupDerive;
use slo_store::changes_batch;
use slo_store::{ChangeRecord, Store, StoreConfig, StoreMetrics};
use slo_store::{RequestRow, requests_batch};

const END: i64 = 1_763_769_600_000_000_000; // 2025-11-22T00:00:00Z

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal with median `m` and shape `s`.
    fn lognormal(&mut self, m: f64, s: f64) -> f64 {
        let (u1, u2) = (self.next().max(1e-12), self.next());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        m * (s * z).exp()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: synth_requests DIR [RPS] [HOURS]");
    let rps: i64 = args.get(2).map_or(1000, |s| s.parse().expect("RPS"));
    let hours: i64 = args.get(3).map_or(24, |s| s.parse().expect("HOURS"));
    let mut cfg = StoreConfig::new(dir);
    cfg.retention = None;
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.derive = Some(Arc::new(RollupDerive));
    let (store, mut wal, _) = Store::open(cfg, StoreMetrics::unregistered()).expect("open the data dir");
    let start = END - hours * 3_600_000_000_000;
    let incident = start + (hours * 3_600_000_000_000) * 8 / 10;
    let change = ChangeRecord {
        time_unix_nano: incident,
        kind: "scale_down".into(),
        namespace: "inference".into(),
        object_kind: "HorizontalPodAutoscaler".into(),
        object: "hpa/llama-70b".into(),
        from: "8".into(),
        to: "6".into(),
        reason: "All metrics below target".into(),
        source: "synthetic".into(),
        ..Default::default()
    };
    store.append_tables([("changes", changes_batch([&change]).expect("changes batch"))]);
    let mut rng = Rng(7);
    let began = Instant::now();
    let mut total = 0u64;
    let minutes = hours * 60;
    for m in 0..minutes {
        let mut rows = Vec::with_capacity(rps as usize * 60);
        let t_min = start + m * 60_000_000_000;
        for i in 0..rps * 60 {
            let t = t_min + i * 60_000_000_000 / (rps * 60);
            let llama = rng.next() < 0.7;
            let pod = (rng.next() * 8.0) as u32;
            let (service, model, deployment) = if llama {
                (
                    "llama-70b",
                    if rng.next() < 0.8 {
                        "meta-llama/Llama-3.1-70B-Instruct"
                    } else {
                        "meta-llama/Llama-3.1-8B-Instruct"
                    },
                    "llama-70b",
                )
            } else {
                ("embedder", "BAAI/bge-large-en-v1.5", "embedder")
            };
            let output = if llama { rng.lognormal(150.0, 0.5).round() } else { 1.0 };
            let compute = if llama { 40.0 + output * rng.lognormal(18.0, 0.15) } else { rng.lognormal(12.0, 0.3) };
            let mut queue = rng.lognormal(3.0, 0.8);
            if llama && t >= incident + 120_000_000_000 && rng.next() < 0.35 {
                queue += rng.lognormal(2500.0, 0.6);
            }
            rows.push(RequestRow {
                time_unix_nano: t as u64,
                trace_id: format!("{:016x}{:016x}", m, i),
                service: service.into(),
                namespace: Some("inference".into()),
                deployment: Some(deployment.into()),
                replicaset: Some(format!("{deployment}-7d9f8")),
                pod: Some(format!("{deployment}-7d9f8-{pod}")),
                node: Some(format!("gpu-{}", pod / 2)),
                model: Some(model.into()),
                status: if rng.next() < 0.001 { "error" } else { "ok" },
                duration_ms: queue + compute + 2.0,
                queue_ms: queue,
                compute_ms: compute,
                other_ms: 2.0,
                ttft_ms: Some(queue + 30.0),
                input_tokens: Some(rng.lognormal(800.0, 0.6).round() as i64),
                output_tokens: Some(output as i64),
                split_source: "gen_ai.latency",
                ..Default::default()
            });
        }
        total += rows.len() as u64;
        store.append(None, Some(requests_batch(&rows).expect("requests batch")));
        store.flush_now(&mut wal).expect("flush");
        if m % 60 == 59 {
            eprintln!("{} of {hours} hours, {total} requests, {:.0} s", (m + 1) / 60, began.elapsed().as_secs_f64());
        }
    }
    println!("{total} requests in {dir} ({:.0} s)", began.elapsed().as_secs_f64());
}
