//! The `slo serve` configuration file and its precedence, in one place:
//! built-in defaults < config file < `SLO_*` environment variables < flags.
//! (clap merges the last two: a flag beats its variable.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use slo_collector::CollectorConfig;
use slo_store::{FsyncPolicy, StoreConfig};

/// Listen addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Listen {
    /// OTLP/gRPC.
    pub otlp_grpc: String,
    /// OTLP/HTTP.
    pub otlp_http: String,
    /// Web UI, JSON API, `/metrics`, `/healthz`, `/readyz`.
    pub http: String,
}

impl Default for Listen {
    fn default() -> Self {
        // Loopback unless a deployment says otherwise: every port takes data or gives it
        // away, so reaching beyond the host is a decision (and wants `auth`, `tls`).
        Listen { otlp_grpc: "127.0.0.1:4317".into(), otlp_http: "127.0.0.1:4318".into(), http: "127.0.0.1:8080".into() }
    }
}

/// Bounds on the connections of each listener (`slo_web::listen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConnectionsSection {
    /// Open connections per listener; at the cap the idlest one is closed for a new one.
    pub max_per_listener: usize,
    /// Seconds a connection may sit with no request in flight and no byte moved.
    pub idle_timeout_s: u64,
    /// Seconds for HTTP/1 request headers and for a TLS handshake.
    pub header_read_timeout_s: u64,
    /// Seconds an OTLP request (reading its body and answering) may take; the web port
    /// allows `query_timeout_s` plus 10.
    pub request_timeout_s: u64,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        ConnectionsSection {
            max_per_listener: 1024,
            idle_timeout_s: 60,
            header_read_timeout_s: 10,
            request_timeout_s: 60,
        }
    }
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// `always` (fsync before every acknowledgement), `interval` or `never`.
    pub fsync: FsyncPolicy,
    /// For `interval`: most milliseconds between two fsyncs.
    pub fsync_interval_ms: u64,
    /// `zstd` (each WAL record compressed) or `none`.
    pub wal_compression: slo_store::WalCompression,
    /// Flush rows to Parquet at least every this many seconds.
    pub flush_interval_s: u64,
    /// Flush as soon as this many rows are in memory.
    pub flush_rows: usize,
    /// Unflushed rows may hold at most this many MiB before ingest sheds; a flush starts
    /// when rows in memory hold half of it.
    pub max_memory_mib: usize,
    /// Keep segments this many hours (by data time); 0 keeps everything.
    pub retention_hours: u64,
    /// Put segments and rollups in an object store (S3 or S3-compatible) once flushed;
    /// unset: they stay in the data directory. Secrets come from the environment only.
    pub object_store: Option<slo_store::RemoteOptions>,
    /// This collector's prefix below `object_store.url` (each collector writes its own);
    /// unset: `$POD_NAME`, else `$HOSTNAME`, else `slo`.
    pub collector: Option<String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = StoreConfig::new(".");
        StoreSection {
            fsync: d.fsync,
            fsync_interval_ms: d.fsync_interval.as_millis() as u64,
            wal_compression: d.wal_compression,
            flush_interval_s: d.flush_interval.as_secs(),
            flush_rows: d.flush_rows,
            max_memory_mib: d.max_memory_bytes >> 20,
            retention_hours: d.retention.map_or(0, |r| r.as_secs() / 3600),
            object_store: None,
            collector: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Listen,
    /// Bearer tokens for ingest and for reading (`SLO_INGEST_TOKENS`, `SLO_READ_TOKENS`
    /// add to the files).
    pub auth: slo_web::AuthConfig,
    /// TLS (and mTLS) on every listener.
    pub tls: slo_web::TlsConfig,
    /// Connection bounds per listener.
    pub connections: ConnectionsSection,
    /// Store.
    pub store: StoreSection,
    /// Collector: limits, assembly, split rules, redaction, ingest queue.
    pub collector: CollectorConfig,
    /// Seconds to drain and flush on SIGTERM before exiting anyway.
    pub shutdown_grace_s: u64,
    /// Longest a query or explanation through the API may run, in seconds.
    pub query_timeout_s: u64,
    /// Queries and explanations through the API running at once; more get 429.
    pub query_max_in_flight: usize,
    /// MiB one query's operators (sorts, aggregates, joins) may hold.
    pub query_memory_mib: usize,
    /// MiB of Arrow data one query may return.
    pub query_result_mib: usize,
    /// Seconds between two rounds of the continuous analyzer, which explains every service
    /// with recent requests and exports its verdict (`slo_regression_active`).
    pub analyze_every_s: u64,
    /// The Alertmanager receiver: where explained alerts are forwarded, its bounds.
    pub alerts: slo_web::AlertsConfig,
    /// The Kubernetes watch.
    pub kubernetes: KubernetesSection,
    /// Prometheus scraping (static targets and pods the watch discovers).
    pub scrape: slo_collector::scrape::ScrapeConfig,
    /// `collector` (receive, store, upload) or `query` (serve the web, API, analyzer and
    /// alerts over the object store the collectors upload to; `query_node`).
    pub role: Role,
    /// The query node's settings.
    pub query_node: QueryNodeSection,
    /// SLOs in the native form (read by `slo_analyzer::spec`, which also reads OpenSLO
    /// documents that follow the config in the same file after `---`).
    pub slos: Option<serde_yaml::Value>,
}

/// The Kubernetes watch: on when a kubeconfig is given or slo runs in a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KubernetesSection {
    /// `true`/`false` force it on/off; unset: on with a kubeconfig or in-cluster.
    pub enabled: Option<bool>,
    /// Kubeconfig file; unset: in-cluster service account, else `$KUBECONFIG`/~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// Watch Events (core/v1 and events.k8s.io/v1).
    pub events: bool,
    /// Object kinds to diff: Deployment, ReplicaSet, HorizontalPodAutoscaler, Node, Pod,
    /// ScaledObject (KEDA; skipped where the CRD is not installed).
    pub kinds: Vec<String>,
    /// `wall` (this machine's clock; real clusters) or `data` (the cluster's own
    /// timestamps: the load generator's simulated cluster, faster than real time).
    pub clock: slo_collector::kube::watch::ClockKind,
    /// With several collectors: the one (by `store.collector`, e.g. `slo-0`) that watches
    /// the cluster and scrapes what it discovers, so that each change and sample is stored
    /// once; the others do neither. Unset: every collector whose watch is on watches.
    pub watcher: Option<String>,
    /// With several collectors: elect the watcher through a Lease instead of naming one, so
    /// the watch moves to another collector when its holder dies. Not with `watcher`.
    pub lease: Option<slo_collector::kube::lease::LeaseConfig>,
}

impl Default for KubernetesSection {
    fn default() -> Self {
        KubernetesSection {
            enabled: None,
            kubeconfig: None,
            events: true,
            kinds: slo_collector::kube::Watched::ALL.iter().map(|k| k.kind().to_string()).collect(),
            clock: Default::default(),
            watcher: None,
            lease: None,
        }
    }
}

impl KubernetesSection {
    /// Whether this collector (named `collector`) watches: on, and the designated watcher
    /// if one is named.
    pub(crate) fn active_on(&self, collector: &str) -> bool {
        self.active() && self.watcher.as_deref().is_none_or(|w| w == collector)
    }

    /// Whether to watch.
    pub(crate) fn active(&self) -> bool {
        self.enabled.unwrap_or(self.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
    }

    /// The kinds, each checked, and the choice of watcher.
    pub(crate) fn watched(&self) -> anyhow::Result<Vec<slo_collector::kube::Watched>> {
        if let Some(lease) = &self.lease {
            anyhow::ensure!(
                self.watcher.is_none(),
                "kubernetes.watcher and kubernetes.lease both choose the watcher: set one (watcher names it, lease \
                 elects it)"
            );
            lease.validate().map_err(|e| anyhow::anyhow!(e))?;
        }
        self.kinds
            .iter()
            .map(|k| {
                slo_collector::kube::Watched::from_kind(k)
                    .ok_or_else(|| anyhow::anyhow!("kubernetes.kinds: unknown kind {k:?}"))
            })
            .collect()
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("./slo-data"),
            listen: Listen::default(),
            auth: slo_web::AuthConfig::default(),
            tls: slo_web::TlsConfig::default(),
            connections: ConnectionsSection::default(),
            store: StoreSection::default(),
            collector: CollectorConfig::default(),
            shutdown_grace_s: 30,
            query_timeout_s: 60,
            query_max_in_flight: 4,
            query_memory_mib: slo_store::QueryLimits::default().memory_bytes >> 20,
            query_result_mib: slo_store::QueryLimits::default().result_bytes >> 20,
            analyze_every_s: 60,
            alerts: Default::default(),
            kubernetes: KubernetesSection::default(),
            scrape: slo_collector::scrape::ScrapeConfig::default(),
            slos: None,
            role: Role::Collector,
            query_node: QueryNodeSection::default(),
        }
    }
}

/// What `slo serve` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Receives telemetry, stores it (and uploads it with `store.object_store`), serves it.
    #[default]
    Collector,
    /// Serves what the collectors uploaded to `store.object_store.url`; receives nothing.
    Query,
}

/// `role: query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QueryNodeSection {
    /// Seconds between two reads of the collectors' manifests.
    pub refresh_s: u64,
}

impl Default for QueryNodeSection {
    fn default() -> Self {
        QueryNodeSection { refresh_s: 15 }
    }
}

impl ServeConfig {
    /// Loads a file, or the defaults without one. Errors name the file and the field.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<ServeConfig> {
        let Some(path) = path else { return Ok(ServeConfig::default()) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        // The first document that is not an OpenSLO one is the server's config.
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
            if value.is_null() || value.get("apiVersion").is_some() {
                continue;
            }
            return serde_yaml::from_value(value).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()));
        }
        Ok(ServeConfig::default())
    }

    /// This collector's name: its prefix in the object store.
    pub(crate) fn collector_name(&self) -> anyhow::Result<String> {
        let from_env = || ["POD_NAME", "HOSTNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        let name = self.store.collector.clone().or_else(from_env).unwrap_or_else(|| "slo".into());
        anyhow::ensure!(
            slo_store::valid_collector_name(&name),
            "store.collector: {name:?} cannot name a prefix (letters, digits, '.', '_', '-'; at most 128; not {})",
            slo_store::RESERVED_NAMES.join(", ")
        );
        Ok(name)
    }

    /// The object store this collector writes (its own prefix), if one is configured.
    pub(crate) fn remote(&self) -> anyhow::Result<Option<slo_store::Remote>> {
        let Some(o) = &self.store.object_store else { return Ok(None) };
        let root = slo_store::Remote::open(o).map_err(|e| anyhow::anyhow!("store.object_store: {e}"))?;
        Ok(Some(root.child(&self.collector_name()?)))
    }

    /// The store's settings.
    pub(crate) fn store_config(&self) -> StoreConfig {
        let s = &self.store;
        // A query (or explanation) runs at most query_timeout_s: a local copy outlives it.
        let read_grace = Duration::from_secs(self.query_timeout_s.max(1) + 5);
        StoreConfig {
            data_dir: self.data_dir.clone(),
            fsync: s.fsync,
            fsync_interval: Duration::from_millis(s.fsync_interval_ms),
            wal_compression: s.wal_compression,
            flush_interval: Duration::from_secs(s.flush_interval_s.max(1)),
            flush_rows: s.flush_rows.max(1),
            max_memory_bytes: s.max_memory_mib.max(16) << 20,
            retention: (s.retention_hours > 0).then(|| Duration::from_secs(s.retention_hours * 3600)),
            derive: Some(std::sync::Arc::new(slo_analyzer::RollupDerive)),
            remote: None,
            collector: self.collector_name().unwrap_or_else(|_| "slo".into()),
            wal_shards: self.collector.ingest.shard_count(),
            read_grace,
            // A query node reads the bucket's manifests every refresh_s, then queries for
            // at most query_timeout_s: an object dropped from a manifest outlives both.
            remote_read_grace: read_grace + Duration::from_secs(self.query_node.refresh_s.max(1)),
            // The watch's baseline goes up for the collector that takes the Lease over.
            side_files: match self.kubernetes.lease {
                Some(_) => vec![slo_collector::kube::watch::STATE_FILE.to_string()],
                None => Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_defaults_and_typos_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "store:\n  fsync: never\ncollector:\n  assembly:\n    idle_ms: 500\n").unwrap();
        let c = ServeConfig::load(Some(&p)).unwrap();
        assert_eq!(c.store.fsync, FsyncPolicy::Never);
        assert_eq!(c.collector.assembly.idle_ms, 500);
        assert_eq!(c.listen, Listen::default());
        std::fs::write(&p, "store:\n  fsynk: never\n").unwrap();
        let e = ServeConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("fsynk") && e.contains("c.yaml"), "{e}");
        // The watch's clock: `data` taken, anything else named with what is allowed.
        std::fs::write(&p, "kubernetes:\n  clock: data\n").unwrap();
        let c = ServeConfig::load(Some(&p)).unwrap();
        assert_eq!(c.kubernetes.clock, slo_collector::kube::watch::ClockKind::Data);
        std::fs::write(&p, "kubernetes:\n  clock: sundial\n").unwrap();
        let e = ServeConfig::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("sundial") && e.contains("wall") && e.contains("data"), "{e}");
    }

    #[test]
    fn a_collector_named_like_a_table_or_with_a_bad_lease_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "store:\n  collector: requests\n").unwrap();
        let e = ServeConfig::load(Some(&p)).unwrap().collector_name().unwrap_err().to_string();
        assert!(e.contains("\"requests\"") && e.contains("not requests, spans"), "{e}");
        std::fs::write(&p, "kubernetes:\n  watcher: slo-0\n  lease: {}\n").unwrap();
        let e = ServeConfig::load(Some(&p)).unwrap().kubernetes.watched().unwrap_err().to_string();
        assert!(e.contains("kubernetes.watcher and kubernetes.lease"), "{e}");
        std::fs::write(&p, "kubernetes:\n  lease: {duration_s: 5, renew_deadline_s: 6}\n").unwrap();
        let e = ServeConfig::load(Some(&p)).unwrap().kubernetes.watched().unwrap_err().to_string();
        assert!(e.contains("renew_deadline_s (6)") && e.contains("duration_s (5)"), "{e}");
        std::fs::write(&p, "kubernetes:\n  lease: {name: slo-watcher}\n").unwrap();
        let c = ServeConfig::load(Some(&p)).unwrap();
        assert_eq!(c.kubernetes.lease.as_ref().map(|l| l.duration_s), Some(15), "defaults fill the rest");
        assert!(c.kubernetes.watched().is_ok());
    }

    #[test]
    fn the_readme_slo_example_is_a_valid_config() {
        let readme = include_str!("../README.md");
        let start = readme.find("```yaml\nslos:").expect("the README has the SLO example") + "```yaml\n".len();
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slo.yaml");
        std::fs::write(&p, text).unwrap();
        ServeConfig::load(Some(&p)).unwrap();
        let names: Vec<String> = slo_analyzer::spec::load(&p).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["llama-70b-latency", "llama-70b-errors", "llama-70b-ttft"]);
    }
}
