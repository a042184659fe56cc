//! Scrape settings (`scrape:` in the config file; `--scrape URL` adds static targets).

use serde::{Deserialize, Serialize};

use super::families::FilterConfig;
use super::parse::Limits;

/// How targets are scraped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Static targets: full URLs of `/metrics` endpoints.
    pub targets: Vec<String>,
    /// Scrape pods the Kubernetes watch finds (`prometheus.io/scrape|port|path|scheme`
    /// annotations; dcgm-exporter and vLLM pods by label).
    pub discover: bool,
    /// Seconds between scrapes of one target.
    pub interval_s: f64,
    /// Longest one scrape may take (connect, headers and body), seconds.
    pub timeout_s: f64,
    /// Largest body read from a target.
    pub max_body_bytes: usize,
    /// Most series one target may expose; beyond, the scrape is refused (`up 0`).
    pub max_series: usize,
    /// Scrapes in flight at once, across targets.
    pub max_concurrent: usize,
    /// Which series are kept (the inference families by default).
    pub families: FilterConfig,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            targets: Vec::new(),
            discover: true,
            interval_s: 15.0,
            timeout_s: 10.0,
            max_body_bytes: 16 << 20,
            max_series: 20_000,
            max_concurrent: 8,
            families: FilterConfig::default(),
        }
    }
}

impl ScrapeConfig {
    /// The parser limits these settings imply.
    pub fn limits(&self) -> Limits {
        Limits { max_bytes: self.max_body_bytes, max_samples: self.max_series, ..Limits::default() }
    }
}
