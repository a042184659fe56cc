//! Who watches Kubernetes in `slo serve`, and from which baseline.
//!
//! - One collector, or the designated `kubernetes.watcher`: it watches from the baseline
//!   saved in its own data directory ([`Watcher::run`]).
//! - `kubernetes.lease`: every collector whose watch is on campaigns for the Lease
//!   (`slo_collector::kube::lease`) and the holder watches ([`Watcher::run_elected`]). A
//!   collector that takes the watch over from another continues from the baseline that one
//!   last uploaded to the object store (a side file of its prefix: `store.side_files`), and
//!   skips the changes any collector has uploaded, so that what both compute is stored once.
//!   What the previous holder computed after its last upload is in its WAL; it is uploaded
//!   when that collector comes back, and the analyzer reads a key once (`analyzer/src/source.rs`);
//!   keys leave out the `from` a baseline gives, so a change computed from an older
//!   baseline is the same key (docs/SCALING.md). The baseline is read past the object
//!   store's cache (`Remote::get_opt`): it is rewritten in place.
//!   A holder that loses the Lease while it runs does not store the changes its watch still
//!   holds (an HPA change waiting for its Event): they are in the baseline it saves, and
//!   the next holder stores them, from that baseline or from its own list.
//!   Without an object store the new holder starts from a fresh list.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use slo_collector::kube::lease::{self, LeaseConfig, Term};
use slo_collector::kube::watch::{self, Baseline, KubeMetrics, STATE_FILE, WatchConfig};
use slo_collector::scrape::Discovery;
use slo_collector::{Health, Ingest};
use slo_store::{Remote, Store};
use tokio_util::sync::CancellationToken;

/// What the watch needs, whoever runs it.
pub(crate) struct Watcher {
    pub(crate) client: kube::Client,
    pub(crate) cfg: WatchConfig,
    pub(crate) store: Store,
    pub(crate) ingest: Ingest,
    pub(crate) metrics: KubeMetrics,
    pub(crate) health: Arc<Health>,
}

impl Watcher {
    /// Whether the pipeline is ready (after its WAL replay); false if stopped first.
    async fn ready(&self, token: &CancellationToken) -> bool {
        while !self.health.is_ready() {
            if token.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Watches from this collector's saved baseline until `token`.
    pub(crate) async fn run(self, token: CancellationToken) -> slo_collector::Result<()> {
        if !self.ready(&token).await {
            return Ok(());
        }
        watch::run(self.client, self.cfg, self.store, self.ingest, self.metrics, token).await
    }

    /// Campaigns for the Lease as `identity` until `token`; watches while it holds it.
    /// `root` is the object store all collectors write below (where a predecessor's
    /// baseline and changes are read).
    pub(crate) async fn run_elected(
        self,
        lease_cfg: LeaseConfig,
        identity: String,
        root: Option<Remote>,
        token: CancellationToken,
    ) -> slo_collector::Result<()> {
        if !self.ready(&token).await {
            return Ok(());
        }
        let (tx, mut terms) = tokio::sync::watch::channel(None);
        let campaign = token.child_token();
        let election = tokio::spawn(lease::elect(
            self.client.clone(),
            lease_cfg,
            identity.clone(),
            tx,
            self.metrics.clone(),
            campaign.clone(),
        ));
        let outcome = loop {
            let term = loop {
                if let Some(t) = terms.borrow_and_update().clone() {
                    break Some(t);
                }
                if terms.changed().await.is_err() {
                    break None;
                }
            };
            let Some(term) = term else { break Ok(()) };
            let term_token = token.child_token();
            let mut cfg = self.takeover(&term, &identity, root.as_ref()).await;
            let handed_on = CancellationToken::new();
            cfg.handed_on = handed_on.clone();
            self.metrics.terms.get_or_create(&vec![("baseline", cfg.baseline.name())]).inc();
            if let Err(e) = lease::record_term(&self.cfg.data_dir, &term) {
                tracing::warn!(error = %e, "could not record the Lease term; the next term starts from a fresh list");
            }
            let watching = tokio::spawn(watch::run(
                self.client.clone(),
                cfg,
                self.store.clone(),
                self.ingest.clone(),
                self.metrics.clone(),
                term_token.clone(),
            ));
            // The term lasts until the Lease is lost or the election stops.
            while terms.borrow_and_update().is_some() {
                if terms.changed().await.is_err() {
                    break;
                }
            }
            if !token.is_cancelled() && root.is_some() {
                // Lost: the next holder may have begun from this one's last upload already,
                // so what the watch holds goes to it with the baseline, not to the store
                // from here too (the same changes twice in `changes`).
                handed_on.cancel();
            }
            term_token.cancel();
            let ended = watching.await;
            if let Some(d) = &self.cfg.discovery {
                // Discovered pods are scraped by the holder only.
                d.send_replace(Arc::new(Discovery::default()));
            }
            match ended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Err(e),
                Err(e) => break Err(slo_collector::Error::Storage(format!("the Kubernetes watch task: {e}"))),
            }
            if token.is_cancelled() {
                break Ok(());
            }
        };
        campaign.cancel();
        let _ = election.await;
        outcome
    }

    /// The watch's settings for a new term: which baseline, and which keys are stored.
    async fn takeover(&self, term: &Term, identity: &str, root: Option<&Remote>) -> WatchConfig {
        let mut cfg = self.cfg.clone();
        // Its own baseline is current when nobody else held the Lease since this collector
        // saved it, or when nobody held it at all (the Lease is new: before it, whoever
        // watched did so without one, and this data directory's baseline is the one there is).
        let own = term.continues(lease::last_term(&self.cfg.data_dir).as_ref())
            || term.previous.as_deref().is_none_or(|p| p == identity);
        if own {
            cfg.baseline = Baseline::Saved;
            return cfg;
        }
        let Some(root) = root else {
            tracing::info!(previous = ?term.previous, "took the Kubernetes watch over; no object store to read the previous holder's baseline from: starting from a fresh list");
            cfg.baseline = Baseline::Fresh;
            return cfg;
        };
        cfg.baseline = match &term.previous {
            Some(p) if slo_store::valid_collector_name(p) => match root.child(p).get_opt(STATE_FILE).await {
                Ok(Some(bytes)) => {
                    tracing::info!(previous = %p, "took the Kubernetes watch over: continuing from its uploaded baseline");
                    Baseline::HandedOver(bytes.to_vec())
                }
                Ok(None) => Baseline::Fresh,
                Err(e) => {
                    tracing::warn!(previous = %p, error = %e, "could not read the previous holder's baseline: starting from a fresh list");
                    Baseline::Fresh
                }
            },
            _ => Baseline::Fresh,
        };
        cfg.known_keys = uploaded_keys(root).await;
        cfg
    }
}

/// The keys of every change the collectors below `root` have uploaded (empty if the object
/// store cannot be read: then the watch may store again what another collector stored).
async fn uploaded_keys(root: &Remote) -> HashSet<String> {
    let read = async {
        let (store, _) = Store::open_bucket(root.clone()).await.map_err(|e| e.to_string())?;
        watch::stored_keys(&store).await.map_err(|e| e.to_string())
    };
    match read.await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the changes other collectors uploaded; some may be stored again");
            HashSet::new()
        }
    }
}
