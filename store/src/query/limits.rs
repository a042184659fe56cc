//! What one query may cost: operator memory, the size of what it returns, and the size
//! of the values a function may build.
//!
//! DataFusion's memory pool only sees operators that reserve memory (sorts, aggregates,
//! joins); a projection such as `repeat('x', 1000000000)` or a result collected in full
//! never asks it. So a query is bounded three ways:
//! - operators: a per-query [`GreedyMemoryPool`] of [`QueryLimits::memory_bytes`], spilling
//!   off (a query never writes a temporary file), so an over-limit sort or aggregate fails
//!   with "Resources exhausted";
//! - results: batches are counted as they stream out; past [`QueryLimits::result_bytes`]
//!   the query stops with an error that says to aggregate or add a LIMIT;
//! - functions that build values larger than their inputs (`repeat`, `lpad`, `rpad`,
//!   `array_repeat`, `array_resize`, `range`, `generate_series`) are checked *before* they
//!   run: the size their count arguments ask for, per value and per batch; every function
//!   that can grow a value (those, and `replace`, `regexp_replace`, `concat`, ...) is checked
//!   after it runs, so a chain of them stops at the first oversized step.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    simplify::{ExprSimplifyResult, SimplifyContext},
};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::error::{Error, Result};

/// The bounds of one query. [`Default`] suits a server: a few queries in flight fit in a
/// few GiB whatever they ask.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryLimits {
    /// Memory the query's operators (sorts, aggregates, joins) may reserve.
    pub memory_bytes: usize,
    /// Bytes of Arrow data a query may return.
    pub result_bytes: usize,
    /// Largest value (a string, a list) one function call may build.
    pub value_bytes: usize,
    /// Longest SQL text.
    pub sql_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { memory_bytes: 256 << 20, result_bytes: 64 << 20, value_bytes: 16 << 20, sql_bytes: 256 << 10 }
    }
}

impl QueryLimits {
    /// The runtime of one query: its own memory pool, no spill files.
    pub(crate) fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let disk = DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled);
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(self.memory_bytes)))
            .with_disk_manager_builder(disk)
            .build_arc()?)
    }

    /// Replaces the functions that can build large values with checked ones.
    pub(crate) fn guard_functions(&self, ctx: &SessionContext) -> Result<()> {
        for (name, kind) in GUARDED {
            let Ok(inner) = ctx.udf(name) else { continue };
            let guarded = Guarded { inner: (*inner).clone(), kind: *kind, limits: self.clone() };
            ctx.register_udf(ScalarUDF::new_from_impl(guarded));
        }
        Ok(())
    }

    /// Runs the plan and collects its batches, stopping past the result budget.
    pub(crate) async fn collect(&self, df: datafusion::dataframe::DataFrame) -> Result<Vec<RecordBatch>> {
        let mut stream = df.execute_stream().await?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes += batch.get_array_memory_size();
            if bytes > self.result_bytes {
                return Err(Error::TooLarge(format!(
                    "the result is larger than {} MiB; aggregate, select fewer columns or add a LIMIT",
                    self.result_bytes >> 20
                )));
            }
            out.push(batch);
        }
        Ok(out)
    }
}

/// How a guarded function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: n times the bytes of s.
    Repeat,
    /// `lpad(s, n, ...)`, `rpad`: n characters (at most 4 bytes each).
    Pad,
    /// `array_repeat(v, n)`, `array_resize(a, n, ...)`: n elements.
    Count,
    /// `range(start, stop, step)`, `generate_series`: (stop - start) / step elements.
    Series,
    /// Checked after it runs only.
    After,
}

const GUARDED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::Count),
    ("array_resize", Growth::Count),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("replace", Growth::After),
    ("regexp_replace", Growth::After),
    ("overlay", Growth::After),
    ("concat", Growth::After),
    ("concat_ws", Growth::After),
    ("translate", Growth::After),
    ("array_concat", Growth::After),
    ("array_append", Growth::After),
    ("array_prepend", Growth::After),
];

/// A function that checks what it is about to build.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Guarded {
    inner: ScalarUDF,
    kind: Growth,
    limits: QueryLimits,
}

impl Guarded {
    fn refuse(&self, what: String) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!("{}: {what}", self.inner.name()))
    }

    /// The estimated size of each value, summed over the batch.
    fn check_before(&self, args: &ScalarFunctionArgs) -> DfResult<()> {
        let rows = args.number_rows.max(1);
        let per_value = |i: usize| -> DfResult<Vec<i128>> { values(&args.args, i, rows) };
        let sizes: Vec<i128> = match self.kind {
            Growth::After => return Ok(()),
            Growth::Repeat => {
                let counts = per_value(1)?;
                let lens = string_lens(&args.args[0], rows);
                counts.iter().zip(lens.iter().cycle()).map(|(n, len)| n.max(&0) * len).collect()
            }
            Growth::Pad => per_value(1)?.into_iter().map(|n| n.max(0) * 4).collect(),
            Growth::Count => per_value(1)?.into_iter().map(|n| n.max(0) * 8).collect(),
            Growth::Series => series_sizes(&args.args, rows)?,
        };
        let largest = sizes.iter().copied().max().unwrap_or(0);
        if largest > self.limits.value_bytes as i128 {
            return Err(self.refuse(format!(
                "a value of about {} MiB asked for; one value may hold at most {} MiB",
                largest >> 20,
                self.limits.value_bytes >> 20
            )));
        }
        let total: i128 = sizes.iter().sum();
        if total > self.limits.memory_bytes as i128 {
            return Err(self.refuse(format!(
                "about {} MiB asked for one batch; a query may use at most {} MiB",
                total >> 20,
                self.limits.memory_bytes >> 20
            )));
        }
        Ok(())
    }

    fn check_after(&self, out: &ColumnarValue) -> DfResult<()> {
        let bytes = match out {
            ColumnarValue::Array(a) => a.get_array_memory_size(),
            ColumnarValue::Scalar(s) => s.size(),
        };
        if bytes > self.limits.memory_bytes {
            return Err(self.refuse(format!(
                "built {} MiB for one batch; a query may use at most {} MiB",
                bytes >> 20,
                self.limits.memory_bytes >> 20
            )));
        }
        Ok(())
    }
}

/// Argument `i` as one i128 per row (a scalar repeated); nulls and non-integers as 0.
fn values(args: &[ColumnarValue], i: usize, rows: usize) -> DfResult<Vec<i128>> {
    let Some(arg) = args.get(i) else { return Ok(vec![0; rows]) };
    let array = as_int64(arg, rows)?;
    let ints = array.as_primitive::<Int64Type>();
    Ok((0..ints.len()).map(|r| if ints.is_null(r) { 0 } else { ints.value(r) as i128 }).collect())
}

fn as_int64(arg: &ColumnarValue, rows: usize) -> DfResult<ArrayRef> {
    let array = match arg {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
    };
    let array = if array.len() == 1 && rows > 1 {
        ScalarValue::try_from_array(&array, 0)?.to_array_of_size(rows)?
    } else {
        array
    };
    let as_ns = match array.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
            arrow::compute::cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?
        }
        _ => array,
    };
    Ok(arrow::compute::cast(&as_ns, &DataType::Int64)?)
}

/// Byte length of each string of argument 0 (a scalar repeated); 1 when not a string.
fn string_lens(arg: &ColumnarValue, rows: usize) -> Vec<i128> {
    let array = match arg {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => match s.to_array_of_size(1) {
            Ok(a) => a,
            Err(_) => return vec![1; rows],
        },
    };
    let Ok(strings) = arrow::compute::cast(&array, &DataType::Utf8) else { return vec![1; rows] };
    let strings = strings.as_string::<i32>();
    (0..strings.len()).map(|r| strings.value(r).len() as i128).collect()
}

/// Elements of `range(start, stop, step)` per row, 8 bytes each. One argument is `stop`
/// from 0; temporal arguments are compared in nanoseconds with a month taken as 30 days.
fn series_sizes(args: &[ColumnarValue], rows: usize) -> DfResult<Vec<i128>> {
    let (start, stop) = match args.len() {
        1 => (vec![0; rows], values(args, 0, rows)?),
        _ => (values(args, 0, rows)?, values(args, 1, rows)?),
    };
    let step: Vec<i128> = match args.get(2) {
        None => vec![1; rows],
        Some(arg) if matches!(arg.data_type(), DataType::Interval(_)) => {
            let array = match arg {
                ColumnarValue::Array(a) => a.clone(),
                ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
            };
            let mdn = arrow::compute::cast(&array, &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano))?;
            let mdn = mdn.as_primitive::<IntervalMonthDayNanoType>();
            let day = 86_400_000_000_000i128;
            let one: Vec<i128> = (0..mdn.len())
                .map(|r| {
                    let v = mdn.value(r);
                    v.months as i128 * 30 * day + v.days as i128 * day + v.nanoseconds as i128
                })
                .collect();
            if one.len() == 1 { vec![one[0]; rows] } else { one }
        }
        Some(_) => values(args, 2, rows)?,
    };
    Ok(start
        .iter()
        .zip(&stop)
        .zip(step.iter().cycle())
        .map(|((a, b), s)| if *s == 0 { 0 } else { ((b - a) / s).max(0) * 8 })
        .collect())
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, args: &[Expr]) -> DfResult<String> {
        self.inner.inner().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.inner().return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }
    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.check_before(&args)?;
        let out = self.inner.invoke_with_args(args)?;
        self.check_after(&out)?;
        Ok(out)
    }
}
