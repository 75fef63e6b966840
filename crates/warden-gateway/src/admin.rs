//! The admin listener: TLS with client certificates (mTLS) always; health and readiness
//! without a certificate; everything else needs an administrator's certificate, and
//! mutating calls also a fresh TOTP code (`x-warden-totp`, RFC 6238, no reuse, a lockout
//! after repeated failures: [`SecondFactor`]); every refused mutating call is audited.
//! Users' API keys and JWTs are not accepted here: administrators are a distinct role.
//! Also the small HTTPS client the CLI uses to call it, and the JWKS fetcher.

use crate::audit::{AuditRecord, now_ms};
use crate::server::{Gateway, GwBody, full};
use crate::{Error, totp};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Admin listener state.
#[derive(Debug)]
pub struct AdminState {
    gw: Arc<Gateway>,
    admins: HashMap<String, Vec<u8>>,
    factor: SecondFactor,
}

/// Consecutive refused second factors (missing, wrong or replayed TOTP codes) after which
/// an administrator is locked out of mutating calls.
pub const MAX_TOTP_FAILURES: u32 = 5;
/// How long that lockout lasts, milliseconds. With 3 accepted codes (±1 step) of 10^6 per
/// guess, this bounds an attacker holding an administrator certificate to 5 guesses per
/// 5 minutes.
pub const TOTP_LOCKOUT_MS: u64 = 5 * 60 * 1000;

/// Why a mutating call's second factor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorRefusal {
    /// No `x-warden-totp` header (or an empty one).
    Missing {
        /// Consecutive failures so far, this one included.
        failures: u32,
    },
    /// Not a code for the current time step ±1.
    Wrong {
        /// Consecutive failures so far, this one included.
        failures: u32,
    },
    /// A code of a time step this administrator already used.
    Replayed {
        /// Consecutive failures so far, this one included.
        failures: u32,
    },
    /// Locked out after [`MAX_TOTP_FAILURES`] consecutive failures; the code was not
    /// even looked at.
    LockedOut {
        /// Seconds until the lockout ends (at least 1).
        retry_after_secs: u64,
    },
    /// The state lock was poisoned (a panic elsewhere): refused, fail closed.
    Unavailable,
}

impl FactorRefusal {
    /// HTTP status: 429 while locked out, 503 when the state is unusable, else 401.
    pub fn status(self) -> StatusCode {
        match self {
            FactorRefusal::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
            FactorRefusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The reason, for the client and the audit record (never contains the code).
    pub fn reason(self) -> String {
        let count = |what: &str, failures: u32| {
            if failures >= MAX_TOTP_FAILURES {
                format!(
                    "{what}; {failures} consecutive failures: mutating calls are locked out for {} s",
                    TOTP_LOCKOUT_MS / 1000
                )
            } else {
                format!(
                    "{what} ({failures} of {MAX_TOTP_FAILURES} consecutive failures before a lockout)"
                )
            }
        };
        match self {
            FactorRefusal::Missing { failures } => {
                count("a valid TOTP code (x-warden-totp) is required", failures)
            }
            FactorRefusal::Wrong { failures } => count("wrong TOTP code", failures),
            FactorRefusal::Replayed { failures } => count("TOTP code already used", failures),
            FactorRefusal::LockedOut { retry_after_secs } => format!(
                "locked out after {MAX_TOTP_FAILURES} consecutive wrong TOTP codes: mutating \
                 calls are refused for another {retry_after_secs} s, even with a valid code"
            ),
            FactorRefusal::Unavailable => "second-factor state unavailable".to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct FactorState {
    /// Last time step accepted (codes of this step or earlier are replays).
    last_step: Option<u64>,
    /// Consecutive refusals.
    failures: u32,
    /// Unix milliseconds until which mutating calls are refused (0: not locked).
    locked_until_ms: u64,
}

/// The second factor of mutating admin calls: RFC 6238 codes (±1 step), each time step
/// usable once per administrator, and a lockout of [`TOTP_LOCKOUT_MS`] after
/// [`MAX_TOTP_FAILURES`] consecutive refusals (reset by an accepted code). The state is
/// in memory, per gateway process; the check, the verification and the update happen
/// under one lock, so concurrent guesses cannot overrun the limit.
#[derive(Debug, Default)]
pub struct SecondFactor {
    state: Mutex<HashMap<String, FactorState>>,
}

impl SecondFactor {
    /// Check `code` for `admin` (whose TOTP secret is `secret`) at `now_ms`.
    pub fn check(
        &self,
        admin: &str,
        secret: &[u8],
        code: &str,
        now_ms: u64,
    ) -> Result<(), FactorRefusal> {
        let Ok(mut all) = self.state.lock() else {
            return Err(FactorRefusal::Unavailable);
        };
        let s = all.entry(admin.to_owned()).or_default();
        if now_ms < s.locked_until_ms {
            return Err(FactorRefusal::LockedOut {
                retry_after_secs: (s.locked_until_ms - now_ms).div_ceil(1000).max(1),
            });
        }
        if s.locked_until_ms != 0 {
            // The lockout has run out: a fresh series of attempts.
            s.locked_until_ms = 0;
            s.failures = 0;
        }
        let refusal: fn(u32) -> FactorRefusal = if code.is_empty() {
            |failures| FactorRefusal::Missing { failures }
        } else {
            match totp::verify(secret, code, now_ms / 1000) {
                None => |failures| FactorRefusal::Wrong { failures },
                Some(step) if s.last_step.is_some_and(|l| l >= step) => {
                    |failures| FactorRefusal::Replayed { failures }
                }
                Some(step) => {
                    s.last_step = Some(step);
                    s.failures = 0;
                    return Ok(());
                }
            }
        };
        s.failures = s.failures.saturating_add(1);
        if s.failures >= MAX_TOTP_FAILURES {
            s.locked_until_ms = now_ms.saturating_add(TOTP_LOCKOUT_MS);
        }
        Err(refusal(s.failures))
    }
}

impl AdminState {
    /// Load the administrators' TOTP secrets.
    pub fn new(gw: Arc<Gateway>) -> Result<AdminState, Error> {
        let mut admins = HashMap::new();
        for a in &gw.config.admin.admins {
            let text =
                std::fs::read_to_string(&a.totp_secret_file).map_err(|cause| Error::Read {
                    path: a.totp_secret_file.display().to_string(),
                    cause,
                })?;
            let secret = totp::base32_decode(text.trim())
                .filter(|s| s.len() >= 16)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{}: not a base32 TOTP secret of at least 128 bits",
                        a.totp_secret_file.display()
                    ))
                })?;
            admins.insert(a.name.clone(), secret);
        }
        Ok(AdminState {
            gw,
            admins,
            factor: SecondFactor::default(),
        })
    }
}

fn reply(status: StatusCode, v: serde_json::Value) -> Response<GwBody> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn err(status: StatusCode, msg: &str) -> Response<GwBody> {
    reply(status, serde_json::json!({"error": msg}))
}

/// Longest life of an admin connection without an administrator's certificate: it can
/// only ask `/healthz` or `/readyz` (milliseconds) or be refused, so it must not hold a
/// descriptor for ever (nothing bounded it after the TLS handshake, so anyone able to
/// reach the listener could pile up idle connections and exhaust the process's file
/// descriptors, the public listener's included). The same bound as the handshake.
pub const ANONYMOUS_CONNECTION_SECS: u64 = 10;

/// Serve the admin listener until `shutdown`.
pub async fn serve(
    state: Arc<AdminState>,
    listener: TcpListener,
    tls: Arc<crate::tls::ListenerTls>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors (EMFILE) and the like stay until something
                    // closes: retrying at once would spin a core. As the public listener.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let st = Arc::clone(&state);
        let tls = Arc::clone(&tls);
        tokio::spawn(async move {
            let (acc, epoch) = tls.acceptor();
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await
            else {
                return;
            };
            let certs = s.get_ref().1.peer_certificates();
            let who = tls.client_identity(certs);
            // Cancelled when a reloaded client CA/CRL configuration refuses the certificate.
            let token = CancellationToken::new();
            let _tracked = match tls.track(certs, epoch, peer, &token) {
                Ok(t) => t,
                Err(u) => {
                    crate::server::report_untrusted(&st.gw, "admin", &u);
                    return;
                }
            };
            let admin = who.as_ref().is_some_and(|w| st.admins.contains_key(w));
            let svc = hyper::service::service_fn(move |req| {
                let st = Arc::clone(&st);
                let who = who.clone();
                async move { Ok::<_, std::convert::Infallible>(route(st, peer, who, req).await) }
            });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(15));
            // Admin answers are small: 32 streams and 16 KiB headers are plenty.
            crate::server::h2_limits(b.http2().max_header_list_size(16 * 1024))
                .max_concurrent_streams(32);
            let conn = b.serve_connection(TokioIo::new(s), svc);
            let served = async move {
                if admin {
                    let _ = conn.await;
                } else {
                    let life = Duration::from_secs(ANONYMOUS_CONNECTION_SECS);
                    let _ = tokio::time::timeout(life, conn).await;
                }
            };
            tokio::select! {
                () = served => {}
                () = token.cancelled() => {
                    tracing::info!(%peer, "admin connection closed: its client certificate no longer verifies");
                }
            }
        });
    }
}

async fn route(
    st: Arc<AdminState>,
    peer: SocketAddr,
    who: Option<String>,
    req: Request<Incoming>,
) -> Response<GwBody> {
    let gw = &st.gw;
    let path = req.uri().path().to_owned();
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/healthz") => return reply(StatusCode::OK, serde_json::json!({"status": "ok"})),
        ("GET", "/readyz") => {
            // Ready = may be sent traffic: not while the audit log fails (every request
            // would be refused) nor during lockdown (the public listener is closed).
            let audit = gw.audit.healthy();
            let lockdown = gw.kill.locked_down();
            let ok = audit && !lockdown;
            return reply(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                serde_json::json!({"ready": ok, "audit": audit, "lockdown": lockdown}),
            );
        }
        _ => {}
    }
    // Everything else: an administrator's certificate.
    let Some(admin) = who.as_ref().filter(|w| st.admins.contains_key(*w)).cloned() else {
        let msg = "administrator client certificate required";
        if req.method() != http::Method::GET {
            // A refused mutating call leaves a trace, whoever made it.
            audit_refusal(
                gw,
                peer,
                &req,
                who.map(|w| format!("mtls:{w}")),
                StatusCode::UNAUTHORIZED,
                msg,
            );
        }
        return err(StatusCode::UNAUTHORIZED, msg);
    };
    if req.method() == http::Method::GET {
        return match path.as_str() {
            "/metrics" => {
                let mut r = Response::new(full(Bytes::from(gw.metrics.render())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                r
            }
            "/v1/state" => {
                let blocked = gw
                    .directory
                    .blocked()
                    .map(|b| b.into_iter().collect::<Vec<_>>());
                match blocked {
                    Ok(b) => reply(
                        StatusCode::OK,
                        serde_json::json!({"blocked": b, "lockdown": gw.kill.locked_down()}),
                    ),
                    Err(_) => err(StatusCode::SERVICE_UNAVAILABLE, "state unavailable"),
                }
            }
            _ => err(StatusCode::NOT_FOUND, "no such admin endpoint"),
        };
    }
    if req.method() != http::Method::POST {
        // An administrator trying PUT, DELETE or PATCH on the admin API is a refused
        // call like any other: it leaves a trace.
        let msg = "method not allowed";
        audit_refusal(
            gw,
            peer,
            &req,
            Some(format!("admin:{admin}")),
            StatusCode::METHOD_NOT_ALLOWED,
            msg,
        );
        return err(StatusCode::METHOD_NOT_ALLOWED, msg);
    }
    // Second factor for every mutating call.
    let code = req
        .headers()
        .get("x-warden-totp")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(secret) = st.admins.get(&admin) else {
        return err(StatusCode::UNAUTHORIZED, "unknown administrator");
    };
    if let Err(refusal) = st.factor.check(&admin, secret, &code, now_ms()) {
        let (status, reason) = (refusal.status(), refusal.reason());
        tracing::warn!(admin = %admin, %status, reason = %reason, "admin call refused");
        audit_refusal(
            gw,
            peer,
            &req,
            Some(format!("admin:{admin}")),
            status,
            &reason,
        );
        let mut r = err(status, &reason);
        if let FactorRefusal::LockedOut { retry_after_secs } = refusal {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        return r;
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return err(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let j: serde_json::Value = if body.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(j) => j,
            Err(_) => return err(StatusCode::BAD_REQUEST, "body is not JSON"),
        }
    };
    let rec = |kind: &str, identity: Option<String>, reason: String| AuditRecord {
        ts_ms: now_ms(),
        kind: kind.to_owned(),
        identity,
        auth: Some(format!("admin:{admin}")),
        source_ip: peer.ip().to_string(),
        endpoint: format!("POST {path}"),
        decision: "allow".into(),
        reason,
        status: 200,
        outcome: "complete".into(),
        ..AuditRecord::default()
    };
    match path.as_str() {
        "/v1/block" | "/v1/unblock" => {
            let Some(id) = j
                .get("identity")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty() && s.len() <= 256)
            else {
                return err(StatusCode::BAD_REQUEST, "identity: required string");
            };
            let block = path == "/v1/block";
            let kind = if block { "block" } else { "unblock" };
            let audited = || async {
                gw.audit
                    .append_durable(rec(kind, Some(id.to_owned()), format!("{kind} by {admin}")))
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "audit append failed");
                        err(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable")
                    })
            };
            // A block: effective at once in this process, then durable in the store and
            // the log (it stays engaged if either fails). An unblock loosens: it is
            // audited first, so one the log cannot record does not happen (written to
            // the store first, the state sync would apply it unaudited).
            if block {
                gw.kill.block(id);
            } else if let Err(r) = audited().await {
                return r;
            }
            if gw.directory.set_blocked(id, block, &admin).is_err() {
                return err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state could not be written",
                );
            }
            if block {
                if let Err(r) = audited().await {
                    return r;
                }
            } else {
                gw.kill.unblock(id);
            }
            reply(StatusCode::OK, serde_json::json!({kind: id}))
        }
        "/v1/lockdown" => {
            let lift = j.get("lift").and_then(|v| v.as_bool()).unwrap_or(false);
            let kind = if lift { "lockdown-lift" } else { "lockdown" };
            let audited = || async {
                gw.audit
                    .append_durable(rec(kind, None, format!("{kind} by {admin}")))
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "audit append failed");
                        err(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable")
                    })
            };
            // As for blocks: lockdown engages at once, a lift is audited before the
            // store is written (else the state sync would lift it unaudited).
            if lift {
                if let Err(r) = audited().await {
                    return r;
                }
            } else {
                gw.kill.set_lockdown(true);
            }
            if gw.directory.set_lockdown(!lift, &admin).is_err() {
                return err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state could not be written",
                );
            }
            if lift {
                gw.kill.set_lockdown(false);
            } else if let Err(r) = audited().await {
                return r;
            }
            reply(StatusCode::OK, serde_json::json!({"lockdown": !lift}))
        }
        "/v1/policy/reload" => {
            match crate::authz::Policies::load(&gw.config.policy, gw.config.schema.as_deref()) {
                Ok(p) => {
                    let n = p.len();
                    if let Err(e) = gw
                        .audit
                        .append_durable(rec(
                            "policy-reload",
                            None,
                            format!("{n} policies by {admin}"),
                        ))
                        .await
                    {
                        tracing::error!(error = %e, "audit append failed");
                        return err(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable");
                    }
                    gw.set_policies(p);
                    reply(StatusCode::OK, serde_json::json!({"policies": n}))
                }
                Err(e) => err(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        "/v1/keys" => {
            let grant = match key_grant(&j) {
                Ok(g) => g,
                Err(why) => return err(StatusCode::BAD_REQUEST, &why),
            };
            let (key, hash) = match crate::keys::generate() {
                Ok(k) => k,
                Err(_) => return err(StatusCode::SERVICE_UNAVAILABLE, "no randomness"),
            };
            let kid = crate::directory::key_id(&hash);
            if st.admins.contains_key(&grant.identity) {
                return err(
                    StatusCode::BAD_REQUEST,
                    "administrators get no API keys (a distinct role)",
                );
            }
            match gw.directory.create_key(&grant, &hash) {
                Ok(()) => {}
                Err(Error::Refused(why)) => return err(StatusCode::BAD_REQUEST, &why),
                Err(e) => {
                    tracing::error!(error = %e, "key could not be stored");
                    return err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state could not be written",
                    );
                }
            }
            // The key is shown only once its creation is durable in the audit log; if
            // that fails it is revoked again, so no usable key goes unaccounted for.
            let r = AuditRecord {
                key_id: Some(kid.clone()),
                ..rec(
                    "key-created",
                    Some(grant.identity.clone()),
                    format!("key {kid} for {} by {admin}", grant.identity),
                )
            };
            if let Err(e) = gw.audit.append_durable(r).await {
                tracing::error!(error = %e, "audit append failed; revoking the new key");
                let _ = gw.directory.revoke_key(&kid);
                return err(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable");
            }
            let mut resp = reply(
                StatusCode::OK,
                serde_json::json!({"key_id": kid, "identity": grant.identity,
                    "expires_at": grant.expires_at, "key": key.reveal()}),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        p if p.starts_with("/v1/keys/") && p.ends_with("/revoke") => {
            let kid = &p["/v1/keys/".len()..p.len() - "/revoke".len()];
            if kid.len() != 16 || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
                return err(StatusCode::BAD_REQUEST, "key id: 16 hex digits, as listed");
            }
            // Effective first (the gateway's key cache forgets it within 2 s), then audited.
            let identity = match gw.directory.revoke_key(kid) {
                Ok(Some(i)) => i,
                Ok(None) => return err(StatusCode::NOT_FOUND, "no such API key"),
                Err(e) => {
                    tracing::error!(error = %e, "key could not be revoked");
                    return err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state could not be written",
                    );
                }
            };
            let r = AuditRecord {
                key_id: Some(kid.to_owned()),
                ..rec(
                    "key-revoked",
                    Some(identity.clone()),
                    format!("revoked by {admin}"),
                )
            };
            if let Err(e) = gw.audit.append_durable(r).await {
                tracing::error!(error = %e, "audit append failed");
                return err(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable");
            }
            reply(
                StatusCode::OK,
                serde_json::json!({"revoked": kid, "identity": identity}),
            )
        }
        _ => err(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

/// Record a refused mutating admin call. Queued like a request record (no wait for
/// durability: a refusal changes no state); a sink that cannot take it is logged, and
/// the refusal stands.
fn audit_refusal(
    gw: &Gateway,
    peer: SocketAddr,
    req: &Request<Incoming>,
    auth: Option<String>,
    status: StatusCode,
    reason: &str,
) {
    let path = req.uri().path();
    let rec = AuditRecord {
        ts_ms: now_ms(),
        kind: "admin-denied".into(),
        auth,
        source_ip: peer.ip().to_string(),
        // The path as recorded elsewhere: at most 128 characters.
        endpoint: format!(
            "{} {}",
            req.method(),
            path.chars().take(128).collect::<String>()
        ),
        decision: "deny".into(),
        reason: format!("admin: {reason}"),
        status: status.as_u16(),
        outcome: "refused".into(),
        ..AuditRecord::default()
    };
    if let Err(e) = gw.audit.submit(rec) {
        tracing::error!(error = %e, "audit record of a refused admin call could not be queued");
    }
}

/// The body of `POST /v1/keys`: `identity` (required), `roles`, `team`, `clearance`,
/// `expires_days`; nothing else.
fn key_grant(j: &serde_json::Value) -> Result<crate::directory::KeyGrant, String> {
    let name_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    let o = j.as_object().ok_or("body: a JSON object")?;
    if let Some(k) = o
        .keys()
        .find(|k| !["identity", "roles", "team", "clearance", "expires_days"].contains(&k.as_str()))
    {
        return Err(format!("unknown field {k:?}"));
    }
    let identity = o
        .get("identity")
        .and_then(|v| v.as_str())
        .filter(|s| name_ok(s))
        .ok_or("identity: required name (1 to 256 characters, no control characters)")?
        .to_owned();
    if crate::jwt::is_reserved_name(&identity) {
        return Err(format!(
            "identity: names starting with {} are reserved for OIDC token subjects",
            crate::jwt::IDENTITY_PREFIX
        ));
    }
    let roles = match o.get("roles") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or("roles: an array of names")?
            .iter()
            .map(|r| r.as_str().filter(|s| name_ok(s)).map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("roles: an array of names")?,
    };
    let team = match o.get("team") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .filter(|s| name_ok(s))
                .ok_or("team: a name")?
                .to_owned(),
        ),
    };
    let clearance = match o.get("clearance") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or("clearance: an integer")?),
    };
    let expires_at = match o.get("expires_days") {
        None => None,
        Some(v) => {
            let d = v
                .as_u64()
                .filter(|d| (1..=3650).contains(d))
                .ok_or("expires_days: 1 to 3650")?;
            Some((now_ms() / 1000) as i64 + d as i64 * 86_400)
        }
    };
    Ok(crate::directory::KeyGrant {
        identity,
        roles,
        team,
        clearance,
        expires_at,
    })
}

pub(crate) fn roots(ca: &Path) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::load_certs(ca)? {
        roots.add(c).map_err(|e| Error::Tls {
            path: ca.display().to_string(),
            cause: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Client credentials for the admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `host:port`.
    pub addr: String,
    /// Name in the server certificate.
    pub server_name: String,
    /// CA that signed the admin server certificate.
    pub ca: std::path::PathBuf,
    /// Administrator certificate.
    pub cert: std::path::PathBuf,
    /// Administrator key.
    pub key: std::path::PathBuf,
}

impl AdminClient {
    /// POST `body` to `path` with a TOTP code; returns status and body.
    pub async fn post(
        &self,
        path: &str,
        totp_code: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, String), Error> {
        let tls_err = |cause: String| Error::Tls {
            path: self.addr.clone(),
            cause,
        };
        let chain = crate::tls::load_certs(&self.cert)?;
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_file(&self.key).map_err(|e| Error::Tls {
                path: self.key.display().to_string(),
                cause: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots(&self.ca)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_err(e.to_string()))?;
        let req = Request::builder()
            .method(http::Method::POST)
            .uri(path)
            .header(header::HOST, self.server_name.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-warden-totp", totp_code)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| tls_err(e.to_string()))?;
        send(&self.addr, &self.server_name, Some(Arc::new(cfg)), req).await
    }
}

use rustls_pki_types::pem::PemObject as _;

pub(crate) async fn send(
    addr: &str,
    server_name: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    req: Request<Full<Bytes>>,
) -> Result<(u16, String), Error> {
    let e = |cause: String| Error::Tls {
        path: addr.to_owned(),
        cause,
    };
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| e("connect timed out".into()))?
        .map_err(|x| e(format!("cannot connect: {x}")))?;
    let fut = async {
        let resp = match tls {
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                    .map_err(|x| e(x.to_string()))?;
                let s = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|x| e(format!("TLS: {x}")))?;
                let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                    .await
                    .map_err(|x| e(x.to_string()))?;
                tokio::spawn(c);
                s.send_request(req).await.map_err(|x| e(x.to_string()))?
            }
            None => {
                let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|x| e(x.to_string()))?;
                tokio::spawn(c);
                s.send_request(req).await.map_err(|x| e(x.to_string()))?
            }
        };
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|x| e(x.to_string()))?
            .to_bytes();
        Ok::<_, Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| e("timed out".into()))?
}

/// GET a document (the JWKS): `https://` verified against `ca` (required), or `http://`
/// to a loopback address only.
pub async fn http_get(url: &str, ca: Option<&Path>) -> Result<Vec<u8>, Error> {
    let je = |cause: String| Error::Jwks {
        url: url.to_owned(),
        cause,
    };
    let uri: http::Uri = url.parse().map_err(|_| je("not a URL".into()))?;
    let host = uri.host().ok_or_else(|| je("no host".into()))?.to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(je("scheme must be https".into())),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addr = format!("{host}:{port}");
    let tls = if https {
        let ca = ca.ok_or_else(|| je("jwks_ca is required for https".into()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Some(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|x| je(x.to_string()))?
                .with_root_certificates(roots(ca)?)
                .with_no_client_auth(),
        ))
    } else {
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|i| i.is_loopback());
        if !loopback {
            return Err(je("plain http is allowed only for loopback".into()));
        }
        None
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = Request::builder()
        .uri(path)
        .header(header::HOST, host.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|x| je(x.to_string()))?;
    let (status, body) = send(&addr, &host, tls, req)
        .await
        .map_err(|x| je(x.to_string()))?;
    if status != 200 {
        return Err(je(format!("HTTP {status}")));
    }
    Ok(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"12345678901234567890";
    const T0: u64 = 1_700_000_000_000;

    fn code_at(ms: u64) -> String {
        format!(
            "{:06}",
            totp::totp(SECRET, ms / 1000, 30, 6, totp::Algorithm::Sha1)
        )
    }

    /// A code valid for no step within ±2 of `ms`.
    fn wrong_at(ms: u64) -> String {
        let valid: Vec<String> = (0..5).map(|i| code_at(ms + i * 30_000 - 60_000)).collect();
        (0..10u32)
            .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    #[test]
    fn five_refused_codes_lock_an_administrator_out_even_with_a_valid_code() {
        let f = SecondFactor::default();
        let bad = wrong_at(T0);
        for i in 1..=4 {
            assert_eq!(
                f.check("alice", SECRET, &bad, T0 + i),
                Err(FactorRefusal::Wrong { failures: i as u32 })
            );
        }
        // The fifth may be a missing code: it counts too, and starts the lockout.
        assert_eq!(
            f.check("alice", SECRET, "", T0 + 5),
            Err(FactorRefusal::Missing { failures: 5 })
        );
        assert!(
            FactorRefusal::Missing { failures: 5 }
                .reason()
                .contains("locked out for 300 s")
        );
        // Locked: a valid code is refused without being looked at, with the time left
        // (299.005 s, rounded up).
        let r = f.check("alice", SECRET, &code_at(T0 + 1000), T0 + 1000);
        assert_eq!(
            r,
            Err(FactorRefusal::LockedOut {
                retry_after_secs: 300
            })
        );
        assert_eq!(r.unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
        let late = T0 + 5 + TOTP_LOCKOUT_MS - 1;
        assert_eq!(
            f.check("alice", SECRET, &code_at(late), late),
            Err(FactorRefusal::LockedOut {
                retry_after_secs: 1
            })
        );
        // Another administrator is not affected.
        assert_eq!(f.check("bob", SECRET, &code_at(T0), T0), Ok(()));
        // After the lockout a valid code works, and the count starts again.
        let after = T0 + 5 + TOTP_LOCKOUT_MS;
        assert_eq!(f.check("alice", SECRET, &code_at(after), after), Ok(()));
        assert_eq!(
            f.check("alice", SECRET, &wrong_at(after), after + 1),
            Err(FactorRefusal::Wrong { failures: 1 })
        );
    }

    #[test]
    fn an_accepted_code_resets_the_count_and_cannot_be_replayed() {
        let f = SecondFactor::default();
        let bad = wrong_at(T0);
        for i in 1..=4 {
            assert!(f.check("alice", SECRET, &bad, T0 + i).is_err());
        }
        assert_eq!(f.check("alice", SECRET, &code_at(T0), T0 + 10), Ok(()));
        // Replayed within its window: refused, and counted.
        assert_eq!(
            f.check("alice", SECRET, &code_at(T0), T0 + 20),
            Err(FactorRefusal::Replayed { failures: 1 })
        );
        // So is the code of an earlier step that is still inside the ±1 window.
        assert_eq!(
            f.check("alice", SECRET, &code_at(T0 - 30_000), T0 + 30),
            Err(FactorRefusal::Replayed { failures: 2 })
        );
        for i in 3..=4 {
            assert_eq!(
                f.check("alice", SECRET, &bad, T0 + 40),
                Err(FactorRefusal::Wrong { failures: i })
            );
        }
        // 4 after the reset: not locked; the next step's code is accepted.
        let next = T0 + 30_000;
        assert_eq!(f.check("alice", SECRET, &code_at(next), next), Ok(()));
    }

    #[test]
    fn key_grant_bodies_are_strict() {
        let g = key_grant(&serde_json::json!({"identity": "carol", "roles": ["user"],
            "team": "blue", "clearance": 2, "expires_days": 30}))
        .unwrap();
        assert_eq!(g.identity, "carol");
        assert_eq!(g.roles, vec!["user".to_owned()]);
        assert_eq!((g.team.as_deref(), g.clearance), (Some("blue"), Some(2)));
        assert!(g.expires_at.is_some());
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"identity": ""}),
            serde_json::json!({"identity": "a\nb"}),
            serde_json::json!({"identity": "carol", "admin": true}),
            serde_json::json!({"identity": "carol", "roles": "user"}),
            serde_json::json!({"identity": "carol", "roles": [1]}),
            serde_json::json!({"identity": "carol", "clearance": "high"}),
            serde_json::json!({"identity": "carol", "expires_days": 0}),
            serde_json::json!({"identity": "jwt:carol"}),
            serde_json::json!({"identity": "JWT:carol"}),
            serde_json::json!(["carol"]),
        ] {
            assert!(key_grant(&bad).is_err(), "{bad}");
        }
    }
}
