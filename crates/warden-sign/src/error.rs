//! The one error type of this crate. Messages are lower-case, name the file or the
//! check, and never contain key material.

use std::path::PathBuf;

/// What went wrong while hashing, signing or verifying.
///
/// [`Error::is_verdict`] separates "the model or signature did not verify" (a verdict
/// against the input, exit 1 in the CLI) from "the job could not be done" (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system error.
        source: std::io::Error,
    },
    /// A symbolic link was found and symlinks are not allowed.
    #[error("{}: is a symbolic link (pass --allow-symlinks to follow links)", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something that is neither a regular file nor a directory.
    #[error("{}: not a regular file or directory", path.display())]
    SpecialFile {
        /// The offending path.
        path: PathBuf,
    },
    /// A file name the format cannot carry (not UTF-8, or `:` in shard mode).
    #[error("{}: {reason}", path.display())]
    BadFileName {
        /// The offending path.
        path: PathBuf,
        /// Why it cannot be named.
        reason: &'static str,
    },
    /// A file changed size while it was being hashed.
    #[error("{}: file changed while it was being hashed", path.display())]
    ChangedWhileHashing {
        /// The file.
        path: PathBuf,
    },
    /// A key file could not be used.
    #[error("{}: {reason}", path.display())]
    Key {
        /// The key file (or a description of where the key came from).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A certificate file could not be used.
    #[error("{}: {reason}", path.display())]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The signature file is not a bundle this crate understands.
    #[error("signature: {0}")]
    Bundle(String),
    /// Signing failed inside the crypto library.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The bundle names a key other than the one given.
    #[error(
        "key mismatch: the signature was made with a different public key (hint {expected}, given key {actual})"
    )]
    KeyMismatch {
        /// Hint recorded in the bundle.
        expected: String,
        /// Hint of the key given for verification.
        actual: String,
    },
    /// The DSSE signature does not verify.
    #[error("signature check failed: {0}")]
    BadSignature(String),
    /// The X.509 chain does not verify.
    #[error("certificate check failed: {0}")]
    Chain(String),
    /// The signed statement is inconsistent or refers to unsafe paths.
    #[error("signed statement rejected: {0}")]
    Statement(String),
    /// The model on disk differs from the signed manifest.
    #[error("{}", render_mismatch(model, differences))]
    Mismatch {
        /// The model path as given.
        model: PathBuf,
        /// Every difference, in name order.
        differences: Vec<Difference>,
    },
}

impl Error {
    /// True when the error is a verdict against the model or its signature (the model
    /// does not verify), false when the job itself could not be done.
    #[must_use]
    pub fn is_verdict(&self) -> bool {
        matches!(
            self,
            Error::KeyMismatch { .. }
                | Error::BadSignature(_)
                | Error::Chain(_)
                | Error::Statement(_)
                | Error::Mismatch { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// One way in which the model on disk differs from what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// The content of a signed file (or shard) changed.
    Changed {
        /// Resource name (`path` or `path:start:end`).
        name: String,
        /// Signed digest (hex).
        expected: String,
        /// Digest on disk (hex).
        actual: String,
    },
    /// A file on disk that the signature does not cover.
    Added {
        /// Resource name.
        name: String,
    },
    /// A signed file that is not on disk.
    Removed {
        /// Resource name.
        name: String,
    },
    /// A signed file that is on disk under another name, content unchanged.
    Renamed {
        /// Signed name.
        from: String,
        /// Name on disk.
        to: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Changed {
                name,
                expected,
                actual,
            } => write!(
                f,
                "{name}: content changed (signed {expected}, found {actual})"
            ),
            Difference::Added { name } => write!(f, "{name}: file added (not in the signature)"),
            Difference::Removed { name } => {
                write!(f, "{name}: file removed (signed but missing)")
            }
            Difference::Renamed { from, to } => write!(f, "{from}: file renamed to {to}"),
        }
    }
}

fn render_mismatch(model: &std::path::Path, differences: &[Difference]) -> String {
    let mut s = format!(
        "{}: model does not match its signature ({} difference{})",
        model.display(),
        differences.len(),
        if differences.len() == 1 { "" } else { "s" }
    );
    for d in differences {
        s.push_str("\n  ");
        s.push_str(&d.to_string());
    }
    s
}
