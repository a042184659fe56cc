//! Change-point detection on a long series: time and where the changes are, for the
//! side-by-side run with `ruptures` in `scripts/bench-changepoint`.
//!
//! ```text
//! cargo run --release -p slo-analyzer --example changepoint_bench -- SERIES.csv [RUNS]
//! ```
//!
//! Reads one value per line, runs `detect_changepoints` RUNS times (default 20) and prints
//! the median time and the change points found.

use std::time::Instant;

use slo_analyzer::{ChangepointConfig as Config, detect_changepoints as detect};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: changepoint_bench SERIES.csv [RUNS]");
    let runs: usize = args.get(2).map_or(20, |s| s.parse().expect("RUNS"));
    let text = std::fs::read_to_string(path).expect("read the series");
    let x: Vec<f64> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.trim().parse().expect("a number per line")).collect();
    let cfg = Config::default();
    let mut times = Vec::new();
    let mut found = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        found = detect(&x, &cfg);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let idx: Vec<String> = found.iter().map(|c| c.index.to_string()).collect();
    println!(
        "{{\"points\": {}, \"median_ms\": {:.3}, \"change_points\": [{}]}}",
        x.len(),
        times[times.len() / 2],
        idx.join(", ")
    );
}
