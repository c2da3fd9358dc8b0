//! Connections to endpoints.
//!
//! Plain HTTP/1.1 endpoints (the common case) go through [`H1Pool`]: idle keep-alive
//! connections per endpoint `ip:port`, checked out by one request and given back when its
//! response body has been read to the end (see [`Lease`]). A request on a reused connection
//! costs no task hop beyond hyper's own connection task, no pool-key allocation and no
//! spawned "wait until idle" task, which is what hyper-util's general-purpose pooled client
//! spends per request. A connect that fails hands the request back to the caller, so it can
//! move to another endpoint without having copied it first.
//!
//! `HTTPS`, `GRPC` and `GRPCS` backends use hyper-util's pooled client (HTTP/2 multiplexing
//! and TLS), one per (backend protocol, connect timeout), without certificate verification,
//! like ingress-nginx's default `proxy-ssl-verify: off`.
//!
//! Every data-plane thread has its own [`Upstreams`] (see [`crate::server`]), so pools are
//! never contended; they live as long as the thread, so they survive route-table swaps.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::annotations::BackendProtocol;
use crate::body::{BoxError, ProxyBody};

/// Idle keep-alive connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections of endpoints that get no more traffic are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Why a request did not get a response from its endpoint.
#[derive(thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made. `request` is handed back when it was never sent, so the
    /// caller may try another endpoint with it.
    #[error("connect failed: {error}")]
    Connect { error: BoxError, request: Option<Box<Request<ProxyBody>>> },
    /// The connection failed while sending the request or reading the response head.
    #[error("upstream request failed: {0}")]
    Request(BoxError),
}

impl std::fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }

    /// Takes back the unsent request of a failed connect.
    pub fn take_request(&mut self) -> Option<Request<ProxyBody>> {
        match self {
            UpstreamError::Connect { request, .. } => request.take().map(|r| *r),
            UpstreamError::Request(_) => None,
        }
    }
}

/// A response head from an endpoint, with the pooled connection its body arrives on.
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    /// Present for pooled HTTP/1.1 connections that may be reused after this response.
    pub lease: Option<Lease>,
}

/// A pooled connection lent to one request: [`Lease::release`] gives it back to its pool.
/// Dropping a lease without releasing closes the connection (the body was cut short, so the
/// connection's framing is unknown).
pub struct Lease {
    pool: Weak<H1Pool>,
    endpoint: SocketAddr,
    sender: http1::SendRequest<ProxyBody>,
}

impl Lease {
    /// Gives the connection back for the next request (call once its response body was read
    /// to the end). The pool holds only connections ready for a request: one whose connection
    /// task has not yet seen the end of the exchange (rare: that usually happens before the
    /// body's last frame reaches us) is put back by a small task once it is ready.
    pub fn release(self) {
        let Lease { pool, endpoint, mut sender } = self;
        if sender.is_ready() {
            if let Some(pool) = pool.upgrade() {
                pool.checkin(endpoint, sender);
            }
        } else if !sender.is_closed() {
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    if let Some(pool) = pool.upgrade() {
                        pool.checkin(endpoint, sender);
                    }
                }
            });
        }
    }
}

/// A connection an [`IdlePool`] can hold.
pub trait Reusable: Send + 'static {
    /// Whether the connection can still carry a request (not closed by its endpoint, no
    /// unexpected bytes waiting). Must not block.
    fn usable(&self) -> bool;
}

impl Reusable for http1::SendRequest<ProxyBody> {
    fn usable(&self) -> bool {
        self.is_ready()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// Idle keep-alive connections per endpoint, of one data-plane thread: hyper connections for
/// the hyper path ([`H1Pool`]), plain sockets for the fast path ([`crate::fast`]).
pub struct IdlePool<C> {
    /// Per endpoint, oldest first: checkout takes the most recently used connection.
    idle: Mutex<HashMap<SocketAddr, Vec<Idle<C>>, foldhash::fast::RandomState>>,
    sweeper_started: AtomicBool,
}

impl<C> Default for IdlePool<C> {
    fn default() -> Self {
        IdlePool { idle: Mutex::default(), sweeper_started: AtomicBool::new(false) }
    }
}

impl<C: Reusable> IdlePool<C> {
    /// The most recently used idle connection to `endpoint` that is still usable (closed or
    /// expired ones met on the way are dropped).
    pub fn checkout(&self, endpoint: SocketAddr) -> Option<C> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&endpoint)?;
        while let Some(candidate) = list.pop() {
            if candidate.since.elapsed() <= IDLE_TIMEOUT && candidate.conn.usable() {
                return Some(candidate.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to `endpoint` (closes it when the endpoint already
    /// has [`MAX_IDLE_PER_ENDPOINT`] idle connections).
    pub fn checkin(self: &Arc<Self>, endpoint: SocketAddr, conn: C) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.entry(endpoint).or_default();
            if list.len() >= MAX_IDLE_PER_ENDPOINT {
                return;
            }
            list.push(Idle { conn, since: Instant::now() });
        }
        if !self.sweeper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Closes idle connections past [`IDLE_TIMEOUT`] or closed by their endpoint, and
    /// forgets endpoints without idle connections.
    fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| c.since.elapsed() <= IDLE_TIMEOUT && c.conn.usable());
            !list.is_empty()
        });
    }

    /// Idle connections held, for tests.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

/// Idle HTTP/1.1 keep-alive connections to plain-HTTP endpoints, for the hyper path.
pub type H1Pool = IdlePool<http1::SendRequest<ProxyBody>>;

impl H1Pool {
    /// Sends `request` (origin-form URI, Host header set) to `endpoint` on an idle
    /// connection, or a new one made within `connect_timeout`.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: SocketAddr,
        mut request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<UpstreamResponse, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout(endpoint) {
                Some(sender) => (sender, true),
                None => match connect(endpoint, connect_timeout).await {
                    Ok(sender) => (sender, false),
                    Err(error) => return Err(UpstreamError::Connect { error, request: Some(Box::new(request)) }),
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // A 101 hands the connection to the upgrade; it never comes back.
                    let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
                    let lease = reusable.then(|| Lease { pool: Arc::downgrade(self), endpoint, sender });
                    return Ok(UpstreamResponse { response, lease });
                }
                Err(mut e) => match e.take_message() {
                    // A reused connection the endpoint had just closed: the request was never
                    // written, so it goes out again on another connection.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Request(e.into_error().into())),
                },
            }
        }
    }
}

async fn sweep<C: Reusable>(pool: Weak<IdlePool<C>>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.sweep(),
            None => return,
        }
    }
}

/// A new HTTP/1.1 connection to `endpoint`, its connection task spawned on this thread.
async fn connect(endpoint: SocketAddr, timeout: Duration) -> Result<http1::SendRequest<ProxyBody>, BoxError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(format!("connect to {endpoint} timed out after {timeout:?}").into()),
    };
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(%endpoint, error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// A pooled hyper-util client for one protocol.
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

/// The connections of one data-plane thread: the HTTP/1.1 pools (hyper's and the fast
/// path's), and hyper-util clients
/// created on first use for the other protocols.
#[derive(Default)]
pub struct Upstreams {
    h1: Arc<H1Pool>,
    /// Plain sockets of the HTTP/1.1 fast path ([`crate::fast`]).
    sockets: Arc<IdlePool<TcpStream>>,
    others: RwLock<HashMap<(BackendProtocol, Duration), UpstreamClient>>,
}

impl Upstreams {
    /// Sends `request` to `endpoint` with `protocol`. Plain HTTP requests must carry an
    /// origin-form URI (path and query); the others an absolute one.
    pub async fn send(
        &self,
        protocol: BackendProtocol,
        endpoint: SocketAddr,
        request: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<UpstreamResponse, UpstreamError> {
        if protocol == BackendProtocol::Http {
            return self.h1.send(endpoint, request, connect_timeout).await;
        }
        match self.client(protocol, connect_timeout).request(request).await {
            Ok(response) => Ok(UpstreamResponse { response, lease: None }),
            Err(e) if e.is_connect() => Err(UpstreamError::Connect { error: e.into(), request: None }),
            Err(e) => Err(UpstreamError::Request(e.into())),
        }
    }

    /// The hyper-util client for `protocol` with `connect_timeout`.
    fn client(&self, protocol: BackendProtocol, connect_timeout: Duration) -> UpstreamClient {
        let key = (protocol, connect_timeout);
        if let Some(c) = self.others.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return c.clone();
        }
        let mut map = self.others.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| build(protocol, connect_timeout)).clone()
    }

    /// Idle sockets to plain-HTTP endpoints, for the fast path.
    pub fn sockets(&self) -> &Arc<IdlePool<TcpStream>> {
        &self.sockets
    }

    /// The HTTP/1.1 pool, for tests.
    pub fn h1(&self) -> &Arc<H1Pool> {
        &self.h1
    }
}

/// The URI for an endpoint of a non-plain-HTTP backend: `scheme://ip:port/path?query`.
pub fn absolute_uri(protocol: BackendProtocol, endpoint: SocketAddr, path_and_query: &str) -> Option<Uri> {
    let scheme = match protocol {
        BackendProtocol::Http | BackendProtocol::Grpc => "http",
        BackendProtocol::Https | BackendProtocol::Grpcs => "https",
    };
    format!("{scheme}://{endpoint}{path_and_query}").parse().ok()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;

    use super::*;
    use crate::body::Guarded;

    /// A keep-alive HTTP/1.1 server answering "ok"; counts the connections it accepted.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::Empty);
        *req.uri_mut() = Uri::from_static("/");
        req.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("test"));
        req
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_are_reused_after_the_body_ends() {
        let (addr, accepted) = counting_server().await;
        let upstreams = Upstreams::default();
        for _ in 0..3 {
            let sent = upstreams.send(BackendProtocol::Http, addr, get(), Duration::from_secs(2)).await;
            let UpstreamResponse { response, lease } = sent.expect("response");
            assert!(lease.is_some());
            let body = Guarded::new(response.into_body(), None).with_lease(lease);
            assert_eq!(body.collect().await.expect("body").to_bytes(), "ok");
            // Give the connection task its turn to see the exchange end.
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1, "one connection for three requests");
        assert_eq!(upstreams.h1().idle_count(), 1);

        // A body dropped before its end takes its connection with it.
        let UpstreamResponse { response, lease } =
            upstreams.send(BackendProtocol::Http, addr, get(), Duration::from_secs(2)).await.expect("response");
        drop(Guarded::new(response.into_body(), None).with_lease(lease));
        assert_eq!(upstreams.h1().idle_count(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connect_hands_the_request_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = match Upstreams::default().send(BackendProtocol::Http, addr, get(), Duration::from_secs(2)).await {
            Ok(_) => panic!("connect to a closed port succeeded"),
            Err(e) => e,
        };
        assert!(err.is_connect());
        let mut err = err;
        assert_eq!(err.take_request().map(|r| r.uri().clone()), Some(Uri::from_static("/")));
    }
}
