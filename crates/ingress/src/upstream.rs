//! Connections to endpoints: one pooled client per (backend protocol, connect timeout).
//!
//! Each client is hyper-util's pooled client, which keeps idle keep-alive connections per
//! endpoint `ip:port`; clients live for the whole process, so the pools survive route-table
//! swaps. `HTTPS`/`GRPCS` backends use TLS without certificate verification, like
//! ingress-nginx's default `proxy-ssl-verify: off`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::annotations::BackendProtocol;
use crate::body::ProxyBody;

/// A pooled client for one protocol.
#[derive(Clone)]
pub enum UpstreamClient {
    Plain(Client<HttpConnector, ProxyBody>),
    Tls(Client<TlsConnector, ProxyBody>),
}

impl UpstreamClient {
    pub async fn request(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            UpstreamClient::Plain(c) => c.request(req).await,
            UpstreamClient::Tls(c) => c.request(req).await,
        }
    }
}

/// All upstream clients, created on first use.
pub struct Upstreams {
    default: UpstreamClient,
    others: RwLock<HashMap<(BackendProtocol, Duration), UpstreamClient>>,
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Upstreams {
    fn default() -> Upstreams {
        Upstreams {
            default: build(BackendProtocol::Http, DEFAULT_CONNECT_TIMEOUT),
            others: RwLock::new(HashMap::new()),
        }
    }
}

impl Upstreams {
    /// The client for `protocol` with `connect_timeout`.
    pub fn client(&self, protocol: BackendProtocol, connect_timeout: Duration) -> UpstreamClient {
        if protocol == BackendProtocol::Http && connect_timeout == DEFAULT_CONNECT_TIMEOUT {
            return self.default.clone();
        }
        let key = (protocol, connect_timeout);
        if let Some(c) = self.others.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return c.clone();
        }
        let mut map = self.others.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| build(protocol, connect_timeout)).clone()
    }
}

fn build(protocol: BackendProtocol, connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256);
    let h2 = matches!(protocol, BackendProtocol::Grpc | BackendProtocol::Grpcs);
    builder.http2_only(h2);
    match protocol {
        BackendProtocol::Http | BackendProtocol::Grpc => UpstreamClient::Plain(builder.build(http)),
        BackendProtocol::Https | BackendProtocol::Grpcs => {
            let mut tls =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify)).with_no_client_auth())
                    .unwrap_or_else(|_| {
                        rustls::ClientConfig::builder()
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(NoVerify))
                            .with_no_client_auth()
                    });
            tls.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
            let connector = TlsConnector { http, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)) };
            UpstreamClient::Tls(builder.build(connector))
        }
    }
}

/// Connects with TCP, then TLS (SNI = the URI host, an endpoint IP).
#[derive(Clone)]
pub struct TlsConnector {
    http: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<Result<TokioIo<TlsConn>, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
            let tcp = http.call(uri).await?.into_inner();
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(TlsConn(stream)))
        })
    }
}

/// A TLS connection to an endpoint.
pub struct TlsConn(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let connected = self.0.get_ref().0.connected();
        if self.0.get_ref().1.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts any upstream certificate (endpoints are addressed by IP; ingress-nginx does not
/// verify upstream certificates by default either).
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
