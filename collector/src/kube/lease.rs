//! Which collector watches Kubernetes: leader election through a `coordination.k8s.io/v1`
//! Lease, as client-go's `leaderelection` package does it.
//!
//! Several collectors may run the watch code; the one holding the Lease watches and the
//! others wait, so each change is stored once. The rules, and why they are safe:
//! - **Acquire**: a candidate takes the Lease when it does not exist (create), when nobody
//!   holds it (`holderIdentity` empty: released), or when the holder has not changed it for
//!   `leaseDurationSeconds`, measured on the candidate's own monotonic clock from when it
//!   last *saw* the Lease change, never from `renewTime` (clocks of two machines differ).
//! - **Conflicts**: every write is a replace carrying the `resourceVersion` read; the API
//!   server refuses it (409) when another candidate wrote in between, so two cannot both win.
//! - **Renew**: the holder rewrites `renewTime` every `retry_s`. When it has not managed to
//!   for `renew_deadline_s` (less than the lease duration) it stops watching, so it has
//!   stopped before anyone else may take over.
//! - **Release**: a holder that shuts down ([`release`], once its last data is uploaded)
//!   clears `holderIdentity`, as client-go does, so the next candidate takes the Lease at
//!   its next try instead of after the lease duration. It writes its name into the
//!   annotation [`RELEASED_BY`]: the next holder reads there whose baseline to continue.
//!
//! A new term says whether the Lease passed through another holder since this collector's
//! last term ([`Term::continues`]): if it did, this collector's saved baseline of the
//! cluster is stale (the other holder stored what changed meanwhile), and the watch starts
//! from a fresh list instead (see `watch.rs`).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::watch::KubeMetrics;

/// What the election does to its Lease, as RBAC verbs (sorted): `get_opt` is a get,
/// `replace` an update. `deploy/kubernetes/overlays/object-store/role-lease.yaml` grants these.
pub const VERBS: [&str; 3] = ["create", "get", "update"];

/// The annotation a releasing holder leaves its name in (the holder field is cleared).
pub const RELEASED_BY: &str = "slo.dev/released-by";

/// Where the last term this collector began is recorded, relative to the data directory.
pub const TERM_FILE: &str = "kube/lease-term.json";

/// `kubernetes.lease`: elect the watcher through a Lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace. Unset: the client's default namespace (in a pod, its own; else the
    /// kubeconfig context's).
    pub namespace: Option<String>,
    /// How long a holder that stopped renewing keeps the Lease: the others wait this long
    /// after they last saw it change (whole seconds: the Lease's own field).
    pub duration_s: u32,
    /// How long the holder goes on trying to renew before it stops watching; less than
    /// `duration_s`, so it has stopped before another may take over.
    pub renew_deadline_s: f64,
    /// Between two tries, to acquire or to renew.
    pub retry_s: f64,
}

impl Default for LeaseConfig {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        LeaseConfig {
            name: "slo-watcher".into(),
            namespace: None,
            duration_s: 15,
            renew_deadline_s: 10.0,
            retry_s: 2.0,
        }
    }
}

impl LeaseConfig {
    /// The durations must nest (`retry_s` < `renew_deadline_s` < `duration_s`), or a
    /// holder could still be watching after another took over.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 253
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !name_ok {
            return Err(format!(
                "kubernetes.lease.name {:?} is not a Kubernetes object name (lowercase letters, digits, '-', '.')",
                self.name
            ));
        }
        let (d, r, t) = (f64::from(self.duration_s), self.renew_deadline_s, self.retry_s);
        if !(t.is_finite() && r.is_finite() && t > 0.0 && t < r && r < d) {
            return Err(format!(
                "kubernetes.lease: retry_s ({t}) < renew_deadline_s ({r}) < duration_s ({d}) must hold, all above 0: \
                 a holder that cannot renew must stop watching before another may take over"
            ));
        }
        Ok(())
    }

    fn renew_deadline(&self) -> Duration {
        Duration::from_secs_f64(self.renew_deadline_s)
    }

    fn retry(&self) -> Duration {
        Duration::from_secs_f64(self.retry_s)
    }
}

/// One term of leadership, given when this collector acquires the Lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The Lease object's uid (a Lease deleted and created again is another one).
    pub lease: String,
    /// `leaseTransitions` once this term began.
    pub transitions: i32,
    /// `leaseTransitions` before this collector wrote it: equal to the last term's
    /// `transitions` when nobody else acquired the Lease in between. None: it was created.
    pub before: Option<i32>,
    /// Who held it before this term (None: nobody, it was created now).
    #[serde(default)]
    pub previous: Option<String>,
}

impl Term {
    /// Whether this term follows `last` (this collector's previous one, as recorded) with no
    /// other holder in between: then what this collector saved of the cluster is current.
    pub fn continues(&self, last: Option<&Term>) -> bool {
        last.is_some_and(|l| l.lease == self.lease && Some(l.transitions) == self.before)
    }
}

/// What one try found.
enum Tried {
    /// This collector holds the Lease (acquired or renewed).
    Holds(Term),
    /// Another holds it, or won the race to write it.
    Other(String),
}

/// The election's state: what was last seen of the Lease, and when.
struct Candidate {
    api: Api<Lease>,
    cfg: LeaseConfig,
    identity: String,
    /// The Lease's spec as last read, and when it was first seen so.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Candidate {
    /// client-go's `tryAcquireOrRenew`.
    async fn try_once(&mut self) -> Result<Tried, kube::Error> {
        let now = MicroTime(chrono::Utc::now());
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_field()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            };
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.cfg.name.clone()), ..ObjectMeta::default() },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(made) => {
                    self.observed = Some((spec, Instant::now()));
                    Ok(Tried::Holds(Term { lease: uid(&made), transitions: 0, before: None, previous: None }))
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Tried::Other("another candidate created it".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        let lasts = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
        let seen_at = self.observed.as_ref().map_or_else(Instant::now, |(_, at)| *at);
        if !holder.is_empty() && !mine && seen_at.elapsed() < lasts {
            return Ok(Tried::Other(holder));
        }
        // Released: the holder field is empty and the annotation names who held it.
        let annotations = lease.metadata.annotations.get_or_insert_default();
        let released_by = annotations.remove(RELEASED_BY).filter(|_| holder.is_empty());
        let previous = if holder.is_empty() { released_by } else { Some(holder) };
        let before = spec.lease_transitions.unwrap_or(0);
        let transitions = if mine { before } else { before + 1 };
        let renewed = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_field()),
            acquire_time: if mine { spec.acquire_time.clone() } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..spec
        };
        lease.spec = Some(renewed.clone());
        // The read's resourceVersion travels in the metadata: a write in between is a 409.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observed = Some((renewed, Instant::now()));
                Ok(Tried::Holds(Term { lease: uid(&written), transitions, before: Some(before), previous }))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Tried::Other("another candidate wrote it first".into())),
            Err(e) => Err(e),
        }
    }

    fn duration_field(&self) -> i32 {
        i32::try_from(self.cfg.duration_s).unwrap_or(i32::MAX)
    }
}

fn api(client: Client, cfg: &LeaseConfig) -> Api<Lease> {
    match &cfg.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::default_namespaced(client),
    }
}

/// Gives the Lease up if `identity` holds it: nobody holds it then, so the next candidate
/// takes it at its next try, and reads who held it in [`RELEASED_BY`]. Returns whether
/// there was anything to give up. Call it once this collector's last data (and watch
/// baseline) is uploaded.
pub async fn release(client: Client, cfg: &LeaseConfig, identity: &str) -> Result<bool, kube::Error> {
    let api = api(client, cfg);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else { return Ok(false) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(false) };
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(chrono::Utc::now()));
    lease.metadata.annotations.get_or_insert_default().insert(RELEASED_BY.into(), identity.into());
    api.replace(&cfg.name, &PostParams::default(), &lease).await.map(|_| true)
}

fn uid(lease: &Lease) -> String {
    lease.metadata.uid.clone().unwrap_or_default()
}

/// Runs the election until `stop`: `terms` holds the term as it began while this
/// collector holds the Lease (renewals do not change it), and None otherwise. `stop` ends
/// the term without giving the Lease up: [`release`] does, when the data is uploaded.
pub async fn elect(
    client: Client,
    cfg: LeaseConfig,
    identity: String,
    terms: tokio::sync::watch::Sender<Option<Term>>,
    metrics: KubeMetrics,
    stop: CancellationToken,
) {
    let mut me = Candidate { api: api(client, &cfg), cfg: cfg.clone(), identity, observed: None };
    // When this collector last held the Lease for sure (its last successful write).
    let mut held_since_write: Option<Instant> = None;
    let mut last_problem = String::new();
    let step_down = |why: &str, terms: &tokio::sync::watch::Sender<Option<Term>>| {
        if terms.borrow().is_some() {
            tracing::warn!(lease = %cfg.name, why, "stopped watching Kubernetes: the Lease is not this collector's");
            terms.send_replace(None);
        }
    };
    loop {
        let began = Instant::now();
        // A holder's try may not outlast its renew deadline: it must stop in time.
        let limit = match held_since_write {
            Some(at) => cfg.renew_deadline().saturating_sub(at.elapsed()),
            None => cfg.renew_deadline(),
        };
        let tried = tokio::select! {
            _ = stop.cancelled() => break,
            t = tokio::time::timeout(limit, me.try_once()) => t,
        };
        match tried {
            Ok(Ok(Tried::Holds(term))) => {
                held_since_write = Some(began);
                last_problem.clear();
                metrics.leader.set(1);
                if terms.borrow().is_none() {
                    tracing::info!(lease = %cfg.name, transitions = term.transitions, "holds the Lease: watching Kubernetes");
                    terms.send_replace(Some(term));
                }
            }
            Ok(Ok(Tried::Other(holder))) => {
                held_since_write = None;
                metrics.leader.set(0);
                step_down(&format!("held by {holder}"), &terms);
            }
            failed => {
                let problem = match failed {
                    Ok(Err(kube::Error::Api(e))) if e.code == 403 => format!(
                        "{} (the service account needs get, create and update on leases.coordination.k8s.io \
                         in the Lease's namespace: deploy/kubernetes/overlays/object-store/role-lease.yaml); \
                         until then no collector watches Kubernetes",
                        e.message
                    ),
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {limit:?}"),
                };
                metrics.errors.get_or_create(&vec![("resource", "leases"), ("during", "election")]).inc();
                if problem != last_problem {
                    tracing::warn!(lease = %cfg.name, error = %problem, "Lease could not be read or written");
                    last_problem = problem;
                }
                if held_since_write.is_some_and(|at| at.elapsed() >= cfg.renew_deadline()) {
                    held_since_write = None;
                    metrics.leader.set(0);
                    step_down("not renewed within renew_deadline_s", &terms);
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(cfg.retry().saturating_sub(began.elapsed())) => {}
        }
    }
    terms.send_replace(None);
    metrics.leader.set(0);
}

/// This collector's last term, as [`record_term`] left it (None if never, or unreadable).
pub fn last_term(data_dir: &std::path::Path) -> Option<Term> {
    let bytes = std::fs::read(data_dir.join(TERM_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records `term` as this collector's last (written aside, then renamed into place).
pub fn record_term(data_dir: &std::path::Path, term: &Term) -> std::io::Result<()> {
    let path = data_dir.join(TERM_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let aside = path.with_extension("json.tmp");
    std::fs::write(&aside, serde_json::to_vec(term).unwrap_or_default())?;
    std::fs::rename(&aside, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_nest() {
        assert!(LeaseConfig::default().validate().is_ok());
        let with = |d: u32, r: f64, t: f64| LeaseConfig {
            duration_s: d,
            renew_deadline_s: r,
            retry_s: t,
            ..Default::default()
        };
        for bad in
            [with(10, 10.0, 2.0), with(15, 10.0, 10.0), with(15, 10.0, 0.0), with(0, 0.5, 0.1), with(15, f64::NAN, 1.0)]
        {
            let e = bad.validate().unwrap_err();
            assert!(e.contains("retry_s") && e.contains("must hold"), "{e}");
        }
        let named = LeaseConfig { name: "Slo_Watcher".into(), ..Default::default() };
        assert!(named.validate().unwrap_err().contains("\"Slo_Watcher\""));
    }

    #[test]
    fn a_term_continues_only_the_same_lease_with_nobody_between() {
        let last = Term { lease: "u1".into(), transitions: 3, before: Some(2), previous: None };
        let next =
            |lease: &str, before: Option<i32>| Term { lease: lease.into(), transitions: 4, before, previous: None };
        assert!(next("u1", Some(3)).continues(Some(&last)), "released by us, taken back");
        assert!(!next("u1", Some(4)).continues(Some(&last)), "someone held it in between");
        assert!(!next("u2", Some(3)).continues(Some(&last)), "the Lease was made again");
        assert!(!next("u1", None).continues(Some(&last)), "created now");
        assert!(!next("u1", Some(3)).continues(None), "never held here");
    }

    #[test]
    fn the_term_is_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_term(dir.path()), None);
        let t = Term { lease: "u".into(), transitions: 7, before: Some(6), previous: Some("c1".into()) };
        record_term(dir.path(), &t).unwrap();
        assert_eq!(last_term(dir.path()), Some(t));
    }
}
