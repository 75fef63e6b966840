//! TLS for both listeners with rustls (aws-lc-rs): TLS 1.3 only unless TLS 1.2 is
//! configured, ALPN h2 + http/1.1, optional or required client certificates, and
//! certificate reload without restart (the files' contents are polled: a pair replaced
//! with its old modification time is still seen; a bad new pair is refused and the old
//! one kept).

use crate::Error;
use crate::config::TlsConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// The pair as read from disk: the bytes that are both hashed and parsed, so a file
/// rewritten between two reads can never leave a hash that matches an unloaded pair.
struct PairBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PairBytes {
    fn read(cert: &Path, key: &Path) -> Result<PairBytes, Error> {
        Ok(PairBytes {
            cert: std::fs::read(cert).map_err(|e| tls_err(cert, e))?,
            key: std::fs::read(key).map_err(|e| tls_err(key, e))?,
        })
    }

    /// SHA-256 over both files (each prefixed by its length). Contents, not modification
    /// times: `cp -p` or `rsync -t` can install a new pair with the old times.
    fn digest(&self) -> Option<[u8; 32]> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for data in [&self.cert, &self.key] {
            ctx.update(&(data.len() as u64).to_le_bytes());
            ctx.update(data);
        }
        ctx.finish().as_ref().try_into().ok()
    }

    fn certified_key(&self, cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, Error> {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(cert, e))?;
        if chain.is_empty() {
            return Err(tls_err(cert, "no certificate in file"));
        }
        let der = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| tls_err(key, e))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let ck = CertifiedKey::from_der(chain, der, &provider).map_err(|e| tls_err(key, e))?;
        Ok(Arc::new(ck))
    }
}

/// A certificate resolver whose pair can be swapped while serving.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// SHA-256 of the two files' contents when last loaded (or refused).
    stamp: RwLock<Option<[u8; 32]>>,
}

impl ReloadingCert {
    /// Load the pair.
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, Error> {
        let bytes = PairBytes::read(cert, key)?;
        let ck = bytes.certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(ck),
            stamp: RwLock::new(bytes.digest()),
        }))
    }

    /// Reload if either file changed. `Ok(true)` when a new pair is now in use; an
    /// unreadable or bad pair is an error once (until the files change again) and the
    /// pair in use is kept.
    pub fn reload_if_changed(&self) -> Result<bool, Error> {
        let bytes = PairBytes::read(&self.cert, &self.key);
        let now = bytes.as_ref().ok().and_then(PairBytes::digest);
        let same = self.stamp.read().map(|s| *s == now).unwrap_or(false);
        if same {
            return Ok(false);
        }
        if let Ok(mut s) = self.stamp.write() {
            *s = now;
        }
        let ck = bytes?.certified_key(&self.cert, &self.key)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let (cp, kp) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, k.serialize_pem()).unwrap();
        (cp, kp, c.der().to_vec())
    }

    fn served(r: &ReloadingCert) -> Vec<u8> {
        r.current.read().unwrap().cert[0].as_ref().to_vec()
    }

    /// A full in-memory handshake of a client offering only `versions` with the
    /// listener configuration built from `t`; the negotiated version or the error.
    fn handshake(
        t: &TlsConfig,
        ca_der: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<rustls::ProtocolVersion, rustls::Error> {
        let server = server_config(t, ReloadingCert::new(&t.cert, &t.key).unwrap()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut c = rustls::ClientConnection::new(Arc::new(client), "one.test".try_into().unwrap())
            .unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.protocol_version().unwrap());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn tls12_is_refused_unless_configured() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key, der) = pair(d.path(), "one.test");
        let mut t = TlsConfig {
            cert,
            key,
            client_ca: None,
            require_client_cert: false,
            allow_tls12: false,
        };
        let v12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let v13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        assert_eq!(
            handshake(&t, &der, v13).unwrap(),
            rustls::ProtocolVersion::TLSv1_3
        );
        let e = handshake(&t, &der, v12).unwrap_err();
        assert!(
            matches!(e, rustls::Error::PeerIncompatible(_)),
            "TLS 1.2 client: {e:?}"
        );
        t.allow_tls12 = true;
        assert_eq!(
            handshake(&t, &der, v12).unwrap(),
            rustls::ProtocolVersion::TLSv1_2
        );
        assert_eq!(
            handshake(&t, &der, v13).unwrap(),
            rustls::ProtocolVersion::TLSv1_3
        );
    }

    #[test]
    fn a_new_pair_is_served_even_with_the_old_modification_times() {
        let d = tempfile::tempdir().unwrap();
        let (cp, kp, first) = pair(d.path(), "one.test");
        let r = ReloadingCert::new(&cp, &kp).unwrap();
        assert!(!r.reload_if_changed().unwrap());
        let times = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let (tc, tk) = (times(&cp), times(&kp));
        let (_, _, second) = pair(d.path(), "two.test");
        // Put the old modification times back, as `cp -p` of an older file would.
        for (p, t) in [(&cp, tc), (&kp, tk)] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        assert_eq!(times(&cp), tc);
        assert_eq!(served(&r), first);
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(served(&r), second);
        // A broken pair is refused and the working one kept, once (not every poll).
        std::fs::write(&kp, "not a key").unwrap();
        assert!(r.reload_if_changed().is_err());
        assert!(!r.reload_if_changed().unwrap());
        assert_eq!(served(&r), second);
    }
}
