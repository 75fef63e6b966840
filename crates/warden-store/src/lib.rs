//! `warden-store`: Warden's state behind one trait.
//!
//! Identities, API key hashes, blocks, the lockdown switch, administrators, releases,
//! evaluations, approvals, deployments and alerts. Callers hold a `dyn Store` (or an
//! `Arc<dyn Store>`) and never see SQL: [`SqliteStore`] is the embedded default, and a
//! PostgreSQL implementation can follow by implementing the same trait (the schema
//! uses only portable types: text, 64-bit integers, blobs, JSON kept as text).
//!
//! Times are [`Timestamp`]s: whole seconds since the Unix epoch, UTC.
//!
//! **Invariant:** secrets never enter the store in clear. API keys are stored as a hash
//! computed by the caller; release data keys only as wrapped by a key-encryption key.

mod sqlite;
mod time;

pub use sqlite::SqliteStore;
pub use time::{format_utc, now};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Seconds since the Unix epoch, UTC.
pub type Timestamp = i64;

/// What went wrong in the store. Messages are lower-case and name what was affected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be opened or created.
    #[error("{path}: cannot open state database: {detail}")]
    Open {
        /// Database location.
        path: String,
        /// Cause in words.
        detail: String,
    },
    /// The database was written by a newer Warden.
    #[error(
        "{path}: state database schema version {found} is newer than this build supports ({supported}); upgrade warden"
    )]
    SchemaTooNew {
        /// Database location.
        path: String,
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A query failed.
    #[error("state database: {op}: {detail}")]
    Query {
        /// What was being done.
        op: &'static str,
        /// Cause in words.
        detail: String,
    },
    /// Something that must exist does not.
    #[error("{0}: not found")]
    NotFound(String),
    /// The change conflicts with the current state (duplicate, wrong lifecycle state, used approval).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be decoded.
    #[error("state database: corrupt value in {what}: {detail}")]
    Corrupt {
        /// Table and column.
        what: &'static str,
        /// Cause in words.
        detail: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Kind of identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// A person calling the gateway.
    User,
    /// An administrator (approves releases, operates the gateway).
    Admin,
    /// A machine client.
    Service,
}

impl IdentityKind {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::User => "user",
            IdentityKind::Admin => "admin",
            IdentityKind::Service => "service",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(IdentityKind::User),
            "admin" => Some(IdentityKind::Admin),
            "service" => Some(IdentityKind::Service),
            _ => None,
        }
    }
}

/// Attributes used by authorization policies (stored as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes {
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Team, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Clearance level, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearance: Option<String>,
    /// Anything else a policy may look at.
    #[serde(default, flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A principal known to Warden.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Stable id (e.g. `alice`, `svc-batch`).
    pub id: String,
    /// Kind.
    pub kind: IdentityKind,
    /// Policy attributes.
    pub attributes: Attributes,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An API key, as stored: the hash of the secret only, never the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Public key id (the part of the key that may be logged).
    pub key_id: String,
    /// Identity the key belongs to.
    pub identity: String,
    /// SHA-256 or HMAC of the secret part, computed by the caller.
    pub secret_hash: Vec<u8>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A block of one identity (kill switch).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Row id.
    pub id: i64,
    /// Blocked identity.
    pub identity: String,
    /// Why.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: String,
    /// When.
    pub blocked_at: Timestamp,
    /// When the block was lifted, if it was.
    pub lifted_at: Option<Timestamp>,
    /// Who lifted it.
    pub lifted_by: Option<String>,
}

/// A new block (no id yet).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBlock {
    /// Blocked identity.
    pub identity: String,
    /// Why.
    pub reason: String,
    /// Who blocked it.
    pub blocked_by: String,
    /// When.
    pub blocked_at: Timestamp,
}

/// The global lockdown switch; the latest row is the current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Lockdown {
    /// Whether the lockdown is on.
    pub active: bool,
    /// Why.
    pub reason: String,
    /// Who changed it.
    pub set_by: String,
    /// When.
    pub set_at: Timestamp,
}

/// An administrator who can approve releases.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    /// Unique name.
    pub name: String,
    /// Signature algorithm of the key, e.g. `ed25519`.
    pub algorithm: String,
    /// Public key bytes (raw Ed25519, or SEC1 for ECDSA).
    pub public_key: Vec<u8>,
    /// Where the private key lives (file path or token URI); never the key itself.
    pub key_ref: String,
    /// When the admin was added.
    pub created_at: Timestamp,
}

/// Where a release is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseState {
    /// Sealed in the vault, not yet evaluated.
    Imported,
    /// Passed its evaluation gate.
    Evaluated,
    /// Failed its evaluation gate.
    Rejected,
    /// A quorum of deploy approvals was recorded (the deploy re-checks that it still holds).
    Approved,
    /// Deployed somewhere (now or earlier).
    Deployed,
    /// Withdrawn by an administrator: never approved or deployed again.
    Retired,
    /// Data key destroyed and ciphertext deleted.
    Shredded,
}

impl ReleaseState {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Imported => "imported",
            ReleaseState::Evaluated => "evaluated",
            ReleaseState::Rejected => "rejected",
            ReleaseState::Approved => "approved",
            ReleaseState::Deployed => "deployed",
            ReleaseState::Retired => "retired",
            ReleaseState::Shredded => "shredded",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "imported" => ReleaseState::Imported,
            "evaluated" => ReleaseState::Evaluated,
            "rejected" => ReleaseState::Rejected,
            "approved" => ReleaseState::Approved,
            "deployed" => ReleaseState::Deployed,
            "retired" => ReleaseState::Retired,
            "shredded" => ReleaseState::Shredded,
            _ => return None,
        })
    }
}

impl fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sealed model release.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Model name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// Lifecycle state.
    pub state: ReleaseState,
    /// Hex SHA-256 of the canonical manifest.
    pub manifest_digest: String,
    /// The canonical manifest itself (JSON: files, sizes, digests).
    pub manifest: String,
    /// Id of the key-encryption key that wraps the data key.
    pub kek_id: String,
    /// Id of the release's data key.
    pub data_key_id: String,
    /// The data key wrapped by the KEK; empty once shredded.
    pub wrapped_key: Vec<u8>,
    /// Who imported it.
    pub importer: String,
    /// Total plaintext bytes.
    pub total_bytes: u64,
    /// When it was imported.
    pub created_at: Timestamp,
    /// Who shredded it.
    pub shredded_by: Option<String>,
    /// When it was shredded.
    pub shredded_at: Option<Timestamp>,
    /// Who retired it, when, why, and their signature (set only by `retire_release`).
    pub retired: Option<Retirement>,
}

/// The signed record of a release's retirement.
#[derive(Debug, Clone, PartialEq)]
pub struct Retirement {
    /// Retiring administrator.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why, in words.
    pub reason: String,
    /// The administrator's signature over the retirement statement.
    pub signature: Vec<u8>,
}

/// One run of the evaluation gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The command that was run.
    pub command: String,
    /// Metrics it reported (JSON object as text).
    pub metrics: String,
    /// Whether the gate passed.
    pub passed: bool,
    /// Why it passed or failed, in words.
    pub detail: String,
    /// Who ran it.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// A signed approval of one action on one release.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Approving admin.
    pub admin: String,
    /// Approved action (`deploy`, `export`).
    pub action: String,
    /// Manifest digest the signature covers.
    pub manifest_digest: String,
    /// Signature over the approval statement.
    pub signature: Vec<u8>,
    /// When it was given.
    pub created_at: Timestamp,
    /// When it stops counting.
    pub expires_at: Timestamp,
    /// When it was used, if it was.
    pub used_at: Option<Timestamp>,
}

/// State of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentStatus {
    /// The files in the directory are this release.
    Active,
    /// A later deployment to the same directory replaced it.
    Superseded,
    /// Rolled back away from (tampered or by request).
    RolledBack,
    /// Tampering detected and the directory quarantined.
    Quarantined,
    /// The deployed copy was deleted (the release was shredded).
    Removed,
}

impl DeploymentStatus {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Active => "active",
            DeploymentStatus::Superseded => "superseded",
            DeploymentStatus::RolledBack => "rolled-back",
            DeploymentStatus::Quarantined => "quarantined",
            DeploymentStatus::Removed => "removed",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => DeploymentStatus::Active,
            "superseded" => DeploymentStatus::Superseded,
            "rolled-back" => DeploymentStatus::RolledBack,
            "quarantined" => DeploymentStatus::Quarantined,
            "removed" => DeploymentStatus::Removed,
            _ => return None,
        })
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release unsealed into a directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Target directory (absolute).
    pub dir: String,
    /// Status.
    pub status: DeploymentStatus,
    /// Who deployed it.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Hex SHA-256 of the configuration in force when it was deployed (empty if none).
    pub config_digest: String,
}

/// An alert raised by the monitor or the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Row id (0 before insertion).
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// What raised it (`monitor`, `gateway`, ...).
    pub source: String,
    /// What it is about (release, identity, directory).
    pub subject: String,
    /// In words.
    pub message: String,
}

/// Warden's state. One implementation per engine; callers only see this trait.
///
/// Every method is one atomic change or one consistent read. Methods that enforce a
/// lifecycle rule (`set_release_state`, `record_deployment`, `insert_approval`) check
/// and change inside one transaction, so two processes cannot both win.
pub trait Store: Send + Sync + fmt::Debug {
    /// Schema version of the open database.
    fn schema_version(&self) -> Result<u32>;

    /// Insert or replace an identity.
    fn put_identity(&self, identity: &Identity) -> Result<()>;
    /// One identity.
    fn identity(&self, id: &str) -> Result<Option<Identity>>;
    /// Every identity, ordered by id.
    fn identities(&self) -> Result<Vec<Identity>>;

    /// Store a new API key record (duplicate key ids are a conflict).
    fn insert_api_key(&self, key: &ApiKey) -> Result<()>;
    /// One API key record.
    fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>>;
    /// API keys, of one identity or all.
    fn api_keys(&self, identity: Option<&str>) -> Result<Vec<ApiKey>>;
    /// Revoke a key (idempotent: an earlier revocation time is kept).
    fn revoke_api_key(&self, key_id: &str, at: Timestamp) -> Result<()>;

    /// Block an identity; returns the block's id.
    fn insert_block(&self, block: &NewBlock) -> Result<i64>;
    /// Lift every active block of `identity`; returns how many were lifted.
    fn lift_blocks(&self, identity: &str, by: &str, at: Timestamp) -> Result<usize>;
    /// Blocks that are in force.
    fn active_blocks(&self) -> Result<Vec<Block>>;

    /// Record a lockdown change (the latest one is the state).
    fn set_lockdown(&self, lockdown: &Lockdown) -> Result<()>;
    /// The current lockdown state, if it was ever set.
    fn lockdown(&self) -> Result<Option<Lockdown>>;

    /// Add an administrator (duplicate names are a conflict).
    fn insert_admin(&self, admin: &Admin) -> Result<()>;
    /// One administrator.
    fn admin(&self, name: &str) -> Result<Option<Admin>>;
    /// Every administrator.
    fn admins(&self) -> Result<Vec<Admin>>;

    /// Register a release (duplicate name and version are a conflict).
    fn insert_release(&self, release: &Release) -> Result<()>;
    /// One release.
    fn release(&self, name: &str, version: &str) -> Result<Option<Release>>;
    /// Releases, of one model or all, oldest first.
    fn releases(&self, name: Option<&str>) -> Result<Vec<Release>>;
    /// Move a release to `to` if its current state is one of `from`; otherwise a conflict.
    fn set_release_state(
        &self,
        name: &str,
        version: &str,
        from: &[ReleaseState],
        to: ReleaseState,
    ) -> Result<()>;
    /// Mark a release shredded: state `shredded`, wrapped key erased, who and when kept.
    fn mark_shredded(&self, name: &str, version: &str, by: &str, at: Timestamp) -> Result<()>;
    /// Retire a release in one transaction: it must be live (not retired or shredded) and,
    /// unless `include_deployments`, have no active deployment. Its unused deploy approvals
    /// are voided, its active deployments (if included) marked `removed`, and the state set
    /// to `retired` with `retirement`. Returns the deployments that were marked removed.
    fn retire_release(
        &self,
        name: &str,
        version: &str,
        retirement: &Retirement,
        include_deployments: bool,
    ) -> Result<Vec<Deployment>>;
    /// Remove a release that was never acknowledged (an import that failed half-way).
    fn delete_release(&self, name: &str, version: &str) -> Result<()>;

    /// Record an evaluation and move the release to `evaluated` or `rejected`.
    fn record_evaluation(&self, evaluation: &Evaluation) -> Result<i64>;
    /// Evaluations of one release, oldest first.
    fn evaluations(&self, name: &str, version: &str) -> Result<Vec<Evaluation>>;

    /// Store an approval. A second unused approval by the same admin for the same
    /// release and action is a conflict.
    fn insert_approval(&self, approval: &Approval) -> Result<i64>;
    /// Approvals of one release, oldest first.
    fn approvals(&self, name: &str, version: &str) -> Result<Vec<Approval>>;
    /// Mark approvals used without deploying (e.g. an export); all or none.
    fn consume_approvals(&self, ids: &[i64], at: Timestamp) -> Result<()>;

    /// Atomically: mark `approvals` used (each must be unused), mark earlier active
    /// deployments to the same directory `superseded`, insert the deployment, and set the
    /// release state to `deployed`. Returns the deployment id.
    fn record_deployment(&self, deployment: &Deployment, approvals: &[i64]) -> Result<i64>;
    /// Deployments, to one directory or all, oldest first.
    fn deployments(&self, dir: Option<&str>) -> Result<Vec<Deployment>>;
    /// Record that a deployment now runs under the configuration with this digest.
    fn set_deployment_config_digest(&self, id: i64, digest: &str) -> Result<()>;
    /// Change a deployment's status.
    fn set_deployment_status(&self, id: i64, status: DeploymentStatus) -> Result<()>;

    /// Record an alert; returns its id.
    fn insert_alert(&self, alert: &Alert) -> Result<i64>;
    /// Alerts with an id greater than `after`, oldest first.
    fn alerts(&self, after: i64) -> Result<Vec<Alert>>;
}
