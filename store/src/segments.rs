//! Parquet segments: one file per table, hour and flush.
//!
//! Layout: `<data>/<table>/date=YYYY-MM-DD/hour=HH/<flush id>.parquet`. Files are written
//! to a temporary name, `fsync`ed and renamed, so a file under its final name is complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::manifest::SegmentFile;
use crate::schema::col;
use crate::wal::sync_dir;

pub(crate) const HOUR_NS: i64 = 3_600_000_000_000;

fn times(batch: &RecordBatch) -> Result<&TimestampNanosecondArray> {
    batch
        .column_by_name(col::TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .ok_or_else(|| Error::Arrow(arrow::error::ArrowError::SchemaError("batch has no `time` column".into())))
}

/// Splits batches by the hour of their `time` column.
fn by_hour(batches: &[RecordBatch]) -> Result<BTreeMap<i64, Vec<RecordBatch>>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let t = times(batch)?;
        let hours: Vec<i64> = t.values().iter().map(|v| v.div_euclid(HOUR_NS)).collect();
        let first = hours[0];
        if hours.iter().all(|h| *h == first) {
            out.entry(first).or_default().push(batch.clone());
            continue;
        }
        let mut distinct = hours.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for h in distinct {
            let mask = BooleanArray::from(hours.iter().map(|x| *x == h).collect::<Vec<_>>());
            out.entry(h).or_default().push(filter_record_batch(batch, &mask)?);
        }
    }
    Ok(out)
}

/// Columns whose values are (nearly) all distinct: a dictionary only costs the writer a
/// hash per value before it gives up on it.
const DISTINCT: [&str; 10] = [
    col::TIME,
    col::END_TIME,
    col::TRACE_ID,
    col::SPAN_ID,
    col::PARENT_SPAN_ID,
    col::DURATION_MS,
    col::QUEUE_MS,
    col::COMPUTE_MS,
    col::OTHER_MS,
    col::TTFT_MS,
];
/// Random ids: min/max statistics of them never prune anything.
const RANDOM: [&str; 3] = [col::TRACE_ID, col::SPAN_ID, col::PARENT_SPAN_ID];

/// Columns of event times, nearly sorted: deltas pack them tighter than plain values, and
/// cheaper than compressing plain values.
const TIMES: [&str; 2] = [col::TIME, col::END_TIME];

/// LZ4 (raw) by default, ZSTD level 1 for the attribute and label values, deltas for times.
/// Measured on a flush of realistic vLLM spans (`BENCHMARKS.md`, "Parquet settings"): about
/// Snappy's encode time, a third less disk for `spans` and a fifth less for `requests`,
/// and a little faster to read back: the values are most of the bytes and ZSTD shrinks
/// them nearly half again; the numeric columns barely compress with either codec.
pub fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(256 * 1024));
    for c in DISTINCT {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    for c in TIMES {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    for c in RANDOM {
        b = b.set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
    }
    // Min/max over every key or value of a map column prunes nothing either.
    let zstd = Compression::ZSTD(ZstdLevel::try_new(1).expect("ZSTD level 1 is valid"));
    for map in ["attributes", "resource_attributes", "labels"] {
        for part in ["keys", "values"] {
            let path = ColumnPath::new(vec![map.into(), "entries".into(), part.into()]);
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
            if part == "values" {
                b = b.set_column_compression(path, zstd);
            }
        }
    }
    b.build()
}

/// Writes the batches of one table as segments; returns the files written.
pub(crate) fn write_table(
    data_dir: &Path,
    table: &str,
    flush_id: u64,
    batches: &[RecordBatch],
) -> Result<Vec<SegmentFile>> {
    let mut files = Vec::new();
    for (hour, parts) in by_hour(batches)? {
        let start = DateTime::<Utc>::from_timestamp_nanos(hour * HOUR_NS);
        let rel_dir = format!("{table}/{}", start.format("date=%Y-%m-%d/hour=%H"));
        let dir = data_dir.join(&rel_dir);
        fs::create_dir_all(&dir).map_err(Error::io("create segment dir", &dir))?;
        let name = format!("{flush_id:012}.parquet");
        let tmp = dir.join(format!(".{name}.tmp"));
        let schema = parts[0].schema();
        let file = fs::File::create(&tmp).map_err(Error::io("create segment", &tmp))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
        let (mut min, mut max, mut rows) = (i64::MAX, i64::MIN, 0u64);
        for part in &parts {
            let t = times(part)?;
            for v in t.values().iter() {
                min = min.min(*v);
                max = max.max(*v);
            }
            rows += part.num_rows() as u64;
            writer.write(part)?;
        }
        let file = writer.into_inner()?;
        file.sync_all().map_err(Error::io("fsync segment", &tmp))?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let path = dir.join(&name);
        fs::rename(&tmp, &path).map_err(Error::io("rename segment", &path))?;
        sync_dir(&dir)?;
        files.push(SegmentFile {
            table: table.to_string(),
            path: format!("{rel_dir}/{name}"),
            rows,
            bytes,
            min_time: min,
            max_time: max,
            uploaded: false,
        });
    }
    Ok(files)
}

/// Removes `.parquet` (and derived `.bin`) files under `<data>/<table>/` that the manifest does not list
/// (left by a crash between writing a segment and saving the manifest), and temporary files.
pub(crate) fn remove_orphans(data_dir: &Path, table: &str, listed: &[SegmentFile]) -> Result<usize> {
    let known: std::collections::HashSet<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    let mut removed = 0;
    let mut stack = vec![data_dir.join(table)];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read dir", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io("read dir", &dir))?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(data_dir).unwrap_or(&path).to_string_lossy().to_string();
            let name = entry.file_name().to_string_lossy().to_string();
            let segment = name.ends_with(".parquet") || name.ends_with(".bin");
            let orphan = name.ends_with(".tmp") || (segment && !known.contains(rel.as_str()));
            if orphan {
                fs::remove_file(&path).map_err(Error::io("remove orphan segment", &path))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The batches of a segment (tests read back what they wrote).
#[cfg(test)]
fn read(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = fs::File::open(path).map_err(Error::io("open segment", path))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{RequestRow, requests_batch};

    fn row(t: u64) -> RequestRow {
        RequestRow {
            time_unix_nano: t,
            trace_id: "t".into(),
            service: "s".into(),
            status: "ok",
            split_source: "none",
            ..Default::default()
        }
    }

    #[test]
    fn splits_by_hour_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let h = HOUR_NS as u64;
        let batch = requests_batch(&[row(5 * h + 1), row(6 * h + 2), row(5 * h + 3)]).unwrap();
        let files = write_table(dir.path(), "requests", 9, &[batch]).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].rows, 2);
        assert_eq!(files[0].min_time, (5 * h + 1) as i64);
        assert_eq!(files[0].max_time, (5 * h + 3) as i64);
        assert!(files[0].path.starts_with("requests/date=1970-01-01/hour=05/"), "{}", files[0].path);
        let back = read(&dir.path().join(&files[1].path)).unwrap();
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert_eq!(back[0].schema(), crate::schema::requests());
        // Time keeps the statistics pruning reads; random ids and map entries have none.
        let file = fs::File::open(dir.path().join(&files[0].path)).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(file).unwrap(),
        )
        .clone();
        let column = |name: &str| {
            let rg = meta.row_group(0);
            (0..rg.num_columns()).map(|i| rg.column(i)).find(|c| c.column_path().string() == name).unwrap()
        };
        let stats = |name: &str| column(name).statistics().is_some_and(|s| s.min_bytes_opt().is_some());
        assert!(stats("time") && stats("service"));
        assert!(!stats("trace_id") && !stats("attributes.entries.values"));
        assert_eq!(column("duration_ms").compression(), Compression::LZ4_RAW);
        assert!(matches!(column("attributes.entries.values").compression(), Compression::ZSTD(_)));
        let time_encodings: Vec<Encoding> = column("time").encodings().collect();
        assert!(time_encodings.contains(&Encoding::DELTA_BINARY_PACKED), "{time_encodings:?}");
        // An unlisted file is an orphan.
        assert_eq!(remove_orphans(dir.path(), "requests", &files[..1]).unwrap(), 1);
        assert!(!dir.path().join(&files[1].path).exists());
    }
}
