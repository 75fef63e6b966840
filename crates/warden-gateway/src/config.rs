//! The `[gateway]` table of `warden.toml`, as typed values. The CLI reads the file; this
//! crate only receives the parsed table (library crates read no configuration files
//! themselves, except the certificates and policies the configuration names).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public listener address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS for the public listener (required unless `insecure_plaintext`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve the public listener over plain HTTP. Allowed only on a loopback address.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Models and the upstream that serves each one. Nothing else is reachable.
    pub models: Vec<ModelConfig>,
    /// OIDC provider whose JWTs are accepted.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Cedar policy file; default deny.
    pub policy: PathBuf,
    /// Cedar schema file; the built-in schema when absent.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Default per-identity limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Request validation limits.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Per-role overrides (parameter policy, `max_tokens` cap, limits).
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Audit settings.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Input/output screening, behaviour and drift monitors, alerts (on by default).
    #[serde(default)]
    pub screening: crate::screening::ScreeningConfig,
    /// Threads that serve client connections, each with its own event loop and its own
    /// upstream connection pool; the accepting task hands them connections in turn, so
    /// a request never wakes another thread. Unset: one per core, or none when the
    /// transformer tier is on (an encoder run would stall the worker's other
    /// connections). 0: connections are served on the shared work-stealing runtime.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Open client connections on the public listener at most (default 4096, between 1
    /// and [`MAX_CONNECTIONS`]). A connection accepted beyond it is closed at once, before
    /// its TLS handshake: unauthenticated clients cannot exhaust the file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open public connections from one client address at most (default 512; above
    /// `max_connections` it has no effect), so one source cannot hold every slot. Behind a proxy or load
    /// balancer every connection comes from its address: raise it to `max_connections`.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
}

/// Most connection workers `workers` may ask for.
pub const MAX_WORKERS: usize = 256;

/// Highest `max_connections`.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `max_connections_per_ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 512;
/// Default `timeouts.client_idle_secs`.
pub const DEFAULT_CLIENT_IDLE_SECS: u64 = 60;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_max_connections_per_ip() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_IP
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

/// Certificate, key and client authentication of a listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; reloaded when the file changes.
    pub cert: PathBuf,
    /// PEM private key; reloaded when the file changes.
    pub key: PathBuf,
    /// PEM CA certificates for client certificates (mTLS). Client certificates are
    /// optional on the public listener unless `require_client_cert`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a valid client certificate.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Certificate revocation lists (PEM `X509 CRL` blocks or one DER CRL per file) for
    /// the client certificates; needs `client_ca`. Every certificate of a client's chain
    /// below the trust anchor must be covered by a CRL of its issuer, or the client is
    /// refused. Reloaded, with `client_ca`, when a file changes.
    #[serde(default)]
    pub client_crl: Vec<PathBuf>,
    /// Accept a CRL whose nextUpdate has passed (refused by default: every client
    /// certificate is then refused until a fresh CRL is installed).
    #[serde(default)]
    pub client_crl_allow_expired: bool,
    /// Also offer TLS 1.2 (TLS 1.3 only by default).
    #[serde(default)]
    pub allow_tls12: bool,
    /// Which name of a verified client certificate is its identity: `"dns"` (default,
    /// its first DNS subject alternative name) or `"uri:PREFIX"` (its URI subject
    /// alternative name under PREFIX, such as a SPIFFE ID, minus the prefix).
    #[serde(default)]
    pub client_identity: ClientIdentity,
}

/// How a verified client certificate names the identity it authenticates.
///
/// With `Dns`, every certificate the client CA issues with a DNS name equal to a
/// registered identity (or an administrator's name) authenticates as it, so that CA
/// must issue certificates for Warden only. `UriPrefix` scopes identities to one
/// namespace of the organisation's PKI: only a URI name under the prefix counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ClientIdentity {
    /// The first DNS subject alternative name.
    #[default]
    Dns,
    /// The URI subject alternative name starting with this prefix (which ends with
    /// `/`), the rest of it being the identity. A certificate with none, or with two
    /// naming different identities, names no identity.
    UriPrefix(String),
}

impl TryFrom<String> for ClientIdentity {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s == "dns" {
            return Ok(ClientIdentity::Dns);
        }
        let Some(prefix) = s.strip_prefix("uri:") else {
            return Err(format!(
                "client_identity = {s:?}: expected \"dns\" or \"uri:PREFIX\" (for example \
                 \"uri:spiffe://corp.example/warden/\")"
            ));
        };
        // `scheme://authority/…/`: the authority pins the namespace, and the final `/`
        // keeps `…/warden` from also matching `…/warden-other/alice`.
        let authority = prefix
            .split_once("://")
            .filter(|(scheme, _)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            })
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.is_none_or(str::is_empty)
            || !prefix.ends_with('/')
            || !prefix.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(format!(
                "client_identity = {s:?}: the prefix must be scheme://authority/ with an \
                 optional path, end with '/' and hold no spaces or non-ASCII characters"
            ));
        }
        Ok(ClientIdentity::UriPrefix(prefix.to_owned()))
    }
}

/// The admin listener: always TLS with client certificates; mutating calls need TOTP too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin listener address.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// TLS; `client_ca` is required.
    pub tls: TlsConfig,
    /// Administrators: the DNS name in their client certificate and their TOTP secret.
    pub admins: Vec<AdminUser>,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9443))
}

/// One administrator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    /// Name, as the admin's client certificate names it (its first DNS subject
    /// alternative name unless `[gateway.admin.tls] client_identity` says otherwise).
    pub name: String,
    /// File holding the base32 TOTP secret.
    pub totp_secret_file: PathBuf,
}

/// A model and its upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name clients use.
    pub name: String,
    /// Upstream base URL, `https://host[:port]` or `http://host:port` (the path is
    /// appended; nothing else). Plain `http://` is accepted only for a loopback host
    /// unless `allow_plaintext_upstream`.
    pub upstream: String,
    /// PEM CA certificates the `https://` upstream's certificate must chain to; the
    /// system roots (`SSL_CERT_FILE`, else the distribution's bundle) when absent.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// PEM client certificate chain presented to the upstream (mTLS); needs
    /// `upstream_client_key`.
    #[serde(default)]
    pub upstream_client_cert: Option<PathBuf>,
    /// PEM private key of `upstream_client_cert`.
    #[serde(default)]
    pub upstream_client_key: Option<PathBuf>,
    /// Also offer TLS 1.2 to the upstream (TLS 1.3 only by default).
    #[serde(default)]
    pub upstream_allow_tls12: bool,
    /// Allow plain `http://` to a non-loopback upstream (prompts and responses cross the
    /// network unencrypted and unauthenticated; `warden posture` warns).
    #[serde(default)]
    pub allow_plaintext_upstream: bool,
    /// Classification level (Cedar `resource.classification`).
    #[serde(default)]
    pub classification: i64,
    /// Release identifier (Cedar `resource.release`).
    #[serde(default)]
    pub release: String,
    /// Environment variable holding the upstream's own API key, sent as a bearer token.
    #[serde(default)]
    pub upstream_api_key_env: Option<String>,
    /// Pass the message of an upstream server error (5xx) to clients, screened and cut to
    /// 300 characters. Off by default: clients get "upstream returned N" and the message
    /// goes to the gateway's log (`warden posture` reports it when on). Client errors
    /// (4xx: context too long, bad parameter) are always passed on that way.
    #[serde(default)]
    pub relay_upstream_server_errors: bool,
}

/// OIDC JWT acceptance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (string or member of the array).
    pub audience: String,
    /// JWKS address (`https://…`, or `http://` on loopback only).
    pub jwks_url: String,
    /// PEM CA certificates to verify the JWKS server with.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Accepted algorithms (asymmetric only).
    #[serde(default = "default_algs")]
    pub algorithms: Vec<String>,
    /// Claim holding the roles (array of strings).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding the team.
    #[serde(default = "default_team_claim")]
    pub team_claim: String,
    /// Claim holding the clearance (integer).
    #[serde(default = "default_clearance_claim")]
    pub clearance_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds (default 30, at most
    /// [`MAX_LEEWAY_SECS`]).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// How often the key set is refreshed, seconds.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// Oldest key set still used, seconds since its last successful fetch. While the
    /// provider is unreachable the previous set is kept, but past this age every token is
    /// refused (503): keys the provider rotated out meanwhile must not stay valid for ever.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// Serve a token sent over a connection that presented a client certificate as the
    /// token's identity (the certificate then only authenticates the transport: a device
    /// or workload certificate carrying a user's token). Off by default: the two name
    /// different identities (`jwt:<sub>` is never a certificate's name) and such a request
    /// is refused as conflicting credentials. `warden posture` reports it when on.
    #[serde(default)]
    pub tokens_with_client_certificates: bool,
}

/// Default [`OidcConfig::jwks_max_age_secs`]: 24 h.
pub const DEFAULT_JWKS_MAX_AGE_SECS: u64 = 86_400;
/// Largest accepted [`OidcConfig::jwks_max_age_secs`]: 7 days.
pub const MAX_JWKS_MAX_AGE_SECS: u64 = 7 * 86_400;
/// Largest accepted [`OidcConfig::leeway_secs`]: 5 minutes. More is not clock skew but
/// an extension of every token's lifetime (an expired or revoked-by-expiry token would
/// stay valid for that long).
pub const MAX_LEEWAY_SECS: u64 = 300;

fn default_algs() -> Vec<String> {
    ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_team_claim() -> String {
    "team".into()
}
fn default_clearance_claim() -> String {
    "clearance".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_max_age() -> u64 {
    DEFAULT_JWKS_MAX_AGE_SECS
}

/// Per-identity limits.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per minute.
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u32,
    /// Tokens (prompt estimate + `max_tokens`) per minute.
    #[serde(default = "default_tpm")]
    pub tokens_per_minute: u64,
    /// Requests in flight at once, counted from authentication (before the body is
    /// read) until the response ends.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_minute: default_rpm(),
            tokens_per_minute: default_tpm(),
            concurrency: default_concurrency(),
        }
    }
}
fn default_rpm() -> u32 {
    600
}
fn default_tpm() -> u64 {
    200_000
}
fn default_concurrency() -> u32 {
    16
}

/// Request validation limits.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// Largest request body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest single message or prompt, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Most messages in one chat request.
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Highest `max_tokens` accepted (roles may lower it).
    #[serde(default = "default_max_tokens_cap")]
    pub max_tokens_cap: u64,
    /// `max_tokens` set when the client sends none.
    #[serde(default = "default_default_max_tokens")]
    pub default_max_tokens: u64,
    /// Largest non-streamed upstream response, bytes.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// Forward content parts that name media by URL (`image_url` with `https://…`,
    /// `input_file` URLs, …). Off by default: the model server fetches them from its own
    /// network (internal services, cloud metadata, local files) and what it fetches is
    /// never screened; clients send media inline as `data:` URLs instead. `warden
    /// posture` warns when on (WP228).
    #[serde(default)]
    pub allow_media_urls: bool,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            max_body_bytes: default_max_body(),
            max_message_bytes: default_max_message(),
            max_messages: default_max_messages(),
            max_tokens_cap: default_max_tokens_cap(),
            default_max_tokens: default_default_max_tokens(),
            max_response_bytes: default_max_response(),
            allow_media_urls: false,
        }
    }
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_max_message() -> usize {
    256 << 10
}
fn default_max_messages() -> usize {
    256
}
fn default_max_tokens_cap() -> u64 {
    4096
}
fn default_default_max_tokens() -> u64 {
    512
}
fn default_max_response() -> usize {
    16 << 20
}

/// What to do with a request parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamAction {
    /// Pass it (and, for logprobs, return the data).
    Allow,
    /// Remove it silently before forwarding.
    Strip,
    /// Refuse the request with 400.
    Deny,
}

/// Per-role settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Lower `max_tokens` cap for this role.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Parameter policy overrides: `logprobs`, `top_logprobs`, `logit_bias`, `echo`,
    /// `n`, `best_of`, `seed`, `unknown`.
    #[serde(default)]
    pub params: BTreeMap<String, ParamAction>,
    /// Limits for identities with this role.
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP connect, milliseconds.
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    /// Until the upstream's response headers, seconds.
    #[serde(default = "default_header_secs")]
    pub response_header_secs: u64,
    /// Longest silence between two body chunks, seconds.
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// A client connection with no request in progress (a streamed answer counts until
    /// its end) for this long is closed, seconds (default 60, 1 to 3600). HTTP/2 has no
    /// other idle limit; HTTP/1.1 also has the 15-s header read timeout.
    #[serde(default = "default_client_idle_secs")]
    pub client_idle_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: default_connect_ms(),
            response_header_secs: default_header_secs(),
            idle_secs: default_idle_secs(),
            client_idle_secs: default_client_idle_secs(),
        }
    }
}
fn default_connect_ms() -> u64 {
    2000
}
fn default_header_secs() -> u64 {
    120
}
fn default_idle_secs() -> u64 {
    60
}
fn default_client_idle_secs() -> u64 {
    DEFAULT_CLIENT_IDLE_SECS
}

/// Audit settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record SHA-256 of prompts and responses (on by default).
    #[serde(default = "yes")]
    pub hash_content: bool,
    /// How long the audit log writer gathers records into one durable commit, in
    /// milliseconds (default 5, at most 100). Request records are queued without waiting
    /// in any case; a crash loses at most the records of the current window and of the
    /// commit in progress. Block and lockdown wait at most this much longer for their
    /// durable acknowledgement.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// How long request records may stay durable in the log's journal before they are
    /// published as tiles and a signed checkpoint, in milliseconds (default 1000, at
    /// most [`MAX_PUBLISH_MS`]; 0 publishes every commit). Durability is `batch_ms` either way: this
    /// trades the many small files of a publication per commit for one journal append
    /// per commit. Block, lockdown and other events that wait for their index are
    /// published at once.
    #[serde(default = "default_publish_ms")]
    pub publish_ms: u64,
    /// Most records waiting for their durable commit, counting the room each request
    /// in flight reserves for its record (default [`DEFAULT_AUDIT_MAX_QUEUED`], 1 to
    /// [`MAX_AUDIT_MAX_QUEUED`]). While none is left (requests in flight hold it all,
    /// or the log's disk stalls or falls behind) the gateway fails closed: requests are
    /// refused (503, nothing forwarded) until room frees. `/readyz` stays ready for
    /// that alone (busy is not unready); it is not ready while records lost meanwhile
    /// wait for their `audit-gap` record (after the queue drains). Bounds the memory a stalled writer
    /// lets requests fill, and the records a crash can lose.
    #[serde(default = "default_audit_max_queued")]
    pub max_queued: usize,
    /// Nice value added to the audit writer thread (default 10, 0 to 19; Linux): a
    /// commit woken beside a request then waits for it or runs on another core, instead
    /// of preempting it (at nice 0 a commit's burst delayed the request on its core by
    /// up to 2 ms while the other core idled: the tail at concurrency 1). The writer
    /// keeps a share of the CPU; a writer that falls behind still fails requests closed
    /// through `max_queued`.
    #[serde(default = "default_writer_nice")]
    pub writer_nice: i32,
}
fn default_writer_nice() -> i32 {
    10
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            hash_content: true,
            batch_ms: default_batch_ms(),
            publish_ms: default_publish_ms(),
            max_queued: DEFAULT_AUDIT_MAX_QUEUED,
            writer_nice: default_writer_nice(),
        }
    }
}
fn default_batch_ms() -> u64 {
    5
}
fn default_publish_ms() -> u64 {
    // A publication per commit creates and replaces several small files every batch_ms;
    // on a busy gateway that was a fifth of its CPU (README, "Gateway benchmark": ext4's
    // inode allocator, file creation and directory syncs), against one journal append.
    1000
}
/// Default of `[gateway.audit] max_queued` (the log's own default).
pub const DEFAULT_AUDIT_MAX_QUEUED: usize = warden_tlog::log::DEFAULT_MAX_QUEUED;
/// Upper bound of `[gateway.audit] max_queued` (records are a few hundred bytes each).
pub const MAX_AUDIT_MAX_QUEUED: usize = 1 << 20;
fn default_audit_max_queued() -> usize {
    DEFAULT_AUDIT_MAX_QUEUED
}
/// Upper bound of `[gateway.audit] publish_ms`, well below the 30 s other writers of
/// the log wait for its lock.
pub const MAX_PUBLISH_MS: u64 = 10_000;
fn yes() -> bool {
    true
}

impl GatewayConfig {
    /// How many connection workers to start (see [`GatewayConfig::workers`]).
    pub fn effective_workers(&self) -> usize {
        match self.workers {
            Some(w) => w.min(MAX_WORKERS),
            None if self.screening.transformer.is_some() => 0,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        }
    }

    /// Make every relative path relative to `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_tls = |t: &mut TlsConfig| {
            fix(&mut t.cert);
            fix(&mut t.key);
            if let Some(c) = t.client_ca.as_mut() {
                fix(c);
            }
            for c in &mut t.client_crl {
                fix(c);
            }
        };
        if let Some(t) = self.tls.as_mut() {
            fix_tls(t);
        }
        fix_tls(&mut self.admin.tls);
        for a in &mut self.admin.admins {
            fix(&mut a.totp_secret_file);
        }
        fix(&mut self.policy);
        if let Some(s) = self.schema.as_mut() {
            fix(s);
        }
        if let Some(o) = self.oidc.as_mut()
            && let Some(c) = o.jwks_ca.as_mut()
        {
            fix(c);
        }
        for m in &mut self.models {
            for p in [
                m.upstream_ca.as_mut(),
                m.upstream_client_cert.as_mut(),
                m.upstream_client_key.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                fix(p);
            }
        }
        self.screening.resolve_paths(base);
    }

    /// Check what types cannot: TLS or loopback plaintext, known upstream schemes,
    /// unique model names, admin CA present.
    pub fn validate(&self) -> Result<(), crate::Error> {
        if !(1..=3600).contains(&self.timeouts.client_idle_secs) {
            return Err(crate::Error::Config(format!(
                "timeouts.client_idle_secs = {}: between 1 and 3600",
                self.timeouts.client_idle_secs
            )));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(crate::Error::Config(format!(
                "max_connections = {}: between 1 and {MAX_CONNECTIONS}",
                self.max_connections
            )));
        }
        if self.max_connections_per_ip == 0 {
            return Err(crate::Error::Config(
                "max_connections_per_ip = 0: at least 1 (above max_connections it has no effect)"
                    .into(),
            ));
        }
        if self.workers.is_some_and(|w| w > MAX_WORKERS) {
            return Err(crate::Error::Config(format!(
                "workers: at most {MAX_WORKERS}"
            )));
        }
        if self.workers.is_some_and(|w| w > 0) && self.screening.transformer.is_some() {
            return Err(crate::Error::Config(
                "workers: the transformer screening tier needs workers = 0 (an encoder run \
                 on a connection worker would stall every other connection it serves)"
                    .into(),
            ));
        }
        if self.insecure_plaintext {
            if !self.listen.ip().is_loopback() {
                return Err(crate::Error::Config(format!(
                    "insecure_plaintext is allowed only on a loopback address, not {}",
                    self.listen
                )));
            }
        } else if self.tls.is_none() {
            return Err(crate::Error::Config(
                "[gateway.tls] is required (plain HTTP only with --insecure-plaintext on loopback)"
                    .into(),
            ));
        }
        for (table, t) in [
            ("[gateway.tls]", self.tls.as_ref()),
            ("[gateway.admin.tls]", Some(&self.admin.tls)),
        ] {
            if let Some(t) = t
                && !t.client_crl.is_empty()
                && t.client_ca.is_none()
            {
                return Err(crate::Error::Config(format!(
                    "{table}: client_crl needs client_ca (the CRLs are checked against the client CAs)"
                )));
            }
        }
        if self.admin.tls.client_ca.is_none() {
            return Err(crate::Error::Config(
                "[gateway.admin.tls] needs client_ca: the admin API requires client certificates"
                    .into(),
            ));
        }
        if self.audit.batch_ms > 100 {
            return Err(crate::Error::Config(format!(
                "audit.batch_ms = {}: at most 100 (a crash may lose one window of records)",
                self.audit.batch_ms
            )));
        }
        if !(0..=19).contains(&self.audit.writer_nice) {
            return Err(crate::Error::Config(format!(
                "audit.writer_nice = {}: between 0 and 19 (a negative value would let \
                 commits preempt request threads, and needs privileges)",
                self.audit.writer_nice
            )));
        }
        if self.audit.publish_ms > MAX_PUBLISH_MS {
            return Err(crate::Error::Config(format!(
                "audit.publish_ms = {}: at most {MAX_PUBLISH_MS} (the gateway holds the log's \
                 writer lock while records wait for publication, and other writers such as \
                 `warden keys` wait at most 30 s for it)",
                self.audit.publish_ms
            )));
        }
        if !(1..=MAX_AUDIT_MAX_QUEUED).contains(&self.audit.max_queued) {
            return Err(crate::Error::Config(format!(
                "audit.max_queued = {}: between 1 and {MAX_AUDIT_MAX_QUEUED} (records waiting \
                 for their commit; when full, requests are refused)",
                self.audit.max_queued
            )));
        }
        // A zero limit admits nothing, yet each refusal would be a 429 with a
        // `Retry-After` (1 s for the in-flight cap) that clients follow for ever; denying
        // is the policy's job.
        let limits = std::iter::once(("[gateway.limits]".to_owned(), self.limits)).chain(
            self.roles
                .iter()
                .filter_map(|(r, c)| Some((format!("[gateway.roles.{r}.limits]"), c.limits?))),
        );
        for (table, l) in limits {
            if l.requests_per_minute == 0 || l.tokens_per_minute == 0 || l.concurrency == 0 {
                return Err(crate::Error::Config(format!(
                    "{table}: requests_per_minute, tokens_per_minute and concurrency must be \
                     at least 1 (a zero limit admits nothing; deny with a policy instead)"
                )));
            }
        }
        if self.models.is_empty() {
            return Err(crate::Error::Config(
                "no [[gateway.models]]: nothing to serve".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            if !seen.insert(m.name.as_str()) {
                return Err(crate::Error::Config(format!(
                    "model {} is listed twice",
                    m.name
                )));
            }
            m.validate_upstream()?;
        }
        self.screening.validate()?;
        if let Some(o) = &self.oidc {
            for a in &o.algorithms {
                if !crate::jwt::SUPPORTED_ALGS.contains(&a.as_str()) {
                    return Err(crate::Error::Config(format!(
                        "oidc algorithm {a} is not accepted (asymmetric algorithms only: {})",
                        crate::jwt::SUPPORTED_ALGS.join(", ")
                    )));
                }
            }
            if o.leeway_secs > MAX_LEEWAY_SECS {
                return Err(crate::Error::Config(format!(
                    "oidc leeway_secs = {}: at most {MAX_LEEWAY_SECS} (clock skew, not a \
                     longer token lifetime)",
                    o.leeway_secs
                )));
            }
            // At least two refresh attempts (spaced at least 10 s) fit in the maximum age,
            // so one failed fetch alone never refuses tokens.
            let min_age = o
                .jwks_refresh_secs
                .max(10)
                .saturating_mul(2)
                .saturating_add(10);
            if o.jwks_max_age_secs < min_age || o.jwks_max_age_secs > MAX_JWKS_MAX_AGE_SECS {
                return Err(crate::Error::Config(format!(
                    "oidc jwks_max_age_secs = {}: from {min_age} (twice jwks_refresh_secs, plus \
                     10) to {MAX_JWKS_MAX_AGE_SECS} (7 days)",
                    o.jwks_max_age_secs
                )));
            }
        }
        Ok(())
    }
}

/// How a model's upstream is reached, as far as security goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTransport {
    /// `https://`, certificate verified.
    Tls,
    /// `http://` to a loopback host.
    LoopbackPlaintext,
    /// `http://` to another host, allowed by `allow_plaintext_upstream`.
    NetworkPlaintext,
}

/// Whether a URL host (name or address, IPv6 in brackets) is the loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|i| i.is_loopback())
}

impl ModelConfig {
    /// Check the upstream URL and its TLS options; return how it is reached.
    pub fn validate_upstream(&self) -> Result<UpstreamTransport, crate::Error> {
        let bad = |why: String| crate::Error::Config(format!("model {}: {why}", self.name));
        let uri: http::Uri = self
            .upstream
            .parse()
            .map_err(|_| bad(format!("bad upstream URL {}", self.upstream)))?;
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(bad(format!(
                "upstream must be https://host[:port] or http://host:port (got {})",
                self.upstream
            )));
        };
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(bad(format!(
                "upstream must have no path (got {})",
                self.upstream
            )));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad(format!(
                "upstream must not carry credentials in the URL (got {})",
                self.upstream
            )));
        }
        if self.upstream_client_cert.is_some() != self.upstream_client_key.is_some() {
            return Err(bad(
                "upstream_client_cert and upstream_client_key go together".into(),
            ));
        }
        match uri.scheme_str() {
            Some("https") => Ok(UpstreamTransport::Tls),
            Some("http") => {
                let tls_opts = [
                    ("upstream_ca", self.upstream_ca.is_some()),
                    ("upstream_client_cert", self.upstream_client_cert.is_some()),
                    ("upstream_allow_tls12", self.upstream_allow_tls12),
                ];
                if let Some((opt, _)) = tls_opts.iter().find(|(_, set)| *set) {
                    return Err(bad(format!(
                        "{opt} is set but the upstream {} is plain http (use https://)",
                        self.upstream
                    )));
                }
                if uri.port_u16().is_none() {
                    return Err(bad(format!(
                        "upstream must be http://host:port (got {})",
                        self.upstream
                    )));
                }
                if is_loopback_host(host) {
                    Ok(UpstreamTransport::LoopbackPlaintext)
                } else if self.allow_plaintext_upstream {
                    Ok(UpstreamTransport::NetworkPlaintext)
                } else {
                    Err(bad(format!(
                        "upstream {} is plain http to a host that is not loopback; use https:// \
                         (or set allow_plaintext_upstream = true to accept an unencrypted, \
                         unauthenticated upstream)",
                        self.upstream
                    )))
                }
            }
            _ => Err(bad(format!(
                "upstream must be https://host[:port] or http://host:port (got {})",
                self.upstream
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(upstream: &str, extra: serde_json::Value) -> ModelConfig {
        let mut j = serde_json::json!({"name": "m", "upstream": upstream});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        serde_json::from_value(j).unwrap()
    }

    fn gateway(extra: serde_json::Value) -> GatewayConfig {
        let mut j = serde_json::json!({
            "policy": "p.cedar",
            "insecure_plaintext": true,
            "models": [],
            "admin": {"listen": "127.0.0.1:0", "admins": [], "tls": {"cert": "c", "key": "k"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn client_identity_is_dns_or_a_uri_prefix_ending_in_a_slash() {
        let parse = |v: &str| {
            serde_json::from_value::<TlsConfig>(
                serde_json::json!({"cert": "c", "key": "k", "client_identity": v}),
            )
            .map(|t| t.client_identity)
            .map_err(|e| e.to_string())
        };
        let default: TlsConfig =
            serde_json::from_value(serde_json::json!({"cert": "c", "key": "k"})).unwrap();
        assert_eq!(default.client_identity, ClientIdentity::Dns);
        assert_eq!(parse("dns").unwrap(), ClientIdentity::Dns);
        assert_eq!(
            parse("uri:spiffe://corp.example/warden/").unwrap(),
            ClientIdentity::UriPrefix("spiffe://corp.example/warden/".into())
        );
        assert_eq!(
            parse("uri:spiffe://corp.example/").unwrap(),
            ClientIdentity::UriPrefix("spiffe://corp.example/".into())
        );
        for bad in [
            "DNS",
            "cn",
            "uri:",
            "uri:spiffe://corp.example/warden",
            "uri:spiffe://corp.example",
            "uri:spiffe:///warden/",
            "uri:://corp.example/",
            "uri:warden/",
            "uri:spiffe://corp example/w/",
            "uri:spiffe://corp.example/wärden/",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("client_identity"), "{bad}: {e}");
        }
    }

    #[test]
    fn connection_workers_default_to_the_cores_and_to_none_with_the_transformer_tier() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(gateway(serde_json::json!({})).effective_workers(), cores);
        assert_eq!(
            gateway(serde_json::json!({"workers": 0})).effective_workers(),
            0
        );
        assert_eq!(
            gateway(serde_json::json!({"workers": 3})).effective_workers(),
            3
        );
        let mut t = gateway(serde_json::json!({}));
        t.screening.transformer = Some("enc".into());
        assert_eq!(t.effective_workers(), 0);
        t.workers = Some(2);
        let e = t.validate().unwrap_err();
        assert!(e.to_string().contains("needs workers = 0"), "{e}");
        let e = gateway(serde_json::json!({"workers": 1000}))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("workers: at most 256"), "{e}");
    }

    #[test]
    fn client_crls_need_client_cas_and_resolve_relative_paths() {
        let admin = |tls: serde_json::Value| {
            serde_json::json!({"admin": {"listen": "127.0.0.1:0", "admins": [], "tls": tls},
                "models": [{"name": "m", "upstream": "http://127.0.0.1:1"}]})
        };
        let mut c = gateway(admin(
            serde_json::json!({"cert": "c", "key": "k", "client_ca": "ca", "client_crl": ["a.crl"]}),
        ));
        c.validate().unwrap();
        c.resolve_paths(Path::new("/etc/warden"));
        assert_eq!(
            c.admin.tls.client_crl,
            vec![PathBuf::from("/etc/warden/a.crl")]
        );
        let mut c = gateway(admin(
            serde_json::json!({"cert": "c", "key": "k", "client_ca": "ca"}),
        ));
        c.tls = Some(c.admin.tls.clone());
        if let Some(t) = c.tls.as_mut() {
            t.client_ca = None;
            t.client_crl = vec!["a.crl".into()];
        }
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("[gateway.tls]: client_crl needs client_ca"),
            "{e}"
        );
    }

    #[test]
    fn the_key_set_age_is_bounded_and_defaults_to_a_day() {
        let admin = serde_json::json!({"listen": "127.0.0.1:0", "admins": [],
            "tls": {"cert": "c", "key": "k", "client_ca": "ca"}});
        let with = |oidc: serde_json::Value| {
            let mut o = serde_json::json!({"issuer": "https://idp", "audience": "w",
                "jwks_url": "http://127.0.0.1:1/jwks"});
            for (k, v) in oidc.as_object().unwrap() {
                o[k] = v.clone();
            }
            gateway(serde_json::json!({"admin": admin.clone(), "oidc": o,
                "models": [{"name": "m", "upstream": "http://127.0.0.1:1"}]}))
        };
        let c = with(serde_json::json!({}));
        assert_eq!(
            c.oidc.as_ref().unwrap().jwks_max_age_secs,
            DEFAULT_JWKS_MAX_AGE_SECS
        );
        c.validate().unwrap();
        with(serde_json::json!({"jwks_max_age_secs": 610}))
            .validate()
            .unwrap();
        for (oidc, words) in [
            (
                serde_json::json!({"jwks_max_age_secs": 609}),
                "jwks_max_age_secs = 609: from 610",
            ),
            (
                serde_json::json!({"jwks_refresh_secs": 3600, "jwks_max_age_secs": 3600}),
                "jwks_max_age_secs = 3600: from 7210",
            ),
            (
                serde_json::json!({"jwks_max_age_secs": 7 * 86_400 + 1}),
                "to 604800 (7 days)",
            ),
        ] {
            let e = with(oidc).validate().unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    /// A zero limit is refused (it would answer every request 429 with a `Retry-After`
    /// that no wait honours), in the defaults and in a role.
    #[test]
    fn zero_limits_are_refused() {
        let admin = serde_json::json!({"listen": "127.0.0.1:0", "admins": [],
            "tls": {"cert": "c", "key": "k", "client_ca": "ca"}});
        let with = |extra: serde_json::Value| {
            let mut j = serde_json::json!({"admin": admin.clone(),
                "models": [{"name": "m", "upstream": "http://127.0.0.1:1"}]});
            for (k, v) in extra.as_object().unwrap() {
                j[k] = v.clone();
            }
            gateway(j).validate()
        };
        with(serde_json::json!({})).unwrap();
        for (extra, table) in [
            (
                serde_json::json!({"limits": {"concurrency": 0}}),
                "[gateway.limits]",
            ),
            (
                serde_json::json!({"limits": {"requests_per_minute": 0}}),
                "[gateway.limits]",
            ),
            (
                serde_json::json!({"limits": {"tokens_per_minute": 0}}),
                "[gateway.limits]",
            ),
            (
                serde_json::json!({"roles": {"guest": {"limits": {"concurrency": 0}}}}),
                "[gateway.roles.guest.limits]",
            ),
        ] {
            let e = with(extra.clone()).unwrap_err().to_string();
            assert!(
                e.contains(table) && e.contains("at least 1"),
                "{extra}: {e}"
            );
        }
    }

    /// A leeway of years would accept every expired token (and every `nbf` far in the
    /// future): refused at start-up, not silently applied.
    #[test]
    fn an_absurd_jwt_leeway_is_refused() {
        let admin = serde_json::json!({"listen": "127.0.0.1:0", "admins": [],
            "tls": {"cert": "c", "key": "k", "client_ca": "ca"}});
        let with = |leeway: u64| {
            gateway(serde_json::json!({"admin": admin.clone(),
                "oidc": {"issuer": "https://idp", "audience": "w",
                         "jwks_url": "http://127.0.0.1:1/jwks", "leeway_secs": leeway},
                "models": [{"name": "m", "upstream": "http://127.0.0.1:1"}]}))
            .validate()
        };
        with(0).unwrap();
        with(MAX_LEEWAY_SECS).unwrap();
        for leeway in [MAX_LEEWAY_SECS + 1, 10 * 365 * 86_400, u64::MAX] {
            let e = with(leeway).unwrap_err().to_string();
            assert!(
                e.contains(&format!("leeway_secs = {leeway}: at most 300")),
                "{e}"
            );
        }
    }

    #[test]
    fn the_minimum_key_set_age_saturates_and_uses_a_10_s_refresh_floor() {
        let admin = serde_json::json!({"listen": "127.0.0.1:0", "admins": [],
            "tls": {"cert": "c", "key": "k", "client_ca": "ca"}});
        let with = |refresh: u64, max_age: u64| {
            gateway(serde_json::json!({"admin": admin.clone(),
                "oidc": {"issuer": "https://idp", "audience": "w",
                         "jwks_url": "http://127.0.0.1:1/jwks",
                         "jwks_refresh_secs": refresh, "jwks_max_age_secs": max_age},
                "models": [{"name": "m", "upstream": "http://127.0.0.1:1"}]}))
            .validate()
        };
        // 2 × refresh + 10 overflows u64: the minimum saturates (no panic, no wrap to a
        // small minimum that would accept any age) and every age is refused.
        for refresh in [u64::MAX, u64::MAX / 2, u64::MAX / 2 - 4] {
            let e = with(refresh, MAX_JWKS_MAX_AGE_SECS)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("from {}", u64::MAX)),
                "refresh {refresh}: {e}"
            );
        }
        // Refresh periods under 10 s count as 10 s: the minimum is 30 s.
        for refresh in [0, 1, 10] {
            with(refresh, 30).unwrap();
            let e = with(refresh, 29).unwrap_err().to_string();
            assert!(e.contains("jwks_max_age_secs = 29: from 30"), "{e}");
        }
    }

    #[test]
    fn audit_windows_are_bounded() {
        let admin = serde_json::json!({"listen": "127.0.0.1:0", "admins": [],
            "tls": {"cert": "c", "key": "k", "client_ca": "ca"}});
        let c = gateway(serde_json::json!({"admin": admin.clone()}));
        assert_eq!((c.audit.batch_ms, c.audit.publish_ms), (5, 1000));
        assert_eq!(c.audit.max_queued, 65_536);
        for (audit, words) in [
            (
                serde_json::json!({"max_queued": 0}),
                "max_queued = 0: between 1 and 1048576",
            ),
            (
                serde_json::json!({"max_queued": 1_048_577}),
                "max_queued = 1048577: between 1 and 1048576",
            ),
            (
                serde_json::json!({"publish_ms": 10_001}),
                "publish_ms = 10001: at most 10000",
            ),
            (
                serde_json::json!({"batch_ms": 101}),
                "batch_ms = 101: at most 100",
            ),
        ] {
            let e = gateway(serde_json::json!({"admin": admin.clone(), "audit": audit}))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{e}");
        }
        // Within bounds, validation goes on to the next rule (no models here).
        let e = gateway(serde_json::json!({"admin": admin,
            "audit": {"publish_ms": 10_000, "max_queued": 1_048_576}}))
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("no [[gateway.models]]"), "{e}");
    }

    #[test]
    fn upstream_transport_is_checked() {
        use UpstreamTransport::*;
        let none = serde_json::json!({});
        for (url, want) in [
            ("https://gpu1.internal", Tls),
            ("https://10.0.0.5:8443/", Tls),
            ("http://127.0.0.1:8000", LoopbackPlaintext),
            ("http://localhost:8000", LoopbackPlaintext),
            ("http://[::1]:8000", LoopbackPlaintext),
        ] {
            assert_eq!(
                model(url, none.clone()).validate_upstream().unwrap(),
                want,
                "{url}"
            );
        }
        let allow = serde_json::json!({"allow_plaintext_upstream": true});
        assert_eq!(
            model("http://10.0.0.5:8000", allow)
                .validate_upstream()
                .unwrap(),
            NetworkPlaintext
        );
        for (url, extra, words) in [
            (
                "http://10.0.0.5:8000",
                none.clone(),
                "allow_plaintext_upstream",
            ),
            ("http://127.0.0.1", none.clone(), "http://host:port"),
            ("https://gpu1.internal/v1", none.clone(), "no path"),
            ("https://gpu1.internal?x=1", none.clone(), "no path"),
            ("https://user:pw@gpu1.internal", none.clone(), "credentials"),
            ("ftp://gpu1.internal:21", none.clone(), "https://host"),
            (
                "http://127.0.0.1:8000",
                serde_json::json!({"upstream_ca": "ca.pem"}),
                "upstream_ca is set",
            ),
            (
                "https://gpu1.internal",
                serde_json::json!({"upstream_client_key": "k.pem"}),
                "go together",
            ),
        ] {
            let e = model(url, extra)
                .validate_upstream()
                .unwrap_err()
                .to_string();
            assert!(e.contains("model m") && e.contains(words), "{url}: {e}");
        }
    }
}
