//! Typed access to columns of the store's tables by name, whatever physical string or
//! number type a scan returned them as (Parquet scans may give `Utf8View`, for example).

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimestampNanosecondType};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| Error::Data(format!("column {name} is missing")))
}

fn cast_to(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let col = column(batch, name)?;
    if col.data_type() == to {
        return Ok(col);
    }
    cast(&col, to).map_err(|e| Error::Data(format!("column {name}: {e}")))
}

/// A string column as `Utf8`.
pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    Ok(cast_to(batch, name, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// A numeric column as `Float64`.
pub(crate) fn floats(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    Ok(cast_to(batch, name, &DataType::Float64)?.as_primitive::<arrow::datatypes::Float64Type>().clone())
}

/// An integer column as `Int64`.
pub(crate) fn ints(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    Ok(cast_to(batch, name, &DataType::Int64)?.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// A timestamp column as nanoseconds since the epoch.
pub(crate) fn times(batch: &RecordBatch, name: &str) -> Result<Int64Array> {
    let col = column(batch, name)?;
    match col.data_type() {
        DataType::Timestamp(_, _) => {
            let ns = cast(&col, &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None))
                .map_err(|e| Error::Data(format!("column {name}: {e}")))?;
            let ns = ns.as_primitive::<TimestampNanosecondType>();
            Ok(Int64Array::new(ns.values().clone(), ns.nulls().cloned()))
        }
        DataType::Int64 => Ok(col.as_primitive::<arrow::datatypes::Int64Type>().clone()),
        other => Err(Error::Data(format!("column {name} is {other}, not a timestamp"))),
    }
}

/// The value at `i` of a string column, `None` when null or empty.
pub(crate) fn str_at(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i)).filter(|s| !s.is_empty())
}

/// The value at `i` of a float column, `None` when null or NaN.
pub(crate) fn f64_at(a: &Float64Array, i: usize) -> Option<f64> {
    (!a.is_null(i)).then(|| a.value(i)).filter(|v| !v.is_nan())
}

/// The value at `i` of an integer column.
pub(crate) fn i64_at(a: &Int64Array, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}
