//! Segments in object storage (S3 or any S3-compatible server, or a directory for a
//! single machine), through the `object_store` crate.
//!
//! The WAL stays on the local disk: it is what makes an acknowledgement durable before any
//! upload. A flush writes its segments and rollups locally as before; the uploader
//! (`upload.rs`) then copies each to `<prefix>/<the same relative path>`, writes
//! `<prefix>/manifest.json` (what a reader may read) and only then deletes the local copy.
//! Segment and rollup files are immutable once written, so readers cache the small ones
//! (rollups); a manifest and the side files (the watch's baseline) are written again in
//! place and always read from the store.
//!
//! Credentials come from the usual places, as `object_store` reads them (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, a web identity token file for IRSA, the
//! instance metadata service); they are never part of the URL, the config file or a log line.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::manifest::SegmentFile;

/// The name of a collector's manifest in its prefix.
pub(crate) const MANIFEST: &str = "manifest.json";

/// Settings of the object store that are not secrets (those come from the environment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteOptions {
    /// `s3://bucket/prefix` or `file:///absolute/dir`.
    pub url: String,
    /// An S3-compatible server's address (MinIO, Ceph, a test server); unset: AWS, or
    /// `AWS_ENDPOINT` from the environment.
    pub endpoint: Option<String>,
    /// The region; unset: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP to the endpoint (a server on loopback, never across a network).
    pub allow_http: bool,
}

/// Objects at most this big are kept in memory once read (rollups, small segments).
pub(crate) const CACHE_OBJECT_MAX: usize = 8 << 20;
/// Memory the cache of immutable objects may hold.
const CACHE_BYTES: usize = 128 << 20;

#[derive(Debug, Default)]
struct Cache {
    objects: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Cache {
    fn put(&mut self, key: String, value: Bytes) {
        if value.len() > CACHE_OBJECT_MAX || self.objects.contains_key(&key) {
            return;
        }
        self.bytes += value.len();
        self.order.push_back(key.clone());
        self.objects.insert(key, value);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(v) = self.objects.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }
}

/// An object's bytes, `None` when the store has no such object, or the error.
fn not_found_as_none(read: std::result::Result<Bytes, object_store::Error>, path: &ObjPath) -> Result<Option<Bytes>> {
    match read {
        Ok(b) => Ok(Some(b)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(remote_err("read", path.to_string())(e)),
    }
}

/// A place in an object store: one collector's prefix, or the root above several.
#[derive(Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket` or `file:///`: what DataFusion's object store registry is keyed by.
    base: Url,
    prefix: ObjPath,
    cache: Arc<Mutex<Cache>>,
    /// The settings it was opened with (no secrets: there are none in them).
    options: RemoteOptions,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

fn remote_err(op: &'static str, what: impl Into<String>) -> impl FnOnce(object_store::Error) -> Error {
    let what = what.into();
    move |source| Error::Remote { op, what, detail: source.to_string() }
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::Remote { op: "open object store", what: redacted(url), detail: why.to_string() }
}

/// `url` without what could be a credential (anything before an `@` in its authority).
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}***{}", if scheme.is_empty() { "" } else { "://" }, &rest[at..]),
        None => url.to_string(),
    }
}

impl Remote {
    /// Opens `options.url`. Nothing is contacted yet: a server that is down shows in the
    /// first upload or read, which retry.
    pub fn open(options: &RemoteOptions) -> Result<Remote> {
        let raw = options.url.trim();
        let url = Url::parse(raw).map_err(|e| bad_url(raw, &format!("not a URL ({e}); use s3://bucket/prefix")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad_url(
                raw,
                "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        let (store, base, prefix): (Arc<dyn ObjectStore>, Url, ObjPath) = match url.scheme() {
            "s3" | "s3a" => {
                let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad_url(raw, "no bucket"))?;
                // Our own loop retries with back-off (upload.rs); a request gives up sooner.
                let retry =
                    RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(20), ..Default::default() };
                let client = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120));
                let mut b = AmazonS3Builder::new().with_client_options(client).with_retry(retry);
                // As `AmazonS3Builder::from_env`, after the client options (which it would
                // otherwise lose, `AWS_ALLOW_HTTP` among them).
                for (key, value) in std::env::vars() {
                    if key.starts_with("AWS_")
                        && let Ok(k) = key.to_ascii_lowercase().parse::<object_store::aws::AmazonS3ConfigKey>()
                    {
                        b = b.with_config(k, value);
                    }
                }
                b = b.with_url(raw);
                if let Some(e) = &options.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = &options.region {
                    b = b.with_region(r);
                }
                if options.allow_http {
                    b = b.with_allow_http(true);
                }
                let store = b.build().map_err(|e| bad_url(raw, &e.to_string()))?;
                let base = Url::parse(&format!("s3://{bucket}")).map_err(|e| bad_url(raw, &e.to_string()))?;
                (Arc::new(store), base, ObjPath::from(url.path().trim_matches('/')))
            }
            "file" => {
                let dir = url.to_file_path().map_err(|()| bad_url(raw, "not an absolute file path"))?;
                std::fs::create_dir_all(&dir).map_err(Error::io("create object store dir", &dir))?;
                let prefix = ObjPath::from_absolute_path(&dir).map_err(|e| bad_url(raw, &e.to_string()))?;
                let base = Url::parse("file:///").map_err(|e| bad_url(raw, &e.to_string()))?;
                (Arc::new(LocalFileSystem::new()), base, prefix)
            }
            other => return Err(bad_url(raw, &format!("scheme {other:?} is not supported; use s3:// or file://"))),
        };
        Ok(Remote { store, base, prefix, cache: Arc::default(), options: options.clone() })
    }

    /// The place `name` below this one (a collector's prefix under the root).
    pub fn child(&self, name: &str) -> Remote {
        Remote { prefix: self.path(name), ..self.clone() }
    }

    /// The places above this one, nearest first, up to the root of its bucket (of the
    /// filesystem, for `file://`).
    pub(crate) fn ancestors(&self) -> Vec<Remote> {
        let parts: Vec<&str> = self.prefix.as_ref().split('/').filter(|p| !p.is_empty()).collect();
        (0..parts.len()).rev().map(|n| Remote { prefix: ObjPath::from(parts[..n].join("/")), ..self.clone() }).collect()
    }

    /// The settings that open this place again (its URL, endpoint, region; no secrets).
    pub fn options(&self) -> RemoteOptions {
        RemoteOptions { url: self.url(), ..self.options.clone() }
    }

    /// Where this place is, as a URL (no credentials: it never has any).
    pub fn url(&self) -> String {
        self.url_of(self.prefix.as_ref()).trim_end_matches('/').to_string()
    }

    /// `scheme://bucket/path` (`file:///path`).
    fn url_of(&self, path: &str) -> String {
        format!("{}://{}/{path}", self.base.scheme(), self.base.host_str().unwrap_or_default())
    }

    /// The object of `rel` (a path relative to this place).
    pub(crate) fn path(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_matches('/');
        if self.prefix.as_ref().is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The URL DataFusion reads `rel` by.
    pub(crate) fn table_url(&self, rel: &str) -> String {
        self.url_of(self.path(rel).as_ref())
    }

    /// The registry key and store for DataFusion.
    pub(crate) fn registration(&self) -> (&Url, Arc<dyn ObjectStore>) {
        (&self.base, self.store.clone())
    }

    /// Writes `bytes` as `rel`.
    pub(crate) async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(rel);
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(remote_err("upload", path.to_string()))?;
        Ok(())
    }

    /// Copies the local file `from` to `rel`, in parts when it is large.
    pub(crate) async fn put_file(&self, rel: &str, from: &std::path::Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let path = self.path(rel);
        let mut file = tokio::fs::File::open(from).await.map_err(Error::io("open for upload", from))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), path.clone());
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        let done = match copied {
            Ok(_) => writer.shutdown().await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        done.map_err(|e| Error::Remote { op: "upload", what: path.to_string(), detail: e.to_string() })
    }

    /// Bytes the cache of immutable objects holds.
    #[cfg(test)]
    pub(crate) fn cached_bytes(&self) -> usize {
        self.cache.lock().bytes
    }

    /// Reads `rel` from the object store, never from the cache: for objects written again
    /// in place (a manifest, a side file such as the watch's baseline).
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.path(rel);
        not_found_as_none(self.fetch(&path, false).await, &path)
    }

    /// Reads a file a manifest lists (a segment or rollup file, written once and never
    /// changed): small ones are cached.
    pub(crate) async fn get_file(&self, rel: &str) -> Result<Bytes> {
        let path = self.path(rel);
        self.fetch(&path, true).await.map_err(remote_err("read", path.to_string()))
    }

    /// [`Remote::get_file`], or `None` when there is no such object.
    pub(crate) async fn get_file_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.path(rel);
        not_found_as_none(self.fetch(&path, true).await, &path)
    }

    /// Whether `rel` is there (a `HEAD`; a failure other than "not found" is an error).
    pub(crate) async fn exists(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(remote_err("head", path.to_string())(e)),
        }
    }

    /// Reads `path`, through the cache of immutable objects when `immutable`. Only files a
    /// manifest lists are: a side file read from the cache would be the version first
    /// read, however often it was written since.
    async fn fetch(&self, path: &ObjPath, immutable: bool) -> std::result::Result<Bytes, object_store::Error> {
        let key = path.to_string();
        if immutable && let Some(b) = self.cache.lock().objects.get(&key) {
            return Ok(b.clone());
        }
        let bytes = self.store.get(path).await?.bytes().await?;
        if immutable {
            self.cache.lock().put(key, bytes.clone());
        }
        Ok(bytes)
    }

    /// Deletes `rel`; one that is already gone is fine.
    pub(crate) async fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(remote_err("delete", path.to_string())(e)),
        }
    }

    /// Every object below this place, as paths relative to it.
    pub(crate) async fn list(&self) -> Result<Vec<String>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<_> =
            self.store.list(prefix).try_collect().await.map_err(remote_err("list", self.prefix.to_string()))?;
        let skip = if self.prefix.as_ref().is_empty() { 0 } else { self.prefix.as_ref().len() + 1 };
        Ok(metas.into_iter().map(|m| m.location.as_ref().get(skip..).unwrap_or_default().to_string()).collect())
    }

    /// The names of the places one level below this one (collectors under the root).
    pub(crate) async fn children(&self) -> Result<Vec<String>> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed =
            self.store.list_with_delimiter(prefix).await.map_err(remote_err("list", self.prefix.to_string()))?;
        Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }
}

/// What one collector has put in the object store: `<prefix>/manifest.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteManifest {
    /// Format version.
    pub version: u32,
    /// The collector that writes this prefix.
    pub collector: String,
    /// The identity of the data directory that writes it (its local manifest's `instance`).
    pub instance: String,
    /// When it was written, by the collector's clock (ns since the epoch).
    pub written_unix_nano: i64,
    /// The segment and rollup files readers may read, paths relative to the prefix.
    pub files: Vec<SegmentFile>,
    /// How long an object this manifest stops listing stays readable (s): a reader that
    /// read the manifest longer ago than this before its query ends may meet a deleted
    /// object. 0: not said (a manifest from before this field).
    pub read_grace_s: u64,
}

impl RemoteManifest {
    /// The newest data time of any table (ns), if there are rows.
    pub fn newest_data(&self) -> Option<i64> {
        self.files.iter().filter(|f| f.rows > 0).map(|f| f.max_time).max()
    }

    pub(crate) fn decode(bytes: &[u8], at: &Remote) -> Result<RemoteManifest> {
        serde_json::from_slice(bytes).map_err(|e| Error::Remote {
            op: "read manifest",
            what: at.path(MANIFEST).to_string(),
            detail: format!("not a manifest: {e}"),
        })
    }
}

/// The directories a collector writes at the top of its prefix (its tables, rollups, and
/// side files such as `kube/`): no collector may be named so, or a reader of a root that a
/// collector also writes itself could not tell that collector's files from the other's.
pub const RESERVED_NAMES: [&str; 6] = ["requests", "spans", "changes", "samples", "rollups", "kube"];

/// Whether `name` can name a collector's prefix: letters, digits, `.`, `_`, `-`, at most
/// 128, and not one of [`RESERVED_NAMES`].
pub fn valid_collector_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !RESERVED_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str) -> RemoteOptions {
        RemoteOptions { url: url.into(), ..Default::default() }
    }

    #[test]
    fn urls_are_checked_and_named() {
        let e = Remote::open(&opts("s3://user:secret@bucket/p")).unwrap_err().to_string();
        assert!(e.contains("credentials do not belong") && !e.contains("secret@"), "{e}");
        assert!(e.contains("s3://***@bucket/p"), "{e}");
        let e = Remote::open(&opts("gs://bucket/p")).unwrap_err().to_string();
        assert!(e.contains("\"gs\" is not supported"), "{e}");
        let e = Remote::open(&opts("bucket/p")).unwrap_err().to_string();
        assert!(e.contains("not a URL"), "{e}");
        let r = Remote::open(&RemoteOptions { region: Some("eu-west-1".into()), ..opts("s3://bkt/a/b/") }).unwrap();
        assert_eq!(r.url(), "s3://bkt/a/b");
        assert_eq!(r.child("c1").table_url("requests/x.parquet"), "s3://bkt/a/b/c1/requests/x.parquet");
    }

    #[test]
    fn collector_names() {
        assert!(valid_collector_name("slo-0") && valid_collector_name("a.b_c"));
        assert!(!valid_collector_name("") && !valid_collector_name("a/b") && !valid_collector_name(".."));
        assert!(RESERVED_NAMES.iter().all(|n| !valid_collector_name(n)), "a table's directory is not a collector");
    }

    #[tokio::test]
    async fn a_directory_works_as_an_object_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap();
        let root = Remote::open(&opts(url.as_str())).unwrap();
        let c = root.child("c1");
        c.put("rollups/000000000001.bin", Bytes::from_static(b"abc")).await.unwrap();
        c.put(MANIFEST, Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(c.get_file("rollups/000000000001.bin").await.unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(c.get_file_opt("rollups/000000000002.bin").await.unwrap(), None);
        let mut all = c.list().await.unwrap();
        all.sort();
        assert_eq!(all, vec![MANIFEST.to_string(), "rollups/000000000001.bin".to_string()]);
        assert_eq!(root.children().await.unwrap(), vec!["c1".to_string()]);
        c.delete("rollups/000000000001.bin").await.unwrap();
        c.delete("rollups/000000000001.bin").await.unwrap();
        assert!(dir.path().join("c1/manifest.json").exists());
        assert!(c.table_url("requests/x.parquet").starts_with("file:///"), "{}", c.table_url("requests/x.parquet"));
    }

    /// A side file is written again in place: each read sees the latest version, where a
    /// file a manifest lists (never rewritten) comes from the cache once read.
    #[tokio::test]
    async fn a_side_file_is_read_fresh_and_a_listed_file_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let c = Remote::open(&opts(Url::from_directory_path(dir.path()).unwrap().as_str())).unwrap().child("c1");
        let state = "kube/watch-state.json";
        c.put(state, Bytes::from_static(b"first")).await.unwrap();
        assert_eq!(c.get_opt(state).await.unwrap().unwrap(), Bytes::from_static(b"first"));
        c.put(state, Bytes::from_static(b"second")).await.unwrap();
        assert_eq!(c.get_opt(state).await.unwrap().unwrap(), Bytes::from_static(b"second"));
        c.delete(state).await.unwrap();
        assert_eq!(c.get_opt(state).await.unwrap(), None);
        let rollup = "rollups/000000000001.bin";
        c.put(rollup, Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(c.get_file(rollup).await.unwrap(), Bytes::from_static(b"abc"));
        std::fs::remove_file(dir.path().join("c1").join(rollup)).unwrap();
        assert_eq!(c.get_file(rollup).await.unwrap(), Bytes::from_static(b"abc"), "cached");
        assert_eq!(c.get_opt(rollup).await.unwrap(), None, "not through the cache");
    }
}
