//! The locks on `slo serve`'s ports: tokens, TLS, connection bounds, file descriptors, and
//! a loud word at start when a port reaches beyond the host unlocked.

use std::sync::Arc;
use std::time::Duration;

use slo_web::{ListenConfig, Tokens};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Failure;
use crate::config::ServeConfig;

/// File descriptors kept for everything but connections: WAL and Parquet segments, the
/// manifest, scrapes, the Kubernetes watch, queries reading segments.
const FD_RESERVE: u64 = 512;

/// How often token files are re-read.
const TOKEN_RELOAD: Duration = Duration::from_secs(15);

/// What every listener is served with.
#[derive(Debug)]
pub(crate) struct Doors {
    /// Tokens that may send telemetry; `None`: open.
    pub ingest: Option<Arc<Tokens>>,
    /// Tokens that may read; `None`: open.
    pub read: Option<Arc<Tokens>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
}

impl Doors {
    /// Loads tokens and TLS (every problem is a usage error naming the file or variable)
    /// and raises the file-descriptor limit. Before any port is bound.
    pub(crate) fn load(cfg: &ServeConfig) -> Result<Doors, Failure> {
        let env = |name: &str| std::env::var(name).ok();
        let ingest = Tokens::load(
            "ingest",
            "SLO_INGEST_TOKENS",
            env("SLO_INGEST_TOKENS").as_deref(),
            &cfg.auth.ingest_token_files,
        )
        .map_err(Failure::usage_msg)?;
        let read =
            Tokens::load("read", "SLO_READ_TOKENS", env("SLO_READ_TOKENS").as_deref(), &cfg.auth.read_token_files)
                .map_err(Failure::usage_msg)?;
        let tls = cfg.tls.server_config().map_err(Failure::usage_msg)?;
        let max_connections = fit_connections(cfg.connections.max_per_listener, 3);
        Ok(Doors { ingest, read, tls, max_connections })
    }

    /// Warns, loudly, about each listener that reaches beyond loopback unlocked.
    pub(crate) fn warn_if_open(&self, listeners: [&TcpListener; 3]) {
        let names = ["OTLP/gRPC", "OTLP/HTTP", "web"];
        for ((l, name), tokens) in listeners.iter().zip(names).zip([&self.ingest, &self.ingest, &self.read]) {
            let Ok(addr) = l.local_addr() else { continue };
            if addr.ip().is_loopback() {
                continue;
            }
            if tokens.is_none() {
                tracing::warn!(
                    listener = name,
                    %addr,
                    "LISTENING BEYOND LOOPBACK WITHOUT A TOKEN: anyone who reaches {addr} can {}; set auth tokens (README, \"Locking the doors\")",
                    if name == "web" { "query every table and read /metrics" } else { "write telemetry" }
                );
            } else if self.tls.is_none() {
                tracing::warn!(listener = name, %addr, "tokens travel in clear text: set tls.cert_file and tls.key_file");
            }
        }
    }

    /// The listener settings of the config, for the listener `name`.
    pub(crate) fn listen_config(&self, cfg: &ServeConfig, name: &'static str) -> ListenConfig {
        let c = &cfg.connections;
        let mut lc = ListenConfig::new(name);
        lc.max_connections = self.max_connections;
        lc.idle_timeout = Duration::from_secs(c.idle_timeout_s.max(1));
        lc.header_read_timeout = Duration::from_secs(c.header_read_timeout_s.max(1));
        lc.tls_handshake_timeout = lc.header_read_timeout;
        lc.request_timeout = Duration::from_secs(c.request_timeout_s.max(1));
        lc.tls = self.tls.clone();
        lc
    }

    /// Re-reads token files every 15 s until `token` is cancelled; a file that fails to
    /// read keeps the tokens it had, with a warning.
    pub(crate) fn keep_tokens_fresh(&self, tracker: &TaskTracker, token: CancellationToken) {
        let sets: Vec<Arc<Tokens>> =
            [&self.ingest, &self.read].into_iter().flatten().filter(|t| t.has_files()).cloned().collect();
        if sets.is_empty() {
            return;
        }
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(TOKEN_RELOAD) => {}
                }
                for t in &sets {
                    if let Err(e) = t.reload() {
                        tracing::warn!(error = %e, "token file not re-read; the previous tokens stay valid");
                    }
                }
            }
        });
    }
}

/// Raises the soft file-descriptor limit to the hard one and returns the connections each
/// of `listeners` may hold so that all of them together leave [`FD_RESERVE`] free: running
/// out of descriptors must shed connections, never fail a WAL or segment write.
fn fit_connections(wanted: usize, listeners: u64) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (limit.current, limit.maximum)
        && cur < max
    {
        limit.current = Some(max);
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit.current = Some(cur);
        }
    }
    let Some(fds) = limit.current else { return wanted.max(1) };
    let room = (fds.saturating_sub(FD_RESERVE) / listeners.max(1)).max(16) as usize;
    if wanted > room {
        tracing::warn!(
            wanted,
            allowed = room,
            open_files = fds,
            "connections.max_per_listener lowered to fit the file-descriptor limit (raise `ulimit -n` for more)"
        );
        return room;
    }
    wanted.max(1)
}
