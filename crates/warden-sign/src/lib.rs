//! `warden-sign`: OpenSSF Model Signing v1, compatible with the `model-signing`
//! reference tool (PyPI), faster.
//!
//! - [`manifest`]: walk a model, hash files or shards in parallel ([`hash_model`]).
//! - [`bundle`]: the signature file (Sigstore bundle v0.3, DSSE, in-toto statement).
//! - [`keys`], [`certs`]: ECDSA P-256/384/521 keys (aws-lc-rs) and X.509 chains
//!   (rustls-webpki).
//! - [`sign`] writes a bundle for a manifest; [`verify`] checks a bundle and a model
//!   and returns a [`VerifiedManifest`], which nothing else can construct.
//!
//! The crate never prints and never touches the network; the only I/O is reading the
//! model's files.

pub mod bundle;
pub mod certs;
mod error;
pub mod hashing;
pub mod keys;
pub mod manifest;

pub use certs::Certificates;
pub use error::{Difference, Error};
pub use hashing::HashAlgorithm;
pub use keys::{Curve, SigningKey, VerificationKey};
pub use manifest::{
    Entry, HashOptions, Manifest, Method, Plan, Progress, Serialization, hash_model, plan,
};

use bundle::{Material, MaterialOut};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Who signs.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A bare key: the bundle records the key's hint.
    Key(&'a SigningKey),
    /// A key with its certificate (`chain` leaf first, then intermediates/roots to
    /// embed): the bundle carries the chain.
    Certificate {
        /// Private key matching the leaf.
        key: &'a SigningKey,
        /// Leaf first.
        chain: &'a Certificates,
    },
}

/// Sign a manifest: the returned bytes are the signature file (bundle JSON).
///
/// # Errors
/// A certificate that does not match the key; signing failure.
pub fn sign(manifest: &Manifest, signer: Signer<'_>) -> Result<Vec<u8>, Error> {
    let payload = bundle::statement_json(manifest)?;
    let pae = bundle::pae(bundle::PAYLOAD_TYPE, &payload);
    let (key, material) = match signer {
        Signer::Key(k) => (k, MaterialOut::Hint(k.public_key().hint())),
        Signer::Certificate { key, chain } => {
            let certs: Vec<&[u8]> = chain.iter_der().collect();
            let Some(leaf) = certs.first() else {
                return Err(Error::Certificate {
                    path: PathBuf::from("signing certificate"),
                    reason: "no certificate given".into(),
                });
            };
            let leaf_key = certs::certificate_key(leaf, Path::new("signing certificate"))?;
            if leaf_key != *key.public_key() {
                return Err(Error::Certificate {
                    path: PathBuf::from("signing certificate"),
                    reason: "the certificate's public key does not match the private key".into(),
                });
            }
            (key, MaterialOut::Chain(certs))
        }
    };
    let sig = key.sign(&pae)?;
    Ok(bundle::bundle_json(&payload, &sig, &material))
}

/// What verification trusts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The bundle must be signed by this key.
    Key(&'a VerificationKey),
    /// The bundle's certificate chain must lead to one of these certificates.
    Roots(&'a Certificates),
}

/// Who signed a verified model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerIdentity {
    /// A key, by its hint (hex SHA-256 of its PEM).
    Key {
        /// The hint.
        hint: String,
    },
    /// A certificate that chains to a trusted root.
    Certificate {
        /// DER of the signing certificate.
        leaf: Vec<u8>,
    },
}

/// Callback given the total bytes to hash; returns a progress sink, or `None`.
pub type ProgressFactory = Arc<dyn Fn(u64) -> Option<Progress> + Send + Sync>;

/// Options of [`verify`].
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// More paths to leave out, relative to the model root (the signature's own ignore
    /// list always applies).
    pub ignore_paths: Vec<PathBuf>,
    /// Do not leave out `.git`, `.gitattributes`, `.github`, `.gitignore`.
    pub include_git_paths: bool,
    /// Follow symbolic links to files instead of refusing them.
    pub allow_symlinks: bool,
    /// Only check files named in the signature; others on disk are not an error.
    pub ignore_unsigned_files: bool,
    /// Verification time for certificates (default: now).
    pub time: Option<std::time::SystemTime>,
    /// Progress reporting for long hashes.
    pub progress: Option<ProgressFactory>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("ignore_paths", &self.ignore_paths)
            .field("include_git_paths", &self.include_git_paths)
            .field("allow_symlinks", &self.allow_symlinks)
            .field("ignore_unsigned_files", &self.ignore_unsigned_files)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

/// A manifest whose signature verified and whose every entry matched the files on
/// disk at verification time. Only [`verify`] constructs it: the fields are private,
/// there is no public constructor and it is not deserializable.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    manifest: Manifest,
    signer: SignerIdentity,
    model_path: PathBuf,
}

impl VerifiedManifest {
    /// Entries (path, optional byte range, digest), in canonical order.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        self.manifest.entries()
    }

    /// The in-toto subject digest (SHA-256 over the entry digests in order).
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        self.manifest.digest()
    }

    /// Hex of [`Self::digest`].
    #[must_use]
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }

    /// The whole manifest.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Who signed.
    #[must_use]
    pub fn signer(&self) -> &SignerIdentity {
        &self.signer
    }

    /// The model path that was verified.
    #[must_use]
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }
}

/// Check the bundle's signature against `trust` and return the signed manifest (the
/// model on disk is not looked at).
///
/// # Errors
/// [`Error::Bundle`] for a malformed bundle; [`Error::KeyMismatch`],
/// [`Error::BadSignature`], [`Error::Chain`], [`Error::Statement`] for failed checks.
pub fn verify_bundle(
    bundle_bytes: &[u8],
    trust: Trust<'_>,
    time: Option<std::time::SystemTime>,
) -> Result<(Manifest, SignerIdentity), Error> {
    let b = bundle::parse_bundle(bundle_bytes)?;
    let pae = bundle::pae(&b.payload_type, &b.payload);
    let pae_compat = || bundle::pae_v0_2(&b.payload_type, &b.payload);
    let signer = match (trust, &b.material) {
        (Trust::Key(key), Material::Certificates(_)) => {
            let _ = key;
            return Err(Error::BadSignature(
                "the signature was made in certificate mode; verify with --certificate-chain"
                    .into(),
            ));
        }
        (Trust::Roots(_), m) if !matches!(m, Material::Certificates(_)) => {
            return Err(Error::BadSignature(
                "the signature was made with a bare key, not a certificate; verify with --public-key"
                    .into(),
            ));
        }
        (Trust::Key(key), material) => {
            match material {
                Material::KeyHint(h) => {
                    if !h.eq_ignore_ascii_case(&key.hint()) {
                        return Err(Error::KeyMismatch {
                            expected: h.clone(),
                            actual: key.hint(),
                        });
                    }
                }
                Material::LegacyPublicKey(pem) => {
                    let embedded =
                        VerificationKey::from_pem(pem, Path::new("signature")).map_err(|_| {
                            Error::Bundle("publicKey.rawBytes is not a PEM public key".into())
                        })?;
                    if embedded != *key {
                        return Err(Error::KeyMismatch {
                            expected: embedded.hint(),
                            actual: key.hint(),
                        });
                    }
                }
                Material::KeyWithoutHint | Material::Certificates(_) => {}
            }
            if !key.verify(&pae, &b.signature) && !key.verify(&pae_compat(), &b.signature) {
                return Err(Error::BadSignature(format!(
                    "the ECDSA {} signature does not verify with the given public key",
                    key.curve().name()
                )));
            }
            SignerIdentity::Key { hint: key.hint() }
        }
        (Trust::Roots(roots), Material::Certificates(chain)) => {
            let now = time.unwrap_or_else(std::time::SystemTime::now);
            let since = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| Error::Chain("verification time before 1970".into()))?;
            let leaf_key = certs::verify_chain(
                chain,
                roots,
                rustls_pki_types::UnixTime::since_unix_epoch(since),
            )?;
            if !leaf_key.verify(&pae, &b.signature)
                && !leaf_key.verify_sha256(&pae_compat(), &b.signature)
            {
                return Err(Error::BadSignature(format!(
                    "the ECDSA {} signature does not verify with the signing certificate's key",
                    leaf_key.curve().name()
                )));
            }
            SignerIdentity::Certificate {
                leaf: chain.first().cloned().unwrap_or_default(),
            }
        }
        (Trust::Roots(_), _) => {
            return Err(Error::BadSignature(
                "no certificate in the signature".into(),
            ));
        }
    };
    let manifest = bundle::parse_statement(&b.payload_type, &b.payload)?;
    Ok((manifest, signer))
}

/// Verify a model against its signature: the signature (and chain) first, then every
/// file. Returns the [`VerifiedManifest`] only when everything matches.
///
/// # Errors
/// See [`verify_bundle`]; [`Error::Mismatch`] listing every changed, added, removed or
/// renamed file; I/O errors while hashing.
pub fn verify(
    model_path: &Path,
    bundle_bytes: &[u8],
    trust: Trust<'_>,
    options: &VerifyOptions,
) -> Result<VerifiedManifest, Error> {
    let (expected, signer) = verify_bundle(bundle_bytes, trust, options.time)?;
    let ser = expected.serialization();
    let mut ignore_paths: Vec<PathBuf> = ser.ignore_paths.iter().map(PathBuf::from).collect();
    ignore_paths.extend(options.ignore_paths.iter().cloned());
    let only = options.ignore_unsigned_files.then(|| {
        expected
            .entries()
            .iter()
            .map(|e| e.path().to_owned())
            .collect::<BTreeSet<_>>()
    });
    let hash_options = HashOptions {
        method: ser.method,
        hash: ser.hash,
        allow_symlinks: options.allow_symlinks,
        ignore_paths,
        ignore_git_paths: !options.include_git_paths,
        only,
    };
    let plan = manifest::plan(model_path, &hash_options)?;
    let progress = options
        .progress
        .as_ref()
        .and_then(|f| f(plan.total_bytes()));
    let actual = plan.hash(progress)?;
    let differences = diff(&expected, &actual);
    if !differences.is_empty() {
        return Err(Error::Mismatch {
            model: model_path.to_path_buf(),
            differences,
        });
    }
    Ok(VerifiedManifest {
        manifest: expected,
        signer,
        model_path: model_path.to_path_buf(),
    })
}

/// Every difference between a signed manifest and one computed from disk.
fn diff(expected: &Manifest, actual: &Manifest) -> Vec<Difference> {
    let exp: BTreeMap<String, &Entry> = expected.entries().iter().map(|e| (e.name(), e)).collect();
    let act: BTreeMap<String, &Entry> = actual.entries().iter().map(|e| (e.name(), e)).collect();
    let mut out = Vec::new();
    for (name, e) in &exp {
        if let Some(a) = act.get(name)
            && a.digest() != e.digest()
        {
            out.push(Difference::Changed {
                name: name.clone(),
                expected: e.digest_hex(),
                actual: a.digest_hex(),
            });
        }
    }
    // Group by file path to report whole files and detect renames.
    type Shape = Vec<(Option<(u64, u64)>, Vec<u8>)>;
    let group = |m: &BTreeMap<String, &Entry>| -> BTreeMap<String, Shape> {
        let mut g: BTreeMap<String, Shape> = BTreeMap::new();
        for e in m.values() {
            g.entry(e.path().to_owned())
                .or_default()
                .push((e.range(), e.digest().to_vec()));
        }
        g
    };
    let exp_files = group(&exp);
    let act_files = group(&act);
    let removed: Vec<&String> = exp_files
        .keys()
        .filter(|p| !act_files.contains_key(*p))
        .collect();
    let mut added: Vec<&String> = act_files
        .keys()
        .filter(|p| !exp_files.contains_key(*p))
        .collect();
    for path in removed {
        let shape = exp_files.get(path);
        let twin = added
            .iter()
            .position(|a| act_files.get(*a) == shape && shape.is_some());
        match twin {
            Some(i) => {
                let to = added.remove(i);
                out.push(Difference::Renamed {
                    from: path.clone(),
                    to: to.clone(),
                });
            }
            None => out.push(Difference::Removed { name: path.clone() }),
        }
    }
    for path in added {
        out.push(Difference::Added { name: path.clone() });
    }
    // Shards missing or extra within files present on both sides (a file that grew or
    // shrank).
    for (name, e) in &exp {
        if !act.contains_key(name) && act_files.contains_key(e.path()) {
            out.push(Difference::Removed { name: name.clone() });
        }
    }
    for (name, a) in &act {
        if !exp.contains_key(name) && exp_files.contains_key(a.path()) {
            out.push(Difference::Added { name: name.clone() });
        }
    }
    out.sort_by(|a, b| diff_name(a).cmp(diff_name(b)));
    out
}

fn diff_name(d: &Difference) -> &str {
    match d {
        Difference::Changed { name, .. }
        | Difference::Added { name }
        | Difference::Removed { name } => name,
        Difference::Renamed { from, .. } => from,
    }
}
