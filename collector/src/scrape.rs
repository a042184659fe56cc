//! Prometheus scrapes of GPU and model-server metrics (dcgm-exporter, vLLM, Triton, TGI):
//! the text parser, and the filter of which series are kept in the `samples` table.

pub mod families;
pub mod parse;

pub use families::{FamilyFilter, FilterConfig};
pub use parse::{Limits, LineError, MetricType, ParseError, Parsed, Sample, parse, parse_bytes};
