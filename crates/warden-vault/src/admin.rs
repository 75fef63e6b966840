//! Administrator signing keys and approval statements.
//!
//! In the embedded default each administrator has an Ed25519 key in a PKCS#8 file
//! (mode 0600) under `keys/admins/`; with `admin add --pkcs11` the Ed25519 key is
//! generated on a PKCS#11 token (private, sensitive, never extractable) and signs there.
//! Either way the public key is in the store and every signature is verified against it. An approval is a
//! signature over a fixed, line-oriented statement that names the exact release, its
//! manifest digest, the action, the admin and the expiry time, so it cannot be replayed
//! for another release, version, content or action.

use crate::error::{Error, Result};
use crate::key::write_private_file;
use crate::pkcs11::Pkcs11Provider;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::path::Path;
use warden_store::{Admin, Approval, Release, Retirement, Timestamp};

/// Algorithm name stored with admin keys.
pub const ALGORITHM: &str = "ed25519";

/// Prefix of the key reference of an administrator whose key lives on a token:
/// `pkcs11:token=<token label>;object=<key label>` (RFC 7512 attribute names).
pub const TOKEN_REF_PREFIX: &str = "pkcs11:";

/// Where an administrator's private key is.
enum Holder {
    /// A PKCS#8 key file (embedded default).
    File(Ed25519KeyPair),
    /// A non-extractable key on a PKCS#11 token; `public` is the key recorded at
    /// `admin add`, and every signature is verified against it by the caller.
    Token {
        provider: Pkcs11Provider,
        label: String,
        public: Vec<u8>,
    },
}

/// An administrator's private signing key: a key file, or a key on a PKCS#11 token.
pub struct AdminKey {
    name: String,
    holder: Holder,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("name", &self.name)
            .field(
                "holder",
                &match &self.holder {
                    Holder::File(_) => "file",
                    Holder::Token { .. } => "pkcs11",
                },
            )
            .finish_non_exhaustive()
    }
}

/// `pkcs11:token=T;object=L` for a key labelled `label` on `token`.
pub fn token_ref(token: &str, label: &str) -> String {
    format!("{TOKEN_REF_PREFIX}token={token};object={label}")
}

/// The (token, object label) of a token key reference.
pub fn parse_token_ref(key_ref: &str) -> Option<(&str, &str)> {
    let rest = key_ref
        .strip_prefix(TOKEN_REF_PREFIX)?
        .strip_prefix("token=")?;
    let (token, label) = rest.rsplit_once(";object=")?;
    Some((token, label))
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
                holder: Holder::File(pair),
            },
            public,
        ))
    }

    /// Generate `name`'s key on the token as `label` (private, sensitive, never
    /// extractable). Returns the key and its public half.
    pub fn generate_on_token(
        name: &str,
        provider: &Pkcs11Provider,
        label: &str,
    ) -> Result<(AdminKey, Vec<u8>)> {
        let public = provider.generate_signing_key(label)?;
        Ok((
            AdminKey::on_token(name, provider.clone(), label, public.clone()),
            public,
        ))
    }

    /// `name`'s key `label` on the token, with the public key recorded for it.
    pub fn on_token(name: &str, provider: Pkcs11Provider, label: &str, public: Vec<u8>) -> Self {
        AdminKey {
            name: name.to_owned(),
            holder: Holder::Token {
                provider,
                label: label.to_owned(),
                public,
            },
        }
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
            holder: Holder::File(pair),
        })
    }

    /// The admin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Public key bytes (for a token key: the one recorded at `admin add`).
    pub fn public_key(&self) -> &[u8] {
        match &self.holder {
            Holder::File(pair) => pair.public_key().as_ref(),
            Holder::Token { public, .. } => public,
        }
    }

    /// Whether the key is on a PKCS#11 token.
    pub fn on_a_token(&self) -> bool {
        matches!(self.holder, Holder::Token { .. })
    }

    /// Sign a statement (on the token for a token key). Callers verify the signature
    /// against the registered public key before they use it.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        match &self.holder {
            Holder::File(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            Holder::Token {
                provider, label, ..
            } => provider.sign_with(label, msg),
        }
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

/// Whether `signature` over `msg` verifies under `admin`'s registered key.
pub fn verify_signature(admin: &Admin, msg: &[u8], signature: &[u8]) -> bool {
    admin.algorithm == ALGORITHM
        && UnparsedPublicKey::new(&signature::ED25519, &admin.public_key)
            .verify(msg, signature)
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
