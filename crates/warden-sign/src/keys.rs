//! ECDSA keys (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512) with aws-lc-rs, read from
//! PEM, and the key hint the reference tool records: hex SHA-256 of the public key
//! in canonical PEM (`SubjectPublicKeyInfo`, 64-column base64).

use crate::Error;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, ParsedPublicKey};
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use std::path::{Path, PathBuf};

/// A supported elliptic curve, with the hash the format pairs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 with SHA-256.
    P256,
    /// NIST P-384 with SHA-384.
    P384,
    /// NIST P-521 with SHA-512.
    P521,
}

impl Curve {
    const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    fn verifying(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        }
    }

    /// Same curve, SHA-256: the v0.2 compatibility path of the certificate verifier.
    pub(crate) fn verifying_sha256(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &signature::ECDSA_P384_SHA256_ASN1,
            Curve::P521 => &signature::ECDSA_P521_SHA256_ASN1,
        }
    }

    /// Human name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
}

/// A private key for signing. Its bytes never appear in errors or `Debug` output.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    curve: Curve,
    public: VerificationKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Read a PEM private key (`PRIVATE KEY` or `EC PRIVATE KEY`) from a file.
    ///
    /// # Errors
    /// Unreadable file, encrypted or non-EC key, unsupported curve.
    pub fn from_pem_file(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&pem, path)
    }

    /// Parse a PEM private key; `origin` names it in errors.
    ///
    /// # Errors
    /// Encrypted or non-EC key, unsupported curve, malformed PEM.
    pub fn from_pem(pem: &[u8], origin: &Path) -> Result<Self, Error> {
        let err = |reason: &str| Error::Key {
            path: origin.to_path_buf(),
            reason: reason.to_owned(),
        };
        if contains(pem, b"ENCRYPTED PRIVATE KEY") || contains(pem, b"Proc-Type: 4,ENCRYPTED") {
            return Err(err(
                "encrypted private keys are not supported; decrypt it first (e.g. openssl pkey)",
            ));
        }
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| err("no PEM private key (PRIVATE KEY or EC PRIVATE KEY) found"))?;
        let bytes = der.secret_der();
        for curve in Curve::ALL {
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve.signing(), bytes) {
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| err("cannot encode the public key"))?;
                let public = VerificationKey::from_spki_der(spki.as_ref(), origin)?;
                return Ok(SigningKey {
                    pair,
                    curve,
                    public,
                });
            }
        }
        Err(err(
            "not an ECDSA private key on P-256, P-384 or P-521 (the curves OpenSSF Model Signing accepts)",
        ))
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> &VerificationKey {
        &self.public
    }

    /// ASN.1 DER ECDSA signature over `message` with the curve's hash.
    ///
    /// # Errors
    /// Failure inside the crypto library.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Signing("ecdsa signing failed".into()))
    }
}

/// A public key for verification.
#[derive(Clone)]
pub struct VerificationKey {
    curve: Curve,
    spki: Vec<u8>,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("curve", &self.curve)
            .field("hint", &self.hint())
            .finish()
    }
}

impl PartialEq for VerificationKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl VerificationKey {
    /// Read a PEM public key (`PUBLIC KEY`) from a file.
    ///
    /// # Errors
    /// Unreadable file, not an EC public key, unsupported curve.
    pub fn from_pem_file(path: &Path) -> Result<Self, Error> {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&pem, path)
    }

    /// Parse a PEM public key; `origin` names it in errors.
    ///
    /// # Errors
    /// Not an EC public key on a supported curve, malformed PEM.
    pub fn from_pem(pem: &[u8], origin: &Path) -> Result<Self, Error> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|_| Error::Key {
            path: origin.to_path_buf(),
            reason: "no PEM public key (PUBLIC KEY) found".into(),
        })?;
        Self::from_spki_der(der.as_ref(), origin)
    }

    /// Parse a DER `SubjectPublicKeyInfo`.
    ///
    /// # Errors
    /// Not an EC public key on a supported curve.
    pub fn from_spki_der(der: &[u8], origin: &Path) -> Result<Self, Error> {
        for curve in Curve::ALL {
            if let Ok(key) = ParsedPublicKey::new(curve.verifying(), der) {
                return Ok(VerificationKey {
                    curve,
                    spki: der.to_vec(),
                    key,
                });
            }
        }
        Err(Error::Key {
            path: PathBuf::from(origin),
            reason: "not an ECDSA public key on P-256, P-384 or P-521".into(),
        })
    }

    /// The curve.
    #[must_use]
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// DER `SubjectPublicKeyInfo`.
    #[must_use]
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Canonical PEM encoding, as OpenSSL and Python's `cryptography` write it.
    #[must_use]
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// The key hint of the bundle: hex SHA-256 of [`Self::to_pem`].
    #[must_use]
    pub fn hint(&self) -> String {
        hex::encode(crate::hashing::HashAlgorithm::Sha256.digest(self.to_pem().as_bytes()))
    }

    /// Check an ASN.1 DER ECDSA signature with the curve's own hash.
    #[must_use]
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(message, sig).is_ok()
    }

    /// Check with SHA-256 whatever the curve (the v0.2 certificate compatibility path).
    pub(crate) fn verify_sha256(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(self.curve.verifying_sha256(), &self.spki)
            .verify(message, sig)
            .is_ok()
    }
}

/// PEM with 64-column base64 and a trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let bytes = b64.as_bytes();
    for chunk in bytes.chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
