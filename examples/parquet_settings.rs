//! The store's Parquet settings against the ones before them (Snappy everywhere, plain
//! times), on real segment files: rewrites each file's rows with both, alternating, reads
//! each result back whole, and prints the median write and read times and the size of
//! each, and their ratios. BENCHMARKS.md,
//! "Parquet settings", says how to make the files (a data dir after `otlp_load`).
//!
//! Figures are now/before (ratio).
//!
//! cargo run --release --example parquet_settings -- DATA/spans/date=*/hour=*/*.parquet

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

fn before() -> WriterProperties {
    let mut b = slo_store::writer_properties().into_builder().set_compression(Compression::SNAPPY);
    for c in ["time", "end_time"] {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::PLAIN);
    }
    for map in ["attributes", "resource_attributes", "labels"] {
        b = b.set_column_compression(
            ColumnPath::new(vec![map.into(), "entries".into(), "values".into()]),
            Compression::SNAPPY,
        );
    }
    b.build()
}

/// Seconds to write `batches` into memory with `props`, seconds to read them back (every
/// column decoded), and the bytes written.
fn write_read(batches: &[RecordBatch], props: &WriterProperties) -> (f64, f64, usize) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batches[0].schema(), Some(props.clone())).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    let wrote = started.elapsed().as_secs_f64();
    let (size, bytes) = (buf.len(), bytes::Bytes::from(buf));
    let started = Instant::now();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("read back").build().expect("reader");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, batches.iter().map(RecordBatch::num_rows).sum::<usize>());
    (wrote, started.elapsed().as_secs_f64(), size)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (now, old) = (slo_store::writer_properties(), before());
    for path in std::env::args().skip(1) {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file").build().expect("reader");
        let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            continue;
        }
        let (mut now_runs, mut old_runs) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            old_runs.push(write_read(&batches, &old));
            now_runs.push(write_read(&batches, &now));
        }
        let col =
            |runs: &[(f64, f64, usize)], i: usize| median(runs.iter().map(|r| [r.0, r.1, r.2 as f64][i]).collect());
        let (w, wb) = (col(&now_runs, 0), col(&old_runs, 0));
        let (r, rb) = (col(&now_runs, 1), col(&old_runs, 1));
        let (n, nb) = (col(&now_runs, 2) / 1e6, col(&old_runs, 2) / 1e6);
        println!(
            "{path}: rows={rows} write_s={w:.3}/{wb:.3} ({:.3}) read_s={r:.3}/{rb:.3} ({:.3}) mb={n:.1}/{nb:.1} ({:.3})",
            w / wb,
            r / rb,
            n / nb
        );
    }
}
