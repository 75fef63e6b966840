//! X.509 certificate mode: read PEM certificates, and verify a signing certificate
//! against trusted roots with rustls-webpki (aws-lc-rs signature algorithms, P-521
//! included): path building, validity at the current time, CA constraints, and the
//! code-signing extended key usage whenever the leaf carries an EKU extension; a key
//! usage extension, when present, must allow digital signatures.

#![deny(clippy::indexing_slicing)]

use crate::Error;
use crate::keys::VerificationKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::{Path, PathBuf};

/// id-kp-codeSigning, 1.3.6.1.5.5.7.3.3, DER contents.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Every algorithm an issuer may have signed with; the leaf key itself must be ECDSA.
static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P256_SHA512,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA512,
    webpki::aws_lc_rs::ECDSA_P521_SHA256,
    webpki::aws_lc_rs::ECDSA_P521_SHA384,
    webpki::aws_lc_rs::ECDSA_P521_SHA512,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Certificates read from PEM files, in file order.
#[derive(Debug, Clone, Default)]
pub struct Certificates {
    certs: Vec<CertificateDer<'static>>,
}

impl Certificates {
    /// Read every `CERTIFICATE` block of the given PEM files, in order.
    ///
    /// # Errors
    /// Unreadable file, malformed PEM, a file without certificates.
    pub fn from_pem_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, Error> {
        let mut certs = Vec::new();
        for p in paths {
            let p = p.as_ref();
            let pem = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            let before = certs.len();
            for c in CertificateDer::pem_slice_iter(&pem) {
                certs.push(c.map_err(|e| Error::Certificate {
                    path: p.to_path_buf(),
                    reason: format!("malformed PEM: {e}"),
                })?);
            }
            if certs.len() == before {
                return Err(Error::Certificate {
                    path: p.to_path_buf(),
                    reason: "no PEM certificate found".into(),
                });
            }
        }
        Ok(Certificates { certs })
    }

    /// From DER certificates.
    #[must_use]
    pub fn from_der(certs: Vec<Vec<u8>>) -> Self {
        Certificates {
            certs: certs.into_iter().map(CertificateDer::from).collect(),
        }
    }

    /// DER encodings, in order.
    pub fn iter_der(&self) -> impl Iterator<Item = &[u8]> {
        self.certs.iter().map(|c| c.as_ref())
    }

    /// Number of certificates.
    #[must_use]
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// Public key of a certificate (the signing certificate of a bundle, or a leaf given to
/// `warden sign`), which must be ECDSA on a supported curve.
///
/// # Errors
/// Unparseable certificate or unsupported key.
pub fn certificate_key(der: &[u8], origin: &Path) -> Result<VerificationKey, Error> {
    let c = CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&c).map_err(|e| Error::Certificate {
        path: origin.to_path_buf(),
        reason: format!("cannot parse certificate: {}", webpki_reason(&e)),
    })?;
    VerificationKey::from_spki_der(ee.subject_public_key_info().as_ref(), origin)
}

/// Verify `chain` (leaf first, then intermediates, as carried in a bundle) against
/// `roots` at time `now`; return the leaf's public key.
///
/// # Errors
/// [`Error::Chain`] naming the failed check (expired, not yet valid, unknown issuer,
/// missing code-signing EKU, bad signature in the chain…).
pub fn verify_chain(
    chain: &[Vec<u8>],
    roots: &Certificates,
    now: UnixTime,
) -> Result<VerificationKey, Error> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err(Error::Chain("the signature carries no certificate".into()));
    };
    let mut anchors = Vec::with_capacity(roots.certs.len());
    for r in &roots.certs {
        anchors.push(webpki::anchor_from_trusted_cert(r).map_err(|e| {
            Error::Chain(format!(
                "a trusted certificate cannot be used as a root: {}",
                webpki_reason(&e)
            ))
        })?);
    }
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| {
        Error::Chain(format!(
            "cannot parse the signing certificate: {}",
            webpki_reason(&e)
        ))
    })?;
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    ee.verify_for_usage(
        CHAIN_ALGS,
        &anchors,
        &intermediates,
        now,
        webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| Error::Chain(webpki_reason(&e)))?;
    check_signing_usage(leaf)?;
    VerificationKey::from_spki_der(
        ee.subject_public_key_info().as_ref(),
        &PathBuf::from("signing certificate"),
    )
    .map_err(|e| Error::Chain(e.to_string()))
}

/// The leaf must be usable for signing: a key usage extension, when present, must
/// allow digitalSignature; and at least one of key usage / extended key usage must be
/// present (the reference tool's rule). The EKU content is checked by webpki.
fn check_signing_usage(leaf: &[u8]) -> Result<(), Error> {
    let usage = leaf_usage(leaf)
        .ok_or_else(|| Error::Chain("cannot read the signing certificate's extensions".into()))?;
    match usage {
        (Some(false), _) => Err(Error::Chain(
            "the signing certificate's key usage does not allow digital signatures".into(),
        )),
        (None, false) => Err(Error::Chain(
            "the signing certificate has neither key usage nor extended key usage for signing"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// One DER element: (tag, contents, rest). Lengths up to 4 bytes; never indexes.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            rest,
        )
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// (key usage allows digitalSignature — `None` when absent, EKU present).
fn leaf_usage(cert: &[u8]) -> Option<(Option<bool>, bool)> {
    const KU: &[u8] = &[0x55, 0x1d, 0x0f];
    const EKU: &[u8] = &[0x55, 0x1d, 0x25];
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    let mut ku = None;
    let mut eku = false;
    while !tbs.is_empty() {
        let (tag, content, rest) = der(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue;
        }
        let (_, mut exts, _) = der(content)?;
        while !exts.is_empty() {
            let (_, ext, rest) = der(exts)?;
            exts = rest;
            let (_, oid, mut fields) = der(ext)?;
            let mut value = None;
            while !fields.is_empty() {
                let (t, c, r) = der(fields)?;
                fields = r;
                if t == 0x04 {
                    value = Some(c);
                }
            }
            if oid == KU {
                let (_, bits, _) = der(value?)?;
                // BIT STRING: unused-bits byte, then bits; digitalSignature is bit 0.
                ku = Some(bits.get(1).is_some_and(|b| b & 0x80 != 0));
            } else if oid == EKU {
                eku = true;
            }
        }
    }
    Some((ku, eku))
}

/// A sentence for a webpki error (lower-case, no type names).
fn webpki_reason(e: &webpki::Error) -> String {
    use webpki::Error as W;
    match e {
        W::CertExpired { time, not_after } => format!(
            "certificate expired at {} (verification time {})",
            rfc3339(not_after.as_secs()),
            rfc3339(time.as_secs())
        ),
        W::CertNotValidYet { time, not_before } => format!(
            "certificate not valid before {} (verification time {})",
            rfc3339(not_before.as_secs()),
            rfc3339(time.as_secs())
        ),
        W::UnknownIssuer => {
            "the signing certificate does not chain to a trusted root (unknown issuer)".into()
        }
        W::RequiredEkuNotFoundContext(_) => {
            "the signing certificate's extended key usage does not allow code signing".into()
        }
        W::CaUsedAsEndEntity => "the signing certificate is a CA certificate".into(),
        W::EndEntityUsedAsCa => "a certificate in the chain is not a CA".into(),
        W::InvalidSignatureForPublicKey => {
            "a certificate in the chain has an invalid signature".into()
        }
        W::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | W::UnsupportedSignatureAlgorithmContext(_) => {
            "a certificate in the chain uses an unsupported signature algorithm".into()
        }
        W::BadDer | W::BadDerTime => "malformed certificate (bad DER)".into(),
        W::PathLenConstraintViolated => "path length constraint violated".into(),
        W::MaximumPathDepthExceeded | W::MaximumPathBuildCallsExceeded => {
            "certificate chain too long".into()
        }
        other => format!("certificate chain rejected ({other:?})").to_lowercase(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` from Unix seconds (UTC); outside the years 0000-9999, which
/// RFC 3339 cannot express (and X.509 times never reach), `@<seconds>`.
pub(crate) fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| ::time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|d| {
            d.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_reader_survives_garbage() {
        for data in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01\xa3",
            b"\x30\x02\x30\x00",
        ] {
            let _ = super::leaf_usage(data);
        }
        assert_eq!(super::leaf_usage(b"\x30\x02\x30\x00"), Some((None, false)));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            super::rfc3339(1_764_115_200 + 3_661),
            "2025-11-26T01:01:01Z"
        );
    }
}
