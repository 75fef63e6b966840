//! The gateway: listeners, the per-request flow (route → head checks → bounded body →
//! body checks → forward → minimise → audit), the upstream connection pool, streaming
//! with the kill switch, and lockdown of the public listener.

use crate::audit::{AuditRecord, AuditSink, now_ms};
use crate::authz::{ModelAttrs, Policies};
use crate::config::GatewayConfig;
use crate::directory::Directory;
use crate::jwt::{Jwks, JwtPolicy};
use crate::killswitch::KillSwitch;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::minimize::{self, ResponsePolicy, SseError, SseMinimizer};
use crate::pipeline::{
    AuditHealth, Authenticate, Authorize, Blocked, Concurrency, Exchange, Limits, Phase, Pipeline,
    Refusal, Validate,
};
use crate::tls::{self, ListenerTls};
use crate::validate::Endpoint;
use crate::{Error, admin};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The token that stops the gateway.
pub type Shutdown = CancellationToken;

/// Error type of response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// Response body.
pub type GwBody = BoxBody<Bytes, BodyError>;

/// A model's upstream.
#[derive(Debug, Clone)]
struct Upstream {
    /// The request URI per endpoint (`base` + the endpoint's path), parsed once; None
    /// where that string is not a URI (the request then fails as it did when built).
    uris: [Option<http::Uri>; ENDPOINTS.len()],
    /// The `Host` header hyper-util's client would write for those URIs (host, and the
    /// port unless it is the scheme's default), computed once instead of per request.
    host: Option<HeaderValue>,
    auth: Option<HeaderValue>,
    /// One pool for the shared runtime, then one per connection worker: a connection
    /// lives on the thread that opened it, so each worker uses only its own.
    clients: Arc<[crate::upstream::UpstreamClient]>,
    /// `relay_upstream_server_errors`: pass the (screened, cut) message of an upstream
    /// 5xx to the client instead of the generic one.
    relay_server_errors: bool,
}

/// Every endpoint, in the order of `Upstream::uris`.
const ENDPOINTS: [Endpoint; 5] = [
    Endpoint::Chat,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Models,
    Endpoint::Responses,
];

impl Upstream {
    fn new(
        base: &str,
        auth: Option<HeaderValue>,
        clients: Arc<[crate::upstream::UpstreamClient]>,
        relay_server_errors: bool,
    ) -> Upstream {
        let base = base.trim_end_matches('/');
        let uris = ENDPOINTS.map(|ep| http::Uri::try_from(format!("{base}{}", ep.path())).ok());
        let host = uris.iter().flatten().next().and_then(host_header);
        Upstream {
            uris,
            host,
            auth,
            clients,
            relay_server_errors,
        }
    }

    fn uri(&self, ep: Endpoint) -> Option<&http::Uri> {
        let i = ENDPOINTS.iter().position(|e| *e == ep)?;
        self.uris.get(i)?.as_ref()
    }

    fn client(&self) -> Option<&crate::upstream::UpstreamClient> {
        let n = self.clients.len().max(1);
        self.clients.get(crate::workers::current() % n)
    }
}

/// The `Host` header hyper-util's HTTP/1 client sets for `uri` when a request has none
/// (`Client::send_request`: the host, plus `:port` unless the port is the scheme's
/// default), so setting it here sends the same bytes.
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let port = match (uri.port_u16(), secure) {
        (Some(443), true) | (Some(80), false) => None,
        _ => uri.port(),
    };
    match port {
        Some(p) => HeaderValue::from_str(&format!("{host}:{p}")).ok(),
        None => HeaderValue::from_str(host).ok(),
    }
}

/// `ip.to_string()`, without the formatter for IPv4 (every request's audit record
/// carries the client's address).
pub fn ip_string(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// Everything the running gateway shares.
#[derive(Debug)]
pub struct Gateway {
    /// Configuration.
    pub config: Arc<GatewayConfig>,
    /// State.
    pub directory: Arc<dyn Directory>,
    /// Audit sink.
    pub audit: Arc<dyn AuditSink>,
    /// Current policies (reloadable).
    pub policies: Arc<RwLock<Arc<Policies>>>,
    /// Current JWKS.
    pub jwks: Arc<RwLock<Arc<Jwks>>>,
    /// Kill switch.
    pub kill: Arc<KillSwitch>,
    /// Metrics.
    pub metrics: Metrics,
    /// Screening, behaviour and drift monitors, alerts.
    pub screening: Arc<crate::screening::Screening>,
    pipeline: Pipeline,
    authorize: Arc<Authorize>,
    models: Arc<HashMap<String, ModelAttrs>>,
    upstreams: HashMap<String, Upstream>,
    next_id: AtomicU64,
    jwks_refresh: Arc<tokio::sync::Notify>,
    /// The second in which a refused connection was last logged.
    conn_refusal_logged: AtomicU64,
    /// Open public connections per client address (entries removed at zero).
    conns_per_ip: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

fn unix_now() -> u64 {
    now_ms() / 1000
}

impl Gateway {
    /// Assemble a gateway. `extra` checks (e.g. screening) run after the built-in body
    /// checks and before limits are charged.
    pub fn new(
        config: GatewayConfig,
        directory: Arc<dyn Directory>,
        audit: Arc<dyn AuditSink>,
        policies: Policies,
        extra: Vec<Arc<dyn crate::pipeline::Check>>,
    ) -> Result<Arc<Gateway>, Error> {
        config.validate()?;
        let config = Arc::new(config);
        let kill = Arc::new(KillSwitch::default());
        kill.sync_blocked(&directory.blocked()?);
        kill.set_lockdown(directory.lockdown()?);
        let policies = Arc::new(RwLock::new(Arc::new(policies)));
        let jwks = Arc::new(RwLock::new(Arc::new(Jwks::default())));
        let jwks_refresh = Arc::new(tokio::sync::Notify::new());
        let models: Arc<HashMap<String, ModelAttrs>> = Arc::new(
            config
                .models
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        ModelAttrs {
                            name: m.name.clone(),
                            classification: m.classification,
                            release: m.release.clone(),
                        },
                    )
                })
                .collect(),
        );
        let mut upstreams = HashMap::new();
        for m in &config.models {
            let auth = match &m.upstream_api_key_env {
                Some(var) => {
                    let k = std::env::var(var).map_err(|_| {
                        Error::Config(format!(
                            "model {}: environment variable {var} is not set",
                            m.name
                        ))
                    })?;
                    let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                        Error::Config(format!(
                            "model {}: {var} is not a valid header value",
                            m.name
                        ))
                    })?;
                    v.set_sensitive(true);
                    Some(v)
                }
                None => None,
            };
            upstreams.insert(
                m.name.clone(),
                Upstream::new(
                    &m.upstream,
                    auth,
                    crate::upstream::clients(m, &config.timeouts, config.effective_workers() + 1)?
                        .into(),
                    m.relay_upstream_server_errors,
                ),
            );
        }
        let jwt = config.oidc.as_ref().map(|o| JwtPolicy {
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            algorithms: o.algorithms.clone(),
            roles_claim: o.roles_claim.clone(),
            team_claim: o.team_claim.clone(),
            clearance_claim: o.clearance_claim.clone(),
            leeway_secs: o.leeway_secs,
            max_key_set_age_secs: o.jwks_max_age_secs,
            with_client_certificate: o.tokens_with_client_certificates,
        });
        let authorize = Arc::new(Authorize {
            policies: Arc::clone(&policies),
            models: Arc::clone(&models),
        });
        let mut pipeline = Pipeline::default();
        pipeline.push(Arc::new(AuditHealth(Arc::clone(&audit))));
        pipeline.push(Arc::new(Authenticate::new(
            Arc::clone(&directory),
            Arc::clone(&jwks),
            jwt,
            Arc::clone(&jwks_refresh),
        )));
        pipeline.push(Arc::new(Blocked(Arc::clone(&kill))));
        let limits = Arc::new(Limits {
            limiter: Arc::new(Limiter::default()),
            config: Arc::clone(&config),
        });
        // Before the body: a slow client holds at most its concurrency cap of requests.
        pipeline.push(Arc::new(Concurrency(Arc::clone(&limits))));
        pipeline.push(Arc::new(Validate(Arc::clone(&config))));
        pipeline.push(authorize.clone());
        let metrics = Metrics::default();
        let screening = crate::screening::Screening::new(
            config.screening.clone(),
            Arc::clone(&kill),
            Arc::clone(&directory),
            Arc::clone(&audit),
            Arc::clone(&metrics.screening),
        )?;
        for c in screening.checks() {
            pipeline.push(c);
        }
        for c in extra {
            pipeline.push(c);
        }
        pipeline.push(limits);
        Ok(Arc::new(Gateway {
            config,
            directory,
            audit,
            policies,
            jwks,
            kill,
            metrics,
            screening,
            pipeline,
            authorize,
            models,
            upstreams,
            next_id: AtomicU64::new(1),
            jwks_refresh,
            conn_refusal_logged: AtomicU64::new(0),
            conns_per_ip: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// The check names in order.
    pub fn checks(&self) -> Vec<&'static str> {
        self.pipeline.names()
    }

    /// Replace the policies (admin reload).
    pub fn set_policies(&self, p: Policies) {
        if let Ok(mut g) = self.policies.write() {
            *g = Arc::new(p);
        }
    }

    /// Fetch the JWKS now (start-up and refresh).
    pub async fn refresh_jwks(&self) -> Result<usize, Error> {
        let Some(o) = &self.config.oidc else {
            return Ok(0);
        };
        let doc = admin::http_get(&o.jwks_url, o.jwks_ca.as_deref()).await?;
        let jwks = Jwks::parse(&doc)
            .map_err(|cause| Error::Jwks {
                url: o.jwks_url.clone(),
                cause,
            })?
            .fetched(unix_now());
        let n = jwks.len();
        if let Ok(mut g) = self.jwks.write() {
            *g = Arc::new(jwks);
        }
        Ok(n)
    }

    fn audit_refusal(&self, ex: &mut Exchange, path: &str, r: &Refusal, started: Instant) {
        let rec = AuditRecord {
            ts_ms: now_ms(),
            kind: "request".into(),
            request_id: ex.request_id,
            identity: ex.identity.as_ref().map(|i| i.name.clone()),
            auth: ex.auth.map(str::to_owned),
            source_ip: ip_string(ex.peer.ip()),
            endpoint: path.to_owned(),
            model: ex.validated.as_ref().map(|v| v.model.clone()),
            decision: if r.status.is_server_error() {
                "error"
            } else {
                "deny"
            }
            .into(),
            reason: format!("{}: {}", r.check, r.reason),
            status: r.status.as_u16(),
            request_bytes: ex.body.len() as u64,
            prompt_sha256: (!ex.body.is_empty() && self.config.audit.hash_content)
                .then(|| sha256_hex(&ex.body)),
            total_us: started.elapsed().as_micros() as u64,
            outcome: "refused".into(),
            ..AuditRecord::default()
        };
        self.metrics.request(path_label(path), r.status.as_u16());
        tracing::info!(
            request_id = ex.request_id,
            identity = rec.identity.as_deref().unwrap_or("-"),
            status = rec.status,
            reason = %rec.reason,
            "refused"
        );
        // Into the room reserved at admission if the request got that far.
        let queued = match ex.audit.take() {
            Some(p) => p.submit(rec),
            None => self.audit.submit(rec),
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "audit record could not be queued; failing closed");
        }
    }
}

fn path_label(path: &str) -> &'static str {
    Endpoint::from_path(path).map_or("other", |e| e.action())
}

/// SHA-256, hex.
pub fn sha256_hex(b: &[u8]) -> String {
    crate::keys::hex_lower(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b))
}

fn json_error(r: &Refusal, request_id: u64) -> Response<GwBody> {
    let kind = match r.status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        s if s >= 500 => "gateway_error",
        _ => "invalid_request_error",
    };
    let body = serde_json::json!({"error": {"message": r.reason, "type": kind, "code": r.status.as_u16()}});
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        h.insert("x-request-id", v);
    }
    if r.status == StatusCode::UNAUTHORIZED {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(s) = r.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A complete body.
pub fn full(b: Bytes) -> GwBody {
    Full::new(b)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

const CREDENTIAL_PARAMS: [&str; 9] = [
    "key",
    "api_key",
    "api-key",
    "apikey",
    "access_token",
    "token",
    "auth",
    "authorization",
    "jwt",
];

/// Request-line checks that need no identity: method, exact path, no query, no smuggling.
fn route(req: &http::request::Parts) -> Result<Endpoint, Refusal> {
    let bad = |s: StatusCode, why: &str| Refusal::new(s, "route", why);
    let path = req.uri.path();
    let lower = path.to_ascii_lowercase();
    if path.contains("..")
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.contains("//")
        || path.contains('\\')
    {
        return Err(bad(StatusCode::BAD_REQUEST, "path traversal refused"));
    }
    if let Some(q) = req.uri.query() {
        let cred = q.split('&').any(|kv| {
            let k = kv
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            CREDENTIAL_PARAMS.contains(&k.as_str())
        });
        return Err(bad(
            StatusCode::BAD_REQUEST,
            if cred {
                "credentials are not accepted in the query string"
            } else {
                "query parameters are not accepted"
            },
        ));
    }
    let h = &req.headers;
    // Request bodies must be framed by Content-Length. hyper follows RFC 9112 §6.3 for a
    // request carrying both headers (Transfer-Encoding wins, the Content-Length header is
    // dropped before the request reaches us, the connection is closed after the answer),
    // so a conflict cannot be seen here; refusing every Transfer-Encoding refuses it
    // whatever order the two headers came in. OpenAI clients send Content-Length.
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "transfer-encoding is not accepted on requests: send content-length \
             (with a content-length too it would be request smuggling)",
        ));
    }
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(bad(StatusCode::BAD_REQUEST, "more than one content-length"));
    }
    let ep =
        Endpoint::from_path(path).ok_or_else(|| bad(StatusCode::NOT_FOUND, "no such endpoint"))?;
    if req.method != ep.method() {
        return Err(bad(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    if ep.method() == http::Method::POST {
        json_body(h).map_err(|why| bad(StatusCode::UNSUPPORTED_MEDIA_TYPE, why))?;
    }
    Ok(ep)
}

/// A request body must be declared JSON, once, uncompressed. Browsers send a cross-site
/// POST without a CORS preflight only with a text/plain, form or multipart body (or
/// none declared): a page could otherwise have a browser holding a client certificate
/// call the API as that identity. `application/json` needs a preflight, which the
/// gateway never grants. Parameters (`charset`) are allowed; the body is read as UTF-8.
fn json_body(h: &http::HeaderMap) -> Result<(), &'static str> {
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    let (Some(ct), None) = (types.next(), types.next()) else {
        return Err("content-type must be application/json (given once)");
    };
    let media = ct
        .to_str()
        .ok()
        .and_then(|c| c.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        return Err("content-type must be application/json");
    }
    if h.get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err("content-encoding is not accepted on requests: send the JSON uncompressed");
    }
    Ok(())
}

/// Serve one request, isolating panics.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    client_cert: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<GwBody>, Infallible> {
    let id = gw.next_id.fetch_add(1, Ordering::Relaxed);
    let gw2 = Arc::clone(&gw);
    let path = clip_path(req.uri().path());
    // Boxed: the request's state machine (exchange, audit record, upstream call) is
    // several KB, and hyper moves the future it is given; a box is moved as a pointer.
    let r = AssertUnwindSafe(Box::pin(handle_inner(gw, id, peer, client_cert, req)))
        .catch_unwind()
        .await;
    Ok(match r {
        Ok(resp) => resp,
        Err(_) => {
            let refusal = Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            );
            let mut ex = empty_exchange(id, peer, None);
            gw2.audit_refusal(&mut ex, &path, &refusal, Instant::now());
            tracing::error!(request_id = id, "request handler panicked; isolated");
            json_error(&refusal, id)
        }
    })
}

/// The path as recorded: at most 128 characters.
/// The path as the audit record names it: credential-like runs cut out, then at most 128
/// characters.
fn clip_path(p: &str) -> String {
    let p = redact_runs(p);
    if p.len() <= 128 {
        p.into_owned()
    } else {
        p.chars().take(128).collect()
    }
}

/// Shortest run of token characters taken for a credential. Every allowlisted path is
/// far shorter between its slashes; a Warden key is 47 characters, a JWT longer.
const CREDENTIAL_RUN: usize = 24;

/// `p` with each run of at least [`CREDENTIAL_RUN`] token characters (base64url, `.`,
/// `%`, `~`, `+`, `=`) replaced by `<redacted>`: a key or token a client put in the path
/// (appended to the base URL, as a segment or a `;key=` parameter, percent-encoded or
/// not) would otherwise be written to the audit log, which cannot be scrubbed. No
/// allocation when there is nothing to cut (every allowlisted path).
fn redact_runs(p: &str) -> std::borrow::Cow<'_, str> {
    let token = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'%' | b'~' | b'+' | b'=')
    };
    let b = p.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if !b.get(i).copied().is_some_and(token) {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).copied().is_some_and(token) {
            i += 1;
        }
        if i - start >= CREDENTIAL_RUN {
            // Runs are ASCII, so `start` and `i` are character boundaries.
            let o = out.get_or_insert_with(|| String::with_capacity(p.len()));
            o.push_str(p.get(copied..start).unwrap_or_default());
            o.push_str("<redacted>");
            copied = i;
        }
    }
    match out {
        Some(mut o) => {
            o.push_str(p.get(copied..).unwrap_or_default());
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(p),
    }
}

fn empty_exchange(id: u64, peer: SocketAddr, client_cert: Option<String>) -> Exchange {
    Exchange {
        request_id: id,
        endpoint: Endpoint::Models,
        headers: http::HeaderMap::new(),
        peer,
        client_cert,
        identity: None,
        auth: None,
        mfa: false,
        body: Bytes::new(),
        validated: None,
        params: None,
        admission: None,
        now: unix_now(),
        screen: None,
        audit: None,
    }
}

async fn handle_inner(
    gw: Arc<Gateway>,
    id: u64,
    peer: SocketAddr,
    client_cert: Option<String>,
    req: Request<Incoming>,
) -> Response<GwBody> {
    let started = Instant::now();
    let path = clip_path(req.uri().path());
    let mut ex = empty_exchange(id, peer, client_cert);
    let refuse = |gw: &Gateway, ex: &mut Exchange, r: Refusal| {
        // A refused request gives its concurrency slot back now, not after its body is
        // drained (up to 2 s): a throttled client must not hold its cap that way.
        ex.admission.take();
        gw.audit_refusal(ex, &path, &r, started);
        json_error(&r, ex.request_id)
    };
    let (parts, mut body) = req.into_parts();
    let max = gw.config.validation.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let unread = Unread {
        version: parts.version,
        has_body: declared.is_some_and(|n| n > 0)
            || parts.headers.contains_key(header::TRANSFER_ENCODING)
            || (parts.version == http::Version::HTTP_2 && !body.is_end_stream()),
        drainable: declared.is_none_or(|n| n <= max as u64),
        max,
    };
    if gw.kill.locked_down() {
        let r = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "killswitch",
            "gateway in lockdown",
        );
        return unread.answer(refuse(&gw, &mut ex, r), body).await;
    }
    let ep = match route(&parts) {
        Ok(ep) => ep,
        Err(r) => return unread.answer(refuse(&gw, &mut ex, r), body).await,
    };
    ex.endpoint = ep;
    ex.headers = parts.headers;
    if let Err(r) = gw.pipeline.run(Phase::Head, &mut ex) {
        return unread.answer(refuse(&gw, &mut ex, r), body).await;
    }
    // Bounded body.
    if declared.is_some_and(|n| n > max as u64) {
        let r = Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "validate",
            format!("body exceeds {max} bytes"),
        );
        return unread.answer(refuse(&gw, &mut ex, r), body).await;
    }
    // Collected through a borrow, so an HTTP/2 body over the limit can still be discarded.
    let collected = tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(&mut body, max).collect(),
    )
    .await;
    ex.body = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            let r = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                if parts.version == http::Version::HTTP_2 {
                    // No declared length, too long: as for a declared oversize body, the
                    // client reads the 413 instead of a stream reset.
                    tokio::spawn(discard(body, H2_DISCARD_MAX_BYTES, H2_DISCARD_MAX_TIME));
                }
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "validate",
                    format!("body exceeds {max} bytes"),
                )
            } else {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "validate",
                    "unreadable request body",
                )
            };
            return refuse(&gw, &mut ex, r);
        }
        Err(_) => {
            let r = Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "validate",
                "request body too slow",
            );
            return refuse(&gw, &mut ex, r);
        }
    };
    if let Err(r) = gw.pipeline.run(Phase::Body, &mut ex) {
        return refuse(&gw, &mut ex, r);
    }
    if ep == Endpoint::Models {
        return list_models(&gw, ex, &path, started);
    }
    forward(gw, ex, path, started).await
}

/// How to answer a request refused before its body was read. A body within the limit
/// is read and discarded first, for at most 2 s: on HTTP/2 dropping it resets the
/// stream under the answer (curl exit 92), on HTTP/1.1 closing with unread bytes makes
/// the kernel reset the connection, often before the client has read the answer. HTTP/1.1
/// answers also say `Connection: close` (an unread rest must never be parsed as the
/// next request).
struct Unread {
    version: http::Version,
    has_body: bool,
    drainable: bool,
    max: usize,
}

impl Unread {
    async fn answer(&self, mut resp: Response<GwBody>, body: Incoming) -> Response<GwBody> {
        if !self.has_body {
            return resp;
        }
        if !self.drainable && self.version == http::Version::HTTP_2 {
            // Declared larger than the limit: answer at once and discard the rest in the
            // background, so the stream ends with the client's END_STREAM instead of a
            // reset under the answer (which clients report as a stream error, not a
            // 413). Bounded in bytes and time; past either, the stream is reset.
            tokio::spawn(discard(body, H2_DISCARD_MAX_BYTES, H2_DISCARD_MAX_TIME));
            return resp;
        }
        if self.drainable {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                Limited::new(body, self.max).collect(),
            )
            .await;
        }
        if self.version != http::Version::HTTP_2 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The most an HTTP/2 client's refused oversize body is read (and thrown away) for.
const H2_DISCARD_MAX_BYTES: u64 = 64 << 20;
const H2_DISCARD_MAX_TIME: Duration = Duration::from_secs(5);

/// Read and drop a request body, up to `max_bytes` and for at most `max_time`.
async fn discard(mut body: Incoming, max_bytes: u64, max_time: Duration) {
    let _ = tokio::time::timeout(max_time, async move {
        let mut seen = 0u64;
        while let Some(Ok(f)) = body.frame().await {
            if let Some(d) = f.data_ref() {
                seen += d.len() as u64;
                if seen > max_bytes {
                    break;
                }
            }
        }
    })
    .await;
}

fn list_models(gw: &Gateway, mut ex: Exchange, path: &str, started: Instant) -> Response<GwBody> {
    let mut data = Vec::new();
    let mut names: Vec<&String> = gw.models.keys().collect();
    names.sort();
    for n in names {
        let Some(m) = gw.models.get(n) else { continue };
        match gw.authorize.allows(&ex, m) {
            Ok(true) => data
                .push(serde_json::json!({"id": m.name, "object": "model", "owned_by": "warden"})),
            Ok(false) => {}
            Err(r) => {
                gw.audit_refusal(&mut ex, path, &r, started);
                return json_error(&r, ex.request_id);
            }
        }
    }
    let body = Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
    let rec = AuditRecord {
        ts_ms: now_ms(),
        kind: "request".into(),
        request_id: ex.request_id,
        identity: ex.identity.as_ref().map(|i| i.name.clone()),
        auth: ex.auth.map(str::to_owned),
        source_ip: ip_string(ex.peer.ip()),
        endpoint: path.to_owned(),
        decision: "allow".into(),
        reason: format!("{} models visible", data.len()),
        status: 200,
        response_bytes: body.len() as u64,
        response_sha256: Some(sha256_hex(&body)),
        total_us: started.elapsed().as_micros() as u64,
        outcome: "complete".into(),
        ..AuditRecord::default()
    };
    gw.metrics.request("models", 200);
    let queued = match ex.audit.take() {
        Some(p) => p.submit(rec),
        None => gw.audit.submit(rec),
    };
    if let Err(e) = queued {
        tracing::error!(error = %e, "audit record could not be queued; failing closed");
    }
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Finishes the audit record when the response ends, however it ends.
struct Finisher {
    gw: Arc<Gateway>,
    rec: AuditRecord,
    started: Instant,
    hasher: Option<aws_lc_rs::digest::Context>,
    admission: Option<crate::limits::Admission>,
    usage: Option<u64>,
    screen: Option<crate::screening::Track>,
    /// Room reserved for the record at admission.
    permit: Option<crate::audit::AuditPermit>,
    /// The identity's stream token, held while the response is in flight.
    _stream: crate::killswitch::StreamToken,
}

impl Finisher {
    fn sent(&mut self, b: &[u8]) {
        self.rec.response_bytes += b.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(b);
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        self.gw.metrics.inflight.fetch_sub(1, Ordering::Relaxed);
        if let (Some(a), Some(u)) = (self.admission.as_mut(), self.usage) {
            a.set_actual(u);
        }
        self.admission.take();
        self.rec.total_us = self.started.elapsed().as_micros() as u64;
        if let Some(h) = self.hasher.take() {
            self.rec.response_sha256 = Some(crate::keys::hex_lower(h.finish()));
        }
        if self.rec.outcome.is_empty() {
            self.rec.outcome = "client-gone".into();
        }
        if self.rec.outcome == "cut" {
            self.gw.metrics.streams_cut.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = self.screen.take() {
            self.gw
                .screening
                .finish(t, self.rec.response_bytes, self.rec.status);
        }
        self.gw
            .metrics
            .request(path_label(&self.rec.endpoint), self.rec.status);
        tracing::info!(
            request_id = self.rec.request_id,
            identity = self.rec.identity.as_deref().unwrap_or("-"),
            model = self.rec.model.as_deref().unwrap_or("-"),
            status = self.rec.status,
            outcome = %self.rec.outcome,
            total_us = self.rec.total_us,
            "request"
        );
        let rec = std::mem::take(&mut self.rec);
        let queued = match self.permit.take() {
            Some(p) => p.submit(rec),
            None => self.gw.audit.submit(rec),
        };
        if let Err(e) = queued {
            tracing::error!(error = %e, "audit record could not be queued; failing closed");
        }
    }
}

async fn forward(
    gw: Arc<Gateway>,
    mut ex: Exchange,
    path: String,
    started: Instant,
) -> Response<GwBody> {
    let Some(v) = ex.validated.take() else {
        let r = Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "request not validated",
        );
        gw.audit_refusal(&mut ex, &path, &r, started);
        return json_error(&r, ex.request_id);
    };
    let Some(up) = gw.upstreams.get(&v.model).cloned() else {
        let r = Refusal::new(StatusCode::NOT_FOUND, "route", "model not available");
        gw.audit_refusal(&mut ex, &path, &r, started);
        return json_error(&r, ex.request_id);
    };
    let identity = ex
        .identity
        .as_ref()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let held = gw.kill.stream_token(&identity);
    let cancel = held.token().clone();
    let keep_logprobs = ex.params.as_ref().is_some_and(|p| p.logprobs_allowed());
    let policy = ResponsePolicy {
        endpoint: ex.endpoint,
        keep_logprobs,
    };
    gw.metrics.inflight.fetch_add(1, Ordering::Relaxed);
    let hash = gw.config.audit.hash_content;
    let mut fin = Finisher {
        gw: Arc::clone(&gw),
        rec: AuditRecord {
            ts_ms: now_ms(),
            kind: "request".into(),
            request_id: ex.request_id,
            identity: Some(identity.clone()),
            auth: ex.auth.map(str::to_owned),
            source_ip: ip_string(ex.peer.ip()),
            endpoint: path,
            model: Some(v.model.clone()),
            decision: "allow".into(),
            reason: if v.stripped.is_empty() {
                "allowed".into()
            } else {
                format!("allowed; stripped {}", v.stripped.join(", "))
            },
            request_bytes: ex.body.len() as u64,
            prompt_sha256: hash.then(|| sha256_hex(&ex.body)),
            ..AuditRecord::default()
        },
        started,
        hasher: hash.then(|| aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)),
        admission: ex.admission.take(),
        usage: None,
        screen: ex.screen.take(),
        permit: ex.audit.take(),
        _stream: held,
    };
    if let Some(t) = &fin.screen {
        t.annotate(&mut fin.rec.reason);
    }
    let gw_us = started.elapsed().as_micros() as u64;
    fin.rec.gateway_us = gw_us;
    gw.metrics.gateway_time(gw_us);
    let Some(uri) = up.uri(ex.endpoint) else {
        return fail(
            fin,
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not build upstream request",
        );
    };
    let mut builder = Request::builder()
        .method(http::Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::ACCEPT,
            if v.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    if let Some(a) = &up.auth {
        builder = builder.header(header::AUTHORIZATION, a.clone());
    }
    // Last, where hyper-util's client would have added it.
    if let Some(h) = &up.host {
        builder = builder.header(header::HOST, h.clone());
    }
    let Ok(upreq) = builder.body(Full::new(Bytes::from(v.body))) else {
        return fail(
            fin,
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not build upstream request",
        );
    };
    // `clients` is never empty (built with at least one pool).
    let Some(client) = up.client() else {
        return fail(fin, StatusCode::INTERNAL_SERVER_ERROR, "no upstream client");
    };
    let t0 = Instant::now();
    let header_timeout = Duration::from_secs(gw.config.timeouts.response_header_secs);
    let resp = tokio::select! {
        r = tokio::time::timeout(header_timeout, client.request(upreq)) => r,
        () = cancel.cancelled() => {
            fin.rec.outcome = "cut".into();
            return fail(fin, StatusCode::FORBIDDEN, "identity is blocked");
        }
    };
    fin.rec.upstream_us = t0.elapsed().as_micros() as u64;
    let resp = match resp {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let why = crate::upstream::describe(&e);
            tracing::warn!(request_id = fin.rec.request_id, error = %why, "upstream request failed");
            // The audit record says why; the client only that the upstream is unavailable.
            fin.rec.outcome = "upstream-error".into();
            if e.is_connect() {
                // No connection (refused, TCP or TLS failure): the request was never
                // sent, so it used no tokens; its reservation goes back (an outage must
                // not leave every client throttled once the upstream is back). After a
                // send the upstream may have generated: the reservation stays.
                fin.usage = Some(0);
            }
            let resp = json_error(
                &Refusal::new(StatusCode::BAD_GATEWAY, "upstream", "upstream unavailable"),
                fin.rec.request_id,
            );
            fin.rec.status = StatusCode::BAD_GATEWAY.as_u16();
            fin.rec.decision = "error".into();
            fin.rec.reason = format!("upstream: upstream unavailable ({why})");
            drop(fin);
            return resp;
        }
        Err(_) => return fail(fin, StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
    };
    let status = resp.status();
    fin.rec.status = status.as_u16();
    if matches!(status.as_u16(), 401 | 403 | 407) {
        // The upstream refused the gateway's own credential (`auth`), not the client's:
        // a gateway fault. Its status would tell the client that its key is bad, and its
        // message can describe the gateway's upstream key (OpenAI names the key's tail),
        // so neither is passed on; the audit record keeps the status.
        tracing::warn!(
            request_id = fin.rec.request_id,
            status = status.as_u16(),
            "upstream refused the gateway's credential"
        );
        fin.rec.outcome = "upstream-error".into();
        fin.rec.status = StatusCode::BAD_GATEWAY.as_u16();
        fin.rec.decision = "error".into();
        fin.rec.reason = format!(
            "upstream: upstream refused the gateway's credential ({})",
            status.as_u16()
        );
        // Refused before any generation: the reservation goes back.
        fin.usage = Some(0);
        let id = fin.rec.request_id;
        drop(fin);
        return json_error(
            &Refusal::new(StatusCode::BAD_GATEWAY, "upstream", "upstream unavailable"),
            id,
        );
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let idle = Duration::from_secs(gw.config.timeouts.idle_secs);
    if is_sse && status.is_success() {
        let body = StreamBody {
            inner: resp.into_body(),
            cancel: Box::pin(cancel.cancelled_owned()),
            idle: Box::pin(tokio::time::sleep(idle)),
            idle_dur: idle,
            sse: SseMinimizer::new(policy, v.injected_usage, 1 << 20).routed_to(&v.model),
            screen: gw.screening.sse(ex.endpoint, &identity),
            fin,
            done: false,
        };
        let mut out = Response::new(body.boxed());
        let h = out.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return out;
    }
    // Whole JSON body, bounded and timed.
    let max = gw.config.validation.max_response_bytes;
    let collected = tokio::select! {
        r = tokio::time::timeout(idle, Limited::new(resp.into_body(), max).collect()) => r,
        () = cancel.cancelled() => {
            fin.rec.outcome = "cut".into();
            return fail(fin, StatusCode::FORBIDDEN, "identity is blocked");
        }
    };
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => {
            return fail(
                fin,
                StatusCode::BAD_GATEWAY,
                "upstream response unreadable or too large",
            );
        }
        Err(_) => return fail(fin, StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
    };
    let out_bytes = if status.is_success() {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            // Every forwarded endpoint answers with an object; anything else (an array, a
            // string) has no allowlist to go through and is refused, as a stream drops
            // such an event.
            Ok(j) if !j.is_object() => {
                return fail(
                    fin,
                    StatusCode::BAD_GATEWAY,
                    "upstream sent a JSON body that is not an object",
                );
            }
            Ok(mut j) => {
                if let Some(u) = minimize::minimize_routed(&mut j, policy, Some(&v.model)) {
                    fin.usage = Some(u.total_tokens);
                }
                if let Err(rule) = gw
                    .screening
                    .screen_json(&mut j, &identity, fin.screen.as_mut())
                {
                    fin.rec.decision = "deny".into();
                    fin.rec.reason = format!("screen: output blocked ({rule})");
                    fin.rec.outcome = "blocked".into();
                    fin.rec.status = 403;
                    let id = fin.rec.request_id;
                    drop(fin);
                    let why = format!("response stopped by output screening ({rule})");
                    return json_error(&Refusal::new(StatusCode::FORBIDDEN, "screen", why), id);
                }
                // Same compact JSON as `Display`, without the formatter adapter.
                match serde_json::to_vec(&j) {
                    Ok(v) => Bytes::from(v),
                    Err(_) => {
                        return fail(fin, StatusCode::BAD_GATEWAY, "upstream sent invalid JSON");
                    }
                }
            }
            Err(_) => return fail(fin, StatusCode::BAD_GATEWAY, "upstream sent invalid JSON"),
        }
    } else {
        // Upstream errors: keep only a short message, cut after screening (a secret
        // straddling the cut would not match while its prefix went out). A server
        // error's message describes the model server's insides (stack traces, paths,
        // versions, its own configuration), not the client's request: it goes to the
        // operator's log, and the client gets the generic message unless the model's
        // `relay_upstream_server_errors` says otherwise.
        let generic = || format!("upstream returned {}", status.as_u16());
        let upstream_msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|j| j.get("error")?.get("message")?.as_str().map(str::to_owned));
        let msg = match upstream_msg {
            Some(m) if status.is_server_error() && !up.relay_server_errors => {
                let cut = m.char_indices().nth(300).map_or(m.len(), |(i, _)| i);
                tracing::warn!(
                    request_id = fin.rec.request_id,
                    model = %v.model,
                    status = status.as_u16(),
                    upstream_message = %m[..cut].escape_debug(),
                    "upstream server error (generic message sent to the client)"
                );
                generic()
            }
            Some(m) => m,
            None => generic(),
        };
        let error = |m: String| serde_json::json!({"error": {"message": m, "type": "upstream_error", "code": status.as_u16()}});
        let mut j = error(msg);
        fin.rec.decision = "error".into();
        fin.rec.reason = format!("upstream: {}", status.as_u16());
        // The message is upstream text like any answer: screened the same way. A block
        // keeps the status but releases only the generic message.
        if let Err(rule) = gw
            .screening
            .screen_json(&mut j, &identity, fin.screen.as_mut())
        {
            fin.rec.decision = "deny".into();
            fin.rec.reason = format!(
                "screen: output blocked ({rule}) in upstream error {}",
                status.as_u16()
            );
            fin.rec.outcome = "blocked".into();
            j = error(generic());
        } else if let Some(serde_json::Value::String(m)) =
            j.get_mut("error").and_then(|e| e.get_mut("message"))
        {
            if let Some((cut, _)) = m.char_indices().nth(300) {
                m.truncate(cut);
            }
        }
        Bytes::from(j.to_string())
    };
    fin.sent(&out_bytes);
    if fin.rec.outcome != "blocked" {
        fin.rec.outcome = "complete".into();
    }
    let mut out = Response::new(full(out_bytes));
    *out.status_mut() = status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}

fn fail(mut fin: Finisher, status: StatusCode, why: &str) -> Response<GwBody> {
    fin.rec.status = status.as_u16();
    fin.rec.decision = "error".into();
    fin.rec.reason = format!("upstream: {why}");
    if fin.rec.outcome.is_empty() {
        fin.rec.outcome = "upstream-error".into();
    }
    let id = fin.rec.request_id;
    drop(fin);
    json_error(&Refusal::new(status, "upstream", why), id)
}

/// A streamed upstream response: minimised event by event, cut by the kill switch,
/// bounded by an idle timeout.
struct StreamBody {
    inner: Incoming,
    cancel: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_dur: Duration,
    sse: SseMinimizer,
    screen: Option<crate::screening::SseScreen>,
    fin: Finisher,
    done: bool,
}

impl StreamBody {
    /// Minimises `data` (`None`: the stream ended) and screens the result.
    fn pass(&mut self, data: Option<&[u8]>) -> Result<Bytes, SseError> {
        let last = data.is_none();
        let Some(s) = self.screen.as_mut() else {
            return Ok(match data {
                Some(d) => self.sse.feed(d)?,
                None => self.sse.finish(),
            });
        };
        // Output screening of the minimised events; a block ends the stream with an
        // error event.
        let events = match data {
            Some(d) => self.sse.feed_events(d)?,
            None => self.sse.finish_events(),
        };
        let r = s.feed_events(events).and_then(|mut b| {
            if last {
                let rest = s.finish()?;
                let mut m = bytes::BytesMut::from(&b[..]);
                m.extend_from_slice(&rest);
                b = m.freeze();
            }
            Ok(b)
        });
        if last
            && s.refused()
            && let Some(t) = self.fin.screen.as_mut()
        {
            t.set_refused();
        }
        Ok(match r {
            Ok(b) => b,
            Err(rule) => {
                self.done = true;
                self.fin.rec.decision = "deny".into();
                self.fin.rec.reason = format!("screen: output blocked ({rule})");
                self.fin.rec.outcome = "blocked".into();
                crate::screening::blocked_event(&rule)
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StreamCut(&'static str);

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.cancel.as_mut().poll(cx).is_ready() {
            this.done = true;
            this.fin.rec.outcome = "cut".into();
            this.fin.rec.reason = "cut: identity blocked".into();
            return Poll::Ready(Some(Err(Box::new(StreamCut("identity blocked")))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.idle
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle_dur);
                    match this.pass(Some(&data)) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => {
                            if let Some(u) = this.sse.usage {
                                this.fin.usage = Some(u.total_tokens);
                            }
                            this.fin.sent(&out);
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        Err(e) => {
                            this.done = true;
                            this.fin.rec.outcome = "upstream-error".into();
                            this.fin.rec.reason = format!("upstream: {e}");
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.fin.rec.outcome = "upstream-error".into();
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    // Ending cannot fail: only a chunk can make an event too large.
                    let rest = this.pass(None).unwrap_or_default();
                    if let Some(u) = this.sse.usage {
                        this.fin.usage = Some(u.total_tokens);
                    } else {
                        this.fin.usage = Some(this.sse.events);
                    }
                    this.fin.rec.outcome = "complete".into();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    this.fin.sent(&rest);
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        this.fin.rec.outcome = "upstream-error".into();
                        this.fin.rec.reason = "upstream: idle timeout".into();
                        return Poll::Ready(Some(Err(Box::new(StreamCut(
                            "upstream idle timeout",
                        )))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// A bound public listener (bind early so start-up fails loudly).
#[derive(Debug)]
pub struct Listeners {
    /// Public.
    pub public: TcpListener,
    /// Admin.
    pub admin: TcpListener,
}

/// Bind both listeners.
pub async fn bind(cfg: &GatewayConfig) -> Result<Listeners, Error> {
    let b = |a: SocketAddr| async move {
        TcpListener::bind(a).await.map_err(|cause| Error::Listen {
            addr: a.to_string(),
            cause,
        })
    };
    Ok(Listeners {
        public: b(cfg.listen).await?,
        admin: b(cfg.admin.listen).await?,
    })
}

/// Serve until `shutdown` is cancelled.
pub async fn run(
    gw: Arc<Gateway>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let cfg = Arc::clone(&gw.config);
    let public_tls = match (&cfg.tls, cfg.insecure_plaintext) {
        (Some(t), _) => Some(ListenerTls::new(t)?),
        (None, true) => None,
        (None, false) => return Err(Error::Config("TLS is required".into())),
    };
    let admin_tls = ListenerTls::new(&cfg.admin.tls)?;
    let admin_state = Arc::new(admin::AdminState::new(Arc::clone(&gw))?);
    if gw.config.oidc.is_some() {
        // A provider unreachable at start must not keep the gateway down (API keys and
        // mTLS do not need it): the key set stays never-fetched, so every token is
        // refused (`StaleKeySet`, 503) and asks the refresher below for another fetch.
        if let Err(e) = gw.refresh_jwks().await {
            tracing::error!(error = %e, "JWKS fetch failed at start; tokens are refused until a fetch succeeds");
        }
        let g = Arc::clone(&gw);
        tokio::spawn(async move {
            let every = Duration::from_secs(
                g.config
                    .oidc
                    .as_ref()
                    .map_or(300, |o| o.jwks_refresh_secs.max(10)),
            );
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = g.jwks_refresh.notified() => {}
                }
                if let Err(e) = g.refresh_jwks().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous key set until jwks_max_age_secs");
                }
                // At most one fetch per 10 s, however many unknown kids arrive.
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
    }
    // Certificate, client CA and CRL reload, and state sync (blocks/lockdown written by
    // other processes).
    {
        let g = Arc::clone(&gw);
        let listeners = [
            ("public", public_tls.clone()),
            ("admin", Some(Arc::clone(&admin_tls))),
        ];
        // Read before the admin listener serves: from here on, only changes of the store
        // are applied (see `KillSwitch::apply_store`).
        let mut seen = crate::killswitch::StoreSeen::default();
        g.kill.apply_store(
            &mut seen,
            g.directory.blocked().ok(),
            g.directory.lockdown().ok(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                for (name, t) in &listeners {
                    let Some(t) = t else { continue };
                    match t.reload_cert_if_changed() {
                        Ok(true) => tracing::info!(listener = name, "certificate reloaded"),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(listener = name, error = %e, "certificate reload refused; keeping the old one")
                        }
                    }
                    // Re-checking every open connection's chain is CPU work (one
                    // verification per distinct chain): off the runtime's threads.
                    let reloading = Arc::clone(t);
                    let reloaded = tokio::task::spawn_blocking(move || {
                        reloading.reload_client_trust_if_changed()
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(Error::Config(format!(
                            "client CA/CRL reload task failed: {e}"
                        )))
                    });
                    match reloaded {
                        Ok(Some(cut)) => {
                            tracing::info!(
                                listener = name,
                                closed = cut.len(),
                                "client CAs and CRLs reloaded; open connections whose client certificate they refuse are closed"
                            );
                            for u in &cut {
                                report_untrusted(&g, name, u);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(listener = name, error = %e, "client CA/CRL reload refused; keeping the old ones")
                        }
                    }
                }
                let blocked = g
                    .directory
                    .blocked()
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot read blocks"))
                    .ok();
                let lockdown = g
                    .directory
                    .lockdown()
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot read lockdown state"))
                    .ok();
                g.kill.apply_store(&mut seen, blocked, lockdown);
            }
        });
    }
    let admin_task = tokio::spawn(admin::serve(
        admin_state,
        listeners.admin,
        admin_tls,
        shutdown.clone(),
    ));
    let acceptor = public_tls;
    let workers = match gw.config.effective_workers() {
        0 => None,
        n => {
            let (g, tls) = (Arc::clone(&gw), acceptor.clone());
            let serve = move |c| serve_handed(Arc::clone(&g), c, tls.clone());
            Some(crate::workers::Workers::start(n, serve, &shutdown)?)
        }
    };
    serve_public(
        Arc::clone(&gw),
        listeners.public,
        acceptor,
        workers.as_ref(),
        shutdown.clone(),
    )
    .await;
    admin_task.abort();
    // The workers' connections hold the gateway and through it the audit log, which
    // commits what is queued when the last holder lets go: wait for them, so the
    // caller's closing of the log is the last word and no record is lost on exit.
    if let Some(w) = workers
        && !w.join(Duration::from_secs(10)).await
    {
        tracing::warn!("connection workers did not stop within 10 s");
    }
    Ok(())
}

async fn serve_public(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<ListenerTls>>,
    workers: Option<&crate::workers::Workers>,
    shutdown: CancellationToken,
) {
    let addr = gw.config.listen;
    let mut listener = Some(listener);
    let mut lock_rx = gw.kill.watch_lockdown();
    loop {
        if gw.kill.locked_down() {
            if listener.take().is_some() {
                tracing::warn!(%addr, "lockdown: public listener closed");
            }
            tokio::select! {
                _ = lock_rx.changed() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "public listener open");
                    l
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e, "cannot reopen the public listener; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            r = l.accept() => {
                listener = Some(l);
                match r {
                    Ok((tcp, peer)) => {
                        let Some(hold) = ConnSlot::take(&gw, peer.ip()) else {
                            // Closed before any byte is read: no TLS work for it.
                            drop(tcp);
                            continue;
                        };
                        let token = gw.kill.connection_token();
                        match workers {
                            Some(w) => hand_over(&gw, w, tcp, peer, tls.as_ref(), token, hold),
                            None => {
                                let (g, t) = (Arc::clone(&gw), tls.clone());
                                tokio::spawn(async move {
                                    let _hold = hold;
                                    serve_conn(g, tcp, peer, t, token).await;
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            _ = lock_rx.changed() => { listener = Some(l); }
            () = shutdown.cancelled() => return,
        }
    }
}

/// One open public connection, counted against `max_connections` and its address's
/// `max_connections_per_ip` until dropped.
struct ConnSlot(Arc<Gateway>, IpAddr);

impl ConnSlot {
    /// A slot, or None (counted, logged at most once a second) when all are taken or
    /// the address holds its share.
    fn take(gw: &Arc<Gateway>, ip: IpAddr) -> Option<ConnSlot> {
        let open = gw.metrics.connections.fetch_add(1, Ordering::AcqRel);
        let global_full = usize::try_from(open).is_ok_and(|n| n >= gw.config.max_connections);
        let ip_full = global_full
            || gw.conns_per_ip.lock().map_or(true, |mut m| {
                let n = m.entry(ip).or_insert(0);
                if *n >= gw.config.max_connections_per_ip {
                    true
                } else {
                    *n += 1;
                    false
                }
            });
        if global_full || ip_full {
            gw.metrics.connections.fetch_sub(1, Ordering::AcqRel);
            let refused = gw
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            let now = unix_now();
            if gw.conn_refusal_logged.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(
                    %ip,
                    max_connections = gw.config.max_connections,
                    max_connections_per_ip = gw.config.max_connections_per_ip,
                    refused_so_far = refused + 1,
                    "public connection refused: {}",
                    if global_full { "max_connections open" } else { "max_connections_per_ip open from this address" }
                );
            }
            return None;
        }
        Some(ConnSlot(Arc::clone(gw), ip))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.conns_per_ip.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
        self.0.metrics.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Give an accepted connection to the next worker; if none can take it, serve it here.
fn hand_over(
    gw: &Arc<Gateway>,
    workers: &crate::workers::Workers,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<&Arc<ListenerTls>>,
    token: CancellationToken,
    hold: ConnSlot,
) {
    let tcp = match tcp.into_std() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot hand a connection to a worker");
            return;
        }
    };
    let hold = Box::new(hold);
    if let Err(c) = workers.dispatch(crate::workers::Conn {
        tcp,
        peer,
        token,
        hold,
    }) {
        tokio::spawn(serve_handed(Arc::clone(gw), c, tls.cloned()));
    }
}

/// Register a handed-over socket with the current runtime and serve it.
async fn serve_handed(gw: Arc<Gateway>, c: crate::workers::Conn, tls: Option<Arc<ListenerTls>>) {
    let _hold = c.hold;
    match TcpStream::from_std(c.tcp) {
        Ok(tcp) => serve_conn(gw, tcp, c.peer, tls, c.token).await,
        Err(e) => tracing::warn!(peer = %c.peer, error = %e, "cannot register a connection"),
    }
}

/// Log (warn) and audit a connection cut because the client CA/CRL configuration of
/// `listener` no longer accepts its client certificate. Names the certificate (identity,
/// subject, serial), never key material.
pub(crate) fn report_untrusted(gw: &Gateway, listener: &str, u: &tls::Untrusted) {
    let cause = u.cause();
    tracing::warn!(
        listener,
        peer = %u.peer,
        identity = u.identity.as_deref().unwrap_or("-"),
        subject = %u.subject,
        serial = %u.serial,
        cause = %cause,
        "open connection closed: {cause}"
    );
    let rec = AuditRecord {
        ts_ms: now_ms(),
        kind: "connection-closed".into(),
        request_id: gw.next_id.fetch_add(1, Ordering::Relaxed),
        identity: u.identity.clone(),
        auth: Some("mtls".into()),
        source_ip: ip_string(u.peer.ip()),
        endpoint: format!("{listener} listener"),
        decision: "deny".into(),
        reason: format!("tls: {cause}; subject {}, serial {}", u.subject, u.serial),
        outcome: "cut".into(),
        ..AuditRecord::default()
    };
    if let Err(e) = gw.audit.submit(rec) {
        tracing::error!(error = %e, "audit record of a connection closed for its client certificate could not be queued");
    }
}

/// Requests in progress on one client connection (a streamed answer counts until its
/// body ends or is dropped) and when the connection was last busy.
#[derive(Debug)]
struct Activity {
    active: AtomicUsize,
    last_ms: AtomicU64,
}

/// One request in progress; dropped with its answer's body.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.active.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(a))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(now_ms(), Ordering::Release);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request counted as in progress.
struct BusyBody {
    inner: GwBody,
    _busy: Busy,
}

impl Body for BusyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer, its request counted as in progress until the body is sent or dropped.
fn busy_until_sent(resp: Response<GwBody>, busy: Busy) -> Response<GwBody> {
    resp.map(|inner| BusyBody { inner, _busy: busy }.boxed())
}

/// Resolves once the connection has had no request in progress for `idle`.
async fn idle_for(a: &Activity, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let since = now_ms().saturating_sub(a.last_ms.load(Ordering::Acquire));
        if a.active.load(Ordering::Acquire) == 0 && since >= idle_ms {
            return;
        }
        let wait = if a.active.load(Ordering::Acquire) > 0 {
            idle_ms
        } else {
            idle_ms - since
        };
        tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
    }
}

/// HTTP/2 bounds shared by both listeners. What one connection may make the gateway hold:
/// at most 256 streams, each with at most 64 KiB of answer queued for a client that does
/// not read (hyper's default is 400 KiB a stream: about 100 MB for one slow reader) and,
/// coming in, at most the 1 MiB connection window of body bytes not yet read (each stream
/// 256 KiB). Streams the client resets before they are served, and streams the gateway
/// has to reset, are capped (a rapid-reset flood closes the connection). A ping every
/// 20 s, unanswered for 20 s, closes a connection whose peer has gone while a long
/// stream keeps it from counting as idle.
pub(crate) fn h2_limits<'a, 'b>(
    b: &'a mut hyper_util::server::conn::auto::Http2Builder<'b, TokioExecutor>,
) -> &'a mut hyper_util::server::conn::auto::Http2Builder<'b, TokioExecutor> {
    b.timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_send_buf_size(64 * 1024)
        .initial_stream_window_size(256 * 1024)
        .initial_connection_window_size(1024 * 1024)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
}

/// Serve one connection (HTTP/1.1 or HTTP/2) until it ends, lockdown cancels `token`, or
/// a reloaded client CA/CRL configuration no longer accepts its client certificate.
async fn serve_conn(
    gw: Arc<Gateway>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ListenerTls>>,
    token: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    // This connection's own token: lockdown cancels it with its parent, a trust reload
    // (through `ListenerTls::track`) cancels it alone.
    let conn_token = token.child_token();
    let (io, client_cert, _tracked) = match tls {
        Some(t) => {
            let (acceptor, epoch) = t.acceptor();
            let hs = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => r,
                () = token.cancelled() => return,
            };
            match hs {
                Ok(Ok(s)) => {
                    let certs = s.get_ref().1.peer_certificates();
                    let id = t.client_identity(certs);
                    let tracked = match t.track(certs, epoch, peer, &conn_token) {
                        Ok(tracked) => tracked,
                        Err(u) => {
                            report_untrusted(&gw, "public", &u);
                            return;
                        }
                    };
                    (tokio_util::either::Either::Left(s), id, Some(tracked))
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
        None => (tokio_util::either::Either::Right(tcp), None, None),
    };
    let g = Arc::clone(&gw);
    let activity = Arc::new(Activity {
        active: AtomicUsize::new(0),
        last_ms: AtomicU64::new(now_ms()),
    });
    let a = Arc::clone(&activity);
    let svc = hyper::service::service_fn(move |req| {
        let busy = Busy::new(&a);
        let answer = handle(Arc::clone(&g), peer, client_cert.clone(), req);
        async move { Ok::<_, Infallible>(busy_until_sent(answer.await?, busy)) }
    });
    let idle = Duration::from_secs(gw.config.timeouts.client_idle_secs);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(15))
        .max_buf_size(64 * 1024);
    h2_limits(builder.http2().max_header_list_size(64 * 1024));
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                let parse = e.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_parse() || h.is_parse_too_large());
                if parse {
                    let rec = AuditRecord {
                        ts_ms: now_ms(),
                        kind: "malformed".into(),
                        request_id: gw.next_id.fetch_add(1, Ordering::Relaxed),
                        source_ip: ip_string(peer.ip()),
                        decision: "deny".into(),
                        reason: format!("http: {e}"),
                        status: 400,
                        outcome: "refused".into(),
                        ..AuditRecord::default()
                    };
                    let _ = gw.audit.submit(rec);
                }
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = conn_token.cancelled() => {
            if token.is_cancelled() {
                tracing::info!(%peer, "connection closed by lockdown");
            } else {
                tracing::info!(%peer, "connection closed: its client certificate no longer verifies");
            }
        }
        () = idle_for(&activity, idle) => {
            tracing::debug!(%peer, "idle connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_string_is_display() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 0, 10, 255),
                Ipv4Addr::new(127, o, 1, 99),
                Ipv4Addr::new(1, 100, o, 9),
                Ipv4Addr::new(250, 3, 42, o),
            ] {
                assert_eq!(ip_string(IpAddr::V4(ip)), ip.to_string());
            }
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(ip_string(v6), "::1");
    }

    #[test]
    fn host_header_is_what_hyper_util_writes() {
        // hyper-util (`Client::send_request`): the host, plus the port as written unless
        // it is 443 on https/wss or 80 otherwise.
        for (uri, want) in [
            (
                "http://127.0.0.1:19200/v1/chat/completions",
                "127.0.0.1:19200",
            ),
            ("http://localhost/v1/models", "localhost"),
            ("http://h.example:80/x", "h.example"),
            ("http://h.example:443/x", "h.example:443"),
            ("https://h.example:443/x", "h.example"),
            ("https://h.example:80/x", "h.example:80"),
            ("https://h.example/x", "h.example"),
            ("http://[::1]:8080/v1/embeddings", "[::1]:8080"),
            // `Port` displays its number (hyper-util formats the same `Port`).
            ("http://h.example:08080/x", "h.example:8080"),
        ] {
            let u: http::Uri = uri.parse().unwrap();
            assert_eq!(host_header(&u).unwrap(), want, "{uri}");
        }
    }

    #[test]
    fn upstream_uris_are_base_plus_endpoint_path() {
        let up = Upstream::new(
            "http://127.0.0.1:9/api/",
            None,
            Arc::from(Vec::new()),
            false,
        );
        for ep in ENDPOINTS {
            assert_eq!(
                up.uri(ep).unwrap().to_string(),
                format!("http://127.0.0.1:9/api{}", ep.path())
            );
        }
        assert_eq!(up.host.as_ref().unwrap(), "127.0.0.1:9");
        let bad = Upstream::new("http://bad host", None, Arc::from(Vec::new()), false);
        assert!(bad.uri(Endpoint::Chat).is_none() && bad.host.is_none());
    }
}
