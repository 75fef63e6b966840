//! API key management through the admin listener with the production wiring: the SQLite
//! store behind `StoreDirectory` and the tamper-evident log behind `TlogSink`. A key
//! created while the gateway serves works at once, is stored only as a hash, is in the
//! verified audit log as `key_created`, and stops working within 2 s of its revocation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send one request over TLS (optionally with the admin certificate); the raw answer.
async fn https(pki: &Pki, addr: std::net::SocketAddr, admin: bool, req: String) -> (u16, String) {
    use rustls_pki_types::pem::PemObject as _;
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
    let cfg = if admin {
        b.with_client_auth_cert(
            rustls_pki_types::CertificateDer::pem_file_iter(&pki.admin_cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect(),
            rustls_pki_types::PrivateKeyDer::from_pem_file(&pki.admin_key).unwrap(),
        )
        .unwrap()
    } else {
        b.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn admin_post(path: &str, code: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nx-warden-totp: {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn chat(key: &str) -> String {
    let body = r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_through_the_admin_api_with_store_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let home = make_home(dir.path());
    let upstream = mock_upstream().await;
    let policy = dir.path().join("policies.cedar");
    std::fs::write(&policy, POLICIES).unwrap();
    let totp = dir.path().join("alice.totp");
    std::fs::write(&totp, TOTP_SECRET_B32).unwrap();
    let cfg = serde_json::json!({
        "listen": "127.0.0.1:0",
        "tls": {"cert": pki.server_cert, "key": pki.server_key},
        "admin": {"listen": "127.0.0.1:0",
                  "tls": {"cert": pki.server_cert, "key": pki.server_key, "client_ca": pki.ca},
                  "admins": [{"name": "alice.admin", "totp_secret_file": totp}]},
        "models": [{"name": "m1", "upstream": format!("http://{}", upstream.addr), "classification": 1}],
        "policy": policy,
    });
    let cfg: warden_gateway::config::GatewayConfig = serde_json::from_value(cfg).unwrap();
    let store: Arc<dyn warden_store::Store> =
        Arc::new(warden_store::SqliteStore::open(&home.join("state.db")).unwrap());
    let log = warden_tlog::Log::open_dir(
        &home.join("audit"),
        &home.join("keys/audit.key"),
        warden_tlog::LogOptions::default(),
    )
    .unwrap();
    let audit = Arc::new(warden_gateway::tlog_sink::TlogSink::new(log));
    let directory = Arc::new(warden_gateway::directory::StoreDirectory::new(Arc::clone(
        &store,
    )));
    let policies = warden_gateway::authz::Policies::load(&cfg.policy, None).unwrap();
    let listeners = warden_gateway::server::bind(&cfg).await.unwrap();
    let public = listeners.public.local_addr().unwrap();
    let admin = listeners.admin.local_addr().unwrap();
    let mut cfg = cfg;
    cfg.listen = public;
    let gw =
        warden_gateway::server::Gateway::new(cfg, directory, audit, policies, Vec::new()).unwrap();
    let shutdown = warden_gateway::server::Shutdown::new();
    let task = tokio::spawn(warden_gateway::server::run(gw, listeners, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (s, r) = https(
        &pki,
        admin,
        true,
        admin_post(
            "/v1/keys",
            &totp_code(0),
            r#"{"identity": "dave", "roles": ["user"], "clearance": 1, "expires_days": 30}"#,
        ),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let j: serde_json::Value = serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let key = j["key"].as_str().unwrap().to_owned();
    let kid = j["key_id"].as_str().unwrap().to_owned();
    // Stored as a hash, with its expiry; never the key.
    let rec = store.api_key(&kid).unwrap().unwrap();
    assert_eq!(rec.identity, "dave");
    assert!(rec.expires_at.is_some());
    assert_eq!(
        rec.secret_hash,
        warden_gateway::keys::KeyHash::of(&key).0.to_vec()
    );
    let (s, r) = https(&pki, public, false, chat(&key)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(upstream.hits(), 1);

    let (s, r) = https(
        &pki,
        admin,
        true,
        admin_post(&format!("/v1/keys/{kid}/revoke"), &totp_code(1), ""),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(store.api_key(&kid).unwrap().unwrap().revoked_at.is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, r) = https(&pki, public, false, chat(&key)).await;
    assert_eq!(s, 401, "{r}");
    assert_eq!(upstream.hits(), 1);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = audit_events(&home);
    assert!(
        events.iter().any(|e| e["event"] == "key_created"
            && e["key_id"] == kid.as_str()
            && e["purpose"] == "api:dave"
            && e["actor"] == "alice.admin"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "key_revoked" && e["key_id"] == kid.as_str()),
        "{events:?}"
    );
    assert!(
        !serde_json::to_string(&events).unwrap().contains(&key),
        "the key reached the audit log"
    );
}
