//! `warden-vault`: sealed model storage and the release lifecycle.
//!
//! - [`sealed`]: the sealed file format (segmented AES-256-GCM, STREAM nonces, random
//!   access), specified in `docs/sealed-format.md`.
//! - [`key`]: data keys and key-encryption-key providers ([`key::FileProvider`],
//!   [`pkcs11::Pkcs11Provider`]).
//! - [`registry`]: the release registry and lifecycle ([`Vault`]): import, evaluate,
//!   approve, deploy, rollback, export, shred, and the integrity monitor.
//! - [`admin`]: administrator keys and signed approval statements; [`policy`]: the
//!   `[vault]` table of `warden.toml`; [`manifest`]: release manifests.

pub mod admin;
pub mod error;
pub mod key;
pub mod manifest;
pub mod pkcs11;
pub mod policy;
pub mod registry;
pub mod sealed;
pub mod staging;
pub mod watch;

pub use error::{Error, Result};
pub use policy::Policy;
pub use registry::{
    Audit, ImportRequest, NoProgress, Progress, ReleaseStatus, Retired, Vault, VaultParts,
};
