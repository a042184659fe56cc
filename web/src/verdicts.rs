//! The explain reports the pages show, kept a short while: a live page refreshes every
//! few seconds and the overview needs one report per service, while one explanation over
//! an hour at 1,000 requests/s costs a few hundred ms. A live report is reused for
//! [`LIVE_TTL`], one at a fixed `at` for [`FIXED_TTL`] (late data can still arrive for a
//! past moment, so it is not kept for ever); at most [`CAPACITY`] are kept.
//!
//! A live view someone is watching (asked for within [`WATCHED_FOR`]) is explained again
//! ahead of its expiry by [`keep_warm`](crate::keep_warm), so a page that reloads every
//! 15 s does not pay for the explanation on its reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slo_analyzer::Report;

/// How long a live report is reused.
pub(crate) const LIVE_TTL: Duration = Duration::from_secs(10);
/// How long a report at a fixed `at` is reused.
pub(crate) const FIXED_TTL: Duration = Duration::from_secs(300);
/// Reports kept at most.
pub(crate) const CAPACITY: usize = 256;
/// Live views kept warm at most: each costs an explanation every few seconds, and any
/// reader can ask for a new one (another service name, another window).
pub(crate) const WATCHED_MAX: usize = 16;
/// How long after it was last asked for a live view is kept warm.
pub(crate) const WATCHED_FOR: Duration = Duration::from_secs(120);
/// How long before its expiry a watched live report is explained again.
pub(crate) const AHEAD: Duration = Duration::from_secs(4);

/// What a report answers: service, end (`None`: live) and window, ns.
pub(crate) type Key = (String, Option<i64>, i64);

/// A report, or the message of the user error that stood in its place ("there are no
/// requests ...").
pub(crate) type Verdict = Result<Arc<Report>, String>;

/// The cache.
#[derive(Debug, Default, Clone)]
pub struct Verdicts {
    inner: Arc<Mutex<HashMap<Key, (Instant, Verdict)>>>,
    watched: Arc<Mutex<HashMap<Key, Instant>>>,
}

impl Verdicts {
    /// A fresh report for `key`, if one is kept.
    pub fn get(&self, key: &Key) -> Option<Verdict> {
        if key.1.is_none() {
            let mut w = self.watched.lock();
            if w.len() < WATCHED_MAX || w.contains_key(key) {
                w.insert(key.clone(), Instant::now());
            }
        }
        let map = self.inner.lock();
        let (at, v) = map.get(key)?;
        let ttl = if key.1.is_none() { LIVE_TTL } else { FIXED_TTL };
        (at.elapsed() < ttl).then(|| v.clone())
    }

    /// Keeps `verdict` for `key`, dropping stale entries (and the oldest when full).
    pub fn put(&self, key: Key, verdict: Verdict) {
        let mut map = self.inner.lock();
        map.retain(|k, (at, _)| at.elapsed() < if k.1.is_none() { LIVE_TTL } else { FIXED_TTL });
        if map.len() >= CAPACITY
            && let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(key, (Instant::now(), verdict));
    }
}

impl Verdicts {
    /// Live views asked for within [`WATCHED_FOR`] whose report expires within [`AHEAD`]
    /// (or is missing); views no longer watched are forgotten.
    pub fn due(&self) -> Vec<Key> {
        let mut w = self.watched.lock();
        w.retain(|_, at| at.elapsed() < WATCHED_FOR);
        let map = self.inner.lock();
        w.keys().filter(|k| map.get(*k).is_none_or(|(at, _)| at.elapsed() + AHEAD >= LIVE_TTL)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_reports_are_returned_and_the_cache_stays_bounded() {
        let v = Verdicts::default();
        let key = ("svc".to_string(), Some(1), 60);
        assert!(v.get(&key).is_none());
        v.put(key.clone(), Err("no requests".into()));
        assert_eq!(v.get(&key), Some(Err("no requests".into())));
        for i in 0..(CAPACITY as i64 + 10) {
            v.put(("svc".to_string(), Some(i + 10), 60), Err(String::new()));
        }
        assert!(v.inner.lock().len() <= CAPACITY);
    }

    #[test]
    fn a_watched_live_view_is_due_before_it_expires_and_a_fixed_one_never() {
        let v = Verdicts::default();
        let live = ("svc".to_string(), None, 60);
        let fixed = ("svc".to_string(), Some(5), 60);
        assert!(v.due().is_empty());
        assert!(v.get(&live).is_none() && v.get(&fixed).is_none());
        assert_eq!(v.due(), vec![live.clone()], "asked for and missing: due");
        v.put(live.clone(), Err(String::new()));
        assert!(v.due().is_empty(), "fresh: not due");
        v.inner.lock().get_mut(&live).unwrap().0 -= LIVE_TTL - AHEAD + Duration::from_millis(10);
        assert_eq!(v.due(), vec![live.clone()], "about to expire: due");
        v.watched.lock().get_mut(&live).unwrap().clone_from(&(Instant::now() - WATCHED_FOR));
        assert!(v.due().is_empty(), "no longer watched");
        for i in 0..(2 * WATCHED_MAX as i64) {
            v.get(&("svc".to_string(), None, 60 + i));
        }
        assert_eq!(v.due().len(), WATCHED_MAX, "at most WATCHED_MAX live views are kept warm");
    }
}
