//! `warden posture` reads the home and reports weakened settings with a failing exit code.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn posture(home: &Path, json: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.arg("posture");
    if json {
        c.args(["--format", "json"]);
    }
    c.arg("--home").arg(home).output().unwrap()
}

/// Exit code and the check with id `id` from a JSON posture report.
fn check(home: &Path, id: &str) -> (Option<i32>, serde_json::Value) {
    let out = posture(home, true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v}"))
        .clone();
    (out.status.code(), c)
}

fn private_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    home
}

#[test]
fn loose_key_file_fails_posture() {
    let home = private_home();
    let keys = home.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("audit.key");
    std::fs::write(&key, "secret").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let (code, wp003) = check(home.path(), "WP003");
    assert_eq!(code, Some(0));
    assert_eq!(wp003["status"], "pass");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, wp003) = check(home.path(), "WP003");
    assert_eq!(code, Some(1));
    assert_eq!(wp003["status"], "fail");
    assert!(wp003["detail"].as_str().unwrap().contains("audit.key"));
}

#[test]
fn world_readable_home_fails_posture() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = posture(home.path(), false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL WP002"), "{text}");
}

#[test]
fn weakened_vault_policy_is_reported() {
    let home = private_home();
    std::fs::write(
        home.path().join("warden.toml"),
        "[vault]\nkey_provider = \"file\"\nrequire_signature = false\nscan_fail_on = \"critical\"\n",
    )
    .unwrap();
    // warnings name deliberate choices; they do not fail the posture
    for id in ["WP005", "WP202", "WP203"] {
        let (code, c) = check(home.path(), id);
        assert_eq!(code, Some(0));
        assert_eq!(c["status"], "warn", "{id}");
    }

    // the vault refuses a single approver outright, so posture cannot even read it
    std::fs::write(
        home.path().join("warden.toml"),
        "[vault]\napprovals_required = 1\n",
    )
    .unwrap();
    let one = posture(home.path(), false);
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("two-person control"));

    std::fs::write(home.path().join("warden.toml"), "[vault]\nbogus = 1\n").unwrap();
    let bad = posture(home.path(), false);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("warden.toml"));
}

#[test]
fn weakened_screening_is_reported() {
    let home = private_home();
    // [gateway] without [gateway.screening]: everything on, but no alert leaves the host.
    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n",
    )
    .unwrap();
    for id in ["WP210", "WP211", "WP212"] {
        let (code, c) = check(home.path(), id);
        assert_eq!(code, Some(0));
        assert_eq!(c["status"], "pass", "{id}: {c}");
    }
    let (_, c) = check(home.path(), "WP213");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("no alert sink"));

    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n[gateway.screening]\ninput = false\noutput = false\n\
         [gateway.screening.drift]\nenabled = false\n\
         [gateway.screening.alerts]\nwebhooks = [\"https://siem.example/hook\"]\n",
    )
    .unwrap();
    for (id, words) in [
        ("WP210", "input screening is off"),
        ("WP211", "output screening is off"),
        ("WP212", "drift monitoring is off"),
    ] {
        let (code, c) = check(home.path(), id);
        assert_eq!(code, Some(0), "warnings do not fail posture");
        assert_eq!(c["status"], "warn", "{id}: {c}");
        assert!(c["detail"].as_str().unwrap().contains(words), "{c}");
    }
    assert_eq!(check(home.path(), "WP213").1["status"], "pass");

    // Media forwarded unscreened weakens input screening.
    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n[gateway.screening]\nallow_unscreened_media = true\n",
    )
    .unwrap();
    let (code, c) = check(home.path(), "WP210");
    assert_eq!(code, Some(0));
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("media parts (images, audio, video, files) reach the model unscreened"),
        "{c}"
    );

    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\n[gateway.screening]\nbogus = 1\n",
    )
    .unwrap();
    let bad = posture(home.path(), false);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("[gateway.screening]"));
}

#[test]
fn audit_batching_and_plaintext_upstreams_are_reported() {
    let home = private_home();
    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n\
         [[gateway.models]]\nname = \"tls\"\nupstream = \"https://models.example:8443\"\n\
         [[gateway.models]]\nname = \"local\"\nupstream = \"http://127.0.0.1:8000\"\n",
    )
    .unwrap();
    let (code, c) = check(home.path(), "WP214");
    assert_eq!(code, Some(0));
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("batch_ms = 5"),
        "{c}"
    );
    assert!(
        c["detail"].as_str().unwrap().contains("publish_ms = 1000"),
        "{c}"
    );
    assert!(
        c["detail"].as_str().unwrap().contains("max_queued = 65536"),
        "{c}"
    );
    // Sized by requests in flight, not connections (one HTTP/2 connection carries many).
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("identities x [gateway.limits] concurrency, and max_connections x 256"),
        "{c}"
    );
    let out = posture(home.path(), true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let wp215: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "WP215")
        .collect();
    assert_eq!(wp215.len(), 2, "{v}");
    assert!(wp215.iter().all(|c| c["status"] == "pass"), "{v}");
    assert!(
        wp215[0]["detail"]
            .as_str()
            .unwrap()
            .contains("system roots"),
        "{v}"
    );

    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n[gateway.audit]\nbatch_ms = 80\npublish_ms = 250\n\
         [[gateway.models]]\nname = \"remote\"\nupstream = \"http://10.0.0.7:8000\"\n\
         allow_plaintext_upstream = true\n",
    )
    .unwrap();
    let (code, c) = check(home.path(), "WP214");
    assert_eq!(code, Some(0), "warnings do not fail posture");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("batch_ms = 80"),
        "{c}"
    );
    assert!(
        c["detail"].as_str().unwrap().contains("within 250 ms"),
        "{c}"
    );
    let (_, c) = check(home.path(), "WP215");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("allow_plaintext_upstream = true"),
        "{c}"
    );

    // A queue deeper than the default is reported.
    write_gateway(home.path(), "[gateway.audit]\nmax_queued = 100000\n");
    let (_, c) = check(home.path(), "WP214");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("max_queued = 100000 (default 65536)"),
        "{c}"
    );
    // So is one that requests in flight alone can fill: below max_connections, or tiny.
    for (settings, words) in [
        (
            "max_connections = 8192\n[gateway.audit]\nmax_queued = 8000\n",
            "below max_connections = 8192",
        ),
        (
            "max_connections = 16\n[gateway.audit]\nmax_queued = 32\n",
            "below max_connections = 16 or 64",
        ),
    ] {
        write_gateway(home.path(), settings);
        let (_, c) = check(home.path(), "WP214");
        assert_eq!(c["status"], "warn", "{c}");
        assert!(c["detail"].as_str().unwrap().contains(words), "{c}");
    }
    write_gateway(
        home.path(),
        "max_connections = 16\n[gateway.audit]\nmax_queued = 64\n",
    );
    assert_eq!(check(home.path(), "WP214").1["status"], "pass");

    // Plain http to another host without the opt-in is a failure, named.
    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n\
         [[gateway.models]]\nname = \"remote\"\nupstream = \"http://10.0.0.7:8000\"\n",
    )
    .unwrap();
    let (code, c) = check(home.path(), "WP215");
    assert_ne!(code, Some(0));
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("model remote"),
        "{c}"
    );
}

/// A warden.toml with a gateway of one loopback model; `settings` go after `policy`.
fn write_gateway(home: &std::path::Path, settings: &str) {
    std::fs::write(
        home.join("warden.toml"),
        format!(
            "[gateway]\npolicy = \"p.cedar\"\n{settings}\
             [[gateway.models]]\nname = \"local\"\nupstream = \"http://127.0.0.1:8000\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn the_oidc_key_set_age_is_reported() {
    let home = private_home();
    let write = |extra: &str| {
        write_gateway(
            home.path(),
            &format!(
                "[gateway.oidc]\nissuer = \"https://idp.example\"\naudience = \"warden\"\n\
                 jwks_url = \"https://idp.example/jwks\"\n{extra}"
            ),
        );
    };
    write("");
    let (code, c) = check(home.path(), "WP216");
    assert_eq!(code, Some(0));
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("jwks_max_age_secs = 86400"),
        "{c}"
    );
    write("jwks_max_age_secs = 604800\n");
    let (code, c) = check(home.path(), "WP216");
    assert_eq!(code, Some(0), "warnings do not fail posture");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("rotated out"), "{c}");
}

#[test]
fn connection_limits_are_reported() {
    let home = private_home();
    let write = |extra: &str| write_gateway(home.path(), extra);
    write("");
    let (code, c) = check(home.path(), "WP217");
    assert_eq!(code, Some(0));
    assert_eq!(c["status"], "pass", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("at most 4096, 512 per client address"),
        "{c}"
    );
    write("max_connections = 100\nmax_connections_per_ip = 100\n");
    let (_, c) = check(home.path(), "WP217");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("every connection slot"),
        "{c}"
    );
}

/// Weaker listener transport than the default (TLS 1.3 only) is reported, not silent.
#[test]
fn listener_tls_weakening_is_reported() {
    let home = private_home();
    let write = |extra: &str| write_gateway(home.path(), extra);
    write("");
    let (code, c) = check(home.path(), "WP218");
    assert_eq!(code, Some(0));
    assert_eq!(c["status"], "pass", "{c}");
    for (settings, words) in [
        (
            "[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nallow_tls12 = true\n",
            "public listener also offers TLS 1.2",
        ),
        (
            "[gateway.admin.tls]\ncert = \"c\"\nkey = \"k\"\nallow_tls12 = true\n",
            "admin listener also offers TLS 1.2",
        ),
        ("insecure_plaintext = true\n", "serves plain HTTP"),
    ] {
        write(settings);
        let (code, c) = check(home.path(), "WP218");
        assert_eq!(code, Some(0), "warnings do not fail posture");
        assert_eq!(c["status"], "warn", "{settings}: {c}");
        assert!(c["detail"].as_str().unwrap().contains(words), "{c}");
    }
}

/// Client certificates accepted without revocation lists, or with expired ones, are
/// reported.
#[test]
fn client_certificates_without_crls_are_reported() {
    let home = private_home();
    let write = |extra: &str| write_gateway(home.path(), extra);
    let admin = "[gateway.admin.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n";
    for (settings, status, words) in [
        (
            format!("{admin}client_crl = [\"a.crl\"]\n"),
            "pass",
            "checked against CRLs",
        ),
        (
            format!(
                "[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n{admin}client_crl = [\"a.crl\"]\n"
            ),
            "info",
            "[gateway.tls]: client certificates are accepted without a CRL",
        ),
        (
            format!("{admin}client_crl = [\"a.crl\"]\nclient_crl_allow_expired = true\n"),
            "warn",
            "an expired CRL is still trusted",
        ),
    ] {
        write(&settings);
        let (code, c) = check(home.path(), "WP220");
        assert_eq!(code, Some(0), "{settings}: {c}");
        assert_eq!(c["status"], status, "{settings}: {c}");
        assert!(c["detail"].as_str().unwrap().contains(words), "{c}");
    }
}

#[test]
fn media_urls_allowed_are_reported() {
    let home = private_home();
    write_gateway(home.path(), "");
    let out = posture(home.path(), true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "WP228"),
        "{v}"
    );
    write_gateway(
        home.path(),
        "[gateway.validation]\nallow_media_urls = true\n",
    );
    let (code, c) = check(home.path(), "WP228");
    assert_eq!(code, Some(0), "{c}");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("never screened"),
        "{c}"
    );
}

#[test]
fn how_client_certificates_name_identities_is_reported() {
    let home = private_home();
    let admin = "[gateway.admin.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n";
    let spiffe = "client_identity = \"uri:spiffe://corp.example/warden/\"\n";
    for (settings, status, words) in [
        (
            admin.to_owned(),
            "info",
            "[gateway.admin.tls]: a client certificate's first DNS name is its identity",
        ),
        (
            format!("{admin}{spiffe}"),
            "pass",
            "[gateway.admin.tls]: identities from URI names under spiffe://corp.example/warden/",
        ),
        (
            format!(
                "[gateway.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n{admin}{spiffe}"
            ),
            "info",
            "[gateway.tls]: a client certificate's first DNS name",
        ),
    ] {
        write_gateway(home.path(), &settings);
        let (code, c) = check(home.path(), "WP227");
        assert_eq!(code, Some(0), "{settings}: {c}");
        assert_eq!(c["status"], status, "{settings}: {c}");
        assert!(c["detail"].as_str().unwrap().contains(words), "{c}");
    }
}

/// Write to `path` a PEM CRL of a fresh CA whose nextUpdate is `days` from now.
fn write_crl_due_in(path: &Path, days: u64) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next = now + Duration::from_secs(days * 86_400);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(1970, 1, 1) + next,
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap();
    std::fs::write(path, crl.pem().unwrap()).unwrap();
}

/// WP225: the CRLs' nextUpdate, read from the files the listeners read: due within 7
/// days is a warning naming the file and the date.
#[test]
fn crls_due_soon_are_reported() {
    let home = private_home();
    let admin = "[gateway.admin.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n\
                 client_crl = [\"a.crl\"]\n";
    write_gateway(home.path(), admin);
    write_crl_due_in(&home.path().join("a.crl"), 30);
    let (code, c) = check(home.path(), "WP225");
    assert_eq!(code, Some(0), "{c}");
    assert_eq!(c["status"], "pass", "{c}");
    write_crl_due_in(&home.path().join("a.crl"), 3);
    let (code, c) = check(home.path(), "WP225");
    assert_eq!(code, Some(0), "a warning does not fail posture: {c}");
    assert_eq!(c["status"], "warn", "{c}");
    let d = c["detail"].as_str().unwrap();
    assert!(
        d.contains("a.crl: CRL nextUpdate 20") && d.contains("is within 7 days"),
        "{c}"
    );
}

/// An administrator's TOTP secret (or a listener's TLS key) that others can read, wherever
/// the configuration keeps it, fails posture: whoever reads it computes the codes.
#[test]
fn readable_gateway_secret_files_fail_posture() {
    let home = private_home();
    let totp = home.path().join("alice.totp");
    std::fs::write(&totp, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    std::fs::set_permissions(&totp, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_gateway(
        home.path(),
        "[[gateway.admin.admins]]\nname = \"alice.admin\"\ntotp_secret_file = \"alice.totp\"\n",
    );
    let (code, c) = check(home.path(), "WP219");
    assert_eq!(code, Some(0), "{c}");
    assert_eq!(c["status"], "pass", "{c}");
    std::fs::set_permissions(&totp, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, c) = check(home.path(), "WP219");
    assert_eq!(code, Some(1), "{c}");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("alice.totp"), "{c}");
}

/// Relaying upstream server errors' messages is an opt-in that posture names per model;
/// without it there is nothing to report.
#[test]
fn relayed_upstream_server_errors_are_reported() {
    let home = private_home();
    write_gateway(home.path(), "");
    let out = posture(home.path(), true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "WP224"),
        "{v}"
    );
    std::fs::write(
        home.path().join("warden.toml"),
        "[gateway]\npolicy = \"p.cedar\"\n\
         [[gateway.models]]\nname = \"local\"\nupstream = \"http://127.0.0.1:8000\"\n\
         relay_upstream_server_errors = true\n",
    )
    .unwrap();
    let (code, c) = check(home.path(), "WP224");
    assert_eq!(code, Some(0), "a warning does not fail posture");
    assert_eq!(c["status"], "warn", "{c}");
    let d = c["detail"].as_str().unwrap();
    assert!(
        d.contains("model local") && d.contains("relay_upstream_server_errors = true"),
        "{c}"
    );
}

/// Serving tokens over connections with another identity's client certificate is an
/// opt-in that posture names; without it nothing is reported.
#[test]
fn tokens_with_client_certificates_are_reported() {
    let home = private_home();
    let oidc = "[gateway.oidc]\nissuer = \"https://idp.test\"\naudience = \"warden\"\n\
                jwks_url = \"https://idp.test/jwks\"\n";
    std::fs::write(
        home.path().join("warden.toml"),
        format!("[gateway]\npolicy = \"p.cedar\"\n{oidc}"),
    )
    .unwrap();
    let out = posture(home.path(), true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert!(ids.iter().any(|i| i == "WP216"), "{v}");
    assert!(!ids.iter().any(|i| i == "WP226"), "{v}");
    std::fs::write(
        home.path().join("warden.toml"),
        format!("[gateway]\npolicy = \"p.cedar\"\n{oidc}tokens_with_client_certificates = true\n"),
    )
    .unwrap();
    let (_, c) = check(home.path(), "WP226");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("tokens_with_client_certificates = true"),
        "{c}"
    );
}
