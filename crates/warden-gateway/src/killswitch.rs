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

    /// Apply what the store says now, as changes since the store was last read: a block
    /// or lockdown that this process entered in memory a moment before writing it to
    /// the store is not undone by a read that raced the write (nor after a failed write:
    /// the kill switch stays engaged). The first read applies the store's state whole.
    pub fn apply_store(
        &self,
        seen: &mut StoreSeen,
        blocked: Option<std::collections::BTreeSet<String>>,
        lockdown: Option<bool>,
    ) {
        if let Some(now) = blocked {
            match &seen.blocked {
                None => self.sync_blocked(&now),
                Some(prev) => {
                    for id in now.difference(prev) {
                        self.block(id);
                    }
                    for id in prev.difference(&now) {
                        self.unblock(id);
                    }
                }
            }
            seen.blocked = Some(now);
        }
        if let Some(on) = lockdown {
            if seen.lockdown != Some(on) && on != self.locked_down() {
                self.set_lockdown(on);
            }
            seen.lockdown = Some(on);
        }
    }

    /// A token cancelled when `identity` is blocked: already cancelled if it is blocked
    /// now. A request that passed the `Blocked` check before its body was read asks for
    /// its token only when it forwards; a block in between (which removed the
    /// identity's token) must still stop it. The blocked set is read under the streams
    /// lock, which `block` takes after inserting: either the token was in the map when
    /// `block` cancelled it, or the identity is seen blocked here.
    pub fn stream_token(&self, identity: &str) -> CancellationToken {
        let cut = || {
            let t = CancellationToken::new();
            t.cancel();
            t
        };
        match self.streams.lock() {
            Ok(_) if self.is_blocked(identity) => cut(),
            Ok(mut s) => s.entry(identity.to_owned()).or_default().clone(),
            Err(_) => cut(),
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
        // A poisoned lock still holds a token: lockdown must cut connections regardless.
        let mut c = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.lockdown.send_replace(on);
        if on {
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

/// The store's state as last read by [`KillSwitch::apply_store`].
#[derive(Debug, Default)]
pub struct StoreSeen {
    blocked: Option<std::collections::BTreeSet<String>>,
    lockdown: Option<bool>,
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

    /// A request passes the `Blocked` head check, then its body is read (up to 30 s);
    /// a block lands meanwhile. When it forwards and asks for its stream token, the
    /// token must already be cut: the block removed the identity's old token, and a
    /// fresh one would let the whole answer stream out.
    #[test]
    fn a_block_while_the_body_is_read_cuts_the_request_that_passed_the_check() {
        let k = KillSwitch::default();
        assert!(!k.is_blocked("carol"));
        k.block("carol");
        assert!(k.stream_token("carol").is_cancelled());
        // Blocked before any token existed: the same.
        k.block("dave");
        assert!(k.stream_token("dave").is_cancelled());
        assert!(k.unblock("carol"));
        assert!(!k.stream_token("carol").is_cancelled());
    }

    #[test]
    fn a_store_read_racing_an_admin_change_does_not_undo_it() {
        let k = KillSwitch::default();
        let mut seen = StoreSeen::default();
        let set = |ids: &[&str]| -> std::collections::BTreeSet<String> {
            ids.iter().map(|s| (*s).to_owned()).collect()
        };
        k.apply_store(&mut seen, Some(set(&["mallory"])), Some(false));
        assert!(k.is_blocked("mallory") && !k.locked_down());
        // The admin API engages both in memory; the store has not been written yet.
        let t = k.stream_token("eve");
        k.block("eve");
        k.set_lockdown(true);
        k.apply_store(&mut seen, Some(set(&["mallory"])), Some(false));
        assert!(k.is_blocked("eve") && k.locked_down() && t.is_cancelled());
        // The write lands; later another process lifts and unblocks through the store.
        k.apply_store(&mut seen, Some(set(&["mallory", "eve"])), Some(true));
        assert!(k.is_blocked("eve") && k.locked_down());
        k.apply_store(&mut seen, Some(set(&["mallory"])), Some(false));
        assert!(!k.is_blocked("eve") && k.is_blocked("mallory") && !k.locked_down());
        // A block written by another process is applied.
        k.apply_store(&mut seen, Some(set(&["mallory", "trudy"])), None);
        assert!(k.is_blocked("trudy"));
    }
}
