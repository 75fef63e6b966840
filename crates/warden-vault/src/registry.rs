//! The release registry and lifecycle: import → evaluate → approve → deploy → rollback,
//! export, shred, and the integrity monitor.
//!
//! Every state change is written to the store and appended to the audit log before the
//! call returns success; a call that fails leaves no partial state (staging directories
//! are removed, half-imported releases are deleted, per-release KEKs destroyed).

use crate::admin::{self, AdminKey};
use crate::error::{Error, Result};
use crate::key::{DataKey, Kek, KeyProvider, create_private_dir};
use crate::manifest::{self, Manifest, check_name};
use crate::pkcs11::Pkcs11Provider;
use crate::policy::{OnTamper, Policy};
use crate::sealed::{self, Binding, Header, SealOptions, SealedFile};
use crate::staging::Staging;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_store::{
    Admin, Alert, Approval, Deployment, DeploymentStatus, Evaluation, Identity, IdentityKind,
    Release, ReleaseState, Store, Timestamp, format_utc, now,
};
use warden_tlog::event::Outcome;
use warden_tlog::{AuditEvent, EventKind, Log};

/// Progress of a long operation, in bytes. Implementations must be cheap and `Sync`.
pub trait Progress: Sync {
    /// A phase starts with `total` bytes to process.
    fn start(&self, _what: &str, _total: u64) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// No progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;
impl Progress for NoProgress {}

/// Everything a [`Vault`] is made of.
#[derive(Debug)]
pub struct VaultParts {
    /// Directory of sealed releases (`<home>/vault`).
    pub root: PathBuf,
    /// Directory of admin key files (`<home>/keys/admins`).
    pub admin_keys: PathBuf,
    /// The PKCS#11 token holding administrator keys, when any admin key is on one.
    pub admin_token: Option<Pkcs11Provider>,
    /// Staging registry (`<home>/staging`): plaintext staging directories are registered
    /// here and swept when their process is gone.
    pub staging: PathBuf,
    /// The configuration file whose digest deployments record (`<home>/warden.toml`).
    pub config_file: Option<PathBuf>,
    /// State.
    pub store: Arc<dyn Store>,
    /// Key-encryption keys.
    pub keys: Arc<dyn KeyProvider>,
    /// The audit log.
    pub audit: Audit,
    /// Policy.
    pub policy: Policy,
}

/// How the vault reaches the audit log.
#[derive(Clone)]
pub enum Audit {
    /// Held open (and its single-writer lock held) for the vault's lifetime: short-lived
    /// commands.
    Log(Log),
    /// Opened for each append and closed after it, so a long-running process (the
    /// integrity monitor) does not lock every other command out of the log between
    /// incidents. The opener waits a bounded time for the lock.
    OnDemand(Arc<dyn Fn() -> std::result::Result<Log, String> + Send + Sync>),
}

impl From<Log> for Audit {
    fn from(l: Log) -> Self {
        Audit::Log(l)
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Audit::Log(l) => f.debug_tuple("Log").field(l).finish(),
            Audit::OnDemand(_) => f.write_str("OnDemand"),
        }
    }
}

/// The vault and release registry.
#[derive(Debug)]
pub struct Vault {
    p: VaultParts,
}

/// What an import needs.
#[derive(Debug)]
pub struct ImportRequest<'a> {
    /// Model directory.
    pub dir: &'a Path,
    /// Model name.
    pub name: &'a str,
    /// Model version.
    pub version: &'a str,
    /// Who imports it (cannot approve it later).
    pub importer: &'a str,
    /// A verified signature over the directory, if one was given.
    pub verified: Option<&'a warden_sign::VerifiedManifest>,
}

/// Result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The registered release.
    pub release: Release,
    /// Its manifest.
    pub manifest: Manifest,
    /// Highest scan finding below the threshold, if any.
    pub scan_max: Option<warden_scan::Severity>,
    /// Findings below the threshold.
    pub findings: usize,
}

/// Result of an evaluation.
#[derive(Debug)]
pub struct Evaluated {
    /// The stored evaluation.
    pub evaluation: Evaluation,
    /// Why the gate failed (empty when it passed).
    pub failures: Vec<String>,
}

/// What the monitor found and did about one deployment.
#[derive(Debug)]
pub struct Incident {
    /// The deployment that no longer matched.
    pub deployment: Deployment,
    /// What differs, one line per path.
    pub problems: Vec<String>,
    /// What was done: `restore`, `rollback`, `quarantine`, `alert`.
    pub action: String,
    /// The resulting deployment when the directory was re-deployed.
    pub replacement: Option<Deployment>,
}

/// Result of a shred.
#[derive(Debug)]
pub struct Shredded {
    /// When.
    pub at: Timestamp,
    /// Whether a per-release KEK was destroyed too.
    pub kek_destroyed: bool,
    /// Deployment directories that were deleted.
    pub removed: Vec<String>,
    /// The deletion record signed by the shredding administrator, when the actor is one.
    pub record: Option<PathBuf>,
}

/// Result of a retirement.
#[derive(Debug)]
pub struct Retired {
    /// The signed record, as stored.
    pub retirement: warden_store::Retirement,
    /// Deployment directories that were deleted.
    pub removed: Vec<String>,
}

/// A release with what its lifecycle depends on (`warden release status`).
#[derive(Debug)]
pub struct ReleaseStatus {
    /// The release.
    pub release: Release,
    /// Its evaluations, oldest first.
    pub evaluations: Vec<Evaluation>,
    /// Deploy approvals that count now (unused, unexpired, valid signature, not the importer).
    pub deploy_approvals: Vec<Approval>,
    /// Unused deploy approvals that do not count, and why.
    pub deploy_not_counted: Vec<String>,
    /// Export approvals that count now.
    pub export_approvals: Vec<Approval>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Its deployments, oldest first.
    pub deployments: Vec<Deployment>,
    /// Whether the retirement record's signature verifies under the admin's registered key.
    pub retirement_verified: bool,
}

/// Why a retired release is refused, in words.
fn retired_reason(rel: &Release) -> String {
    match &rel.retired {
        Some(r) => format!(
            "retired on {} by {} ({}); a retired release is never approved or deployed again",
            format_utc(r.at),
            r.by,
            r.reason
        ),
        None => "retired; a retired release is never approved or deployed again".into(),
    }
}

/// `name@version`.
pub fn release_id(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

fn random_suffix() -> Result<String> {
    random_hex(6)
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Crypto("random generator failed".into()))?;
    Ok(hex::encode(b))
}

fn digest_bytes(hex_digest: &str) -> Result<[u8; 32]> {
    let v =
        hex::decode(hex_digest).map_err(|_| Error::invalid("stored manifest digest", "not hex"))?;
    v.try_into()
        .map_err(|_| Error::invalid("stored manifest digest", "not 32 bytes"))
}

/// Make a tree writable again so it can be removed (deployed files are 0400).
pub(crate) fn remove_tree(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path.display(), e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// An absolute, normalised form of a directory that may not exist yet.
fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).map_err(|e| Error::io(dir.display(), e))?;
    let parent = abs
        .parent()
        .ok_or_else(|| Error::invalid(dir.display().to_string(), "cannot deploy to the root"))?;
    let name = abs
        .file_name()
        .ok_or_else(|| Error::invalid(dir.display().to_string(), "no directory name"))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
    let parent = parent
        .canonicalize()
        .map_err(|e| Error::io(parent.display(), e))?;
    Ok(parent.join(name))
}

fn sibling(dir: &Path, tag: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{name}.warden-{tag}-{}", random_suffix()?)))
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir.display(), e))?
        .next()
        .is_none())
}

impl Vault {
    /// Assemble a vault; the policy is validated.
    pub fn new(parts: VaultParts) -> Result<Self> {
        parts.policy.validate()?;
        Ok(Vault { p: parts })
    }

    /// Delete staging directories left by operations whose process died (killed
    /// evaluations, deploys, exports, imports); returns what was deleted. The CLI runs it
    /// whenever it opens the vault and on every monitor pass.
    pub fn sweep_staging(&self) -> Result<Vec<PathBuf>> {
        crate::staging::sweep(&self.p.staging)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.p.store
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.p.policy
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.p.keys
    }

    fn audit(&self, actor: &str, kind: EventKind) -> Result<u64> {
        let event = AuditEvent::now(actor, kind);
        match &self.p.audit {
            Audit::Log(log) => log.append_event(&event),
            Audit::OnDemand(open) => open().map_err(Error::Audit)?.append_event(&event),
        }
        .map_err(|e| Error::Audit(e.to_string()))
    }

    /// A release that exists and has not been shredded.
    pub fn live_release(&self, name: &str, version: &str) -> Result<Release> {
        let id = release_id(name, version);
        let rel = self
            .p
            .store
            .release(name, version)?
            .ok_or_else(|| Error::NoSuchRelease(id.clone()))?;
        if rel.state == ReleaseState::Shredded {
            return Err(Error::Shredded {
                release: id,
                at: rel.shredded_at.map(format_utc).unwrap_or_default(),
                by: rel.shredded_by.unwrap_or_default(),
            });
        }
        Ok(rel)
    }

    fn release_dir(&self, name: &str, version: &str) -> PathBuf {
        self.p.root.join(name).join(version)
    }

    fn sealed_path(&self, name: &str, version: &str, index: usize) -> PathBuf {
        self.release_dir(name, version)
            .join(format!("{index:05}.sealed"))
    }

    // ---------------------------------------------------------------- admins

    /// Create an administrator with a new Ed25519 signing key file.
    pub fn add_admin(&self, name: &str, actor: &str) -> Result<(Admin, PathBuf)> {
        check_name("admin name", name)?;
        if self.p.store.admin(name)?.is_some() {
            return Err(Error::refused(
                name,
                "an administrator with this name exists",
            ));
        }
        create_private_dir(&self.p.admin_keys)?;
        let path = self.p.admin_keys.join(format!("{name}.key"));
        let (_key, public) = AdminKey::generate(name, &path)?;
        let admin = Admin {
            name: name.to_owned(),
            algorithm: admin::ALGORITHM.into(),
            public_key: public.clone(),
            key_ref: path.display().to_string(),
            created_at: now(),
        };
        let done = self.register_admin(&admin, actor, "");
        if let Err(e) = done {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok((admin, path))
    }

    /// Create an administrator whose Ed25519 key is generated on the connected PKCS#11
    /// token (see [`Vault::set_admin_token`]): private, sensitive, never extractable.
    pub fn add_admin_on_token(&self, name: &str, actor: &str) -> Result<Admin> {
        check_name("admin name", name)?;
        let provider = self.p.admin_token.as_ref().ok_or_else(|| {
            Error::invalid("--pkcs11", "no PKCS#11 token is connected for admin keys")
        })?;
        if self.p.store.admin(name)?.is_some() {
            return Err(Error::refused(
                name,
                "an administrator with this name exists",
            ));
        }
        let label = format!("warden-admin-{name}-{}", random_suffix()?);
        let (_key, public) = AdminKey::generate_on_token(name, provider, &label)?;
        let admin = Admin {
            name: name.to_owned(),
            algorithm: admin::ALGORITHM.into(),
            public_key: public.clone(),
            key_ref: admin::token_ref(provider.token(), &label),
            created_at: now(),
        };
        if let Err(e) = self.register_admin(&admin, actor, &format!("@pkcs11:{}", provider.token()))
        {
            let _ = provider.destroy_signing_key(&label);
            return Err(e);
        }
        Ok(admin)
    }

    fn register_admin(&self, admin: &Admin, actor: &str, where_: &str) -> Result<u64> {
        self.p.store.insert_admin(admin)?;
        self.p.store.put_identity(&Identity {
            id: admin.name.clone(),
            kind: IdentityKind::Admin,
            attributes: warden_store::Attributes {
                roles: vec!["admin".into()],
                ..Default::default()
            },
            created_at: admin.created_at,
        })?;
        self.audit(
            actor,
            EventKind::KeyCreated {
                key_id: format!(
                    "admin:{}:{}{where_}",
                    admin.name,
                    &sha256_hex(&admin.public_key)[..16]
                ),
                purpose: "admin".into(),
                algorithm: admin::ALGORITHM.into(),
            },
        )
    }

    /// Connect the PKCS#11 token that holds (or will hold) administrator keys.
    pub fn set_admin_token(&mut self, provider: Pkcs11Provider) {
        self.p.admin_token = Some(provider);
    }

    /// Load the signing key of admin `name` (its key file, or its key on the token).
    pub fn admin_key(&self, name: &str) -> Result<AdminKey> {
        let admin = self
            .p
            .store
            .admin(name)?
            .ok_or_else(|| Error::refused(name, "no administrator with this name"))?;
        if let Some((token, label)) = admin::parse_token_ref(&admin.key_ref) {
            let provider = self.p.admin_token.as_ref().ok_or_else(|| {
                Error::refused(
                    name,
                    format!("this administrator's key is on PKCS#11 token {token:?}, which is not connected"),
                )
            })?;
            if provider.token() != token {
                return Err(Error::refused(
                    name,
                    format!(
                        "this administrator's key is on PKCS#11 token {token:?}, not {:?}",
                        provider.token()
                    ),
                ));
            }
            return Ok(AdminKey::on_token(
                name,
                provider.clone(),
                label,
                admin.public_key,
            ));
        }
        let key = AdminKey::load(name, Path::new(&admin.key_ref))?;
        if key.public_key() != admin.public_key.as_slice() {
            return Err(Error::refused(
                name,
                format!("{} is not this administrator's key", admin.key_ref),
            ));
        }
        Ok(key)
    }

    // ---------------------------------------------------------------- import

    /// Scan, verify, hash, seal and register a model directory as a new release.
    pub fn import(&self, req: &ImportRequest<'_>, progress: &dyn Progress) -> Result<Imported> {
        check_name("model name", req.name)?;
        check_name("version", req.version)?;
        let id = release_id(req.name, req.version);
        if let Some(r) = self.p.store.release(req.name, req.version)? {
            if r.state == ReleaseState::Shredded {
                self.live_release(req.name, req.version)?;
            }
            return Err(Error::refused(&id, "this release already exists"));
        }
        if self.p.policy.require_signature && req.verified.is_none() {
            return Err(Error::refused(
                &id,
                "policy requires a verified signature (--signature and --public-key)",
            ));
        }
        let files = manifest::list_files(req.dir)?;
        let total: u64 = files
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();

        // 1. Hash.
        progress.start("hashing", total);
        let mut man = manifest::build(req.name, req.version, &files, &|n| progress.advance(n))?;
        progress.finish();

        // 2. Signature: the verified manifest must agree with what we hashed.
        if let Some(v) = req.verified {
            for e in v.entries() {
                if e.algorithm() != "sha256" || e.range().is_some() {
                    continue;
                }
                let ours = man.files.iter().find(|f| f.path == e.path());
                match ours {
                    Some(f) if f.sha256 == hex::encode(e.digest()) => {}
                    _ => {
                        return Err(Error::refused(
                            format!("{}/{}", req.dir.display(), e.path()),
                            "content changed after the signature was verified",
                        ));
                    }
                }
            }
            man.signed_digest = Some(v.digest_hex());
        }
        let digest = man.digest()?;
        let digest_hex = hex::encode(digest);

        // 3. Scan.
        let threshold = self.p.policy.scan_threshold()?;
        let report = warden_scan::scan_paths(
            &[req.dir.to_path_buf()],
            &warden_scan::ScanOptions::default(),
        );
        let max = report.max_severity();
        let blocked: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity >= threshold)
            .collect();
        let pass = report.complete() && blocked.is_empty();
        self.audit(
            req.importer,
            EventKind::ModelScan {
                model: id.clone(),
                digest: digest_hex.clone(),
                outcome: if pass { Outcome::Pass } else { Outcome::Fail },
                max_severity: max.map(|s| s.to_string()),
                findings: report.findings.len() as u64,
            },
        )?;
        if !report.complete() {
            let why: Vec<String> = report
                .errors
                .iter()
                .take(3)
                .map(|e| format!("{}: {}", e.location, e.message))
                .collect();
            return Err(Error::refused(
                &id,
                format!("the scan could not examine everything: {}", why.join("; ")),
            ));
        }
        if !blocked.is_empty() {
            let why: Vec<String> = blocked
                .iter()
                .take(3)
                .map(|f| format!("{}: {} [{} {}]", f.location, f.message, f.severity, f.rule))
                .collect();
            return Err(Error::Verdict {
                subject: id.clone(),
                reason: format!(
                    "scan found {} finding(s) at or above {threshold}: {}",
                    blocked.len(),
                    why.join("; ")
                ),
            });
        }
        if let Some(v) = req.verified {
            let signer = match v.signer() {
                warden_sign::SignerIdentity::Key { hint } => format!("key {hint}"),
                warden_sign::SignerIdentity::Certificate { leaf } => {
                    format!("certificate sha256:{}", sha256_hex(leaf))
                }
                _ => "unknown".into(),
            };
            self.audit(
                req.importer,
                EventKind::SignatureVerify {
                    model: id.clone(),
                    digest: v.digest_hex(),
                    outcome: Outcome::Pass,
                    signer: Some(signer),
                    reason: None,
                },
            )?;
        }

        // 4. Keys.
        let (kek, new_kek): (Box<dyn Kek>, bool) = if self.p.policy.per_release_kek {
            let label = format!("warden-{}-{}-{}", req.name, req.version, random_suffix()?);
            (self.p.keys.create(&label)?, true)
        } else {
            (self.p.keys.open(&self.p.policy.default_kek)?, false)
        };
        let result = self.seal_and_register(req, &files, &man, digest, &*kek, total, progress);
        if result.is_err() && new_kek {
            let _ = kek.destroy();
        }
        let release = result?;
        Ok(Imported {
            release,
            manifest: man,
            scan_max: max,
            findings: report.findings.len(),
        })
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "internal step of import; the arguments are the import's own state"
    )]
    fn seal_and_register(
        &self,
        req: &ImportRequest<'_>,
        files: &[(String, PathBuf)],
        man: &Manifest,
        digest: [u8; 32],
        kek: &dyn Kek,
        total: u64,
        progress: &dyn Progress,
    ) -> Result<Release> {
        let id = release_id(req.name, req.version);
        let dk = DataKey::generate()?;
        let wrapped = kek.wrap(&dk)?;
        let final_dir = self.release_dir(req.name, req.version);
        if final_dir.exists() {
            return Err(Error::refused(
                &id,
                format!(
                    "{} exists but no release is registered; remove it",
                    final_dir.display()
                ),
            ));
        }
        create_private_dir(&self.p.root)?;
        let guard = Staging::create(
            &self.p.staging,
            self.p
                .root
                .join(format!(".warden-import-{}-{}", id, random_suffix()?)),
            0o700,
        )?;
        let staging = guard.path().to_path_buf();
        let sealed = (|| -> Result<()> {
            progress.start("sealing", total);
            for (i, ((rel, abs), mf)) in files.iter().zip(&man.files).enumerate() {
                let header = Header {
                    segment_size: self.p.policy.segment_size,
                    plaintext_len: mf.size,
                    salt: sealed::random_salt()?,
                    plaintext_sha256: digest_bytes(&mf.sha256)?,
                    manifest_digest: digest,
                    name: req.name.to_owned(),
                    version: req.version.to_owned(),
                    path: rel.clone(),
                    kek_id: kek.id().to_owned(),
                    data_key_id: dk.id(),
                    wrapped_key: wrapped.clone(),
                };
                let src = std::fs::File::open(abs).map_err(|e| Error::io(abs.display(), e))?;
                let out_path = staging.join(format!("{i:05}.sealed"));
                let out = std::fs::File::create(&out_path)
                    .map_err(|e| Error::io(out_path.display(), e))?;
                let mut w = BufWriter::with_capacity(1 << 20, out);
                let last = std::sync::atomic::AtomicU64::new(0);
                sealed::seal(
                    &dk,
                    &header,
                    BufReader::with_capacity(1 << 20, src),
                    &mut w,
                    SealOptions {
                        verify_digest: true,
                    },
                    &|done| {
                        let prev = last.swap(done, std::sync::atomic::Ordering::Relaxed);
                        progress.advance(done.saturating_sub(prev));
                    },
                )
                .map_err(|e| match e {
                    Error::DigestMismatch { detail, .. } => Error::DigestMismatch {
                        path: abs.display().to_string(),
                        detail,
                    },
                    other => other,
                })?;
                let f = w
                    .into_inner()
                    .map_err(|e| Error::io(out_path.display(), e.into_error()))?;
                f.sync_all().map_err(|e| Error::io(out_path.display(), e))?;
                set_mode(&out_path, 0o400)?;
            }
            progress.finish();
            sync_dir(&staging);
            let model_dir = self.p.root.join(req.name);
            create_private_dir(&model_dir)?;
            std::fs::rename(&staging, &final_dir).map_err(|e| Error::io(final_dir.display(), e))?;
            sync_dir(&model_dir);
            Ok(())
        })();
        // Renamed into place: keep it; failed: the guard deletes the staging directory.
        match sealed {
            Ok(()) => guard.keep(),
            Err(e) => return Err(e),
        }
        let release = Release {
            name: req.name.to_owned(),
            version: req.version.to_owned(),
            state: ReleaseState::Imported,
            manifest_digest: hex::encode(digest),
            manifest: String::from_utf8(man.canonical()?)
                .map_err(|_| Error::invalid("manifest", "not utf-8"))?,
            kek_id: kek.id().to_owned(),
            data_key_id: dk.id(),
            wrapped_key: wrapped,
            importer: req.importer.to_owned(),
            total_bytes: man.total_bytes(),
            created_at: now(),
            shredded_by: None,
            shredded_at: None,
            retired: None,
        };
        let registered = self.p.store.insert_release(&release);
        let registered = registered.map_err(Error::from).and_then(|()| {
            self.audit(
                req.importer,
                EventKind::ModelImport {
                    release: id.clone(),
                    model: req.name.to_owned(),
                    digest: release.manifest_digest.clone(),
                    bytes: release.total_bytes,
                },
            )
        });
        if let Err(e) = registered {
            let _ = self.p.store.delete_release(req.name, req.version);
            remove_tree(&final_dir);
            return Err(e);
        }
        Ok(release)
    }

    // ---------------------------------------------------------------- unsealing

    fn data_key(&self, rel: &Release) -> Result<DataKey> {
        let kek = self.p.keys.open(&rel.kek_id)?;
        kek.unwrap(&rel.wrapped_key)
    }

    /// Open one file of a release for random access.
    pub fn open_file(
        &self,
        name: &str,
        version: &str,
        path: &str,
    ) -> Result<SealedFile<std::fs::File>> {
        let rel = self.live_release(name, version)?;
        let man = Manifest::parse(&rel.manifest)?;
        let idx = man
            .files
            .iter()
            .position(|f| f.path == path)
            .ok_or_else(|| Error::invalid(path, format!("no such file in {name}@{version}")))?;
        let dk = self.data_key(&rel)?;
        let sp = self.sealed_path(name, version, idx);
        let f = std::fs::File::open(&sp).map_err(|e| Error::io(sp.display(), e))?;
        SealedFile::open(
            f,
            &sp.display().to_string(),
            &Binding {
                name: name.to_owned(),
                version: version.to_owned(),
                path: path.to_owned(),
                manifest_digest: digest_bytes(&rel.manifest_digest)?,
            },
            &dk,
        )
    }

    /// Unseal every file of `rel` into the new, empty directory `dest`: files 0400, each
    /// re-read and checked against the manifest after writing.
    fn unseal_into(&self, rel: &Release, dest: &Path, progress: &dyn Progress) -> Result<()> {
        let man = Manifest::parse(&rel.manifest)?;
        let dk = self.data_key(rel)?;
        let binding_digest = digest_bytes(&rel.manifest_digest)?;
        progress.start("unsealing", man.total_bytes());
        for (i, mf) in man.files.iter().enumerate() {
            let sp = self.sealed_path(&rel.name, &rel.version, i);
            let f = std::fs::File::open(&sp).map_err(|e| Error::io(sp.display(), e))?;
            let mut sf = SealedFile::open(
                BufReader::with_capacity(1 << 20, f),
                &sp.display().to_string(),
                &Binding {
                    name: rel.name.clone(),
                    version: rel.version.clone(),
                    path: mf.path.clone(),
                    manifest_digest: binding_digest,
                },
                &dk,
            )?;
            let out_path = dest.join(&mf.path);
            if let Some(parent) = out_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
            }
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out_path)
                .map_err(|e| Error::io(out_path.display(), e))?;
            let mut w = BufWriter::with_capacity(1 << 20, out);
            let last = std::sync::atomic::AtomicU64::new(0);
            sf.unseal_to(&mut w, &|done| {
                let prev = last.swap(done, std::sync::atomic::Ordering::Relaxed);
                progress.advance(done.saturating_sub(prev));
            })?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(out_path.display(), e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(out_path.display(), e))?;
            drop(f);
            set_mode(&out_path, 0o400)?;
            let (d, size) = manifest::sha256_file(&out_path, &|_| {})?;
            if size != mf.size || hex::encode(d) != mf.sha256 {
                return Err(Error::DigestMismatch {
                    path: out_path.display().to_string(),
                    detail: "written file does not match the manifest".into(),
                });
            }
        }
        progress.finish();
        sync_dir(dest);
        Ok(())
    }

    // ---------------------------------------------------------------- evaluate

    /// Run `command` (through `sh -c`) against a staged, unsealed copy; record its JSON
    /// metrics and gate them against the policy thresholds.
    pub fn evaluate(
        &self,
        name: &str,
        version: &str,
        command: &str,
        actor: &str,
        progress: &dyn Progress,
    ) -> Result<Evaluated> {
        let rel = self.live_release(name, version)?;
        let id = release_id(name, version);
        if !matches!(
            rel.state,
            ReleaseState::Imported | ReleaseState::Evaluated | ReleaseState::Rejected
        ) {
            return Err(Error::refused(
                &id,
                format!("cannot evaluate a release that is {}", rel.state),
            ));
        }
        // Plaintext for the evaluation lives in the staging registry; the guard deletes it
        // on every exit path, and the sweep after a kill.
        let guard = Staging::create(
            &self.p.staging,
            self.p
                .staging
                .join(format!("warden-eval-{}-{}", id, random_suffix()?)),
            0o700,
        )?;
        let staging = guard.path().to_path_buf();
        let ran = self.unseal_into(&rel, &staging, progress).and_then(|()| {
            run_evaluation(
                command,
                &staging,
                &rel,
                self.p.policy.evaluation_timeout_secs,
                &self.p.policy.pkcs11.pin_env,
            )
        });
        drop(guard);
        let (status_ok, stdout, stderr_tail) = ran?;
        let mut failures = Vec::new();
        if !status_ok {
            failures.push(format!("the command failed: {stderr_tail}"));
        }
        let metrics = parse_metrics(&stdout);
        let metrics = match metrics {
            Some(m) => m,
            None => {
                failures.push("the command did not print a JSON object of metrics".into());
                serde_json::Map::new()
            }
        };
        for (k, t) in &self.p.policy.thresholds {
            match metrics.get(k).and_then(serde_json::Value::as_f64) {
                None => failures.push(format!("metric {k} missing or not a number")),
                Some(v) => {
                    if let Some(min) = t.min.filter(|m| v < *m) {
                        failures.push(format!("{k} = {v} is below the minimum {min}"));
                    }
                    if let Some(max) = t.max.filter(|m| v > *m) {
                        failures.push(format!("{k} = {v} is above the maximum {max}"));
                    }
                }
            }
        }
        let passed = failures.is_empty();
        let metrics_text = serde_json::Value::Object(metrics).to_string();
        let mut ev = Evaluation {
            id: 0,
            name: name.to_owned(),
            version: version.to_owned(),
            command: command.to_owned(),
            metrics: metrics_text.clone(),
            passed,
            detail: if passed {
                "all thresholds met".into()
            } else {
                failures.join("; ")
            },
            by: actor.to_owned(),
            at: now(),
        };
        ev.id = self.p.store.record_evaluation(&ev)?;
        self.audit(
            actor,
            EventKind::Evaluation {
                release: id,
                command_sha256: sha256_hex(command.as_bytes()),
                outcome: if passed { Outcome::Pass } else { Outcome::Fail },
                metrics: metrics_text,
            },
        )?;
        Ok(Evaluated {
            evaluation: ev,
            failures,
        })
    }

    // ---------------------------------------------------------------- approvals

    /// Approvals of `rel` for `action` that count now: unused, unexpired, over the
    /// current manifest digest, signed by a registered admin who is not the importer;
    /// one per admin. Also returns why the others do not count.
    fn valid_approvals(
        &self,
        rel: &Release,
        action: &str,
        at: Timestamp,
    ) -> Result<(Vec<Approval>, Vec<String>)> {
        let mut valid: Vec<Approval> = Vec::new();
        let mut ignored = Vec::new();
        for a in self.p.store.approvals(&rel.name, &rel.version)? {
            if a.action != action || a.used_at.is_some() {
                continue;
            }
            if a.expires_at <= at {
                ignored.push(format!(
                    "approval by {} expired at {}",
                    a.admin,
                    format_utc(a.expires_at)
                ));
                continue;
            }
            if a.manifest_digest != rel.manifest_digest {
                ignored.push(format!("approval by {} is for different content", a.admin));
                continue;
            }
            if a.admin == rel.importer {
                ignored.push(format!("approval by the importer {}", a.admin));
                continue;
            }
            let ok = self
                .p
                .store
                .admin(&a.admin)?
                .is_some_and(|adm| admin::verify_approval(&adm, &a));
            if !ok {
                ignored.push(format!("approval by {} has an invalid signature", a.admin));
                continue;
            }
            if valid.iter().any(|v| v.admin == a.admin) {
                continue;
            }
            valid.push(a);
        }
        Ok((valid, ignored))
    }

    fn quorum(&self, rel: &Release, action: &str) -> Result<Vec<i64>> {
        let need = self.p.policy.approvals_required as usize;
        let (valid, ignored) = self.valid_approvals(rel, action, now())?;
        if valid.len() < need {
            let names: Vec<&str> = valid.iter().map(|a| a.admin.as_str()).collect();
            let mut reason = format!(
                "{action} needs approvals from {need} distinct administrators other than the importer; {} valid{}",
                valid.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            );
            if !ignored.is_empty() {
                reason.push_str(&format!("; not counted: {}", ignored.join(", ")));
            }
            return Err(Error::refused(release_id(&rel.name, &rel.version), reason));
        }
        Ok(valid.iter().take(need).map(|a| a.id).collect())
    }

    /// Record `key`'s signed approval of `action` (`deploy` or `export`) on a release.
    /// `ttl_secs` overrides the policy's approval lifetime.
    pub fn approve(
        &self,
        name: &str,
        version: &str,
        action: &str,
        key: &AdminKey,
        ttl_secs: Option<i64>,
    ) -> Result<Approval> {
        let id = release_id(name, version);
        if !matches!(action, "deploy" | "export") {
            return Err(Error::invalid(action, "action must be deploy or export"));
        }
        let rel = self.live_release(name, version)?;
        if action == "deploy" && rel.state == ReleaseState::Retired {
            return Err(Error::refused(&id, retired_reason(&rel)));
        }
        if action == "deploy"
            && self.p.policy.require_evaluation
            && !matches!(
                rel.state,
                ReleaseState::Evaluated | ReleaseState::Approved | ReleaseState::Deployed
            )
        {
            return Err(Error::refused(
                &id,
                format!(
                    "it has not passed evaluation (state {}); run `warden release evaluate` first",
                    rel.state
                ),
            ));
        }
        let who = key.name();
        let adm = self.registered_admin(key)?;
        if who == rel.importer {
            return Err(Error::refused(
                &id,
                format!("{who} imported this release and cannot approve it (two-person control)"),
            ));
        }
        let at = now();
        let mut dead = Vec::new();
        for a in self.p.store.approvals(name, version)? {
            if a.admin != who || a.action != action || a.used_at.is_some() {
                continue;
            }
            if a.expires_at > at {
                return Err(Error::refused(
                    &id,
                    format!(
                        "{who} has already approved {action} (approval {} valid until {}); a second approval must come from another administrator",
                        a.id,
                        format_utc(a.expires_at)
                    ),
                ));
            }
            dead.push(a.id);
        }
        let ttl = ttl_secs.unwrap_or(self.p.policy.approval_ttl_secs);
        if ttl < 0 {
            return Err(Error::invalid("--expires-in", "must not be negative"));
        }
        let expires_at = at.saturating_add(ttl);
        let sig = key.sign(&admin::statement(
            name,
            version,
            &rel.manifest_digest,
            action,
            who,
            expires_at,
        ))?;
        let mut approval = Approval {
            id: 0,
            name: name.to_owned(),
            version: version.to_owned(),
            admin: who.to_owned(),
            action: action.to_owned(),
            manifest_digest: rel.manifest_digest.clone(),
            signature: sig,
            created_at: at,
            expires_at,
            used_at: None,
        };
        if !admin::verify_approval(&adm, &approval) {
            return Err(Error::Crypto("approval signature does not verify".into()));
        }
        // Expired approvals by this admin are dead; retire them so the new one can be stored.
        self.p.store.consume_approvals(&dead, at)?;
        approval.id = self.p.store.insert_approval(&approval)?;
        let (valid, _) = self.valid_approvals(&rel, action, at)?;
        if action == "deploy" && valid.len() >= self.p.policy.approvals_required as usize {
            // Quorum reached: the release is `approved` (the deploy re-checks the quorum,
            // since approvals expire). A concurrent approver may have moved it already.
            match self.p.store.set_release_state(
                name,
                version,
                &[ReleaseState::Imported, ReleaseState::Evaluated],
                ReleaseState::Approved,
            ) {
                Ok(()) | Err(warden_store::Error::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.audit(
            who,
            EventKind::Approval {
                release: id,
                approver: who.to_owned(),
                approved: true,
                count: u32::try_from(valid.len()).unwrap_or(u32::MAX),
                quorum: self.p.policy.approvals_required,
            },
        )?;
        Ok(approval)
    }

    // ---------------------------------------------------------------- deploy

    fn config_digest(&self) -> Result<String> {
        match &self.p.config_file {
            Some(p) if p.exists() => Ok(hex::encode(manifest::sha256_file(p, &|_| {})?.0)),
            _ => Ok(String::new()),
        }
    }

    /// Unseal `rel` into `dir` (atomically replacing a previous deployment there) and
    /// record the deployment, consuming `approvals`.
    /// `config_digest`: the configuration the new deployment is recorded under — `None`
    /// for the current file (a deploy with quorum), or the replaced deployment's for a
    /// restore or rollback, which must never adopt an unaccepted configuration change.
    fn install(
        &self,
        rel: &Release,
        dir: &Path,
        actor: &str,
        approvals: &[i64],
        config_digest: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Deployment> {
        let dir = absolute_dir(dir)?;
        let dir_s = dir.display().to_string();
        let known = !self.p.store.deployments(Some(&dir_s))?.is_empty();
        if dir.exists() && !known && !is_empty_dir(&dir)? {
            return Err(Error::refused(
                &dir_s,
                "the directory is not empty and is not a warden deployment",
            ));
        }
        let staging = Staging::create(&self.p.staging, sibling(&dir, "staging")?, 0o750)?;
        self.unseal_into(rel, staging.path(), progress)?;
        // The previous deployment is moved aside under a registered name, so a process
        // killed before it is deleted leaves nothing the next sweep misses.
        let old = if dir.exists() {
            let old = Staging::register(&self.p.staging, sibling(&dir, "old")?)?;
            std::fs::rename(&dir, old.path()).map_err(|e| Error::io(dir.display(), e))?;
            Some(old)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(staging.path(), &dir) {
            if let Some(o) = old {
                if std::fs::rename(o.path(), &dir).is_ok() {
                    o.keep();
                }
            }
            return Err(Error::io(dir.display(), e));
        }
        staging.keep();
        if let Some(parent) = dir.parent() {
            sync_dir(parent);
        }
        let mut d = Deployment {
            id: 0,
            name: rel.name.clone(),
            version: rel.version.clone(),
            dir: dir_s,
            status: DeploymentStatus::Active,
            by: actor.to_owned(),
            at: now(),
            config_digest: match config_digest {
                Some(c) => c.to_owned(),
                None => self.config_digest()?,
            },
        };
        match self.p.store.record_deployment(&d, approvals) {
            Ok(id) => d.id = id,
            Err(e) => {
                // Put the previous deployment back.
                remove_tree(&dir);
                if let Some(o) = old {
                    if std::fs::rename(o.path(), &dir).is_ok() {
                        o.keep();
                    }
                }
                return Err(e.into());
            }
        }
        // Dropping the guard deletes the previous copy.
        drop(old);
        Ok(d)
    }

    /// Deploy a release into `dir` with a quorum of deploy approvals.
    pub fn deploy(
        &self,
        name: &str,
        version: &str,
        dir: &Path,
        actor: &str,
        progress: &dyn Progress,
    ) -> Result<Deployment> {
        let id = release_id(name, version);
        let rel = self.live_release(name, version)?;
        match rel.state {
            ReleaseState::Evaluated | ReleaseState::Approved | ReleaseState::Deployed => {}
            ReleaseState::Imported if !self.p.policy.require_evaluation => {}
            ReleaseState::Retired => return Err(Error::refused(&id, retired_reason(&rel))),
            s => {
                return Err(Error::refused(
                    &id,
                    format!("cannot deploy a release that is {s} (it must pass evaluation first)"),
                ));
            }
        }
        let approvals = self.quorum(&rel, "deploy")?;
        if rel.state == ReleaseState::Imported {
            // Only reachable with require_evaluation = false, and only once the quorum
            // is there, so a refused deploy changes nothing.
            self.p.store.set_release_state(
                name,
                version,
                &[ReleaseState::Imported],
                ReleaseState::Evaluated,
            )?;
        }
        let d = self.install(&rel, dir, actor, &approvals, None, progress)?;
        self.audit(
            actor,
            EventKind::Promotion {
                release: id,
                to: d.dir.clone(),
            },
        )?;
        Ok(d)
    }

    fn active_deployment_of(&self, name: &str) -> Result<Option<Deployment>> {
        Ok(self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .rfind(|d| d.name == name && d.status == DeploymentStatus::Active))
    }

    fn previous_good(&self, current: &Deployment) -> Result<Option<Release>> {
        for d in self
            .p
            .store
            .deployments(Some(&current.dir))?
            .into_iter()
            .rev()
        {
            if d.id >= current.id || d.version == current.version {
                continue;
            }
            // Only releases that were replaced by a newer deployment count as known good;
            // one that was rolled back from, quarantined or removed does not.
            if d.status != DeploymentStatus::Superseded {
                continue;
            }
            if let Some(r) = self.p.store.release(&d.name, &d.version)? {
                if r.state == ReleaseState::Deployed {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// Return model `name`'s active deployment to the previous release deployed there.
    pub fn rollback(
        &self,
        name: &str,
        actor: &str,
        reason: &str,
        progress: &dyn Progress,
    ) -> Result<Deployment> {
        let cur = self
            .active_deployment_of(name)?
            .ok_or_else(|| Error::refused(name, "no active deployment of this model"))?;
        let prev = self.previous_good(&cur)?.ok_or_else(|| {
            Error::refused(
                name,
                format!(
                    "no earlier release of this model was deployed to {}",
                    cur.dir
                ),
            )
        })?;
        let d = self.install(
            &prev,
            Path::new(&cur.dir),
            actor,
            &[],
            Some(&cur.config_digest),
            progress,
        )?;
        self.p
            .store
            .set_deployment_status(cur.id, DeploymentStatus::RolledBack)?;
        self.audit(
            actor,
            EventKind::Rollback {
                from_release: release_id(&cur.name, &cur.version),
                to_release: release_id(&prev.name, &prev.version),
                reason: reason.to_owned(),
            },
        )?;
        Ok(d)
    }

    // ---------------------------------------------------------------- monitor

    /// Compare a deployment directory with its release manifest and the configuration.
    pub fn check_deployment(&self, d: &Deployment) -> Result<Vec<String>> {
        let rel = self
            .p
            .store
            .release(&d.name, &d.version)?
            .ok_or_else(|| Error::NoSuchRelease(release_id(&d.name, &d.version)))?;
        let man = Manifest::parse(&rel.manifest)?;
        let dir = Path::new(&d.dir);
        let mut problems = Vec::new();
        if !dir.is_dir() {
            problems.push(format!("{}: deployment directory missing", d.dir));
            return Ok(problems);
        }
        for mf in &man.files {
            let p = dir.join(&mf.path);
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(_) => {
                    problems.push(format!("{}: missing", mf.path));
                    continue;
                }
            };
            if !meta.is_file() {
                problems.push(format!("{}: replaced by a link or special file", mf.path));
                continue;
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o7777 != 0o400 {
                    problems.push(format!(
                        "{}: mode changed to {:o}",
                        mf.path,
                        meta.permissions().mode() & 0o7777
                    ));
                }
            }
            match manifest::sha256_file(&p, &|_| {}) {
                Ok((dg, size)) => {
                    if size != mf.size || hex::encode(dg) != mf.sha256 {
                        problems.push(format!("{}: content modified", mf.path));
                    }
                }
                Err(e) => problems.push(format!("{}: unreadable ({e})", mf.path)),
            }
        }
        match manifest::list_files(dir) {
            Ok(files) => {
                for (rel_path, _) in files {
                    if !man.files.iter().any(|f| f.path == rel_path) {
                        problems.push(format!("{rel_path}: unexpected file"));
                    }
                }
            }
            Err(Error::Invalid { detail, .. }) if detail.contains("holds no files") => {}
            Err(e) => problems.push(format!("{}: cannot list ({e})", d.dir)),
        }
        if !d.config_digest.is_empty() && self.config_digest()? != d.config_digest {
            problems.push("configuration (warden.toml): changed since deployment".into());
        }
        Ok(problems)
    }

    /// Check every active deployment once and react to mismatches per policy.
    pub fn monitor_once(&self, actor: &str) -> Result<Vec<Incident>> {
        self.monitor_pass(actor, &mut std::collections::HashSet::new(), None)
    }

    /// The deployment directories and configuration file the monitor watches.
    pub fn watch_targets(&self) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
        let dirs = self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::Active)
            .map(|d| PathBuf::from(d.dir))
            .collect();
        Ok((dirs, self.p.config_file.clone()))
    }

    /// One pass of a long-running monitor: like [`Vault::monitor_once`], but a
    /// configuration change already reported for a deployment (the same deployment and
    /// the same new configuration digest, remembered in `config_seen`) is not reported
    /// again on every pass. File tampering is always acted on. `only`: check just the
    /// deployments whose directory holds one of these paths (what file-system events
    /// named), so one changed model does not make the monitor re-hash every other one;
    /// `None` checks all.
    pub fn monitor_pass(
        &self,
        actor: &str,
        config_seen: &mut std::collections::HashSet<(i64, String)>,
        only: Option<&[PathBuf]>,
    ) -> Result<Vec<Incident>> {
        let mut incidents = Vec::new();
        let active: Vec<Deployment> = self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::Active)
            .filter(|d| only.is_none_or(|o| o.iter().any(|p| p.starts_with(&d.dir))))
            .collect();
        for d in active {
            let problems = self.check_deployment(&d)?;
            if problems.is_empty() {
                // Clean again (e.g. the configuration was reverted): a later change is news.
                config_seen.retain(|(id, _)| *id != d.id);
                continue;
            }
            let files_changed = problems.iter().any(|p| !p.starts_with("configuration"));
            if !files_changed && !config_seen.insert((d.id, self.config_digest()?)) {
                continue;
            }
            let rel = self.p.store.release(&d.name, &d.version)?;
            let restorable = rel
                .as_ref()
                .is_some_and(|r| r.state != ReleaseState::Shredded);
            let prev = if self.p.policy.on_tamper == OnTamper::Rollback {
                self.previous_good(&d)?
            } else {
                None
            };
            let action = if !files_changed {
                "alert"
            } else {
                match self.p.policy.on_tamper {
                    OnTamper::Quarantine => "quarantine",
                    OnTamper::Rollback if prev.is_some() => "rollback",
                    _ if restorable => "restore",
                    _ => "quarantine",
                }
            };
            let id = release_id(&d.name, &d.version);
            // Record first, then act: the audit log says what was seen even if the
            // reaction fails.
            self.audit(
                actor,
                EventKind::TamperDetected {
                    release: id.clone(),
                    dir: d.dir.clone(),
                    paths: problems.clone(),
                    action: action.into(),
                },
            )?;
            self.p.store.insert_alert(&Alert {
                id: 0,
                at: now(),
                severity: "critical".into(),
                source: "monitor".into(),
                subject: id.clone(),
                message: format!("{}: {} ({action})", d.dir, problems.join("; ")),
            })?;
            let replacement = match action {
                "restore" => {
                    let Some(r) = rel else {
                        return Err(Error::NoSuchRelease(id));
                    };
                    let n = self.install(
                        &r,
                        Path::new(&d.dir),
                        actor,
                        &[],
                        Some(&d.config_digest),
                        &NoProgress,
                    )?;
                    self.p
                        .store
                        .set_deployment_status(d.id, DeploymentStatus::RolledBack)?;
                    self.audit(
                        actor,
                        EventKind::Rollback {
                            from_release: id.clone(),
                            to_release: id.clone(),
                            reason: "integrity monitor: restored the last known good copy from the vault"
                                .into(),
                        },
                    )?;
                    Some(n)
                }
                "rollback" => {
                    let Some(p) = prev else {
                        return Err(Error::NoSuchRelease(id));
                    };
                    let n = self.install(
                        &p,
                        Path::new(&d.dir),
                        actor,
                        &[],
                        Some(&d.config_digest),
                        &NoProgress,
                    )?;
                    self.p
                        .store
                        .set_deployment_status(d.id, DeploymentStatus::RolledBack)?;
                    self.audit(
                        actor,
                        EventKind::Rollback {
                            from_release: id.clone(),
                            to_release: release_id(&p.name, &p.version),
                            reason: "integrity monitor: tampering detected".into(),
                        },
                    )?;
                    Some(n)
                }
                "quarantine" => {
                    let dir = Path::new(&d.dir);
                    if dir.exists() {
                        let q = sibling(dir, "quarantine")?;
                        std::fs::rename(dir, &q).map_err(|e| Error::io(dir.display(), e))?;
                    }
                    self.p
                        .store
                        .set_deployment_status(d.id, DeploymentStatus::Quarantined)?;
                    None
                }
                _ => None,
            };
            incidents.push(Incident {
                deployment: d,
                problems,
                action: action.into(),
                replacement,
            });
        }
        Ok(incidents)
    }

    // ---------------------------------------------------------------- export / shred

    /// Write a decrypted copy of a release into `to` (new or empty) with a quorum of
    /// export approvals.
    pub fn export(
        &self,
        name: &str,
        version: &str,
        to: &Path,
        actor: &str,
        progress: &dyn Progress,
    ) -> Result<PathBuf> {
        let id = release_id(name, version);
        let rel = self.live_release(name, version)?;
        let approvals = self.quorum(&rel, "export")?;
        let to = absolute_dir(to)?;
        if to.exists() && !is_empty_dir(&to)? {
            return Err(Error::refused(
                to.display().to_string(),
                "the export directory must be new or empty",
            ));
        }
        let staging = Staging::create(&self.p.staging, sibling(&to, "export")?, 0o750)?;
        self.unseal_into(&rel, staging.path(), progress)?;
        if to.exists() {
            let _ = std::fs::remove_dir(&to);
        }
        std::fs::rename(staging.path(), &to).map_err(|e| Error::io(to.display(), e))?;
        staging.keep();
        if let Err(e) = self.p.store.consume_approvals(&approvals, now()) {
            remove_tree(&to);
            return Err(e.into());
        }
        self.audit(
            actor,
            EventKind::Export {
                release: id,
                to: to.display().to_string(),
            },
        )?;
        Ok(to)
    }

    /// Crypto-shred a release: destroy its per-release KEK (if any), erase its wrapped
    /// data key, delete its ciphertext and (with `include_deployments`) its deployed
    /// copies. Refused while it is deployed unless `include_deployments`.
    pub fn shred(
        &self,
        name: &str,
        version: &str,
        actor: &str,
        include_deployments: bool,
    ) -> Result<Shredded> {
        let id = release_id(name, version);
        let rel = self.live_release(name, version)?;
        let active: Vec<Deployment> = self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .filter(|d| {
                d.name == name && d.version == version && d.status == DeploymentStatus::Active
            })
            .collect();
        if !active.is_empty() && !include_deployments {
            let dirs: Vec<&str> = active.iter().map(|d| d.dir.as_str()).collect();
            return Err(Error::refused(
                &id,
                format!(
                    "it is deployed in {}; pass --include-deployments to delete those copies too",
                    dirs.join(", ")
                ),
            ));
        }
        let at = now();
        let mut kek_destroyed = false;
        if rel.kek_id != self.p.policy.default_kek {
            match self.p.keys.open(&rel.kek_id) {
                Ok(k) => {
                    k.destroy()?;
                    kek_destroyed = true;
                }
                Err(Error::Kek { detail, .. }) if detail.contains("destroyed?") => {}
                Err(e) => return Err(e),
            }
        }
        self.p.store.mark_shredded(name, version, actor, at)?;
        let dir = self.release_dir(name, version);
        remove_tree(&dir);
        if dir.exists() {
            return Err(Error::io(
                dir.display(),
                std::io::Error::other("could not delete the sealed files"),
            ));
        }
        let mut removed = Vec::new();
        for d in &active {
            remove_tree(Path::new(&d.dir));
            self.p
                .store
                .set_deployment_status(d.id, DeploymentStatus::Removed)?;
            removed.push(d.dir.clone());
        }
        // A deletion record signed by the actor's admin key (when the actor is an admin),
        // verifiable without Warden: statement, Ed25519 signature, public key.
        let record = match self.p.store.admin(actor)? {
            Some(_) => {
                let key = self.admin_key(actor)?;
                let statement = admin::deletion_statement(
                    name,
                    version,
                    &rel.manifest_digest,
                    &rel.data_key_id,
                    &rel.kek_id,
                    at,
                    actor,
                );
                let signature = key.sign(&statement)?;
                let adm = self.registered_admin(&key)?;
                if !admin::verify_signature(&adm, &statement, &signature) {
                    return Err(Error::Crypto(
                        "deletion record signature does not verify".into(),
                    ));
                }
                let doc = serde_json::json!({
                    "statement": String::from_utf8_lossy(&statement),
                    "algorithm": admin::ALGORITHM,
                    "public_key": hex::encode(key.public_key()),
                    "signature": hex::encode(signature),
                });
                let dir = self.p.root.join(".shredded");
                create_private_dir(&dir)?;
                let path = dir.join(format!("{id}.json"));
                std::fs::write(&path, format!("{doc:#}\n"))
                    .map_err(|e| Error::io(path.display(), e))?;
                Some(path)
            }
            None => None,
        };
        self.audit(
            actor,
            EventKind::Shred {
                release: id,
                key_id: rel.data_key_id,
            },
        )?;
        Ok(Shredded {
            at,
            kek_destroyed,
            removed,
            record,
        })
    }

    /// Accept the current configuration file for every active deployment (after an
    /// administrator reviewed the change the monitor reported). Audited as a policy
    /// change by that administrator; returns the deployments updated.
    pub fn accept_config(&self, key: &AdminKey) -> Result<Vec<Deployment>> {
        let who = key.name();
        let adm = self.registered_admin(key)?;
        let current = self.config_digest()?;
        // Proof of possession (a token key signs on the token): the acceptance is by this
        // administrator, not by whoever can name them.
        let statement = format!(
            "warden-accept-config-v1\nwarden.toml-sha256={current}\nadmin={who}\nat={}\n",
            now()
        );
        let signature = key.sign(statement.as_bytes())?;
        if !admin::verify_signature(&adm, statement.as_bytes(), &signature) {
            return Err(Error::refused(
                who,
                "the signing key is not this administrator's key",
            ));
        }
        let mut changed = Vec::new();
        for mut d in self.p.store.deployments(None)? {
            if d.status != DeploymentStatus::Active || d.config_digest == current {
                continue;
            }
            self.p.store.set_deployment_config_digest(d.id, &current)?;
            let old = std::mem::replace(&mut d.config_digest, current.clone());
            self.audit(
                who,
                EventKind::PolicyChange {
                    policy: format!("warden.toml for {}", d.dir),
                    old_sha256: Some(old).filter(|o| !o.is_empty()),
                    new_sha256: current.clone(),
                },
            )?;
            changed.push(d);
        }
        Ok(changed)
    }

    // ---------------------------------------------------------------- retire / status

    /// Retire a release: signed by `key`'s administrator, audited; afterwards it can never
    /// be approved for deploy or deployed again (export and shred still work). Refused
    /// while it is deployed unless `include_deployments`, which deletes the deployed copies
    /// (status `removed`). Unused deploy approvals are voided.
    pub fn retire(
        &self,
        name: &str,
        version: &str,
        key: &AdminKey,
        reason: &str,
        include_deployments: bool,
    ) -> Result<Retired> {
        let id = release_id(name, version);
        let rel = self.live_release(name, version)?;
        if rel.state == ReleaseState::Retired {
            return Err(Error::refused(&id, retired_reason(&rel)));
        }
        if reason.trim().is_empty() {
            return Err(Error::invalid("--reason", "a retirement needs a reason"));
        }
        let who = key.name();
        let adm = self.registered_admin(key)?;
        let active: Vec<String> = self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .filter(|d| {
                d.name == name && d.version == version && d.status == DeploymentStatus::Active
            })
            .map(|d| d.dir)
            .collect();
        if !active.is_empty() && !include_deployments {
            return Err(Error::refused(
                &id,
                format!(
                    "it is deployed in {}; deploy or roll back to another release first, or pass --include-deployments to delete those copies",
                    active.join(", ")
                ),
            ));
        }
        let at = now();
        let statement =
            admin::retire_statement(name, version, &rel.manifest_digest, reason, who, at);
        let retirement = warden_store::Retirement {
            by: who.to_owned(),
            at,
            reason: reason.to_owned(),
            signature: key.sign(&statement)?,
        };
        if !admin::verify_retirement(&adm, &rel, &retirement) {
            return Err(Error::Crypto("retirement signature does not verify".into()));
        }
        let removed =
            self.p
                .store
                .retire_release(name, version, &retirement, include_deployments)?;
        let mut removed_dirs = Vec::new();
        for d in &removed {
            remove_tree(Path::new(&d.dir));
            removed_dirs.push(d.dir.clone());
        }
        self.audit(
            who,
            EventKind::Retire {
                release: id.clone(),
                reason: reason.to_owned(),
                removed: removed_dirs.clone(),
                signature: hex::encode(&retirement.signature),
            },
        )?;
        if let Some(d) = removed_dirs.iter().find(|d| Path::new(d).exists()) {
            return Err(Error::io(
                d,
                std::io::Error::other(format!(
                    "{id} was retired but its deployed copy could not be deleted"
                )),
            ));
        }
        Ok(Retired {
            retirement,
            removed: removed_dirs,
        })
    }

    /// The registered administrator whose key `key` is.
    fn registered_admin(&self, key: &AdminKey) -> Result<Admin> {
        let who = key.name();
        let adm = self
            .p
            .store
            .admin(who)?
            .ok_or_else(|| Error::refused(who, "no administrator with this name"))?;
        if adm.public_key != key.public_key() {
            return Err(Error::refused(
                who,
                "the signing key is not this administrator's key",
            ));
        }
        Ok(adm)
    }

    /// Where a release is in its lifecycle, with what counts for its next step.
    pub fn status(&self, name: &str, version: &str) -> Result<ReleaseStatus> {
        let release = self
            .p
            .store
            .release(name, version)?
            .ok_or_else(|| Error::NoSuchRelease(release_id(name, version)))?;
        let at = now();
        let (deploy, deploy_ignored) = if release.state == ReleaseState::Shredded {
            (Vec::new(), Vec::new())
        } else {
            self.valid_approvals(&release, "deploy", at)?
        };
        let (export, _) = if release.state == ReleaseState::Shredded {
            (Vec::new(), Vec::new())
        } else {
            self.valid_approvals(&release, "export", at)?
        };
        let retirement_verified = match &release.retired {
            Some(r) => self
                .p
                .store
                .admin(&r.by)?
                .is_some_and(|adm| admin::verify_retirement(&adm, &release, r)),
            None => false,
        };
        let deployments = self
            .p
            .store
            .deployments(None)?
            .into_iter()
            .filter(|d| d.name == name && d.version == version)
            .collect();
        Ok(ReleaseStatus {
            evaluations: self.p.store.evaluations(name, version)?,
            deploy_approvals: deploy,
            deploy_not_counted: deploy_ignored,
            export_approvals: export,
            quorum: self.p.policy.approvals_required,
            deployments,
            retirement_verified,
            release,
        })
    }

    /// Every release, oldest first.
    pub fn releases(&self) -> Result<Vec<Release>> {
        Ok(self.p.store.releases(None)?)
    }
}

/// Run the evaluation command; returns (exit success, stdout, last stderr lines).
fn run_evaluation(
    command: &str,
    staged: &Path,
    rel: &Release,
    timeout_secs: u64,
    pin_env: &str,
) -> Result<(bool, String, String)> {
    use std::io::Read;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(staged)
        .env("WARDEN_MODEL_DIR", staged)
        .env("WARDEN_MODEL_NAME", &rel.name)
        .env("WARDEN_MODEL_VERSION", &rel.version)
        // The evaluation command may be vendor code: it never sees the HSM PIN.
        .env_remove(pin_env)
        .env_remove("WARDEN_PKCS11_PIN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("evaluation command (sh -c)", e))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    // Known to `staging::abandon`, which kills it if Warden is told to exit.
    let child = crate::staging::TrackedChild::new(child);
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(16 << 20).read_to_end(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = o.take(16 << 20).read_to_end(&mut s);
        }
        s
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if std::time::Instant::now() >= deadline => {
                child.kill();
                break None;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(Error::io("evaluation command", e)),
        }
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    match status {
        None => Ok((false, stdout, format!("timed out after {timeout_secs} s"))),
        Some(s) => Ok((
            s.success(),
            stdout,
            format!(
                "{s}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            ),
        )),
    }
}

/// The metrics object: the whole output, or its last non-empty line.
fn parse_metrics(stdout: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let try_obj = |s: &str| match serde_json::from_str::<serde_json::Value>(s.trim()) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    };
    try_obj(stdout).or_else(|| {
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(try_obj)
    })
}
