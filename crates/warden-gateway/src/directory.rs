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

/// A new API key and who it is for. A new identity is created with these attributes (kind
/// user); for an existing one, roles are added and team and clearance replaced when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyGrant {
    /// Identity name.
    pub identity: String,
    /// Roles to add.
    pub roles: Vec<String>,
    /// Team to set.
    pub team: Option<String>,
    /// Clearance to set.
    pub clearance: Option<i64>,
    /// Unix seconds after which the key stops working.
    pub expires_at: Option<i64>,
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
    /// Store a new API key (only its hash) for `grant.identity`; [`Error::Refused`] for
    /// an administrator identity.
    fn create_key(&self, grant: &KeyGrant, hash: &KeyHash) -> Result<(), Error>;
    /// Revoke a key by id; the identity it belonged to, or `None` if there is no such key.
    fn revoke_key(&self, key_id: &str) -> Result<Option<String>, Error>;
}

/// An in-memory directory (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    keys: BTreeMap<KeyHash, String>,
    revoked: BTreeSet<KeyHash>,
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
        self.with(|s| {
            if s.revoked.contains(hash) {
                return None;
            }
            s.keys.get(hash).and_then(|n| s.identities.get(n)).cloned()
        })
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
    fn create_key(&self, grant: &KeyGrant, hash: &KeyHash) -> Result<(), Error> {
        reserved(&grant.identity)?;
        self.with(|s| {
            let i = s
                .identities
                .entry(grant.identity.clone())
                .or_insert_with(|| Identity {
                    name: grant.identity.clone(),
                    roles: Vec::new(),
                    team: String::new(),
                    clearance: 0,
                });
            for r in &grant.roles {
                if !i.roles.contains(r) {
                    i.roles.push(r.clone());
                }
            }
            if let Some(t) = &grant.team {
                i.team = t.clone();
            }
            if let Some(c) = grant.clearance {
                i.clearance = c;
            }
            s.keys.insert(*hash, grant.identity.clone());
        })
    }
    fn revoke_key(&self, key_id: &str) -> Result<Option<String>, Error> {
        self.with(|s| {
            let (hash, who) = s
                .keys
                .iter()
                .find(|(h, _)| self::key_id(h) == key_id)
                .map(|(h, n)| (*h, n.clone()))?;
            s.revoked.insert(hash);
            Some(who)
        })
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

/// Refuse a directory identity in the token namespace (`jwt:…`).
fn reserved(identity: &str) -> Result<(), Error> {
    if crate::jwt::is_reserved_name(identity) {
        return Err(Error::Refused(format!(
            "{identity}: names starting with {} are reserved for OIDC token subjects",
            crate::jwt::IDENTITY_PREFIX
        )));
    }
    Ok(())
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
    fn create_key(&self, grant: &KeyGrant, hash: &KeyHash) -> Result<(), Error> {
        reserved(&grant.identity)?;
        let now = warden_store::now();
        let ident = match self.store.identity(&grant.identity).map_err(store_err)? {
            Some(i) if i.kind == warden_store::IdentityKind::Admin => {
                return Err(Error::Refused(format!(
                    "{}: is an administrator; administrators get no API keys",
                    grant.identity
                )));
            }
            Some(mut i) => {
                for r in &grant.roles {
                    if !i.attributes.roles.contains(r) {
                        i.attributes.roles.push(r.clone());
                    }
                }
                if grant.team.is_some() {
                    i.attributes.team = grant.team.clone();
                }
                if let Some(c) = grant.clearance {
                    i.attributes.clearance = Some(c.to_string());
                }
                i
            }
            None => warden_store::Identity {
                id: grant.identity.clone(),
                kind: warden_store::IdentityKind::User,
                attributes: warden_store::Attributes {
                    roles: grant.roles.clone(),
                    team: grant.team.clone(),
                    clearance: grant.clearance.map(|c| c.to_string()),
                    extra: Default::default(),
                },
                created_at: now,
            },
        };
        self.store.put_identity(&ident).map_err(store_err)?;
        self.store
            .insert_api_key(&warden_store::ApiKey {
                key_id: key_id(hash),
                identity: grant.identity.clone(),
                secret_hash: hash.0.to_vec(),
                created_at: now,
                expires_at: grant.expires_at,
                revoked_at: None,
            })
            .map_err(store_err)
    }
    fn revoke_key(&self, key_id: &str) -> Result<Option<String>, Error> {
        let Some(k) = self.store.api_key(key_id).map_err(store_err)? else {
            return Ok(None);
        };
        self.store
            .revoke_api_key(key_id, warden_store::now())
            .map_err(store_err)?;
        Ok(Some(k.identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_directory_creates_and_revokes_keys() {
        let d = tempfile::tempdir().unwrap();
        let store: std::sync::Arc<dyn warden_store::Store> = std::sync::Arc::new(
            warden_store::SqliteStore::open(&d.path().join("state.db")).unwrap(),
        );
        let dir = StoreDirectory::new(std::sync::Arc::clone(&store));
        let (_, hash) = crate::keys::generate().unwrap();
        let grant = KeyGrant {
            identity: "carol".into(),
            roles: vec!["user".into()],
            clearance: Some(2),
            ..KeyGrant::default()
        };
        dir.create_key(&grant, &hash).unwrap();
        let who = dir.identity_for_key(&hash).unwrap().unwrap();
        assert_eq!((who.name.as_str(), who.clearance), ("carol", 2));
        assert_eq!(who.roles, vec!["user".to_owned()]);
        // Only the hash is stored.
        let rec = store.api_key(&key_id(&hash)).unwrap().unwrap();
        assert_eq!(rec.secret_hash, hash.0.to_vec());
        // A second key adds a role and keeps the first.
        let (_, h2) = crate::keys::generate().unwrap();
        let more = KeyGrant {
            identity: "carol".into(),
            roles: vec!["researcher".into()],
            ..KeyGrant::default()
        };
        dir.create_key(&more, &h2).unwrap();
        let who = dir.identity_for_key(&h2).unwrap().unwrap();
        assert_eq!(who.roles, vec!["user".to_owned(), "researcher".to_owned()]);
        assert_eq!(
            dir.revoke_key(&key_id(&hash)).unwrap().as_deref(),
            Some("carol")
        );
        assert!(dir.identity_for_key(&hash).unwrap().is_none());
        assert!(dir.identity_for_key(&h2).unwrap().is_some());
        assert_eq!(dir.revoke_key("0000000000000000").unwrap(), None);
        // Administrators get no API keys.
        store
            .put_identity(&warden_store::Identity {
                id: "root.admin".into(),
                kind: warden_store::IdentityKind::Admin,
                attributes: warden_store::Attributes::default(),
                created_at: warden_store::now(),
            })
            .unwrap();
        let (_, h3) = crate::keys::generate().unwrap();
        let e = dir
            .create_key(
                &KeyGrant {
                    identity: "root.admin".into(),
                    ..KeyGrant::default()
                },
                &h3,
            )
            .unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e}");
        assert!(store.api_key(&key_id(&h3)).unwrap().is_none());
        // Nor does the token namespace: no directory identity named jwt:….
        let (_, h4) = crate::keys::generate().unwrap();
        let jwt = KeyGrant {
            identity: "jwt:carol".into(),
            ..KeyGrant::default()
        };
        assert!(matches!(
            dir.create_key(&jwt, &h4).unwrap_err(),
            Error::Refused(_)
        ));
        assert!(MemoryDirectory::default().create_key(&jwt, &h4).is_err());
        assert!(store.identity("jwt:carol").unwrap().is_none());
        assert!(store.api_key(&key_id(&h4)).unwrap().is_none());
    }
}
