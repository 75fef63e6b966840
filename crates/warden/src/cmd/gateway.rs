//! `warden serve`, `warden keys`, `warden block`, `warden lockdown`, `warden policy`.
//!
//! `serve` reads the `[gateway]` table of `warden.toml`, opens the state database and
//! the audit log in the Warden home and runs `warden_gateway`. `block` and `lockdown`
//! talk to the running gateway's admin listener (mTLS + TOTP); the gateway records the
//! change in the store and the audit log before it answers. `keys` writes the store and
//! the audit log directly (with the gateway stopped, or from another home's replica).

use crate::Global;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use warden_gateway::authz::{ModelAttrs, Policies, RequestContext};
use warden_gateway::config::GatewayConfig;
use warden_gateway::directory::{Identity, StoreDirectory, key_id};
use warden_store::{SqliteStore, Store};
use warden_tlog::event::EventKind;
use warden_tlog::{AuditEvent, Log, LogOptions};

/// Arguments of `warden serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (default: `<home>/warden.toml`); only its `[gateway]` table is read.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve the public listener over plain HTTP (refused unless it is a loopback address).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

/// Subcommands of `warden keys`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key for IDENTITY (created if new); the key is shown once.
    Create {
        /// Identity (user or service name).
        identity: String,
        /// Role (repeatable); policies see them as `Warden::Role` parents.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Team.
        #[arg(long)]
        team: Option<String>,
        /// Clearance level (integer).
        #[arg(long)]
        clearance: Option<i64>,
        /// Identity kind.
        #[arg(long, default_value = "user", value_parser = ["user", "service"])]
        kind: String,
        /// Key lifetime in days (default: no expiry).
        #[arg(long, value_name = "DAYS")]
        expires_days: Option<u32>,
    },
    /// List API keys (ids, never secrets).
    List {
        /// Only this identity's keys.
        identity: Option<String>,
    },
    /// Revoke an API key by id.
    Revoke {
        /// Key id as listed.
        key_id: String,
    },
}

/// How to reach the admin listener.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin listener address (default: `[gateway.admin] listen` from the configuration).
    #[arg(long, env = "WARDEN_ADMIN_ADDR", value_name = "HOST:PORT")]
    pub admin_addr: Option<String>,
    /// Name in the admin listener's certificate.
    #[arg(long, env = "WARDEN_ADMIN_SERVER_NAME", default_value = "localhost")]
    pub admin_server_name: String,
    /// CA certificate (PEM) that signed the admin listener's certificate.
    #[arg(long, env = "WARDEN_ADMIN_CA", value_name = "FILE")]
    pub admin_ca: PathBuf,
    /// Your administrator client certificate (PEM).
    #[arg(long, env = "WARDEN_ADMIN_CERT", value_name = "FILE")]
    pub admin_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "WARDEN_ADMIN_KEY", value_name = "FILE")]
    pub admin_key: PathBuf,
    /// Current TOTP code from your authenticator.
    #[arg(long, env = "WARDEN_TOTP", value_name = "CODE")]
    pub totp: String,
    /// Configuration file (for the default admin address).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `warden block`.
#[derive(Debug, clap::Args)]
pub struct BlockArgs {
    /// Identity to block.
    pub identity: String,
    /// Lift the block instead.
    #[arg(long)]
    pub unblock: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `warden lockdown`.
#[derive(Debug, clap::Args)]
pub struct LockdownArgs {
    /// Lift the lockdown instead.
    #[arg(long)]
    pub lift: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Subcommands of `warden policy`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate the policies against the schema (exit 1 when they do not validate).
    Check {
        /// Policy file (default: the gateway configuration's).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Schema file in Cedar schema syntax (default: the built-in schema).
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Explain the decision for a request described in JSON (exit 0 allow, 1 deny).
    Test {
        /// `{"principal": {"id", "roles", "team", "clearance"}, "action": "chat",
        /// "resource": {"model", "classification", "release"}, "context": {"source_ip",
        /// "mfa", "auth", "time"}}`
        request: PathBuf,
        /// Policy file (default: the gateway configuration's).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Schema file.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn home(g: &Global) -> anyhow::Result<PathBuf> {
    crate::cmd::home_dir(g)
}

/// Read the `[gateway]` table of a configuration file.
fn load_config(path: &Path) -> anyhow::Result<GatewayConfig> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let doc: toml::Table = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let gw = doc
        .get("gateway")
        .cloned()
        .with_context(|| format!("{}: no [gateway] table", path.display()))?;
    let mut cfg: GatewayConfig = gw
        .try_into()
        .with_context(|| format!("{}: [gateway]", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    cfg.resolve_paths(base);
    Ok(cfg)
}

fn config_path(g: &Global, given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match given {
        Some(p) => p.clone(),
        None => home(g)?.join("warden.toml"),
    })
}

fn open_store(home: &Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(home).with_context(|| home.display().to_string())?;
    Ok(Arc::new(SqliteStore::open(&home.join("state.db"))?))
}

fn open_log(home: &Path) -> anyhow::Result<Log> {
    open_log_with(home, LogOptions::default())
}

fn open_log_with(home: &Path, options: LogOptions) -> anyhow::Result<Log> {
    let key = home.join("keys/audit.key");
    if !key.exists() {
        bail!(
            "{}: no audit log key; run `warden init --home {}` first",
            key.display(),
            home.display()
        );
    }
    Log::open_dir(&home.join("audit"), &key, options)
        .map_err(|e| anyhow::anyhow!("{}: audit log: {e}", home.join("audit").display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Run `warden serve`.
pub fn run_serve(a: ServeArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let home = home(g)?;
    let path = config_path(g, a.config.as_ref())?;
    let mut cfg = load_config(&path)?;
    if a.insecure_plaintext {
        cfg.insecure_plaintext = true;
        cfg.tls = None;
    }
    if cfg.screening.alerts.file.is_none() {
        cfg.screening.alerts.file = Some(home.join("alerts.jsonl"));
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let policies = Policies::load(&cfg.policy, cfg.schema.as_deref())?;
    let store = open_store(&home)?;
    // Request records are queued without waiting; gathering them for a few
    // milliseconds turns thousands of durable commits a second into a few hundred.
    let log = open_log_with(
        &home,
        LogOptions {
            max_delay: std::time::Duration::from_millis(cfg.audit.batch_ms),
            // Each commit appends to the journal; tiles and the checkpoint follow.
            publish_interval: std::time::Duration::from_millis(cfg.audit.publish_ms),
            // Bounded: every admitted request reserves room for its record here, and
            // when the writer falls this far behind the gateway refuses requests.
            max_queued: cfg.audit.max_queued,
            // Refusals before admission and malformed requests have room of their own.
            headroom: warden_gateway::audit::headroom(cfg.audit.max_queued),
            // Commits must not preempt request threads (see the setting).
            writer_nice: cfg.audit.writer_nice,
            ..LogOptions::default()
        },
    )?;
    let rt = runtime()?;
    rt.block_on(async move {
        let audit: Arc<dyn warden_gateway::audit::AuditSink> =
            Arc::new(warden_gateway::tlog_sink::TlogSink::new(log));
        let directory = Arc::new(StoreDirectory::new(store));
        let listeners = warden_gateway::server::bind(&cfg).await?;
        let public = listeners.public.local_addr()?;
        let admin = listeners.admin.local_addr()?;
        // Upstream TLS material is read here: name the file the model came from.
        let gw = warden_gateway::server::Gateway::new(cfg, directory, audit, policies, Vec::new())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let shutdown = tokio_util_cancel();
        let s2 = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            s2.cancel();
        });
        tracing::info!(%public, %admin, checks = ?gw.checks(), "warden gateway ready");
        eprintln!("warden: serving on {public} (admin {admin})");
        warden_gateway::server::run(gw, listeners, shutdown).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn tokio_util_cancel() -> warden_gateway::server::Shutdown {
    warden_gateway::server::Shutdown::new()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Run `warden keys`.
pub fn run_keys(c: KeysCommand, g: &Global) -> anyhow::Result<ExitCode> {
    let home = home(g)?;
    let store = open_store(&home)?;
    match c {
        KeysCommand::Create {
            identity,
            roles,
            team,
            clearance,
            kind,
            expires_days,
        } => {
            if identity.is_empty() || identity.len() > 256 || identity.chars().any(char::is_control)
            {
                bail!("{identity:?}: not a valid identity name");
            }
            if warden_gateway::jwt::is_reserved_name(&identity) {
                bail!(
                    "{identity}: names starting with {} are reserved for OIDC token subjects",
                    warden_gateway::jwt::IDENTITY_PREFIX
                );
            }
            let log = open_log(&home)?;
            let now = warden_store::now();
            let existing = store.identity(&identity)?;
            let ident = match existing {
                Some(mut i) => {
                    if i.kind == warden_store::IdentityKind::Admin {
                        bail!("{identity}: is an administrator; administrators get no API keys");
                    }
                    for r in &roles {
                        if !i.attributes.roles.contains(r) {
                            i.attributes.roles.push(r.clone());
                        }
                    }
                    if team.is_some() {
                        i.attributes.team = team.clone();
                    }
                    if let Some(c) = clearance {
                        i.attributes.clearance = Some(c.to_string());
                    }
                    i
                }
                None => warden_store::Identity {
                    id: identity.clone(),
                    kind: warden_store::IdentityKind::parse(&kind)
                        .unwrap_or(warden_store::IdentityKind::User),
                    attributes: warden_store::Attributes {
                        roles: roles.clone(),
                        team: team.clone(),
                        clearance: clearance.map(|c| c.to_string()),
                        extra: Default::default(),
                    },
                    created_at: now,
                },
            };
            store.put_identity(&ident)?;
            let (key, hash) = warden_gateway::keys::generate()?;
            let kid = key_id(&hash);
            // Audit first: a key nobody can account for must not exist.
            log.append_event(&AuditEvent::now(
                &whoami(),
                EventKind::KeyCreated {
                    key_id: kid.clone(),
                    purpose: format!("api:{identity}"),
                    algorithm: "sha256".into(),
                },
            ))
            .map_err(|e| anyhow::anyhow!("audit log: {e}"))?;
            store.insert_api_key(&warden_store::ApiKey {
                key_id: kid.clone(),
                identity: identity.clone(),
                secret_hash: hash.0.to_vec(),
                created_at: now,
                expires_at: expires_days.map(|d| now + i64::from(d) * 86_400),
                revoked_at: None,
            })?;
            eprintln!(
                "created key {kid} for {identity} (roles: {}); it is shown once and stored only as a hash:",
                ident.attributes.roles.join(", ")
            );
            println!("{}", key.reveal());
        }
        KeysCommand::List { identity } => {
            for k in store.api_keys(identity.as_deref())? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= warden_store::now()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}  {}  {}  created {}",
                    k.key_id,
                    k.identity,
                    state,
                    warden_store::format_utc(k.created_at)
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            if store.api_key(&key_id)?.is_none() {
                bail!("{key_id}: no such API key");
            }
            let log = open_log(&home)?;
            log.append_event(&AuditEvent::now(
                &whoami(),
                EventKind::KeyRevoked {
                    key_id: key_id.clone(),
                    reason: "revoked by operator".into(),
                },
            ))
            .map_err(|e| anyhow::anyhow!("audit log: {e}"))?;
            store.revoke_api_key(&key_id, warden_store::now())?;
            eprintln!("revoked {key_id} (running gateways stop accepting it within 2 s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "operator".into())
}

fn admin_call(
    a: &AdminArgs,
    g: &Global,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<String> {
    let addr = match &a.admin_addr {
        Some(x) => x.clone(),
        None => {
            let p = config_path(g, a.config.as_ref())?;
            load_config(&p)?.admin.listen.to_string()
        }
    };
    let client = warden_gateway::admin::AdminClient {
        addr,
        server_name: a.admin_server_name.clone(),
        ca: a.admin_ca.clone(),
        cert: a.admin_cert.clone(),
        key: a.admin_key.clone(),
    };
    let (status, text) = runtime()?.block_on(client.post(path, a.totp.trim(), &body))?;
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        bail!("{}: admin API refused ({status}): {msg}", client.addr);
    }
    Ok(text)
}

/// Run `warden block`.
pub fn run_block(a: BlockArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let path = if a.unblock {
        "/v1/unblock"
    } else {
        "/v1/block"
    };
    admin_call(
        &a.admin,
        g,
        path,
        serde_json::json!({"identity": a.identity}),
    )?;
    eprintln!(
        "{} {}",
        if a.unblock { "unblocked" } else { "blocked" },
        a.identity
    );
    Ok(ExitCode::SUCCESS)
}

/// Run `warden lockdown`.
pub fn run_lockdown(a: LockdownArgs, g: &Global) -> anyhow::Result<ExitCode> {
    admin_call(
        &a.admin,
        g,
        "/v1/lockdown",
        serde_json::json!({"lift": a.lift}),
    )?;
    eprintln!(
        "{}",
        if a.lift {
            "lockdown lifted: public listener reopened"
        } else {
            "lockdown: public listener closed, every public connection dropped"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn policy_files(
    g: &Global,
    policy: Option<PathBuf>,
    schema: Option<PathBuf>,
    config: Option<&PathBuf>,
) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    match policy {
        Some(p) => Ok((p, schema)),
        None => {
            let cfg = load_config(&config_path(g, config)?)?;
            Ok((cfg.policy, schema.or(cfg.schema)))
        }
    }
}

/// Run `warden policy`.
pub fn run_policy(c: PolicyCommand, g: &Global) -> anyhow::Result<ExitCode> {
    match c {
        PolicyCommand::Check {
            policy,
            schema,
            config,
        } => {
            let (p, s) = policy_files(g, policy, schema, config.as_ref())?;
            match Policies::load(&p, s.as_deref()) {
                Ok(ps) => {
                    println!(
                        "{}: {} policies validate against the schema",
                        p.display(),
                        ps.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ warden_gateway::Error::Policy { .. }) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        PolicyCommand::Test {
            request,
            policy,
            schema,
            config,
        } => {
            let (p, s) = policy_files(g, policy, schema, config.as_ref())?;
            let ps = Policies::load(&p, s.as_deref())?;
            let text =
                std::fs::read_to_string(&request).with_context(|| request.display().to_string())?;
            let r: TestRequest = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a policy test request", request.display()))?;
            let who = Identity {
                name: r.principal.id,
                roles: r.principal.roles,
                team: r.principal.team,
                clearance: r.principal.clearance,
            };
            let model = ModelAttrs {
                name: r.resource.model,
                classification: r.resource.classification,
                release: r.resource.release,
            };
            let ip = r
                .context
                .source_ip
                .parse()
                .with_context(|| format!("{}: context.source_ip", request.display()))?;
            let auth: &'static str = match r.context.auth.as_str() {
                "jwt" => "jwt",
                "mtls" => "mtls",
                _ => "key",
            };
            // The gateway names token identities jwt:<sub>; a test that mixes the
            // namespaces would explain a decision the gateway never makes.
            let prefix = warden_gateway::jwt::IDENTITY_PREFIX;
            let jwt_name = if auth == "jwt" {
                // Exactly as the gateway writes it (lower-case prefix).
                who.name.starts_with(prefix)
            } else {
                // Any case of the prefix is reserved for token identities.
                warden_gateway::jwt::is_reserved_name(&who.name)
            };
            if (auth == "jwt") != jwt_name {
                bail!(
                    "{}: principal.id {:?}: {}",
                    request.display(),
                    who.name,
                    if auth == "jwt" {
                        format!("identities from OIDC tokens are named {prefix}<sub>")
                    } else {
                        format!("names starting with {prefix} belong to OIDC tokens (auth \"jwt\")")
                    }
                );
            }
            let t = r
                .context
                .time
                .unwrap_or_else(|| warden_store::now().max(0) as u64);
            let ctx = RequestContext::at(t, ip, r.context.mfa, auth);
            let d = ps.decide(&who, &r.action, &model, &ctx);
            println!("decision: {}", if d.allow { "ALLOW" } else { "DENY" });
            if d.policies.is_empty() && d.errors.is_empty() {
                println!("reason: no policy permits this request (default deny)");
            }
            for id in &d.policies {
                println!("determined by policy {id}:");
                if let Some(src) = ps.source(id) {
                    for line in src.lines() {
                        println!("    {line}");
                    }
                }
            }
            for e in &d.errors {
                println!("error: {e}");
            }
            println!(
                "context: hour {} weekday {} source_ip {} mfa {} auth {}",
                ctx.hour, ctx.weekday, ctx.source_ip, ctx.mfa, ctx.auth
            );
            Ok(if d.allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    principal: TestPrincipal,
    action: String,
    resource: TestResource,
    #[serde(default)]
    context: TestContext,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestPrincipal {
    id: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    team: String,
    #[serde(default)]
    clearance: i64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestResource {
    model: String,
    #[serde(default)]
    classification: i64,
    #[serde(default)]
    release: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestContext {
    #[serde(default = "loopback")]
    source_ip: String,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    time: Option<u64>,
}

impl Default for TestContext {
    fn default() -> Self {
        TestContext {
            source_ip: loopback(),
            mfa: false,
            auth: "key".into(),
            time: None,
        }
    }
}

fn loopback() -> String {
    "127.0.0.1".into()
}
