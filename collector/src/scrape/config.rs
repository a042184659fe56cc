//! Scrape settings (`scrape:` in the config file; `--scrape URL` adds static targets).

use serde::{Deserialize, Serialize};

use super::families::FilterConfig;
use super::parse::Limits;
use super::scraper::Target;

/// How targets are scraped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Static targets: full URLs of `/metrics` endpoints, or `{url, interval_s, timeout_s}`.
    pub targets: Vec<StaticTarget>,
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

/// A static target: a URL with the default interval and timeout, or its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StaticTarget {
    /// Just the URL.
    Url(String),
    /// The URL with its own settings.
    Full {
        url: String,
        #[serde(default)]
        interval_s: Option<f64>,
        #[serde(default)]
        timeout_s: Option<f64>,
    },
}

impl StaticTarget {
    /// The scrape target.
    pub fn target(&self) -> Target {
        match self {
            StaticTarget::Url(u) => Target::new(u.clone(), None),
            StaticTarget::Full { url, interval_s, timeout_s } => Target {
                interval_ms: interval_s.map(|s| (s * 1000.0) as u64),
                timeout_ms: timeout_s.map(|s| (s * 1000.0) as u64),
                ..Target::new(url.clone(), None)
            },
        }
    }
}

impl ScrapeConfig {
    /// The parser limits these settings imply.
    pub fn limits(&self) -> Limits {
        Limits { max_bytes: self.max_body_bytes, max_samples: self.max_series, ..Limits::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_url_or_a_url_with_its_own_interval_and_timeout() {
        let cfg: ScrapeConfig = serde_json::from_str(
            r#"{"targets": ["http://a:9400/metrics", {"url": "http://b:8000/metrics", "interval_s": 5, "timeout_s": 2.5}]}"#,
        )
        .unwrap();
        let t: Vec<Target> = cfg.targets.iter().map(StaticTarget::target).collect();
        assert_eq!((t[0].interval_ms, t[0].timeout_ms), (None, None));
        assert_eq!(
            (t[1].url.as_str(), t[1].interval_ms, t[1].timeout_ms),
            ("http://b:8000/metrics", Some(5000), Some(2500))
        );
        let bad = serde_json::from_str::<ScrapeConfig>(r#"{"targets": [{"uri": "x"}]}"#).unwrap_err();
        assert!(bad.to_string().contains("StaticTarget"), "{bad}");
    }
}
