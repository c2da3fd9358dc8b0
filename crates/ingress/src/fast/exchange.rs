//! One forwarded request of the fast path: an upstream socket (pooled or new, moving to
//! another endpoint after a failed connect like hyper's path), the request out, the
//! response head back and rewritten, the body copied as framed, the socket back to the pool.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::response::{self, BodyFraming, ClientHead, Parsed, ResponseHead};
use super::{write_local, ConnState, Exchange};
use crate::chunked::{ChunkedFollower, Followed};
use crate::proxy::{local, Proxy, CONNECT_ATTEMPTS};

/// Largest upstream response head accepted; larger is a 502.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why no response head came back.
enum Failure {
    /// No connection could be made (to any endpoint tried).
    Connect,
    /// The connection failed while the request was being sent, or closed before or during
    /// the response head, or sent something that is not a response.
    Upstream,
    /// No response head within proxy-read-timeout.
    Timeout,
}

/// How reading a response head ended without one.
enum HeadError {
    /// The connection closed or failed; `seen`: some bytes had come.
    Closed {
        seen: bool,
    },
    Invalid,
    Timeout,
}

/// Forwards the request prepared in `state` and writes the response to the client.
/// Returns whether the client connection stays open for another request.
pub(super) async fn run<I>(io: &mut I, state: &mut ConnState, exchange: Exchange, proxy: &Proxy) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Exchange { route, forward, head_len, framing, method_idempotent, head_request } = exchange;
    let policy = &*route.policy;
    let backend = forward.backend(&route);
    state.client.advance(head_len);
    // A body (or its start) that came with the head goes out in the same write.
    let buffered = (state.client.len() as u64).min(framing.body_len) as usize;
    state.upstream_head.extend_from_slice(&state.client[..buffered]);
    state.client.advance(buffered);
    let mut body_left = framing.body_len - buffered as u64;
    // The whole request is in hand, so it can go out again on a fresh connection when a
    // pooled one turns out to have been closed by the endpoint.
    let replayable = body_left == 0;
    // Only bodiless idempotent requests move to another endpoint after a failed connect.
    let connect_retryable = framing.body_len == 0 && method_idempotent && backend.endpoints.len() > 1;
    let decorate = forward.decorates(&route);
    let pool = proxy.upstreams.sockets();
    let started = std::time::Instant::now();
    if policy.ewma {
        backend.start(forward.endpoint);
    }
    let mut target = forward.endpoint;
    let mut attempt = 1;
    let mut use_pool = true;
    let result = loop {
        let pooled = if use_pool { pool.checkout(target) } else { None };
        let reused = pooled.is_some();
        let mut upstream = match pooled {
            Some(socket) => socket,
            None => match connect(target, policy.connect_timeout).await {
                Ok(socket) => socket,
                Err(e) => {
                    let next = (connect_retryable && attempt < CONNECT_ATTEMPTS)
                        .then(|| backend.after(forward.endpoint, attempt))
                        .flatten();
                    if let Some(next) = next {
                        tracing::debug!(failed = %target, %next, error = %e, "connect failed; retrying");
                        proxy.metrics.connect_retries.fetch_add(1, Ordering::Relaxed);
                        attempt += 1;
                        target = next;
                        continue;
                    }
                    tracing::debug!(backend = %backend.name, endpoint = %target, error = %e, "connect failed");
                    break Err(Failure::Connect);
                }
            },
        };
        if upstream.write_all(&state.upstream_head).await.is_err() {
            if reused && replayable {
                use_pool = false;
                continue;
            }
            break Err(Failure::Upstream);
        }
        if body_left > 0 {
            match stream_body(io, &mut upstream, &mut state.client, body_left, policy.send_timeout).await {
                Ok(()) => body_left = 0,
                // The client is gone or too slow: nobody to answer.
                Err(BodyError::Client) => return false,
                Err(BodyError::Upstream) => break Err(Failure::Upstream),
            }
        }
        let how = ClientHead {
            head_request,
            client_close: framing.close,
            decorate: decorate.then_some((&forward, &*route, target)),
        };
        state.upstream.clear();
        let reading = read_response_head(&mut upstream, &mut state.upstream, &how, &mut state.client_out);
        match state.upstream_deadline.run(policy.read_timeout, reading).await.unwrap_or(Err(HeadError::Timeout)) {
            Ok(head) => break Ok((upstream, head)),
            // A pooled connection the endpoint had closed: the request was not answered,
            // and an idempotent one may safely go again.
            Err(HeadError::Closed { seen: false }) if reused && replayable && method_idempotent => use_pool = false,
            Err(HeadError::Timeout) => break Err(Failure::Timeout),
            Err(HeadError::Closed { .. } | HeadError::Invalid) => break Err(Failure::Upstream),
        }
    };
    if policy.ewma {
        // A failure is charged as slow as the connect timeout, so EWMA steers away from it.
        let elapsed = if result.is_ok() { started.elapsed() } else { policy.connect_timeout };
        backend.finish(forward.endpoint, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }
    let (mut upstream, head) = match result {
        Ok(answered) => answered,
        Err(failure) => {
            proxy.metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
            let (status, text) = match failure {
                Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n"),
                Failure::Connect | Failure::Upstream => (StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
            };
            route.counters.record(status.as_u16());
            // Unread body bytes would be taken for the next request.
            let close = framing.close || body_left > 0;
            let written = write_local(io, &mut state.client_out, &local(status, text), close).await;
            return written.is_ok() && !close;
        }
    };
    proxy.metrics.observe_upstream(started.elapsed().as_secs_f64());
    route.counters.record(head.status);
    state.upstream.advance(head.len);
    match forward_body(io, &mut upstream, state, head.framing, policy.read_timeout).await {
        Ok(in_step) => {
            if head.reusable && in_step && state.upstream.is_empty() {
                pool.checkin(target, upstream);
            }
            !head.close_client
        }
        Err(e) => {
            tracing::debug!(endpoint = %target, error = %e, "response body cut short");
            false
        }
    }
}

async fn connect(endpoint: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {timeout:?}"))),
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

enum BodyError {
    Client,
    Upstream,
}

/// Copies the rest of a Content-Length request body (`left` bytes) from the client to the
/// upstream; `idle` bounds each wait for the client (proxy-send-timeout). Bytes after the
/// body stay in `client` (a pipelined next request).
async fn stream_body<I>(
    io: &mut I,
    upstream: &mut TcpStream,
    client: &mut BytesMut,
    mut left: u64,
    idle: Duration,
) -> Result<(), BodyError>
where
    I: AsyncRead + Unpin,
{
    while left > 0 {
        if client.is_empty() {
            client.reserve(16 * 1024);
            match tokio::time::timeout(idle, io.read_buf(client)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(BodyError::Client),
            }
        }
        let n = (client.len() as u64).min(left) as usize;
        upstream.write_all(&client[..n]).await.map_err(|_| BodyError::Upstream)?;
        client.advance(n);
        left -= n as u64;
    }
    Ok(())
}

/// Reads the response head (skipping 1xx interim responses); the client's head is written
/// into `out`. The caller bounds the whole wait (proxy-read-timeout).
async fn read_response_head(
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    how: &ClientHead<'_>,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, HeadError> {
    let mut seen = false;
    loop {
        if !buf.is_empty() {
            seen = true;
            match response::parse(buf, how, out) {
                Parsed::Complete(head) => return Ok(head),
                Parsed::Interim(len) => {
                    buf.advance(len);
                    continue;
                }
                Parsed::Invalid => return Err(HeadError::Invalid),
                Parsed::Partial if buf.len() > MAX_RESPONSE_HEAD => return Err(HeadError::Invalid),
                Parsed::Partial => {}
            }
        }
        buf.reserve(8 * 1024);
        match upstream.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(HeadError::Closed { seen }),
        }
    }
}

/// Writes the client head (in `state.client_out`) and the response body as framed; each
/// wait for the upstream is bounded by `idle` (proxy-read-timeout). `Ok(true)` when the body
/// ended exactly where its framing says (the upstream connection is in step for reuse).
async fn forward_body<I>(
    io: &mut I,
    upstream: &mut TcpStream,
    state: &mut ConnState,
    framing: BodyFraming,
    idle: Duration,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let mut follower = ChunkedFollower::new();
    let mut left = match framing {
        BodyFraming::Fixed(n) => n,
        _ => 0,
    };
    loop {
        let available = state.upstream.len();
        let (take, finished) = match framing {
            BodyFraming::None => (0, true),
            BodyFraming::Fixed(_) => {
                let n = left.min(available as u64);
                left -= n;
                (n as usize, left == 0)
            }
            BodyFraming::Chunked => match follower.feed(&state.upstream) {
                Followed::More => (available, false),
                Followed::End(n) => (n, true),
                Followed::Invalid => return Err(io::Error::new(io::ErrorKind::InvalidData, "invalid chunked body")),
            },
            BodyFraming::UntilClose => (available, false),
        };
        state.client_out.extend_from_slice(&state.upstream[..take]);
        state.upstream.advance(take);
        if !state.client_out.is_empty() {
            io.write_all(&state.client_out).await?;
            io.flush().await?;
            state.client_out.clear();
        }
        if finished {
            return Ok(true);
        }
        state.upstream.reserve(16 * 1024);
        match state.upstream_deadline.run(idle, upstream.read_buf(&mut state.upstream)).await {
            Some(Ok(0)) if framing == BodyFraming::UntilClose => return Ok(false),
            Some(Ok(0)) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed inside the body")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(io::Error::new(io::ErrorKind::TimedOut, "upstream body timed out")),
        }
    }
}
