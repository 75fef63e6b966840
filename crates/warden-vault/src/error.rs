//! The vault's error type. Messages are lower-case, name the file or release and the
//! cause, and never contain key material.

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file does not start with the sealed-format magic.
    #[error("{path}: not a warden sealed file (bad magic)")]
    NotSealed {
        /// File concerned.
        path: String,
    },
    /// The sealed-format version is not one this build reads.
    #[error("{path}: unsupported sealed format version {version} (this build reads version 1)")]
    UnsupportedVersion {
        /// File concerned.
        path: String,
        /// Version found.
        version: u16,
    },
    /// The header is structurally invalid.
    #[error("{path}: malformed sealed header: {detail}")]
    MalformedHeader {
        /// File concerned.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The file is shorter or longer than its header says.
    #[error(
        "{path}: sealed file is {actual} bytes but its header describes {expected} bytes ({what})"
    )]
    Length {
        /// File concerned.
        path: String,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        actual: u64,
        /// `truncated` or `trailing data`.
        what: &'static str,
    },
    /// The header failed authentication.
    #[error(
        "{path}: sealed header failed authentication: the header was modified, or the data key does not belong to this file"
    )]
    HeaderTampered {
        /// File concerned.
        path: String,
    },
    /// A segment failed authentication.
    #[error(
        "{path}: segment {index} failed authentication: modified, truncated, reordered, or swapped in from another file"
    )]
    SegmentTampered {
        /// File concerned.
        path: String,
        /// Segment index.
        index: u64,
    },
    /// The sealed file belongs to another model, version, path or manifest.
    #[error("{path}: sealed file is bound to {field} {found:?}, expected {expected:?}")]
    WrongBinding {
        /// File concerned.
        path: String,
        /// Which binding.
        field: &'static str,
        /// What the caller expected.
        expected: String,
        /// What the header says.
        found: String,
    },
    /// Plaintext does not match the expected digest or size.
    #[error("{path}: content does not match the manifest: {detail}")]
    DigestMismatch {
        /// File concerned.
        path: String,
        /// Which check failed.
        detail: String,
    },
    /// A byte range outside the plaintext was requested.
    #[error("{path}: range {offset}+{len} is outside the {size}-byte plaintext")]
    Range {
        /// File concerned.
        path: String,
        /// Start.
        offset: u64,
        /// Length.
        len: u64,
        /// Plaintext size.
        size: u64,
    },
    /// A key-encryption-key operation failed.
    #[error("key-encryption key {kek}: {detail}")]
    Kek {
        /// KEK id.
        kek: String,
        /// Cause, in words (never key material).
        detail: String,
    },
    /// A cryptographic primitive failed unexpectedly (bad parameters, RNG failure).
    #[error("crypto: {0}")]
    Crypto(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] warden_store::Error),
    /// The release has been crypto-shredded.
    #[error("{release}: shredded on {at} by {by}")]
    Shredded {
        /// `name@version`.
        release: String,
        /// RFC 3339 time.
        at: String,
        /// Who shredded it.
        by: String,
    },
    /// The release does not exist.
    #[error("{0}: no such release")]
    NoSuchRelease(String),
    /// A lifecycle rule refused the request; nothing was changed.
    #[error("{subject}: refused: {reason}")]
    Refused {
        /// Release, admin or file concerned.
        subject: String,
        /// Why, in words.
        reason: String,
    },
    /// The input itself was judged unacceptable (scan findings, bad signature); the CLI
    /// exits 1 for these. Nothing was changed.
    #[error("{subject}: refused: {reason}")]
    Verdict {
        /// Release or file concerned.
        subject: String,
        /// Why, in words.
        reason: String,
    },
    /// The model directory or request is invalid.
    #[error("{subject}: {detail}")]
    Invalid {
        /// File, directory or argument.
        subject: String,
        /// What is wrong.
        detail: String,
    },
    /// The audit log could not record the event, so the change is not acknowledged.
    #[error("audit log: {0}")]
    Audit(String),
}

impl Error {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn refused(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Refused {
            subject: subject.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            subject: subject.into(),
            detail: detail.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
