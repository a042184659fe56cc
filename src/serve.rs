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
use slo_collector::FnGauge;
use slo_collector::kube::watch::{Baseline, KubeMetrics, WatchConfig};
use slo_collector::otlp::{Receiver, grpc, http};
use slo_collector::scrape::Discovery;
use slo_collector::{CollectorMetrics, Pipeline};
use slo_store::{Store, StoreMetrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::{Failure, ServeArgs};
use crate::config::ServeConfig;
use crate::doors::Doors;

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
    if let Some(c) = args.kube_clock {
        cfg.kubernetes.clock = c;
    }
    if let Some(r) = args.role {
        cfg.role = r;
    }
    cfg.scrape.targets.extend(args.scrape.into_iter().map(slo_collector::scrape::config::StaticTarget::Url));
}

/// What the web listener serves, beside the config.
pub(crate) struct Web {
    pub store: Store,
    pub registry: Registry,
    pub ready: slo_web::Readiness,
    pub slos: Vec<slo_analyzer::spec::Slo>,
    pub alerts: slo_web::Alerts,
    pub alert_queue: slo_web::AlertQueue,
    pub regression_metrics: slo_web::RegressionMetrics,
    pub listen_metrics: slo_web::ListenMetrics,
    pub targets: slo_web::TargetsStatus,
}

/// Starts the web listener (dashboard, API, /metrics, the Alertmanager receiver) and what
/// runs beside it: explanations kept warm, the continuous analyzer, alert forwarding.
pub(crate) fn start_web(
    cfg: &ServeConfig,
    doors: &Doors,
    listener: TcpListener,
    web: Web,
    tracker: &TaskTracker,
    token: &CancellationToken,
    fail: impl Fn(anyhow::Error) + Send + 'static,
) -> Result<(), Failure> {
    let state = slo_web::WebState {
        store: web.store,
        registry: Arc::new(web.registry),
        ready: web.ready,
        runner: slo_web::Runner::new(slo_web::RunnerConfig {
            timeout: Duration::from_secs(cfg.query_timeout_s.max(1)),
            max_in_flight: cfg.query_max_in_flight.max(1),
            limits: slo_store::QueryLimits {
                memory_bytes: cfg.query_memory_mib.max(1) << 20,
                result_bytes: cfg.query_result_mib.max(1) << 20,
                ..Default::default()
            },
            ..Default::default()
        })
        .context("starting the query threads")?,
        slos: Arc::new(web.slos),
        verdicts: slo_web::Verdicts::default(),
        alerts: web.alerts,
        targets: web.targets,
    };
    let open: &[&'static str] =
        if cfg.auth.metrics_open { &["/healthz", "/readyz", "/metrics"] } else { &["/healthz", "/readyz"] };
    tracker.spawn(slo_web::keep_warm(state.clone(), token.clone()));
    let every = Duration::from_secs(cfg.analyze_every_s.max(1));
    tracker.spawn(slo_web::watch_regressions(state.clone(), web.regression_metrics, every, token.clone()));
    tracker.spawn(slo_web::run_alerts(state.clone(), web.alert_queue, cfg.alerts.clone(), token.clone()));
    let router = slo_web::Guard::new(doors.read.clone(), open).wrap(slo_web::router(state));
    let mut lc = doors.listen_config(cfg, "web");
    lc.request_timeout = Duration::from_secs(cfg.query_timeout_s.max(1) + 10);
    let (metrics, token) = (web.listen_metrics, token.clone());
    tracker.spawn(async move {
        if let Err(e) = slo_web::serve(listener, router, lc, metrics, token).await {
            fail(anyhow::anyhow!("web server: {e}"));
        }
    });
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub(crate) fn spawn_signals(tracker: &TaskTracker, token: &CancellationToken) {
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

pub(crate) async fn bind(addr: &str, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.with_context(|| format!("binding {what} to {addr}")).map_err(Failure::from)
}

/// Runs the server until a signal or a failure.
pub(crate) async fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut cfg = ServeConfig::load(args.config.as_deref()).map_err(Failure::usage)?;
    let slos = match args.config.as_deref() {
        Some(path) => slo_analyzer::spec::load_any(path).map_err(Failure::usage)?,
        None => Vec::new(),
    };
    let check_only = args.check_config;
    apply_flags(&mut cfg, args);
    let doors = Doors::load(&cfg)?;
    cfg.collector.sampling.check().map_err(Failure::usage_msg)?;
    cfg.collector.ingest.check().map_err(Failure::usage_msg)?;
    cfg.collector.sampling.slo_thresholds = crate::rules::slo_thresholds(&slos);
    let remote = cfg.remote().map_err(Failure::usage)?;
    let collector_name = cfg.collector_name().map_err(Failure::usage)?;
    if check_only {
        cfg.kubernetes.watched().map_err(Failure::usage)?;
        cfg.alerts.check().map_err(Failure::usage_msg)?;
        crate::rules::generate(
            &slos,
            &crate::rules::Options {
                url: None,
                scrape_interval_ns: 1_000_000_000,
                regression_severity: "ticket".into(),
            },
        )
        .map_err(Failure::usage_msg)?;
        println!(
            "config ok: role {}, data_dir {}{}, listen otlp_grpc={} otlp_http={} http={}, {} SLO(s){}, kubernetes watch {}, {} static scrape target(s), {} alert forward(s)",
            format!("{:?}", cfg.role).to_lowercase(),
            cfg.data_dir.display(),
            match (cfg.role, &remote) {
                (crate::config::Role::Query, _) => cfg
                    .store
                    .object_store
                    .as_ref()
                    .map_or(String::new(), |o| format!(", reads the object store {}", o.url)),
                (_, Some(r)) => format!(", object store {}", r.url()),
                (_, None) => String::new(),
            },
            cfg.listen.otlp_grpc,
            cfg.listen.otlp_http,
            cfg.listen.http,
            slos.len(),
            if slos.is_empty() {
                String::new()
            } else {
                format!(" ({})", slos.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "))
            },
            match (&cfg.kubernetes.lease, cfg.kubernetes.active_on(&collector_name)) {
                (_, false) => "off".to_string(),
                (Some(l), true) => format!(
                    "on while this collector holds the Lease {}{}",
                    l.namespace.as_deref().map_or(String::new(), |ns| format!("{ns}/")),
                    l.name
                ),
                (None, true) => "on".to_string(),
            },
            cfg.scrape.targets.len(),
            cfg.alerts.forward.len(),
        );
        return Ok(());
    }
    if cfg.role == crate::config::Role::Query {
        return crate::query_node::run(cfg, slos, doors).await;
    }
    let mut registry = Registry::default();
    let store_metrics = StoreMetrics::new(&mut registry);
    let metrics = CollectorMetrics::with_sli(&mut registry, &crate::rules::sli_bounds(&slos));
    let kube_metrics = KubeMetrics::new(&mut registry);
    let kube_kinds = cfg.kubernetes.watched().map_err(Failure::usage)?;
    let mut store_cfg = cfg.store_config();
    store_cfg.remote = remote;
    let collector_cfg = cfg.collector.clone();
    let (store, wals) =
        tokio::task::spawn_blocking(move || slo_collector::open_store(store_cfg, store_metrics, &collector_cfg))
            .await
            .context("opening the store")??;
    tracing::info!(data_dir = %cfg.data_dir.display(), shards = wals.len(),
        wal_segments = wals.iter().map(|(_, r)| r.wal_segments.len()).sum::<usize>(),
        object_store = %store.config().remote.as_ref().map_or("none".into(), |r| r.url()), "store opened");
    let uploader = slo_store::UploaderThread::start(&store).context("starting the uploader")?;
    let (ingest, pipeline) =
        Pipeline::start(store.clone(), wals, &cfg.collector, metrics.clone(), false).map_err(Failure::usage)?;
    let health = pipeline.health();
    let kube_ingest = ingest.clone();
    let scrape_ingest = ingest.clone();
    let queue = ingest.clone();
    let time_rules = cfg.collector.otlp.time_rules(cfg.store_config().retention);
    let gpu_workloads = metrics.gpu_workloads.clone();
    let receiver = Receiver::new(&cfg.collector, time_rules, ingest, metrics);
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
        if slo_collector::resident_bytes().is_some() {
            registry.register_collector(FnGauge::new(
                "process_resident_memory_bytes",
                "resident memory size in bytes",
                || slo_collector::resident_bytes().map_or(0, |b| b as i64),
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

    spawn_signals(&tracker, &token);
    let listen_metrics = slo_web::ListenMetrics::new(&mut registry);
    let regression_metrics = slo_web::RegressionMetrics::new(&mut registry);
    cfg.alerts.check().map_err(Failure::usage_msg)?;
    let (alerts, alert_queue) = slo_web::Alerts::open(&cfg.data_dir.join("alerts"), &cfg.alerts, &mut registry)
        .with_context(|| format!("opening the alert log in {}", cfg.data_dir.join("alerts").display()))?;
    doors.warn_if_open([&grpc_listener, &http_listener, &web_listener]);
    {
        let (token, fail, rx, tokens) = (token.clone(), fail.clone(), receiver.clone(), doors.ingest.clone());
        let mut lc = doors.listen_config(&cfg, "otlp_grpc");
        // HTTP/2 multiplexes: bound the requests in flight on one connection too.
        lc.per_connection_requests = Some(32);
        // The receiver decodes a request's bytes only after this layer, so bound how many
        // it decodes at once across all connections: at most 8 x max_decompressed_bytes.
        // Requests beyond wait unread, held back by HTTP/2 flow control.
        let router = tonic::service::Routes::new(grpc::service(rx))
            .into_axum_router()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(GRPC_CONCURRENT_EXPORTS))
            .fallback(|| async {
                // Another gRPC service: UNIMPLEMENTED, as tonic's own server answers.
                ([("content-type", "application/grpc"), ("grpc-status", "12")], "")
            });
        let router = slo_web::Guard::new(tokens, &[]).wrap(router);
        let metrics = listen_metrics.clone();
        tracker.spawn(async move {
            if let Err(e) = slo_web::serve(grpc_listener, router, lc, metrics, token).await {
                fail(anyhow::anyhow!("OTLP/gRPC server: {e}"));
            }
        });
    }
    {
        let (token, fail, tokens) = (token.clone(), fail.clone(), doors.ingest.clone());
        let router = slo_web::Guard::new(tokens, &[]).wrap(http::router(receiver.clone()));
        let (lc, metrics) = (doors.listen_config(&cfg, "otlp_http"), listen_metrics.clone());
        tracker.spawn(async move {
            if let Err(e) = slo_web::serve(http_listener, router, lc, metrics, token).await {
                fail(anyhow::anyhow!("OTLP/HTTP server: {e}"));
            }
        });
    }
    let ready_health = health.clone();
    let targets = {
        let health = scrape_health.clone();
        Arc::new(move || {
            let mut all: Vec<_> = health.lock().values().cloned().collect();
            all.sort_by(|a, b| a.url.cmp(&b.url));
            serde_json::to_value(all).unwrap_or_default()
        })
    };
    let web = Web {
        store: store.clone(),
        registry,
        ready: Arc::new(move || match ready_health.not_ready_because() {
            None => Ok(()),
            Some(why) => Err(why),
        }),
        slos,
        alerts,
        alert_queue,
        regression_metrics,
        listen_metrics: listen_metrics.clone(),
        targets,
    };
    start_web(&cfg, &doors, web_listener, web, &tracker, &token, fail.clone())?;
    doors.keep_tokens_fresh(&tracker, token.clone());
    let kube_active = cfg.kubernetes.active_on(&collector_name);
    if cfg.kubernetes.active() && !kube_active {
        tracing::info!(watcher = ?cfg.kubernetes.watcher, "not the designated watcher: the Kubernetes watch and discovered scrapes run there");
    }
    let (discovery_tx, discovery_rx) = tokio::sync::watch::channel(Arc::new(Discovery::default()));
    if !cfg.scrape.targets.is_empty() || (kube_active && cfg.scrape.discover) {
        let discovery = (kube_active && cfg.scrape.discover).then_some(discovery_rx);
        let (token, fail, scrape_cfg, health) =
            (token.clone(), fail.clone(), cfg.scrape.clone(), scrape_health.clone());
        let workloads = gpu_workloads.clone();
        tracker.spawn(async move {
            if let Err(e) =
                slo_collector::scrape::run(scrape_cfg, scrape_ingest, discovery, health, workloads, token).await
            {
                fail(anyhow::anyhow!("scraper: {e}"));
            }
        });
    }
    // The Lease is given up after the last upload (below), so the next holder reads this
    // collector's final baseline.
    let mut lease_release = None;
    if kube_active {
        let client =
            slo_collector::kube::watch::client(cfg.kubernetes.kubeconfig.as_deref()).await.map_err(Failure::usage)?;
        let watcher = crate::watcher::Watcher {
            client: client.clone(),
            cfg: WatchConfig {
                data_dir: cfg.data_dir.clone(),
                kinds: kube_kinds,
                events: cfg.kubernetes.events,
                discovery: Some(discovery_tx),
                clock: cfg.kubernetes.clock,
                baseline: Baseline::Saved,
                known_keys: Default::default(),
                handed_on: Default::default(),
            },
            store: store.clone(),
            ingest: kube_ingest,
            metrics: kube_metrics,
            health: health.clone(),
        };
        let (token, fail) = (token.clone(), fail.clone());
        match cfg.kubernetes.lease.clone() {
            Some(lease) => {
                let root = match &cfg.store.object_store {
                    Some(o) => Some(slo_store::Remote::open(o).map_err(|e| Failure::usage(anyhow::anyhow!("{e}")))?),
                    None => None,
                };
                lease_release = Some((client, lease.clone(), collector_name.clone()));
                let identity = collector_name.clone();
                tracker.spawn(async move {
                    if let Err(e) = watcher.run_elected(lease, identity, root, token).await {
                        fail(anyhow::anyhow!("Kubernetes watch: {e}"));
                    }
                });
            }
            None => {
                tracker.spawn(async move {
                    if let Err(e) = watcher.run(token).await {
                        fail(anyhow::anyhow!("Kubernetes watch: {e}"));
                    }
                });
            }
        }
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
    if let Some(u) = uploader {
        // One last round, bounded: what it does not upload goes up after the next start.
        let _ = tokio::task::spawn_blocking(move || u.stop()).await;
    }
    if let Some((client, lease, identity)) = lease_release {
        let released =
            tokio::time::timeout(grace, slo_collector::kube::lease::release(client, &lease, &identity)).await;
        match released {
            Ok(Ok(true)) => tracing::info!(lease = %lease.name, "Lease released: another collector watches now"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(lease = %lease.name, error = %e, "Lease not released; another collector takes it when it expires")
            }
            Err(_) => {
                tracing::warn!(lease = %lease.name, "Lease not released in time; another collector takes it when it expires")
            }
        }
    }
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
