//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info` for serve, `warn`
//! for one-shot commands, whose stdout is data).

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once.
pub fn init(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
