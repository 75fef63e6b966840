//! The kill switch: blocked identities (refused at once, their open streams cut) and
//! lockdown (the public listener closed and every public connection dropped).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Shared kill-switch state.
#[derive(Debug)]
pub struct KillSwitch {
    blocked: RwLock<HashSet<String>>,
    streams: Mutex<HashMap<String, CancellationToken>>,
    lockdown: watch::Sender<bool>,
    connections: Mutex<CancellationToken>,
}

impl Default for KillSwitch {
    fn default() -> Self {
        KillSwitch {
            blocked: RwLock::new(HashSet::new()),
            streams: Mutex::new(HashMap::new()),
            lockdown: watch::channel(false).0,
            connections: Mutex::new(CancellationToken::new()),
        }
    }
}

impl KillSwitch {
    /// Whether `identity` is blocked.
    pub fn is_blocked(&self, identity: &str) -> bool {
        self.blocked.read().map_or(true, |b| b.contains(identity))
    }

    /// Block `identity` and cut its open streams. Returns whether it was newly blocked.
    pub fn block(&self, identity: &str) -> bool {
        let new = self
            .blocked
            .write()
            .map(|mut b| b.insert(identity.to_owned()))
            .unwrap_or(false);
        if let Ok(mut s) = self.streams.lock()
            && let Some(t) = s.remove(identity)
        {
            t.cancel();
        }
        new
    }

    /// Unblock `identity`. Returns whether it was blocked.
    pub fn unblock(&self, identity: &str) -> bool {
        self.blocked
            .write()
            .map(|mut b| b.remove(identity))
            .unwrap_or(false)
    }

    /// Replace the blocked set (from the store), cutting streams of newly blocked identities.
    pub fn sync_blocked(&self, now: &std::collections::BTreeSet<String>) {
        let current: Vec<String> = self
            .blocked
            .read()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        for id in now {
            if !current.contains(id) {
                self.block(id);
            }
        }
        for id in current {
            if !now.contains(&id) {
                self.unblock(&id);
            }
        }
    }

    /// A token cancelled when `identity` is blocked.
    pub fn stream_token(&self, identity: &str) -> CancellationToken {
        match self.streams.lock() {
            Ok(mut s) => s.entry(identity.to_owned()).or_default().clone(),
            Err(_) => {
                let t = CancellationToken::new();
                t.cancel();
                t
            }
        }
    }

    /// Whether lockdown is on.
    pub fn locked_down(&self) -> bool {
        *self.lockdown.borrow()
    }

    /// Enter or lift lockdown. Entering cancels every public connection.
    pub fn set_lockdown(&self, on: bool) {
        // The flag changes under the connections lock, the same lock `connection_token`
        // takes: a connection accepted while lockdown is being entered either got the
        // old token (cancelled here) or sees the flag (and gets a cancelled one).
        let guard = self.connections.lock();
        self.lockdown.send_replace(on);
        if on && let Ok(mut c) = guard {
            c.cancel();
            *c = CancellationToken::new();
        }
    }

    /// Watch lockdown changes.
    pub fn watch_lockdown(&self) -> watch::Receiver<bool> {
        self.lockdown.subscribe()
    }

    /// Token for a new public connection (cancelled by lockdown).
    pub fn connection_token(&self) -> CancellationToken {
        match self.connections.lock() {
            Ok(c) if !self.locked_down() => c.clone(),
            // Locked down (or the lock poisoned): the connection is cut at once.
            _ => {
                let t = CancellationToken::new();
                t.cancel();
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_cuts_streams_and_lockdown_cuts_connections() {
        let k = KillSwitch::default();
        let t = k.stream_token("alice");
        let other = k.stream_token("bob");
        assert!(k.block("alice"));
        assert!(t.is_cancelled() && !other.is_cancelled());
        assert!(k.is_blocked("alice") && !k.is_blocked("bob"));
        assert!(k.unblock("alice"));
        assert!(!k.stream_token("alice").is_cancelled());
        let c = k.connection_token();
        k.set_lockdown(true);
        assert!(c.is_cancelled() && k.locked_down());
        // A connection accepted during lockdown is cut too (it was accepted before the
        // listener closed).
        assert!(k.connection_token().is_cancelled());
        k.set_lockdown(false);
        assert!(!k.locked_down() && !k.connection_token().is_cancelled());
    }
}
