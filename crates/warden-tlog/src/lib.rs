//! `warden-tlog`: Warden's tamper-evident audit log.
//!
//! A transparency log in the formats the transparency community already uses, so that
//! anyone can verify it offline with any compliant client:
//!
//! - [`merkle`]: RFC 9162 Merkle tree hashing (leaf `0x00`, node `0x01`, SHA-256),
//!   inclusion and consistency proofs, generation and verification (§2.1.3–2.1.4);
//! - [`note`]: C2SP `signed-note` with Ed25519 keys (signer and verifier key strings);
//! - [`checkpoint`]: C2SP `tlog-checkpoint` (origin, size, root hash);
//! - [`tiles`]: the C2SP `tlog-tiles` layout (hash tiles, entry bundles, paths) and a
//!   reader that serves entries and proofs from any [`Storage`];
//! - [`receipt`]: C2SP `tlog-proof` offline receipts;
//! - [`log`]: the append-only log with durable group commit ([`Log`]);
//! - [`verify`]: full verification of a log (every entry, every tile, the checkpoint);
//! - [`storage`]: the [`Storage`] seam and the POSIX directory default;
//! - [`event`]: typed audit events ([`AuditEvent`]), the only thing other crates append.
//!
//! The crate never prints and does no network I/O.

pub mod checkpoint;
pub mod error;
pub mod event;
pub mod journal;
pub mod log;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod storage;
pub mod tiles;
pub mod verify;

pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use event::{AuditEvent, ContentPolicy, EventKind, GatewayRecord};
pub use log::{AppendFuture, Log, LogOptions, Permit};
pub use merkle::Hash;
pub use note::{Note, Signer, Verifier};
pub use receipt::Receipt;
pub use storage::{Journal, PosixStorage, Storage, WriterLock};
pub use verify::{VerifyReport, verify_log, verify_log_with_progress};
