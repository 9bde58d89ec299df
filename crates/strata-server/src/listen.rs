//! The socket: HTTP/1.1 over TLS (rustls with the ring provider, TLS 1.2 or 1.3) given a
//! certificate and key, or plain HTTP on a loopback address only. Slow clients are cut:
//! a TLS handshake and a request's headers each have 10 s; at most 4096 connections are
//! open at once (the next waits to be accepted). Given an operators' CA, a client may
//! show a certificate it issued (nodes show none): its SHA-256 fingerprint goes with each
//! request of the connection ([`ClientCert`]), for the dashboard to map to an operator.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a TLS handshake, or a request's headers, may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Connections open at once.
const MAX_CONNECTIONS: usize = 4096;

/// Why the server cannot listen as asked.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Plain HTTP on an address others can reach.
    #[error(
        "{0} is not a loopback address: serve plain HTTP only on loopback, or give \
         --tls-cert and --tls-key"
    )]
    PlainOffLoopback(SocketAddr),
    /// The certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reading them failed.
    #[error(transparent)]
    Fs(#[from] strata_fs::FsError),
}

/// A TLS configuration from PEM files: the certificate chain and its private key, and
/// the CA whose client certificates are checked, if operators may show one (a client
/// without a certificate is still served; one with a certificate from another CA is
/// refused during the handshake).
pub fn tls_config(
    cert: &Path,
    key: &Path,
    operator_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, ListenError> {
    let tls = |e: String| ListenError::Tls(e);
    let cert_pem = strata_fs::read(cert)?;
    let key_pem = strata_fs::read(key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(tls(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(e.to_string()))?;
    let builder = match operator_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = strata_fs::read(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| tls(format!("{}: {e}", ca.display())))?;
            }
            if roots.is_empty() {
                return Err(tls(format!("{}: no certificate", ca.display())));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks that plain HTTP is asked for on loopback only.
pub fn check_plain(addr: SocketAddr, tls: bool) -> Result<(), ListenError> {
    if tls || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ListenError::PlainOffLoopback(addr))
    }
}

/// Serves `app` on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            // Out of descriptors, a connection reset before it was accepted: go on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(a) => {
                    if let Ok(Ok(s)) = tokio::time::timeout(HANDSHAKE, a.accept(stream)).await {
                        let cert = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(<[_]>::first)
                            .map(|c| ClientCert(fingerprint(c)));
                        connection(TokioIo::new(s), app, peer, (true, cert)).await;
                    }
                }
                None => connection(TokioIo::new(stream), app, peer, (false, None)).await,
            }
        });
    }
}

/// The client's address, in each request's extensions (for the request log).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Whether the request came over TLS, in each request's extensions (the dashboard's
/// session cookie is `Secure` then).
#[derive(Debug, Clone, Copy)]
pub struct Tls(pub bool);

/// The SHA-256 fingerprint (hex) of the certificate the client showed, verified against
/// the operators' CA, in the extensions of each request of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert(pub String);

/// A certificate's SHA-256 fingerprint, hex: what `strata operators add --cert` binds.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    strata_types::hex(&sha2::Sha256::digest(der))
}

/// The DER of the first certificate in a PEM file's text.
pub fn pem_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| "no certificate".to_string())?
        .map(|c| c.to_vec())
        .map_err(|e| e.to_string())
}

async fn connection<I>(
    io: TokioIo<I>,
    app: Router,
    peer: SocketAddr,
    (tls, cert): (bool, Option<ClientCert>),
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::ServiceBuilder::new()
        .map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
            r.extensions_mut().insert(Peer(peer));
            r.extensions_mut().insert(Tls(tls));
            if let Some(c) = &cert {
                r.extensions_mut().insert(c.clone());
            }
            r
        })
        .service(app);
    let service = TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE)
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}
