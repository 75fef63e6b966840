//! Negative security tests against a real gateway (TLS listeners, pipeline, admin API)
//! in front of a mock upstream that counts requests: every refusal has the right status,
//! leaves an audit record, and forwards nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_gateway::audit::{AuditRecord, MemorySink};
use warden_gateway::directory::{Directory, Identity, MemoryDirectory};
use warden_gateway::keys;

struct Env {
    _dir: tempfile::TempDir,
    pki: Pki,
    public: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    upstream: MockUpstream,
    audit: Arc<MemorySink>,
    directory: Arc<MemoryDirectory>,
    user_key: String,
    jwt_key: EcdsaKeyPair,
    gw: Arc<warden_gateway::server::Gateway>,
    jwks: Jwks,
    /// The CRL file both listeners read when started with `"client_crl": true`.
    crl: std::path::PathBuf,
}

/// The identity provider's key set endpoint: serves `doc` (a 500 when it is `None`) and
/// counts fetches.
#[derive(Clone)]
struct Jwks {
    doc: Arc<std::sync::Mutex<Option<String>>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Jwks {
    fn set(&self, doc: Option<String>) {
        *self.doc.lock().unwrap() = doc;
    }
    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A JWKS document with one P-256 key.
fn jwks_doc(key: &EcdsaKeyPair, kid: &str) -> String {
    let pk = key.public_key().as_ref().to_vec();
    serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&pk[1..33]), "y": URL_SAFE_NO_PAD.encode(&pk[33..65])}]})
    .to_string()
}

async fn jwks_server(doc: String) -> (std::net::SocketAddr, Jwks) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let jwks = Jwks {
        doc: Arc::new(std::sync::Mutex::new(Some(doc))),
        fetches: Arc::default(),
    };
    let served = jwks.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let j = served.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                j.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let doc = j.doc.lock().unwrap().clone();
                let resp = match doc {
                    Some(doc) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{doc}",
                        doc.len()
                    ),
                    None => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, jwks)
}

async fn start() -> Env {
    start_with(4096).await
}

async fn start_with(max_body_bytes: usize) -> Env {
    start_custom(max_body_bytes, serde_json::json!({}), None).await
}

/// A mock upstream's answer to a request body.
type Reply = fn(serde_json::Value) -> hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// The gateway under a policy permitting every user action on every model, with a mock
/// upstream answering with `respond` (the policy's directory lives as long as the guard).
async fn start_permit_all(respond: Reply) -> (Env, tempfile::TempDir) {
    let pdir = tempfile::tempdir().unwrap();
    let policy = pdir.path().join("all.cedar");
    std::fs::write(
        &policy,
        "permit(principal in Warden::Role::\"user\", action, resource);\n",
    )
    .unwrap();
    let env = start_custom(4096, serde_json::json!({"policy": policy}), Some(respond)).await;
    (env, pdir)
}

/// The gateway with `extra` merged into its configuration (top-level keys) and, when
/// given, a mock upstream answering with `respond`.
async fn start_custom(
    max_body_bytes: usize,
    extra: serde_json::Value,
    respond: Option<Reply>,
) -> Env {
    start_full(max_body_bytes, extra, respond, None).await
}

/// [`start_custom`], with `sink` instead of the in-memory audit sink when given (then
/// `Env::audit` stays empty).
async fn start_full(
    max_body_bytes: usize,
    extra: serde_json::Value,
    respond: Option<Reply>,
    sink: Option<Arc<dyn warden_gateway::audit::AuditSink>>,
) -> Env {
    start_checks(max_body_bytes, extra, respond, sink, Vec::new()).await
}

/// [`start_full`], with `checks` appended to the gateway's pipeline. `"client_crl": true`
/// in `extra` makes both listeners check client certificates against `Env::crl` (a CRL
/// revoking nothing at start); `"tokens_with_client_certificates"` in `extra` goes into
/// the `oidc` table, `"public_client_identity"` into the public listener's `tls` table as
/// `client_identity`.
async fn start_checks(
    max_body_bytes: usize,
    extra: serde_json::Value,
    respond: Option<Reply>,
    sink: Option<Arc<dyn warden_gateway::audit::AuditSink>>,
    checks: Vec<Arc<dyn warden_gateway::pipeline::Check>>,
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let upstream = match respond {
        Some(f) => mock_upstream_with(f).await,
        None => mock_upstream().await,
    };
    let policy = dir.path().join("policies.cedar");
    std::fs::write(&policy, POLICIES).unwrap();
    let totp = dir.path().join("alice.totp");
    std::fs::write(&totp, TOTP_SECRET_B32).unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let jwt_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let (jwks_addr, jwks) = jwks_server(jwks_doc(&jwt_key, "k1")).await;
    let crl = dir.path().join("clients.crl");
    pki.write_crl(&crl, &[]);
    let mut extra = extra;
    let crls = match extra.as_object_mut().and_then(|x| x.remove("client_crl")) {
        Some(serde_json::Value::Bool(true)) => vec![crl.clone()],
        _ => Vec::new(),
    };
    let cfg = serde_json::json!({
        "listen": "127.0.0.1:0",
        "tls": {"cert": pki.server_cert, "key": pki.server_key, "client_ca": pki.ca, "client_crl": crls},
        "admin": {"listen": "127.0.0.1:0",
                  "tls": {"cert": pki.server_cert, "key": pki.server_key, "client_ca": pki.ca, "client_crl": crls},
                  "admins": [{"name": "alice.admin", "totp_secret_file": totp}]},
        "models": [{"name": "m1", "upstream": format!("http://{}", upstream.addr), "classification": 1},
                   {"name": "secret", "upstream": format!("http://{}", upstream.addr), "classification": 3}],
        "oidc": {"issuer": "https://idp.test", "audience": "warden", "jwks_url": format!("http://{jwks_addr}/jwks"),
                 "algorithms": ["ES256"], "leeway_secs": 0},
        "policy": policy,
        "validation": {"max_body_bytes": max_body_bytes, "max_message_bytes": max_body_bytes},
    });
    let mut cfg = cfg;
    if let Some(v) = extra
        .as_object_mut()
        .and_then(|x| x.remove("tokens_with_client_certificates"))
    {
        cfg["oidc"]["tokens_with_client_certificates"] = v;
    }
    if let Some(v) = extra
        .as_object_mut()
        .and_then(|x| x.remove("public_client_identity"))
    {
        cfg["tls"]["client_identity"] = v;
    }
    if let (Some(c), Some(x)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(x.clone());
    }
    let cfg: warden_gateway::config::GatewayConfig = serde_json::from_value(cfg).unwrap();
    let directory = Arc::new(MemoryDirectory::default());
    let (key, hash) = keys::generate().unwrap();
    let user = |name: &str, roles: &[&str], clearance| Identity {
        name: name.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        team: "blue".into(),
        clearance,
    };
    directory.add(user("bob", &["user"], 1), Some(hash));
    directory.add(user("svc-mtls", &["user"], 1), None);
    let audit = Arc::new(MemorySink::default());
    let policies = warden_gateway::authz::Policies::load(&cfg.policy, None).unwrap();
    let listeners = warden_gateway::server::bind(&cfg).await.unwrap();
    let public = listeners.public.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let mut cfg = cfg;
    cfg.listen = public;
    let gw = warden_gateway::server::Gateway::new(
        cfg,
        directory.clone(),
        sink.unwrap_or_else(|| audit.clone()),
        policies,
        checks,
    )
    .unwrap();
    tokio::spawn(warden_gateway::server::run(
        Arc::clone(&gw),
        listeners,
        Default::default(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    Env {
        _dir: dir,
        pki,
        public,
        admin,
        upstream,
        audit,
        directory,
        user_key: key.reveal().to_owned(),
        jwt_key,
        gw,
        jwks,
        crl,
    }
}

fn tls_config(
    pki: &Pki,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match client {
        Some((c, k)) => b
            .with_client_auth_cert(
                rustls_pki_types::CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// Send raw bytes over TLS; return the raw response (until close or 3 s).
async fn raw(
    env: &Env,
    addr: std::net::SocketAddr,
    client: Option<(&std::path::Path, &std::path::Path)>,
    req: &[u8],
) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, client))
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, auth: Option<&str>, body: &str) -> Vec<u8> {
    let auth = auth
        .map(|a| format!("authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const CHAT: &str = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;

fn records(env: &Env) -> Vec<AuditRecord> {
    env.audit.records.lock().unwrap().clone()
}

async fn refused(env: &Env, req: &[u8], want: u16, reason: &str) {
    let before = records(env).len();
    let resp = raw(env, env.public, None, req).await;
    assert_eq!(status(&resp), want, "{reason}: {resp}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recs = records(env);
    let new: Vec<_> = recs[before..].iter().collect();
    assert!(
        new.iter()
            .any(|r| r.decision == "deny" && r.status == want && r.reason.contains(reason)),
        "no audit record for {reason}: {new:?}"
    );
    assert_eq!(env.upstream.hits(), 0, "{reason}: request was forwarded");
}

fn jwt(env: &Env, header: serde_json::Value, claims: serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let msg = format!("{h}.{p}");
    let sig = env
        .jwt_key
        .sign(&SystemRandom::new(), msg.as_bytes())
        .unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_audited_and_never_forwarded() {
    let env = start().await;
    let key = env.user_key.clone();
    refused(
        &env,
        &post("/v1/chat/completions", None, CHAT),
        401,
        "missing credentials",
    )
    .await;
    let unknown = format!("wdn_{}", "A".repeat(43));
    refused(
        &env,
        &post("/v1/chat/completions", Some(&unknown), CHAT),
        401,
        "unknown API key",
    )
    .await;
    refused(
        &env,
        &post("/v1/chat/completions", Some("not-a-key"), CHAT),
        401,
        "unrecognised credential",
    )
    .await;
    // Key in the query string (even with a valid key in the header).
    refused(
        &env,
        &post(
            &format!("/v1/chat/completions?api_key={key}"),
            Some(&key),
            CHAT,
        ),
        400,
        "query string",
    )
    .await;
    // JWTs: expired, not yet valid, wrong audience, alg=none, HS256 with the public key, bad signature.
    let claims = |exp: u64, nbf: u64, aud: &str| {
        serde_json::json!({"iss": "https://idp.test", "aud": aud, "sub": "carol",
        "exp": exp, "nbf": nbf, "roles": ["user"], "clearance": 1})
    };
    let h = serde_json::json!({"alg": "ES256", "kid": "k1"});
    let t = jwt(&env, h.clone(), claims(now() - 10, now() - 100, "warden"));
    refused(
        &env,
        &post("/v1/chat/completions", Some(&t), CHAT),
        401,
        "token expired",
    )
    .await;
    let t = jwt(&env, h.clone(), claims(now() + 600, now() + 300, "warden"));
    refused(
        &env,
        &post("/v1/chat/completions", Some(&t), CHAT),
        401,
        "not yet valid",
    )
    .await;
    let t = jwt(&env, h.clone(), claims(now() + 600, now() - 1, "other"));
    refused(
        &env,
        &post("/v1/chat/completions", Some(&t), CHAT),
        401,
        "wrong audience",
    )
    .await;
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(now() + 600, now() - 1, "warden").to_string())
    );
    refused(
        &env,
        &post("/v1/chat/completions", Some(&none), CHAT),
        401,
        "algorithm none is not accepted",
    )
    .await;
    // HS256 signed with the JWKS public key as the HMAC secret (key confusion).
    let hs = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims(now() + 600, now() - 1, "warden").to_string())
    );
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            env.jwt_key.public_key().as_ref(),
        ),
        hs.as_bytes(),
    );
    let hs = format!("{hs}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    refused(
        &env,
        &post("/v1/chat/completions", Some(&hs), CHAT),
        401,
        "algorithm HS256 is not accepted",
    )
    .await;
    // Signed by the right key, issued by someone else.
    let mut other = claims(now() + 600, now() - 1, "warden");
    other["iss"] = "https://evil.test".into();
    let t = jwt(&env, h.clone(), other);
    refused(
        &env,
        &post("/v1/chat/completions", Some(&t), CHAT),
        401,
        "wrong issuer",
    )
    .await;
    let good = jwt(&env, h.clone(), claims(now() + 600, now() - 1, "warden"));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::json!({"iss": "https://idp.test", "aud": "warden", "sub": "mallory", "exp": now() + 600, "roles": ["researcher"]}).to_string());
    refused(
        &env,
        &post("/v1/chat/completions", Some(&parts.join(".")), CHAT),
        401,
        "bad signature",
    )
    .await;
    // Oversized body (declared and chunked).
    let big = format!(
        r#"{{"model":"m1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    refused(
        &env,
        &post("/v1/chat/completions", Some(&key), &big),
        413,
        "body exceeds",
    )
    .await;
    // Bodies must carry Content-Length: a chunked request is refused before its body is
    // read (an oversized chunked body included), even a valid one.
    let chunked = |body: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    refused(&env, chunked(&big).as_bytes(), 400, "transfer-encoding").await;
    refused(&env, chunked(CHAT).as_bytes(), 400, "transfer-encoding").await;
    // Request smuggling: Content-Length and Transfer-Encoding together, in both orders,
    // each with a valid chunked chat body (which hyper alone would accept and forward)
    // followed by a second request the two framings disagree about.
    let tail = "POST /v1/embeddings HTTP/1.1\r\nhost: localhost\r\n\r\n";
    for (first, second) in [
        ("content-length: 4", "transfer-encoding: chunked"),
        ("transfer-encoding: chunked", "content-length: 4"),
    ] {
        let smuggle = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\n{first}\r\n{second}\r\n\r\n{:x}\r\n{CHAT}\r\n0\r\n\r\n{tail}",
            CHAT.len()
        );
        let before = records(&env).len();
        let resp = raw(&env, env.public, None, smuggle.as_bytes()).await;
        assert_eq!(status(&resp), 400, "smuggling ({first} first): {resp}");
        assert_eq!(
            resp.matches("HTTP/1.1").count(),
            1,
            "a second (smuggled) request was answered: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            records(&env)[before..].iter().any(|r| r.status == 400
                && r.decision == "deny"
                && r.reason.contains("transfer-encoding")),
            "smuggling not audited ({first} first)"
        );
        assert_eq!(env.upstream.hits(), 0, "smuggled request was forwarded");
    }
    // Two different Content-Lengths.
    let dup = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ncontent-length: 5\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{CHAT}",
        CHAT.len()
    );
    let before = records(&env).len();
    let resp = raw(&env, env.public, None, dup.as_bytes()).await;
    assert_eq!(status(&resp), 400, "duplicate content-length: {resp}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        records(&env)[before..].iter().any(|r| r.status == 400),
        "duplicate content-length not audited"
    );
    // Path traversal and paths that are not on the allowlist.
    refused(
        &env,
        &post("/v1/../admin/v1/lockdown", Some(&key), CHAT),
        400,
        "path traversal",
    )
    .await;
    refused(
        &env,
        &post("/v1/%2e%2e/%2e%2e/etc/passwd", Some(&key), CHAT),
        400,
        "path traversal",
    )
    .await;
    refused(
        &env,
        &post("/v1/chat/completions/..%2fx", Some(&key), CHAT),
        400,
        "path traversal",
    )
    .await;
    refused(
        &env,
        &post("/v1/files", Some(&key), "{}"),
        404,
        "no such endpoint",
    )
    .await;
    refused(
        &env,
        &post("/v1/fine_tuning/jobs", Some(&key), "{}"),
        404,
        "no such endpoint",
    )
    .await;
    refused(
        &env,
        &post("/health", Some(&key), "{}"),
        404,
        "no such endpoint",
    )
    .await;
    // Absolute-form URI naming another host: still only the allowlist, never open proxying.
    refused(
        &env,
        &post("http://169.254.169.254/latest/meta-data", Some(&key), "{}"),
        404,
        "no such endpoint",
    )
    .await;
    // Validation and policy.
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"m1","messages":[{"role":"user","content":"x"}],"n":3}"#,
        ),
        400,
        "n: not permitted",
    )
    .await;
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"m1","messages":[{"role":"user","content":"x"}],"evil":1}"#,
        ),
        400,
        "unknown field",
    )
    .await;
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"m1","messages":[{"role":"user","content":"x"}],"max_tokens":999999}"#,
        ),
        400,
        "max_tokens",
    )
    .await;
    // The length under the other name a server may read instead.
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"m1","messages":[{"role":"user","content":"x"}],"max_completion_tokens":16,"max_tokens":999999}"#,
        ),
        400,
        "max_tokens",
    )
    .await;
    // A media URL the model server would fetch from its own network.
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"m1","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/latest/meta-data/"}}]}]}"#,
        ),
        400,
        "media URLs are not accepted",
    )
    .await;
    refused(
        &env,
        &post(
            "/v1/embeddings",
            Some(&key),
            r#"{"model":"m1","input":"x"}"#,
        ),
        403,
        "denied by policy",
    )
    .await;
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"secret","messages":[{"role":"user","content":"x"}]}"#,
        ),
        403,
        "denied by policy",
    )
    .await;
    refused(
        &env,
        &post(
            "/v1/chat/completions",
            Some(&key),
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
        ),
        404,
        "model not available",
    )
    .await;

    // Positive controls: the same paths work with good credentials, and responses are minimised.
    let resp = raw(&env, env.public, None, &post("/v1/chat/completions", Some(&key), r#"{"model":"m1","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2}"#)).await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(env.upstream.hits(), 1);
    assert!(
        resp.contains("\"ok\"") && !resp.contains("fp_mock") && !resp.contains("logprob"),
        "not minimised: {resp}"
    );
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&good), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 200, "valid JWT: {resp}");
    let resp = raw(
        &env,
        env.public,
        Some((&env.pki.user_cert, &env.pki.user_key)),
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert_eq!(status(&resp), 200, "mTLS identity: {resp}");
    assert_eq!(env.upstream.hits(), 3);
    let recs = records(&env);
    let allowed: Vec<_> = recs.iter().filter(|r| r.decision == "allow").collect();
    assert_eq!(allowed.len(), 3, "{allowed:?}");
    assert_eq!(
        allowed
            .iter()
            .map(|r| (r.identity.clone().unwrap(), r.auth.clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            ("bob".into(), "key".into()),
            ("jwt:carol".into(), "jwt".into()),
            ("svc-mtls".into(), "mtls".into())
        ]
    );
    for r in &allowed {
        assert_eq!(r.prompt_sha256.as_ref().unwrap().len(), 64);
        assert_eq!(r.response_sha256.as_ref().unwrap().len(), 64);
    }
    // Secrets never reach the audit records.
    let dump = format!("{recs:?}");
    assert!(
        !dump.contains(&key) && !dump.contains(&good),
        "a credential reached the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_mtls_and_totp_and_blocks_at_once() {
    let env = start().await;
    let key = env.user_key.clone();
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    let block = |code: &str| {
        format!(
            "POST /v1/block HTTP/1.1\r\nhost: localhost\r\nx-warden-totp: {code}\r\ncontent-type: application/json\r\ncontent-length: 20\r\nconnection: close\r\n\r\n{{\"identity\": \"bob\"}} "
        )
    };
    // Health needs nothing; mutating calls need an admin certificate and a TOTP code.
    let r = raw(
        &env,
        env.admin,
        None,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    let r = raw(&env, env.admin, None, block(&totp_code(0)).as_bytes()).await;
    assert_eq!(status(&r), 401, "no client certificate: {r}");
    // A user certificate from the right CA is not an administrator.
    let r = raw(
        &env,
        env.admin,
        Some((&env.pki.user_cert, &env.pki.user_key)),
        block(&totp_code(0)).as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 401, "user certificate: {r}");
    let r = raw(&env, env.admin, admin, block("000000").as_bytes()).await;
    assert_eq!(status(&r), 401, "wrong TOTP: {r}");
    // A user's API key is no admin credential.
    let r = raw(&env, env.admin, None, format!("GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n").as_bytes()).await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(!env.directory.blocked().unwrap().contains("bob"));
    // Good: block takes effect for the next request.
    let code = totp_code(0);
    let r = raw(&env, env.admin, admin, block(&code).as_bytes()).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(env.directory.blocked().unwrap().contains("bob"));
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&key), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 403, "{resp}");
    assert!(records(&env).iter().any(|r| r.kind == "block"
        && r.identity.as_deref() == Some("bob")
        && r.auth.as_deref() == Some("admin:alice.admin")));
    // The same code cannot be replayed.
    let r = raw(&env, env.admin, admin, block(&code).as_bytes()).await;
    assert_eq!(status(&r), 401, "replayed TOTP: {r}");
    // Metrics for the administrator.
    let r = metrics(&env).await;
    assert!(r.contains("warden_gateway_requests_total"), "{r}");
    assert_eq!(env.upstream.hits(), 0);
}

/// A connection to the admin listener without an administrator's certificate (a
/// health probe, or anyone who can reach the port) is closed within
/// `ANONYMOUS_CONNECTION_SECS`, idle or not: it cannot hold a descriptor for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_admin_connections_do_not_stay_open() {
    let env = start().await;
    for client in [
        None,
        Some((env.pki.user_cert.as_path(), env.pki.user_key.as_path())),
    ] {
        let tcp = tokio::net::TcpStream::connect(env.admin).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, client))
            .connect(name, tcp)
            .await
            .unwrap();
        // Keep-alive: the probe is answered, then the connection idles.
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let t0 = std::time::Instant::now();
        let mut out = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_secs(warden_gateway::admin::ANONYMOUS_CONNECTION_SECS + 5),
            s.read_to_end(&mut out),
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        assert!(r.is_ok(), "still open after {:?}: {text}", t0.elapsed());
        assert_eq!(status(&text), 200, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_cannot_even_connect_to_the_admin_listener() {
    let env = start().await;
    let tcp = tokio::net::TcpStream::connect(env.admin).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let cfg = tls_config(&env.pki, Some((&env.pki.rogue_cert, &env.pki.rogue_key)));
    let r = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await;
    // TLS 1.3: the client may finish its side before the server's alert arrives; the first
    // read must then fail.
    if let Ok(mut s) = r {
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf).await;
        assert!(
            n.is_err() || buf.is_empty(),
            "rogue client got an answer: {}",
            String::from_utf8_lossy(&buf)
        );
    }
}

/// A TLS connection with `client`, then `req`: the response, or `None` when the
/// handshake (or, TLS 1.3, the first read after it) failed.
async fn try_raw(
    env: &Env,
    addr: std::net::SocketAddr,
    client: (&std::path::Path, &std::path::Path),
    req: &[u8],
) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, Some(client)))
        .connect(name, tcp)
        .await
        .ok()?;
    s.write_all(req).await.ok()?;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    (matches!(r, Ok(Ok(_))) && !out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_replaced_while_serving_refuses_the_revoked_certificates_new_connections() {
    let env = start_custom(4096, serde_json::json!({"client_crl": true}), None).await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let admin = (env.pki.admin_cert.as_path(), env.pki.admin_key.as_path());
    let metrics = b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert_eq!(status(&resp.clone().unwrap_or_default()), 200, "{resp:?}");
    let resp = try_raw(&env, env.admin, admin, metrics).await;
    assert_eq!(status(&resp.clone().unwrap_or_default()), 200, "{resp:?}");
    // Revoke both client certificates; the listeners poll twice a second.
    env.pki.write_crl(&env.crl, &[USER_SERIAL, ADMIN_SERIAL]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert!(
        resp.is_none(),
        "revoked user certificate got an answer: {resp:?}"
    );
    let resp = try_raw(&env, env.admin, admin, metrics).await;
    assert!(
        resp.is_none(),
        "revoked admin certificate got an answer: {resp:?}"
    );
    assert_eq!(env.upstream.hits(), 1);
    // A broken CRL keeps the one in use (still revoking both).
    std::fs::write(&env.crl, "not a CRL").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert!(
        resp.is_none(),
        "revoked user certificate got an answer: {resp:?}"
    );
    // Unrevoked again.
    env.pki.write_crl(&env.crl, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert_eq!(status(&resp.clone().unwrap_or_default()), 200, "{resp:?}");
}

/// A kept-alive TLS connection with a client certificate.
struct KeptAlive(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl KeptAlive {
    async fn open(
        env: &Env,
        addr: std::net::SocketAddr,
        client: (&std::path::Path, &std::path::Path),
    ) -> KeptAlive {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, Some(client)))
            .connect(name, tcp)
            .await
            .unwrap();
        KeptAlive(s)
    }

    /// `req` on this connection: the whole response (by `content-length` or chunked),
    /// or `None` when the connection fails or ends first (or after 3 s).
    async fn request(&mut self, req: &[u8]) -> Option<String> {
        self.0.write_all(req).await.ok()?;
        self.0.flush().await.ok()?;
        let mut buf = Vec::new();
        let read = async {
            let mut chunk = [0u8; 4096];
            loop {
                let n = self.0.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let head = text[..end].to_ascii_lowercase();
                let body = &text[end + 4..];
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                let done = match len {
                    Some(len) => body.len() >= len,
                    None => body.ends_with("0\r\n\r\n"),
                };
                if done {
                    return Some(text);
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3), read)
            .await
            .ok()
            .flatten()
    }

    /// Whether the server ends the connection (end of stream or an error) within `wait`,
    /// nothing being sent on it.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, self.0.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// The `connection-closed` audit records, once there are `n` (queued just after the
/// connections were cut) or after 2 s.
async fn closed_records(env: &Env, n: usize) -> Vec<AuditRecord> {
    let t0 = std::time::Instant::now();
    loop {
        let closed: Vec<_> = records(env)
            .into_iter()
            .filter(|r| r.kind == "connection-closed")
            .collect();
        if closed.len() >= n || t0.elapsed() > Duration::from_secs(2) {
            return closed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request without `connection: close`.
fn keep_alive(req: &[u8]) -> Vec<u8> {
    String::from_utf8(req.to_vec())
        .unwrap()
        .replace("connection: close\r\n", "")
        .into_bytes()
}

/// A CRL revoking a certificate closes the connections open with it, on both listeners,
/// within about a second, and audits each; connections with certificates still good
/// (here the same identities' other certificates) stay open and keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_revoking_a_certificate_closes_its_open_connections_and_only_those() {
    let env = start_custom(4096, serde_json::json!({"client_crl": true}), None).await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let user2 = (env.pki.user2_cert.as_path(), env.pki.user2_key.as_path());
    let admin = (env.pki.admin_cert.as_path(), env.pki.admin_key.as_path());
    let admin2 = (env.pki.admin2_cert.as_path(), env.pki.admin2_key.as_path());
    let chat = keep_alive(&post("/v1/chat/completions", None, CHAT));
    let metrics = b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let mut a = KeptAlive::open(&env, env.public, user).await;
    let mut b = KeptAlive::open(&env, env.public, user2).await;
    let mut admin_a = KeptAlive::open(&env, env.admin, admin).await;
    let mut admin_b = KeptAlive::open(&env, env.admin, admin2).await;
    for c in [&mut a, &mut b] {
        let resp = c.request(&chat).await;
        assert_eq!(status(resp.as_deref().unwrap_or_default()), 200, "{resp:?}");
    }
    for c in [&mut admin_a, &mut admin_b] {
        let resp = c.request(metrics).await;
        assert_eq!(status(resp.as_deref().unwrap_or_default()), 200, "{resp:?}");
    }
    // Another connection of the first certificate, a request in flight on it (its body
    // still arriving).
    let mut in_flight = KeptAlive::open(&env, env.public, user).await;
    in_flight
        .0
        .write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n\
              content-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    in_flight.0.flush().await.unwrap();
    // Revoke the first certificate of each; the listeners poll twice a second.
    env.pki.write_crl(&env.crl, &[USER_SERIAL, ADMIN_SERIAL]);
    let t0 = std::time::Instant::now();
    assert!(
        a.closed_within(Duration::from_millis(1500)).await,
        "the revoked user certificate's connection stayed open"
    );
    assert!(
        in_flight.closed_within(Duration::from_millis(1500)).await,
        "the revoked user certificate's request in flight was not cut"
    );
    let public_ms = t0.elapsed().as_millis();
    assert!(
        admin_a.closed_within(Duration::from_millis(1500)).await,
        "the revoked admin certificate's connection stayed open"
    );
    let admin_ms = t0.elapsed().as_millis();
    eprintln!("closed after the CRL was written: public {public_ms} ms, admin {admin_ms} ms");
    assert!(a.request(&chat).await.is_none());
    assert!(admin_a.request(metrics).await.is_none());
    // The other certificates' connections, the same ones, still serve.
    let resp = b.request(&chat).await;
    assert_eq!(status(resp.as_deref().unwrap_or_default()), 200, "{resp:?}");
    let resp = admin_b.request(metrics).await;
    assert_eq!(status(resp.as_deref().unwrap_or_default()), 200, "{resp:?}");
    assert_eq!(env.upstream.hits(), 3);
    // Each closure is audited, naming the certificate and the cause.
    let closed = closed_records(&env, 3).await;
    assert_eq!(closed.len(), 3, "{closed:?}");
    for (listener, identity, serial) in [
        ("public listener", "svc-mtls", "serial 03"),
        ("admin listener", "alice.admin", "serial 02"),
    ] {
        let r = closed
            .iter()
            .find(|r| r.endpoint == listener)
            .unwrap_or_else(|| panic!("no record for the {listener}: {closed:?}"));
        assert_eq!(r.identity.as_deref(), Some(identity), "{r:?}");
        assert!(
            r.reason.contains("client certificate revoked") && r.reason.contains(serial),
            "{r:?}"
        );
        assert_eq!((r.decision.as_str(), r.outcome.as_str()), ("deny", "cut"));
    }
}

/// An HTTP/2 connection with a client certificate: the request sender (its driver runs
/// on a task, whose end the returned receiver reports).
async fn h2_connection(
    env: &Env,
    client: (&std::path::Path, &std::path::Path),
) -> (
    hyper::client::conn::http2::SendRequest<
        http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
    >,
    tokio::sync::oneshot::Receiver<()>,
) {
    let mut cfg = (*tls_config(&env.pki, Some(client))).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(s))
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = tx.send(());
    });
    (send, rx)
}

fn h2_chat(
    body: http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
) -> hyper::Request<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>> {
    hyper::Request::post("https://localhost/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// HTTP/2: a revoked certificate's connection is closed with a stream in flight on it
/// (its request body still arriving), which fails; another certificate's connection
/// keeps serving new streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_revoking_a_certificate_cuts_its_http2_connection_and_streams_in_flight() {
    use http_body_util::BodyExt as _;
    let env = start_custom(4096, serde_json::json!({"client_crl": true}), None).await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let user2 = (env.pki.user2_cert.as_path(), env.pki.user2_key.as_path());
    let full = || {
        http_body_util::Full::new(bytes::Bytes::from_static(CHAT.as_bytes()))
            .map_err(|e| match e {})
            .boxed()
    };
    let (mut a, a_ended) = h2_connection(&env, user).await;
    let (mut b, _b_ended) = h2_connection(&env, user2).await;
    for s in [&mut a, &mut b] {
        let r = s.send_request(h2_chat(full())).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // A stream in flight: its body never ends.
    let pending = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >())
    .boxed();
    let in_flight = tokio::spawn(a.send_request(h2_chat(pending)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!in_flight.is_finished());
    env.pki.write_crl(&env.crl, &[USER_SERIAL]);
    let r = tokio::time::timeout(Duration::from_millis(1500), in_flight)
        .await
        .expect("the stream in flight was not cut")
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    tokio::time::timeout(Duration::from_millis(1500), a_ended)
        .await
        .expect("the revoked certificate's HTTP/2 connection stayed open")
        .unwrap();
    let r = b.send_request(h2_chat(full())).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.upstream.hits(), 3);
}

/// A new client CA closes the open connections of certificates the old one issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_client_ca_closes_the_connections_of_certificates_it_did_not_issue() {
    let env = start_custom(4096, serde_json::json!({"client_crl": true}), None).await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let chat = keep_alive(&post("/v1/chat/completions", None, CHAT));
    let mut a = KeptAlive::open(&env, env.public, user).await;
    let resp = a.request(&chat).await;
    assert_eq!(status(resp.as_deref().unwrap_or_default()), 200, "{resp:?}");
    // Another CA (and a CRL of it) replaces the test CA as the client CA.
    let other = tempfile::tempdir().unwrap();
    let new = pki(other.path());
    std::fs::copy(&new.ca, &env.pki.ca).unwrap();
    new.write_crl(&env.crl, &[]);
    assert!(
        a.closed_within(Duration::from_millis(1500)).await,
        "a certificate of the replaced CA kept its connection"
    );
    let closed = closed_records(&env, 1).await;
    let r = closed.first().expect("an audit record of the closure");
    assert!(
        r.reason.contains("client certificate no longer trusted"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_or_token_naming_another_identity_than_the_client_certificate_is_refused() {
    let env = start().await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let token = token_for(&env.jwt_key, "k1", "svc-mtls");
    for (credential, words) in [
        (
            env.user_key.clone(),
            "the API key names identity bob but the client certificate names svc-mtls",
        ),
        (
            token,
            "the token names identity jwt:svc-mtls but the client certificate names svc-mtls",
        ),
    ] {
        let before = records(&env).len();
        let resp = try_raw(
            &env,
            env.public,
            user,
            &post("/v1/chat/completions", Some(&credential), CHAT),
        )
        .await
        .unwrap_or_default();
        assert_eq!(status(&resp), 401, "{words}: {resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let recs = records(&env);
        assert!(
            recs[before..].iter().any(|r| r.decision == "deny"
                && r.status == 401
                && r.reason.contains("conflicting credentials")
                && r.reason.contains(words)),
            "no audit record for {words}: {:?}",
            &recs[before..]
        );
    }
    assert_eq!(
        env.upstream.hits(),
        0,
        "a conflicting request was forwarded"
    );
    // The same identity on both is fine.
    let (key, hash) = keys::generate().unwrap();
    env.directory.add(
        Identity {
            name: "svc-mtls".into(),
            roles: vec!["user".into()],
            team: "blue".into(),
            clearance: 1,
        },
        Some(hash),
    );
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", Some(key.reveal()), CHAT),
    )
    .await
    .unwrap_or_default();
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(env.upstream.hits(), 1);
}

/// `client_identity = "uri:PREFIX"` on the public listener: only a URI name under the
/// prefix names an identity. A certificate the same CA issued with the identity as a DNS
/// name, under another namespace, a deeper path, percent-encoded, or naming two
/// identities authenticates nobody, and nothing is forwarded for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uri_prefix_scopes_which_client_certificates_name_identities() {
    let env = start_custom(
        4096,
        serde_json::json!({"public_client_identity": "uri:spiffe://corp.example/warden/"}),
        None,
    )
    .await;
    let dir = env._dir.path();
    let uri = |u: &str| rcgen::SanType::URI(u.try_into().unwrap());
    let cert = |name: &str, sans: Vec<rcgen::SanType>, serial: u64| {
        env.pki.client_cert_with_sans(dir, name, sans, serial)
    };
    let good = cert(
        "spiffe-svc",
        vec![
            rcgen::SanType::DnsName("ignored.example".try_into().unwrap()),
            uri("spiffe://corp.example/other/bob"),
            uri("spiffe://corp.example/warden/svc-mtls"),
        ],
        40,
    );
    let resp = raw(
        &env,
        env.public,
        Some((&good.0, &good.1)),
        &post("/v1/chat/completions", None, CHAT),
    )
    .await;
    assert_eq!(status(&resp), 200, "URI identity: {resp}");
    let refused = [
        (
            "DNS name only",
            (env.pki.user_cert.clone(), env.pki.user_key.clone()),
        ),
        (
            "another namespace",
            cert(
                "other-ns",
                vec![uri("spiffe://corp.example/warden-x/svc-mtls")],
                41,
            ),
        ),
        (
            "another trust domain",
            cert(
                "other-td",
                vec![uri("spiffe://evil.example/warden/svc-mtls")],
                42,
            ),
        ),
        (
            "deeper path",
            cert(
                "deeper",
                vec![uri("spiffe://corp.example/warden/team/svc-mtls")],
                43,
            ),
        ),
        (
            "percent-encoded",
            cert(
                "pct",
                vec![uri("spiffe://corp.example/warden/svc%2Dmtls")],
                44,
            ),
        ),
        (
            "two identities",
            cert(
                "two",
                vec![
                    uri("spiffe://corp.example/warden/svc-mtls"),
                    uri("spiffe://corp.example/warden/bob"),
                ],
                45,
            ),
        ),
    ];
    for (what, (c, k)) in &refused {
        let resp = raw(
            &env,
            env.public,
            Some((c, k)),
            &post("/v1/chat/completions", None, CHAT),
        )
        .await;
        assert_eq!(status(&resp), 401, "{what}: {resp}");
        assert!(resp.contains("missing credentials"), "{what}: {resp}");
    }
    assert_eq!(
        env.upstream.hits(),
        1,
        "a refused certificate was forwarded"
    );
    let recs = records(&env);
    let allowed: Vec<_> = recs
        .iter()
        .filter(|r| r.decision == "allow")
        .map(|r| (r.identity.clone(), r.auth.clone()))
        .collect();
    assert_eq!(
        allowed,
        vec![(Some("svc-mtls".to_owned()), Some("mtls".to_owned()))]
    );
    assert_eq!(
        recs.iter().filter(|r| r.decision == "deny").count(),
        refused.len(),
        "{recs:?}"
    );
}

/// With `tokens_with_client_certificates`, the certificate only authenticates the
/// transport for tokens (a device certificate carrying a user's token): the token's
/// identity is served and recorded. An API key naming another identity than the
/// certificate is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_over_client_certificates_are_served_when_configured() {
    let env = start_custom(
        4096,
        serde_json::json!({"tokens_with_client_certificates": true}),
        None,
    )
    .await;
    let user = (env.pki.user_cert.as_path(), env.pki.user_key.as_path());
    let token = token_for(&env.jwt_key, "k1", "carol");
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", Some(&token), CHAT),
    )
    .await
    .unwrap_or_default();
    assert_eq!(status(&resp), 200, "{resp}");
    let resp = try_raw(
        &env,
        env.public,
        user,
        &post("/v1/chat/completions", Some(&env.user_key), CHAT),
    )
    .await
    .unwrap_or_default();
    assert_eq!(status(&resp), 401, "{resp}");
    assert_eq!(env.upstream.hits(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recs = records(&env);
    assert!(
        recs.iter().any(|r| r.status == 200
            && r.identity.as_deref() == Some("jwt:carol")
            && r.auth.as_deref() == Some("jwt")),
        "{recs:?}"
    );
}

/// A body must be declared JSON. A web page can make a browser send a cross-site POST
/// without asking the server first only with a text/plain, form or multipart body (or
/// none declared); with a client certificate the browser holds, that request would be
/// served as its identity (spending its budget, feeding the monitor that can block it).
/// `application/json` needs the CORS preflight the gateway never grants. Compressed
/// bodies are refused by name rather than as invalid JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_declared_as_json_is_refused() {
    let env = start().await;
    let cert = Some((env.pki.user_cert.as_path(), env.pki.user_key.as_path()));
    let with = |headers: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{CHAT}",
            CHAT.len()
        )
        .into_bytes()
    };
    for (headers, reason) in [
        ("content-type: text/plain;charset=UTF-8\r\n", "content-type"),
        (
            "content-type: application/x-www-form-urlencoded\r\n",
            "content-type",
        ),
        (
            "content-type: multipart/form-data; boundary=x\r\n",
            "content-type",
        ),
        ("", "content-type"),
        ("content-type: application/jsonx\r\n", "content-type"),
        (
            "content-type: application/json\r\ncontent-type: text/plain\r\n",
            "content-type",
        ),
        (
            "content-type: application/json\r\ncontent-encoding: gzip\r\n",
            "content-encoding",
        ),
    ] {
        let before = records(&env).len();
        let resp = raw(&env, env.public, cert, &with(headers)).await;
        assert_eq!(status(&resp), 415, "{headers}: {resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let recs = records(&env);
        assert!(
            recs[before..]
                .iter()
                .any(|r| r.decision == "deny" && r.status == 415 && r.reason.contains(reason)),
            "{headers}: {:?}",
            &recs[before..]
        );
        assert_eq!(env.upstream.hits(), 0, "{headers}: forwarded");
    }
    // JSON, in any case and with parameters, is served.
    for ct in ["application/json", "Application/JSON; charset=utf-8"] {
        let resp = raw(
            &env,
            env.public,
            cert,
            &with(&format!("content-type: {ct}\r\n")),
        )
        .await;
        assert_eq!(status(&resp), 200, "{ct}: {resp}");
    }
    assert_eq!(env.upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_body_is_read_are_well_formed() {
    let env = start_with(1 << 20).await;
    // Larger than HTTP/2's initial stream window: the client is still sending when the
    // refusal is decided.
    let body = format!(
        r#"{{"model":"m1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(300_000)
    );
    // HTTP/2 (curl over TLS with ALPN h2): a 401 decided on the headers, while the body
    // is still being sent, must end the stream cleanly (curl exit 0, not 92).
    let tmp = tempfile::tempdir().unwrap();
    let body_file = tmp.path().join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let out = tokio::process::Command::new("curl")
        .args([
            "--http2",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(&env.pki.ca)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", body_file.display()))
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            env.public.port()
        ))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl {:?}: {said} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said, "2 401");
    // HTTP/1.1 keep-alive: the unread body must not be taken for the next request; the
    // answer says the connection closes, and it does.
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let t0 = std::time::Instant::now();
    let resp = raw(&env, env.public, None, req.as_bytes()).await;
    assert_eq!(status(&resp), 401, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the connection was left open"
    );
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "{resp}");
    // An authenticated request with a body on HTTP/2 still works.
    let out = tokio::process::Command::new("curl")
        .args([
            "--http2",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(&env.pki.ca)
        .args(["-H", "content-type: application/json", "-H"])
        .arg(format!("authorization: Bearer {}", env.user_key))
        .arg("--data-binary")
        .arg(CHAT)
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            env.public.port()
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}

/// curl over HTTP/2 (ALPN h2) with a body file; returns (exit code, "version status", body).
async fn curl_h2(
    env: &Env,
    body: &str,
    key: Option<&str>,
    chunked: bool,
) -> (Option<i32>, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let body_file = tmp.path().join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let out_file = tmp.path().join("out.json");
    let mut c = tokio::process::Command::new("curl");
    c.args(["--http2", "-sS", "-w", "%{http_version} %{http_code}"])
        .arg("-o")
        .arg(&out_file)
        .arg("--cacert")
        .arg(&env.pki.ca)
        .args(["-H", "content-type: application/json"]);
    if let Some(k) = key {
        c.arg("-H").arg(format!("authorization: Bearer {k}"));
    }
    if chunked {
        // Upload from a file without a declared length (`-T` with POST).
        c.args(["-X", "POST", "-H", "content-length:", "-T"]);
    } else {
        c.arg("--data-binary");
    }
    let out = c
        .arg(format!(
            "{}{}",
            if chunked { "" } else { "@" },
            body_file.display()
        ))
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            env.public.port()
        ))
        .output()
        .await
        .unwrap();
    let got = std::fs::read_to_string(&out_file).unwrap_or_default();
    (
        out.status.code(),
        format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        got,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_read_a_413_for_an_oversize_body_declared_or_not() {
    let env = start_with(64 * 1024).await;
    for (size, chunked) in [(100_000, false), (3_000_000, false), (3_000_000, true)] {
        let body = format!(
            r#"{{"model":"m1","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(size)
        );
        let before = records(&env).len();
        let (code, said, got) = curl_h2(&env, &body, Some(&env.user_key), chunked).await;
        assert_eq!(code, Some(0), "{size} {chunked}: curl failed: {said}");
        assert_eq!(said.trim(), "2 413", "{size}: {said}");
        let j: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(j["error"]["code"], 413, "{got}");
        assert_eq!(j["error"]["type"], "request_too_large", "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let recs = records(&env);
        assert!(
            recs[before..]
                .iter()
                .any(|r| r.status == 413 && r.decision == "deny" && r.reason.contains("exceeds")),
            "no audit record: {:?}",
            &recs[before..]
        );
    }
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_creates_and_revokes_api_keys() {
    let env = start().await;
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    let call = |path: &str, code: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\nx-warden-totp: {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let body_of = |r: &str| -> serde_json::Value {
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    let create = r#"{"identity": "carol", "roles": ["user"], "clearance": 1}"#;
    // No admin certificate, or no TOTP: refused, nothing created.
    let r = raw(
        &env,
        env.admin,
        None,
        call("/v1/keys", &totp_code(0), create).as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 401, "{r}");
    let r = raw(
        &env,
        env.admin,
        admin,
        call("/v1/keys", "000000", create).as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(env.directory.identity("carol").unwrap().is_none());
    // Each TOTP step serves one mutating call: steps -1, 0, +1 below.
    // Created: the key is in the answer once, the directory has its hash.
    let r = raw(
        &env,
        env.admin,
        admin,
        call("/v1/keys", &totp_code(-1), create).as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(
        r.to_ascii_lowercase().contains("cache-control: no-store"),
        "{r}"
    );
    let j = body_of(&r);
    let key = j["key"].as_str().unwrap().to_owned();
    let kid = j["key_id"].as_str().unwrap().to_owned();
    assert!(keys::looks_like_key(&key), "{j}");
    assert_eq!(
        kid,
        warden_gateway::directory::key_id(&keys::KeyHash::of(&key))
    );
    let carol = env.directory.identity("carol").unwrap().unwrap();
    assert_eq!(
        (carol.roles.clone(), carol.clearance),
        (vec!["user".to_owned()], 1)
    );
    // The gateway accepts it (never tried before, so no cached refusal).
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&key), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    let recs = records(&env);
    let created = recs
        .iter()
        .find(|r| r.kind == "key-created")
        .expect("key creation audited");
    assert_eq!(created.key_id.as_deref(), Some(kid.as_str()));
    assert_eq!(created.identity.as_deref(), Some("carol"));
    assert_eq!(created.auth.as_deref(), Some("admin:alice.admin"));
    assert!(
        !format!("{recs:?}").contains(&key[4..]),
        "the key reached the audit log"
    );
    // Revoke: an unknown id is refused; the real one stops working within the key
    // cache's 2 s.
    let r = raw(
        &env,
        env.admin,
        admin,
        call("/v1/keys/0000000000000000/revoke", &totp_code(0), "").as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 404, "{r}");
    let r = raw(
        &env,
        env.admin,
        admin,
        call(&format!("/v1/keys/{kid}/revoke"), &totp_code(1), "").as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(records(&env).iter().any(|r| r.kind == "key-revoked"
        && r.key_id.as_deref() == Some(kid.as_str())
        && r.identity.as_deref() == Some("carol")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&key), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 401, "{resp}");
}

/// Answers with the usage the prompt names: the user message is the total token count.
fn usage_from_prompt(j: serde_json::Value) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let total: u64 = j["messages"][0]["content"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let out = serde_json::json!({"id": "cmpl-1", "object": "chat.completion", "created": 1,
        "model": j["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": total - 1, "total_tokens": total}});
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        out.to_string(),
    )));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reservations_are_reconciled_with_the_upstreams_usage() {
    // 1,000 tokens a minute; each request reserves max_tokens (300) + its prompt estimate.
    let env = start_custom(
        4096,
        serde_json::json!({"limits": {"requests_per_minute": 1000, "tokens_per_minute": 1000, "concurrency": 8}}),
        Some(usage_from_prompt),
    )
    .await;
    let key = env.user_key.clone();
    let ask = |tokens: u64| {
        post(
            "/v1/chat/completions",
            Some(&key),
            &format!(
                r#"{{"model":"m1","messages":[{{"role":"user","content":"{tokens}"}}],"max_tokens":300}}"#
            ),
        )
    };
    // Unreconciled, the fourth reservation (4 x 301 > 1,000) would be refused. Each
    // answer reports 4 tokens, so the unused reservation comes back: all six pass.
    for i in 0..6 {
        let r = raw(&env, env.public, None, &ask(4)).await;
        assert_eq!(status(&r), 200, "request {i}: {r}");
    }
    // An answer that used far more than was reserved is charged in full: the next
    // request waits.
    let r = raw(&env, env.public, None, &ask(5000)).await;
    assert_eq!(status(&r), 200, "{r}");
    let r = raw(&env, env.public, None, &ask(4)).await;
    assert_eq!(status(&r), 429, "after an overrun: {r}");
    assert!(
        r.to_ascii_lowercase().contains("retry-after:"),
        "429 without Retry-After: {r}"
    );
    assert_eq!(env.upstream.hits(), 7);
}

/// A request the upstream never received (connection refused: the model server is
/// down) consumed no tokens: its reservation is given back, so an outage does not leave
/// every client throttled once the upstream is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_reached_the_upstream_gives_its_tokens_back() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let env = start_custom(
        4096,
        serde_json::json!({
            "limits": {"requests_per_minute": 1000, "tokens_per_minute": 1000, "concurrency": 8},
            "models": [{"name": "m1", "upstream": format!("http://{addr}"), "classification": 1}],
        }),
        None,
    )
    .await;
    let body = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":300}"#;
    // Each reserves 301 tokens: without the refund the fourth would be refused (429).
    for i in 0..6 {
        let r = raw(
            &env,
            env.public,
            None,
            &post("/v1/chat/completions", Some(&env.user_key), body),
        )
        .await;
        assert_eq!(status(&r), 502, "request {i}: {r}");
    }
}

/// A request needing more tokens than the per-minute limit ever holds is not told to
/// retry (a 429 with `Retry-After: 60` that clients follow for ever): 413, no
/// `Retry-After`, nothing forwarded, audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_token_limit_is_not_told_to_retry() {
    let env = start_custom(
        4096,
        serde_json::json!({"limits": {"requests_per_minute": 1000, "tokens_per_minute": 1000, "concurrency": 8}}),
        None,
    )
    .await;
    let r = raw(
        &env,
        env.public,
        None,
        &post(
            "/v1/chat/completions",
            Some(&env.user_key),
            r#"{"model":"m1","messages":[{"role":"user","content":"hi"}],"max_tokens":2000}"#,
        ),
    )
    .await;
    assert_eq!(status(&r), 413, "{r}");
    assert!(
        !r.to_ascii_lowercase().contains("retry-after:"),
        "told to retry a request no wait admits: {r}"
    );
    assert!(r.contains("tokens per minute"), "{r}");
    assert_eq!(env.upstream.hits(), 0);
    let recs = records(&env);
    assert!(
        recs.iter()
            .any(|a| a.status == 413 && a.reason.contains("tokens per minute")),
        "{recs:?}"
    );
}

/// The per-identity in-flight cap applies before the body is read: an identity that
/// holds its cap with bodies it trickles gets 429 (`Retry-After`, audited) for the next
/// request without sending its body (so it cannot hold more requests, nor their audit
/// room, than its cap); another identity is still served, and the slow ones finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_applies_before_slow_bodies_are_read() {
    let env = start_custom(
        4096,
        serde_json::json!({"limits": {"requests_per_minute": 1000, "tokens_per_minute": 1000000, "concurrency": 2}}),
        None,
    )
    .await;
    let key = env.user_key.clone();
    let open = |part: usize| {
        let env = &env;
        let key = key.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(env.public).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, None))
                .connect(name, tcp)
                .await
                .unwrap();
            let req = post("/v1/chat/completions", Some(&key), CHAT);
            let head = req.len() - CHAT.len();
            s.write_all(&req[..head + part]).await.unwrap();
            s.flush().await.unwrap();
            (s, req[head + part..].to_vec())
        }
    };
    // Two requests whose bodies trickle: the identity is at its cap.
    let (mut a, rest_a) = open(10).await;
    let (mut b, rest_b) = open(10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The third: headers only. Refused before its body (the 30-s body timeout would
    // answer 408 much later).
    let (mut c, _) = open(0).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("no answer before the body was sent")
        .unwrap();
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status(&r), 429, "{r}");
    assert!(r.contains("concurrent requests limit reached"), "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after: 1"), "{r}");
    // Another identity is served meanwhile.
    let token = token_for(&env.jwt_key, "k1", "carol");
    let r = chat(&env, &token).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(env.upstream.hits(), 1);
    // The slow ones finish and are served.
    for (s, rest) in [(&mut a, rest_a), (&mut b, rest_b)] {
        s.write_all(&rest).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let r = String::from_utf8_lossy(&out);
        assert_eq!(status(&r), 200, "{r}");
    }
    assert_eq!(env.upstream.hits(), 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recs = records(&env);
    assert!(
        recs.iter().any(|r| r.status == 429
            && r.decision == "deny"
            && r.identity.as_deref() == Some("bob")
            && r.reason == "limits: concurrent requests limit reached"),
        "{recs:?}"
    );
    // With the slots back, bob is served again.
    assert_eq!(status(&chat(&env, &key).await), 200);
}

/// A head check (after `Concurrency`, as the screen throttle is) refusing requests
/// marked `x-refuse`.
#[derive(Debug)]
struct RefuseMarked;

impl warden_gateway::pipeline::Check for RefuseMarked {
    fn name(&self) -> &'static str {
        "refuse-marked"
    }
    fn phase(&self) -> warden_gateway::pipeline::Phase {
        warden_gateway::pipeline::Phase::Head
    }
    fn check(
        &self,
        ex: &mut warden_gateway::pipeline::Exchange,
    ) -> Result<(), warden_gateway::pipeline::Refusal> {
        if ex.headers.contains_key("x-refuse") {
            return Err(warden_gateway::pipeline::Refusal::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                "refuse-marked",
                "marked",
            ));
        }
        Ok(())
    }
}

/// A request refused by a head check after `Concurrency` gives its slot back before its
/// body is drained (up to 2 s): with a cap of 1, the identity's next request is served
/// meanwhile instead of refused 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_releases_its_concurrency_slot_before_draining() {
    let env = start_checks(
        4096,
        serde_json::json!({"limits": {"requests_per_minute": 1000, "tokens_per_minute": 1000000, "concurrency": 1}}),
        None,
        None,
        vec![Arc::new(RefuseMarked)],
    )
    .await;
    let key = env.user_key.clone();
    let tcp = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut a = tokio_rustls::TlsConnector::from(tls_config(&env.pki, None))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = String::from_utf8(post("/v1/chat/completions", Some(&key), CHAT))
        .unwrap()
        .replacen(
            "host: localhost\r\n",
            "host: localhost\r\nx-refuse: 1\r\n",
            1,
        );
    let head = req.len() - CHAT.len();
    // Headers and part of the body: the gateway refuses, then drains the rest.
    a.write_all(&req.as_bytes()[..head + 10]).await.unwrap();
    a.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = chat(&env, &key).await;
    assert_eq!(status(&r), 200, "{r}");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_takes_effect_and_a_broken_policy_keeps_the_old_one() {
    let env = start().await;
    let key = env.user_key.clone();
    let file = env._dir.path().join("policies.cedar");
    let chat = || post("/v1/chat/completions", Some(&key), CHAT);
    let r = raw(&env, env.public, None, &chat()).await;
    assert_eq!(status(&r), 200, "{r}");
    // Only researchers may do anything now: bob (a user) is refused by default deny.
    std::fs::write(
        &file,
        "@id(\"researchers-only\")\npermit(principal in Warden::Role::\"researcher\", action, resource);\n",
    )
    .unwrap();
    let r = admin_post(&env, "/v1/policy/reload", &totp_code(-1), "{}").await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(records(&env).iter().any(|r| r.kind == "policy-reload"));
    let r = raw(&env, env.public, None, &chat()).await;
    assert_eq!(status(&r), 403, "after reload: {r}");
    // A policy that does not parse is refused and the running one kept.
    std::fs::write(&file, "permit(principal, action, resource) when {").unwrap();
    let r = admin_post(&env, "/v1/policy/reload", &totp_code(0), "{}").await;
    assert_eq!(status(&r), 400, "broken policy: {r}");
    let r = raw(&env, env.public, None, &chat()).await;
    assert_eq!(
        status(&r),
        403,
        "the broken policy replaced the old one: {r}"
    );
    std::fs::write(&file, POLICIES).unwrap();
    let r = admin_post(&env, "/v1/policy/reload", &totp_code(1), "{}").await;
    assert_eq!(status(&r), 200, "{r}");
    let r = raw(&env, env.public, None, &chat()).await;
    assert_eq!(status(&r), 200, "after the original came back: {r}");
    assert_eq!(env.upstream.hits(), 2);
    // The metrics count each outcome.
    let m = metrics(&env).await;
    for line in [
        "warden_gateway_requests_total{endpoint=\"chat\",status=\"200\"} 2",
        "warden_gateway_requests_total{endpoint=\"chat\",status=\"403\"} 2",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in {m}");
    }
}

/// curl over HTTP/2 streaming a long chat answer (stdout piped, `-w` prints the HTTP
/// version at the end), killed when dropped.
fn curl_h2_stream(env: &Env, key: &str) -> tokio::process::Child {
    tokio::process::Command::new("curl")
        .args([
            "--http2",
            "-sS",
            "-N",
            "-w",
            "\nversion=%{http_version}\n",
            "--cacert",
        ])
        .arg(&env.pki.ca)
        .args(["-H", "content-type: application/json", "-H"])
        .arg(format!("authorization: Bearer {key}"))
        .args([
            "--data-binary",
            r#"{"model":"m1","messages":[{"role":"user","content":"Tell a long story."}],"stream":true}"#,
        ])
        .arg(format!(
            "https://localhost:{}/v1/chat/completions",
            env.public.port()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The admin listener's Prometheus metrics, fetched with the administrator's certificate.
async fn metrics(env: &Env) -> String {
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    raw(
        env,
        env.admin,
        admin,
        b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
}

/// An upstream that answers every request with an SSE stream of one chunk every 50 ms
/// for a minute (a long generation to cut).
async fn slow_sse_upstream() -> std::net::SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let events = futures_util::stream::unfold(0u32, |i| async move {
                        if i >= 1200 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let ev = format!(
                            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n"
                        );
                        Some((
                            Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from(ev))),
                            i + 1,
                        ))
                    });
                    let mut r = hyper::Response::new(StreamBody::new(events));
                    r.headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A gateway in front of the slow SSE upstream, and a curl HTTP/2 stream through it
/// that has delivered three events: (env, user key, curl, its stdout, what it read).
async fn flowing_h2_stream() -> (
    Env,
    String,
    tokio::process::Child,
    tokio::process::ChildStdout,
    Vec<u8>,
) {
    let up = slow_sse_upstream().await;
    let env = start_custom(
        4096,
        serde_json::json!({"models": [{"name": "m1", "upstream": format!("http://{up}"), "classification": 1}]}),
        None,
    )
    .await;
    let key = env.user_key.clone();
    let mut curl = curl_h2_stream(&env, &key);
    let mut out = curl.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The stream flows through the gateway over HTTP/2.
    while seen.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
            .await
            .expect("no events within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    (env, key, curl, out, seen)
}

/// Reads `out` to curl's end of the stream (at most 5 s between reads) and says how
/// long that took.
async fn drain_until_cut(
    out: &mut tokio::process::ChildStdout,
    seen: &mut Vec<u8>,
    what: &str,
) -> Duration {
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), out.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what} went on for 5 s"))
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_identity_loses_its_http2_stream_within_a_second() {
    let (env, key, mut curl, mut out, mut seen) = flowing_h2_stream().await;
    let r = admin_post(&env, "/v1/block", &totp_code(0), r#"{"identity": "bob"}"#).await;
    assert_eq!(status(&r), 200, "{r}");
    let cut = drain_until_cut(&mut out, &mut seen, "the stream of a blocked identity").await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("version=2"), "not over HTTP/2: {text}");
    let status_code = curl.wait().await.unwrap();
    // The gateway cuts within milliseconds; the bound also covers curl noticing the
    // reset and exiting on a loaded 2-core machine (the block itself answered above).
    assert!(cut < Duration::from_secs(2), "cut after {cut:?}");
    // Cut, not finished: curl reports the reset stream.
    assert!(!status_code.success(), "curl saw a complete stream");
    let r = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&key), CHAT),
    )
    .await;
    assert_eq!(status(&r), 403, "{r}");
}

/// A block that lands while a request's body is still being sent (after the head
/// checks passed) stops that request: it is refused, never forwarded, however the
/// body ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_during_the_body_upload_stops_the_request_before_the_upstream() {
    let env = start().await;
    // One answered request first: the gateway's upstream pool now holds an idle
    // connection, on which a request future hands the request over at its first poll.
    assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    let tcp = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, None))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = post("/v1/chat/completions", Some(&env.user_key), CHAT);
    let split = req.len() - 10;
    s.write_all(&req[..split]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = admin_post(&env, "/v1/block", &totp_code(0), r#"{"identity": "bob"}"#).await;
    assert_eq!(status(&r), 200, "{r}");
    s.write_all(&req[split..]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status(&text), 403, "{text}");
    assert!(text.contains("identity is blocked"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.upstream.hits(),
        1,
        "a blocked identity's request was forwarded"
    );
}

/// Lockdown cuts an HTTP/2 stream in the middle of a long answer (the connection's
/// streams run as tasks of their own, not inside the connection's future).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockdown_cuts_an_open_http2_stream_within_a_second() {
    let (env, _key, mut curl, mut out, mut seen) = flowing_h2_stream().await;
    let r = admin_post(&env, "/v1/lockdown", &totp_code(0), "{}").await;
    assert_eq!(status(&r), 200, "{r}");
    let cut = drain_until_cut(&mut out, &mut seen, "a stream in lockdown").await;
    let code = curl.wait().await.unwrap();
    assert!(cut < Duration::from_secs(2), "cut after {cut:?}");
    assert!(!code.success(), "curl saw a complete stream");
    // The cut stream's record says so.
    let t1 = std::time::Instant::now();
    loop {
        let recs = records(&env);
        if recs
            .iter()
            .any(|a| a.kind == "request" && a.status == 200 && a.outcome != "complete")
        {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(5),
            "no record of the cut stream: {recs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_during_lockdown_while_the_admin_listener_answers() {
    let env = start().await;
    let ready = || async {
        raw(
            &env,
            env.admin,
            None,
            b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
    };
    let r = ready().await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("\"ready\":true"), "{r}");
    let r = admin_post(&env, "/v1/lockdown", &totp_code(0), "{}").await;
    assert_eq!(status(&r), 200, "{r}");
    // The public listener is closed; readiness says so (a load balancer routes away).
    // (The accept loop drops the listener as it sees the change: allow it a moment.)
    let t0 = std::time::Instant::now();
    while tokio::net::TcpStream::connect(env.public).await.is_ok() {
        assert!(t0.elapsed() < Duration::from_secs(5), "listener still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = ready().await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("\"lockdown\":true"), "{r}");
    let r = admin_post(&env, "/v1/lockdown", &totp_code(1), r#"{"lift": true}"#).await;
    assert_eq!(status(&r), 200, "{r}");
    let r = ready().await;
    assert_eq!(status(&r), 200, "after the lift: {r}");
}

/// A lift or an unblock whose audit record cannot be written does not happen: not in
/// this process, not in the store (from which the 500-ms state sync would apply it
/// unaudited, here or on another replica, answered 503 or not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lift_or_unblock_the_audit_log_cannot_record_does_not_happen() {
    use warden_gateway::directory::Directory as _;
    let env = start().await;
    // Engaged earlier (by another replica, say): in the store and in memory.
    env.directory.set_lockdown(true, "alice.admin").unwrap();
    env.directory
        .set_blocked("bob", true, "alice.admin")
        .unwrap();
    env.gw.kill.set_lockdown(true);
    env.gw.kill.block("bob");
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.audit
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = admin_post(&env, "/v1/lockdown", &totp_code(0), r#"{"lift": true}"#).await;
    assert_eq!(status(&r), 503, "{r}");
    let r = admin_post(&env, "/v1/unblock", &totp_code(1), r#"{"identity": "bob"}"#).await;
    assert_eq!(status(&r), 503, "{r}");
    // Past the state sync: still engaged everywhere.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(env.directory.lockdown().unwrap(), "lift written unaudited");
    assert!(env.gw.kill.locked_down(), "lift applied unaudited");
    assert!(
        env.directory.blocked().unwrap().contains("bob"),
        "unblock written unaudited"
    );
    assert!(env.gw.kill.is_blocked("bob"), "unblock applied unaudited");
}

/// Other methods than GET and POST from an administrator are refused (405) and, like
/// every refused call that is not a read, recorded in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_with_other_methods_are_refused_and_audited() {
    let env = start().await;
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    for method in ["PUT", "DELETE", "PATCH"] {
        let req = format!(
            "{method} /v1/block HTTP/1.1\r\nhost: localhost\r\nx-warden-totp: {}\r\ncontent-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n{{\"identity\": \"bob\"}}",
            totp_code(0)
        );
        let r = raw(&env, env.admin, admin, req.as_bytes()).await;
        assert_eq!(status(&r), 405, "{method}: {r}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d: Vec<AuditRecord> = records(&env)
        .into_iter()
        .filter(|r| r.kind == "admin-denied")
        .collect();
    assert_eq!(
        d.iter().map(|r| r.endpoint.as_str()).collect::<Vec<_>>(),
        vec!["PUT /v1/block", "DELETE /v1/block", "PATCH /v1/block"],
        "{d:?}"
    );
    assert!(d.iter().all(|r| r.status == 405
        && r.decision == "deny"
        && r.auth.as_deref() == Some("admin:alice.admin")));
    assert!(!env.directory.blocked().unwrap().contains("bob"));
}

/// A six-digit code that is valid for no TOTP step within ±2 of now.
fn wrong_totp() -> String {
    let valid: Vec<String> = (-2..=2).map(totp_code).collect();
    (0..10u32)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_second_factor_locks_out_after_five_failures_and_audits_every_refusal() {
    let env = start().await;
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    let block = |code: Option<&str>| {
        let code = code
            .map(|c| format!("x-warden-totp: {c}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /v1/block HTTP/1.1\r\nhost: localhost\r\n{code}content-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n{{\"identity\": \"bob\"}}"
        )
    };
    let denied = |env: &Env| -> Vec<AuditRecord> {
        records(env)
            .into_iter()
            .filter(|r| r.kind == "admin-denied")
            .collect()
    };
    // A mutating call without an administrator certificate is refused and recorded.
    let r = raw(&env, env.admin, None, block(Some(&totp_code(0))).as_bytes()).await;
    assert_eq!(status(&r), 401, "{r}");
    // Four wrong codes and a missing one: each refused (401), each recorded.
    let bad = wrong_totp();
    for i in 1..=5 {
        let code = (i != 3).then_some(bad.as_str());
        let r = raw(&env, env.admin, admin, block(code).as_bytes()).await;
        assert_eq!(status(&r), 401, "attempt {i}: {r}");
        if i == 5 {
            assert!(r.contains("locked out for 300 s"), "{r}");
        }
    }
    // Locked out: even a valid code is refused, with a reason and Retry-After.
    let r = raw(
        &env,
        env.admin,
        admin,
        block(Some(&totp_code(0))).as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 429, "locked out: {r}");
    assert!(r.contains("locked out"), "{r}");
    let retry: u64 = r
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Retry-After");
    assert!((1..=300).contains(&retry), "{retry}");
    assert!(!env.directory.blocked().unwrap().contains("bob"));
    // Read-only calls still work for the administrator.
    let r = metrics(&env).await;
    assert_eq!(status(&r), 200, "{r}");
    // Seven refusals, seven records: who (when known), why, the status; no code.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let d = denied(&env);
    assert_eq!(d.len(), 7, "{d:?}");
    assert!(d.iter().all(|r| r.decision == "deny"
        && r.endpoint == "POST /v1/block"
        && r.outcome == "refused"
        && r.source_ip == "127.0.0.1"));
    assert_eq!(
        d.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![401, 401, 401, 401, 401, 401, 429]
    );
    assert_eq!(d[0].auth, None);
    assert!(
        d[0].reason
            .contains("administrator client certificate required")
    );
    assert!(
        d[1..]
            .iter()
            .all(|r| r.auth.as_deref() == Some("admin:alice.admin"))
    );
    assert!(
        d[1].reason.contains("wrong TOTP code (1 of 5"),
        "{:?}",
        d[1]
    );
    assert!(
        d[3].reason
            .contains("TOTP code (x-warden-totp) is required")
    );
    assert!(d[6].reason.contains("locked out"), "{:?}", d[6]);
    assert!(
        !format!("{d:?}").contains(&bad),
        "a code reached the audit log"
    );
    assert_eq!(env.upstream.hits(), 0);
}

/// A valid token for `sub` (role user, clearance 1) signed by `key` under `kid`.
fn token_for(key: &EcdsaKeyPair, kid: &str, sub: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "ES256", "kid": kid}).to_string());
    let p = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"iss": "https://idp.test", "aud": "warden", "sub": sub,
            "exp": now() + 600, "nbf": now() - 1, "roles": ["user"], "clearance": 1})
        .to_string(),
    );
    let msg = format!("{h}.{p}");
    let sig = key.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

async fn admin_post(env: &Env, path: &str, code: &str, body: &str) -> String {
    let admin = Some((env.pki.admin_cert.as_path(), env.pki.admin_key.as_path()));
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nx-warden-totp: {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(env, env.admin, admin, req.as_bytes()).await
}

async fn chat(env: &Env, credential: &str) -> String {
    raw(
        env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(credential), CHAT),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subjects_do_not_share_blocks_with_directory_identities() {
    let env = start().await;
    // A token whose sub is "bob", the name of the API-key identity bob.
    let token = token_for(&env.jwt_key, "k1", "bob");
    assert_eq!(status(&chat(&env, &token).await), 200);
    let r = records(&env);
    let last = r.iter().rev().find(|r| r.kind == "request").unwrap();
    assert_eq!(
        (last.identity.as_deref(), last.auth.as_deref()),
        (Some("jwt:bob"), Some("jwt"))
    );
    // Blocking the directory identity bob does not block the token subject bob...
    let r = admin_post(&env, "/v1/block", &totp_code(0), r#"{"identity": "bob"}"#).await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(status(&chat(&env, &env.user_key).await), 403);
    let r = chat(&env, &token).await;
    assert_eq!(status(&r), 200, "the token subject shares bob's block: {r}");
    // ...and `warden block jwt:bob` blocks the subject (each TOTP step serves one call).
    let r = admin_post(
        &env,
        "/v1/block",
        &totp_code(1),
        r#"{"identity": "jwt:bob"}"#,
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(env.directory.blocked().unwrap().contains("jwt:bob"));
    let r = chat(&env, &token).await;
    assert_eq!(status(&r), 403, "{r}");
    assert!(r.contains("identity is blocked"), "{r}");
    assert_eq!(env.upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_older_than_its_maximum_age_refuses_tokens_fail_closed() {
    let env = start().await;
    let token = token_for(&env.jwt_key, "k1", "carol");
    assert_eq!(status(&chat(&env, &token).await), 200);
    // The provider becomes unreachable and the last good key set grows older than the
    // maximum age (24 h by default): aged here instead of waited for.
    env.jwks.set(None);
    assert!(env.gw.refresh_jwks().await.is_err());
    {
        let mut g = env.gw.jwks.write().unwrap();
        let aged = (**g).clone().fetched(now() - 86_401);
        *g = Arc::new(aged);
    }
    // A failed refresh keeps the old set and its age.
    assert!(env.gw.refresh_jwks().await.is_err());
    assert!(env.gw.jwks.read().unwrap().fetched_at() <= now() - 86_401);
    let before = records(&env).len();
    let r = chat(&env, &token).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("key set is older than 86400 s"), "{r}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let recs = records(&env);
    assert!(
        // 503s are recorded as the gateway's error, not the client's.
        recs[before..].iter().any(|r| r.status == 503
            && r.decision == "error"
            && r.outcome == "refused"
            && r.reason.contains("key set is older")),
        "not audited: {:?}",
        &recs[before..]
    );
    assert_eq!(
        env.upstream.hits(),
        1,
        "a token was accepted on a stale key set"
    );
    // Other credentials are not affected.
    assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    // The provider answers again: the next fetch makes tokens work.
    env.jwks.set(Some(jwks_doc(&env.jwt_key, "k1")));
    assert_eq!(env.gw.refresh_jwks().await.unwrap(), 1);
    assert_eq!(status(&chat(&env, &token).await), 200);
    assert_eq!(env.upstream.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_fetches_the_rotated_key_set_and_retires_the_old_key() {
    let env = start().await;
    let old = token_for(&env.jwt_key, "k1", "carol");
    assert_eq!(status(&chat(&env, &old).await), 200);
    // The provider rotates: k1 out, k2 in.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let k2 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    env.jwks.set(Some(jwks_doc(&k2, "k2")));
    let fetched = env.jwks.fetches();
    let new = token_for(&k2, "k2", "carol");
    // The first token under the new kid is refused, and asks for a fetch at once.
    let r = chat(&env, &new).await;
    assert_eq!(status(&r), 401, "{r}");
    assert!(r.contains("no matching signing key"), "{r}");
    let mut ok = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if env.jwks.fetches() > fetched && status(&chat(&env, &new).await) == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the new key was not fetched within 2 s");
    assert_eq!(env.jwks.fetches(), fetched + 1);
    // The rotated-out key no longer verifies.
    let r = chat(&env, &old).await;
    assert_eq!(status(&r), 401, "{r}");
    assert_eq!(env.upstream.hits(), 2);
}

async fn readyz(env: &Env) -> String {
    raw(
        env,
        env.admin,
        None,
        b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_failure_refuses_every_request_and_readiness() {
    let env = start().await;
    let token = token_for(&env.jwt_key, "k1", "carol");
    assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    let r = readyz(&env).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("\"ready\":true"), "{r}");
    // The sink fails. With the tamper-evident log this is a failed batch commit: the
    // requests whose records were in that batch were already answered (records are
    // queued, then committed in batches), so only later requests can be refused.
    env.audit
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let user_cert = Some((env.pki.user_cert.as_path(), env.pki.user_key.as_path()));
    for (what, r) in [
        ("API key", chat(&env, &env.user_key).await),
        ("token", chat(&env, &token).await),
        (
            "mTLS",
            raw(
                &env,
                env.public,
                user_cert,
                &post("/v1/chat/completions", None, CHAT),
            )
            .await,
        ),
        (
            "no credential",
            raw(
                &env,
                env.public,
                None,
                &post("/v1/chat/completions", None, CHAT),
            )
            .await,
        ),
    ] {
        assert_eq!(status(&r), 503, "{what}: {r}");
        assert!(r.contains("audit log unavailable"), "{what}: {r}");
    }
    let r = readyz(&env).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("\"ready\":false"), "{r}");
    assert_eq!(env.upstream.hits(), 1, "forwarded without an audit record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_evaluation_error_refuses_fail_closed() {
    // Cedar skips a policy whose evaluation errors (here an integer overflow, which
    // schema validation cannot see) and decides with the others: this forbid would
    // silently not apply and the permit would allow. The gateway must refuse instead.
    let pdir = tempfile::tempdir().unwrap();
    let policy = pdir.path().join("overflow.cedar");
    std::fs::write(
        &policy,
        r#"
@id("users-all")
permit(principal in Warden::Role::"user", action, resource);

@id("overflowing-forbid")
forbid(principal, action, resource)
when { resource.classification >= 3 && resource.classification + 9223372036854775807 > 0 };
"#,
    )
    .unwrap();
    let env = start_custom(4096, serde_json::json!({"policy": policy}), None).await;
    // Where the forbid evaluates without error (classification 1) the request is served.
    assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    assert_eq!(env.upstream.hits(), 1);
    let body = r#"{"model":"secret","messages":[{"role":"user","content":"hi"}]}"#;
    let r = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&env.user_key), body),
    )
    .await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("policy evaluation error"), "{r}");
    let t0 = std::time::Instant::now();
    let last = loop {
        if let Some(r) = records(&env)
            .into_iter()
            .find(|r| r.model.as_deref() == Some("secret"))
        {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no audit record");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        (
            last.decision.as_str(),
            last.status,
            last.identity.as_deref(),
            last.model.as_deref()
        ),
        ("error", 503, Some("bob"), Some("secret")),
        "{last:?}"
    );
    assert!(
        last.reason.contains("authz: policy evaluation error"),
        "{last:?}"
    );
    assert_eq!(env.upstream.hits(), 1, "forwarded despite a policy error");
}

/// A Responses-API upstream that adds what a client must not get: the echoed
/// instructions and metadata, reasoning text, engine extras.
fn responses_reply(j: serde_json::Value) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use serde_json::json;
    let reasoning = json!({"type": "reasoning", "id": "rs_1",
        "content": [{"type": "reasoning_text", "text": "PRIVATE-REASONING"}]});
    let message = json!({"type": "message", "id": "msg_1", "role": "assistant",
        "status": "completed", "engine_note": "ENGINE-EXTRA",
        "content": [{"type": "output_text", "text": "hello there", "annotations": []}]});
    let response = |output: serde_json::Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "model": "m1", "instructions": "ECHOED-INSTRUCTIONS",
            "metadata": {"k": "ECHOED-METADATA"}, "output": output,
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}})
    };
    let (body, ctype) = if j["stream"] == true {
        let events = [
            json!({"type": "response.created", "sequence_number": 0, "response": response(json!([]))}),
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": reasoning}),
            json!({"type": "response.reasoning_text.delta", "sequence_number": 2,
                "item_id": "rs_1", "output_index": 0, "content_index": 0,
                "delta": "PRIVATE-REASONING"}),
            json!({"type": "response.output_item.added", "sequence_number": 3, "output_index": 1,
                "item": message}),
            json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
                "output_index": 1, "content_index": 0, "delta": "hello there",
                "obfuscation": "ENGINE-EXTRA"}),
            json!({"type": "response.completed", "sequence_number": 5,
                "response": response(json!([reasoning, message]))}),
        ];
        let mut s = String::new();
        for e in events {
            s.push_str(&format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap()
            ));
        }
        (s, "text/event-stream")
    } else {
        (
            response(json!([reasoning, message])).to_string(),
            "application/json",
        )
    };
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    r.headers_mut()
        .insert("content-type", ctype.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_answers_reach_the_client_minimised_in_json_and_sse() {
    let (env, _pdir) = start_permit_all(responses_reply).await;
    for (stream, must) in [
        (
            false,
            &["\"output_text\"", "hello there", "\"total_tokens\":5"][..],
        ),
        (
            true,
            &[
                "event: response.output_text.delta",
                "event: response.completed",
                "hello there",
            ][..],
        ),
    ] {
        let body = format!(r#"{{"model":"m1","input":"hi","stream":{stream}}}"#);
        let r = raw(
            &env,
            env.public,
            None,
            &post("/v1/responses", Some(&env.user_key), &body),
        )
        .await;
        assert_eq!(status(&r), 200, "stream {stream}: {r}");
        for m in must {
            assert!(r.contains(m), "stream {stream}: {m} missing: {r}");
        }
        for leak in [
            "ECHOED-INSTRUCTIONS",
            "ECHOED-METADATA",
            "PRIVATE-REASONING",
            "ENGINE-EXTRA",
            "reasoning_text",
        ] {
            assert!(
                !r.contains(leak),
                "stream {stream}: {leak} reached the client: {r}"
            );
        }
    }
    assert_eq!(env.upstream.hits(), 2);
}

/// An upstream whose 200 answer is JSON but not an object, leaking text in it.
fn array_reply(_: serde_json::Value) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let body = r#"[{"instructions":"ECHOED-INSTRUCTIONS","text":"PRIVATE"}]"#;
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A 200 body that is not a JSON object has no allowlist to go through: every
/// forwarded endpoint answers 502 and records why, as the stream path drops such events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_object_json_body_from_the_upstream_is_refused() {
    let (env, _pdir) = start_permit_all(array_reply).await;
    for (path, body) in [
        ("/v1/responses", r#"{"model":"m1","input":"hi"}"#),
        ("/v1/chat/completions", CHAT),
    ] {
        let r = raw(
            &env,
            env.public,
            None,
            &post(path, Some(&env.user_key), body),
        )
        .await;
        assert_eq!(status(&r), 502, "{path}: {r}");
        assert!(
            !r.contains("PRIVATE") && !r.contains("ECHOED"),
            "{path}: {r}"
        );
    }
    let recs = env.audit.records.lock().unwrap();
    let last: Vec<&AuditRecord> = recs.iter().rev().take(2).collect();
    for rec in last {
        assert_eq!(rec.status, 502, "{rec:?}");
        assert!(rec.reason.contains("not an object"), "{rec:?}");
    }
    assert_eq!(env.upstream.hits(), 2);
}

/// Log storage whose writer lock is not granted while `held` is set: a writer stalled
/// by a slow disk (its commits never finish, so records pile up in its queue).
#[derive(Debug)]
struct StalledDisk {
    inner: warden_tlog::PosixStorage,
    held: std::sync::atomic::AtomicBool,
}

impl warden_tlog::Storage for StalledDisk {
    fn read(&self, name: &str) -> warden_tlog::Result<Option<Vec<u8>>> {
        self.inner.read(name)
    }
    fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> warden_tlog::Result<()> {
        self.inner.write_durable(objects)
    }
    fn publish_checkpoint(&self, data: &[u8]) -> warden_tlog::Result<()> {
        self.inner.publish_checkpoint(data)
    }
    fn remove(&self, name: &str) -> warden_tlog::Result<()> {
        self.inner.remove(name)
    }
    fn list(&self, prefix: &str) -> warden_tlog::Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn lock_writer(&self, wait: Duration) -> warden_tlog::Result<Box<dyn warden_tlog::WriterLock>> {
        while self.held.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.lock_writer(wait)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// Lets the stalled disk go when dropped, also when the test fails: the log's writer can
/// then finish, and dropping the log (which waits for it) does not hang.
struct Recovers(Arc<StalledDisk>);

impl Drop for Recovers {
    fn drop(&mut self) {
        self.0
            .held
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A tamper-evident log on a disk that can be stalled, with room for `max_queued`
/// records (and `headroom` more without a reservation), as the gateway's sink.
fn stalled_log(
    dir: &std::path::Path,
    max_queued: usize,
    headroom: usize,
) -> (
    Arc<StalledDisk>,
    warden_tlog::Log,
    warden_tlog::Verifier,
    Arc<warden_gateway::tlog_sink::TlogSink>,
) {
    let disk = Arc::new(StalledDisk {
        inner: warden_tlog::PosixStorage::new(dir),
        held: std::sync::atomic::AtomicBool::new(false),
    });
    let signer = warden_tlog::Signer::generate("warden.test/audit").unwrap();
    let verifier = signer.verifier();
    let log = warden_tlog::Log::open(
        disk.clone(),
        signer,
        "warden.test/audit",
        warden_tlog::LogOptions {
            max_queued,
            headroom,
            ..warden_tlog::LogOptions::default()
        },
    )
    .unwrap();
    let sink = Arc::new(warden_gateway::tlog_sink::TlogSink::new(log.clone()));
    (disk, log, verifier, sink)
}

/// Every entry of the log, as text.
fn log_entries(disk: &StalledDisk, verifier: &warden_tlog::Verifier) -> Vec<String> {
    warden_tlog::verify_log(disk, verifier, None).unwrap();
    let (cp, _, mut r) = warden_tlog::tiles::LogReader::open(disk, verifier).unwrap();
    (0..cp.size)
        .map(|i| String::from_utf8(r.entry(i).unwrap()).unwrap())
        .collect()
}

async fn until_async(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An upstream that counts requests and answers none of them before `release` is set.
async fn held_upstream() -> (MockUpstream, tokio::sync::watch::Sender<bool>) {
    use http_body_util::BodyExt as _;
    let (release, held) = tokio::sync::watch::channel(false);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (h, held) = (Arc::clone(&h), held.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (h, mut held) = (Arc::clone(&h), held.clone());
                        async move {
                            let _ = req.into_body().collect().await;
                            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = held.wait_for(|r| *r).await;
                            let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
                            let mut r = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (MockUpstream { addr, hits }, release)
}

/// A busy gateway is ready: with every permit held by requests in flight (the log
/// keeping up), the next request is refused (503) but `/readyz` stays 200, so a load
/// balancer does not drop a replica for being busy. Only lost records (a gap) or a
/// failed log make it not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_flap_when_every_audit_permit_is_in_use() {
    let logdir = tempfile::tempdir().unwrap();
    let (_disk, log, _verifier, sink) = stalled_log(logdir.path(), 2, 4);
    let (held, release) = held_upstream().await;
    let env = start_full(
        4096,
        serde_json::json!({"models": [{"name": "m1", "upstream": format!("http://{}", held.addr),
                                       "classification": 1}]}),
        None,
        Some(sink.clone()),
    )
    .await;
    let third = async {
        until_async("two requests never reached the upstream", || {
            held.hits() == 2
        })
        .await;
        let r = chat(&env, &env.user_key).await;
        let ready = readyz(&env).await;
        release.send(true).unwrap();
        (r, ready)
    };
    let (a, b, (c, ready)) =
        tokio::join!(chat(&env, &env.user_key), chat(&env, &env.user_key), third);
    assert_eq!((status(&a), status(&b)), (200, 200), "{a}\n{b}");
    assert_eq!(status(&c), 503, "{c}");
    assert!(c.contains("audit log unavailable"), "{c}");
    assert_eq!(status(&ready), 200, "busy, not unready: {ready}");
    assert!(ready.contains("\"audit\":true"), "{ready}");
    assert_eq!(sink.lost(), 0);
    until_async("never committed", || log.queued() == 0).await;
    assert_eq!(status(&readyz(&env).await), 200);
}

/// Room for a request's record is reserved when it is admitted: with the disk stalled
/// and room for two records, two requests in flight hold it, a third is refused (503,
/// nothing forwarded), and both that were forwarded get their record when they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_requests_reserve_room_for_their_audit_records() {
    let logdir = tempfile::tempdir().unwrap();
    let (disk, log, verifier, sink) = stalled_log(logdir.path(), 2, 4);
    let (held, release) = held_upstream().await;
    let env = start_full(
        4096,
        serde_json::json!({"models": [{"name": "m1", "upstream": format!("http://{}", held.addr),
                                       "classification": 1}]}),
        None,
        Some(sink),
    )
    .await;
    let recovers = Recovers(disk.clone());
    disk.held.store(true, std::sync::atomic::Ordering::SeqCst);
    let third = async {
        until_async("two requests never reached the upstream", || {
            held.hits() == 2
        })
        .await;
        let r = chat(&env, &env.user_key).await;
        // Only now do the two in flight end (and queue their records).
        release.send(true).unwrap();
        r
    };
    let (a, b, c) = tokio::join!(chat(&env, &env.user_key), chat(&env, &env.user_key), third);
    assert_eq!((status(&a), status(&b)), (200, 200), "{a}\n{b}");
    assert_eq!(status(&c), 503, "{c}");
    assert!(c.contains("audit log unavailable"), "{c}");
    assert_eq!(held.hits(), 2, "forwarded without room for its record");
    // Both records and the refusal's wait for the disk; none was lost.
    until_async("records never queued", || log.queued() == 3).await;
    drop(recovers);
    until_async("never committed", || log.queued() == 0 && log.size() == 3).await;
    let entries = log_entries(&disk, &verifier);
    let served = entries
        .iter()
        .filter(|e| e.contains("\"status\":200"))
        .count();
    assert_eq!(served, held.hits(), "{entries:#?}");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.contains("\"status\":503"))
            .count(),
        1,
        "{entries:#?}"
    );
}

/// A full queue refuses requests, and a refusal record lost for want of room closes the
/// gateway only until the queue drains: then a durable `audit-gap` record says how many
/// records were lost, and requests are served again. Nothing is forwarded meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_log_queue_refuses_requests_until_it_drains_and_records_the_gap() {
    use std::sync::atomic::Ordering::SeqCst;
    let logdir = tempfile::tempdir().unwrap();
    // No headroom: the refusal's own record cannot be queued while the queue is full.
    let (disk, log, verifier, sink) = stalled_log(logdir.path(), 2, 0);
    let env = start_full(4096, serde_json::json!({}), None, Some(sink.clone())).await;
    assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    until_async("never committed", || log.size() == 1 && log.queued() == 0).await;
    // The disk stalls: two records fill the queue.
    let recovers = Recovers(disk.clone());
    disk.held.store(true, SeqCst);
    for _ in 0..2 {
        assert_eq!(status(&chat(&env, &env.user_key).await), 200);
    }
    until_async("records never queued", || log.queued() == 2).await;
    assert_eq!(env.upstream.hits(), 3);
    let r = chat(&env, &env.user_key).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("audit log unavailable"), "{r}");
    let r = readyz(&env).await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("\"ready\":false"), "{r}");
    assert_eq!(
        sink.lost(),
        1,
        "the refusal's record was not counted as lost"
    );
    // The disk recovers: the queue drains, the gap is recorded, the gateway reopens.
    drop(recovers);
    let mut refused = 1;
    let t0 = std::time::Instant::now();
    loop {
        let r = chat(&env, &env.user_key).await;
        if status(&r) == 200 {
            break;
        }
        assert_eq!(status(&r), 503, "{r}");
        refused += 1;
        assert!(t0.elapsed() < Duration::from_secs(10), "never reopened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        env.upstream.hits(),
        4,
        "forwarded while the audit queue was full"
    );
    until_async("never committed", || log.queued() == 0).await;
    assert_eq!(status(&readyz(&env).await), 200);
    let entries = log_entries(&disk, &verifier);
    // Every refusal is in the log or counted in a gap record.
    let lost: usize = entries
        .iter()
        .filter_map(|e| {
            let n = e.split("audit gap: ").nth(1)?.split(' ').next()?;
            Some(n.parse::<usize>().unwrap())
        })
        .sum();
    let gap = entries
        .iter()
        .position(|e| e.contains("audit gap: "))
        .unwrap_or_else(|| panic!("no gap record: {entries:#?}"));
    assert!(lost >= 1, "{entries:#?}");
    let recorded = entries
        .iter()
        .filter(|e| e.contains("\"status\":503"))
        .count();
    assert_eq!(recorded + lost, refused, "{entries:#?}");
    // Served requests: the three before the gap and the one after it.
    let served: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.contains("\"status\":200"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(served.len(), 4, "{entries:#?}");
    assert!(served[2] < gap && gap < served[3], "{entries:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_before_any_tls_work() {
    let env = start_custom(4096, serde_json::json!({"max_connections": 2}), None).await;
    let key = env.user_key.clone();
    // Two idle clients that never start TLS hold both slots (until the handshake timeout).
    let a = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let _b = tokio::net::TcpStream::connect(env.public).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third is closed at once by the gateway.
    let mut c = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(1), c.read(&mut buf))
        .await
        .expect("the connection over the cap stayed open");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "the connection over the cap got bytes: {n:?}"
    );
    let m = metrics(&env).await;
    assert!(
        m.lines()
            .any(|l| l == "warden_gateway_connections_refused_total 1"),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l == "warden_gateway_connections 2"),
        "{m}"
    );
    // One idle client leaves: its slot is given back and serves a real request.
    drop(a);
    let t0 = std::time::Instant::now();
    loop {
        let m = metrics(&env).await;
        // (1, or 0 once the other idle client met the 10-s handshake timeout.)
        if m.lines()
            .any(|l| l == "warden_gateway_connections 1" || l == "warden_gateway_connections 0")
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "slot never freed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&key), CHAT),
    )
    .await;
    assert_eq!(status(&r), 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let env = start_custom(
        4096,
        serde_json::json!({"max_connections": 8, "max_connections_per_ip": 2}),
        None,
    )
    .await;
    let key = env.user_key.clone();
    let _a = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let _b = tokio::net::TcpStream::connect(env.public).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 127.0.0.1 holds its two: a third from it is closed, with slots free overall.
    let mut c = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("the connection over the per-address cap stayed open");
    assert!(matches!(n, Ok(0) | Err(_)), "got bytes: {n:?}");
    // Another address (127.0.0.2 is loopback too) still gets in.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = sock.connect(env.public).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config(&env.pki, None))
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(&post("/v1/chat/completions", Some(&key), CHAT))
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status(&r), 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_but_a_long_stream_is_not() {
    let up = slow_sse_upstream().await;
    let env = start_custom(
        4096,
        serde_json::json!({"timeouts": {"client_idle_secs": 1},
            "models": [{"name": "m1", "upstream": format!("http://{up}"), "classification": 1}]}),
        None,
    )
    .await;
    // A client that opens HTTP/2 (preface and SETTINGS) and then sends nothing.
    let tcp = tokio::net::TcpStream::connect(env.public).await.unwrap();
    let mut cfg = (*tls_config(&env.pki, None)).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {} // the server's SETTINGS and its ACK
            Err(_) => panic!("an idle HTTP/2 connection stayed open for 10 s"),
        }
    }
    let closed = t0.elapsed();
    assert!(
        closed >= Duration::from_millis(900),
        "closed before it was idle: {closed:?}"
    );
    // A stream that outlasts the idle time is not cut: events keep coming after 2.5 s.
    let key = env.user_key.clone();
    let mut curl = curl_h2_stream(&env, &key);
    let mut out = curl.stdout.take().unwrap();
    let start = std::time::Instant::now();
    let mut late = 0;
    while start.elapsed() < Duration::from_millis(3000) {
        let n = tokio::time::timeout(Duration::from_secs(5), out.read(&mut buf))
            .await
            .expect("the stream stalled")
            .unwrap();
        assert!(n > 0, "the stream was cut after {:?}", start.elapsed());
        if start.elapsed() > Duration::from_millis(2500) {
            late += n;
        }
    }
    assert!(late > 0, "no events after 2.5 s");
}

/// The authentication scheme is case-insensitive (RFC 9110 §11.1): `BEARER` and
/// `bEaReR` carry the same key as `Bearer`, and other schemes are still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_without_regard_to_case() {
    let env = start().await;
    let key = env.user_key.clone();
    let with_scheme = |scheme: &str| {
        let mut r = post("/v1/chat/completions", None, CHAT);
        let at = r.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let line = format!("authorization: {scheme} {key}\r\n");
        r.splice(at..at, line.bytes());
        r
    };
    for (n, scheme) in ["BEARER", "bEaReR", "Bearer"].into_iter().enumerate() {
        let resp = raw(&env, env.public, None, &with_scheme(scheme)).await;
        assert_eq!(status(&resp), 200, "{scheme}: {resp}");
        assert_eq!(env.upstream.hits(), n + 1, "{scheme}");
    }
    for scheme in ["Basic", "Bearerx", "Token"] {
        let resp = raw(&env, env.public, None, &with_scheme(scheme)).await;
        assert_eq!(status(&resp), 401, "{scheme}: {resp}");
    }
    assert_eq!(env.upstream.hits(), 3);
}

fn upstream_refuses_credentials(
    _: serde_json::Value,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    // What OpenAI answers for a wrong or revoked key: the message names the key's tail.
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert(
        "www-authenticate",
        "Bearer realm=\"upstream\"".parse().unwrap(),
    );
    r
}

/// An upstream that refuses the gateway's own credential (401, 403 or 407) is a gateway
/// fault, not the client's: the client gets 502 without the upstream's message (which
/// can describe the gateway's upstream key), never a 401 that reads as "your key is bad";
/// the audit record keeps the upstream's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_gateways_credential_is_a_502_without_its_message() {
    let (env, _pdir) = start_permit_all(upstream_refuses_credentials).await;
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&env.user_key), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 502, "{resp}");
    assert_eq!(env.upstream.hits(), 1);
    for leak in [
        "sk-proj",
        "abcd",
        "Incorrect API key",
        "realm",
        "upstream\"",
    ] {
        assert!(!resp.contains(leak), "{leak} reached the client: {resp}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let recs = records(&env);
    let r = recs.last().unwrap();
    assert_eq!(r.status, 502, "{recs:?}");
    assert!(r.reason.contains("401"), "{recs:?}");
}

/// A credential a client put in the path (a key appended to the base URL, a token as a
/// path segment, a matrix parameter) is refused like any unknown path, and never reaches
/// the audit log, which cannot be scrubbed afterwards: the record names the path with
/// the credential cut out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_in_the_path_never_reaches_the_audit_log() {
    let env = start().await;
    let key = env.user_key.clone();
    let token = jwt(
        &env,
        serde_json::json!({"alg": "ES256", "kid": "k1"}),
        serde_json::json!({"iss": "https://idp.test", "aud": "warden", "sub": "carol", "exp": now() + 600}),
    );
    let encoded = key.replacen('_', "%5F", 1);
    let paths = [
        format!("/v1/chat/completions/{key}"),
        format!("/v1/{key}/chat/completions"),
        format!("/v1/chat/completions;api_key={key}"),
        format!("/{token}"),
        format!("/v1/{encoded}"),
    ];
    for p in &paths {
        let before = records(&env).len();
        let resp = raw(&env, env.public, None, &post(p, None, CHAT)).await;
        assert_eq!(status(&resp), 404, "{p}: {resp}");
        assert!(!resp.contains(&key[4..]), "{p}: {resp}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let new = records(&env)[before..].to_vec();
        assert!(
            new.iter()
                .any(|r| r.status == 404 && r.endpoint.starts_with('/')),
            "{p}: not audited: {new:?}"
        );
        let dump = format!("{new:?}");
        for secret in [&key[4..], token.rsplit('.').next().unwrap(), &token[..40]] {
            assert!(
                !dump.contains(secret),
                "{p}: a credential reached the audit log: {dump}"
            );
        }
    }
    assert_eq!(env.upstream.hits(), 0);
}

/// An identity provider that cannot be reached when the gateway starts must not keep the
/// gateway down (a restart during an IdP outage would otherwise take API-key and mTLS
/// clients down with it): tokens are refused fail closed (503, never-fetched key set)
/// while keys work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_down_at_start_refuses_tokens_but_not_keys() {
    let dead = free_port();
    let env = start_custom(
        4096,
        serde_json::json!({"oidc": {"issuer": "https://idp.test", "audience": "warden",
            "jwks_url": format!("http://127.0.0.1:{dead}/jwks"), "algorithms": ["ES256"],
            "leeway_secs": 0}}),
        None,
    )
    .await;
    let key = env.user_key.clone();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        raw(
            &env,
            env.public,
            None,
            &post("/v1/chat/completions", Some(&key), CHAT),
        ),
    )
    .await
    .expect("the public listener does not answer");
    assert_eq!(status(&resp), 200, "API key: {resp}");
    let token = jwt(
        &env,
        serde_json::json!({"alg": "ES256", "kid": "k1"}),
        serde_json::json!({"iss": "https://idp.test", "aud": "warden", "sub": "carol",
            "exp": now() + 600, "roles": ["user"], "clearance": 1}),
    );
    let resp = raw(
        &env,
        env.public,
        None,
        &post("/v1/chat/completions", Some(&token), CHAT),
    )
    .await;
    assert_eq!(status(&resp), 503, "token: {resp}");
    assert!(resp.contains("key set is older"), "{resp}");
    assert_eq!(env.upstream.hits(), 1);
}
