//! Listeners: plain HTTP, HTTPS (TLS by SNI), and the metrics/health endpoint.
//!
//! Each accepted connection gets a task serving HTTP/1.1 or HTTP/2 (by ALPN on TLS, by the
//! h2 preface on plain TCP) with upgrades enabled. hyper answers malformed requests with
//! 400 and oversized request heads with 431 itself; a client that does not finish its
//! request head within `header_timeout` is disconnected, as is a TLS handshake that takes
//! longer than that.

use std::convert::Infallible;
use std::net::SocketAddr;
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
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::proxy::{ConnInfo, Proxy};

/// Largest request head accepted (request line + headers); larger gets 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;

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

/// Serves the proxy on `listener` until the task is dropped.
pub async fn serve_proxy(listener: TcpListener, proxy: Arc<Proxy>, tls: Option<TlsAcceptor>, header_timeout: Duration) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
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
        let proxy = proxy.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let info = ConnInfo { remote, local_port, tls: tls.is_some() };
            match tls {
                None => serve_connection(&builder, TokioIo::new(stream), proxy, info).await,
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => serve_connection(&builder, TokioIo::new(tls_stream), proxy, info).await,
                    Ok(Err(e)) => {
                        proxy.metrics.tls_handshake_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        proxy.metrics.tls_handshake_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(%remote, "TLS handshake timed out");
                    }
                },
            }
        });
    }
}

async fn serve_connection<I>(builder: &auto::Builder<TokioExecutor>, io: TokioIo<I>, proxy: Arc<Proxy>, info: ConnInfo)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        async move { proxy.handle(info, req).await }
    });
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(remote = %info.remote, error = %e, "connection ended with an error");
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
