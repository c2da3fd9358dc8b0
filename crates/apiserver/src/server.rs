//! The HTTPS listener: TLS with optional client certificates, HTTP/1.1 and HTTP/2, and the
//! hand-off of each request to [`crate::handlers`].

use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::{identity_from_cert, Identity};
use crate::state::ApiServer;

/// Builds the rustls server configuration: our serving certificate, client certificates
/// verified against the cluster CA but optional (bearer tokens are the alternative).
pub fn tls_config(server: &ApiServer) -> Result<rustls::ServerConfig> {
    let pki = &server.pki;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())?.context("no serving key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections forever.
pub async fn serve(server: Arc<ApiServer>, listener: TcpListener) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&server)?));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let identity: Option<Identity> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| identity_from_cert(c.as_ref()));
            let service = service_fn(move |req: http::Request<Incoming>| {
                let server = server.clone();
                let identity = identity.clone();
                async move { Ok::<_, std::convert::Infallible>(crate::handlers::handle(server, req, identity).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
