//! Prometheus scrapes of GPU and model-server metrics (dcgm-exporter, vLLM, Triton, TGI):
//! the text parser, the filter of which series are kept in the `samples` table, GPU -> pod
//! attribution, the GPU -> workload gauge, and the scrape loop.

pub mod attribute;
pub mod config;
pub mod families;
pub mod parse;
pub mod scraper;
pub mod workloads;

pub use config::ScrapeConfig;
pub use families::{FamilyFilter, FilterConfig};
pub use parse::{Limits, LineError, MetricType, ParseError, Parsed, Sample, parse, parse_bytes};
pub use scraper::{Discovery, Health, PodRef, Target, TargetHealth, run, samples_from_text};
pub use workloads::GpuWorkloads;
