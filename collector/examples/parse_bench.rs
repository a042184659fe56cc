//! Throughput of the scrape parser (`slo_collector::scrape::parse`) against `prometheus-parse`
//! 0.2, side by side, on the real fixtures in `tests/fixtures/` and on a synthetic
//! 64-GPU dcgm-exporter page.
//!
//! ```text
//! cargo run --release -p slo-collector --example parse_bench [MB of work per input, default 50]
//! ```
//!
//! Each input is parsed over and over until about that many megabytes have gone through
//! each parser; the best of three such rounds is reported. "values" counts what a parser
//! returned: our samples, and for `prometheus-parse` its samples with each histogram or
//! summary counted once per bucket or quantile (it folds them into one sample).

use std::hint::black_box;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use slo_collector::scrape::{FamilyFilter, Limits, parse};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
const ROUNDS: usize = 3;

fn fixture(path: &str) -> String {
    let full = format!("{FIXTURES}/{path}");
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e} (the repository's tests/fixtures)"))
}

/// The L4 full scrape's families (HELP, TYPE, value) for 64 H100s on 8 nodes, with the pod
/// labels dcgm-exporter adds when a GPU is allocated to a pod (all but every 8th GPU).
fn synthetic_64_gpus(l4: &str) -> String {
    let mut out = String::new();
    for line in l4.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let name = &line[..line.find('{').expect("labelled")];
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        for gpu in 0..64u32 {
            let node = gpu / 8;
            let local = gpu % 8;
            out.push_str(&format!(
                "{name}{{gpu=\"{local}\",UUID=\"GPU-{:08x}-7953-256e-8f33-{:012x}\",pci_bus_id=\"00000000:{:02X}:00.0\",\
                 device=\"nvidia{local}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node-{node}\",\
                 DCGM_FI_DRIVER_VERSION=\"580.105.08\"",
                0xc2f7_6b33u32.wrapping_mul(gpu + 1),
                u64::from(gpu) * 0x1343_419b,
                0x18 + local * 0x11,
            ));
            if local != 7 {
                out.push_str(&format!(
                    ",container=\"vllm\",namespace=\"inference\",pod=\"llama-70b-7d9f8c6b5-{:05x}\",pod_uid=\"\"",
                    (gpu / 2) * 7919
                ));
            }
            out.push_str(&format!("}} {}\n", value + f64::from(gpu) * 0.5));
        }
    }
    out
}

struct Run {
    values: usize,
    vllm: usize,
    best: Duration,
    bytes: usize,
}

impl Run {
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.best.as_secs_f64()
    }
    fn values_s(&self, iterations: usize) -> f64 {
        (self.values * iterations) as f64 / self.best.as_secs_f64()
    }
}

fn measure(text: &str, iterations: usize, mut once: impl FnMut(&str) -> (usize, usize)) -> Run {
    let (values, vllm) = once(text);
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(once(black_box(text)));
        }
        best = best.min(started.elapsed());
    }
    Run { values, vllm, best, bytes: text.len() * iterations }
}

fn ours(text: &str, limits: &Limits) -> (usize, usize) {
    let p = parse(text, limits).expect("parses");
    (p.samples.len(), p.samples.iter().filter(|s| s.name.starts_with("vllm:")).count())
}

fn ours_filtered(text: &str, limits: &Limits, filter: &FamilyFilter) -> (usize, usize) {
    let mut p = parse(text, limits).expect("parses");
    filter.retain(&mut p);
    (p.samples.len(), p.samples.iter().filter(|s| s.name.starts_with("vllm:")).count())
}

fn theirs(text: &str) -> (usize, usize) {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let count = |v: &Value| match v {
        Value::Histogram(b) => b.len(),
        Value::Summary(q) => q.len(),
        _ => 1,
    };
    let values = scrape.samples.iter().map(|s| count(&s.value)).sum();
    let vllm = scrape.samples.iter().filter(|s| s.metric.starts_with("vllm:")).map(|s| count(&s.value)).sum();
    (values, vllm)
}

fn main() {
    let work_mb: usize = std::env::args().nth(1).map_or(50, |a| a.parse().expect("MB of work, an integer"));
    let l4 = fixture("dcgm/dcgm-exporter_1xL4_kops_full-scrape.prom");
    let inputs = [
        ("dcgm 1xL4 full scrape", l4.clone()),
        ("dcgm 8xH100 sampled", fixture("dcgm/dcgm-exporter_8xH100_eks_pod-labels_sampled.prom")),
        ("vLLM v1 idle", fixture("vllm/vllm-v1_qwen2.5-0.5b_idle_kops.prom")),
        ("synthetic dcgm 64 GPUs", synthetic_64_gpus(&l4)),
    ];
    let limits = Limits::default();
    let filter = FamilyFilter::default();
    println!("{work_mb} MB of work per input and parser, best of {ROUNDS} rounds\n");
    println!(
        "| input | bytes | parser | values | `vllm:` values | MB/s | values/s | speed vs prometheus-parse |\n\
         |---|---:|---|---:|---:|---:|---:|---:|"
    );
    for (label, text) in &inputs {
        let iterations = (work_mb * 1_000_000).div_ceil(text.len());
        let runs = [
            ("slo parse", measure(text, iterations, |t| ours(t, &limits))),
            ("slo parse + default filter", measure(text, iterations, |t| ours_filtered(t, &limits, &filter))),
            ("prometheus-parse 0.2.5", measure(text, iterations, theirs)),
        ];
        let base = runs[2].1.mb_s();
        for (parser, run) in &runs {
            println!(
                "| {label} | {} | {parser} | {} | {} | {:.1} | {:.2} M | x{:.1} |",
                text.len(),
                run.values,
                run.vllm,
                run.mb_s(),
                run.values_s(iterations) / 1e6,
                run.mb_s() / base
            );
        }
    }
}
