//! The analyzer of `slo`: what the data says about each service's objectives, and why its
//! latency changed.
//!
//! - [`sketch`]: DDSketch, the mergeable quantile sketch with a relative-error bound;
//! - [`rollup`]: per (service, model, minute) sketches of duration, queue, compute, TTFT
//!   and tokens, with counts and errors; any window's percentiles come from merging them;
//! - [`changepoint`]: E-Divisive means with a t-test (as Apache Otava);
//! - [`series`]: per-bucket series of a service and the regression in them;
//! - [`candidates`], [`evidence`]: candidate causes and the before/after tests that score
//!   them;
//! - [`common`]: what the slow requests have in common (BubbleUp); [`canary`]: p99 per
//!   ReplicaSet, node and pod before and after the onset;
//! - [`explain`], [`render`]: the report of `slo explain` and its text form;
//! - [`spec`], [`burn`]: SLO specs (OpenSLO v1 and a native form), error budgets and
//!   multi-window burn rates;
//! - [`gpus`]: the GPUs of a service's nodes (clock, utilization, temperature, power, pod);
//! - [`board`]: what the dashboard charts: series, one line per service, changes by service;
//! - [`source`]: what the analyzer reads from the store's SQL tables;
//! - [`text`]: windows and times parsed from people, numbers and times written for them.

pub mod board;
pub mod burn;
mod canary;
mod candidates;
mod changepoint;
mod columns;
mod common;
mod error;
mod evidence;
mod explain;
mod gpus;
mod render;
mod rollup;
mod series;
mod sketch;
mod source;
pub mod spec;
mod stats;
pub mod text;

pub use changepoint::{Config as ChangepointConfig, detect as detect_changepoints};
pub use error::{Error, Result};
pub use explain::{Cause, Query, Report, explain};
pub use gpus::{Gpu, GpuMinute, panel as gpu_panel};
pub use render::text as render_text;
pub use rollup::{Cell, MINUTE_NS, RollupDerive, Rollups};
pub use sketch::Sketch;
pub use source::{Change, Source};
pub use stats::median;
