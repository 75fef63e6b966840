//! The request pipeline: an ordered list of [`Check`]s over one [`Exchange`]. Head checks
//! run on the request line and headers (audit room, authentication, kill switch, the
//! per-identity in-flight cap), body checks after the body is read (validation,
//! authorization, screening, per-minute limits; the
//! screening checks live in [`crate::screening`]). The first refusal ends the request; nothing is forwarded.

use crate::audit::AuditSink;
use crate::authz::{ModelAttrs, Policies, RequestContext};
use crate::config::{GatewayConfig, LimitsConfig};
use crate::directory::{Directory, Identity};
use crate::jwt::{self, Jwks, JwtPolicy};
use crate::keys::{self, KeyHash};
use crate::killswitch::KillSwitch;
use crate::limits::{Admission, Limiter};
use crate::validate::{self, Endpoint, ParamPolicy, Validated};
use bytes::Bytes;
use http::StatusCode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// When a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the body is read.
    Head,
    /// After the body is read.
    Body,
}

/// A refused request: status, the check that refused, the reason (for the client and the
/// audit record: never contains secrets) and, for 429, when to retry.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Which check.
    pub check: &'static str,
    /// Why.
    pub reason: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal.
    pub fn new(status: StatusCode, check: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            check,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// Everything known about one request as it moves through the pipeline. Its `Debug`
/// shows header names only and the body's length, never a header value (a key, a token,
/// a cookie) nor the prompt: every check, a custom one too, may log it.
pub struct Exchange {
    /// Gateway-local id.
    pub request_id: u64,
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// Client address.
    pub peer: SocketAddr,
    /// DNS name from a verified client certificate.
    pub client_cert: Option<String>,
    /// Authenticated identity.
    pub identity: Option<Identity>,
    /// How (`key`, `jwt`, `mtls`).
    pub auth: Option<&'static str>,
    /// MFA asserted.
    pub mfa: bool,
    /// Request body as received.
    pub body: Bytes,
    /// Validated body.
    pub validated: Option<Validated>,
    /// Parameter policy of the identity.
    pub params: Option<ParamPolicy>,
    /// Limits admission (held until the response ends).
    pub admission: Option<Admission>,
    /// Unix seconds at arrival.
    pub now: u64,
    /// What input screening learned (fed to the behaviour monitor when the response ends).
    pub screen: Option<crate::screening::Track>,
    /// Room for this request's audit record, reserved at admission and used when the
    /// response ends (or by its refusal).
    pub audit: Option<crate::audit::AuditPermit>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("request_id", &self.request_id)
            .field("endpoint", &self.endpoint)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("peer", &self.peer)
            .field("client_cert", &self.client_cert)
            .field("identity", &self.identity)
            .field("auth", &self.auth)
            .field("mfa", &self.mfa)
            .field("body_len", &self.body.len())
            .field("validated", &self.validated.is_some())
            .field("params", &self.params)
            .field("admission", &self.admission)
            .field("now", &self.now)
            .field("screen", &self.screen.is_some())
            .field("audit", &self.audit)
            .finish()
    }
}

/// One step of the pipeline.
pub trait Check: Send + Sync + std::fmt::Debug {
    /// Short name (appears in audit reasons).
    fn name(&self) -> &'static str;
    /// When it runs.
    fn phase(&self) -> Phase;
    /// Inspect (and possibly enrich) the exchange; refuse to stop the request.
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal>;
}

/// The ordered checks.
#[derive(Debug, Default)]
pub struct Pipeline {
    checks: Vec<Arc<dyn Check>>,
}

impl Pipeline {
    /// Append a check.
    pub fn push(&mut self, c: Arc<dyn Check>) {
        self.checks.push(c);
    }

    /// Run every check of `phase` in order.
    pub fn run(&self, phase: Phase, ex: &mut Exchange) -> Result<(), Refusal> {
        for c in self.checks.iter().filter(|c| c.phase() == phase) {
            c.check(ex)?;
        }
        Ok(())
    }

    /// Names, in order (for the start-up log).
    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }
}

/// Refuses new requests while the audit sink is failing (fail closed).
#[derive(Debug)]
pub struct AuditHealth(pub Arc<dyn AuditSink>);

impl Check for AuditHealth {
    fn name(&self) -> &'static str {
        "audit"
    }
    fn phase(&self) -> Phase {
        Phase::Head
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        // Room for the record is reserved before anything else: a request admitted is
        // never answered without its record.
        match self.0.reserve() {
            Ok(p) => {
                ex.audit = Some(p);
                Ok(())
            }
            Err(_) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit",
                "audit log unavailable",
            )),
        }
    }
}

/// API keys, OIDC JWTs and mTLS identities.
#[derive(Debug)]
pub struct Authenticate {
    /// State.
    pub directory: Arc<dyn Directory>,
    /// Current JWKS.
    pub jwks: Arc<RwLock<Arc<Jwks>>>,
    /// JWT policy (None: JWTs are not accepted).
    pub jwt: Option<JwtPolicy>,
    /// Asked for a JWKS refresh (unknown `kid`).
    pub refresh: Arc<tokio::sync::Notify>,
    cache: Mutex<HashMap<KeyHash, (Option<Identity>, Instant)>>,
}

const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

impl Authenticate {
    /// A new authenticator.
    pub fn new(
        directory: Arc<dyn Directory>,
        jwks: Arc<RwLock<Arc<Jwks>>>,
        jwt: Option<JwtPolicy>,
        refresh: Arc<tokio::sync::Notify>,
    ) -> Self {
        Authenticate {
            directory,
            jwks,
            jwt,
            refresh,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn by_key(&self, token: &str) -> Result<Option<Identity>, Refusal> {
        let h = KeyHash::of(token);
        let now = Instant::now();
        if let Ok(c) = self.cache.lock()
            && let Some((id, at)) = c.get(&h)
            && now.duration_since(*at) < KEY_CACHE_TTL
        {
            return Ok(id.clone());
        }
        let id = self.directory.identity_for_key(&h).map_err(|_| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "authn",
                "identity store unavailable",
            )
        })?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 100_000 {
                c.clear();
            }
            c.insert(h, (id.clone(), now));
        }
        Ok(id)
    }
}

/// The bearer scheme and the space after it, as compared (ASCII case ignored).
const BEARER: &str = "Bearer ";

fn unauthorized(reason: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "authn", reason)
}

/// API-key and mTLS identities may not use the token namespace (`jwt:…`): such a name
/// could only come from a store written before the prefix was reserved, and would share
/// a token subject's blocks, limits and policies.
fn directory_name(id: &Identity) -> Result<(), Refusal> {
    if jwt::is_reserved_name(&id.name) {
        return Err(unauthorized(format!(
            "identity names starting with {} are reserved for OIDC tokens",
            jwt::IDENTITY_PREFIX
        )));
    }
    Ok(())
}

/// A request whose bearer credential and client certificate name different identities
/// is refused: which one counts would otherwise be the gateway's silent choice, and a
/// client holding someone's key could act under it from a connection authenticated as
/// itself (the audit log would show only the key's identity). A token's identity is
/// `jwt:<sub>`, never a certificate's name, so a token with a certificate is refused.
fn same_as_certificate(ex: &Exchange, id: &Identity, what: &str) -> Result<(), Refusal> {
    match &ex.client_cert {
        Some(cert) if *cert != id.name => Err(unauthorized(format!(
            "conflicting credentials: {what} names identity {} but the client certificate names {cert}",
            id.name
        ))),
        _ => Ok(()),
    }
}

impl Check for Authenticate {
    fn name(&self) -> &'static str {
        "authn"
    }
    fn phase(&self) -> Phase {
        Phase::Head
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let mut auths = ex.headers.get_all(http::header::AUTHORIZATION).iter();
        let first = auths.next();
        if auths.next().is_some() {
            return Err(unauthorized("more than one authorization header"));
        }
        if let Some(v) = first {
            let v = v
                .to_str()
                .map_err(|_| unauthorized("malformed authorization header"))?;
            // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER` is `Bearer`.
            let token = v
                .get(..BEARER.len())
                .filter(|s| s.eq_ignore_ascii_case(BEARER))
                .and_then(|_| v.get(BEARER.len()..))
                .map(str::trim)
                .ok_or_else(|| unauthorized("authorization must be a bearer token"))?;
            if keys::looks_like_key(token) {
                let id = self
                    .by_key(token)?
                    .ok_or_else(|| unauthorized("unknown API key"))?;
                directory_name(&id)?;
                same_as_certificate(ex, &id, "the API key")?;
                ex.identity = Some(id);
                ex.auth = Some("key");
                return Ok(());
            }
            if token.matches('.').count() == 2 {
                let Some(policy) = &self.jwt else {
                    return Err(unauthorized("JWTs are not accepted here"));
                };
                let jwks = self
                    .jwks
                    .read()
                    .map(|j| Arc::clone(&j))
                    .map_err(|_| unauthorized("key set unavailable"))?;
                match jwt::verify(token, &jwks, policy, ex.now) {
                    Ok(v) => {
                        if !policy.with_client_certificate {
                            same_as_certificate(ex, &v.identity, "the token")?;
                        }
                        ex.identity = Some(v.identity);
                        ex.auth = Some("jwt");
                        ex.mfa = v.mfa;
                        return Ok(());
                    }
                    Err(e @ jwt::JwtError::StaleKeySet { .. }) => {
                        // Fail closed: the gateway cannot know which keys are still valid.
                        // Ask for a fetch now (the refresher spaces them at least 10 s).
                        self.refresh.notify_one();
                        return Err(Refusal::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "authn",
                            format!("tokens cannot be checked: {e}"),
                        ));
                    }
                    Err(e) => {
                        if e == jwt::JwtError::UnknownKey {
                            self.refresh.notify_one();
                        }
                        return Err(unauthorized(format!("invalid token: {e}")));
                    }
                }
            }
            return Err(unauthorized("unrecognised credential"));
        }
        if let Some(name) = &ex.client_cert {
            let id = self
                .directory
                .identity(name)
                .map_err(|_| {
                    Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "authn",
                        "identity store unavailable",
                    )
                })?
                .ok_or_else(|| unauthorized("client certificate identity is not registered"))?;
            directory_name(&id)?;
            ex.identity = Some(id);
            ex.auth = Some("mtls");
            return Ok(());
        }
        Err(unauthorized("missing credentials"))
    }
}

/// Refuses blocked identities.
#[derive(Debug)]
pub struct Blocked(pub Arc<KillSwitch>);

impl Check for Blocked {
    fn name(&self) -> &'static str {
        "killswitch"
    }
    fn phase(&self) -> Phase {
        Phase::Head
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        match &ex.identity {
            Some(id) if self.0.is_blocked(&id.name) => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "killswitch",
                "identity is blocked",
            )),
            Some(_) => Ok(()),
            None => Err(unauthorized("missing credentials")),
        }
    }
}

/// Strict body validation and the parameter policy.
#[derive(Debug)]
pub struct Validate(pub Arc<GatewayConfig>);

impl Check for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }
    fn phase(&self) -> Phase {
        Phase::Body
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let roles = ex
            .identity
            .as_ref()
            .map(|i| i.roles.as_slice())
            .unwrap_or(&[]);
        let params = ParamPolicy::for_roles(roles, &self.0.roles, &self.0.validation);
        if ex.endpoint != Endpoint::Models {
            let v = validate::validate(ex.endpoint, &ex.body, &params, &self.0.validation)
                .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "validate", e.0))?;
            if !self.0.models.iter().any(|m| m.name == v.model) {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "validate",
                    "model not available",
                ));
            }
            ex.validated = Some(v);
        } else if !ex.body.is_empty() {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "validate",
                "GET /v1/models takes no body",
            ));
        }
        ex.params = Some(params);
        Ok(())
    }
}

/// Cedar authorization (the models list is filtered per model by the server).
#[derive(Debug)]
pub struct Authorize {
    /// Current policies.
    pub policies: Arc<RwLock<Arc<Policies>>>,
    /// Model attributes by name.
    pub models: Arc<HashMap<String, ModelAttrs>>,
}

impl Authorize {
    /// Decide for one model.
    pub fn allows(&self, ex: &Exchange, model: &ModelAttrs) -> Result<bool, Refusal> {
        let Some(id) = &ex.identity else {
            return Err(unauthorized("missing credentials"));
        };
        let p = self.policies.read().map(|p| Arc::clone(&p)).map_err(|_| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "authz",
                "policy engine unavailable",
            )
        })?;
        let ctx = RequestContext::at(ex.now, ex.peer.ip(), ex.mfa, ex.auth.unwrap_or("none"));
        p.allows(id, ex.endpoint.action(), model, &ctx)
            .map_err(|_| {
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authz",
                    "policy evaluation error",
                )
            })
    }
}

impl Check for Authorize {
    fn name(&self) -> &'static str {
        "authz"
    }
    fn phase(&self) -> Phase {
        Phase::Body
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        if ex.endpoint == Endpoint::Models {
            return Ok(());
        }
        let name = ex
            .validated
            .as_ref()
            .map(|v| v.model.clone())
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "authz", "no model"))?;
        let m = self
            .models
            .get(&name)
            .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "authz", "model not available"))?;
        if self.allows(ex, m)? {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "authz",
                format!("{} on {} denied by policy", ex.endpoint.action(), m.name),
            ))
        }
    }
}

/// Per-identity limits (requests/min, tokens/min; concurrency with [`Concurrency`]).
#[derive(Debug)]
pub struct Limits {
    /// The limiter.
    pub limiter: Arc<Limiter>,
    /// Configuration (defaults and per-role).
    pub config: Arc<GatewayConfig>,
}

impl Limits {
    fn for_roles(&self, roles: &[String]) -> LimitsConfig {
        roles
            .iter()
            .filter_map(|r| self.config.roles.get(r).and_then(|c| c.limits))
            .max_by_key(|l| l.requests_per_minute)
            .unwrap_or(self.config.limits)
    }
}

fn limited(l: crate::limits::Limited) -> Refusal {
    match l.retry_after {
        Some(s) => Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            check: "limits",
            reason: format!("{} limit reached", l.which),
            retry_after: Some(s),
        },
        // Retrying cannot help: not a 429 (clients retry those), the request is too big.
        None => Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "limits",
            format!(
                "request needs more tokens (prompt estimate + max_tokens) than the {} limit allows",
                l.which
            ),
        ),
    }
}

impl Check for Limits {
    fn name(&self) -> &'static str {
        "limits"
    }
    fn phase(&self) -> Phase {
        Phase::Body
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let Some(id) = &ex.identity else {
            return Err(unauthorized("missing credentials"));
        };
        let tokens = ex.validated.as_ref().map_or(0, |v| {
            (v.prompt_bytes as u64)
                .div_ceil(3)
                .saturating_add(v.max_tokens.saturating_mul(v.sequences))
        });
        // The slot taken by `Concurrency` in the head phase; without that check
        // (a pipeline built otherwise) the slot is taken here.
        match ex.admission.as_mut() {
            Some(a) => self.limiter.charge(a, tokens).map_err(limited),
            None => {
                let limits = self.for_roles(&id.roles);
                let a = self
                    .limiter
                    .admit(&id.name, limits, tokens)
                    .map_err(limited)?;
                ex.admission = Some(a);
                Ok(())
            }
        }
    }
}

/// The per-identity cap on requests in flight, right after authentication and before
/// the body is read: an identity holds at most its `concurrency` of requests, and so of
/// the audit room they reserved, however slowly it sends bodies. The slot rides in
/// [`Exchange::admission`]; [`Limits`] charges the per-minute limits to it later.
#[derive(Debug)]
pub struct Concurrency(pub Arc<Limits>);

impl Check for Concurrency {
    fn name(&self) -> &'static str {
        "concurrency"
    }
    fn phase(&self) -> Phase {
        Phase::Head
    }
    fn check(&self, ex: &mut Exchange) -> Result<(), Refusal> {
        let Some(id) = &ex.identity else {
            return Err(unauthorized("missing credentials"));
        };
        let limits = self.0.for_roles(&id.roles);
        let a = self.0.limiter.enter(&id.name, limits).map_err(limited)?;
        ex.admission = Some(a);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Exchange` is handed to every check, custom ones included, and is `Debug`: a
    /// check that logs it (`tracing::debug!(?ex)`) must not write the client's key or
    /// token, nor any other header value (cookies, `x-api-key`).
    #[test]
    fn an_exchange_never_prints_header_values() {
        let key = format!("wdn_{}", "K".repeat(43));
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("authorization", format!("Bearer {key}")),
            ("x-api-key", "secret-api-key-value".to_owned()),
            ("cookie", "session=secret-cookie".to_owned()),
        ] {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(&value).unwrap(),
            );
        }
        let ex = Exchange {
            request_id: 7,
            endpoint: Endpoint::Chat,
            headers,
            peer: "127.0.0.1:1".parse().unwrap(),
            client_cert: None,
            identity: None,
            auth: None,
            mfa: false,
            body: Bytes::new(),
            validated: None,
            params: None,
            admission: None,
            now: 0,
            screen: None,
            audit: None,
        };
        let printed = format!("{ex:?}");
        for secret in [&key[4..], "secret-api-key-value", "secret-cookie"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        // The names are still there to debug with, and the rest of the exchange.
        assert!(printed.contains("authorization") && printed.contains("request_id: 7"));
    }
}
