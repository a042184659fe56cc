//! The analyzer of `slo`: what the data says about each service's objectives, and why its
//! latency changed.
//!
//! - [`sketch`]: DDSketch, the mergeable quantile sketch with a relative-error bound;
//! - [`rollup`]: per (service, model, minute) sketches of duration, queue, compute, TTFT
//!   and tokens, with counts and errors; any window's percentiles come from merging them.

pub mod changepoint;
pub mod columns;
pub mod error;
pub mod rollup;
pub mod sketch;
pub mod stats;

pub use error::{Error, Result};
