//! Serving a router on a listener with the bounds a port open to a cluster needs: a cap on
//! connections, idle and header-read timeouts, a whole-request timeout, TLS (optionally
//! mTLS), and an accept loop that outlives running out of file descriptors.
//!
//! All three ports (OTLP/gRPC, OTLP/HTTP, web) go through [`serve`]: gRPC is tonic's
//! service as an axum router, served over HTTP/2 like the rest.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as Metrics;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

mod conns;
mod tls;

pub use tls::TlsConfig;

use conns::{Admission, Registry};

/// How one listener serves.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// The listener's name in logs and metrics (`otlp_grpc`, `otlp_http`, `web`).
    pub name: &'static str,
    /// Open connections at most; at the cap the idlest is closed for a new one, and a new
    /// one is refused only when none is idle.
    pub max_connections: usize,
    /// A connection with no request in flight for this long (since it was accepted or its
    /// last request) is closed.
    pub idle_timeout: Duration,
    /// HTTP/1 request headers must arrive within this.
    pub header_read_timeout: Duration,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// A request (reading its body and answering) must finish within this; else 408.
    pub request_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Requests in flight per connection (HTTP/2 multiplexes many), `None` for no bound
    /// beyond the streams.
    pub per_connection_requests: Option<usize>,
    /// TLS; `None` for plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenConfig {
    /// Defaults for a listener: 1,024 connections, 60 s idle, 10 s for headers and TLS, 60 s
    /// a request.
    pub fn new(name: &'static str) -> ListenConfig {
        ListenConfig {
            name,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_concurrent_streams: 64,
            per_connection_requests: None,
            tls: None,
        }
    }
}

/// Connection metrics of every listener, labelled by listener.
#[derive(Debug, Clone, Default)]
pub struct ListenMetrics {
    open: Family<[(&'static str, &'static str); 1], Gauge>,
    accepted: Family<[(&'static str, &'static str); 1], Counter>,
    closed: Family<[(&'static str, &'static str); 2], Counter>,
    accept_errors: Family<[(&'static str, &'static str); 1], Counter>,
}

impl ListenMetrics {
    /// Registers the metrics (`slo_listener_*`).
    pub fn new(registry: &mut Metrics) -> ListenMetrics {
        let m = ListenMetrics::default();
        let r = registry.sub_registry_with_prefix("slo_listener");
        r.register("connections", "open connections", m.open.clone());
        r.register("accepted", "connections accepted", m.accepted.clone());
        r.register(
            "closed",
            "connections closed by the server, by reason (idle, evicted, refused, tls, timeout)",
            m.closed.clone(),
        );
        r.register(
            "accept_errors",
            "failed accepts (such as running out of file descriptors)",
            m.accept_errors.clone(),
        );
        m
    }

    fn closed(&self, listener: &'static str, reason: &'static str) {
        self.closed.get_or_create(&[("listener", listener), ("reason", reason)]).inc();
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets requests in flight finish
/// (HTTP graceful shutdown) while the caller's grace period runs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: ListenConfig,
    metrics: ListenMetrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::new(cfg.max_connections));
    let tracker = TaskTracker::new();
    let acceptor = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let label = [("listener", cfg.name)];
    let mut accept_error_logged = None::<tokio::time::Instant>;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (or memory for sockets): shed by waiting, never exit.
                metrics.accept_errors.get_or_create(&label).inc();
                if accept_error_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(listener = cfg.name, error = %e, "accept failed; retrying");
                    accept_error_logged = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = match registry.admit() {
            Admission::Admitted { conn, evicted } => {
                if evicted {
                    metrics.closed(cfg.name, "evicted");
                }
                conn
            }
            Admission::Refused => {
                metrics.closed(cfg.name, "refused");
                drop(tcp);
                continue;
            }
        };
        metrics.accepted.get_or_create(&label).inc();
        metrics.open.get_or_create(&label).inc();
        let _ = tcp.set_nodelay(true);
        let (router, cfg, metrics, registry, acceptor, shutdown) =
            (router.clone(), cfg.clone(), metrics.clone(), registry.clone(), acceptor.clone(), shutdown.clone());
        tracker.spawn(async move {
            let io = tcp;
            let reason = match acceptor {
                None => connection(TokioIo::new(io), router, &cfg, &conn, &shutdown).await,
                Some(acceptor) => match tokio::time::timeout(cfg.tls_handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => connection(TokioIo::new(tls), router, &cfg, &conn, &shutdown).await,
                    Ok(Err(e)) => {
                        tracing::debug!(listener = cfg.name, %peer, error = %e, "TLS handshake failed");
                        Some("tls")
                    }
                    Err(_) => Some("timeout"),
                },
            };
            if let Some(reason) = reason {
                metrics.closed(cfg.name, reason);
            }
            registry.remove(&conn);
            metrics.open.get_or_create(&[("listener", cfg.name)]).dec();
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Serves one connection; returns why the server closed it, if it did.
async fn connection<I>(
    io: TokioIo<I>,
    router: Router,
    cfg: &ListenConfig,
    conn: &Arc<conns::Conn>,
    shutdown: &CancellationToken,
) -> Option<&'static str>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(cfg.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let limit = cfg.per_connection_requests.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
    let (request_timeout, tracked) = (cfg.request_timeout, conn.clone());
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (router, tracked, limit) = (router.clone(), tracked.clone(), limit.clone());
        async move {
            let _in_flight = tracked.begin();
            let _permit = match &limit {
                Some(l) => l.clone().acquire_owned().await.ok(),
                None => None,
            };
            let call = router.oneshot(req.map(Body::new));
            match tokio::time::timeout(request_timeout, call).await {
                Ok(r) => r,
                Err(_) => Ok::<_, Infallible>(timed_out(request_timeout)),
            }
        }
    });
    let served = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    let check = (cfg.idle_timeout / 4).max(Duration::from_millis(250));
    let idle_ms = cfg.idle_timeout.as_millis() as u64;
    let mut closing = None;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(listener = cfg.name, error = %e, "connection ended with an error");
                }
                return closing;
            }
            _ = conn.closing(), if closing.is_none() => {
                closing = Some("evicted");
                served.as_mut().graceful_shutdown();
            }
            _ = shutdown.cancelled(), if closing.is_none() => {
                closing = Some("shutdown");
                served.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(check) => {
                if conn.idle_ms() >= idle_ms {
                    return Some("idle");
                }
            }
        }
    }
}

fn timed_out(limit: Duration) -> Response<Body> {
    let body = format!("{{\"error\":\"the request did not finish within {limit:?}\"}}");
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    resp
}
