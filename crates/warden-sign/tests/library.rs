//! The library API the vault and deploy code rely on: hash → sign → verify returns a
//! `VerifiedManifest` whose entries and digest match the signed statement; every
//! failure is a typed error with a precise message; verdicts are told apart from
//! unusable input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use base64::Engine as _;
use std::path::{Path, PathBuf};
use warden_sign::{
    Difference, Error, HashAlgorithm, HashOptions, Method, Signer, SigningKey, Trust,
    VerificationKey, VerifyOptions,
};

fn key(alg: &'static rcgen::SignatureAlgorithm) -> (SigningKey, VerificationKey) {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    let sk = SigningKey::from_pem(kp.serialize_pem().as_bytes(), Path::new("k.pem")).unwrap();
    let vk = VerificationKey::from_pem(kp.public_key_pem().as_bytes(), Path::new("k.pub")).unwrap();
    assert_eq!(*sk.public_key(), vk);
    (sk, vk)
}

fn model(dir: &Path) -> PathBuf {
    let m = dir.join("m");
    std::fs::create_dir_all(m.join("d")).unwrap();
    std::fs::write(m.join("big"), vec![7u8; 10_000]).unwrap();
    std::fs::write(m.join("d/small"), b"small").unwrap();
    std::fs::write(m.join("empty"), b"").unwrap();
    m
}

fn opts(method: Method, hash: HashAlgorithm) -> HashOptions {
    HashOptions {
        method,
        hash,
        ..HashOptions::default()
    }
}

fn statement(bundle: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let p = base64::engine::general_purpose::STANDARD
        .decode(v["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn round_trip_every_method_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P384_SHA384);
    for (method, hash, n) in [
        (Method::Files, HashAlgorithm::Sha256, 3),
        (Method::Files, HashAlgorithm::Blake2b, 3),
        (Method::Files, HashAlgorithm::Blake3, 3),
        (
            Method::Shards { shard_size: 4096 },
            HashAlgorithm::Sha256,
            4,
        ),
        (
            Method::Shards { shard_size: 4096 },
            HashAlgorithm::Blake2b,
            4,
        ),
    ] {
        let manifest = warden_sign::hash_model(&m, &opts(method, hash)).unwrap();
        assert_eq!(manifest.entries().len(), n, "{method:?} {hash:?}");
        let bundle = warden_sign::sign(&manifest, Signer::Key(&sk)).unwrap();
        let st = statement(&bundle);
        assert_eq!(st["predicate"]["serialization"]["hash_type"], hash.name());
        let v =
            warden_sign::verify(&m, &bundle, Trust::Key(&vk), &VerifyOptions::default()).unwrap();
        assert_eq!(
            v.digest_hex(),
            st["subject"][0]["digest"]["sha256"].as_str().unwrap()
        );
        assert_eq!(v.entries(), manifest.entries());
        assert_eq!(v.model_path(), m);
        // The manifest digest is SHA-256 over the entry digests in order.
        let mut all = Vec::new();
        for e in v.entries() {
            all.extend_from_slice(e.digest());
        }
        assert_eq!(HashAlgorithm::Sha256.digest(&all), v.digest().to_vec());
    }
}

#[test]
fn sha256_digests_are_the_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let manifest = warden_sign::hash_model(
        &m,
        &opts(Method::Shards { shard_size: 4096 }, HashAlgorithm::Sha256),
    )
    .unwrap();
    let names: Vec<String> = manifest.entries().iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "big:0:4096",
            "big:4096:8192",
            "big:8192:10000",
            "d/small:0:5"
        ]
    );
    assert_eq!(
        manifest.entries()[2].digest(),
        HashAlgorithm::Sha256.digest(&[7u8; 1808]).as_slice()
    );
    assert_eq!(manifest.entries()[2].algorithm(), "sha256-sharded-4096");
    let files = warden_sign::hash_model(&m, &HashOptions::default()).unwrap();
    let e = files
        .entries()
        .iter()
        .find(|e| e.path() == "empty")
        .unwrap();
    assert_eq!(
        e.digest_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn shard_mode_differences_name_shards_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let manifest = warden_sign::hash_model(
        &m,
        &opts(Method::Shards { shard_size: 4096 }, HashAlgorithm::Sha256),
    )
    .unwrap();
    let bundle = warden_sign::sign(&manifest, Signer::Key(&sk)).unwrap();
    // Grow `big` by one shard and rename `d/small`.
    let mut big = std::fs::read(m.join("big")).unwrap();
    big.extend_from_slice(&[1u8; 3000]);
    std::fs::write(m.join("big"), &big).unwrap();
    std::fs::rename(m.join("d/small"), m.join("d/tiny")).unwrap();
    let err =
        warden_sign::verify(&m, &bundle, Trust::Key(&vk), &VerifyOptions::default()).unwrap_err();
    assert!(err.is_verdict());
    let Error::Mismatch { differences, .. } = &err else {
        panic!("{err}")
    };
    assert!(differences.contains(&Difference::Renamed {
        from: "d/small".into(),
        to: "d/tiny".into()
    }));
    assert!(
        differences
            .iter()
            .any(|d| matches!(d, Difference::Removed { name } if name == "big:8192:10000"))
    );
    assert!(
        differences
            .iter()
            .any(|d| matches!(d, Difference::Added { name } if name == "big:8192:12288"))
    );
    assert!(
        differences
            .iter()
            .any(|d| matches!(d, Difference::Added { name } if name == "big:12288:13000"))
    );
    let msg = err.to_string();
    assert!(msg.contains("d/small: file renamed to d/tiny"), "{msg}");
}

/// Sign an arbitrary statement with a real key, as an attacker holding the key (or a
/// buggy signer) could.
fn bundle_for(sk: &SigningKey, statement: &serde_json::Value) -> Vec<u8> {
    let payload = serde_json::to_vec(statement).unwrap();
    let pae = warden_sign::bundle::pae(warden_sign::bundle::PAYLOAD_TYPE, &payload);
    let sig = sk.sign(&pae).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": sk.public_key().hint()}},
        "dsseEnvelope": {
            "payload": b64(&payload),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": b64(&sig), "keyid": null}],
        }
    }))
    .unwrap()
}

#[test]
fn inconsistent_statements_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let manifest = warden_sign::hash_model(&m, &HashOptions::default()).unwrap();
    let good = statement(&warden_sign::sign(&manifest, Signer::Key(&sk)).unwrap());

    let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
    let mut s = good.clone();
    s["subject"][0]["digest"]["sha256"] = serde_json::json!("00".repeat(32));
    cases.push((s, "does not match the listed resources"));
    let mut s = good.clone();
    s["predicate"]["resources"][1] = s["predicate"]["resources"][0].clone();
    cases.push((s, "listed twice"));
    let mut s = good.clone();
    s["predicateType"] = serde_json::json!("https://example.com/other");
    cases.push((s, "unsupported predicate type"));
    let mut s = good.clone();
    s["predicate"]["resources"][0]["digest"] = serde_json::json!("abcd");
    cases.push((s, "digest has 2 bytes"));
    let mut s = good.clone();
    s["predicate"]["serialization"]["hash_type"] = serde_json::json!("md5");
    cases.push((s, "unsupported hash_type"));
    let mut s = good.clone();
    s["predicate"]["resources"][0]["algorithm"] = serde_json::json!("blake3");
    cases.push((s, "differs from hash_type"));
    for (st, needle) in cases {
        let err = warden_sign::verify(
            &m,
            &bundle_for(&sk, &st),
            Trust::Key(&vk),
            &VerifyOptions::default(),
        )
        .unwrap_err();
        assert!(err.is_verdict(), "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    // Control: the unchanged statement, re-signed the same way, verifies (keyid null,
    // no tlogEntries accepted).
    warden_sign::verify(
        &m,
        &bundle_for(&sk, &good),
        Trust::Key(&vk),
        &VerifyOptions::default(),
    )
    .unwrap();
}

#[test]
fn float_shard_size_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P521_SHA512);
    let manifest = warden_sign::hash_model(
        &m,
        &opts(Method::Shards { shard_size: 4096 }, HashAlgorithm::Sha256),
    )
    .unwrap();
    let mut st = statement(&warden_sign::sign(&manifest, Signer::Key(&sk)).unwrap());
    st["predicate"]["serialization"]["shard_size"] = serde_json::json!(4096.0);
    let v = warden_sign::verify(
        &m,
        &bundle_for(&sk, &st),
        Trust::Key(&vk),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(v.entries().len(), 4);
    st["predicate"]["serialization"]["shard_size"] = serde_json::json!(4096.5);
    let err = warden_sign::verify(
        &m,
        &bundle_for(&sk, &st),
        Trust::Key(&vk),
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("shard_size"), "{err}");
}

#[test]
fn legacy_raw_bytes_key_is_checked_against_the_given_key() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P384_SHA384);
    let (_, other) = key(&rcgen::PKCS_ECDSA_P384_SHA384);
    let manifest = warden_sign::hash_model(&m, &HashOptions::default()).unwrap();
    let mut b: serde_json::Value =
        serde_json::from_slice(&warden_sign::sign(&manifest, Signer::Key(&sk)).unwrap()).unwrap();
    b["verificationMaterial"]["publicKey"] = serde_json::json!({
        "rawBytes": base64::engine::general_purpose::STANDARD.encode(vk.to_pem()),
        "keyDetails": "PKIX_ECDSA_P384_SHA_384",
    });
    let bytes = serde_json::to_vec(&b).unwrap();
    warden_sign::verify(&m, &bytes, Trust::Key(&vk), &VerifyOptions::default()).unwrap();
    let err =
        warden_sign::verify(&m, &bytes, Trust::Key(&other), &VerifyOptions::default()).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
}

#[test]
fn malformed_bundles_are_unusable_input_not_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let (_, vk) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    for (bytes, needle) in [
        (&b""[..], "invalid JSON"),
        (b"[]", "invalid JSON"),
        (b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle+json;version=0.1\"}", "unsupported bundle media type"),
        (b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\"}", "no verificationMaterial"),
        (
            b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":{\"hint\":\"ab\"}},\"dsseEnvelope\":{\"payload\":\"!!\",\"payloadType\":\"x\",\"signatures\":[{\"sig\":\"\"}]}}",
            "not valid base64",
        ),
        (
            b"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":{\"hint\":\"ab\"}},\"dsseEnvelope\":{\"payload\":\"\",\"payloadType\":\"x\",\"signatures\":[]}}",
            "exactly one signature",
        ),
    ] {
        let err = warden_sign::verify(&m, bytes, Trust::Key(&vk), &VerifyOptions::default()).unwrap_err();
        assert!(!err.is_verdict(), "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[test]
fn unsupported_keys_are_refused_with_a_reason() {
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let err =
        SigningKey::from_pem(rsa.serialize_pem().as_bytes(), Path::new("ed.pem")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ed.pem: not an ECDSA private key"),
        "{err}"
    );
    let err = VerificationKey::from_pem(rsa.public_key_pem().as_bytes(), Path::new("ed.pub"))
        .unwrap_err();
    assert!(err.to_string().contains("not an ECDSA public key"), "{err}");
    let enc = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = SigningKey::from_pem(enc, Path::new("enc.pem")).unwrap_err();
    assert!(
        err.to_string()
            .contains("encrypted private keys are not supported"),
        "{err}"
    );
    // Key material never shows in Debug output.
    let (sk, _) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let dbg = format!("{sk:?}");
    assert!(dbg.contains("P256") && dbg.len() < 80, "{dbg}");
}

#[test]
fn hint_is_sha256_of_canonical_pem() {
    let (_, vk) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let pem = vk.to_pem();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.ends_with("-----END PUBLIC KEY-----\n")
    );
    assert!(pem.lines().all(|l| l.len() <= 64));
    assert_eq!(
        vk.hint(),
        hex::encode(HashAlgorithm::Sha256.digest(pem.as_bytes()))
    );
}

/// model_signing v0.2 wrote one subject per file under the `Digests/v0.1` predicate
/// and signed `DSSEV1 … b'<python repr>'` instead of the DSSE PAE. Such bundles verify
/// (the encoding was checked against the v0.2.0 bundle published in the reference
/// repository); a v0.2 statement signed over the wrong bytes does not.
#[test]
fn v0_2_predicate_and_signing_bug_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    std::fs::remove_file(m.join("empty")).unwrap();
    let (sk, vk) = key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let digest =
        |p: &str| hex::encode(HashAlgorithm::Sha256.digest(&std::fs::read(m.join(p)).unwrap()));
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "big", "digest": {"sha256": digest("big")}, "annotations": {"actual_hash_algorithm": "file-sha256"}},
            {"name": "d/small", "digest": {"sha256": digest("d/small")}, "annotations": {"actual_hash_algorithm": "file-sha256"}},
        ],
        "predicateType": "https://model_signing/Digests/v0.1",
        "predicate": {"unused": "Unused, just passed due to API requirements"},
    });
    let payload = serde_json::to_vec_pretty(&statement).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let bundle = |signed: &[u8]| {
        let sig = sk.sign(signed).unwrap();
        serde_json::to_vec(&serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": vk.hint()}},
            "dsseEnvelope": {"payload": b64(&payload), "payloadType": "application/vnd.in-toto+json",
                             "signatures": [{"sig": b64(&sig), "keyid": null}]},
        }))
        .unwrap()
    };
    let buggy = warden_sign::bundle::pae_v0_2("application/vnd.in-toto+json", &payload);
    assert!(buggy.starts_with(b"DSSEV1 28 application/vnd.in-toto+json "));
    assert!(buggy.ends_with(b"}'"));
    let v = warden_sign::verify(
        &m,
        &bundle(&buggy),
        Trust::Key(&vk),
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(v.entries().len(), 2);
    assert_eq!(v.manifest().model_name(), "compat-undefined-not-present");
    let err = warden_sign::verify(
        &m,
        &bundle(b"something else"),
        Trust::Key(&vk),
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::BadSignature(_)), "{err}");
}
