//! The crate's one error type. Messages are lower-case, name the file (or log object)
//! and the cause, and never contain secrets.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the audit log.
///
/// [`Error::is_verdict`] separates "the log (or proof, or signature) is wrong" from
/// "the job could not be done" (I/O, bad arguments), which the CLI maps to exit 1 and 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// Underlying cause.
        source: std::io::Error,
    },
    /// Input that does not follow its format (note, checkpoint, key, receipt, bundle).
    #[error("{what}: {reason}")]
    Malformed {
        /// What was being parsed (a file name or a kind of object).
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A signature did not verify, or no trusted signature was present.
    #[error("{what}: {reason}")]
    Signature {
        /// The signed object.
        what: String,
        /// Why verification failed.
        reason: String,
    },
    /// A Merkle inclusion or consistency proof did not verify.
    #[error("proof does not verify: {0}")]
    Proof(String),
    /// The log's content contradicts itself or its checkpoint: an altered entry, tile
    /// or checkpoint. `object` names the first bad tile or entry.
    #[error("{object}: {reason}")]
    Tampered {
        /// The first bad tile, entry bundle or checkpoint.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry longer than an entry bundle can hold.
    #[error("entry of {0} bytes exceeds the 65535-byte limit of an entry bundle")]
    EntryTooLarge(usize),
    /// A batch could not be made durable; the entries in it were not acknowledged.
    #[error("audit log commit failed: {0}")]
    Commit(String),
    /// Too many entries wait to be committed ([`crate::LogOptions::max_queued`]); this
    /// one was not queued.
    #[error("audit log queue is full ({0} entries wait to be committed)")]
    QueueFull(usize),
    /// The log was closed or its writer stopped.
    #[error("audit log is closed: {0}")]
    Closed(String),
    /// Another process holds the log's writer lock.
    #[error("{0}: the audit log is in use by another writer")]
    Locked(String),
    /// A cryptographic operation failed (key generation, encryption).
    #[error("{0}")]
    Crypto(String),
}

impl Error {
    /// True when the error is a verdict against the input (tampered log, bad proof or
    /// signature, malformed data), false when the job itself could not be done.
    pub fn is_verdict(&self) -> bool {
        matches!(
            self,
            Error::Malformed { .. }
                | Error::Signature { .. }
                | Error::Proof(_)
                | Error::Tampered { .. }
        )
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tampered(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tampered {
            object: object.into(),
            reason: reason.into(),
        }
    }
}
