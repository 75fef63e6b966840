//! Administrator signing keys and approval statements.
//!
//! In the embedded default each administrator has an Ed25519 key in a PKCS#8 file
//! (mode 0600) under `keys/admins/`; the public key is in the store. An approval is a
//! signature over a fixed, line-oriented statement that names the exact release, its
//! manifest digest, the action, the admin and the expiry time, so it cannot be replayed
//! for another release, version, content or action.

use crate::error::{Error, Result};
use crate::key::write_private_file;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::path::Path;
use warden_store::{Admin, Approval, Release, Retirement, Timestamp};

/// Algorithm name stored with admin keys.
pub const ALGORITHM: &str = "ed25519";

/// An administrator's private signing key, loaded from its key file.
pub struct AdminKey {
    name: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AdminKey {
    /// Generate a key for `name` and write it to `path` (0600, never overwritten).
    /// Returns the key and its public half.
    pub fn generate(name: &str, path: &Path) -> Result<(AdminKey, Vec<u8>)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Crypto("cannot generate an Ed25519 key".into()))?;
        write_private_file(path, doc.as_ref())?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|_| Error::Crypto("generated key does not parse".into()))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok((
            AdminKey {
                name: name.to_owned(),
                pair,
            },
            public,
        ))
    }

    /// Load `name`'s key from `path`.
    pub fn load(name: &str, path: &Path) -> Result<AdminKey> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| Error::io(path.display(), e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::invalid(
                    path.display().to_string(),
                    format!(
                        "admin key file is readable by group or others (mode {:o}); chmod 600 it",
                        mode & 0o777
                    ),
                ));
            }
        }
        let bytes =
            zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path.display(), e))?);
        let pair = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
            Error::invalid(
                path.display().to_string(),
                "not an Ed25519 PKCS#8 private key",
            )
        })?;
        Ok(AdminKey {
            name: name.to_owned(),
            pair,
        })
    }

    /// The admin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Public key bytes.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Sign a statement.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

/// The exact bytes an approval signs.
pub fn statement(
    name: &str,
    version: &str,
    manifest_digest: &str,
    action: &str,
    admin: &str,
    expires_at: Timestamp,
) -> Vec<u8> {
    format!(
        "warden-approval-v1\nname={name}\nversion={version}\nmanifest-sha256={manifest_digest}\naction={action}\nadmin={admin}\nexpires={expires_at}\n"
    )
    .into_bytes()
}

/// The exact bytes a deletion record signs.
pub fn deletion_statement(
    name: &str,
    version: &str,
    manifest_digest: &str,
    data_key_id: &str,
    kek_id: &str,
    at: Timestamp,
    by: &str,
) -> Vec<u8> {
    format!(
        "warden-shred-v1\nname={name}\nversion={version}\nmanifest-sha256={manifest_digest}\ndata-key={data_key_id}\nkek={kek_id}\nat={at}\nby={by}\n"
    )
    .into_bytes()
}

/// The exact bytes a retirement signs.
pub fn retire_statement(
    name: &str,
    version: &str,
    manifest_digest: &str,
    reason: &str,
    admin: &str,
    at: Timestamp,
) -> Vec<u8> {
    // The reason is free text: escape what would let it forge another line.
    let reason = reason.replace('\\', "\\\\").replace('\n', "\\n");
    format!(
        "warden-retire-v1\nname={name}\nversion={version}\nmanifest-sha256={manifest_digest}\nreason={reason}\nadmin={admin}\nat={at}\n"
    )
    .into_bytes()
}

/// Whether a retirement record's signature verifies under `admin`'s registered key.
pub fn verify_retirement(admin: &Admin, release: &Release, retirement: &Retirement) -> bool {
    if admin.algorithm != ALGORITHM || admin.name != retirement.by {
        return false;
    }
    let msg = retire_statement(
        &release.name,
        &release.version,
        &release.manifest_digest,
        &retirement.reason,
        &retirement.by,
        retirement.at,
    );
    UnparsedPublicKey::new(&signature::ED25519, &admin.public_key)
        .verify(&msg, &retirement.signature)
        .is_ok()
}

/// Whether `approval`'s signature verifies under `admin`'s registered key.
pub fn verify_approval(admin: &Admin, approval: &Approval) -> bool {
    if admin.algorithm != ALGORITHM || admin.name != approval.admin {
        return false;
    }
    let msg = statement(
        &approval.name,
        &approval.version,
        &approval.manifest_digest,
        &approval.action,
        &approval.admin,
        approval.expires_at,
    );
    UnparsedPublicKey::new(&signature::ED25519, &admin.public_key)
        .verify(&msg, &approval.signature)
        .is_ok()
}
