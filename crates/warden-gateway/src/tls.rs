//! TLS for both listeners with rustls (aws-lc-rs): TLS 1.3 only unless TLS 1.2 is
//! configured, ALPN h2 + http/1.1, optional or required client certificates, and
//! certificate reload without restart (files are polled; a bad new pair is refused and
//! the old one kept).

use crate::Error;
use crate::config::TlsConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

fn tls_err(p: &Path, cause: impl std::fmt::Display) -> Error {
    Error::Tls {
        path: p.display().to_string(),
        cause: cause.to_string(),
    }
}

/// Load a PEM certificate chain.
pub fn load_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(p)
        .map_err(|e| tls_err(p, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(p, e))?;
    if certs.is_empty() {
        return Err(tls_err(p, "no certificate in file"));
    }
    Ok(certs)
}

fn load_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, Error> {
    let chain = load_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(chain, der, &provider).map_err(|e| tls_err(key, e))?;
    Ok(Arc::new(ck))
}

/// A certificate resolver whose pair can be swapped while serving.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

fn mtimes(a: &Path, b: &Path) -> Option<(SystemTime, SystemTime)> {
    Some((
        std::fs::metadata(a).ok()?.modified().ok()?,
        std::fs::metadata(b).ok()?.modified().ok()?,
    ))
}

impl ReloadingCert {
    /// Load the pair.
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, Error> {
        let ck = load_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(ck),
            stamp: RwLock::new(mtimes(cert, key)),
        }))
    }

    /// Reload if either file changed. `Ok(true)` when a new pair is now in use.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        let now = mtimes(&self.cert, &self.key);
        let same = self.stamp.read().map(|s| *s == now).unwrap_or(false);
        if same {
            return Ok(false);
        }
        let ck = load_key(&self.cert, &self.key);
        if let Ok(mut s) = self.stamp.write() {
            *s = now;
        }
        let ck = ck?;
        if let Ok(mut c) = self.current.write() {
            *c = ck;
        }
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// Build a server configuration. `require_client` forces client certificates even when
/// the configuration leaves them optional (the admin listener makes them optional at the
/// TLS layer only so health checks work, and refuses everything else without one).
pub fn server_config(
    t: &TlsConfig,
    resolver: Arc<ReloadingCert>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if t.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| tls_err(&t.cert, e))?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| tls_err(ca, e))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if t.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| tls_err(ca, e))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The identity in a verified client certificate: its first DNS subject alternative name.
pub fn client_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let ee = webpki::EndEntityCert::try_from(leaf).ok()?;
    ee.valid_dns_names().next().map(str::to_owned)
}
