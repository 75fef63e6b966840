//! Interoperability of `warden sign` / `warden verify` with the OpenSSF Model Signing
//! reference tool (`model_signing` from PyPI, installed by `.ci/setup.d/sign.sh`), and
//! the messages and exit codes of verification failures.
//!
//! Python signs → Warden verifies; Warden signs → the reference verifies; files and
//! shards; P-256, P-384, P-521; key and certificate mode; tampering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python; a missing tool is a failure that says how to fix it.
fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("WARDEN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let p = venv.join("bin").join(name);
    assert!(
        p.exists(),
        "{} not found: run .ci/setup (installs model-signing into .venv)",
        p.display()
    );
    p
}

fn warden(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// Exit 1 with `needle` in standard error.
fn fails_with(o: Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(needle),
        "expected {needle:?} in:\n{}",
        text(&o)
    );
}

fn model_signing(args: &[&str], cwd: &Path) -> Output {
    Command::new(venv_bin("model_signing"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// `model_signing sign key MODEL --private_key KEY --signature SIG [EXTRA…]`.
fn ms_sign(model: &str, key: &str, sig: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec![
        "sign",
        "key",
        model,
        "--private_key",
        key,
        "--signature",
        sig,
    ];
    a.extend_from_slice(extra);
    model_signing(&a, cwd)
}

/// `model_signing verify key MODEL --signature SIG --public_key PUB [EXTRA…]`.
fn ms_verify(model: &str, sig: &str, public: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec![
        "verify",
        "key",
        model,
        "--signature",
        sig,
        "--public_key",
        public,
    ];
    a.extend_from_slice(extra);
    model_signing(&a, cwd)
}

/// `warden sign MODEL --key KEY --signature SIG [EXTRA…]`.
fn w_sign(model: &str, key: &str, sig: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec!["sign", model, "--key", key, "--signature", sig];
    a.extend_from_slice(extra);
    warden(&a, cwd)
}

/// `warden verify MODEL --signature SIG --public-key PUB [EXTRA…]`.
fn w_verify(model: &str, sig: &str, public: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec!["verify", model, "--signature", sig, "--public-key", public];
    a.extend_from_slice(extra);
    warden(&a, cwd)
}

/// `model_signing sign certificate MODEL` with the PKI's leaf key, leaf and intermediate.
fn ms_sign_cert(model: &str, p: &Pki, sig: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec![
        "sign",
        "certificate",
        model,
        "--private_key",
        s(&p.leaf_key),
        "--signing_certificate",
        s(&p.leaf),
        "--certificate_chain",
        s(&p.intermediate),
        "--signature",
        sig,
    ];
    a.extend_from_slice(extra);
    model_signing(&a, cwd)
}

/// `warden sign MODEL` with the PKI's leaf key, leaf and intermediate.
fn w_sign_cert(model: &str, p: &Pki, sig: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec![
        "sign",
        model,
        "--key",
        s(&p.leaf_key),
        "--certificate",
        s(&p.leaf),
        "--certificate-chain",
        s(&p.intermediate),
        "--signature",
        sig,
    ];
    a.extend_from_slice(extra);
    warden(&a, cwd)
}

/// `warden verify MODEL --signature SIG --certificate-chain ROOTS [EXTRA…]`.
fn w_verify_chain(model: &str, sig: &str, roots: &str, extra: &[&str], cwd: &Path) -> Output {
    let mut a = vec![
        "verify",
        model,
        "--signature",
        sig,
        "--certificate-chain",
        roots,
    ];
    a.extend_from_slice(extra);
    warden(&a, cwd)
}

fn python(code: &str, cwd: &Path) -> Output {
    Command::new(venv_bin("python"))
        .arg("-c")
        .arg(code)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A small model: a few files in nested directories, an empty file, a `.git` dir that
/// both tools ignore.
fn make_model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(m.join("weights.bin"), &big).unwrap();
    std::fs::write(m.join("config.json"), b"{\"layers\": 2}\n").unwrap();
    std::fs::write(m.join("sub/tokenizer.json"), b"{}").unwrap();
    std::fs::write(m.join("sub/deeper/a.b"), b"abc").unwrap();
    std::fs::write(m.join("empty"), b"").unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    m
}

struct Keys {
    private: PathBuf,
    public: PathBuf,
}

fn keys(dir: &Path, alg: &'static SignatureAlgorithm, tag: &str) -> Keys {
    let kp = KeyPair::generate_for(alg).unwrap();
    let private = dir.join(format!("{tag}.key"));
    let public = dir.join(format!("{tag}.pub"));
    std::fs::write(&private, kp.serialize_pem()).unwrap();
    std::fs::write(&public, kp.public_key_pem()).unwrap();
    Keys { private, public }
}

const CURVES: [(&SignatureAlgorithm, &str); 3] = [
    (&rcgen::PKCS_ECDSA_P256_SHA256, "p256"),
    (&rcgen::PKCS_ECDSA_P384_SHA384, "p384"),
    (&rcgen::PKCS_ECDSA_P521_SHA512, "p521"),
];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn python_signs_warden_verifies_files_every_curve() {
    for (alg, tag) in CURVES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = make_model(d);
        let k = keys(d, alg, tag);
        let sig = d.join("py.sig");
        ok(ms_sign(s(&m), s(&k.private), s(&sig), &[], d));
        let o = ok(w_verify(s(&m), s(&sig), s(&k.public), &[], d));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("5 resources match"),
            "{tag}: {}",
            text(&o)
        );
    }
}

#[test]
fn warden_signs_python_verifies_files_every_curve() {
    for (alg, tag) in CURVES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = make_model(d);
        let k = keys(d, alg, tag);
        let sig = d.join("w.sig");
        ok(w_sign(s(&m), s(&k.private), s(&sig), &[], d));
        let o = ms_verify(s(&m), s(&sig), s(&k.public), &[], d);
        assert!(
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("Verification succeeded"),
            "{tag}: {}",
            text(&o)
        );
        // And the reference notices tampering of a Warden-signed model.
        std::fs::write(m.join("sub/tokenizer.json"), b"{\"x\":1}").unwrap();
        let o = ms_verify(s(&m), s(&sig), s(&k.public), &[], d);
        assert!(!o.status.success(), "{tag}: {}", text(&o));
    }
}

#[test]
fn shards_both_directions_every_curve() {
    for (alg, tag) in CURVES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = make_model(d);
        let k = keys(d, alg, tag);
        // The reference CLI has no shard option; its Python API does (and writes a float
        // shard_size, which Warden must accept).
        let py = python(
            &format!(
                "import model_signing\n\
                 model_signing.signing.Config().use_elliptic_key_signer(private_key={:?})\
                 .set_hashing_config(model_signing.hashing.Config().use_shard_serialization(shard_size=16384))\
                 .sign({:?}, {:?})",
                s(&k.private),
                s(&m),
                s(&d.join("py-shards.sig"))
            ),
            d,
        );
        assert!(py.status.success(), "{}", text(&py));
        let o = ok(w_verify(
            s(&m),
            s(&d.join("py-shards.sig")),
            s(&k.public),
            &[],
            d,
        ));
        // weights.bin: 70000 bytes = 5 shards; three small files; the empty one has none.
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("8 resources match"),
            "{}",
            text(&o)
        );

        ok(w_sign(
            s(&m),
            s(&k.private),
            s(&d.join("w-shards.sig")),
            &["--shards", "--shard-size", "16384"],
            d,
        ));
        let bundle = std::fs::read(d.join("w-shards.sig")).unwrap();
        let payload = statement_of(&bundle);
        assert_eq!(
            payload["predicate"]["serialization"]["shard_size"],
            serde_json::json!(16384)
        );
        assert!(payload["predicate"]["serialization"]["shard_size"].is_u64());
        let py = python(
            &format!(
                "import model_signing\n\
                 model_signing.verifying.Config().use_elliptic_key_verifier(public_key={:?})\
                 .verify({:?}, {:?})\nprint('shards ok')",
                s(&k.public),
                s(&m),
                s(&d.join("w-shards.sig"))
            ),
            d,
        );
        assert!(
            py.status.success() && String::from_utf8_lossy(&py.stdout).contains("shards ok"),
            "{tag}: {}",
            text(&py)
        );
    }
}

fn statement_of(bundle: &[u8]) -> serde_json::Value {
    use base64_decode as b64;
    let v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let payload = b64(v["dsseEnvelope"]["payload"].as_str().unwrap());
    serde_json::from_slice(&payload).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn single_file_model_is_named_dot_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);
    let file = m.join("weights.bin");
    let k = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "k");
    ok(ms_sign(s(&file), s(&k.private), "py.sig", &[], d));
    ok(w_verify(s(&file), "py.sig", s(&k.public), &[], d));
    ok(w_sign(s(&file), s(&k.private), "w.sig", &[], d));
    let st = statement_of(&std::fs::read(d.join("w.sig")).unwrap());
    assert_eq!(st["predicate"]["resources"][0]["name"], ".");
    assert_eq!(st["subject"][0]["name"], "weights.bin");
    ok(ms_verify(s(&file), "w.sig", s(&k.public), &[], d));
}

#[test]
fn sec1_key_from_openssl_and_default_signature_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);
    let gen_key = Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ])
        .current_dir(d)
        .output()
        .expect("openssl CLI missing: run .ci/setup");
    assert!(gen_key.status.success(), "{}", text(&gen_key));
    let pubk = Command::new("openssl")
        .args(["ec", "-in", "sec1.pem", "-pubout", "-out", "sec1.pub"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(pubk.status.success(), "{}", text(&pubk));
    assert!(
        std::fs::read_to_string(d.join("sec1.pem"))
            .unwrap()
            .contains("EC PRIVATE KEY")
    );
    // Signing from inside the model directory: model.sig lands there and is ignored.
    ok(warden(&["sign", ".", "--key", "../sec1.pem"], &m));
    assert!(m.join("model.sig").exists());
    let st = statement_of(&std::fs::read(m.join("model.sig")).unwrap());
    let ignored: Vec<&str> = st["predicate"]["serialization"]["ignore_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ignored.contains(&"model.sig") && ignored.contains(&".git"),
        "{ignored:?}"
    );
    ok(ms_verify(".", "model.sig", "../sec1.pub", &[], &m));
    ok(w_verify(".", "model.sig", "../sec1.pub", &[], &m));
}

#[test]
fn tampering_is_named_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "k");
    let fresh = |name: &str| -> PathBuf {
        let sub = d.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let m = make_model(&sub);
        ok(ms_sign(s(&m), s(&k.private), s(&sub.join("m.sig")), &[], d));
        m
    };
    let verify = |m: &Path| {
        let sig = m.parent().unwrap().join("m.sig");
        w_verify(s(m), s(&sig), s(&k.public), &[], d)
    };

    let m = fresh("changed");
    let mut bytes = std::fs::read(m.join("weights.bin")).unwrap();
    bytes[12_345] ^= 1;
    std::fs::write(m.join("weights.bin"), &bytes).unwrap();
    fails_with(verify(&m), "weights.bin: content changed");

    let m = fresh("added");
    std::fs::write(m.join("sub/extra.py"), b"import os").unwrap();
    fails_with(verify(&m), "sub/extra.py: file added");

    let m = fresh("removed");
    std::fs::remove_file(m.join("config.json")).unwrap();
    fails_with(verify(&m), "config.json: file removed");

    let m = fresh("renamed");
    std::fs::rename(m.join("sub/tokenizer.json"), m.join("sub/tok.json")).unwrap();
    fails_with(
        verify(&m),
        "sub/tokenizer.json: file renamed to sub/tok.json",
    );

    // --ignore-unsigned-files accepts the added file but still checks the rest.
    let m = fresh("unsigned");
    std::fs::write(m.join("notes.txt"), b"hi").unwrap();
    let sig = d.join("unsigned/m.sig");
    ok(w_verify(
        s(&m),
        s(&sig),
        s(&k.public),
        &["--ignore-unsigned-files"],
        d,
    ));

    // Wrong key: the hint names the mismatch.
    let other = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "other");
    let m = fresh("wrongkey");
    let sig = d.join("wrongkey/m.sig");
    fails_with(
        w_verify(s(&m), s(&sig), s(&other.public), &[], d),
        "key mismatch",
    );

    // Swapped signature: the envelope of one model with the signature of another.
    let a = fresh("swap-a");
    std::fs::write(d.join("swap-b-model"), b"another model").unwrap();
    ok(w_sign(
        s(&d.join("swap-b-model")),
        s(&k.private),
        s(&d.join("b.sig")),
        &[],
        d,
    ));
    let mut va: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("swap-a/m.sig")).unwrap()).unwrap();
    let vb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("b.sig")).unwrap()).unwrap();
    va["dsseEnvelope"]["signatures"] = vb["dsseEnvelope"]["signatures"].clone();
    std::fs::write(d.join("swapped.sig"), serde_json::to_vec(&va).unwrap()).unwrap();
    fails_with(
        w_verify(s(&a), s(&d.join("swapped.sig")), s(&k.public), &[], d),
        "signature check failed",
    );

    // A bundle signed by the right key over a different model: the files are named.
    fails_with(
        w_verify(s(&a), s(&d.join("b.sig")), s(&k.public), &[], d),
        ".: file removed",
    );

    // Unusable input: exit 2.
    std::fs::write(d.join("garbage.sig"), b"{not json").unwrap();
    let o = w_verify(s(&a), s(&d.join("garbage.sig")), s(&k.public), &[], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("garbage.sig"),
        "{}",
        text(&o)
    );
    let o = w_verify(
        s(&a),
        s(&d.join("swap-a/m.sig")),
        s(&d.join("nokey.pem")),
        &[],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn symlinks_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);
    std::fs::write(d.join("outside"), b"secret").unwrap();
    std::os::unix::fs::symlink(d.join("outside"), m.join("link")).unwrap();
    let k = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "k");
    let o = w_sign(s(&m), s(&k.private), "w.sig", &[], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is a symbolic link"),
        "{}",
        text(&o)
    );
    assert!(
        !d.join("w.sig").exists(),
        "no partial signature left behind"
    );
    ok(w_sign(
        s(&m),
        s(&k.private),
        "w.sig",
        &["--allow-symlinks"],
        d,
    ));
    let o = w_verify(s(&m), "w.sig", s(&k.public), &[], d);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    ok(w_verify(
        s(&m),
        "w.sig",
        s(&k.public),
        &["--allow-symlinks"],
        d,
    ));
    ok(ms_verify(
        s(&m),
        "w.sig",
        s(&k.public),
        &["--allow_symlinks"],
        d,
    ));
}

/// Unsafe names in a validly signed statement are refused on verify.
#[test]
fn traversal_and_absolute_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("m")).unwrap();
    std::fs::write(d.join("m/a"), b"a").unwrap();
    let k = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "k");
    let key = warden_sign_key(&k.private);
    for name in ["../escape", "/etc/passwd", "a/../../x"] {
        let digest = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
        let subject = sha256_hex(&hex_decode(digest));
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "m", "digest": {"sha256": subject}}],
            "predicateType": "https://model_signing/signature/v1.0",
            "predicate": {
                "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false},
                "resources": [{"name": name, "algorithm": "sha256", "digest": digest}],
            }
        });
        let payload = serde_json::to_vec(&statement).unwrap();
        let bundle = signed_bundle(&key, &payload);
        std::fs::write(d.join("evil.sig"), bundle).unwrap();
        fails_with(w_verify("m", "evil.sig", s(&k.public), &[], d), "refused");
    }
}

fn warden_sign_key(p: &Path) -> warden_sign::SigningKey {
    warden_sign::SigningKey::from_pem_file(p).unwrap()
}

fn signed_bundle(key: &warden_sign::SigningKey, payload: &[u8]) -> Vec<u8> {
    let pae = warden_sign::bundle::pae(warden_sign::bundle::PAYLOAD_TYPE, payload);
    let sig = key.sign(&pae).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": key.public_key().hint()}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64_encode(payload),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64_encode(&sig), "keyid": ""}],
        }
    }))
    .unwrap()
}

fn hex_decode(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    warden_sign::HashAlgorithm::Sha256
        .digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
}

// ----------------------------------------------------------------------------------
// Certificate mode

struct Pki {
    root: PathBuf,
    intermediate: PathBuf,
    leaf: PathBuf,
    leaf_key: PathBuf,
}

#[derive(Clone, Copy)]
enum Leaf {
    Good,
    Expired,
    ServerAuthOnly,
    /// Key usage without digitalSignature.
    KeyEnciphermentOnly,
    /// Neither key usage nor extended key usage.
    Bare,
}

fn pki(dir: &Path, alg: &'static SignatureAlgorithm, kind: Leaf, tag: &str) -> Pki {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, format!("{tag} root"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(p, ca_key).unwrap();

    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, format!("{tag} intermediate"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let int = CertifiedIssuer::signed_by(p, int_key, &root).unwrap();

    let leaf_key = KeyPair::generate_for(alg).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, format!("{tag} model signer"));
    p.is_ca = IsCa::NoCa;
    p.key_usages = match kind {
        Leaf::KeyEnciphermentOnly => vec![KeyUsagePurpose::KeyEncipherment],
        Leaf::Bare => vec![],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    p.extended_key_usages = match kind {
        Leaf::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Leaf::Bare => vec![],
        _ => vec![ExtendedKeyUsagePurpose::CodeSigning],
    };
    if let Leaf::Expired = kind {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf = p.signed_by(&leaf_key, &int).unwrap();

    let out = Pki {
        root: dir.join(format!("{tag}-root.pem")),
        intermediate: dir.join(format!("{tag}-int.pem")),
        leaf: dir.join(format!("{tag}-leaf.pem")),
        leaf_key: dir.join(format!("{tag}-leaf.key")),
    };
    std::fs::write(&out.root, root.pem()).unwrap();
    std::fs::write(&out.intermediate, int.pem()).unwrap();
    std::fs::write(&out.leaf, leaf.pem()).unwrap();
    std::fs::write(&out.leaf_key, leaf_key.serialize_pem()).unwrap();
    out
}

#[test]
fn certificate_mode_both_directions_every_curve() {
    for (alg, tag) in CURVES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let m = make_model(d);
        let p = pki(d, alg, Leaf::Good, tag);
        let py_sig = d.join("py.sig");
        ok(ms_sign_cert(s(&m), &p, s(&py_sig), &[], d));
        let o = ok(w_verify_chain(s(&m), s(&py_sig), s(&p.root), &[], d));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("certificate"),
            "{}",
            text(&o)
        );

        let w_sig = d.join("w.sig");
        ok(w_sign_cert(s(&m), &p, s(&w_sig), &[], d));
        ok(model_signing(
            &[
                "verify",
                "certificate",
                s(&m),
                "--signature",
                s(&w_sig),
                "--certificate_chain",
                s(&p.root),
            ],
            d,
        ));

        // A different root: the chain does not verify.
        let other = pki(d, alg, Leaf::Good, &format!("{tag}-other"));
        fails_with(
            w_verify_chain(s(&m), s(&w_sig), s(&other.root), &[], d),
            "unknown issuer",
        );
        // Key mode against a certificate bundle: says which mode to use.
        fails_with(
            w_verify(s(&m), s(&w_sig), s(&keys(d, alg, "k").public), &[], d),
            "certificate mode",
        );
    }
}

#[test]
fn expired_leaf_and_wrong_eku_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);

    let p = pki(d, &rcgen::PKCS_ECDSA_P256_SHA256, Leaf::Expired, "expired");
    // The reference signs and verifies with an expired leaf (it checks at notBefore).
    ok(ms_sign_cert(s(&m), &p, "expired.sig", &[], d));
    fails_with(
        w_verify_chain(s(&m), "expired.sig", s(&p.root), &[], d),
        "certificate expired at 2021-01-01T00:00:00Z",
    );

    let p = pki(
        d,
        &rcgen::PKCS_ECDSA_P256_SHA256,
        Leaf::ServerAuthOnly,
        "tls",
    );
    ok(w_sign_cert(s(&m), &p, "tls.sig", &[], d));
    fails_with(
        w_verify_chain(s(&m), "tls.sig", s(&p.root), &[], d),
        "does not allow code signing",
    );

    // Key usage without digitalSignature, or no usage at all: refused (the reference
    // refuses these too).
    for (kind, tag, needle) in [
        (
            Leaf::KeyEnciphermentOnly,
            "kenc",
            "key usage does not allow digital signatures",
        ),
        (
            Leaf::Bare,
            "bare",
            "neither key usage nor extended key usage",
        ),
    ] {
        let p = pki(d, &rcgen::PKCS_ECDSA_P256_SHA256, kind, tag);
        let sig = format!("{tag}.sig");
        ok(w_sign_cert(s(&m), &p, &sig, &[], d));
        fails_with(w_verify_chain(s(&m), &sig, s(&p.root), &[], d), needle);
    }

    // A certificate that does not match the key is refused at signing time (exit 2).
    let good = pki(d, &rcgen::PKCS_ECDSA_P256_SHA256, Leaf::Good, "good");
    let o = warden(
        &[
            "sign",
            s(&m),
            "--key",
            s(&p.leaf_key),
            "--certificate",
            s(&good.leaf),
            "--signature",
            "x.sig",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match the private key"),
        "{}",
        text(&o)
    );
}

#[test]
fn other_hashes_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);
    let k = keys(d, &rcgen::PKCS_ECDSA_P256_SHA256, "k");
    // The reference signs BLAKE2b (its option is named "blake2", the predicate says
    // "blake2b"): Warden verifies.
    let py = python(
        &format!(
            "import model_signing\n\
             model_signing.signing.Config().use_elliptic_key_signer(private_key={:?})\
             .set_hashing_config(model_signing.hashing.Config().use_file_serialization(hashing_algorithm='blake2'))\
             .sign({:?}, 'b2.sig')",
            s(&k.private),
            s(&m)
        ),
        d,
    );
    assert!(py.status.success(), "{}", text(&py));
    assert_eq!(
        statement_of(&std::fs::read(d.join("b2.sig")).unwrap())["predicate"]["serialization"]["hash_type"],
        "blake2b"
    );
    ok(w_verify(s(&m), "b2.sig", s(&k.public), &[], d));
    // Warden signs BLAKE3: the reference verifies.
    ok(w_sign(
        s(&m),
        s(&k.private),
        "b3.sig",
        &["--hash", "blake3"],
        d,
    ));
    let py = python(
        &format!(
            "import model_signing\n\
             model_signing.verifying.Config().use_elliptic_key_verifier(public_key={:?})\
             .verify({:?}, 'b3.sig')\nprint('blake3 ok')",
            s(&k.public),
            s(&m)
        ),
        d,
    );
    assert!(
        String::from_utf8_lossy(&py.stdout).contains("blake3 ok"),
        "{}",
        text(&py)
    );
}

#[test]
fn json_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = make_model(d);
    let k = keys(d, &rcgen::PKCS_ECDSA_P384_SHA384, "k");
    let o = ok(w_sign(
        s(&m),
        s(&k.private),
        "w.sig",
        &["--format", "json"],
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "signed");
    assert_eq!(v["curve"], "P-384");
    assert_eq!(v["resources"], 5);
    let signed_digest = v["digest"]["sha256"].clone();
    let o = ok(w_verify(
        s(&m),
        "w.sig",
        s(&k.public),
        &["--format", "json"],
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "verified");
    assert_eq!(v["digest"]["sha256"], signed_digest);
    std::fs::remove_file(m.join("empty")).unwrap();
    let o = w_verify(s(&m), "w.sig", s(&k.public), &["--format", "json"], d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(
        v["differences"],
        serde_json::json!(["empty: file removed (signed but missing)"])
    );
}
