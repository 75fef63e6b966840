//! The kill switch: blocked identities (refused at once, their open streams cut) and
//! lockdown (the public listener closed and every public connection dropped).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The token of an identity's requests in flight, and how many hold it.
#[derive(Debug)]
struct Streams {
    token: CancellationToken,
    holders: usize,
    /// Tells this entry from a later one of the same identity (after a block removed it).
    generation: u64,
}

#[derive(Debug, Default)]
struct StreamMap {
    map: HashMap<String, Streams>,
    next_generation: u64,
}

/// Shared kill-switch state.
#[derive(Debug)]
pub struct KillSwitch {
    blocked: RwLock<HashSet<String>>,
    /// Identities unblocked since the behaviour monitor last looked (it forgets what it
    /// held against them: an administrator's unblock is a fresh start).
    lifted: Mutex<HashSet<String>>,
    streams: Arc<Mutex<StreamMap>>,
    lockdown: watch::Sender<bool>,
    connections: Mutex<CancellationToken>,
}

impl Default for KillSwitch {
    fn default() -> Self {
        KillSwitch {
            blocked: RwLock::new(HashSet::new()),
            lifted: Mutex::new(HashSet::new()),
            streams: Arc::new(Mutex::new(StreamMap::default())),
            lockdown: watch::channel(false).0,
            connections: Mutex::new(CancellationToken::new()),
        }
    }
}

/// A request's hold on its identity's stream token ([`KillSwitch::stream_token`]): the
/// token is cancelled when the identity is blocked; the identity's entry is forgotten
/// when its last holder is dropped, so the map holds the identities with requests in
/// flight, not every subject an identity provider ever issued.
#[derive(Debug)]
pub struct StreamToken {
    token: CancellationToken,
    /// The map and the entry's identity and generation (None: a cut token, in no map).
    held: Option<(Arc<Mutex<StreamMap>>, String, u64)>,
}

impl StreamToken {
    /// The cancellation token.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    fn cut() -> Self {
        let token = CancellationToken::new();
        token.cancel();
        StreamToken { token, held: None }
    }
}

impl Drop for StreamToken {
    fn drop(&mut self) {
        let Some((map, identity, generation)) = self.held.take() else {
            return;
        };
        let Ok(mut m) = map.lock() else { return };
        if let Some(e) = m.map.get_mut(&identity)
            && e.generation == generation
        {
            e.holders = e.holders.saturating_sub(1);
            if e.holders == 0 {
                m.map.remove(&identity);
            }
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
            && let Some(e) = s.map.remove(identity)
        {
            e.token.cancel();
        }
        new
    }

    /// Unblock `identity`. Returns whether it was blocked.
    pub fn unblock(&self, identity: &str) -> bool {
        let was = self
            .blocked
            .write()
            .map(|mut b| b.remove(identity))
            .unwrap_or(false);
        if was && let Ok(mut l) = self.lifted.lock() {
            l.insert(identity.to_owned());
        }
        was
    }

    /// Whether `identity` was unblocked since the last call for it (then cleared).
    pub fn take_lifted(&self, identity: &str) -> bool {
        self.lifted
            .lock()
            .map(|mut l| !l.is_empty() && l.remove(identity))
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
    pub fn stream_token(&self, identity: &str) -> StreamToken {
        let Ok(mut s) = self.streams.lock() else {
            return StreamToken::cut();
        };
        if self.is_blocked(identity) {
            return StreamToken::cut();
        }
        let s = &mut *s;
        let e = s.map.entry(identity.to_owned()).or_insert_with(|| {
            s.next_generation += 1;
            Streams {
                token: CancellationToken::new(),
                holders: 0,
                generation: s.next_generation,
            }
        });
        e.holders += 1;
        StreamToken {
            token: e.token.clone(),
            held: Some((Arc::clone(&self.streams), identity.to_owned(), e.generation)),
        }
    }

    /// Identities with a stream token held.
    #[cfg(test)]
    fn stream_entries(&self) -> usize {
        self.streams.lock().map_or(0, |s| s.map.len())
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
        assert!(t.token().is_cancelled() && !other.token().is_cancelled());
        assert!(k.is_blocked("alice") && !k.is_blocked("bob"));
        assert!(k.unblock("alice"));
        assert!(!k.stream_token("alice").token().is_cancelled());
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
        assert!(k.stream_token("carol").token().is_cancelled());
        // Blocked before any token existed: the same.
        k.block("dave");
        assert!(k.stream_token("dave").token().is_cancelled());
        assert!(k.unblock("carol"));
        assert!(!k.stream_token("carol").token().is_cancelled());
    }

    /// Every identity that ever sent a request (a token subject from an IdP, say) must
    /// not stay in the stream map for ever: an entry lives while a request holds it.
    #[test]
    fn stream_entries_are_forgotten_when_their_last_request_ends() {
        let k = KillSwitch::default();
        for i in 0..10_000 {
            drop(k.stream_token(&format!("jwt:sub-{i}")));
        }
        assert_eq!(k.stream_entries(), 0);
        // Two requests of one identity share the entry until both end; a block still
        // cuts both.
        let a = k.stream_token("erin");
        let b = k.stream_token("erin");
        drop(a);
        assert_eq!(k.stream_entries(), 1);
        let c = k.stream_token("erin");
        k.block("erin");
        assert!(b.token().is_cancelled() && c.token().is_cancelled());
        assert_eq!(k.stream_entries(), 0);
        // An old holder dropped after the block (and an unblock and a new request) does
        // not take the new entry with it.
        k.unblock("erin");
        let d = k.stream_token("erin");
        drop((b, c));
        assert_eq!(k.stream_entries(), 1);
        k.block("erin");
        assert!(d.token().is_cancelled());
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
        assert!(k.is_blocked("eve") && k.locked_down() && t.token().is_cancelled());
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
