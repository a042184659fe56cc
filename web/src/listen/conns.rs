//! The connections of one listener: how many, which are idle, which to close first.
//!
//! Every accepted connection is registered with its last activity (accepted, a request
//! begun or finished) and its requests in flight. Bytes do not count: HTTP/2 keep-alive
//! pings would keep an unused connection forever. A connection with no request in flight
//! and no activity for the idle timeout is closed; when the listener is at its cap, the connection idle the
//! longest is closed to make room for a new one (as Apache's event MPM closes idle
//! keep-alive connections under load), and only when none is idle is the new one refused.
//! So idle sockets, however many, cannot keep a working client out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// One connection's shared state.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last request begun or finished (or the accept).
    last_activity_ms: AtomicU64,
    in_flight: AtomicUsize,
    close: Notify,
}

impl Conn {
    fn touch(&self) {
        self.last_activity_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Milliseconds since the last activity, 0 while a request is in flight.
    pub(crate) fn idle_ms(&self) -> u64 {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return 0;
        }
        (self.epoch.elapsed().as_millis() as u64).saturating_sub(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.touch();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when the registry asks this connection to close.
    pub(crate) async fn closing(&self) {
        self.close.notified().await
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections of one listener.
#[derive(Debug)]
pub(crate) struct Registry {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// What [`Registry::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Registered (after asking the idlest connection to close, when at the cap).
    Admitted { conn: Arc<Conn>, evicted: bool },
    /// At the cap with every connection busy.
    Refused,
}

impl Registry {
    pub(crate) fn new(max: usize) -> Registry {
        Registry { max: max.max(1), epoch: Instant::now(), next_id: AtomicU64::new(0), conns: Mutex::default() }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.lock().len()
    }

    /// Registers a new connection if there is room, or can be made.
    pub(crate) fn admit(&self) -> Admission {
        let mut conns = self.conns.lock();
        let mut evicted = false;
        if conns.len() >= self.max {
            let idlest = conns.values().filter(|c| c.idle_ms() > 0).max_by_key(|c| c.idle_ms()).map(|c| c.id);
            match idlest {
                Some(id) => {
                    if let Some(c) = conns.remove(&id) {
                        c.close.notify_one();
                        evicted = true;
                    }
                }
                None => return Admission::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            epoch: self.epoch,
            last_activity_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        conns.insert(id, conn.clone());
        Admission::Admitted { conn, evicted }
    }

    /// Forgets a connection that ended.
    pub(crate) fn remove(&self, conn: &Conn) {
        self.conns.lock().remove(&conn.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_idlest_connection_makes_room() {
        let reg = Registry::new(2);
        let Admission::Admitted { conn: a, .. } = reg.admit() else { panic!("a") };
        std::thread::sleep(std::time::Duration::from_millis(5));
        let Admission::Admitted { conn: b, .. } = reg.admit() else { panic!("b") };
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(b.begin());
        // Full: `a` has been idle longest and is asked to close.
        let Admission::Admitted { evicted, .. } = reg.admit() else { panic!("c") };
        assert!(evicted);
        assert_eq!(reg.len(), 2);
        assert!(!reg.conns.lock().contains_key(&a.id));
    }

    #[test]
    fn busy_connections_are_not_evicted() {
        let reg = Registry::new(1);
        let Admission::Admitted { conn: a, .. } = reg.admit() else { panic!("a") };
        let _busy = a.begin();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(a.idle_ms(), 0);
        assert!(matches!(reg.admit(), Admission::Refused));
    }
}
