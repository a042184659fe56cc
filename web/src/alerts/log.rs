//! The alert log: every alert the receiver took, with its explanation, in one JSON-lines
//! file under the data directory (`alerts/alerts.jsonl`), appended and fsynced before the
//! receiver answers, so an alert Alertmanager was told we have survives `kill -9`.
//!
//! Each line is an alert's whole state after a change; on open, the last line of each key
//! wins. The file is rewritten (to a temporary file, fsynced, renamed) once it holds more
//! than twice the lines it needs, keeping the newest [`KEEP`] alerts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slo_analyzer::Report;

/// Alerts kept at most.
pub(crate) const KEEP: usize = 10_000;

/// What an alert is known by: Alertmanager's fingerprint and its start. A new firing of
/// the same rule and labels starts later, so it is a new alert and is explained again.
pub(crate) type AlertKey = (String, String);

/// One alert and what slo made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Alertmanager's fingerprint (or one computed from the labels).
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The alert's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Where Prometheus shows the rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
    /// When slo received it first, RFC 3339.
    pub received_at: String,
    /// The service explained (`service` or `sloth_service` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `pending` (queued), `explained`, `unexplained` (why in `note`).
    pub explanation: String,
    /// Why there is no explanation, or what limited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Explain's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// Forwarding per URL: `sent`, `failed: ...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<String>,
}

impl Entry {
    /// Its key.
    pub fn key(&self) -> AlertKey {
        (self.fingerprint.clone(), self.starts_at.clone())
    }
}

/// The log: the file and the alerts it holds.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: File,
    lines: usize,
    alerts: HashMap<AlertKey, Entry>,
}

impl Log {
    /// Opens (or creates) the log in `dir`; lines that do not read (a torn last write) are
    /// skipped and counted in the log.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("alerts.jsonl");
        let mut alerts = HashMap::new();
        let mut lines = 0;
        let mut torn = 0;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                lines += 1;
                match serde_json::from_str::<Entry>(&line) {
                    Ok(e) => {
                        alerts.insert(e.key(), e);
                    }
                    Err(_) => torn += 1,
                }
            }
        }
        if torn > 0 {
            tracing::warn!(torn, path = %path.display(), "alert log lines that do not read were skipped");
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut log = Log { path, file, lines, alerts };
        if torn > 0 || log.lines > 2 * log.alerts.len().max(KEEP / 10) {
            log.compact()?;
        }
        Ok(log)
    }

    /// The alert of `key`.
    pub(crate) fn get(&self, key: &AlertKey) -> Option<&Entry> {
        self.alerts.get(key)
    }

    /// Every alert, newest start first.
    pub(crate) fn all(&self) -> Vec<&Entry> {
        let mut v: Vec<&Entry> = self.alerts.values().collect();
        v.sort_by(|a, b| b.starts_at.cmp(&a.starts_at).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
        v
    }

    /// Writes `entries` (new states) durably, then keeps them.
    pub(crate) fn put(&mut self, entries: Vec<Entry>) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in &entries {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.lines += entries.len();
        for e in entries {
            self.alerts.insert(e.key(), e);
        }
        if self.lines > 2 * self.alerts.len().max(KEEP / 10) || self.alerts.len() > KEEP + KEEP / 10 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file with the newest [`KEEP`] alerts.
    fn compact(&mut self) -> std::io::Result<()> {
        let keep: Vec<Entry> = self.all().into_iter().take(KEEP).cloned().collect();
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut buf = Vec::new();
            for e in &keep {
                serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = keep.len();
        self.alerts = keep.into_iter().map(|e| (e.key(), e)).collect();
        Ok(())
    }
}
