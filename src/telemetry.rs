//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info` for serve, `warn`
//! for one-shot commands, whose stdout is data, and errors only for the demo, whose
//! simulated cluster churns pods by design: a scrape of a pod just deleted, or the watch
//! connecting a moment before the simulator listens, is not news there).

use tracing_subscriber::EnvFilter;

/// The default filter of `slo serve`.
pub(crate) const SERVE: &str = "info";
/// ... of one-shot commands.
pub(crate) const ONE_SHOT: &str = "warn";
/// ... of `slo demo`.
pub(crate) const DEMO: &str = "error,kube_runtime=off,kube_client=off";

/// Installs the subscriber once, with `default` unless `RUST_LOG` is set.
pub(crate) fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
