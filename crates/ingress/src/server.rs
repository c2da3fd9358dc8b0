//! Listeners: plain HTTP, HTTPS (TLS by SNI), and the metrics/health endpoint.
//!
//! The data plane is a set of threads ([`DataPlane`]), one per core by default, each running
//! a single-threaded tokio runtime. An accept loop hands every accepted connection to the next
//! thread in turn, and everything about that connection — TLS, HTTP parsing, the proxy, its
//! upstream connections (each thread has its own pool) — then stays on that thread: no
//! cross-thread wakeups and no shared pool on the request path. The control plane (watches,
//! metrics) runs on the process's main runtime.
//!
//! An HTTP/1.1 connection (plain, or TLS without ALPN h2) starts on the fast path
//! ([`crate::fast`]), which proxies plain requests itself and hands the connection to hyper at
//! the first request it leaves to it; TLS connections that chose h2 go to hyper at once. hyper
//! serves HTTP/1.1 and HTTP/2 (by the h2 preface) with upgrades enabled. Both answer malformed
//! requests with 400 and oversized request heads with 431; a client that does not finish its
//! request head within `header_timeout` is disconnected, as is a TLS handshake that takes
//! longer than that.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::fast::{self, Served, MAX_HEAD_BYTES};
use crate::framing::Scanned;
use crate::metrics::Metrics;
use crate::proxy::{ConnInfo, Proxy};

/// Binds a listening socket with a deep backlog (SO_REUSEADDR so restarts rebind at once).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into())?)
}

/// How connections of one listener are served.
pub struct ListenerConfig {
    /// TLS termination, for the HTTPS listener.
    pub tls: Option<TlsAcceptor>,
    /// The listener's port (`X-Forwarded-Port`).
    pub local_port: u16,
}

/// An accepted connection on its way to a data-plane thread.
struct Handoff {
    stream: std::net::TcpStream,
    remote: SocketAddr,
    listener: Arc<ListenerConfig>,
}

/// The data-plane threads and the round-robin hand-off to them.
pub struct DataPlane {
    workers: Vec<mpsc::UnboundedSender<Handoff>>,
    next: AtomicUsize,
}

impl DataPlane {
    /// Starts `threads` data-plane threads; `make_proxy` builds each thread's [`Proxy`] (on
    /// that thread, so its upstream pools belong to it). `header_timeout` limits the request
    /// head and the TLS handshake.
    pub fn start(
        threads: usize,
        header_timeout: Duration,
        make_proxy: impl Fn() -> Proxy + Send + Sync + 'static,
    ) -> Result<DataPlane> {
        let make_proxy = Arc::new(make_proxy);
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let make_proxy = make_proxy.clone();
            std::thread::Builder::new()
                .name(format!("ingress-{i}"))
                .spawn(move || runtime.block_on(worker(rx, Arc::new(make_proxy()), header_timeout)))?;
            workers.push(tx);
        }
        Ok(DataPlane { workers, next: AtomicUsize::new(0) })
    }

    /// Number of data-plane threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Hands `stream` to the next thread (skipping one that is gone).
    fn dispatch(&self, mut handoff: Handoff) {
        for _ in 0..self.workers.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
            match self.workers[i].send(handoff) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => handoff = back,
            }
        }
        tracing::error!(remote = %handoff.remote, "no data-plane thread left; connection dropped");
    }
}

/// The number of data-plane threads when not configured: `TOKIO_WORKER_THREADS` if set (as
/// for tokio's own runtime), else one per core.
pub fn default_threads() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One data-plane thread: serves every connection handed to it until the hand-off ends.
async fn worker(mut rx: mpsc::UnboundedReceiver<Handoff>, proxy: Arc<Proxy>, header_timeout: Duration) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    while let Some(Handoff { stream, remote, listener }) = rx.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "could not register an accepted connection");
                continue;
            }
        };
        let (builder, proxy) = (builder.clone(), proxy.clone());
        tokio::spawn(serve_accepted(stream, remote, listener, builder, proxy, header_timeout));
    }
}

async fn serve_accepted(
    stream: TcpStream,
    remote: SocketAddr,
    listener: Arc<ListenerConfig>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    proxy: Arc<Proxy>,
    header_timeout: Duration,
) {
    let info = Arc::new(ConnInfo::new(remote, listener.local_port, listener.tls.is_some()));
    match &listener.tls {
        None => match fast::serve(stream, &info, &proxy, header_timeout).await {
            Served::Done => {}
            Served::Fallback { io, buffered } => serve_with_hyper(&builder, io, buffered, proxy, info).await,
        },
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    // HTTP/2 has no request smuggling of the HTTP/1.1 kind: no guard.
                    let mut scanned = Scanned::new(tls_stream, info.framing.clone());
                    scanned.stop();
                    serve_connection(&builder, TokioIo::new(scanned), proxy, info).await;
                    return;
                }
                match fast::serve(tls_stream, &info, &proxy, header_timeout).await {
                    Served::Done => {}
                    Served::Fallback { io, buffered } => serve_with_hyper(&builder, io, buffered, proxy, info).await,
                }
            }
            Ok(Err(e)) => {
                proxy.metrics.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                proxy.metrics.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%remote, "TLS handshake timed out");
            }
        },
    }
}

/// Serves the rest of a connection the fast path handed over (HTTP/1.1 requests it leaves to
/// hyper, or HTTP/2 with prior knowledge) with hyper, `buffered` first, through the
/// request-smuggling guard (which stops by itself at an HTTP/2 preface).
async fn serve_with_hyper<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    buffered: Bytes,
    proxy: Arc<Proxy>,
    info: Arc<ConnInfo>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let scanned = Scanned::new(io, info.framing.clone()).with_prefix(buffered);
    serve_connection(builder, TokioIo::new(scanned), proxy, info).await
}

/// Accepts connections on `listener` and hands them to the data plane, until the task is
/// dropped.
pub async fn serve_proxy(listener: TcpListener, config: ListenerConfig, data_plane: Arc<DataPlane>) {
    let config = Arc::new(config);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => data_plane.dispatch(Handoff { stream, remote, listener: config.clone() }),
            Err(e) => tracing::warn!(%remote, error = %e, "could not hand over an accepted connection"),
        }
    }
}

async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    proxy: Arc<Proxy>,
    info: Arc<ConnInfo>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let service = service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let info = info.clone();
        async move { proxy.handle(&info, req).await }
    });
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// Readiness as the health endpoint reports it.
pub trait Health: Send + Sync + 'static {
    /// Whether every watch has listed once (routes are complete).
    fn synced(&self) -> bool;
}

/// Serves `/metrics`, `/healthz` (process alive) and `/readyz` (watches synced).
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<dyn Health>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (status, body) = match req.uri().path() {
                    "/metrics" => (StatusCode::OK, metrics.render()),
                    "/healthz" => (StatusCode::OK, "ok".to_owned()),
                    "/readyz" if health.synced() => (StatusCode::OK, "ok".to_owned()),
                    "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "watches not synced".to_owned()),
                    _ => (StatusCode::NOT_FOUND, "not found".to_owned()),
                };
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                std::future::ready(Ok::<_, Infallible>(resp))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
