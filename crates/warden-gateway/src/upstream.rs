//! Connections to the model servers: one pooled hyper client per model, built by
//! [`client`]. `https://` upstreams go through rustls (TLS 1.3 unless TLS 1.2 is
//! configured; the certificate verified against `upstream_ca` or the system roots, for
//! the URL's host name or address; optional client certificate for mTLS). Plain
//! `http://` is plain TCP, which configuration allows only to loopback unless the
//! operator opted in with `allow_plaintext_upstream`.

use crate::Error;
use crate::config::{ModelConfig, Timeouts};
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// The pooled client of one upstream.
pub type UpstreamClient = Client<UpstreamConnector, Full<Bytes>>;

/// Build the client (and its connector) for a model's upstream. Every certificate, key
/// and CA file is read and checked here, so a bad one stops start-up with an error
/// naming the model and the file.
pub fn client(m: &ModelConfig, timeouts: &Timeouts) -> Result<UpstreamClient, Error> {
    Ok(clients(m, timeouts, 1)?.swap_remove(0))
}

/// `n` (at least 1) clients of a model's upstream with separate connection pools, one
/// per connection worker (see [`crate::workers`]), all from one checked connector.
pub fn clients(
    m: &ModelConfig,
    timeouts: &Timeouts,
    n: usize,
) -> Result<Vec<UpstreamClient>, Error> {
    let transport = m.validate_upstream()?;
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_millis(timeouts.connect_ms)));
    http.set_nodelay(true);
    // The scheme is checked by this connector, not by the TCP one.
    http.enforce_http(false);
    let tls = match transport {
        crate::config::UpstreamTransport::Tls => {
            Some(Arc::new(tls_config(m).map_err(|e| {
                Error::Config(format!("model {}: {e}", m.name))
            })?))
        }
        _ => None,
    };
    let conn = UpstreamConnector {
        http,
        tls,
        handshake_timeout: Duration::from_millis(timeouts.connect_ms.max(1000)),
    };
    // 256 idle connections in all, shared out between the pools (at least 16 each).
    let idle = (256 / n.max(1)).max(16);
    Ok((0..n.max(1))
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(idle)
                .timer(TokioTimer::new())
                .build(conn.clone())
        })
        .collect())
}

fn tls_err(p: &Path, cause: impl std::fmt::Display) -> Error {
    Error::Tls {
        path: p.display().to_string(),
        cause: cause.to_string(),
    }
}

/// The rustls client configuration of an `https://` upstream.
fn tls_config(m: &ModelConfig) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if m.upstream_allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let roots = match &m.upstream_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in crate::tls::load_certs(ca)? {
                roots.add(c).map_err(|e| tls_err(ca, e))?;
            }
            roots
        }
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match (&m.upstream_client_cert, &m.upstream_client_key) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::load_certs(cert)?;
            let der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e))?;
            // Checks that the key belongs to the certificate.
            builder
                .with_client_auth_cert(chain, der)
                .map_err(|e| tls_err(key, format!("unusable with {}: {e}", cert.display())))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Where distributions keep the CA bundle (after `SSL_CERT_FILE`).
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// The system's trusted roots: `SSL_CERT_FILE` if set, else the first bundle found.
fn system_roots() -> Result<rustls::RootCertStore, Error> {
    let path = match std::env::var_os("SSL_CERT_FILE") {
        Some(p) => PathBuf::from(p),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Config(
                    "no system CA bundle found (set upstream_ca, or SSL_CERT_FILE)".into(),
                )
            })?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(crate::tls::load_certs(&path)?);
    if added == 0 {
        return Err(tls_err(&path, "no usable CA certificate"));
    }
    Ok(roots)
}

/// Connects to an upstream: TCP, then TLS for `https://`.
#[derive(Clone)]
pub struct UpstreamConnector {
    http: HttpConnector,
    tls: Option<Arc<rustls::ClientConfig>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a connection to the upstream failed (what the audit record says; clients only
/// learn that the upstream is unavailable).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed or timed out.
    #[error("connect to {host}: {cause}")]
    Tcp {
        /// Upstream host.
        host: String,
        /// The cause.
        cause: String,
    },
    /// The TLS handshake failed (certificate refused, protocol, timeout).
    #[error("TLS with {host}: {cause}")]
    Tls {
        /// Upstream host.
        host: String,
        /// The cause.
        cause: String,
    },
    /// The URI's scheme does not match how the upstream is configured.
    #[error("scheme of {0} does not match the upstream configuration")]
    Scheme(String),
}

/// A connection to an upstream, plain or TLS.
#[derive(Debug)]
pub enum UpstreamIo {
    /// Plain TCP (loopback, or explicitly allowed).
    Plain(TokioIo<TcpStream>),
    /// rustls over TCP.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(|e| {
            ConnectError::Tcp {
                host: String::new(),
                cause: e.to_string(),
            }
        })
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        let host = uri.host().unwrap_or_default().to_owned();
        let https = uri.scheme_str() == Some("https");
        let tls = self.tls.clone();
        let timeout = self.handshake_timeout;
        let mut http = self.http.clone();
        Box::pin(async move {
            if https != tls.is_some() {
                return Err(ConnectError::Scheme(uri.to_string()));
            }
            // HttpConnector refuses `https` URIs unless told otherwise; give it the
            // address with the port made explicit.
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp_uri: Uri = format!("http://{}:{port}", uri.host().unwrap_or_default())
                .parse()
                .map_err(|_| ConnectError::Scheme(uri.to_string()))?;
            let tcp = tower_service::Service::call(&mut http, tcp_uri)
                .await
                .map_err(|e| ConnectError::Tcp {
                    host: host.clone(),
                    cause: e.to_string(),
                })?;
            let Some(cfg) = tls else {
                return Ok(UpstreamIo::Plain(tcp));
            };
            let name =
                ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|e| {
                    ConnectError::Tls {
                        host: host.clone(),
                        cause: e.to_string(),
                    }
                })?;
            let hs = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp.into_inner());
            match tokio::time::timeout(timeout, hs).await {
                Ok(Ok(s)) => Ok(UpstreamIo::Tls(Box::new(TokioIo::new(s)))),
                Ok(Err(e)) => Err(ConnectError::Tls {
                    host,
                    cause: io_cause(&e),
                }),
                Err(_) => Err(ConnectError::Tls {
                    host,
                    cause: "handshake timed out".into(),
                }),
            }
        })
    }
}

/// The rustls error inside an I/O error, if any, else the I/O error.
fn io_cause(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

/// A short description of why an upstream request failed, for the audit record: the
/// connect or TLS cause when there is one, else the outermost error.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(c) = x.downcast_ref::<ConnectError>() {
            return c.to_string();
        }
        if let Some(r) = x.downcast_ref::<rustls::Error>() {
            return format!("TLS: {r}");
        }
        if let Some(io) = x.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
        {
            return format!("TLS: {}", io_cause(io));
        }
        cur = x.source();
    }
    e.to_string()
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match self {
            UpstreamIo::Plain(t) => t.connected(),
            UpstreamIo::Tls(t) => t.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(t) => Pin::new(t).poll_read(cx, buf),
            UpstreamIo::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(t) => Pin::new(t).poll_write(cx, buf),
            UpstreamIo::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(t) => Pin::new(t).poll_flush(cx),
            UpstreamIo::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(t) => Pin::new(t).poll_shutdown(cx),
            UpstreamIo::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(t) => Pin::new(&mut **t).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(t) => t.is_write_vectored(),
            UpstreamIo::Tls(t) => t.is_write_vectored(),
        }
    }
}
