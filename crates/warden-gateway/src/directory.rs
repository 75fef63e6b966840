//! Who is who: the narrow view of Warden's state the gateway needs (API key hash →
//! identity, registered identities for mTLS, blocks, lockdown). The CLI passes an
//! implementation backed by `warden-store`; tests use [`MemoryDirectory`].

use crate::Error;
use crate::keys::KeyHash;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// A caller and the attributes policies see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable name (user, service, or OIDC subject).
    pub name: String,
    /// Roles (Cedar parents and `principal.roles`).
    pub roles: Vec<String>,
    /// Team.
    pub team: String,
    /// Clearance level.
    pub clearance: i64,
}

/// State the gateway reads (and the admin API writes).
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The identity an API key hash belongs to, if the key exists and is not revoked.
    fn identity_for_key(&self, hash: &KeyHash) -> Result<Option<Identity>, Error>;
    /// A registered identity by name (mTLS clients).
    fn identity(&self, name: &str) -> Result<Option<Identity>, Error>;
    /// Every blocked identity.
    fn blocked(&self) -> Result<BTreeSet<String>, Error>;
    /// Block or unblock an identity.
    fn set_blocked(&self, identity: &str, blocked: bool) -> Result<(), Error>;
    /// Whether the gateway is in lockdown.
    fn lockdown(&self) -> Result<bool, Error>;
    /// Enter or lift lockdown.
    fn set_lockdown(&self, on: bool) -> Result<(), Error>;
}

/// An in-memory directory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    keys: BTreeMap<KeyHash, String>,
    identities: BTreeMap<String, Identity>,
    blocked: BTreeSet<String>,
    lockdown: bool,
}

impl MemoryDirectory {
    /// Register an identity and, optionally, one key hash for it.
    pub fn add(&self, identity: Identity, key: Option<KeyHash>) {
        if let Ok(mut s) = self.inner.lock() {
            if let Some(k) = key {
                s.keys.insert(k, identity.name.clone());
            }
            s.identities.insert(identity.name.clone(), identity);
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> Result<T, Error> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| Error::Directory("state lock poisoned".into()))?;
        Ok(f(&mut g))
    }
}

impl Directory for MemoryDirectory {
    fn identity_for_key(&self, hash: &KeyHash) -> Result<Option<Identity>, Error> {
        self.with(|s| s.keys.get(hash).and_then(|n| s.identities.get(n)).cloned())
    }
    fn identity(&self, name: &str) -> Result<Option<Identity>, Error> {
        self.with(|s| s.identities.get(name).cloned())
    }
    fn blocked(&self) -> Result<BTreeSet<String>, Error> {
        self.with(|s| s.blocked.clone())
    }
    fn set_blocked(&self, identity: &str, blocked: bool) -> Result<(), Error> {
        self.with(|s| {
            if blocked {
                s.blocked.insert(identity.to_owned());
            } else {
                s.blocked.remove(identity);
            }
        })
    }
    fn lockdown(&self) -> Result<bool, Error> {
        self.with(|s| s.lockdown)
    }
    fn set_lockdown(&self, on: bool) -> Result<(), Error> {
        self.with(|s| s.lockdown = on)
    }
}
