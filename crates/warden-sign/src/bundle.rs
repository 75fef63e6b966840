//! The signature file: a Sigstore bundle v0.3 (JSON) holding a DSSE envelope whose
//! payload is an in-toto Statement v1 with the OpenSSF Model Signing predicate.
//!
//! Writing produces what the reference verifier accepts (integer `shard_size`, hex
//! SHA-256 key hint, DER ECDSA signature over the DSSE pre-authentication encoding).
//! Reading accepts what the reference signer has produced over its versions: float
//! `shard_size`, `blake2b`, the legacy `rawBytes` public key, `keyid: null`, missing
//! `tlogEntries`, and the v0.2 predicate (`https://model_signing/Digests/v0.1`).
//! Every field of untrusted input is checked; nothing here indexes without bounds.

#![deny(clippy::indexing_slicing)]

use crate::Error;
use crate::hashing::HashAlgorithm;
use crate::manifest::{Entry, Manifest, Method, Serialization};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// Media type of a Sigstore bundle v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Predicate type of OpenSSF Model Signing v1.0.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Predicate type written by model_signing v0.2.
pub const PREDICATE_TYPE_V0_2: &str = "https://model_signing/Digests/v0.1";
/// Largest signature file accepted (a manifest of a million shards is ~200 MB; a
/// realistic one is kilobytes).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

// ---------------------------------------------------------------------------------
// Writing

#[derive(Serialize)]
struct StatementOut<'a> {
    #[serde(rename = "_type")]
    kind: &'static str,
    subject: [SubjectOut<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    predicate: PredicateOut<'a>,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    name: &'a str,
    digest: DigestOut,
}

#[derive(Serialize)]
struct DigestOut {
    sha256: String,
}

#[derive(Serialize)]
struct PredicateOut<'a> {
    serialization: SerializationOut<'a>,
    resources: Vec<ResourceOut<'a>>,
}

#[derive(Serialize)]
struct SerializationOut<'a> {
    method: &'static str,
    hash_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_size: Option<u64>,
    allow_symlinks: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignore_paths: &'a [String],
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    name: String,
    algorithm: &'a str,
    digest: String,
}

/// The in-toto statement for a manifest, as JSON bytes (the DSSE payload).
///
/// # Errors
/// Serialization failure (not expected for these types).
pub fn statement_json(manifest: &Manifest) -> Result<Vec<u8>, Error> {
    let s = manifest.serialization();
    let (method, shard_size) = match s.method {
        Method::Files => ("files", None),
        Method::Shards { shard_size } => ("shards", Some(shard_size)),
    };
    let statement = StatementOut {
        kind: STATEMENT_TYPE,
        subject: [SubjectOut {
            name: manifest.model_name(),
            digest: DigestOut {
                sha256: hex::encode(manifest.digest()),
            },
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: PredicateOut {
            serialization: SerializationOut {
                method,
                hash_type: s.hash.name(),
                shard_size,
                allow_symlinks: s.allow_symlinks,
                ignore_paths: &s.ignore_paths,
            },
            resources: manifest
                .entries()
                .iter()
                .map(|e| ResourceOut {
                    name: e.name(),
                    algorithm: e.algorithm(),
                    digest: e.digest_hex(),
                })
                .collect(),
        },
    };
    serde_json::to_vec_pretty(&statement).map_err(|e| Error::Signing(e.to_string()))
}

/// What the bundle carries to identify the signer.
#[derive(Debug)]
pub(crate) enum MaterialOut<'a> {
    /// Key mode: hex SHA-256 of the PEM public key.
    Hint(String),
    /// Certificate mode: DER certificates, leaf first.
    Chain(Vec<&'a [u8]>),
}

/// The bundle JSON (compact, as the reference writes it).
pub(crate) fn bundle_json(payload: &[u8], signature: &[u8], material: &MaterialOut<'_>) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let vm = match material {
        MaterialOut::Hint(h) => serde_json::json!({
            "publicKey": { "hint": h },
            "tlogEntries": [],
        }),
        MaterialOut::Chain(certs) => serde_json::json!({
            "x509CertificateChain": {
                "certificates": certs.iter().map(|c| serde_json::json!({"rawBytes": b64(c)})).collect::<Vec<_>>(),
            },
            "tlogEntries": [],
        }),
    };
    // Field order as the reference writes it; serde_json's map is ordered by key, so
    // the top level is written by hand.
    let envelope = serde_json::json!({
        "payload": b64(payload),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [ { "sig": b64(signature), "keyid": "" } ],
    });
    let mut out = String::from("{\"mediaType\":");
    out.push_str(&Value::String(BUNDLE_MEDIA_TYPE.into()).to_string());
    out.push_str(",\"verificationMaterial\":");
    out.push_str(&vm.to_string());
    out.push_str(",\"dsseEnvelope\":");
    out.push_str(&envelope.to_string());
    out.push('}');
    out.into_bytes()
}

/// DSSE v1 pre-authentication encoding.
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The encoding model_signing v0.2 signed by mistake: `DSSEV1`, and the payload as
/// Python's `repr()` of a bytes object. Accepted on input only.
#[must_use]
pub fn pae_v0_2(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEV1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    out.push_str(&python_bytes_repr(payload));
    out.into_bytes()
}

fn python_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if char::from(c) == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(char::from(c)),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

// ---------------------------------------------------------------------------------
// Reading

#[derive(Deserialize)]
struct BundleIn {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "verificationMaterial")]
    verification_material: Option<MaterialIn>,
    #[serde(rename = "dsseEnvelope")]
    dsse_envelope: Option<EnvelopeIn>,
}

#[derive(Deserialize)]
struct MaterialIn {
    #[serde(rename = "publicKey")]
    public_key: Option<PublicKeyIn>,
    #[serde(rename = "x509CertificateChain")]
    x509_certificate_chain: Option<ChainIn>,
    certificate: Option<CertIn>,
}

#[derive(Deserialize)]
struct PublicKeyIn {
    hint: Option<String>,
    #[serde(rename = "rawBytes")]
    raw_bytes: Option<String>,
}

#[derive(Deserialize)]
struct ChainIn {
    certificates: Vec<CertIn>,
}

#[derive(Deserialize)]
struct CertIn {
    #[serde(rename = "rawBytes")]
    raw_bytes: String,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<SignatureIn>,
}

#[derive(Deserialize)]
struct SignatureIn {
    sig: String,
}

/// How the bundle identifies its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// Key mode with the hex SHA-256 hint of the PEM public key.
    KeyHint(String),
    /// Legacy key mode: the PEM public key itself (model_signing before 1.0).
    LegacyPublicKey(Vec<u8>),
    /// Key mode with neither hint nor key (very old bundles).
    KeyWithoutHint,
    /// Certificate mode: DER certificates, leaf first.
    Certificates(Vec<Vec<u8>>),
}

/// A parsed, not yet verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Signer identification.
    pub material: Material,
    /// DSSE payload type.
    pub payload_type: String,
    /// DSSE payload (the statement JSON).
    pub payload: Vec<u8>,
    /// DER ECDSA signature.
    pub signature: Vec<u8>,
}

fn b64_decode(what: &str, s: &str) -> Result<Vec<u8>, Error> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let s = s.trim();
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .map_err(|_| Error::Bundle(format!("{what} is not valid base64")))
}

/// Parse a bundle (structure only; no signature is checked here).
///
/// # Errors
/// [`Error::Bundle`] for anything that is not a Model Signing bundle.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle, Error> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(Error::Bundle(format!(
            "signature file is larger than {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    let b: BundleIn = serde_json::from_slice(bytes)
        .map_err(|e| Error::Bundle(format!("not a Sigstore bundle (invalid JSON: {e})")))?;
    match b.media_type.as_deref() {
        Some(BUNDLE_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(Error::Bundle(format!(
                "unsupported bundle media type {other:?} (expected {BUNDLE_MEDIA_TYPE})"
            )));
        }
        None => return Err(Error::Bundle("bundle has no mediaType".into())),
    }
    let vm = b
        .verification_material
        .ok_or_else(|| Error::Bundle("bundle has no verificationMaterial".into()))?;
    let material = if let Some(chain) = vm.x509_certificate_chain {
        if chain.certificates.is_empty() {
            return Err(Error::Bundle("x509CertificateChain is empty".into()));
        }
        Material::Certificates(
            chain
                .certificates
                .iter()
                .map(|c| b64_decode("certificate", &c.raw_bytes))
                .collect::<Result<_, _>>()?,
        )
    } else if let Some(cert) = vm.certificate {
        Material::Certificates(vec![b64_decode("certificate", &cert.raw_bytes)?])
    } else if let Some(pk) = vm.public_key {
        match (pk.hint, pk.raw_bytes) {
            (Some(h), _) if !h.is_empty() => Material::KeyHint(h),
            (_, Some(raw)) => Material::LegacyPublicKey(b64_decode("publicKey.rawBytes", &raw)?),
            _ => Material::KeyWithoutHint,
        }
    } else {
        return Err(Error::Bundle(
            "verificationMaterial has neither publicKey nor x509CertificateChain".into(),
        ));
    };
    let env = b.dsse_envelope.ok_or_else(|| {
        Error::Bundle(
            "bundle has no dsseEnvelope (message signatures are not model signatures)".into(),
        )
    })?;
    let [sig] = env.signatures.as_slice() else {
        return Err(Error::Bundle(format!(
            "dsseEnvelope must carry exactly one signature, found {}",
            env.signatures.len()
        )));
    };
    Ok(Bundle {
        material,
        payload_type: env.payload_type,
        payload: b64_decode("dsseEnvelope.payload", &env.payload)?,
        signature: b64_decode("signature", &sig.sig)?,
    })
}

/// Parse the signed statement into the manifest it describes, checking the subject
/// digest and refusing unsafe or duplicate resource names.
///
/// # Errors
/// [`Error::Statement`] for anything inconsistent or unsupported.
pub fn parse_statement(payload_type: &str, payload: &[u8]) -> Result<Manifest, Error> {
    let bad = |m: String| Error::Statement(m);
    if payload_type != PAYLOAD_TYPE {
        return Err(bad(format!(
            "payload type is {payload_type:?}, expected {PAYLOAD_TYPE}"
        )));
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| bad(format!("payload is not JSON: {e}")))?;
    let kind = v.get("_type").and_then(Value::as_str).unwrap_or_default();
    if kind != STATEMENT_TYPE {
        return Err(bad(format!("not an in-toto statement v1 (_type {kind:?})")));
    }
    let predicate_type = v
        .get("predicateType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let subjects = v
        .get("subject")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("statement has no subject list".into()))?;
    match predicate_type {
        PREDICATE_TYPE => parse_v1(&v, subjects),
        PREDICATE_TYPE_V0_2 => parse_v0_2(subjects),
        other => Err(bad(format!(
            "unsupported predicate type {other:?} (expected {PREDICATE_TYPE})"
        ))),
    }
}

fn hex_digest(what: &str, s: &str, alg: HashAlgorithm) -> Result<Vec<u8>, Error> {
    let d = hex::decode(s).map_err(|_| Error::Statement(format!("{what}: digest is not hex")))?;
    if d.len() != alg.digest_len() {
        return Err(Error::Statement(format!(
            "{what}: {} digest has {} bytes, expected {}",
            alg.name(),
            d.len(),
            alg.digest_len()
        )));
    }
    Ok(d)
}

fn parse_v0_2(subjects: &[Value]) -> Result<Manifest, Error> {
    let mut entries = Vec::with_capacity(subjects.len());
    let mut seen = BTreeSet::new();
    for s in subjects {
        let name = s
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Statement("subject without a name".into()))?;
        check_path(name)?;
        if !seen.insert(name.to_owned()) {
            return Err(Error::Statement(format!("{name}: listed twice")));
        }
        let d = s
            .get("digest")
            .and_then(|d| d.get("sha256"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Statement(format!("{name}: no sha256 digest")))?;
        entries.push(Entry {
            path: name.to_owned(),
            range: None,
            algorithm: "sha256".into(),
            digest: hex_digest(name, d, HashAlgorithm::Sha256)?,
        });
    }
    let mut m = Manifest {
        model_name: "compat-undefined-not-present".into(),
        serialization: Serialization {
            method: Method::Files,
            hash: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore_paths: Vec::new(),
        },
        entries,
    };
    m.sort();
    Ok(m)
}

/// A positive integer, written as an integer or (by the reference's protobuf Struct
/// round trip) as a float with no fractional part.
fn integral(v: &Value) -> Option<u64> {
    if let Some(u) = v.as_u64() {
        return Some(u);
    }
    let f = v.as_f64()?;
    if f.fract() == 0.0 && f > 0.0 && f < 9.007_199_254_740_992e15 {
        Some(f as u64)
    } else {
        None
    }
}

fn parse_v1(v: &Value, subjects: &[Value]) -> Result<Manifest, Error> {
    let bad = |m: &str| Error::Statement(m.to_owned());
    let [subject] = subjects else {
        return Err(Error::Statement(format!(
            "expected exactly one subject, found {}",
            subjects.len()
        )));
    };
    let model_name = subject
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let subject_digest = subject
        .get("digest")
        .and_then(|d| d.get("sha256"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("subject has no sha256 digest"))?;
    let predicate = v
        .get("predicate")
        .ok_or_else(|| bad("statement has no predicate"))?;
    let ser = predicate
        .get("serialization")
        .ok_or_else(|| bad("predicate has no serialization"))?;
    let hash_name = ser
        .get("hash_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hash = HashAlgorithm::from_name(hash_name)
        .ok_or_else(|| Error::Statement(format!("unsupported hash_type {hash_name:?}")))?;
    let method = match ser.get("method").and_then(Value::as_str) {
        Some("files") => Method::Files,
        Some("shards") => {
            if hash == HashAlgorithm::Blake3 {
                return Err(bad("blake3 is not defined for the shards serialization"));
            }
            let size = ser
                .get("shard_size")
                .and_then(integral)
                .filter(|s| *s > 0)
                .ok_or_else(|| bad("shards serialization without a positive integer shard_size"))?;
            Method::Shards { shard_size: size }
        }
        other => {
            return Err(Error::Statement(format!(
                "unsupported serialization method {other:?}"
            )));
        }
    };
    let allow_symlinks = match ser.get("allow_symlinks") {
        Some(Value::Bool(b)) => *b,
        None => false,
        Some(_) => return Err(bad("allow_symlinks is not a boolean")),
    };
    let mut ignore_paths = Vec::new();
    if let Some(list) = ser.get("ignore_paths") {
        let list = list
            .as_array()
            .ok_or_else(|| bad("ignore_paths is not a list"))?;
        for p in list {
            let p = p
                .as_str()
                .ok_or_else(|| bad("ignore_paths holds a non-string"))?;
            ignore_paths.push(p.to_owned());
        }
    }
    let resources = predicate
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("predicate has no resources list"))?;
    let mut entries = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for r in resources {
        let name = r
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("resource without a name"))?;
        let algorithm = r
            .get("algorithm")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Statement(format!("{name}: resource without an algorithm")))?;
        let digest = r
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Statement(format!("{name}: resource without a digest")))?;
        if !seen.insert(name.to_owned()) {
            return Err(Error::Statement(format!("{name}: listed twice")));
        }
        let (path, range) = match method {
            Method::Files => {
                if algorithm != hash.name() {
                    return Err(Error::Statement(format!(
                        "{name}: algorithm {algorithm:?} differs from hash_type {hash_name:?}"
                    )));
                }
                (name, None)
            }
            Method::Shards { shard_size } => {
                check_shard_algorithm(name, algorithm, hash, shard_size)?;
                let range = parse_shard_name(name, shard_size)?;
                (range.0, Some((range.1, range.2)))
            }
        };
        check_path(path)?;
        entries.push(Entry {
            path: path.to_owned(),
            range,
            algorithm: algorithm.to_owned(),
            digest: hex_digest(name, digest, hash)?,
        });
    }
    let computed = crate::manifest::subject_digest(entries.iter().map(|e| e.digest.as_slice()));
    if !hex::encode(computed).eq_ignore_ascii_case(subject_digest) {
        return Err(Error::Statement(format!(
            "subject digest {subject_digest} does not match the listed resources (they hash to {})",
            hex::encode(computed)
        )));
    }
    let mut m = Manifest {
        model_name: model_name.to_owned(),
        serialization: Serialization {
            method,
            hash,
            allow_symlinks,
            ignore_paths,
        },
        entries,
    };
    m.sort();
    Ok(m)
}

fn check_shard_algorithm(
    name: &str,
    algorithm: &str,
    hash: HashAlgorithm,
    shard_size: u64,
) -> Result<(), Error> {
    if algorithm == hash.name() {
        return Ok(());
    }
    let suffix = algorithm
        .strip_prefix(hash.name())
        .and_then(|s| s.strip_prefix("-sharded-"));
    let ok = suffix.is_some_and(|n| {
        n.parse::<u64>().ok() == Some(shard_size)
            || n.parse::<f64>()
                .ok()
                .is_some_and(|f| f == shard_size as f64)
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Statement(format!(
            "{name}: algorithm {algorithm:?} does not match hash_type {:?} with shard size {shard_size}",
            hash.name()
        )))
    }
}

fn parse_shard_name(name: &str, shard_size: u64) -> Result<(&str, u64, u64), Error> {
    let bad = || Error::Statement(format!("{name}: not a shard name (path:start:end)"));
    let mut it = name.rsplitn(3, ':');
    let end = it
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let start = it
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let path = it.next().ok_or_else(bad)?;
    if start >= end || end - start > shard_size || start % shard_size != 0 {
        return Err(Error::Statement(format!(
            "{name}: shard range does not fit shard size {shard_size}"
        )));
    }
    Ok((path, start, end))
}

/// Refuse names that could reach outside the model directory.
fn check_path(path: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::Statement(format!("{path:?}: {why}"));
    if path == "." {
        return Ok(());
    }
    if path.is_empty() {
        return Err(bad("empty resource name"));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.as_bytes().get(1) == Some(&b':') {
        return Err(bad("absolute path refused"));
    }
    if path.contains('\0') {
        return Err(bad("NUL in resource name"));
    }
    for c in path.split(['/', '\\']) {
        match c {
            ".." => return Err(bad("'..' in resource name refused")),
            "" | "." => return Err(bad("non-canonical resource name refused")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_layout() {
        assert_eq!(pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
        assert_eq!(
            pae_v0_2("t", b"a'\n\xff"),
            b"DSSEV1 1 t 4 b\"a'\\n\\xff\"".to_vec()
        );
        assert_eq!(pae_v0_2("t", b"a\"'"), b"DSSEV1 1 t 3 b'a\"\\''".to_vec());
    }

    #[test]
    fn unsafe_names_refused() {
        for n in [
            "../x",
            "a/../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "C:/x",
            "a\\..\\b",
            "",
        ] {
            assert!(check_path(n).is_err(), "{n}");
        }
        for n in [".", "a", "a/b.c", "..a", "a..b/c"] {
            assert!(check_path(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn shard_names() {
        assert_eq!(parse_shard_name("a:b:0:10", 10).unwrap(), ("a:b", 0, 10));
        assert!(parse_shard_name("a:5:10", 10).is_err());
        assert!(parse_shard_name("a:0:11", 10).is_err());
        assert!(parse_shard_name("a:10", 10).is_err());
        assert!(
            check_shard_algorithm("x", "sha256-sharded-1000.0", HashAlgorithm::Sha256, 1000)
                .is_ok()
        );
        assert!(
            check_shard_algorithm("x", "sha256-sharded-999", HashAlgorithm::Sha256, 1000).is_err()
        );
    }
}
