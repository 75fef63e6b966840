//! `warden-vault`: sealed model storage and the release lifecycle.
//!
//! - [`sealed`]: the sealed file format (segmented AES-256-GCM, STREAM nonces, random
//!   access), specified in `docs/sealed-format.md`.
//! - [`key`]: data keys and key-encryption-key providers ([`key::FileProvider`],
//!   [`pkcs11::Pkcs11Provider`]).

pub mod error;
pub mod key;
pub mod pkcs11;
pub mod sealed;

pub use error::{Error, Result};
