//! `slo serve`: the collector, the store and the web API in one process.
//!
//! Startup: open the store (lock, orphan cleanup, retention), start the pipeline (which
//! replays the WAL, then reports ready), bind the three ports, print their addresses.
//! Shutdown on SIGINT/SIGTERM or when any part fails: stop accepting, let in-flight exports
//! finish, write what is queued, flush everything, exit within the grace period.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use slo_collector::kube::watch::{self, KubeMetrics, WatchConfig};
use slo_collector::metrics::FnGauge;
use slo_collector::otlp::{Receiver, grpc, http};
use slo_collector::scrape::Discovery;
use slo_collector::{CollectorMetrics, Pipeline};
use slo_store::{Store, StoreMetrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{Failure, ServeArgs};
use crate::config::ServeConfig;

/// OTLP/gRPC exports decoded at once, across all connections.
const GRPC_CONCURRENT_EXPORTS: usize = 8;

fn apply_flags(cfg: &mut ServeConfig, args: ServeArgs) {
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(a) = args.otlp_grpc {
        cfg.listen.otlp_grpc = a;
    }
    if let Some(a) = args.otlp_http {
        cfg.listen.otlp_http = a;
    }
    if let Some(a) = args.http {
        cfg.listen.http = a;
    }
    if let Some(k) = args.kubeconfig {
        cfg.kubernetes.kubeconfig = Some(k);
    }
    cfg.scrape.targets.extend(args.scrape.into_iter().map(slo_collector::scrape::config::StaticTarget::Url));
}

async fn bind(addr: &str, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.with_context(|| format!("binding {what} to {addr}")).map_err(Failure::from)
}

/// Runs the server until a signal or a failure.
pub async fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut cfg = ServeConfig::load(args.config.as_deref()).map_err(Failure::usage)?;
    let slos = match args.config.as_deref() {
        Some(path) => slo_analyzer::spec::load_any(path).map_err(Failure::usage)?,
        None => Vec::new(),
    };
    apply_flags(&mut cfg, args);
    let mut registry = Registry::default();
    let store_metrics = StoreMetrics::new(&mut registry);
    let metrics = CollectorMetrics::new(&mut registry);
    let kube_metrics = KubeMetrics::new(&mut registry);
    let kube_kinds = cfg.kubernetes.watched().map_err(Failure::usage)?;
    let store_cfg = cfg.store_config();
    let (store, wal, recovery) = tokio::task::spawn_blocking(move || Store::open(store_cfg, store_metrics))
        .await
        .context("opening the store")??;
    tracing::info!(data_dir = %cfg.data_dir.display(), wal_segments = recovery.wal_segments.len(), "store opened");
    let (ingest, pipeline) = Pipeline::start(store.clone(), wal, recovery, &cfg.collector, metrics.clone(), false)
        .map_err(Failure::usage)?;
    let health = pipeline.health();
    let kube_ingest = ingest.clone();
    let scrape_ingest = ingest.clone();
    let queue = ingest.clone();
    let receiver = Receiver::new(&cfg.collector, ingest, metrics);
    {
        let rx = receiver.clone();
        registry.sub_registry_with_prefix("slo_collector").register_collector(FnGauge::new(
            "queue_bytes",
            "bytes of the ingest queue budget held by exports queued for the WAL or being written",
            move || queue.queued_bytes() as i64,
        ));
        registry.sub_registry_with_prefix("slo_collector").register_collector(FnGauge::new(
            "receive_bytes",
            "bytes of the receive budget held by exports being received, decompressed and decoded",
            move || rx.receiving_bytes() as i64,
        ));
        if slo_collector::metrics::resident_bytes().is_some() {
            registry.register_collector(FnGauge::new(
                "process_resident_memory_bytes",
                "resident memory size in bytes",
                || slo_collector::metrics::resident_bytes().map_or(0, |b| b as i64),
            ));
        }
    }
    let scrape_health: slo_collector::scrape::Health = Arc::default();

    let grpc_listener = bind(&cfg.listen.otlp_grpc, "OTLP/gRPC").await?;
    let http_listener = bind(&cfg.listen.otlp_http, "OTLP/HTTP").await?;
    let web_listener = bind(&cfg.listen.http, "web").await?;
    println!(
        "slo listening otlp_grpc={} otlp_http={} http={}",
        grpc_listener.local_addr()?,
        http_listener.local_addr()?,
        web_listener.local_addr()?
    );

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::new(Mutex::new(None));
    let fail = {
        let token = token.clone();
        let failure = failure.clone();
        move |e: anyhow::Error| {
            tracing::error!(error = %format!("{e:#}"), "component failed; shutting down");
            failure.lock().get_or_insert(e);
            token.cancel();
        }
    };

    {
        let token = token.clone();
        tracker.spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => tracing::info!("SIGTERM: shutting down"),
                _ = token.cancelled() => {}
            }
            token.cancel();
        });
    }
    {
        let (token, fail, rx) = (token.clone(), fail.clone(), receiver.clone());
        tracker.spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener);
            // tonic decodes a request before our handler (and its budgets) sees it, so bound
            // how many it decodes at once across all connections: at most 8 x
            // max_decompressed_bytes. Requests beyond wait unread, held back by HTTP/2 flow
            // control.
            let served = tonic::transport::Server::builder()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(GRPC_CONCURRENT_EXPORTS))
                .concurrency_limit_per_connection(32)
                .max_concurrent_streams(Some(64))
                .add_service(grpc::service(rx))
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await;
            if let Err(e) = served {
                fail(anyhow::anyhow!("OTLP/gRPC server: {e}"));
            }
        });
    }
    {
        let (token, fail) = (token.clone(), fail.clone());
        let app = http::router(receiver.clone());
        tracker.spawn(async move {
            if let Err(e) = axum::serve(http_listener, app).with_graceful_shutdown(token.cancelled_owned()).await {
                fail(anyhow::anyhow!("OTLP/HTTP server: {e}"));
            }
        });
    }
    {
        let (token, fail) = (token.clone(), fail.clone());
        let ready_health = health.clone();
        let state = slo_web::WebState {
            store: store.clone(),
            registry: Arc::new(registry),
            ready: Arc::new(
                move || if ready_health.is_ready() { Ok(()) } else { Err(ready_health.describe().to_string()) },
            ),
            query_timeout: Duration::from_secs(cfg.query_timeout_s.max(1)),
            slos: Arc::new(slos),
            targets: {
                let health = scrape_health.clone();
                Arc::new(move || {
                    let mut all: Vec<_> = health.lock().values().cloned().collect();
                    all.sort_by(|a, b| a.url.cmp(&b.url));
                    serde_json::to_value(all).unwrap_or_default()
                })
            },
        };
        tracker.spawn(async move {
            if let Err(e) =
                axum::serve(web_listener, slo_web::router(state)).with_graceful_shutdown(token.cancelled_owned()).await
            {
                fail(anyhow::anyhow!("web server: {e}"));
            }
        });
    }
    let kube_active = cfg.kubernetes.active();
    let (discovery_tx, discovery_rx) = tokio::sync::watch::channel(Arc::new(Discovery::default()));
    if !cfg.scrape.targets.is_empty() || (kube_active && cfg.scrape.discover) {
        let discovery = (kube_active && cfg.scrape.discover).then_some(discovery_rx);
        let (token, fail, scrape_cfg, health) =
            (token.clone(), fail.clone(), cfg.scrape.clone(), scrape_health.clone());
        tracker.spawn(async move {
            if let Err(e) = slo_collector::scrape::run(scrape_cfg, scrape_ingest, discovery, health, token).await {
                fail(anyhow::anyhow!("scraper: {e}"));
            }
        });
    }
    if kube_active {
        let client =
            slo_collector::kube::watch::client(cfg.kubernetes.kubeconfig.as_deref()).await.map_err(Failure::usage)?;
        let watch_cfg = WatchConfig {
            data_dir: cfg.data_dir.clone(),
            kinds: kube_kinds,
            events: cfg.kubernetes.events,
            discovery: Some(discovery_tx),
        };
        let (token, fail, store, health) = (token.clone(), fail.clone(), store.clone(), health.clone());
        tracker.spawn(async move {
            while !health.is_ready() {
                if token.is_cancelled() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Err(e) = watch::run(client, watch_cfg, store, kube_ingest, kube_metrics, token).await {
                fail(anyhow::anyhow!("Kubernetes watch: {e}"));
            }
        });
    }
    {
        let (token, fail, health) = (token.clone(), fail.clone(), health.clone());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                if health.describe() == "failed" {
                    fail(anyhow::anyhow!("ingest pipeline failed (see the log above)"));
                    return;
                }
            }
        });
    }

    token.cancelled().await;
    tracker.close();
    let grace = Duration::from_secs(cfg.shutdown_grace_s.max(1));
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("servers did not stop within the grace period");
    }
    drop(receiver);
    let flushed = tokio::time::timeout(grace, tokio::task::spawn_blocking(move || pipeline.shutdown())).await;
    match flushed {
        Ok(Ok(Ok(()))) => tracing::info!("flushed; bye"),
        Ok(Ok(Err(e))) => return Err(anyhow::anyhow!("final flush: {e}").into()),
        Ok(Err(e)) => return Err(anyhow::anyhow!("final flush task: {e}").into()),
        Err(_) => {
            return Err(anyhow::anyhow!("final flush did not finish within {grace:?}; the WAL keeps the data").into());
        }
    }
    match failure.lock().take() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
