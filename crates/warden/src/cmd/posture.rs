//! `warden posture`: the running configuration and host checked against the deployment
//! guidance ("Deploying AI Systems Securely"). Each check cites the guidance section and
//! the CISA Cross-Sector Cybersecurity Performance Goal (CPG) it serves.
//!
//! Posture never changes anything; it reads the Warden home and the host and reports.
//! Exit 0 when nothing fails, 1 when a check fails (a weakened default in force, a key
//! readable by others), 2 when the home cannot be read at all.

use crate::Global;
use crate::ui::{self, ReportFormat};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `warden posture`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Meets the guidance.
    Pass,
    /// Worth knowing; not a weakness by itself.
    Info,
    /// A weaker-than-default choice an operator made on purpose, or a host setting to review.
    Warn,
    /// A weakness that should not be in production.
    Fail,
}

/// One posture check result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id, `WPnnn`.
    pub id: &'static str,
    /// Result.
    pub status: Status,
    /// Guidance section the check serves.
    pub section: &'static str,
    /// CISA CPG reference(s).
    pub cpg: &'static str,
    /// What was found, in words.
    pub detail: String,
}

const ENV_HARDEN: &str =
    "Secure the deployment environment: harden deployment environment configurations";
const PROTECT_WEIGHTS: &str = "Continuously protect the AI system: protect model weights";
const SECURE_APIS: &str = "Continuously protect the AI system: secure exposed APIs";
const LOGGING: &str =
    "Secure AI operation and maintenance: implement robust logging and monitoring";

/// Run `warden posture`.
pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let home = crate::cmd::home_dir(g)?;
    let mut checks = Vec::new();
    home_checks(&home, &mut checks);
    config_checks(&home, &mut checks)?;
    host_checks(&mut checks);
    render(&checks, a.format)?;
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Permission bits of `path` itself (a symbolic link's own).
fn mode(path: &Path) -> Option<u32> {
    permission_bits(std::fs::symlink_metadata(path))
}

/// Permission bits of the file `path` leads to (symbolic links followed).
fn secret_mode(path: &Path) -> Option<u32> {
    permission_bits(std::fs::metadata(path))
}

#[cfg(unix)]
fn permission_bits(m: std::io::Result<std::fs::Metadata>) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    m.ok().map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn permission_bits(_m: std::io::Result<std::fs::Metadata>) -> Option<u32> {
    None
}

fn home_checks(home: &Path, out: &mut Vec<Check>) {
    if !home.exists() {
        out.push(Check {
            id: "WP001",
            status: Status::Info,
            section: ENV_HARDEN,
            cpg: "CPG 2.O",
            detail: format!("{}: no Warden home yet (run `warden init`)", home.display()),
        });
        return;
    }
    match mode(home) {
        Some(m) if m & 0o077 != 0 => out.push(Check {
            id: "WP002",
            status: Status::Fail,
            section: ENV_HARDEN,
            cpg: "CPG 2.E",
            detail: format!(
                "{}: home is accessible to other users (mode {m:04o}; want 0700)",
                home.display()
            ),
        }),
        Some(m) => out.push(Check {
            id: "WP002",
            status: Status::Pass,
            section: ENV_HARDEN,
            cpg: "CPG 2.E",
            detail: format!("{}: home mode {m:04o}", home.display()),
        }),
        None => {}
    }
    let keys = home.join("keys");
    if let Ok(rd) = std::fs::read_dir(&keys) {
        let mut loose: Vec<PathBuf> = Vec::new();
        for e in rd.flatten() {
            if let Some(m) = mode(&e.path())
                && m & 0o077 != 0
            {
                loose.push(e.path());
            }
        }
        let status = if loose.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        let detail = if loose.is_empty() {
            format!("{}: key files readable by their owner only", keys.display())
        } else {
            let names: Vec<String> = loose.iter().map(|p| p.display().to_string()).collect();
            format!("key files readable by others: {}", names.join(", "))
        };
        out.push(Check {
            id: "WP003",
            status,
            section: PROTECT_WEIGHTS,
            cpg: "CPG 2.L",
            detail,
        });
    }
    if let Some((dev_only, detail)) = crate::cmd::vault::key_posture(home) {
        out.push(Check {
            id: "WP005",
            status: if dev_only { Status::Warn } else { Status::Pass },
            section: PROTECT_WEIGHTS,
            cpg: "CPG 2.L",
            detail,
        });
    }
    let admins = home.join("keys").join("admins");
    if admins.is_dir() {
        let mut files: Vec<String> = std::fs::read_dir(&admins)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        out.push(Check {
            id: "WP006",
            status: if files.is_empty() {
                Status::Pass
            } else {
                Status::Warn
            },
            section: PROTECT_WEIGHTS,
            cpg: "CPG 2.L",
            detail: if files.is_empty() {
                "administrator signing keys: none stored as files (on a PKCS#11 token, or none yet)"
                    .to_owned()
            } else {
                format!(
                    "administrator signing keys are files in {} (development only): {}; use `warden admin add NAME --pkcs11` for keys that never leave a token",
                    admins.display(),
                    files.join(", ")
                )
            },
        });
    }
    let audit = home.join("audit").join("checkpoint");
    out.push(if audit.exists() {
        Check {
            id: "WP004",
            status: Status::Pass,
            section: LOGGING,
            cpg: "CPG 2.T, 2.U",
            detail: format!("{}: tamper-evident audit log present", audit.display()),
        }
    } else {
        Check {
            id: "WP004",
            status: Status::Warn,
            section: LOGGING,
            cpg: "CPG 2.T, 2.U",
            detail: format!(
                "{}: no audit log checkpoint; actions are not being recorded",
                audit.display()
            ),
        }
    });
}

const VALIDATE: &str =
    "Continuously protect the AI system: validate the AI system before and during use";

/// Checks of `<home>/warden.toml`: every weaker-than-default choice shows here.
fn config_checks(home: &Path, out: &mut Vec<Check>) -> anyhow::Result<()> {
    if !home.join("warden.toml").exists() {
        return Ok(());
    }
    let vault = crate::cmd::vault::read_policy(home)?;
    let mut push = |id, status, section, cpg, detail: String| {
        out.push(Check {
            id,
            status,
            section,
            cpg,
            detail,
        });
    };
    push(
        "WP202",
        if vault.require_signature {
            Status::Pass
        } else {
            Status::Warn
        },
        VALIDATE,
        "CPG 1.E, 2.Q",
        if vault.require_signature {
            "vault require_signature = true: unsigned models are refused".to_owned()
        } else {
            "vault require_signature = false: models without a verified signature can be imported"
                .to_owned()
        },
    );
    let lax_scan = !matches!(vault.scan_fail_on.as_str(), "info" | "low" | "medium");
    push(
        "WP203",
        if lax_scan { Status::Warn } else { Status::Pass },
        VALIDATE,
        "CPG 1.E",
        format!(
            "vault scan_fail_on = {:?} (default \"medium\")",
            vault.scan_fail_on
        ),
    );
    push(
        "WP205",
        if vault.require_evaluation {
            Status::Pass
        } else {
            Status::Warn
        },
        VALIDATE,
        "CPG 1.E",
        format!("vault require_evaluation = {}", vault.require_evaluation),
    );
    gateway_checks(home, &mut push)?;
    Ok(())
}

const SANITIZE: &str = "Secure AI operation and maintenance: validate and sanitize all input";

/// Screening of the `[gateway]` table (absent `[gateway.screening]`: everything on).
fn gateway_checks(
    home: &Path,
    push: &mut impl FnMut(&'static str, Status, &'static str, &'static str, String),
) -> anyhow::Result<()> {
    let path = home.join("warden.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(gw) = doc.get("gateway").and_then(|g| g.as_table()) else {
        return Ok(());
    };
    let screening: warden_gateway::screening::ScreeningConfig = match gw.get("screening") {
        Some(t) => t
            .clone()
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: [gateway.screening]: {e}", path.display()))?,
        None => Default::default(),
    };
    for (area, weak) in screening.posture() {
        let (id, section, pass) = match area {
            "input" => (
                "WP210",
                SANITIZE,
                "input screening blocks prompt injection on chat, completions and responses",
            ),
            "output" => (
                "WP211",
                SANITIZE,
                "output screening stops secrets and canaries in responses (JSON and SSE)",
            ),
            "monitor" => (
                "WP212",
                LOGGING,
                "behaviour monitor and drift monitor are on",
            ),
            _ => (
                "WP213",
                LOGGING,
                "alerts leave the host (webhook or syslog) and are in the audit log",
            ),
        };
        let status = if weak.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        };
        let detail = if weak.is_empty() {
            pass.to_owned()
        } else {
            weak.join("; ")
        };
        push(id, status, section, "CPG 2.T, 5.A", detail);
    }
    let table = |name: &str| gw.get(name).cloned();
    let audit: warden_gateway::config::AuditConfig = match table("audit") {
        Some(t) => t
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: [gateway.audit]: {e}", path.display()))?,
        None => Default::default(),
    };
    let slow = audit.batch_ms > AUDIT_BATCH_WARN_MS;
    let deep = audit.max_queued > warden_gateway::config::DEFAULT_AUDIT_MAX_QUEUED;
    // Every request in flight holds room for its record. Requests in flight are at most
    // identities x `[gateway.limits] concurrency` and connections x 256 (HTTP/2 streams);
    // neither is known here, so only the clear case is reported: a queue smaller than
    // the connections is filled by one request per connection, and then refuses
    // requests on a healthy disk.
    let conns = gw
        .get("max_connections")
        .and_then(toml::Value::as_integer)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(warden_gateway::config::DEFAULT_MAX_CONNECTIONS);
    let shallow = audit.max_queued < AUDIT_QUEUE_WARN_MIN || audit.max_queued < conns;
    push(
        "WP214",
        if slow || deep || shallow {
            Status::Warn
        } else {
            Status::Pass
        },
        LOGGING,
        "CPG 2.T",
        format!(
            "audit batch_ms = {} (default 5): request records are durable within {} ms; a crash \
             loses at most that window{}; publish_ms = {} (default 1000): readers see them in \
             a signed checkpoint within {} ms, and a writer that dies leaves them in the signed \
             journal for the next one to publish; max_queued = {} (default {}): every request \
             in flight holds room for its record (requests in flight: at most identities x \
             [gateway.limits] concurrency, and max_connections x 256 HTTP/2 streams), at \
             most that many records wait for their commit, and while none is left requests \
             are refused (503) rather than served unaudited{}",
            audit.batch_ms,
            audit.batch_ms,
            if slow {
                format!(" (more than {AUDIT_BATCH_WARN_MS} ms)")
            } else {
                String::new()
            },
            audit.publish_ms,
            audit.publish_ms.max(audit.batch_ms),
            audit.max_queued,
            warden_gateway::config::DEFAULT_AUDIT_MAX_QUEUED,
            if deep {
                " (more than the default: a writer that stalls holds, and a crash can lose, \
                 more records)"
                    .to_owned()
            } else if shallow {
                format!(
                    " (below max_connections = {conns} or {AUDIT_QUEUE_WARN_MIN}: one request \
                     per connection fills it, and requests are refused while the disk is \
                     healthy)"
                )
            } else {
                String::new()
            },
        ),
    );
    let models: Vec<warden_gateway::config::ModelConfig> = match table("models") {
        Some(t) => t
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: [[gateway.models]]: {e}", path.display()))?,
        None => Vec::new(),
    };
    for m in &models {
        use warden_gateway::config::UpstreamTransport as T;
        let (status, detail) = match m.validate_upstream() {
            Ok(T::Tls) => (
                if m.upstream_allow_tls12 {
                    Status::Warn
                } else {
                    Status::Pass
                },
                format!(
                    "model {}: upstream {} over TLS {}, certificate verified against {}{}",
                    m.name,
                    m.upstream,
                    if m.upstream_allow_tls12 {
                        "1.3 or 1.2 (upstream_allow_tls12)"
                    } else {
                        "1.3"
                    },
                    m.upstream_ca
                        .as_ref()
                        .map_or("the system roots".to_owned(), |c| c.display().to_string()),
                    if m.upstream_client_cert.is_some() {
                        ", client certificate (mTLS)"
                    } else {
                        ""
                    }
                ),
            ),
            Ok(T::LoopbackPlaintext) => (
                Status::Pass,
                format!(
                    "model {}: upstream {} is plain http on loopback",
                    m.name, m.upstream
                ),
            ),
            Ok(T::NetworkPlaintext) => (
                Status::Warn,
                format!(
                    "model {}: allow_plaintext_upstream = true: prompts and responses cross the \
                     network to {} unencrypted and unauthenticated",
                    m.name, m.upstream
                ),
            ),
            Err(e) => (Status::Fail, format!("{}: {e}", path.display())),
        };
        push("WP215", status, ENV_HARDEN, "CPG 2.K", detail);
        if m.relay_upstream_server_errors {
            push(
                "WP224",
                Status::Warn,
                SECURE_APIS,
                "CPG 2.K",
                format!(
                    "model {}: relay_upstream_server_errors = true: the messages of the \
                     upstream's server errors (which can describe its insides) reach clients",
                    m.name
                ),
            );
        }
    }
    // Media by URL: the model server fetches what a request names, from its network.
    if gw
        .get("validation")
        .and_then(|v| v.get("allow_media_urls"))
        .and_then(toml::Value::as_bool)
        == Some(true)
    {
        push(
            "WP228",
            Status::Warn,
            SECURE_APIS,
            "CPG 2.K",
            "validation allow_media_urls = true: requests may name media by URL, which the \
             model server fetches from its own network (internal services, cloud metadata, \
             local files) and which is never screened"
                .to_owned(),
        );
    }
    // Connection limits: one address's share of the slots and the idle limit.
    let int = |v: Option<&toml::Value>, default: i64| {
        v.and_then(toml::Value::as_integer).unwrap_or(default)
    };
    use warden_gateway::config as gc;
    let max_conns = int(
        gw.get("max_connections"),
        gc::DEFAULT_MAX_CONNECTIONS as i64,
    );
    let per_ip = int(
        gw.get("max_connections_per_ip"),
        gc::DEFAULT_MAX_CONNECTIONS_PER_IP as i64,
    );
    let idle = int(
        gw.get("timeouts")
            .and_then(|t| t.as_table())
            .and_then(|t| t.get("client_idle_secs")),
        gc::DEFAULT_CLIENT_IDLE_SECS as i64,
    );
    let mut weak = Vec::new();
    if per_ip >= max_conns {
        weak.push(format!(
            "max_connections_per_ip = {per_ip} is not below max_connections = {max_conns}: one \
             client address can hold every connection slot (right only behind a proxy that \
             limits its own clients)"
        ));
    }
    if idle > CLIENT_IDLE_WARN_SECS {
        weak.push(format!(
            "timeouts.client_idle_secs = {idle}: idle clients keep their slots for more than \
             {CLIENT_IDLE_WARN_SECS} s"
        ));
    }
    push(
        "WP217",
        if weak.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        SECURE_APIS,
        "CPG 2.K",
        if weak.is_empty() {
            format!(
                "public connections: at most {max_conns}, {per_ip} per client address, closed \
                 after {idle} s without a request in progress"
            )
        } else {
            weak.join("; ")
        },
    );
    // Secrets the gateway reads from wherever the configuration points (WP003 covers only
    // `<home>/keys`): the listeners' TLS keys, the administrators' TOTP secrets (anyone
    // who reads one computes that administrator's codes) and upstream client keys.
    let mut secrets: Vec<String> = Vec::new();
    let key_of = |t: Option<&toml::Value>| {
        t.and_then(|t| t.get("key"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    secrets.extend(key_of(gw.get("tls")));
    secrets.extend(key_of(gw.get("admin").and_then(|a| a.get("tls"))));
    let items = |v: Option<&toml::Value>, field: &str| -> Vec<String> {
        v.and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                a.get(field)
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    };
    secrets.extend(items(
        gw.get("admin").and_then(|a| a.get("admins")),
        "totp_secret_file",
    ));
    secrets.extend(items(gw.get("models"), "upstream_client_key"));
    if !secrets.is_empty() {
        let loose: Vec<String> = secrets
            .iter()
            .map(|f| home.join(f))
            .filter(|p| secret_mode(p).is_some_and(|m| m & 0o077 != 0))
            .map(|p| p.display().to_string())
            .collect();
        push(
            "WP219",
            if loose.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            },
            SECURE_APIS,
            "CPG 2.L",
            if loose.is_empty() {
                "gateway secret files (TLS keys, TOTP secrets) readable by their owner only"
                    .to_owned()
            } else {
                format!(
                    "gateway secret files readable by others: {} (chmod 600)",
                    loose.join(", ")
                )
            },
        );
    }
    // The listeners' transport: TLS 1.3 only unless the configuration says otherwise.
    let flag = |v: Option<&toml::Value>| v.and_then(toml::Value::as_bool).unwrap_or(false);
    let tls12 = |t: Option<&toml::Value>| flag(t.and_then(|t| t.get("allow_tls12")));
    let admin_tls = gw.get("admin").and_then(|a| a.get("tls"));
    let mut weak = Vec::new();
    if flag(gw.get("insecure_plaintext")) {
        weak.push(
            "insecure_plaintext = true: the public listener serves plain HTTP (loopback only);              API keys and prompts cross it unencrypted"
                .to_owned(),
        );
    } else if tls12(gw.get("tls")) {
        weak.push(
            "[gateway.tls] allow_tls12 = true: the public listener also offers TLS 1.2".to_owned(),
        );
    }
    if tls12(admin_tls) {
        weak.push(
            "[gateway.admin.tls] allow_tls12 = true: the admin listener also offers TLS 1.2"
                .to_owned(),
        );
    }
    push(
        "WP218",
        if weak.is_empty() {
            Status::Pass
        } else {
            Status::Warn
        },
        SECURE_APIS,
        "CPG 2.K",
        if weak.is_empty() {
            "public and admin listeners: TLS 1.3 only".to_owned()
        } else {
            weak.join("; ")
        },
    );
    // Client certificates without revocation lists: a stolen or retired certificate
    // stays good until it expires (only the kill switch or the admins list shuts it out).
    let mut with_ca = Vec::new();
    let mut notes = Vec::new();
    let mut expired_ok = false;
    for (name, t) in [
        ("[gateway.tls]", gw.get("tls")),
        ("[gateway.admin.tls]", admin_tls),
    ] {
        let Some(t) = t.filter(|t| t.get("client_ca").is_some()) else {
            continue;
        };
        with_ca.push(name);
        let crls = t
            .get("client_crl")
            .and_then(toml::Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !crls {
            notes.push(format!(
                "{name}: client certificates are accepted without a CRL (client_crl); a \
                 revoked certificate is refused only once it expires"
            ));
        } else if flag(t.get("client_crl_allow_expired")) {
            expired_ok = true;
            notes.push(format!(
                "{name} client_crl_allow_expired = true: an expired CRL is still trusted, \
                 so certificates revoked after it was issued are accepted"
            ));
        }
    }
    if !with_ca.is_empty() {
        push(
            "WP220",
            if expired_ok {
                Status::Warn
            } else if notes.is_empty() {
                Status::Pass
            } else {
                Status::Info
            },
            SECURE_APIS,
            "CPG 2.D, 2.K",
            if notes.is_empty() {
                format!(
                    "{}: client certificates checked against CRLs; an expired CRL refuses them",
                    with_ca.join(", ")
                )
            } else {
                notes.join("; ")
            },
        );
    }
    // Which certificates name identities: with DNS names, any certificate the client CA
    // issues for a name that is also a registered identity authenticates as it.
    let mut named = Vec::new();
    let mut by_dns = false;
    for (name, t) in [
        ("[gateway.tls]", gw.get("tls")),
        ("[gateway.admin.tls]", admin_tls),
    ] {
        let Some(t) = t.filter(|t| t.get("client_ca").is_some()) else {
            continue;
        };
        match t.get("client_identity").and_then(toml::Value::as_str) {
            Some(v) if v.starts_with("uri:") => named.push(format!(
                "{name}: identities from URI names under {}",
                &v["uri:".len()..]
            )),
            _ => {
                by_dns = true;
                named.push(format!(
                    "{name}: a client certificate's first DNS name is its identity, so any \
                     certificate the client CA issues for a registered identity's name (or \
                     an administrator's) authenticates as it; use a CA that issues \
                     certificates for Warden only, or client_identity = \"uri:PREFIX\" \
                     (for example SPIFFE IDs) to take identities from one namespace"
                ));
            }
        }
    }
    if !named.is_empty() {
        push(
            "WP227",
            if by_dns { Status::Info } else { Status::Pass },
            SECURE_APIS,
            "CPG 2.D, 2.K",
            named.join("; "),
        );
    }
    // When the CRLs say the next one is due: after it, an mTLS listener refuses every
    // client certificate (or, with client_crl_allow_expired, trusts a stale list).
    let mut crl_files = Vec::new();
    for (name, t) in [
        ("[gateway.tls]", gw.get("tls")),
        ("[gateway.admin.tls]", admin_tls),
    ] {
        let Some(t) = t.filter(|t| t.get("client_ca").is_some()) else {
            continue;
        };
        let allow_expired = flag(t.get("client_crl_allow_expired"));
        for f in t
            .get("client_crl")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(toml::Value::as_str)
        {
            let path = home.join(f);
            crl_files.push(CrlFile {
                listener: name,
                next_updates: warden_gateway::tls::crl_next_updates(&path)
                    .map_err(|e| e.to_string()),
                path,
                allow_expired,
            });
        }
    }
    if !crl_files.is_empty() {
        let (status, detail) = crl_due(&crl_files, warden_store::now());
        push("WP225", status, SECURE_APIS, "CPG 2.D, 2.K", detail);
    }
    if let Some(t) = table("oidc") {
        let oidc: warden_gateway::config::OidcConfig = t
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: [gateway.oidc]: {e}", path.display()))?;
        let default = warden_gateway::config::DEFAULT_JWKS_MAX_AGE_SECS;
        let long = oidc.jwks_max_age_secs > default;
        push(
            "WP216",
            if long { Status::Warn } else { Status::Pass },
            SECURE_APIS,
            "CPG 2.D, 2.K",
            format!(
                "oidc jwks_max_age_secs = {} (default {default}): while {} cannot be \
                 fetched, tokens signed with keys the provider has since rotated out are \
                 accepted for up to that long; after it every token is refused{}",
                oidc.jwks_max_age_secs,
                oidc.jwks_url,
                if long {
                    " (longer than the default)"
                } else {
                    ""
                },
            ),
        );
        if oidc.tokens_with_client_certificates {
            push(
                "WP226",
                Status::Warn,
                SECURE_APIS,
                "CPG 2.K",
                "oidc tokens_with_client_certificates = true: a token sent over a connection \
                 with a client certificate is served as the token's identity, whatever \
                 identity the certificate names (the certificate only authenticates the \
                 transport)"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// A CRL file of an mTLS listener and the nextUpdate of each CRL in it (WP225).
struct CrlFile {
    listener: &'static str,
    path: PathBuf,
    /// `client_crl_allow_expired` of the listener.
    allow_expired: bool,
    /// Unix seconds, or why the file could not be read.
    next_updates: Result<Vec<i64>, String>,
}

/// From this long before a CRL's nextUpdate, `warden posture` warns (WP225).
const CRL_DUE_WARN_SECS: i64 = 7 * 86_400;

/// WP225 at `now` (Unix seconds): a warning naming each CRL file whose nextUpdate is
/// within [`CRL_DUE_WARN_SECS`] or past (past and allowed by `client_crl_allow_expired`
/// is only noted: WP220 warns about that setting), or that cannot be read.
fn crl_due(files: &[CrlFile], now: i64) -> (Status, String) {
    let mut status = Status::Pass;
    let mut notes = Vec::new();
    let mut fine = Vec::new();
    for f in files {
        let file = f.path.display();
        let next = match &f.next_updates {
            Ok(n) => n,
            Err(e) => {
                status = status.max(Status::Warn);
                notes.push(format!(
                    "{}: cannot read {file} ({e}); the listener will not start with it",
                    f.listener
                ));
                continue;
            }
        };
        // The CRL due first decides for the file.
        let Some(&due) = next.iter().min() else {
            continue;
        };
        let date = warden_store::format_utc(due);
        if due <= now && f.allow_expired {
            status = status.max(Status::Info);
            notes.push(format!(
                "{} {file}: CRL nextUpdate {date} has passed; still trusted because                  client_crl_allow_expired = true (WP220)",
                f.listener
            ));
        } else if due <= now {
            status = status.max(Status::Warn);
            notes.push(format!(
                "{} {file}: CRL nextUpdate {date} has passed: every client certificate is                  refused until a newer CRL is installed",
                f.listener
            ));
        } else if due - now < CRL_DUE_WARN_SECS {
            status = status.max(Status::Warn);
            notes.push(format!(
                "{} {file}: CRL nextUpdate {date} is within 7 days: install a newer CRL                  before then, or {}",
                f.listener,
                if f.allow_expired {
                    "certificates revoked after it are accepted"
                } else {
                    "every client certificate is refused"
                }
            ));
        } else {
            fine.push(format!("{file} (nextUpdate {date})"));
        }
    }
    if notes.is_empty() {
        (
            status,
            format!("CRLs valid for more than 7 days: {}", fine.join(", ")),
        )
    } else {
        (status, notes.join("; "))
    }
}

/// Above this, `warden posture` warns about the client idle limit.
const CLIENT_IDLE_WARN_SECS: i64 = 300;

/// Below this `[gateway.audit] max_queued` is reported (WP214).
const AUDIT_QUEUE_WARN_MIN: usize = 64;

/// Above this, `warden posture` warns about the audit batching window.
const AUDIT_BATCH_WARN_MS: u64 = 50;

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn host_checks(out: &mut Vec<Check>) {
    if let Some(v) = read_trim("/proc/sys/kernel/randomize_va_space") {
        let status = if v == "2" { Status::Pass } else { Status::Warn };
        out.push(Check {
            id: "WP101",
            status,
            section: ENV_HARDEN,
            cpg: "CPG 2.O",
            detail: format!("kernel.randomize_va_space = {v} (want 2, full ASLR)"),
        });
    }
    if let Some(v) = read_trim("/proc/sys/kernel/yama/ptrace_scope") {
        let status = if v == "0" { Status::Warn } else { Status::Pass };
        out.push(Check {
            id: "WP102",
            status,
            section: PROTECT_WEIGHTS,
            cpg: "CPG 2.E",
            detail: format!(
                "kernel.yama.ptrace_scope = {v} (0 lets any process of the same user read the gateway's memory: keys, weights)"
            ),
        });
    }
    if let Some(status) = read_trim("/proc/self/status") {
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned));
        if let Some(uid) = uid {
            let st = if uid == "0" {
                Status::Warn
            } else {
                Status::Pass
            };
            out.push(Check {
                id: "WP103",
                status: st,
                section: ENV_HARDEN,
                cpg: "CPG 2.E",
                detail: if uid == "0" {
                    "running as root: run Warden under a dedicated unprivileged account".to_owned()
                } else {
                    format!("running as uid {uid}, not root")
                },
            });
        }
    }
}

fn render(checks: &[Check], format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json | ReportFormat::Sarif => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))?
            );
        }
        ReportFormat::Text => {
            for c in checks {
                let (label, style) = match c.status {
                    Status::Pass => ("pass", anstyle::AnsiColor::Green),
                    Status::Info => ("info", anstyle::AnsiColor::Blue),
                    Status::Warn => ("warn", anstyle::AnsiColor::Yellow),
                    Status::Fail => ("FAIL", anstyle::AnsiColor::Red),
                };
                let tag = ui::paint(
                    anstyle::Style::new().bold().fg_color(Some(style.into())),
                    label,
                );
                println!("{tag} {} {}", c.id, c.detail);
                println!("     {} [{}]", c.section, c.cpg);
            }
            let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
            let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
            println!(
                "\n{} checks: {fails} failed, {warns} warnings",
                checks.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn file(name: &str, allow_expired: bool, next: Result<Vec<i64>, String>) -> CrlFile {
        CrlFile {
            listener: "[gateway.tls]",
            path: PathBuf::from(name),
            allow_expired,
            next_updates: next,
        }
    }

    /// WP225: a CRL due within 7 days is a warning naming the file and the date; a past
    /// one too, unless client_crl_allow_expired lets it pass (WP220 warns about that).
    #[test]
    fn crls_due_within_a_week_are_reported_with_file_and_date() {
        // 2026-01-01T00:00:00Z.
        let now = 1_767_225_600;
        let (st, d) = crl_due(&[file("a.crl", false, Ok(vec![now + 30 * DAY]))], now);
        assert_eq!(st, Status::Pass, "{d}");
        assert!(d.contains("a.crl (nextUpdate 2026-01-31T00:00:00Z)"), "{d}");
        // Two CRLs in one file: the first due decides.
        let (st, d) = crl_due(
            &[
                file("a.crl", false, Ok(vec![now + 30 * DAY])),
                file("b.crl", false, Ok(vec![now + 30 * DAY, now + 6 * DAY])),
            ],
            now,
        );
        assert_eq!(st, Status::Warn, "{d}");
        assert!(
            d.contains("b.crl: CRL nextUpdate 2026-01-07T00:00:00Z is within 7 days")
                && !d.contains("a.crl"),
            "{d}"
        );
        assert!(d.contains("every client certificate is refused"), "{d}");
        let (st, d) = crl_due(&[file("c.crl", true, Ok(vec![now + DAY]))], now);
        assert_eq!(st, Status::Warn, "{d}");
        assert!(
            d.contains("certificates revoked after it are accepted"),
            "{d}"
        );
        // Past: refused by the listener (a warning), or allowed (noted; WP220 warns).
        let (st, d) = crl_due(&[file("d.crl", false, Ok(vec![now - DAY]))], now);
        assert_eq!(st, Status::Warn, "{d}");
        assert!(d.contains("2025-12-31T00:00:00Z has passed"), "{d}");
        let (st, d) = crl_due(&[file("d.crl", true, Ok(vec![now - DAY]))], now);
        assert_eq!(st, Status::Info, "{d}");
        assert!(d.contains("(WP220)"), "{d}");
        // Unreadable.
        let (st, d) = crl_due(&[file("e.crl", false, Err("missing".into()))], now);
        assert_eq!(st, Status::Warn, "{d}");
        assert!(d.contains("cannot read e.crl (missing)"), "{d}");
    }
}
