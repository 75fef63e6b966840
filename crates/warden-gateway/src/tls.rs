//! TLS for both listeners with rustls (aws-lc-rs): TLS 1.3 only unless TLS 1.2 is
//! configured, ALPN h2 + http/1.1, optional or required client certificates checked
//! against CRLs, and reload without restart of the certificate pair, the client CAs and
//! the CRLs (the files' contents are polled: a file replaced with its old modification
//! time is still seen; a bad new file is refused and the old configuration kept).
//! Connections are tracked with their client certificate chain: when the client CAs or
//! CRLs change, every open connection whose chain the new verifier refuses is cut.

use crate::Error;
use crate::config::{ClientIdentity, TlsConfig};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio_util::sync::CancellationToken;

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

/// The client CA and CRL files as read from disk: the bytes that are both hashed and
/// parsed (as [`PairBytes`]).
struct TrustBytes {
    ca: Option<(PathBuf, Vec<u8>)>,
    crls: Vec<(PathBuf, Vec<u8>)>,
}

impl TrustBytes {
    fn read(t: &TlsConfig) -> Result<TrustBytes, Error> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| (p.to_owned(), b))
                .map_err(|e| tls_err(p, e))
        };
        Ok(TrustBytes {
            ca: t.client_ca.as_deref().map(read).transpose()?,
            crls: t
                .client_crl
                .iter()
                .map(|p| read(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// SHA-256 over every file (each prefixed by its length).
    fn digest(&self) -> Option<[u8; 32]> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (_, data) in self.ca.iter().chain(&self.crls) {
            ctx.update(&(data.len() as u64).to_le_bytes());
            ctx.update(data);
        }
        ctx.finish().as_ref().try_into().ok()
    }
}

/// The CRLs in one file: PEM `X509 CRL` blocks, or the file is one DER CRL. Each is
/// parsed here so that a bad one is refused naming its file (rustls' verifier builder
/// would only say that some CRL is invalid).
fn parse_crls(p: &Path, bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let crls: Vec<CertificateRevocationListDer<'static>> =
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| tls_err(p, e))?
        } else {
            vec![CertificateRevocationListDer::from(bytes.to_vec())]
        };
    if crls.is_empty() {
        return Err(tls_err(
            p,
            "no CRL in file (PEM \"X509 CRL\" blocks or one DER CRL)",
        ));
    }
    for c in &crls {
        webpki::OwnedCertRevocationList::from_der(c)
            .map_err(|e| tls_err(p, format!("not a usable CRL: {e}")))?;
    }
    Ok(crls)
}

/// When each CRL in the file at `path` says the next one is due (its nextUpdate, Unix
/// seconds), in file order. The file is read and checked as the listeners read it (PEM
/// `X509 CRL` blocks or one DER CRL); errors name the file. For `warden posture`.
pub fn crl_next_updates(path: &Path) -> Result<Vec<i64>, Error> {
    let bytes = std::fs::read(path).map_err(|e| tls_err(path, e))?;
    parse_crls(path, &bytes)?
        .iter()
        .map(|c| {
            // rustls-webpki (which parsed it above) keeps nextUpdate to itself.
            let (_, crl) = x509_parser::parse_x509_crl(c.as_ref())
                .map_err(|e| tls_err(path, format!("not a usable CRL: {e}")))?;
            crl.next_update()
                .map(|t| t.timestamp())
                .ok_or_else(|| tls_err(path, "a CRL without nextUpdate"))
        })
        .collect()
}

/// Build a server configuration, reading the client CA and CRL files.
pub fn server_config(
    t: &TlsConfig,
    resolver: Arc<ReloadingCert>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    build_config(t, &TrustBytes::read(t)?, resolver).map(|(cfg, _)| cfg)
}

/// The client certificate verifier of a configuration (None: no client CA, so no client
/// certificates are asked for).
type Verifier = Option<Arc<dyn ClientCertVerifier>>;

/// Build a server configuration from the client CA and CRL files' contents. Client
/// certificates are optional at the TLS layer unless `require_client_cert` (the admin
/// listener leaves them optional only so health checks work, and refuses everything
/// else without one).
fn build_config(
    t: &TlsConfig,
    trust: &TrustBytes,
    resolver: Arc<ReloadingCert>,
) -> Result<(Arc<rustls::ServerConfig>, Verifier), Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if t.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| tls_err(&t.cert, e))?;
    let (builder, verifier) = match &trust.ca {
        Some((ca, bytes)) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| tls_err(ca, e))?;
            if certs.is_empty() {
                return Err(tls_err(ca, "no certificate in file"));
            }
            for c in certs {
                roots.add(c).map_err(|e| tls_err(ca, e))?;
            }
            let mut crls = Vec::new();
            for (p, bytes) in &trust.crls {
                crls.extend(parse_crls(p, bytes)?);
            }
            // Every certificate of the chain below the anchor is checked, and one no CRL
            // speaks for is refused (rustls' defaults, kept: fail closed).
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls);
            if !t.client_crl_allow_expired {
                v = v.enforce_revocation_expiration();
            }
            if !t.require_client_cert {
                v = v.allow_unauthenticated();
            }
            let v = v.build().map_err(|e| {
                tls_err(
                    t.client_crl.first().map_or(ca.as_path(), PathBuf::as_path),
                    e,
                )
            })?;
            (builder.with_client_cert_verifier(Arc::clone(&v)), Some(v))
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), verifier))
}

/// A listener's TLS: the certificate pair (swapped in place, see [`ReloadingCert`]) and
/// the server configuration built from the client CA and CRL files, rebuilt when one of
/// them changes. New connections take the configuration current when they arrive; a
/// rebuilt one also starts an empty session cache, so no session of a client
/// certificate revoked since can be resumed. Open connections with a client certificate
/// are tracked ([`ListenerTls::track`]); a rebuilt configuration's verifier checks each
/// one's chain again and the connections it refuses are cut.
#[derive(Debug)]
pub struct ListenerTls {
    t: TlsConfig,
    cert: Arc<ReloadingCert>,
    current: RwLock<Trust>,
    /// SHA-256 of the client CA and CRL files when last loaded (or refused).
    stamp: RwLock<Option<[u8; 32]>>,
    live: Arc<Mutex<LiveMap>>,
}

/// The configuration in use, its client certificate verifier and its epoch (counts
/// rebuilds).
struct Trust {
    config: Arc<rustls::ServerConfig>,
    verifier: Verifier,
    epoch: u64,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("client_auth", &self.verifier.is_some())
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Which client configuration a handshake used ([`ListenerTls::acceptor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustEpoch(u64);

/// Open connections with a client certificate, by a tracking number.
#[derive(Debug, Default)]
struct LiveMap {
    map: HashMap<u64, Live>,
    next: u64,
}

/// One open connection's client certificate chain (leaf first), its address and the
/// token that cuts it.
#[derive(Debug, Clone)]
struct Live {
    chain: Arc<[CertificateDer<'static>]>,
    peer: SocketAddr,
    token: CancellationToken,
}

/// A connection's place among the tracked ones ([`ListenerTls::track`]); dropped when
/// the connection ends.
#[derive(Debug)]
pub struct Tracked(Option<(Arc<Mutex<LiveMap>>, u64)>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some((live, id)) = self.0.take()
            && let Ok(mut m) = live.lock()
        {
            m.map.remove(&id);
        }
    }
}

/// A connection cut because the client configuration in use no longer accepts its
/// client certificate. Names the certificate (never key material).
#[derive(Debug, Clone)]
pub struct Untrusted {
    /// The client's address.
    pub peer: SocketAddr,
    /// The identity the certificate names, as [`ListenerTls::client_identity`].
    pub identity: Option<String>,
    /// The certificate's subject name (RFC 4514 style), or `unreadable`.
    pub subject: String,
    /// The certificate's serial number, hex.
    pub serial: String,
    /// Whether a CRL revokes it (else it no longer verifies for another reason: not
    /// issued under the new client CA, expired, no CRL speaks for it, expired CRL).
    pub revoked: bool,
    /// The verifier's error.
    pub error: String,
}

impl Untrusted {
    fn new(l: &Live, e: &rustls::Error, how: &ClientIdentity) -> Untrusted {
        let leaf = l.chain.first();
        let ee = leaf.and_then(|c| webpki::EndEntityCert::try_from(c).ok());
        let subject = leaf
            .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .map_or_else(|| "unreadable".to_owned(), |(_, c)| c.subject().to_string());
        Untrusted {
            peer: l.peer,
            identity: client_identity(Some(&l.chain), how),
            subject,
            serial: ee.map(|c| hex::encode(c.serial())).unwrap_or_default(),
            revoked: matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
            ),
            error: e.to_string(),
        }
    }

    /// The cause, in words: "client certificate revoked" or "client certificate no
    /// longer trusted (<verifier error>)".
    pub fn cause(&self) -> String {
        if self.revoked {
            "client certificate revoked".to_owned()
        } else {
            format!("client certificate no longer trusted ({})", self.error)
        }
    }
}

/// Check a peer's chain (leaf first) with `verifier` at the current time.
fn verify_chain(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(|_| ())
}

impl ListenerTls {
    /// Load the pair, the client CAs and the CRLs.
    pub fn new(t: &TlsConfig) -> Result<Arc<ListenerTls>, Error> {
        let cert = ReloadingCert::new(&t.cert, &t.key)?;
        let trust = TrustBytes::read(t)?;
        let (config, verifier) = build_config(t, &trust, Arc::clone(&cert))?;
        Ok(Arc::new(ListenerTls {
            t: t.clone(),
            cert,
            current: RwLock::new(Trust {
                config,
                verifier,
                epoch: 0,
            }),
            stamp: RwLock::new(trust.digest()),
            live: Arc::default(),
        }))
    }

    /// The configuration in use now, its verifier and epoch.
    fn trust(&self) -> (Arc<rustls::ServerConfig>, Verifier, TrustEpoch) {
        // A writer only swaps the value whole; it cannot leave a half-written one.
        let t = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            Arc::clone(&t.config),
            t.verifier.clone(),
            TrustEpoch(t.epoch),
        )
    }

    /// The identity a verified client certificate of this listener names (see
    /// [`client_identity`] and the listener's `client_identity` setting).
    pub fn client_identity(&self, certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
        client_identity(certs, &self.t.client_identity)
    }

    /// The configuration in use now.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.trust().0
    }

    /// An acceptor with the configuration in use now, and which one it is (for
    /// [`ListenerTls::track`]).
    pub fn acceptor(&self) -> (tokio_rustls::TlsAcceptor, TrustEpoch) {
        let (config, _, epoch) = self.trust();
        (tokio_rustls::TlsAcceptor::from(config), epoch)
    }

    /// Track an open connection whose handshake (with the configuration of `epoch`)
    /// accepted `chain`, the client's certificates: `token` is cancelled when a
    /// reloaded client configuration no longer accepts them. A connection without a
    /// client certificate is not tracked. If the configuration changed since the
    /// handshake, the chain is checked against the new one at once: `Err` (and `token`
    /// cancelled) when it is refused, so a reload racing the handshake cannot miss it.
    pub fn track(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        epoch: TrustEpoch,
        peer: SocketAddr,
        token: &CancellationToken,
    ) -> Result<Tracked, Box<Untrusted>> {
        let Some(chain) = chain.filter(|c| !c.is_empty()) else {
            return Ok(Tracked(None));
        };
        let live = Live {
            chain: Arc::from(chain),
            peer,
            token: token.clone(),
        };
        // The epoch is read after the entry is in the map, under the map's lock, which a
        // reload takes only after installing its configuration: either the reload's
        // re-check sees this entry or this sees the reload's epoch.
        let (tracked, now) = {
            let mut m = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.next += 1;
            let id = m.next;
            m.map.insert(id, live.clone());
            (Tracked(Some((Arc::clone(&self.live), id))), self.trust())
        };
        if now.2 != epoch
            && let Some(v) = now.1
            && let Err(e) = verify_chain(v.as_ref(), &live.chain)
        {
            token.cancel();
            return Err(Box::new(Untrusted::new(&live, &e, &self.t.client_identity)));
        }
        Ok(tracked)
    }

    /// Open connections tracked with a client certificate.
    pub fn tracked(&self) -> usize {
        self.live.lock().map_or(0, |m| m.map.len())
    }

    /// Reload the certificate pair if it changed (see [`ReloadingCert::reload_if_changed`]).
    pub fn reload_cert_if_changed(&self) -> Result<bool, Error> {
        self.cert.reload_if_changed()
    }

    /// Rebuild the configuration if the client CA or a CRL file changed. `Ok(Some(cut))`
    /// when new connections now use it, `cut` being the open connections whose client
    /// certificate chain its verifier refuses (their tokens cancelled); an unreadable or
    /// bad file is an error (naming it) once, until the files change again, and the
    /// configuration in use is kept (and open connections with it).
    pub fn reload_client_trust_if_changed(&self) -> Result<Option<Vec<Untrusted>>, Error> {
        let trust = TrustBytes::read(&self.t);
        let now = trust.as_ref().ok().and_then(TrustBytes::digest);
        let same = self.stamp.read().map(|s| *s == now).unwrap_or(false);
        if same {
            return Ok(None);
        }
        if let Ok(mut s) = self.stamp.write() {
            *s = now;
        }
        let (config, verifier) = build_config(&self.t, &trust?, Arc::clone(&self.cert))?;
        {
            let mut c = self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let epoch = c.epoch + 1;
            *c = Trust {
                config,
                verifier: verifier.clone(),
                epoch,
            };
        }
        let Some(v) = verifier else {
            return Ok(Some(Vec::new()));
        };
        let open: Vec<(u64, Live)> = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect();
        let mut cut = Vec::new();
        let mut gone = Vec::new();
        // A client's connections usually share one chain: each distinct chain is
        // verified once.
        let mut verdicts: HashMap<Vec<&[u8]>, Result<(), rustls::Error>> = HashMap::new();
        for (id, l) in &open {
            let key: Vec<&[u8]> = l.chain.iter().map(|c| c.as_ref()).collect();
            let verdict = verdicts
                .entry(key)
                .or_insert_with(|| verify_chain(v.as_ref(), &l.chain));
            if let Err(e) = verdict {
                l.token.cancel();
                cut.push(Untrusted::new(l, e, &self.t.client_identity));
                gone.push(*id);
            }
        }
        // Cut connections are no longer tracked, so a later reload does not report one
        // again while it is still closing.
        if !gone.is_empty() {
            let mut m = self
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in gone {
                m.map.remove(&id);
            }
        }
        Ok(Some(cut))
    }
}

/// The identity a verified client certificate names under `how`: its first DNS subject
/// alternative name, or the rest of its URI subject alternative name under the
/// configured prefix. `None` when it names none, or (URI) when several URI names under
/// the prefix name different identities: which one counts would be a guess.
pub fn client_identity(
    certs: Option<&[CertificateDer<'_>]>,
    how: &ClientIdentity,
) -> Option<String> {
    let leaf = certs?.first()?;
    match how {
        ClientIdentity::Dns => {
            let ee = webpki::EndEntityCert::try_from(leaf).ok()?;
            ee.valid_dns_names().next().map(str::to_owned)
        }
        ClientIdentity::UriPrefix(prefix) => {
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
            // A certificate with two SAN extensions is malformed (RFC 5280 4.2): none.
            let san = cert.subject_alternative_name().ok()??;
            let mut found: Option<&str> = None;
            for name in &san.value.general_names {
                let x509_parser::extensions::GeneralName::URI(uri) = name else {
                    continue;
                };
                let Some(rest) = uri.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if !is_identity_segment(rest) {
                    continue;
                }
                match found {
                    Some(f) if f != rest => return None,
                    _ => found = Some(rest),
                }
            }
            found.map(str::to_owned)
        }
    }
}

/// What may follow the prefix of a URI identity: one path segment of unreserved
/// characters (RFC 3986: letters, digits, `-._~`), at most 256 bytes. No `/` (a deeper
/// path is another namespace), no percent-encoding (`%61lice` would otherwise be a
/// second spelling of `alice`), no query or fragment.
fn is_identity_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with exactly these subject alternative names.
    fn with_sans(sans: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let k = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = sans;
        p.self_signed(&k).unwrap().der().clone()
    }

    #[test]
    fn client_identity_reads_the_first_dns_name_or_one_uri_under_the_prefix() {
        let dns = |s: &str| rcgen::SanType::DnsName(s.try_into().unwrap());
        let uri = |s: &str| rcgen::SanType::URI(s.try_into().unwrap());
        let spiffe = ClientIdentity::UriPrefix("spiffe://corp.example/warden/".into());
        let id = |sans: Vec<rcgen::SanType>, how: &ClientIdentity| {
            client_identity(Some(&[with_sans(sans)]), how)
        };
        let both = vec![
            dns("alice"),
            dns("bob"),
            uri("spiffe://corp.example/warden/carol"),
        ];
        assert_eq!(
            id(both.clone(), &ClientIdentity::Dns).as_deref(),
            Some("alice")
        );
        assert_eq!(id(both, &spiffe).as_deref(), Some("carol"));
        assert_eq!(id(vec![dns("carol")], &spiffe), None);
        assert_eq!(
            id(
                vec![uri("spiffe://corp.example/warden/carol")],
                &ClientIdentity::Dns
            ),
            None
        );
        // The same identity twice is one name; two identities are none.
        let twice = vec![
            uri("spiffe://corp.example/warden/carol"),
            uri("spiffe://corp.example/warden/carol"),
        ];
        assert_eq!(id(twice, &spiffe).as_deref(), Some("carol"));
        let two = vec![
            uri("spiffe://corp.example/warden/carol"),
            uri("spiffe://corp.example/warden/dave"),
        ];
        assert_eq!(id(two, &spiffe), None);
        // Names outside the namespace are skipped, not refused: the right one counts.
        let mixed = vec![
            uri("spiffe://corp.example/other/dave"),
            uri("spiffe://corp.example/warden/team/dave"),
            uri("spiffe://corp.example/warden/carol"),
        ];
        assert_eq!(id(mixed, &spiffe).as_deref(), Some("carol"));
        for bad in [
            "spiffe://corp.example/warden/",
            "spiffe://corp.example/warden/team/carol",
            "spiffe://corp.example/warden/%63arol",
            "spiffe://corp.example/warden/carol?x=1",
            "spiffe://corp.example/warden/carol#f",
            "spiffe://corp.example/warden-x/carol",
            "SPIFFE://corp.example/warden/carol",
            "spiffe://evil.example/warden/carol",
        ] {
            assert_eq!(id(vec![uri(bad)], &spiffe), None, "{bad}");
        }
        let long = format!("spiffe://corp.example/warden/{}", "a".repeat(257));
        assert_eq!(id(vec![uri(&long)], &spiffe), None);
        assert_eq!(client_identity(None, &spiffe), None);
        assert_eq!(client_identity(Some(&[]), &ClientIdentity::Dns), None);
    }

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
        handshake_with(server, ca_der, versions, None)
    }

    /// A full in-memory handshake against `server`, the client presenting `client` (a
    /// chain and its key) when given.
    fn handshake_with(
        server: Arc<rustls::ServerConfig>,
        ca_der: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<rustls::ProtocolVersion, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let client = match client {
            Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
            None => b.with_no_client_auth(),
        };
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
            client_crl: Vec::new(),
            client_crl_allow_expired: false,
            require_client_cert: false,
            allow_tls12: false,
            client_identity: ClientIdentity::Dns,
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

    /// A client CA, its PEM file, and a server pair (self-signed, `one.test`).
    struct Mtls {
        dir: tempfile::TempDir,
        ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        ca_path: PathBuf,
        server_der: Vec<u8>,
        t: TlsConfig,
    }

    fn client_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        rcgen::CertifiedIssuer::self_signed(p, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    fn mtls() -> Mtls {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, server_der) = pair(dir.path(), "one.test");
        let ca = client_ca("client CA");
        let ca_path = dir.path().join("client-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let t = TlsConfig {
            cert,
            key,
            client_ca: Some(ca_path.clone()),
            client_crl: vec![dir.path().join("client.crl")],
            client_crl_allow_expired: false,
            require_client_cert: true,
            allow_tls12: false,
            client_identity: ClientIdentity::Dns,
        };
        Mtls {
            dir,
            ca,
            ca_path,
            server_der,
            t,
        }
    }

    /// A client certificate for `name` with serial number `serial`, issued by `ca`.
    fn client_cert(
        ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        name: &str,
        serial: u64,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let k = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.serial_number = Some(serial.into());
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&k, ca).unwrap();
        let key = PrivateKeyDer::try_from(k.serialize_der()).unwrap();
        (vec![c.der().clone()], key)
    }

    /// A CRL of `ca` revoking `serials`, valid until `next_year` (January 1st).
    fn crl(
        ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        serials: &[u64],
        next_year: i32,
    ) -> rcgen::CertificateRevocationList {
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(next_year, 1, 1),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: (*s).into(),
                    revocation_time: rcgen::date_time_ymd(2020, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(ca)
        .unwrap()
    }

    const V13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    fn connect(
        m: &Mtls,
        server: Arc<rustls::ServerConfig>,
        client: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    ) -> Result<rustls::ProtocolVersion, rustls::Error> {
        handshake_with(server, &m.server_der, V13, Some(client))
    }

    fn is_revoked(e: &rustls::Error) -> bool {
        matches!(
            e,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
        )
    }

    #[test]
    fn a_revoked_client_certificate_is_refused_at_the_handshake() {
        let m = mtls();
        // DER file, then PEM file: both forms are read.
        std::fs::write(&m.t.client_crl[0], crl(&m.ca, &[2], 2099).der().as_ref()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        connect(&m, l.current(), client_cert(&m.ca, "good.client", 1)).unwrap();
        let e = connect(&m, l.current(), client_cert(&m.ca, "bad.client", 2)).unwrap_err();
        assert!(is_revoked(&e), "{e:?}");
        std::fs::write(&m.t.client_crl[0], crl(&m.ca, &[3], 2099).pem().unwrap()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        connect(&m, l.current(), client_cert(&m.ca, "bad.client", 2)).unwrap();
        let e = connect(&m, l.current(), client_cert(&m.ca, "other.client", 3)).unwrap_err();
        assert!(is_revoked(&e), "{e:?}");
    }

    #[test]
    fn a_replaced_crl_applies_to_new_connections_and_a_broken_one_keeps_the_old() {
        let m = mtls();
        let crl_path = &m.t.client_crl[0];
        std::fs::write(crl_path, crl(&m.ca, &[], 2099).pem().unwrap()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        assert!(l.reload_client_trust_if_changed().unwrap().is_none());
        connect(&m, l.current(), client_cert(&m.ca, "c.client", 7)).unwrap();
        let c7 = client_cert(&m.ca, "c.client", 7);
        std::fs::write(crl_path, crl(&m.ca, &[7], 2099).pem().unwrap()).unwrap();
        assert!(l.reload_client_trust_if_changed().unwrap().is_some());
        let e = connect(&m, l.current(), c7).unwrap_err();
        assert!(is_revoked(&e), "{e:?}");
        // A broken CRL is refused naming its file, once, and the one in use is kept.
        std::fs::write(
            crl_path,
            "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        )
        .unwrap();
        let e = l.reload_client_trust_if_changed().unwrap_err().to_string();
        assert!(e.contains(&crl_path.display().to_string()), "{e}");
        assert!(l.reload_client_trust_if_changed().unwrap().is_none());
        let e = connect(&m, l.current(), client_cert(&m.ca, "c.client", 7)).unwrap_err();
        assert!(is_revoked(&e), "{e:?}");
        // The client CA file is watched too: a new CA's clients get in, the old CA's no
        // longer do.
        let ca2 = client_ca("second client CA");
        std::fs::write(crl_path, crl(&ca2, &[], 2099).pem().unwrap()).unwrap();
        std::fs::write(&m.ca_path, ca2.pem()).unwrap();
        assert!(l.reload_client_trust_if_changed().unwrap().is_some());
        connect(&m, l.current(), client_cert(&ca2, "d.client", 7)).unwrap();
        connect(&m, l.current(), client_cert(&m.ca, "e.client", 8)).unwrap_err();
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Open connections are checked again by the reloaded configuration's verifier: a
    /// revoked certificate's connection is cut, another's stays; a new client CA cuts
    /// the old CA's; a connection whose handshake used a configuration replaced since
    /// is checked when it is tracked.
    #[test]
    fn a_reload_cuts_the_open_connections_whose_certificate_it_refuses() {
        let m = mtls();
        let crl_path = &m.t.client_crl[0];
        std::fs::write(crl_path, crl(&m.ca, &[], 2099).pem().unwrap()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        let (a, b) = (
            client_cert(&m.ca, "a.client", 7),
            client_cert(&m.ca, "b.client", 8),
        );
        let (ta, tb, tn) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let (_, epoch) = l.acceptor();
        let ga = l.track(Some(&a.0), epoch, addr(1), &ta).unwrap();
        let _gb = l.track(Some(&b.0), epoch, addr(2), &tb).unwrap();
        // Without a client certificate there is nothing to check again.
        let _gn = l.track(None, epoch, addr(3), &tn).unwrap();
        assert_eq!(l.tracked(), 2);
        std::fs::write(crl_path, crl(&m.ca, &[7], 2099).pem().unwrap()).unwrap();
        let cut = l.reload_client_trust_if_changed().unwrap().unwrap();
        assert!(ta.is_cancelled() && !tb.is_cancelled() && !tn.is_cancelled());
        assert_eq!(cut.len(), 1, "{cut:?}");
        let u = &cut[0];
        assert!(u.revoked, "{u:?}");
        assert_eq!(u.peer, addr(1));
        assert_eq!(u.identity.as_deref(), Some("a.client"));
        assert_eq!(u.serial, "07");
        assert_eq!(u.cause(), "client certificate revoked");
        // A cut connection is no longer tracked, nor one that ended.
        assert_eq!(l.tracked(), 1);
        drop(ga);
        assert_eq!(l.tracked(), 1);
        // A handshake with the configuration before this reload: checked at tracking.
        let tc = CancellationToken::new();
        let u = l.track(Some(&a.0), epoch, addr(4), &tc).unwrap_err();
        assert!(tc.is_cancelled() && u.revoked, "{u:?}");
        assert_eq!(l.tracked(), 1);
        // A new client CA: b's certificate is not revoked, but no longer trusted.
        let ca2 = client_ca("second client CA");
        std::fs::write(crl_path, crl(&ca2, &[], 2099).pem().unwrap()).unwrap();
        std::fs::write(&m.ca_path, ca2.pem()).unwrap();
        let cut = l.reload_client_trust_if_changed().unwrap().unwrap();
        assert!(tb.is_cancelled() && !tn.is_cancelled());
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert!(!cut[0].revoked, "{:?}", cut[0]);
        assert!(
            cut[0]
                .cause()
                .starts_with("client certificate no longer trusted ("),
            "{}",
            cut[0].cause()
        );
        // The new CA's clients stay.
        let c = client_cert(&ca2, "c.client", 9);
        let tc = CancellationToken::new();
        let (_, epoch) = l.acceptor();
        let _gc = l.track(Some(&c.0), epoch, addr(5), &tc).unwrap();
        std::fs::write(crl_path, crl(&ca2, &[10], 2099).pem().unwrap()).unwrap();
        let cut = l.reload_client_trust_if_changed().unwrap().unwrap();
        assert!(cut.is_empty() && !tc.is_cancelled(), "{cut:?}");
    }

    #[test]
    fn crl_next_updates_are_read_from_pem_and_der_files() {
        let m = mtls();
        let p = &m.t.client_crl[0];
        // January 1st of the year, 00:00 UTC.
        let jan_1 = |y: i32| match y {
            2021 => 1_609_459_200,
            2030 => 1_893_456_000,
            2099 => 4_070_908_800_i64,
            _ => unreachable!(),
        };
        std::fs::write(p, crl(&m.ca, &[2], 2099).der().as_ref()).unwrap();
        assert_eq!(crl_next_updates(p).unwrap(), [jan_1(2099)]);
        let pem = format!(
            "{}{}",
            crl(&m.ca, &[], 2030).pem().unwrap(),
            crl(&m.ca, &[], 2021).pem().unwrap()
        );
        std::fs::write(p, pem).unwrap();
        assert_eq!(crl_next_updates(p).unwrap(), [jan_1(2030), jan_1(2021)]);
        std::fs::write(p, m.ca.pem()).unwrap();
        let e = crl_next_updates(p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("no CRL"),
            "{e}"
        );
    }

    #[test]
    fn an_expired_crl_refuses_every_client_certificate_unless_allowed() {
        let mut m = mtls();
        std::fs::write(&m.t.client_crl[0], crl(&m.ca, &[2], 2021).pem().unwrap()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        let e = connect(&m, l.current(), client_cert(&m.ca, "good.client", 1)).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ExpiredRevocationList
                        | rustls::CertificateError::ExpiredRevocationListContext { .. }
                )
            ),
            "{e:?}"
        );
        m.t.client_crl_allow_expired = true;
        let l = ListenerTls::new(&m.t).unwrap();
        connect(&m, l.current(), client_cert(&m.ca, "good.client", 1)).unwrap();
        let e = connect(&m, l.current(), client_cert(&m.ca, "bad.client", 2)).unwrap_err();
        assert!(is_revoked(&e), "{e:?}");
    }

    #[test]
    fn a_client_ca_without_a_crl_is_refused_when_crls_are_configured() {
        let m = mtls();
        let other = client_ca("other client CA");
        std::fs::write(&m.ca_path, format!("{}{}", m.ca.pem(), other.pem())).unwrap();
        std::fs::write(&m.t.client_crl[0], crl(&m.ca, &[], 2099).pem().unwrap()).unwrap();
        let l = ListenerTls::new(&m.t).unwrap();
        connect(&m, l.current(), client_cert(&m.ca, "a.client", 1)).unwrap();
        let e = connect(&m, l.current(), client_cert(&other, "b.client", 1)).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownRevocationStatus
                )
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_bad_crl_file_at_start_is_an_error_naming_it() {
        let m = mtls();
        let p = &m.t.client_crl[0];
        let named = |e: Error| {
            let e = e.to_string();
            assert!(e.contains(&p.display().to_string()), "{e}");
            e
        };
        // Missing.
        named(ListenerTls::new(&m.t).unwrap_err());
        // A certificate, not a CRL.
        std::fs::write(p, m.ca.pem()).unwrap();
        let e = named(ListenerTls::new(&m.t).unwrap_err());
        assert!(e.contains("no CRL"), "{e}");
        // Not DER.
        std::fs::write(p, b"\x30\x03\x02\x01\x01").unwrap();
        let e = named(ListenerTls::new(&m.t).unwrap_err());
        assert!(e.contains("not a usable CRL"), "{e}");
        let _ = &m.dir;
    }
}
