//! Who is who: the narrow view of Warden's state the gateway needs (API key hash →
//! identity, registered identities for mTLS, blocks, lockdown). The CLI passes an
//! implementation backed by `warden-store`; tests use [`MemoryDirectory`].

use crate::Error;
use crate::keys::KeyHash;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// A caller and the attributes policies see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Block or unblock an identity (`by`: the administrator).
    fn set_blocked(&self, identity: &str, blocked: bool, by: &str) -> Result<(), Error>;
    /// Whether the gateway is in lockdown.
    fn lockdown(&self) -> Result<bool, Error>;
    /// Enter or lift lockdown (`by`: the administrator).
    fn set_lockdown(&self, on: bool, by: &str) -> Result<(), Error>;
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
    fn set_blocked(&self, identity: &str, blocked: bool, _by: &str) -> Result<(), Error> {
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
    fn set_lockdown(&self, on: bool, _by: &str) -> Result<(), Error> {
        self.with(|s| s.lockdown = on)
    }
}

/// The directory backed by `warden-store` (SQLite embedded default).
///
/// An API key's public id is the hex of the first 8 bytes of its SHA-256, so a lookup
/// needs no secret; the full hash is then compared in constant time.
#[derive(Debug)]
pub struct StoreDirectory {
    store: std::sync::Arc<dyn warden_store::Store>,
}

impl StoreDirectory {
    /// Wrap a store.
    pub fn new(store: std::sync::Arc<dyn warden_store::Store>) -> Self {
        StoreDirectory { store }
    }
}

/// The public id under which a key's hash is stored.
pub fn key_id(hash: &KeyHash) -> String {
    hex::encode(hash.0.get(..8).unwrap_or_default())
}

fn store_err(e: warden_store::Error) -> Error {
    Error::Directory(e.to_string())
}

fn to_identity(i: warden_store::Identity) -> Identity {
    Identity {
        clearance: i
            .attributes
            .clearance
            .as_deref()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0),
        team: i.attributes.team.unwrap_or_default(),
        roles: i.attributes.roles,
        name: i.id,
    }
}

impl Directory for StoreDirectory {
    fn identity_for_key(&self, hash: &KeyHash) -> Result<Option<Identity>, Error> {
        let Some(k) = self.store.api_key(&key_id(hash)).map_err(store_err)? else {
            return Ok(None);
        };
        let now = warden_store::now();
        if k.revoked_at.is_some() || k.expires_at.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        if aws_lc_rs::constant_time::verify_slices_are_equal(&k.secret_hash, &hash.0).is_err() {
            return Ok(None);
        }
        self.identity(&k.identity)
    }
    fn identity(&self, name: &str) -> Result<Option<Identity>, Error> {
        Ok(self
            .store
            .identity(name)
            .map_err(store_err)?
            .filter(|i| i.kind != warden_store::IdentityKind::Admin)
            .map(to_identity))
    }
    fn blocked(&self) -> Result<BTreeSet<String>, Error> {
        Ok(self
            .store
            .active_blocks()
            .map_err(store_err)?
            .into_iter()
            .map(|b| b.identity)
            .collect())
    }
    fn set_blocked(&self, identity: &str, blocked: bool, by: &str) -> Result<(), Error> {
        let now = warden_store::now();
        if blocked {
            self.store
                .insert_block(&warden_store::NewBlock {
                    identity: identity.to_owned(),
                    reason: "blocked at the gateway".into(),
                    blocked_by: by.to_owned(),
                    blocked_at: now,
                })
                .map_err(store_err)?;
        } else {
            self.store
                .lift_blocks(identity, by, now)
                .map_err(store_err)?;
        }
        Ok(())
    }
    fn lockdown(&self) -> Result<bool, Error> {
        Ok(self
            .store
            .lockdown()
            .map_err(store_err)?
            .is_some_and(|l| l.active))
    }
    fn set_lockdown(&self, on: bool, by: &str) -> Result<(), Error> {
        self.store
            .set_lockdown(&warden_store::Lockdown {
                active: on,
                reason: if on { "lockdown" } else { "lifted" }.into(),
                set_by: by.to_owned(),
                set_at: warden_store::now(),
            })
            .map_err(store_err)
    }
}
