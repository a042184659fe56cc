//! A kubeconfig that points `kubectl` and `kube::Client` at the simulated API server.

use std::path::Path;

use crate::{Error, Result};

/// The context (and cluster and user) name in the written kubeconfig.
pub(super) const CONTEXT: &str = "slo-sim";

/// Writes a kubeconfig for `server_url` (plain http, no auth) with a context named `slo-sim`
/// whose default namespace is `namespace`.
pub fn write_kubeconfig(path: &Path, server_url: &str, namespace: &str) -> Result<()> {
    if !(server_url.starts_with("http://") || server_url.starts_with("https://")) {
        return Err(Error::Invalid(format!("kubeconfig server url {server_url:?} is not http(s)")));
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT, "user": {}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    });
    let yaml = serde_yaml::to_string(&config).map_err(|e| Error::Invalid(format!("kubeconfig: {e}")))?;
    std::fs::write(path, yaml).map_err(|e| Error::io(format!("writing kubeconfig {}", path.display()), e))
}
