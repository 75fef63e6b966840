//! The gateway in front of `https://` upstreams: the counting mock upstream behind rustls
//! with a test CA made by rcgen. Chat and SSE streaming go through; a certificate from
//! the wrong CA, an expired certificate, a name mismatch, TLS 1.2 when not allowed and a
//! missing client certificate (mTLS upstream) are each refused with 502, an audit record
//! that says why, and nothing of the cause in the answer nor the prompt at the upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_gateway::audit::{AuditRecord, MemorySink};
use warden_gateway::directory::{Identity, MemoryDirectory};
use warden_gateway::keys;

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate; `expired` puts its validity entirely in the past.
fn leaf(
    dir: &Path,
    file: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'_, KeyPair>,
    expired: bool,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, file);
    p.extended_key_usages = vec![eku];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// The upstream side of the test PKI.
struct UpPki {
    ca: PathBuf,
    other_ca: PathBuf,
    server: (PathBuf, PathBuf),
    localhost_only: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    gateway_client: (PathBuf, PathBuf),
}

fn up_pki(dir: &Path) -> UpPki {
    let issuer = ca("upstream CA");
    let other = ca("some other CA");
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, issuer.pem()).unwrap();
    let other_path = dir.join("other-ca.pem");
    std::fs::write(&other_path, other.pem()).unwrap();
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    UpPki {
        ca: ca_path,
        other_ca: other_path,
        server: leaf(
            dir,
            "up-server",
            &["localhost", "127.0.0.1"],
            server.clone(),
            &issuer,
            false,
        ),
        localhost_only: leaf(
            dir,
            "up-localhost",
            &["localhost"],
            server.clone(),
            &issuer,
            false,
        ),
        expired: leaf(
            dir,
            "up-expired",
            &["localhost", "127.0.0.1"],
            server,
            &issuer,
            true,
        ),
        gateway_client: leaf(
            dir,
            "gw-client",
            &["warden-gateway"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
            false,
        ),
    }
}

/// A rustls server configuration for the mock upstream.
fn server_tls(
    cert: &(PathBuf, PathBuf),
    client_ca: Option<&Path>,
    tls12_only: bool,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let b = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap();
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            b.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        }
        None => b.with_no_client_auth(),
    };
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(&cert.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&cert.1).unwrap();
    Arc::new(b.with_single_cert(chain, key).unwrap())
}

/// JSON for plain requests, SSE for `"stream": true`.
fn reply(j: serde_json::Value) -> Response<Full<Bytes>> {
    if j["stream"] == true {
        let chunk = |c: &str| {
            serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                "model": j["model"], "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": null}]})
        };
        let body = format!(
            "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            chunk("over "),
            chunk("tls")
        );
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return r;
    }
    let out = serde_json::json!({"id": "cmpl-1", "object": "chat.completion", "created": 1,
        "model": j["model"], "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
    let mut r = Response::new(Full::new(Bytes::from(out.to_string())));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

struct Env {
    _dir: tempfile::TempDir,
    public: std::net::SocketAddr,
    audit: Arc<MemorySink>,
    key: String,
}

/// A gateway (plain loopback public listener, so the client side stays simple) whose
/// only model `m1` is served by the upstream in `model`.
async fn gateway(dir: tempfile::TempDir, model: serde_json::Value) -> Env {
    let pki = pki(dir.path());
    let policy = dir.path().join("policies.cedar");
    std::fs::write(&policy, POLICIES).unwrap();
    let totp = dir.path().join("alice.totp");
    std::fs::write(&totp, TOTP_SECRET_B32).unwrap();
    let cfg = serde_json::json!({
        "listen": "127.0.0.1:0",
        "insecure_plaintext": true,
        "workers": 1,
        "admin": {"listen": "127.0.0.1:0",
                  "tls": {"cert": pki.server_cert, "key": pki.server_key, "client_ca": pki.ca},
                  "admins": [{"name": "alice.admin", "totp_secret_file": totp}]},
        "models": [model],
        "policy": policy,
        "timeouts": {"connect_ms": 2000, "response_header_secs": 5, "idle_secs": 5},
    });
    let cfg: warden_gateway::config::GatewayConfig = serde_json::from_value(cfg).unwrap();
    let directory = Arc::new(MemoryDirectory::default());
    let (key, hash) = keys::generate().unwrap();
    directory.add(
        Identity {
            name: "bob".into(),
            roles: vec!["user".into()],
            team: "blue".into(),
            clearance: 1,
        },
        Some(hash),
    );
    let audit = Arc::new(MemorySink::default());
    let policies = warden_gateway::authz::Policies::load(&cfg.policy, None).unwrap();
    let listeners = warden_gateway::server::bind(&cfg).await.unwrap();
    let public = listeners.public.local_addr().unwrap();
    let mut cfg = cfg;
    cfg.listen = public;
    let gw =
        warden_gateway::server::Gateway::new(cfg, directory, audit.clone(), policies, Vec::new())
            .unwrap();
    tokio::spawn(warden_gateway::server::run(
        gw,
        listeners,
        Default::default(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    Env {
        _dir: dir,
        public,
        audit,
        key: key.reveal().to_owned(),
    }
}

/// POST a chat request over plain HTTP/1.1; returns (status, headers + body).
async fn chat(env: &Env, stream: bool) -> (u16, String) {
    let body = serde_json::json!({"model": "m1", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        env.key,
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(env.public).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn last_request(env: &Env) -> AuditRecord {
    env.audit
        .records
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.kind == "request")
        .cloned()
        .expect("no request record")
}

fn model(upstream: String, extra: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::json!({"name": "m1", "upstream": upstream, "classification": 1});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_streaming_go_through_a_verified_https_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let mock = mock_upstream_tls(reply, Some(server_tls(&up.server, None, false))).await;
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.ca}),
        ),
    )
    .await;
    let (status, text) = chat(&env, false).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("over tls"), "{text}");
    assert!(
        !text.contains("fp_mock"),
        "minimisation still applies: {text}"
    );
    let (status, text) = chat(&env, true).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    // Output screening may join the two content deltas into one event.
    assert!(text.contains("data: "), "{text}");
    assert!(
        text.contains("over") && text.contains("tls") && text.contains("data: [DONE]"),
        "{text}"
    );
    assert!(!text.contains("fp_mock"), "{text}");
    assert_eq!(mock.hits(), 2);
    let rec = last_request(&env);
    assert_eq!((rec.status, rec.outcome.as_str()), (200, "complete"));
}

/// Every refusal: 502 to the client with nothing of the cause, the cause in the audit
/// record, no request at the upstream.
async fn refused(env: &Env, mock: &MockUpstream, cause: &str) {
    let (status, text) = chat(env, false).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("upstream unavailable"), "{text}");
    let lower = text.to_ascii_lowercase();
    for leak in [
        "tls",
        "certificate",
        "127.0.0.1",
        "issuer",
        "expired",
        "alert",
    ] {
        assert!(!lower.contains(leak), "the answer reveals {leak:?}: {text}");
    }
    let rec = last_request(env);
    assert_eq!((rec.status, rec.decision.as_str()), (502, "error"));
    assert!(
        rec.reason.contains(cause),
        "audit reason {:?} should name {cause:?}",
        rec.reason
    );
    assert_eq!(mock.hits(), 0, "the request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let mock = mock_upstream_tls(reply, Some(server_tls(&up.server, None, false))).await;
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.other_ca}),
        ),
    )
    .await;
    refused(&env, &mock, "UnknownIssuer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_roots_do_not_trust_a_private_upstream_ca() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let mock = mock_upstream_tls(reply, Some(server_tls(&up.server, None, false))).await;
    // No upstream_ca: verification against the system bundle, which lacks the test CA.
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({}),
        ),
    )
    .await;
    refused(&env, &mock, "UnknownIssuer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upstream_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let mock = mock_upstream_tls(reply, Some(server_tls(&up.expired, None, false))).await;
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.ca}),
        ),
    )
    .await;
    refused(&env, &mock, "certificate expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_certificate_must_name_the_host_of_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    // Certificate for "localhost" only; the URL says 127.0.0.1.
    let tls = server_tls(&up.localhost_only, None, false);
    let mock = mock_upstream_tls(reply, Some(Arc::clone(&tls))).await;
    let dir2 = tempfile::tempdir().unwrap();
    let ca = dir2.path().join("upstream-ca.pem");
    std::fs::copy(&up.ca, &ca).unwrap();
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.ca}),
        ),
    )
    .await;
    refused(&env, &mock, "not valid for name").await;
    // The same certificate is good for https://localhost (SNI and verification by name).
    let mock2 = mock_upstream_tls(reply, Some(tls)).await;
    let env2 = gateway(
        dir2,
        model(
            format!("https://localhost:{}", mock2.addr.port()),
            serde_json::json!({"upstream_ca": ca}),
        ),
    )
    .await;
    let (status, text) = chat(&env2, false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(mock2.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_upstreams_need_upstream_allow_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let tls = server_tls(&up.server, None, true);
    let mock = mock_upstream_tls(reply, Some(Arc::clone(&tls))).await;
    let dir2 = tempfile::tempdir().unwrap();
    let ca = dir2.path().join("upstream-ca.pem");
    std::fs::copy(&up.ca, &ca).unwrap();
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.ca}),
        ),
    )
    .await;
    refused(&env, &mock, "ProtocolVersion").await;
    let mock2 = mock_upstream_tls(reply, Some(tls)).await;
    let env2 = gateway(
        dir2,
        model(
            format!("https://127.0.0.1:{}", mock2.addr.port()),
            serde_json::json!({"upstream_ca": ca, "upstream_allow_tls12": true}),
        ),
    )
    .await;
    let (status, text) = chat(&env2, false).await;
    assert_eq!(status, 200, "{text} {:?}", last_request(&env2).reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_upstream_gets_the_configured_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let tls = server_tls(&up.server, Some(&up.ca), false);
    // Without a client certificate the upstream refuses the connection.
    let mock = mock_upstream_tls(reply, Some(Arc::clone(&tls))).await;
    let dir2 = tempfile::tempdir().unwrap();
    let copy = |p: &Path| {
        let to = dir2.path().join(p.file_name().unwrap());
        std::fs::copy(p, &to).unwrap();
        to
    };
    let (ca, cert, key) = (
        copy(&up.ca),
        copy(&up.gateway_client.0),
        copy(&up.gateway_client.1),
    );
    let env = gateway(
        dir,
        model(
            format!("https://127.0.0.1:{}", mock.addr.port()),
            serde_json::json!({"upstream_ca": up.ca}),
        ),
    )
    .await;
    refused(&env, &mock, "TLS").await;
    // With it, the request goes through.
    let mock2 = mock_upstream_tls(reply, Some(tls)).await;
    let env2 = gateway(
        dir2,
        model(
            format!("https://127.0.0.1:{}", mock2.addr.port()),
            serde_json::json!({"upstream_ca": ca, "upstream_client_cert": cert,
                               "upstream_client_key": key}),
        ),
    )
    .await;
    let (status, text) = chat(&env2, true).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("[DONE]"), "{text}");
    assert_eq!(mock2.hits(), 1);
}

/// Start-up errors name the model and the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_tls_material_stops_start_up_with_a_precise_error() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_pki(dir.path());
    let pki = pki(dir.path());
    let policy = dir.path().join("policies.cedar");
    std::fs::write(&policy, POLICIES).unwrap();
    let totp = dir.path().join("alice.totp");
    std::fs::write(&totp, TOTP_SECRET_B32).unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "this is no certificate\n").unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let start = |m: serde_json::Value| {
        let cfg = serde_json::json!({
            "listen": "127.0.0.1:0", "insecure_plaintext": true,
            "admin": {"listen": "127.0.0.1:0",
                      "tls": {"cert": pki.server_cert, "key": pki.server_key, "client_ca": pki.ca},
                      "admins": [{"name": "alice.admin", "totp_secret_file": totp}]},
            "models": [m], "policy": policy,
        });
        let cfg: warden_gateway::config::GatewayConfig = serde_json::from_value(cfg).unwrap();
        let policies = warden_gateway::authz::Policies::load(&cfg.policy, None).unwrap();
        warden_gateway::server::Gateway::new(
            cfg,
            Arc::new(MemoryDirectory::default()),
            Arc::new(MemorySink::default()),
            policies,
            Vec::new(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let url = "https://127.0.0.1:9".to_owned();
    let e = start(model(
        url.clone(),
        serde_json::json!({"upstream_ca": missing}),
    ));
    assert!(
        e.contains("model m1") && e.contains("missing-ca.pem"),
        "{e}"
    );
    let e = start(model(
        url.clone(),
        serde_json::json!({"upstream_ca": not_pem}),
    ));
    assert!(e.contains("model m1") && e.contains("not.pem"), "{e}");
    // A key that does not belong to the certificate.
    let e = start(model(
        url.clone(),
        serde_json::json!({"upstream_ca": up.ca, "upstream_client_cert": up.gateway_client.0,
                           "upstream_client_key": up.server.1}),
    ));
    assert!(
        e.contains("model m1") && e.contains("up-server.key") && e.contains("gw-client.pem"),
        "{e}"
    );
    let e = start(model(
        url,
        serde_json::json!({"upstream_client_cert": up.gateway_client.0}),
    ));
    assert!(e.contains("upstream_client_key"), "{e}");
    // Plain http to another host needs the explicit opt-in.
    let e = start(model(
        "http://192.0.2.10:8000".into(),
        serde_json::json!({}),
    ));
    assert!(
        e.contains("model m1") && e.contains("allow_plaintext_upstream"),
        "{e}"
    );
    let e = start(model(
        "http://127.0.0.1:8000".into(),
        serde_json::json!({"upstream_ca": up.ca}),
    ));
    assert!(e.contains("upstream_ca") && e.contains("plain http"), "{e}");
}
