//! Typed errors of the gateway library: start-up, configuration, TLS, policy, audit and
//! state errors. Per-request refusals are not errors; they are [`crate::Refusal`]s.

/// What went wrong while configuring or running the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// A certificate or private key is unusable.
    #[error("{path}: {cause}")]
    Tls {
        /// The file (or the listener) concerned.
        path: String,
        /// The cause.
        cause: String,
    },
    /// A Cedar policy or schema is invalid.
    #[error("{path}: {cause}")]
    Policy {
        /// The policy or schema file.
        path: String,
        /// The cause.
        cause: String,
    },
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("{addr}: cannot listen: {cause}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// The audit log refused or failed an append.
    #[error("audit log: {0}")]
    Audit(String),
    /// The state directory (identities, keys, blocks) failed.
    #[error("state: {0}")]
    Directory(String),
    /// The OIDC provider's key set could not be fetched or parsed.
    #[error("{url}: {cause}")]
    Jwks {
        /// The JWKS address.
        url: String,
        /// The cause.
        cause: String,
    },
    /// A state change was refused (e.g. an API key for an administrator).
    #[error("{0}")]
    Refused(String),
    /// Randomness was unavailable.
    #[error("system random number generator failed")]
    Random,
}
