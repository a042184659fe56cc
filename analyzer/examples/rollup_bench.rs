//! Per-minute p99 by (service, model) over a whole data directory from the persisted
//! rollups, timed, for the side-by-side run with DuckDB in `scripts/bench-rollups`.
//!
//! ```text
//! cargo run --release -p slo-analyzer --example rollup_bench -- DIR OUT.csv [RUNS]
//! ```
//!
//! Prints the median wall time of RUNS (default 5) runs of "merge the rollups, take every
//! cell's p99" and writes `service,model,minute_ns,p99_ms` rows to OUT.csv.

use std::io::Write;
use std::time::Instant;

use slo_analyzer::Source;
use slo_store::Store;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, out) = (args.get(1).expect("usage: rollup_bench DIR OUT.csv [RUNS]"), args.get(2).expect("OUT.csv"));
    let runs: usize = args.get(3).map_or(5, |s| s.parse().expect("RUNS"));
    let store = Store::open_read_only(std::path::Path::new(dir)).expect("open the data dir");
    let source = Source::new(store.snapshot());
    let mut times = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = source.rollups(None, i64::MIN / 2, i64::MAX / 2).await.expect("rollups");
        rows = r
            .iter()
            .map(|(k, c)| (k.service.clone(), k.model.clone(), k.minute, c.duration.quantile(0.99).unwrap_or(0.0)))
            .collect();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("create OUT.csv"));
    writeln!(f, "service,model,minute_ns,p99_ms").unwrap();
    for (s, m, minute, p) in &rows {
        writeln!(f, "{s},{m},{minute},{p}").unwrap();
    }
    println!("{{\"cells\": {}, \"median_s\": {:.4}}}", rows.len(), times[times.len() / 2]);
}
