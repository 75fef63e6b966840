//! Shared test helpers: certificates (rcgen, aws-lc-rs), a counting mock upstream, the
//! Warden binary and the Python venv, config files.
#![allow(dead_code, reason = "each test binary uses a subset")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// PEM files of a test PKI.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub user_cert: PathBuf,
    pub user_key: PathBuf,
    /// A second certificate of the user (`svc-mtls`), serial [`USER2_SERIAL`].
    pub user2_cert: PathBuf,
    pub user2_key: PathBuf,
    /// A second certificate of the administrator (`alice.admin`), serial [`ADMIN2_SERIAL`].
    pub admin2_cert: PathBuf,
    pub admin2_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    /// The CA, to sign CRLs (see [`Pki::write_crl`]).
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

/// Serial numbers of the test PKI's certificates.
pub const SERVER_SERIAL: u64 = 1;
pub const ADMIN_SERIAL: u64 = 2;
pub const USER_SERIAL: u64 = 3;
pub const USER2_SERIAL: u64 = 5;
pub const ADMIN2_SERIAL: u64 = 6;

impl Pki {
    /// Write to `path` a PEM CRL of the test CA revoking `serials`, valid until 2099.
    pub fn write_crl(&self, path: &Path, serials: &[u64]) {
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: (*s).into(),
                    revocation_time: rcgen::date_time_ymd(2020, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap();
        std::fs::write(path, crl.pem().unwrap()).unwrap();
    }
}

impl Pki {
    /// A client certificate of the test CA with exactly these subject alternative names
    /// (e.g. URI names), written to `dir/NAME.pem` and `dir/NAME.key`.
    pub fn client_cert_with_sans(
        &self,
        dir: &Path,
        name: &str,
        sans: Vec<rcgen::SanType>,
        serial: u64,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(serial.into());
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        write_pair(dir, name, &cert, &key)
    }
}

/// Writes `dir/NAME.pem` and `dir/NAME.key`.
fn write_pair(
    dir: &Path,
    name: &str,
    cert: &rcgen::Certificate,
    key: &KeyPair,
) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'_, KeyPair>,
    serial: u64,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![eku];
    p.serial_number = Some(serial.into());
    let cert = p.signed_by(&key, issuer).unwrap();
    write_pair(dir, name, &cert, &key)
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A CA, a server certificate for localhost/127.0.0.1, an admin client certificate
/// (`alice.admin`), a user client certificate (`svc-mtls`) and one from another CA.
pub fn pki(dir: &Path) -> Pki {
    let issuer = ca("warden test CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, issuer.pem()).unwrap();
    let (server_cert, server_key) = leaf(
        dir,
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
        SERVER_SERIAL,
    );
    let (admin_cert, admin_key) = leaf(
        dir,
        "admin",
        &["alice.admin"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
        ADMIN_SERIAL,
    );
    let (user_cert, user_key) = leaf(
        dir,
        "user",
        &["svc-mtls"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
        USER_SERIAL,
    );
    let (user2_cert, user2_key) = leaf(
        dir,
        "user2",
        &["svc-mtls"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
        USER2_SERIAL,
    );
    let (admin2_cert, admin2_key) = leaf(
        dir,
        "admin2",
        &["alice.admin"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
        ADMIN2_SERIAL,
    );
    let other = ca("rogue CA");
    let (rogue_cert, rogue_key) = leaf(
        dir,
        "rogue",
        &["alice.admin"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &other,
        4,
    );
    Pki {
        ca: ca_path,
        server_cert,
        server_key,
        admin_cert,
        admin_key,
        user_cert,
        user_key,
        user2_cert,
        user2_key,
        admin2_cert,
        admin2_key,
        rogue_cert,
        rogue_key,
        issuer,
    }
}

/// Base32 TOTP secret used by the tests' administrator.
pub const TOTP_SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The current TOTP code, `offset` steps away.
pub fn totp_code(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = (now + offset * 30) as u64;
    let secret = warden_gateway::totp::base32_decode(TOTP_SECRET_B32).unwrap();
    format!(
        "{:06}",
        warden_gateway::totp::totp(&secret, t, 30, 6, warden_gateway::totp::Algorithm::Sha1)
    )
}

/// Policies used by the tests: role `user` may chat, complete and list models (not embed);
/// `researcher` additionally embeds; `limited` may chat.
pub const POLICIES: &str = r#"
@id("users-generate")
permit(principal in Warden::Role::"user",
       action in [Warden::Action::"chat", Warden::Action::"completions", Warden::Action::"models"],
       resource)
when { principal.clearance >= resource.classification };

@id("researchers-embed")
permit(principal in Warden::Role::"researcher", action, resource);

@id("limited-chat")
permit(principal in Warden::Role::"limited", action == Warden::Action::"chat", resource);

@id("no-secret-models-without-mfa")
forbid(principal, action, resource)
when { resource.classification >= 3 && !context.mfa };
"#;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mock OpenAI upstream that counts every request it receives.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl MockUpstream {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Start the mock on a runtime owned by the caller: a chat completion with logprobs and
/// a system fingerprint (what minimisation must strip).
pub async fn mock_upstream() -> MockUpstream {
    mock_upstream_with(default_reply).await
}

fn default_reply(j: serde_json::Value) -> Response<Full<Bytes>> {
    let out = serde_json::json!({"id": "cmpl-1", "object": "chat.completion", "created": 1,
        "model": j["model"], "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "logprobs": {"content": [{"token": "ok", "logprob": -0.1}]}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
    let mut r = Response::new(Full::new(Bytes::from(out.to_string())));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A counting mock upstream answering every request body (JSON) with `respond`.
pub async fn mock_upstream_with(
    respond: fn(serde_json::Value) -> Response<Full<Bytes>>,
) -> MockUpstream {
    mock_upstream_tls(respond, None).await
}

/// The counting mock, behind rustls when `tls` is given (a request counts only once
/// the TLS handshake succeeded and the HTTP request arrived).
pub async fn mock_upstream_tls(
    respond: fn(serde_json::Value) -> Response<Full<Bytes>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> MockUpstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let h = Arc::clone(&h);
            let tls = tls.clone();
            tokio::spawn(async move {
                let io = match tls {
                    Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(s).await {
                        Ok(t) => tokio_util::either::Either::Left(t),
                        Err(_) => return,
                    },
                    None => tokio_util::either::Either::Right(s),
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let h = Arc::clone(&h);
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let j = serde_json::from_slice(&body).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(respond(j))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    MockUpstream { addr, hits }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `warden` binary, built by the same cargo invocation (nextest builds every binary
/// of the workspace); fails with a clear message otherwise.
pub fn warden_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/warden
    let bin = exe.parent().unwrap().parent().unwrap().join("warden");
    assert!(
        bin.exists(),
        "{}: the warden binary is missing; build it first (`cargo build -p warden`) or run `.ci/test`",
        bin.display()
    );
    bin
}

/// Python in the test venv (fails with a message pointing at `.ci/setup`).
pub fn python() -> PathBuf {
    let p = std::env::var_os("WARDEN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
        .join("bin/python");
    assert!(
        p.exists(),
        "{}: no Python venv; run .ci/setup first",
        p.display()
    );
    p
}

/// Make a Warden home with an audit log key.
pub fn make_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(home.join("keys")).unwrap();
    let signer = warden_tlog::Signer::generate("warden-test.example/audit").unwrap();
    std::fs::write(home.join("keys/audit.key"), signer.to_key_string()).unwrap();
    home
}

/// Read every event in the home's audit log after verifying it.
pub fn audit_events(home: &Path) -> Vec<serde_json::Value> {
    let signer = warden_tlog::Signer::from_file(&home.join("keys/audit.key")).unwrap();
    let storage = warden_tlog::PosixStorage::new(home.join("audit"));
    let report = warden_tlog::verify_log(&storage, &signer.verifier(), None).unwrap();
    let mut r = warden_tlog::tiles::LogReader::new(&storage, report.entries);
    (0..report.entries)
        .map(|i| serde_json::from_slice(&r.entry(i).unwrap()).unwrap())
        .collect()
}
