//! Reading an object store that one or several collectors write: the query side.
//!
//! Each collector writes its own prefix (`<root>/<collector>/`) and its own manifest there;
//! a reader given the root reads every manifest and sees the union of their files (a
//! single collector writing the root itself is read the same way). Nothing is shuffled:
//! the rollups are mergeable sketches and each table is the union of the segments.
//!
//! A collector that stopped uploading (down, or its object store access broken) shows as
//! one whose newest data is behind the others' ([`CollectorView`], [`lagging`]), so a
//! reader can say so instead of showing a silent gap. A collector whose manifest cannot be
//! read or does not decode costs only itself: it is named with the reason, and the others
//! are read (a refresh keeps what it last read of that collector).

use std::path::PathBuf;
use std::time::Duration;

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
    /// Why its manifest could not be read, when it could not.
    pub problem: Option<String>,
    /// How long objects it stops listing stay readable, if its manifest says (s).
    pub read_grace_s: Option<u64>,
}

/// Collectors whose newest data is more than `behind_ns` older than the newest
/// collector's, with a sentence for people.
pub fn lagging(views: &[CollectorView], behind_ns: i64) -> Vec<(CollectorView, String)> {
    let Some(newest) = views.iter().filter_map(|v| v.newest_data).max() else { return Vec::new() };
    views
        .iter()
        .filter(|v| v.problem.is_some() || v.newest_data.is_none_or(|t| newest - t > behind_ns))
        .map(|v| {
            let said = match (&v.problem, v.newest_data) {
                (Some(p), _) => format!("its manifest could not be read ({p})"),
                (None, Some(t)) => format!(
                    "its newest data is {} min older than the newest collector's",
                    (newest - t) / 60_000_000_000
                ),
                (None, None) => "it has no data".to_string(),
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

/// Collectors that delete objects they stop listing sooner than a reader that reads the
/// manifests every `refresh` and runs a query for up to `query` may still read them, with a
/// sentence for people: such a reader's query can fail on a deleted object (it names it).
pub fn grace_too_short(views: &[CollectorView], refresh: Duration, query: Duration) -> Vec<(CollectorView, String)> {
    let needed = (refresh + query).as_secs();
    views
        .iter()
        .filter(|v| v.read_grace_s.is_some_and(|g| g < needed))
        .map(|v| {
            let grace = v.read_grace_s.unwrap_or_default();
            let said = format!(
                "collector {:?} ({}/) deletes objects it stops listing after {grace} s, but this reader reads the \
                 manifests every {} s and runs queries for up to {} s: a query may meet a deleted file and fail. \
                 Give the collectors this reader's query_node.refresh_s and query_timeout_s (their grace is \
                 query_timeout_s + 5 + query_node.refresh_s), or lower this reader's",
                v.collector,
                v.prefix,
                refresh.as_secs(),
                query.as_secs()
            );
            (v.clone(), said)
        })
        .collect()
}

/// Every collector's manifest at or one level below `root`: their files (paths relative
/// to `root`, all uploaded) and what each says of itself. One whose manifest cannot be
/// fetched or decoded is a view with its problem and no files.
async fn read_bucket(root: &Remote) -> Result<(Vec<SegmentFile>, Vec<CollectorView>)> {
    let mut places = vec![String::new()];
    places.extend(root.children().await?);
    let mut files: Vec<SegmentFile> = Vec::new();
    let mut views = Vec::new();
    for prefix in places {
        let at = if prefix.is_empty() { root.clone() } else { root.child(&prefix) };
        let read = match at.get_opt(MANIFEST).await {
            Ok(None) => continue,
            Ok(Some(bytes)) => RemoteManifest::decode(&bytes, &at),
            Err(e) => Err(e),
        };
        let m = match read {
            Ok(m) => m,
            Err(e) => {
                views.push(CollectorView {
                    collector: if prefix.is_empty() { root.url() } else { prefix.clone() },
                    prefix: prefix.clone(),
                    written_unix_nano: 0,
                    newest_data: None,
                    files: 0,
                    problem: Some(e.to_string()),
                    read_grace_s: None,
                });
                continue;
            }
        };
        views.push(CollectorView {
            prefix: prefix.clone(),
            collector: m.collector.clone(),
            written_unix_nano: m.written_unix_nano,
            newest_data: m.newest_data(),
            files: m.files.len(),
            problem: None,
            read_grace_s: (m.read_grace_s > 0).then_some(m.read_grace_s),
        });
        files.extend(m.files.into_iter().map(|f| SegmentFile {
            path: if prefix.is_empty() { f.path } else { format!("{prefix}/{}", f.path) },
            uploaded: true,
            ..f
        }));
    }
    if views.iter().all(|v| v.problem.is_some()) {
        let problems: Vec<String> =
            views.iter().filter_map(|v| Some(format!("{}: {}", v.prefix, v.problem.as_ref()?))).collect();
        return Err(crate::error::Error::Remote {
            op: "open",
            what: root.url(),
            detail: if problems.is_empty() {
                "no collector's manifest.json here or one level below".into()
            } else {
                format!("no collector's manifest.json could be read: {}", problems.join("; "))
            },
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
    /// collectors uploaded since becomes visible. On error the view stays as it was; a
    /// collector whose manifest cannot be read now keeps the files last read of it.
    pub async fn refresh_bucket(&self) -> Result<Vec<CollectorView>> {
        let Some(root) = self.config().remote.clone() else { return Ok(Vec::new()) };
        let (mut files, views) = read_bucket(&root).await?;
        let unread: Vec<&CollectorView> = views.iter().filter(|v| v.problem.is_some()).collect();
        if !unread.is_empty() {
            // A collector's files are below its prefix; the root's own, below their table.
            let of = |f: &SegmentFile, v: &CollectorView| match v.prefix.as_str() {
                "" => f.path.starts_with(&format!("{}/", f.table)),
                prefix => f.path.starts_with(&format!("{prefix}/")),
            };
            let kept = self.with_manifest(|m| {
                m.files.iter().filter(|f| unread.iter().any(|v| of(f, v))).cloned().collect::<Vec<_>>()
            });
            files.extend(kept);
        }
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
            problem: None,
            read_grace_s: Some(50),
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

    #[test]
    fn a_collector_deleting_sooner_than_a_reader_reads_is_named() {
        let mut v = [view("a", Some(1)), view("b", Some(1)), view("c", Some(1))];
        v[1].read_grace_s = Some(20);
        v[2].read_grace_s = None; // an older collector says nothing
        let s = Duration::from_secs;
        let fits: Vec<String> = grace_too_short(&v, s(30), s(20)).into_iter().map(|(v, _)| v.prefix).collect();
        assert_eq!(fits, ["b"], "30 + 20 s fit in a's 50 s, not in b's 20 s");
        let short = grace_too_short(&v, s(60), s(10));
        let named: Vec<&str> = short.iter().map(|(v, _)| v.prefix.as_str()).collect();
        assert_eq!(named, ["a", "b"]);
        assert!(short[1].1.contains("after 20 s") && short[1].1.contains("every 60 s"), "{}", short[1].1);
    }
}
