//! `warden init`, `warden admin`, `warden vault`, `warden release`, `warden monitor`:
//! the sealed vault and the release lifecycle (`warden-vault`, state in `warden-store`,
//! events in the audit log).
//!
//! Exit codes: 0 done; 1 a verdict against the input (scan findings, failed signature,
//! failed evaluation gate, tampering found by `monitor --once`); 2 refused or could not
//! do the job (no quorum, shredded release, bad configuration…), with the reason.

use crate::Global;
use crate::ui;
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use warden_store::{SqliteStore, Store, format_utc};
use warden_tlog::{AuditEvent, EventKind, Log, LogOptions, Signer};
use warden_vault::key::{FileProvider, KeyProvider};
use warden_vault::pkcs11::{Pkcs11Config, Pkcs11Provider};
use warden_vault::{Error as VaultError, ImportRequest, Policy, Progress, Vault, VaultParts};

/// Arguments of `warden init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Key-encryption key provider: `file` (development only) or `pkcs11` (an HSM).
    #[arg(long, default_value = "file", value_parser = ["file", "pkcs11"])]
    key_provider: String,
    /// PKCS#11 module (with --key-provider pkcs11).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/lib/softhsm/libsofthsm2.so"
    )]
    pkcs11_module: String,
    /// PKCS#11 token label (with --key-provider pkcs11); the PIN comes from $WARDEN_PKCS11_PIN.
    #[arg(long, value_name = "LABEL", default_value = "warden")]
    pkcs11_token: String,
    /// One KEK per release, destroyed when the release is shredded.
    #[arg(long)]
    per_release_kek: bool,
}

/// Subcommands of `warden admin`.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Add an administrator with a new Ed25519 signing key (a 0600 key file under
    /// keys/admins/, or with --pkcs11 a non-extractable key on the [vault.pkcs11] token).
    Add {
        /// Administrator name.
        name: String,
        /// Generate the key on the PKCS#11 token of [vault.pkcs11] (PIN from
        /// $WARDEN_PKCS11_PIN or pin_file); approvals are then signed on the token.
        #[arg(long)]
        pkcs11: bool,
    },
    /// List administrators.
    Ls,
}

/// Subcommands of `warden vault`.
#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {
    /// Scan, verify, seal and register a model directory as a new release.
    #[command(disable_version_flag = true)]
    Import {
        /// Model directory.
        dir: PathBuf,
        /// Model name.
        #[arg(long)]
        name: String,
        /// Version.
        #[arg(long)]
        version: String,
        /// OpenSSF Model Signing bundle to verify before sealing.
        #[arg(long, value_name = "FILE", requires = "public_key")]
        signature: Option<PathBuf>,
        /// PEM public key the signature must verify with.
        #[arg(long, value_name = "FILE", requires = "signature")]
        public_key: Option<PathBuf>,
        /// Who imports (cannot approve this release later). Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Write a decrypted copy of a release (needs a quorum of `export` approvals).
    Export {
        /// `name@version`.
        release: String,
        /// New or empty directory.
        #[arg(long)]
        to: PathBuf,
        /// Who exports. Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Crypto-shred a release: destroy its key, delete its ciphertext.
    Shred {
        /// `name@version`.
        release: String,
        /// Also delete deployed copies (otherwise a deployed release is not shredded).
        #[arg(long)]
        include_deployments: bool,
        /// Who shreds. Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// List releases.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ui::ReportFormat::Text)]
        format: ui::ReportFormat,
    },
    /// Print a byte range of one file of a release (random access) to standard output.
    Cat {
        /// `name@version`.
        release: String,
        /// File path inside the model.
        path: String,
        /// First byte.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Number of bytes (default: to the end).
        #[arg(long)]
        length: Option<u64>,
    },
}

/// Subcommands of `warden release`.
#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Run an evaluation command against a staged copy and gate on its JSON metrics.
    Evaluate {
        /// `name@version`.
        release: String,
        /// Shell command; runs in the staged model directory ($WARDEN_MODEL_DIR) and
        /// prints a JSON object of metrics.
        #[arg(long)]
        command: String,
        /// Who evaluates. Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ui::ReportFormat::Text)]
        format: ui::ReportFormat,
    },
    /// Sign an approval of a release with an administrator's key.
    Approve {
        /// `name@version`.
        release: String,
        /// Approving administrator.
        #[arg(long = "as", value_name = "ADMIN")]
        admin: String,
        /// What is approved.
        #[arg(long, default_value = "deploy", value_parser = ["deploy", "export"])]
        action: String,
        /// Lifetime of the approval in seconds (default: the policy's).
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<i64>,
    },
    /// Unseal a release into a directory (needs a quorum of deploy approvals).
    Deploy {
        /// `name@version`.
        release: String,
        /// Target directory.
        #[arg(long)]
        to: PathBuf,
        /// Who deploys. Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Retire a release (signed by an administrator, audited): it is never approved for
    /// deploy or deployed again. Refused while deployed unless --include-deployments.
    Retire {
        /// `name@version`.
        release: String,
        /// Retiring administrator (signs the retirement).
        #[arg(long = "as", value_name = "ADMIN")]
        admin: String,
        /// Why (signed and recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Also delete the release's deployed copies (their deployments become `removed`).
        #[arg(long)]
        include_deployments: bool,
    },
    /// Show a release's lifecycle state, evaluations, approvals and deployments.
    Status {
        /// `name@version`.
        release: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ui::ReportFormat::Text)]
        format: ui::ReportFormat,
    },
    /// Return a model's deployment to the previous release.
    Rollback {
        /// Model name.
        name: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "manual rollback")]
        reason: String,
        /// Who rolls back. Default: $USER.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
}

/// Arguments of `warden monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Check once and exit (1 if anything was found).
    #[arg(long)]
    once: bool,
    /// Seconds between full re-hashes; file-system events trigger a check at once
    /// (default: the policy's `monitor_interval_secs`).
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u64>,
    /// Accept the current warden.toml for every active deployment after reviewing a
    /// reported configuration change (needs --as ADMIN; audited), then exit.
    #[arg(long, requires = "admin")]
    accept_config: bool,
    /// Administrator accepting the configuration.
    #[arg(long = "as", value_name = "ADMIN")]
    admin: Option<String>,
}

// ------------------------------------------------------------------ helpers

fn home(g: &Global) -> anyhow::Result<PathBuf> {
    crate::cmd::home_dir(g)
}

fn whoami(actor: Option<String>) -> String {
    actor
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "operator".into())
}

fn split_release(s: &str) -> anyhow::Result<(&str, &str)> {
    match s.split_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n, v)),
        _ => bail!("{s}: expected name@version"),
    }
}

pub(crate) fn read_policy(home: &Path) -> anyhow::Result<Policy> {
    let path = home.join("warden.toml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let policy: Policy = match table.get("vault") {
        Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{}: [vault]: {}", path.display(), e.message())
        })?,
        None => Policy::default(),
    };
    policy
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(policy)
}

fn pkcs11_pin(policy: &Policy) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Some(f) = &policy.pkcs11.pin_file {
        let s = std::fs::read_to_string(f).with_context(|| f.clone())?;
        return Ok(zeroize::Zeroizing::new(s.trim_end().to_owned()));
    }
    match std::env::var(&policy.pkcs11.pin_env) {
        Ok(p) if !p.is_empty() => Ok(zeroize::Zeroizing::new(p)),
        _ => bail!(
            "pkcs11 token {}: no PIN: set ${} (or pin_file in [vault.pkcs11])",
            policy.pkcs11.token,
            policy.pkcs11.pin_env
        ),
    }
}

fn connect_token(policy: &Policy) -> anyhow::Result<Pkcs11Provider> {
    Ok(Pkcs11Provider::connect(&Pkcs11Config {
        module: PathBuf::from(&policy.pkcs11.module),
        token: policy.pkcs11.token.clone(),
        pin: pkcs11_pin(policy)?,
    })?)
}

/// Connect the admin-key token when administrator `name`'s key is on one.
fn token_for(v: &mut Vault, name: &str) -> anyhow::Result<()> {
    let on_token = v
        .store()
        .admin(name)?
        .is_some_and(|a| a.key_ref.starts_with(warden_vault::admin::TOKEN_REF_PREFIX));
    if on_token {
        let p = connect_token(v.policy())?;
        v.set_admin_token(p);
    }
    Ok(())
}

fn key_provider(home: &Path, policy: &Policy) -> anyhow::Result<Arc<dyn KeyProvider>> {
    Ok(match policy.key_provider.as_str() {
        "pkcs11" => Arc::new(Pkcs11Provider::connect(&Pkcs11Config {
            module: PathBuf::from(&policy.pkcs11.module),
            token: policy.pkcs11.token.clone(),
            pin: pkcs11_pin(policy)?,
        })?),
        _ => Arc::new(FileProvider::new(&home.join("keys"))?),
    })
}

/// Open the audit log. Writers share it (the gateway, the monitor, other commands), each
/// taking its lock for one commit; a writer stuck holding it is waited for up to 30 s
/// (`LogOptions::lock_wait`), then the command fails with "in use by another writer".
fn open_log(home: &Path) -> anyhow::Result<Log> {
    open_log_waiting(home).map_err(|e| anyhow::anyhow!("audit log: {e}"))
}

fn open_log_waiting(home: &Path) -> Result<Log, warden_tlog::Error> {
    Log::open_dir(
        &home.join("audit"),
        &home.join("keys/audit.key"),
        LogOptions::default(),
    )
}

/// Open the vault. The audit log is opened for each append rather than held for the
/// whole command, so a long one (an evaluation, a deploy of a large model, the monitor)
/// keeps no writer thread or open log in between.
fn open(g: &Global) -> anyhow::Result<Vault> {
    let home = home(g)?;
    let db = home.join("state.db");
    if !db.exists() {
        bail!(
            "{}: not a Warden home (no state.db); run `warden init --home {}` first",
            home.display(),
            home.display()
        );
    }
    let policy = read_policy(&home)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db)?);
    let keys = key_provider(&home, &policy)?;
    // Check now that it opens (key, checkpoint signature, tiles), then let go of it.
    drop(open_log(&home)?);
    let audit = {
        let home = home.clone();
        warden_vault::Audit::OnDemand(Arc::new(move || {
            open_log_waiting(&home).map_err(|e| e.to_string())
        }))
    };
    let v = Vault::new(VaultParts {
        root: home.join("vault"),
        admin_keys: home.join("keys/admins"),
        admin_token: None,
        staging: home.join("staging"),
        config_file: Some(home.join("warden.toml")),
        store,
        keys,
        audit,
        policy,
    })?;
    sweep(&v);
    exit_cleanly_on_signals();
    Ok(v)
}

/// On SIGINT, SIGTERM or SIGHUP: kill this process's evaluation commands, delete its
/// plaintext staging directories, then exit (128 + signal). The handlers are in place
/// before this returns; a SIGKILL is left to the next command's sweep.
fn exit_cleanly_on_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let streams = {
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        )
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = streams else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            let code = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                    _ = hup.recv() => 129,
                }
            });
            for p in warden_vault::staging::abandon() {
                eprintln!("interrupted: deleted staging directory {}", p.display());
            }
            std::process::exit(code);
        });
}

/// Delete what killed operations left in staging; a failure is reported, not fatal (it
/// must not lock the operator out of the vault, and the next command tries again).
fn sweep(v: &Vault) {
    match v.sweep_staging() {
        Ok(removed) => {
            for p in removed {
                eprintln!(
                    "removed the staging directory of an interrupted operation: {}",
                    p.display()
                );
            }
        }
        Err(e) => ui::print_error(&anyhow::anyhow!(
            "{e} (staging left by an interrupted operation; will retry)"
        )),
    }
}

/// A progress bar on a terminal, nothing otherwise.
#[derive(Default)]
struct Bar(Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        if let Ok(mut b) = self.0.lock() {
            *b = Some(ui::progress_bytes(total, what));
        }
    }
    fn advance(&self, bytes: u64) {
        if let Ok(b) = self.0.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(bytes);
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.0.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units.get(i).copied().unwrap_or("B"))
    }
}

fn bold(s: &str) -> String {
    ui::paint(anstyle::Style::new().bold(), s)
}

/// Verdicts (scan findings, failed signature) exit 1; everything else propagates (exit 2).
fn verdict_or(e: VaultError) -> anyhow::Result<ExitCode> {
    match e {
        VaultError::Verdict { .. } => {
            ui::print_error(&anyhow::Error::new(e));
            Ok(ExitCode::from(1))
        }
        other => Err(other.into()),
    }
}

// ------------------------------------------------------------------ init

/// The vault's key-protection posture for `warden posture`: (development only, description).
pub fn key_posture(home: &Path) -> Option<(bool, String)> {
    let policy = read_policy(home).ok()?;
    Some(match policy.key_provider.as_str() {
        "pkcs11" => (
            false,
            format!(
                "vault keys: non-extractable key-encryption keys on PKCS#11 token {:?}{}",
                policy.pkcs11.token,
                if policy.per_release_kek {
                    ", one per release"
                } else {
                    ""
                }
            ),
        ),
        _ => (
            true,
            format!(
                "vault keys: key-encryption keys are plain files in {} (development only); use key_provider = \"pkcs11\" with an HSM",
                home.join("keys").display()
            ),
        ),
    })
}

/// Run `warden init`.
pub fn run_init(a: InitArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let home = home(g)?;
    if home.join("state.db").exists() {
        bail!(
            "{}: already a Warden home (state.db exists); nothing changed",
            home.display()
        );
    }
    let existed = home.exists();
    let result = init_inner(&a, &home);
    if result.is_err() {
        // Leave nothing half-made behind.
        if existed {
            for p in [
                "keys",
                "audit",
                "vault",
                "state.db",
                "state.db-wal",
                "state.db-shm",
                "warden.toml",
            ] {
                let p = home.join(p);
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        } else {
            let _ = std::fs::remove_dir_all(&home);
        }
    }
    result
}

fn init_inner(a: &InitArgs, home: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(home).with_context(|| home.display().to_string())?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .with_context(|| home.display().to_string())?;
    let keys = home.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| keys.display().to_string())?;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
        .with_context(|| keys.display().to_string())?;

    // Audit log signing key and the log itself.
    let mut rnd = [0u8; 4];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let origin = format!("warden-{}", hex::encode(rnd));
    let signer = Signer::generate(&origin)?;
    let key_path = keys.join("audit.key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| key_path.display().to_string())?;
    writeln!(f, "{}", signer.to_key_string()).with_context(|| key_path.display().to_string())?;
    f.sync_all()
        .with_context(|| key_path.display().to_string())?;
    let vkey = signer.verifier().to_string();
    let pub_path = keys.join("audit.pub");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pub_path)
        .and_then(|mut f| f.write_all(format!("{vkey}\n").as_bytes()))
        .with_context(|| pub_path.display().to_string())?;
    let log = open_log(home)?;

    // State.
    let db = home.join("state.db");
    let store = SqliteStore::open(&db)?;
    let schema = store.schema_version()?;

    // Policy and KEK.
    let mut policy = Policy {
        key_provider: a.key_provider.clone(),
        per_release_kek: a.per_release_kek,
        ..Policy::default()
    };
    policy.pkcs11.module = a.pkcs11_module.clone();
    policy.pkcs11.token = a.pkcs11_token.clone();
    policy.default_kek = if a.key_provider == "pkcs11" {
        "pkcs11:warden-kek-default".into()
    } else {
        "file:default".into()
    };
    let provider = key_provider(home, &policy)?;
    let posture = provider.posture();
    let kek_note = if a.per_release_kek {
        "one KEK per release, created at import and destroyed at shred".to_owned()
    } else {
        let label = policy
            .default_kek
            .split_once(':')
            .map(|(_, l)| l.to_owned())
            .unwrap_or_default();
        let kek = provider.create(&label)?;
        log.append_event(&AuditEvent::now(
            "warden-init",
            EventKind::KeyCreated {
                key_id: kek.id().to_owned(),
                purpose: "kek".into(),
                algorithm: "aes-256".into(),
            },
        ))?;
        format!("key-encryption key {}", kek.id())
    };
    log.append_event(&AuditEvent::now(
        "warden-init",
        EventKind::KeyCreated {
            key_id: vkey.clone(),
            purpose: "audit".into(),
            algorithm: "ed25519".into(),
        },
    ))?;
    std::fs::create_dir_all(home.join("vault"))
        .with_context(|| home.join("vault").display().to_string())?;
    std::fs::set_permissions(home.join("vault"), std::fs::Permissions::from_mode(0o700))
        .with_context(|| home.join("vault").display().to_string())?;
    let toml_text = format!(
        "# Warden configuration, created by `warden init`.\n\n{}",
        toml::to_string(&toml::Table::from_iter([(
            "vault".to_owned(),
            toml::Value::try_from(&policy)?,
        )]))?
    );
    let cfg = home.join("warden.toml");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&cfg)
        .and_then(|mut f| f.write_all(toml_text.as_bytes()))
        .with_context(|| cfg.display().to_string())?;

    println!("{} {}", bold("initialised Warden home"), home.display());
    println!("  configuration   {}", cfg.display());
    println!(
        "  state           {} (SQLite, schema {schema})",
        db.display()
    );
    println!(
        "  audit log       {} (signed by {})",
        home.join("audit").display(),
        key_path.display()
    );
    println!(
        "  key provider    {}{}: {kek_note}",
        posture.provider,
        if posture.development_only {
            " (development only)"
        } else {
            ""
        }
    );
    println!("  sealed models   {}", home.join("vault").display());
    if posture.development_only {
        println!("  note: {}", posture.description);
    }
    println!();
    println!(
        "next: add two administrators (releases need two approvals):\n  warden --home {} admin add <name>",
        home.display()
    );
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------ admin

/// Run `warden admin`.
pub fn run_admin(c: AdminCommand, g: &Global) -> anyhow::Result<ExitCode> {
    let mut v = open(g)?;
    match c {
        AdminCommand::Add { name, pkcs11 } => {
            let admin = if pkcs11 {
                let p = connect_token(v.policy())?;
                v.set_admin_token(p);
                v.add_admin_on_token(&name, &whoami(None))?
            } else {
                v.add_admin(&name, &whoami(None))?.0
            };
            println!(
                "{} {} ({} key {})",
                bold("added administrator"),
                admin.name,
                admin.algorithm,
                hex::encode(&admin.public_key)
            );
            if pkcs11 {
                println!(
                    "  signing key  {} (generated on the token: private, sensitive, never extractable)",
                    admin.key_ref
                );
            } else {
                println!(
                    "  signing key  {} (mode 0600; keep it with {})",
                    admin.key_ref, admin.name
                );
            }
            let n = v.store().admins()?.len();
            if n < 2 {
                println!("next: add a second administrator: warden admin add <name>");
            } else {
                println!("next: import a model: warden vault import DIR --name N --version V");
            }
        }
        AdminCommand::Ls => {
            for a in v.store().admins()? {
                println!(
                    "{}  {}  {}  {}  added {}",
                    a.name,
                    a.algorithm,
                    hex::encode(&a.public_key),
                    a.key_ref,
                    format_utc(a.created_at)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------ vault

/// Run `warden vault`.
pub fn run_vault(c: VaultCommand, g: &Global) -> anyhow::Result<ExitCode> {
    let mut v = open(g)?;
    match c {
        VaultCommand::Import {
            dir,
            name,
            version,
            signature,
            public_key,
            actor,
        } => {
            let actor = whoami(actor);
            let verified = match (&signature, &public_key) {
                (Some(sig), Some(pubk)) => {
                    let key = warden_sign::VerificationKey::from_pem_file(pubk)?;
                    let bundle = std::fs::read(sig).with_context(|| sig.display().to_string())?;
                    match warden_sign::verify(
                        &dir,
                        &bundle,
                        warden_sign::Trust::Key(&key),
                        &warden_sign::VerifyOptions::default(),
                    ) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            ui::print_error(&anyhow::anyhow!(
                                "{}: refused: signature verification failed: {e}",
                                dir.display()
                            ));
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
                _ => None,
            };
            let bar = Bar::default();
            let out = match v.import(
                &ImportRequest {
                    dir: &dir,
                    name: &name,
                    version: &version,
                    importer: &actor,
                    verified: verified.as_ref(),
                },
                &bar,
            ) {
                Ok(o) => o,
                Err(e) => return verdict_or(e),
            };
            let r = &out.release;
            println!(
                "{} {}@{}: {} file(s), {}, manifest sha256:{}",
                bold("imported"),
                r.name,
                r.version,
                out.manifest.files.len(),
                human_bytes(r.total_bytes),
                r.manifest_digest
            );
            println!(
                "  scan       {}",
                match out.scan_max {
                    None => "clean".to_owned(),
                    Some(s) => format!(
                        "{} finding(s), highest {s} (below the threshold)",
                        out.findings
                    ),
                }
            );
            if let Some(sd) = &out.manifest.signed_digest {
                println!("  signature  verified (signed manifest sha256:{sd})");
            }
            println!(
                "  sealed     with {} (data key {})",
                r.kek_id, r.data_key_id
            );
            println!(
                "next: warden release evaluate {}@{} --command '<evaluation command>'",
                r.name, r.version
            );
        }
        VaultCommand::Export { release, to, actor } => {
            let (n, ver) = split_release(&release)?;
            let bar = Bar::default();
            let dest = v.export(n, ver, &to, &whoami(actor), &bar)?;
            println!("{} {release} to {}", bold("exported"), dest.display());
        }
        VaultCommand::Shred {
            release,
            include_deployments,
            actor,
        } => {
            let (n, ver) = split_release(&release)?;
            let actor = whoami(actor);
            token_for(&mut v, &actor)?;
            let s = v.shred(n, ver, &actor, include_deployments)?;
            println!("{} {release} at {}", bold("shredded"), format_utc(s.at));
            println!("  data key erased, ciphertext deleted");
            if s.kek_destroyed {
                println!("  per-release key-encryption key destroyed");
            }
            for d in s.removed {
                println!("  deleted deployed copy {d}");
            }
            if let Some(r) = s.record {
                println!("  signed deletion record {}", r.display());
            }
        }
        VaultCommand::Ls { format } => {
            let releases = v.releases()?;
            let deployments = v.store().deployments(None)?;
            if format == ui::ReportFormat::Json {
                let list: Vec<serde_json::Value> = releases
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name, "version": r.version, "state": r.state.as_str(),
                            "manifest_sha256": r.manifest_digest, "bytes": r.total_bytes,
                            "kek": r.kek_id, "importer": r.importer,
                            "created": format_utc(r.created_at),
                            "shredded_at": r.shredded_at.map(format_utc), "shredded_by": r.shredded_by,
                            "retired_at": r.retired.as_ref().map(|x| format_utc(x.at)),
                            "retired_by": r.retired.as_ref().map(|x| x.by.clone()),
                            "deployments": deployments.iter()
                                .filter(|d| d.name == r.name && d.version == r.version)
                                .map(|d| serde_json::json!({"dir": d.dir, "status": d.status.as_str(), "at": format_utc(d.at)}))
                                .collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                if releases.is_empty() {
                    println!(
                        "no releases; import one with: warden vault import DIR --name N --version V"
                    );
                }
                for r in releases {
                    let active: Vec<String> = deployments
                        .iter()
                        .filter(|d| {
                            d.name == r.name
                                && d.version == r.version
                                && d.status == warden_store::DeploymentStatus::Active
                        })
                        .map(|d| d.dir.clone())
                        .collect();
                    let extra = match (&r.shredded_by, r.shredded_at) {
                        (Some(by), Some(at)) => format!("shredded on {} by {by}", format_utc(at)),
                        _ if r.retired.is_some() => r
                            .retired
                            .as_ref()
                            .map(|x| format!("retired on {} by {}", format_utc(x.at), x.by))
                            .unwrap_or_default(),
                        _ if !active.is_empty() => format!("deployed in {}", active.join(", ")),
                        _ => format!("imported by {} on {}", r.importer, format_utc(r.created_at)),
                    };
                    println!(
                        "{}@{}  {}  {}  sha256:{}…  {}",
                        r.name,
                        r.version,
                        r.state,
                        human_bytes(r.total_bytes),
                        r.manifest_digest.get(..16).unwrap_or_default(),
                        extra
                    );
                }
            }
        }
        VaultCommand::Cat {
            release,
            path,
            offset,
            length,
        } => {
            let (n, ver) = split_release(&release)?;
            let mut f = v.open_file(n, ver, &path)?;
            let size = f.header().plaintext_len;
            let len = length.unwrap_or(size.saturating_sub(offset));
            let bytes = f.read_range(offset, len)?;
            std::io::stdout()
                .write_all(&bytes)
                .context("standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------ release

/// Run `warden release`.
pub fn run_release(c: ReleaseCommand, g: &Global) -> anyhow::Result<ExitCode> {
    let mut v = open(g)?;
    match c {
        ReleaseCommand::Evaluate {
            release,
            command,
            actor,
            format,
        } => {
            let (n, ver) = split_release(&release)?;
            let bar = Bar::default();
            let out = v.evaluate(n, ver, &command, &whoami(actor), &bar)?;
            let e = &out.evaluation;
            if format == ui::ReportFormat::Json {
                let metrics: serde_json::Value =
                    serde_json::from_str(&e.metrics).unwrap_or(serde_json::Value::Null);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "release": release, "passed": e.passed, "metrics": metrics,
                        "failures": out.failures,
                    }))?
                );
            } else if e.passed {
                println!("{} {release}: {}", bold("evaluation passed"), e.metrics);
                println!(
                    "next: two administrators approve: warden release approve {release} --as <admin>"
                );
            } else {
                println!("{} {release}: {}", bold("evaluation failed"), e.metrics);
                for f in &out.failures {
                    println!("  {f}");
                }
            }
            return Ok(if e.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        ReleaseCommand::Approve {
            release,
            admin,
            action,
            expires_in,
        } => {
            let (n, ver) = split_release(&release)?;
            token_for(&mut v, &admin)?;
            let key = v.admin_key(&admin)?;
            let a = v.approve(n, ver, &action, &key, expires_in)?;
            println!(
                "{} {action} of {release} by {} (approval {}, valid until {})",
                bold("approved"),
                a.admin,
                a.id,
                format_utc(a.expires_at)
            );
        }
        ReleaseCommand::Deploy { release, to, actor } => {
            let (n, ver) = split_release(&release)?;
            let bar = Bar::default();
            let d = v.deploy(n, ver, &to, &whoami(actor), &bar)?;
            println!(
                "{} {release} to {} (files read-only, verified against the manifest)",
                bold("deployed"),
                d.dir
            );
            println!("next: watch it: warden monitor");
        }
        ReleaseCommand::Retire {
            release,
            admin,
            reason,
            include_deployments,
        } => {
            let (n, ver) = split_release(&release)?;
            token_for(&mut v, &admin)?;
            let key = v.admin_key(&admin)?;
            let r = v.retire(n, ver, &key, &reason, include_deployments)?;
            println!(
                "{} {release} by {} at {} (signed; never approved or deployed again)",
                bold("retired"),
                r.retirement.by,
                format_utc(r.retirement.at)
            );
            for d in r.removed {
                println!("  deleted deployed copy {d}");
            }
        }
        ReleaseCommand::Status { release, format } => {
            let (n, ver) = split_release(&release)?;
            let st = v.status(n, ver)?;
            print_status(&st, format)?;
        }
        ReleaseCommand::Rollback {
            name,
            reason,
            actor,
        } => {
            let bar = Bar::default();
            let d = v.rollback(&name, &whoami(actor), &reason, &bar)?;
            println!(
                "{} {name} to {}@{} in {}",
                bold("rolled back"),
                d.name,
                d.version,
                d.dir
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn approval_json(a: &warden_store::Approval) -> serde_json::Value {
    serde_json::json!({
        "admin": a.admin, "action": a.action, "created": format_utc(a.created_at),
        "expires": format_utc(a.expires_at),
    })
}

fn print_status(st: &warden_vault::ReleaseStatus, format: ui::ReportFormat) -> anyhow::Result<()> {
    let r = &st.release;
    let id = format!("{}@{}", r.name, r.version);
    let quorum_until = (st.deploy_approvals.len() >= st.quorum as usize)
        .then(|| {
            // The quorum lapses when the (quorum)th-longest-lived approval expires.
            let mut exp: Vec<i64> = st.deploy_approvals.iter().map(|a| a.expires_at).collect();
            exp.sort_unstable_by(|a, b| b.cmp(a));
            exp.get((st.quorum as usize).saturating_sub(1)).copied()
        })
        .flatten();
    let last_eval = st.evaluations.last();
    if format == ui::ReportFormat::Json {
        let doc = serde_json::json!({
            "release": id, "name": r.name, "version": r.version, "state": r.state.as_str(),
            "manifest_sha256": r.manifest_digest, "bytes": r.total_bytes,
            "importer": r.importer, "created": format_utc(r.created_at),
            "evaluation": last_eval.map(|e| serde_json::json!({
                "passed": e.passed, "detail": e.detail, "by": e.by, "at": format_utc(e.at),
                "metrics": serde_json::from_str::<serde_json::Value>(&e.metrics).unwrap_or(serde_json::Value::Null),
            })),
            "deploy_approvals": {
                "valid": st.deploy_approvals.iter().map(approval_json).collect::<Vec<_>>(),
                "required": st.quorum,
                "quorum": quorum_until.is_some(),
                "quorum_until": quorum_until.map(format_utc),
                "not_counted": st.deploy_not_counted,
            },
            "export_approvals": st.export_approvals.iter().map(approval_json).collect::<Vec<_>>(),
            "deployments": st.deployments.iter().map(|d| serde_json::json!({
                "dir": d.dir, "status": d.status.as_str(), "by": d.by, "at": format_utc(d.at),
            })).collect::<Vec<_>>(),
            "retired": r.retired.as_ref().map(|x| serde_json::json!({
                "by": x.by, "at": format_utc(x.at), "reason": x.reason,
                "signature": hex::encode(&x.signature), "signature_verified": st.retirement_verified,
            })),
            "shredded": r.shredded_at.map(|at| serde_json::json!({
                "by": r.shredded_by, "at": format_utc(at),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("{}  {}", bold(&id), bold(r.state.as_str()));
    println!(
        "  imported     by {} on {}, {}, manifest sha256:{}",
        r.importer,
        format_utc(r.created_at),
        human_bytes(r.total_bytes),
        r.manifest_digest
    );
    match last_eval {
        Some(e) => println!(
            "  evaluation   {} on {} by {}: {}",
            if e.passed { "passed" } else { "failed" },
            format_utc(e.at),
            e.by,
            e.detail
        ),
        None => println!("  evaluation   none"),
    }
    let names: Vec<&str> = st
        .deploy_approvals
        .iter()
        .map(|a| a.admin.as_str())
        .collect();
    println!(
        "  approvals    deploy {}/{}{}{}",
        st.deploy_approvals.len(),
        st.quorum,
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        },
        match quorum_until {
            Some(t) => format!(", quorum until {}", format_utc(t)),
            None if r.state == warden_store::ReleaseState::Approved => {
                ", quorum lapsed: approve again before deploying".to_owned()
            }
            None => String::new(),
        }
    );
    for why in &st.deploy_not_counted {
        println!("               not counted: {why}");
    }
    if !st.export_approvals.is_empty() {
        println!(
            "               export {}/{}",
            st.export_approvals.len(),
            st.quorum
        );
    }
    for d in &st.deployments {
        println!(
            "  deployment   {} {} (by {} on {})",
            d.dir,
            d.status,
            d.by,
            format_utc(d.at)
        );
    }
    if let Some(x) = &r.retired {
        println!(
            "  retired      on {} by {}: {} (signature {})",
            format_utc(x.at),
            x.by,
            x.reason,
            if st.retirement_verified {
                "verified"
            } else {
                "DOES NOT VERIFY"
            }
        );
    }
    if let (Some(by), Some(at)) = (&r.shredded_by, r.shredded_at) {
        println!("  shredded     on {} by {by}", format_utc(at));
    }
    Ok(())
}

// ------------------------------------------------------------------ monitor

/// Run `warden monitor`.
pub fn run_monitor(a: MonitorArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let mut v = open(g)?;
    if a.accept_config {
        let admin = a.admin.as_deref().unwrap_or_default();
        token_for(&mut v, admin)?;
        let key = v.admin_key(admin)?;
        let changed = v.accept_config(&key)?;
        if changed.is_empty() {
            println!("every active deployment already runs under the current warden.toml");
        }
        for d in changed {
            println!(
                "{} warden.toml sha256:{} for {}@{} in {}",
                bold("accepted"),
                d.config_digest,
                d.name,
                d.version,
                d.dir
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let interval = std::time::Duration::from_secs(
        a.interval
            .unwrap_or(v.policy().monitor_interval_secs)
            .max(1),
    );
    // File-system events make detection immediate; the interval re-hash is the backstop.
    let mut watch = if a.once {
        None
    } else {
        match warden_vault::watch::Watch::new() {
            Ok(w) => Some(w),
            Err(e) => {
                ui::print_error(&anyhow::anyhow!(
                    "{e}; falling back to a full re-hash every {} s",
                    interval.as_secs()
                ));
                None
            }
        }
    };
    let config = v.watch_targets()?.1;
    let mut config_seen = std::collections::HashSet::new();
    let mut first = true;
    // What the last wake-up named: `None` = check everything (start, interval, the
    // configuration, lost events); otherwise just the deployments those paths are in.
    let mut only: Option<Vec<PathBuf>> = None;
    loop {
        sweep(&v);
        if let Some(w) = watch.as_mut() {
            let (dirs, config) = v.watch_targets()?;
            if let Err(e) = w.arm(&dirs, config.as_deref()) {
                ui::print_error(&anyhow::anyhow!(
                    "{e}; relying on the {} s re-hash",
                    interval.as_secs()
                ));
            }
        }
        let incidents = match v.monitor_pass("monitor", &mut config_seen, only.as_deref()) {
            Ok(i) => i,
            Err(e) if a.once => return Err(e.into()),
            // A monitor that exits on a transient failure (the audit log busy for too
            // long, a full disk during a restore) protects nothing: report, check
            // everything again shortly.
            Err(e) => {
                ui::print_error(&anyhow::anyhow!("{e}; checking again in 1 s"));
                only = None;
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
        };
        for i in &incidents {
            eprintln!(
                "{}: {}@{} in {}: {}",
                ui::paint(
                    anstyle::Style::new()
                        .bold()
                        .fg_color(Some(anstyle::AnsiColor::Red.into())),
                    "tampering"
                ),
                i.deployment.name,
                i.deployment.version,
                i.deployment.dir,
                i.problems.join("; ")
            );
            match &i.replacement {
                Some(d) => println!(
                    "{}: re-deployed {}@{} into {}",
                    i.action, d.name, d.version, d.dir
                ),
                None if i.action == "alert" => println!(
                    "alert: {} (review it, then: warden monitor --accept-config --as ADMIN)",
                    i.deployment.dir
                ),
                None => println!("{}: {}", i.action, i.deployment.dir),
            }
        }
        if a.once {
            if incidents.is_empty() {
                let n = v
                    .store()
                    .deployments(None)?
                    .iter()
                    .filter(|d| d.status == warden_store::DeploymentStatus::Active)
                    .count();
                println!("ok: {n} active deployment(s) match their manifests");
                return Ok(ExitCode::SUCCESS);
            }
            return Ok(ExitCode::from(1));
        }
        if first {
            first = false;
            let (dirs, _) = v.watch_targets()?;
            println!(
                "watching {} active deployment(s) and warden.toml ({}; full re-hash every {} s)",
                dirs.len(),
                if watch.is_some() {
                    "file-system events"
                } else {
                    "no file-system events"
                },
                interval.as_secs()
            );
        }
        match &watch {
            // A burst of writes is checked once: events are collected for 100 ms after the first.
            Some(w) => {
                only = match w.wait(interval, std::time::Duration::from_millis(100)) {
                    warden_vault::watch::Wake::Changed(paths)
                        if !paths.is_empty()
                            && !paths.iter().any(|p| Some(p) == config.as_ref()) =>
                    {
                        Some(paths)
                    }
                    _ => None,
                };
            }
            None => std::thread::sleep(interval),
        }
    }
}
