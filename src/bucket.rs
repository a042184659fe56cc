//! `--bucket`: `slo query` and `slo explain` over an object store that one or several
//! collectors write (each its own prefix below the URL), read-only.

use slo_store::{RemoteOptions, Store};

use crate::cli::Failure;

/// A collector whose newest data is this much behind the newest one is named on stderr.
const BEHIND_NS: i64 = 5 * 60 * 1_000_000_000;

/// Opens `url` (`s3://bucket/prefix`; endpoint, region and credentials from the `AWS_*`
/// environment) and says on stderr which collectors lag behind the others.
pub(crate) async fn open(url: &str) -> Result<Store, Failure> {
    let root = slo_store::Remote::open(&RemoteOptions { url: url.to_string(), ..Default::default() })
        .map_err(Failure::usage)?;
    let (store, views) = Store::open_bucket(root).await.map_err(Failure::usage)?;
    tracing::debug!(collectors = views.len(), "opened the object store");
    for (_, said) in slo_store::lagging(&views, BEHIND_NS) {
        eprintln!("warning: {said}");
    }
    Ok(store)
}
