//! `slo serve` with `role: query`: the dashboard, the API, the continuous analyzer and the
//! Alertmanager receiver over the object store that collectors upload to, with no ingest
//! and no write-ahead log of its own (what Tempo's and Loki's queriers are to their
//! ingesters). It reads every collector's manifest below `store.object_store.url` again
//! every `refresh_s`, and exports when each collector last uploaded, so that a collector
//! that stopped shows as one (`slo_bucket_newest_data_seconds`), not as a silent gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use slo_store::{CollectorView, Remote, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Failure;
use crate::config::ServeConfig;
use crate::doors::Doors;
use crate::serve::{Web, bind, spawn_signals, start_web};

type CollectorLabel = Vec<(&'static str, String)>;

struct BucketMetrics {
    newest_data: Family<CollectorLabel, Gauge>,
    written: Family<CollectorLabel, Gauge>,
    refresh_errors: prometheus_client::metrics::counter::Counter,
}

impl BucketMetrics {
    fn new(registry: &mut Registry) -> BucketMetrics {
        let m = BucketMetrics {
            newest_data: Family::default(),
            written: Family::default(),
            refresh_errors: Default::default(),
        };
        let r = registry.sub_registry_with_prefix("slo_bucket");
        r.register(
            "newest_data_seconds",
            "each collector's newest uploaded row time, unix seconds",
            m.newest_data.clone(),
        );
        r.register(
            "manifest_written_seconds",
            "when each collector last wrote its manifest, unix seconds",
            m.written.clone(),
        );
        r.register("refresh_errors", "reads of the collectors' manifests that failed", m.refresh_errors.clone());
        m
    }

    fn set(&self, views: &[CollectorView]) {
        self.newest_data.clear();
        self.written.clear();
        for v in views {
            let label = vec![("collector", if v.prefix.is_empty() { v.collector.clone() } else { v.prefix.clone() })];
            self.newest_data.get_or_create(&label).set(v.newest_data.unwrap_or(0) / 1_000_000_000);
            self.written.get_or_create(&label).set(v.written_unix_nano / 1_000_000_000);
        }
    }
}

/// Runs the query node until a signal or a failure.
pub(crate) async fn run(cfg: ServeConfig, slos: Vec<slo_analyzer::spec::Slo>, doors: Doors) -> Result<(), Failure> {
    let options = cfg.store.object_store.clone().ok_or_else(|| {
        Failure::usage_msg("role: query reads the collectors' object store: set store.object_store.url".into())
    })?;
    let root = Remote::open(&options).map_err(Failure::usage)?;
    let store = Store::bucket_reader(root.clone());
    let mut registry = Registry::default();
    let bucket_metrics = Arc::new(BucketMetrics::new(&mut registry));
    let listen_metrics = slo_web::ListenMetrics::new(&mut registry);
    let regression_metrics = slo_web::RegressionMetrics::new(&mut registry);
    let (alerts, alert_queue) = slo_web::Alerts::open(&cfg.data_dir.join("alerts"), &cfg.alerts, &mut registry)
        .with_context(|| format!("opening the alert log in {}", cfg.data_dir.join("alerts").display()))?;
    let web_listener = bind(&cfg.listen.http, "web").await?;
    println!("slo listening http={} role=query bucket={}", web_listener.local_addr()?, root.url());

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn_signals(&tracker, &token);
    let read_once = Arc::new(AtomicBool::new(false));
    {
        let (store, metrics, read_once, token) =
            (store.clone(), bucket_metrics.clone(), read_once.clone(), token.clone());
        let every = Duration::from_secs(cfg.query_node.refresh_s.max(1));
        let query_timeout = Duration::from_secs(cfg.query_timeout_s.max(1));
        tracker.spawn(async move {
            // Collectors said to lag at the last refresh: each is logged when it starts and
            // when it stops lagging, not at every refresh.
            let mut behind: std::collections::BTreeSet<String> = Default::default();
            // Collectors already said to delete sooner than this node reads: once each.
            let mut short: std::collections::BTreeSet<String> = Default::default();
            loop {
                match store.refresh_bucket().await {
                    Ok(views) => {
                        metrics.set(&views);
                        for (v, said) in slo_store::grace_too_short(&views, every, query_timeout) {
                            if short.insert(v.prefix) {
                                tracing::warn!("{said}");
                            }
                        }
                        let mut now = std::collections::BTreeSet::new();
                        for (v, said) in slo_store::lagging(&views, 5 * 60 * 1_000_000_000) {
                            if !behind.contains(&v.prefix) {
                                tracing::warn!("{said}");
                            }
                            now.insert(v.prefix);
                        }
                        for caught_up in behind.difference(&now) {
                            tracing::info!(collector = %caught_up, "collector no longer behind the others");
                        }
                        behind = now;
                        read_once.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        metrics.refresh_errors.inc();
                        tracing::warn!(error = %e, "could not read the collectors' manifests; the view stays as it was");
                    }
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
    let fail = {
        let token = token.clone();
        move |e: anyhow::Error| {
            tracing::error!(error = %format!("{e:#}"), "component failed; shutting down");
            token.cancel();
        }
    };
    let web = Web {
        store,
        registry,
        ready: Arc::new(move || {
            if read_once.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("the collectors' manifests not read yet".into())
            }
        }),
        slos,
        alerts,
        alert_queue,
        regression_metrics,
        listen_metrics,
        targets: Arc::new(|| serde_json::json!([])),
    };
    start_web(&cfg, &doors, web_listener, web, &tracker, &token, fail)?;
    doors.keep_tokens_fresh(&tracker, token.clone());
    token.cancelled().await;
    tracker.close();
    let grace = Duration::from_secs(cfg.shutdown_grace_s.max(1));
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("servers did not stop within the grace period");
    }
    Ok(())
}
