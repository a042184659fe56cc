//! The Kubernetes watcher: list+watch of Events (both APIs), Deployments, ReplicaSets,
//! HPAs, Nodes and Pods through the `kube` client, into the `changes` table, once each.
//!
//! Guarantees, and how:
//! - **Nothing lost across restarts**: the tracker's baseline is saved to
//!   `<data>/kube/watch-state.json` only after the changes computed so far are durable
//!   (acknowledged by the WAL); after a crash the relist is diffed against the last saved
//!   baseline, so what changed while the collector was down is computed again.
//! - **Nothing duplicated**: every change has a deterministic key; keys already in the
//!   `changes` table (read at startup) or stored since are skipped.
//! - **410 Gone, reconnects, API server restarts**: `kube::runtime::watcher` relists (paged,
//!   not streaming lists: kube-rs #1844) and retries with backoff; a relist is diffed like
//!   any update and objects missing from it were deleted meanwhile.
//! - **Only get/list/watch** are used. A resource the service account may not list is
//!   reported (log and `slo_kube_watch_errors_total`) and the others go on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{Array, MapArray, StringArray};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use slo_store::{ChangeRecord, SampleRecord, SpanBatch, Store};
use tokio_util::sync::CancellationToken;

use super::objects::Watched;
use super::tracker::{HOLD_NS, LOOKBACK_NS, Tracker};
use crate::error::{Error, Result};
use crate::ingest::{Ingest, Prepared};

/// Where the watcher's baseline lives, relative to the data directory.
pub const STATE_FILE: &str = "kube/watch-state.json";

/// Watcher metrics, `slo_kube_*`.
#[derive(Debug, Clone)]
pub struct KubeMetrics {
    /// Watch events received, by resource.
    pub events: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Watch errors (list/watch failures, decode errors), by resource.
    pub errors: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Changes stored, by kind.
    pub changes: Family<Vec<(&'static str, String)>, Counter>,
    /// Changes computed again and skipped because their key was already stored.
    pub duplicates: Counter,
    /// Objects in the baseline.
    pub objects: Gauge,
    /// 1 while this collector holds the watcher's Lease (`kubernetes.lease`), else 0.
    pub leader: Gauge,
    /// Terms of the Lease this collector began, by the baseline its watch started from
    /// (`own`, `handed_over`, `fresh`).
    pub terms: Family<Vec<(&'static str, &'static str)>, Counter>,
}

impl KubeMetrics {
    /// Registered nowhere (imports).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    /// Registers under `slo_kube`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = KubeMetrics {
            events: Family::default(),
            errors: Family::default(),
            changes: Family::default(),
            duplicates: Counter::default(),
            objects: Gauge::default(),
            leader: Gauge::default(),
            terms: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("slo_kube");
        r.register("watch_events", "watch events received, by resource", m.events.clone());
        r.register("watch_errors", "list/watch errors, by resource", m.errors.clone());
        r.register("changes", "changes stored, by kind", m.changes.clone());
        r.register("duplicate_changes", "changes seen again and not stored twice", m.duplicates.clone());
        r.register("objects", "watched objects in the baseline", m.objects.clone());
        r.register("leader", "1 while this collector holds the watcher's Lease", m.leader.clone());
        r.register("terms", "Lease terms begun, by the baseline the watch started from", m.terms.clone());
        m
    }
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The data directory (for the baseline file).
    pub data_dir: PathBuf,
    /// Object kinds to diff.
    pub kinds: Vec<Watched>,
    /// Watch core/v1 and events.k8s.io/v1 Events.
    pub events: bool,
    /// Where to publish scrape targets and GPU placement.
    pub discovery: Option<tokio::sync::watch::Sender<std::sync::Arc<crate::scrape::Discovery>>>,
    /// Which clock times holds and undated changes.
    pub clock: ClockKind,
    /// Where the watch's baseline comes from.
    pub baseline: Baseline,
    /// Keys of changes other collectors stored (read from the object store when this
    /// collector takes the watch over): computed again on the first list, not stored twice.
    pub known_keys: HashSet<String>,
    /// Cancelled before `stop` when another collector takes the watch over from the
    /// baseline this one uploads (the Lease was lost, and there is an object store): the
    /// changes the tracker holds are then saved with the baseline, for whoever continues
    /// from it (or computes them again from an older one) to store, and not stored here as
    /// well. Otherwise a stop stores what is held first.
    pub handed_on: CancellationToken,
}

/// Where the watch starts from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Baseline {
    /// This collector's own, saved in its data directory (after a restart, or a Lease that
    /// came back with no other holder in between).
    #[default]
    Saved,
    /// Another collector's, as it last uploaded it: it held the watcher's Lease and this one
    /// takes over. What changed since that one saved it is computed again.
    HandedOver(Vec<u8>),
    /// None: a first list (no object diffs; Events and dated facts of the last hour).
    Fresh,
}

impl Baseline {
    /// Its name in `slo_kube_terms_total{baseline}`.
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Saved => "own",
            Baseline::HandedOver(_) => "handed_over",
            Baseline::Fresh => "fresh",
        }
    }
}

/// The watch's clock: what "now" is when an HPA change waits for its Event, an Event is
/// judged older than the watch, or a change the objects do not date (a Deployment's
/// `spec.replicas`) is stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// This machine's clock: a real cluster's timestamps are on it (give or take skew).
    #[default]
    Wall,
    /// The cluster's own: the latest timestamp its objects and Events carry, plus the wall
    /// time since that one arrived — as a replay of saved documents does. For a cluster
    /// whose clock is not this one: the load generator's simulated cluster, which runs
    /// faster than real time and from any start.
    Data,
}

/// "Now" for the tracker, by [`ClockKind`].
#[derive(Debug)]
struct Clock {
    kind: ClockKind,
    latest: i64,
    at: std::time::Instant,
    /// Readings taken at ticks, the newest last, back to [`RELEASE_LAG`] ago.
    readings: std::collections::VecDeque<(std::time::Instant, i64)>,
}

/// How far behind the data clock's release reading runs, in wall time.
const RELEASE_LAG: Duration = Duration::from_secs(3);

impl Clock {
    fn new(kind: ClockKind) -> Clock {
        Clock { kind, latest: 0, at: std::time::Instant::now(), readings: Default::default() }
    }

    /// Takes the times a document carries.
    fn observe(&mut self, v: &serde_json::Value) {
        if self.kind != ClockKind::Data {
            return;
        }
        let t = super::replay::latest_time(v);
        if t > self.latest {
            self.latest = t;
            self.at = std::time::Instant::now();
        }
    }

    /// The reading holds expire by until the next tick: `None` on the wall clock (now,
    /// always); on the data clock, its reading [`RELEASE_LAG`] of wall time ago, so that
    /// the documents of one moment of the cluster, arriving over several watches (a
    /// Deployment's new size, then the HPA status that made it), are all applied before
    /// the time they carry releases what they hold.
    fn release_at(&mut self) -> Option<i64> {
        if self.kind != ClockKind::Data {
            return None;
        }
        let now = std::time::Instant::now();
        self.readings.push_back((now, self.now()));
        while self.readings.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= RELEASE_LAG) {
            self.readings.pop_front();
        }
        let (at, reading) = self.readings[0];
        Some(if now.duration_since(at) >= RELEASE_LAG { reading } else { 0 })
    }

    fn now(&self) -> i64 {
        match self.kind {
            ClockKind::Wall => now_ns(),
            ClockKind::Data if self.latest == 0 => 0,
            ClockKind::Data => self.latest.saturating_add(self.at.elapsed().as_nanos() as i64),
        }
    }
}

/// A kube client from a kubeconfig file, or in-cluster / `$KUBECONFIG` when `None`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| Error::Config(format!("kubernetes config: {e}")))?,
    };
    Client::try_from(config).map_err(|e| Error::Config(format!("kubernetes client: {e}")))
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Object(Watched),
    CoreEvents,
    Events,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Object(k) => k.api().2,
            Source::CoreEvents => "events",
            Source::Events => "events.k8s.io",
        }
    }

    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Source::Object(k) => (k.api().0, k.api().1, k.kind(), k.api().2),
            Source::CoreEvents => ("", "v1", "Event", "events"),
            Source::Events => ("events.k8s.io", "v1", "Event", "events"),
        };
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

/// What the watch reads for `kinds` (and Events in both API groups with `events`).
fn sources_of(kinds: &[Watched], events: bool) -> Vec<Source> {
    let mut out: Vec<Source> = kinds.iter().map(|k| Source::Object(*k)).collect();
    if events {
        out.extend([Source::CoreEvents, Source::Events]);
    }
    out
}

/// The verbs the watch uses on every resource: kube's watcher lists, then watches (and
/// lists again after a 410); nothing is fetched one by one, created or changed.
pub const VERBS: [&str; 2] = ["list", "watch"];

/// The RBAC rules the watch needs for `kinds` and `events`, as (API group, resource):
/// what `deploy/kubernetes/base/clusterrole.yaml` must grant, [`VERBS`] on each, and
/// nothing else (its test compares them).
pub fn rbac_resources(kinds: &[Watched], events: bool) -> Vec<(String, String)> {
    // The very ApiResource each watcher is built on.
    let mut out: Vec<(String, String)> = sources_of(kinds, events)
        .into_iter()
        .map(|s| {
            let r = s.resource();
            (r.group, r.plural)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

type Item = (Source, std::result::Result<Event<DynamicObject>, watcher::Error>);

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// How far back from the newest stored change [`stored_keys`] reads: a relist computes
/// again only what is newer (Events live an hour in the API server; dated facts of a first
/// list go back [`LOOKBACK_NS`]; what changed since a baseline is newer than the baseline),
/// and as much again for Events counted again and clocks that disagree.
const KEYS_BACK_NS: i64 = 2 * LOOKBACK_NS;

/// The keys of the changes already stored (their own keys as this version writes them,
/// `slo_store::canonical_change_key`, and the Event keys merged into them), back
/// [`KEYS_BACK_NS`] from the newest stored change: not a week of them, which
/// from an object store is a request a segment while nobody watches (at start, and at
/// every takeover of the Lease).
pub async fn stored_keys(store: &Store) -> Result<HashSet<String>> {
    let snap = store.snapshot();
    let newest =
        snap.files().iter().filter(|f| f.table == slo_store::schema::CHANGES && f.rows > 0).map(|f| f.max_time).max();
    let sql = match newest {
        // (Rows not flushed yet are newer than any file: the bound only reads more.)
        // (To the second, rounded down: a bound that reads a little more.)
        Some(t) => format!(
            "SELECT key, attributes FROM changes WHERE time >= '{}'",
            slo_analyzer::text::rfc3339(t.saturating_sub(KEYS_BACK_NS))
        ),
        None => "SELECT key, attributes FROM changes".to_string(),
    };
    let batches = snap.sql(&sql).await.map_err(|e| Error::Storage(format!("reading stored change keys: {e}")))?;
    let mut keys = HashSet::new();
    for b in batches {
        let (Some(k), Some(m)) =
            (b.column(0).as_any().downcast_ref::<StringArray>(), b.column(1).as_any().downcast_ref::<MapArray>())
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            keys.insert(slo_store::canonical_change_key(k.value(i)).into_owned());
            if m.is_null(i) {
                continue;
            }
            let entry = m.value(i);
            let (Some(ks), Some(vs)) = (
                entry.column(0).as_any().downcast_ref::<StringArray>(),
                entry.column(1).as_any().downcast_ref::<StringArray>(),
            ) else {
                continue;
            };
            for j in 0..ks.len() {
                if ks.value(j) == "event_key" && !vs.is_null(j) {
                    keys.insert(vs.value(j).to_string());
                }
            }
        }
    }
    Ok(keys)
}

/// Whether the API server serves a resource (a list of one item does not fail with 404).
async fn installed(client: &Client, src: Source) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &src.resource());
    // Until the API server answers (it may start after slo does): a connection error says
    // nothing about the resource, and taking it for "installed" lists a missing CRD forever.
    for _ in 0..20 {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Err(kube::Error::Api(e)) => return e.code != 404,
            Ok(_) => return true,
            Err(e) => {
                tracing::debug!(resource = src.name(), error = %e, "API server not answering yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    true
}

/// Runs until `stop`: watches, diffs, stores changes, saves the baseline.
pub async fn run(
    client: Client,
    cfg: WatchConfig,
    store: Store,
    ingest: Ingest,
    metrics: KubeMetrics,
    stop: CancellationToken,
) -> Result<()> {
    let state_path = cfg.data_dir.join(STATE_FILE);
    let saved = match &cfg.baseline {
        Baseline::Saved => std::fs::read(&state_path).ok(),
        Baseline::HandedOver(bytes) => Some(bytes.clone()),
        Baseline::Fresh => None,
    };
    let mut tracker = match saved {
        Some(bytes) => Tracker::restore(&bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "starting the Kubernetes watch without a baseline");
            Tracker::new()
        }),
        None => Tracker::new(),
    };
    if matches!(cfg.baseline, Baseline::HandedOver(_)) {
        // This collector's baseline from now on, saved (and so uploaded) at once rather than
        // at the first change: a holder that stalls before then still hands on what it was
        // handed, not nothing (the next would start from a fresh list).
        save(&state_path, &mut tracker).await?;
    }
    let mut seen = stored_keys(&store).await?;
    seen.extend(cfg.known_keys.iter().cloned());
    tracing::info!(stored_changes = seen.len(), objects = tracker.objects(), "Kubernetes watch starting");
    let mut sources = Vec::new();
    for src in sources_of(&cfg.kinds, cfg.events) {
        // A CRD that is not installed (KEDA) is not watched: listing it would fail forever.
        if matches!(src, Source::Object(Watched::ScaledObject)) && !installed(&client, src).await {
            tracing::info!("KEDA ScaledObjects are not served by this cluster; not watched");
            continue;
        }
        sources.push(src);
    }
    let streams: Vec<BoxStream<'static, Item>> = sources
        .into_iter()
        .map(|src| {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &src.resource());
            watcher::watcher(api, watcher::Config::default()).default_backoff().map(move |e| (src, e)).boxed()
        })
        .collect();
    let mut merged = futures::stream::select_all(streams);
    let mut clock = Clock::new(cfg.clock);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_save = std::time::Instant::now();
    let mut release_at = clock.release_at();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            item = merged.next() => match item {
                Some((src, event)) => handle(&mut tracker, &mut clock, src, event, &metrics),
                None => break,
            },
            _ = tick.tick() => release_at = clock.release_at(),
        }
        let changes = tracker.take(release_at.unwrap_or_else(|| clock.now()));
        store_changes(&ingest, changes, &mut seen, &metrics, &stop).await?;
        store_samples(&ingest, tracker.take_samples(), &stop).await?;
        metrics.objects.set(tracker.objects() as i64);
        if tracker.is_dirty() && last_save.elapsed() >= Duration::from_secs(1) {
            if let Some(tx) = &cfg.discovery {
                tx.send_replace(std::sync::Arc::new(tracker.discovery()));
            }
            save(&state_path, &mut tracker).await?;
            last_save = std::time::Instant::now();
        }
    }
    if cfg.handed_on.is_cancelled() {
        tracing::info!("Kubernetes watch stopped: another collector continues it; what this one holds is left to it");
    } else {
        // Release what is held rather than leave it to the next start, then save.
        let changes = tracker.take(clock.now() + HOLD_NS);
        store_changes(&ingest, changes, &mut seen, &metrics, &CancellationToken::new()).await?;
    }
    save(&state_path, &mut tracker).await
}

fn handle(
    tracker: &mut Tracker,
    clock: &mut Clock,
    src: Source,
    event: std::result::Result<Event<DynamicObject>, watcher::Error>,
    metrics: &KubeMetrics,
) {
    let label = vec![("resource", src.name())];
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            metrics.errors.get_or_create(&label).inc();
            tracing::warn!(resource = src.name(), error = %e, "Kubernetes list/watch failed; retrying with backoff");
            return;
        }
    };
    metrics.events.get_or_create(&label).inc();
    let mut seen = |v: serde_json::Value| {
        clock.observe(&v);
        (v, clock.now())
    };
    let result = match (src, event) {
        (Source::Object(k), Event::Init) => {
            tracker.begin_list(k);
            Ok(())
        }
        (Source::Object(k), Event::InitDone) => {
            tracker.end_list(k, clock.now());
            Ok(())
        }
        (Source::Object(k), Event::InitApply(o) | Event::Apply(o)) => {
            value(&o).map(&mut seen).and_then(|(v, now)| tracker.apply(k, &v, now))
        }
        (Source::Object(k), Event::Delete(o)) => {
            value(&o).map(&mut seen).and_then(|(v, now)| tracker.delete(k, &v, now))
        }
        (_, Event::InitApply(o) | Event::Apply(o)) => {
            value(&o).map(&mut seen).and_then(|(v, now)| tracker.event(&v, now))
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        metrics.errors.get_or_create(&label).inc();
        tracing::warn!(resource = src.name(), error = %e, "object skipped");
    }
}

fn value(o: &DynamicObject) -> std::result::Result<serde_json::Value, String> {
    serde_json::to_value(o).map_err(|e| format!("object does not serialize: {e}"))
}

/// Stores changes whose keys are new, waiting (never dropping) while the ingest queue is
/// full. Returns how many were new.
pub async fn store_changes(
    ingest: &Ingest,
    changes: Vec<ChangeRecord>,
    seen: &mut HashSet<String>,
    metrics: &KubeMetrics,
    stop: &CancellationToken,
) -> Result<usize> {
    // An Event merged into a change of this same batch is that change (its copy from the
    // other Event API, or one released unmerged).
    let merged: HashSet<String> = changes
        .iter()
        .flat_map(|c| c.attributes.iter().filter(|a| a.key == "event_key").map(|a| a.value.clone()))
        .collect();
    let mut fresh = Vec::new();
    for c in changes {
        if seen.contains(&c.key) || merged.contains(&c.key) || fresh.iter().any(|f: &ChangeRecord| f.key == c.key) {
            metrics.duplicates.inc();
        } else {
            fresh.push(c);
        }
    }
    if fresh.is_empty() {
        return Ok(0);
    }
    let n = fresh.len();
    submit_waiting(ingest, SpanBatch { changes: fresh.clone(), ..Default::default() }, stop).await?;
    for c in fresh {
        tracing::info!(kind = %c.kind, object = %c.object, from = %c.from, to = %c.to, reason = %c.reason, "change");
        metrics.changes.get_or_create(&vec![("kind", c.kind.clone())]).inc();
        // An Event merged into this change is this change: its other copies (the second
        // Event API, a relist) are skipped too.
        for a in c.attributes.iter().filter(|a| a.key == "event_key") {
            seen.insert(a.value.clone());
        }
        seen.insert(c.key);
    }
    Ok(n)
}

/// Stores rollout-progress samples, waiting while the ingest queue is full.
async fn store_samples(ingest: &Ingest, samples: Vec<SampleRecord>, stop: &CancellationToken) -> Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    submit_waiting(ingest, SpanBatch { samples, ..Default::default() }, stop).await
}

/// Submits a batch, waiting (never dropping it) while the ingest queue is full, until
/// `stop`.
async fn submit_waiting(ingest: &Ingest, batch: SpanBatch, stop: &CancellationToken) -> Result<()> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match ingest.submit(Prepared::new(batch.clone())?).await {
            Ok(()) => return Ok(()),
            Err(Error::Overloaded { .. } | Error::Unavailable(_)) if !stop.is_cancelled() => {
                tracing::debug!("ingest busy; Kubernetes changes wait");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes the baseline (temporary file, then rename), on the blocking pool: it is
/// megabytes for a large cluster.
async fn save(path: &std::path::Path, tracker: &mut Tracker) -> Result<()> {
    let bytes = tracker.save();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("create {}: {e}", dir.display())))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::Storage(format!("write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Storage(format!("rename {}: {e}", path.display())))
    })
    .await
    .map_err(|e| Error::Storage(format!("saving the watch baseline: {e}")))?
}

#[cfg(test)]
mod tests {
    use slo_store::{ChangeRecord, StoreConfig, StoreMetrics, changes_batch};

    use super::*;

    fn change(t: i64, key: &str) -> ChangeRecord {
        ChangeRecord {
            time_unix_nano: t,
            kind: "deploy".into(),
            namespace: "ml".into(),
            object_kind: "Deployment".into(),
            object: "deployment/a".into(),
            from: String::new(),
            to: String::new(),
            reason: "NewReplicaSet".into(),
            message: String::new(),
            source: "watch/ReplicaSet".into(),
            key: key.into(),
            attributes: Vec::new(),
        }
    }

    /// Keys are read back two lookbacks from the newest change: a segment older than that
    /// is not even opened (its file may be gone and the read still answers).
    #[tokio::test]
    async fn stored_keys_reads_back_two_lookbacks_from_the_newest_change() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut wal, _) = Store::open(StoreConfig::new(dir.path()), StoreMetrics::unregistered()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        for (t, key) in
            [(now - 3 * 86_400_000_000_000, "old"), (now - KEYS_BACK_NS + 1_000_000_000, "edge"), (now, "new")]
        {
            store.append_tables([("changes", changes_batch([&change(t, key)]).unwrap())]);
            store.flush_now(&mut wal).unwrap();
        }
        let keys = stored_keys(&store).await.unwrap();
        assert_eq!(keys, ["edge", "new"].map(String::from).into_iter().collect::<HashSet<_>>());
        let old = store
            .snapshot()
            .files()
            .iter()
            .find(|f| f.table == "changes" && f.max_time < now - KEYS_BACK_NS)
            .unwrap()
            .path
            .clone();
        std::fs::remove_file(dir.path().join(old)).unwrap();
        assert_eq!(stored_keys(&store).await.unwrap().len(), 2, "the old segment was opened");
    }
}
