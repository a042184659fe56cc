//! Reading an object store that one or several collectors write: the query side.
//!
//! Each collector writes its own prefix (`<root>/<collector>/`) and its own manifest there;
//! a reader given the root reads every manifest and sees the union of their files (a
//! single collector writing the root itself is read the same way). Nothing is shuffled:
//! the rollups are mergeable sketches and each table is the union of the segments.
//!
//! A collector that stopped uploading (down, or its object store access broken) shows as
//! one whose newest data is behind the others' ([`CollectorView`], [`lagging`]), so a
//! reader can say so instead of showing a silent gap.

use std::path::PathBuf;

use crate::error::Result;
use crate::manifest::{Manifest, SegmentFile};
use crate::metrics::StoreMetrics;
use crate::remote::{MANIFEST, Remote, RemoteManifest};
use crate::store::{Store, StoreConfig};

/// One collector as the object store shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorView {
    /// Its prefix below the root (empty: the root itself).
    pub prefix: String,
    /// The name it writes in its manifest.
    pub collector: String,
    /// When it last wrote its manifest (its clock, ns).
    pub written_unix_nano: i64,
    /// Its newest row's time, if any (ns).
    pub newest_data: Option<i64>,
    /// Files it lists.
    pub files: usize,
}

/// Collectors whose newest data is more than `behind_ns` older than the newest
/// collector's, with a sentence for people.
pub fn lagging(views: &[CollectorView], behind_ns: i64) -> Vec<(CollectorView, String)> {
    let Some(newest) = views.iter().filter_map(|v| v.newest_data).max() else { return Vec::new() };
    views
        .iter()
        .filter(|v| v.newest_data.is_none_or(|t| newest - t > behind_ns))
        .map(|v| {
            let said = match v.newest_data {
                Some(t) => format!(
                    "its newest data is {} min older than the newest collector's",
                    (newest - t) / 60_000_000_000
                ),
                None => "it has no data".to_string(),
            };
            (
                v.clone(),
                format!(
                    "collector {:?} ({}/): {said}; anything it holds since is not in the object store yet",
                    v.collector, v.prefix
                ),
            )
        })
        .collect()
}

/// Every collector's manifest at or one level below `root`: their files (paths relative
/// to `root`, all uploaded) and what each says of itself.
async fn read_bucket(root: &Remote) -> Result<(Vec<SegmentFile>, Vec<CollectorView>)> {
    let mut places = vec![String::new()];
    places.extend(root.children().await?);
    let mut files: Vec<SegmentFile> = Vec::new();
    let mut views = Vec::new();
    for prefix in places {
        let at = if prefix.is_empty() { root.clone() } else { root.child(&prefix) };
        let Some(bytes) = at.get_opt(MANIFEST).await? else { continue };
        let m = RemoteManifest::decode(&bytes, &at)?;
        views.push(CollectorView {
            prefix: prefix.clone(),
            collector: m.collector.clone(),
            written_unix_nano: m.written_unix_nano,
            newest_data: m.newest_data(),
            files: m.files.len(),
        });
        files.extend(m.files.into_iter().map(|f| SegmentFile {
            path: if prefix.is_empty() { f.path } else { format!("{prefix}/{}", f.path) },
            uploaded: true,
            ..f
        }));
    }
    if views.is_empty() {
        return Err(crate::error::Error::Remote {
            op: "open",
            what: root.url(),
            detail: "no collector's manifest.json here or one level below".into(),
        });
    }
    Ok((files, views))
}

impl Store {
    /// Opens the object store at `root` to read what every collector below it (or the one
    /// writing `root` itself) has uploaded. Read-only: nothing is written there.
    pub async fn open_bucket(root: Remote) -> Result<(Store, Vec<CollectorView>)> {
        let (files, views) = read_bucket(&root).await?;
        let store = Store::bucket_reader(root);
        store.set_files(files);
        Ok((store, views))
    }

    /// A reader of the object store at `root` that has read nothing yet: its first
    /// [`Store::refresh_bucket`] fills it (a query node that starts before any collector
    /// has uploaded).
    pub fn bucket_reader(root: Remote) -> Store {
        let mut cfg = StoreConfig::new(PathBuf::new());
        cfg.retention = None;
        cfg.remote = Some(root.clone());
        let empty = Manifest { version: 1, next_flush_id: 1, ..Manifest::default() };
        Store::from_parts(cfg, empty, StoreMetrics::unregistered(), None, Some(root))
    }

    /// Reads the manifests of a store [`Store::open_bucket`] opened again: what the
    /// collectors uploaded since becomes visible. On error the view stays as it was.
    pub async fn refresh_bucket(&self) -> Result<Vec<CollectorView>> {
        let Some(root) = self.config().remote.clone() else { return Ok(Vec::new()) };
        let (files, views) = read_bucket(&root).await?;
        self.set_files(files);
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(prefix: &str, newest: Option<i64>) -> CollectorView {
        CollectorView {
            prefix: prefix.into(),
            collector: prefix.into(),
            written_unix_nano: 0,
            newest_data: newest,
            files: 1,
        }
    }

    #[test]
    fn a_collector_behind_the_others_is_named() {
        let min = 60_000_000_000;
        let v = [view("a", Some(100 * min)), view("b", Some(90 * min)), view("c", Some(99 * min)), view("d", None)];
        let l = lagging(&v, 5 * min);
        let names: Vec<&str> = l.iter().map(|(v, _)| v.prefix.as_str()).collect();
        assert_eq!(names, vec!["b", "d"]);
        assert!(l[0].1.contains("10 min older"), "{}", l[0].1);
    }
}
