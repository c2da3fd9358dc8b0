//! The HTTP/1.1 fast path: plain requests to plain-HTTP backends, proxied by one task per
//! client connection with no HTTP library in between.
//!
//! Why: with hyper on both sides, a proxied request crossed three tasks (the client
//! connection's, the handler's, the upstream connection's) and was parsed into and
//! serialised from `http` types twice; that bookkeeping cost more CPU than the kernel's work
//! for the four socket operations a proxied request needs. Here the client's head is parsed
//! in place (httparse), routed and checked by the same code as hyper's path
//! ([`Proxy::decide`]), rewritten straight into the upstream head, and written on a pooled
//! upstream socket; the response head is parsed in place and rewritten for the client, and
//! the body is copied as framed. No task hop, no per-header allocation.
//!
//! What it does not handle goes to hyper, which serves the connection from that request on
//! (the bytes already read are replayed first, see
//! [`crate::framing::Scanned::with_prefix`]): HTTP/1.0, upgrades (WebSocket),
//! chunked request bodies and `Expect`, absolute-form targets, repeated or conflicting
//! framing headers (hyper and [`crate::framing`] answer those with 400), more than
//! [`request::MAX_HEADERS`] headers, backends with `backend-protocol` other than HTTP, and
//! HTTP/2 (the h2c preface; TLS connections with ALPN h2 never come here).

mod deadline;
mod exchange;
pub mod request;
pub mod response;

use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use deadline::LazyDeadline;

use crate::body::ProxyBody;
use crate::proxy::{local, ConnInfo, Decision, Forward, Proxy};
use crate::routes::{normalize_host, Route};
use crate::upstream::Reusable;
use request::{Framing, Head, MAX_HEADERS};

/// Largest request head accepted (request line + headers); larger gets 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How a connection left the fast path.
pub enum Served<I> {
    /// Closed (by the client, a timeout, or after an error answer).
    Done,
    /// For hyper, from the first request the fast path does not take on: the connection and
    /// the bytes already read from it.
    Fallback { io: I, buffered: bytes::Bytes },
}

struct ConnState {
    /// Bytes from the client not yet consumed.
    client: BytesMut,
    /// The upstream request head (and a body that arrived with it).
    upstream_head: Vec<u8>,
    /// Bytes from the upstream not yet consumed.
    upstream: BytesMut,
    /// What goes to the client next.
    client_out: Vec<u8>,
    /// Bounds the wait for each request head (client-header-timeout).
    head_deadline: LazyDeadline,
    /// Bounds each wait for the upstream (proxy-read/send-timeout).
    upstream_deadline: LazyDeadline,
}

/// A request the fast path forwards.
struct Exchange {
    route: std::sync::Arc<Route>,
    forward: Forward,
    head_len: usize,
    framing: Framing,
    method_idempotent: bool,
    head_request: bool,
}

/// What to do with the request at the start of the client buffer.
enum Prepared {
    /// Not for the fast path: hand the connection to hyper.
    Fallback,
    /// Not HTTP: 400 and close.
    Invalid,
    /// The head is over [`MAX_HEAD_BYTES`] and not complete: 431 and close.
    TooLarge,
    /// Answered here (404, or a local answer of the policy checks).
    Local { response: Response<ProxyBody>, route: Option<std::sync::Arc<Route>>, head_len: usize, framing: Framing },
    /// Forwarded; the upstream head is in the state.
    Forward(Exchange),
}

/// Serves requests of one client connection until it closes or needs hyper.
pub async fn serve<I>(mut io: I, conn: &ConnInfo, proxy: &Proxy, header_timeout: Duration) -> Served<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut state = ConnState {
        client: BytesMut::with_capacity(8 * 1024),
        upstream_head: Vec::with_capacity(1024),
        upstream: BytesMut::with_capacity(8 * 1024),
        client_out: Vec::with_capacity(1024),
        head_deadline: LazyDeadline::default(),
        upstream_deadline: LazyDeadline::default(),
    };
    loop {
        let prepared = match read_head(&mut io, &mut state, conn, proxy, header_timeout).await {
            Some(prepared) => prepared,
            None => return Served::Done,
        };
        let keep_open = match prepared {
            Prepared::Fallback => return Served::Fallback { io, buffered: state.client.freeze() },
            Prepared::Invalid | Prepared::TooLarge => {
                let answer = match prepared {
                    Prepared::TooLarge => {
                        local(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "431 Request Header Fields Too Large\n")
                    }
                    _ => local(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
                };
                proxy.metrics.unrouted.record(answer.status().as_u16());
                let _ = write_local(&mut io, &mut state.client_out, &answer, true).await;
                false
            }
            Prepared::Local { response, route, head_len, framing } => {
                match route {
                    Some(route) => route.counters.record(response.status().as_u16()),
                    None => proxy.metrics.unrouted.record(response.status().as_u16()),
                }
                state.client.advance(head_len);
                // A body the answer did not read would be taken for the next request.
                let close = framing.close || framing.body_len > 0;
                write_local(&mut io, &mut state.client_out, &response, close).await.is_ok() && !close
            }
            Prepared::Forward(exchange) => exchange::run(&mut io, &mut state, exchange, proxy).await,
        };
        if !keep_open {
            let _ = io.shutdown().await;
            return Served::Done;
        }
    }
}

/// Reads until the client buffer starts with a complete request head (or something that is
/// not one) and prepares it. `None`: the client closed, failed, or took longer than
/// `header_timeout` (the connection just closes, as hyper's header timeout does).
async fn read_head<I>(
    io: &mut I,
    state: &mut ConnState,
    conn: &ConnInfo,
    proxy: &Proxy,
    header_timeout: Duration,
) -> Option<Prepared>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    // One deadline for the whole head, however it trickles in (a slow client is cut off).
    let deadline = tokio::time::Instant::now() + header_timeout;
    loop {
        if !state.client.is_empty() {
            match prepare(&state.client, conn, proxy, &mut state.upstream_head) {
                None if state.client.len() > MAX_HEAD_BYTES => return Some(Prepared::TooLarge),
                None => {}
                Some(prepared) => return Some(prepared),
            }
        }
        if state.client.capacity() - state.client.len() < 1024 {
            state.client.reserve(8 * 1024);
        }
        match state.head_deadline.run_until(deadline, io.read_buf(&mut state.client)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Parses, routes and checks the request at the start of `buf` (`None` while its head is
/// incomplete); for a forwarded one, writes the upstream head into `upstream_head`.
fn prepare(buf: &[u8], conn: &ConnInfo, proxy: &Proxy, upstream_head: &mut Vec<u8>) -> Option<Prepared> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut storage);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(Prepared::Fallback),
        // The HTTP/2 connection preface (h2c with prior knowledge) is hyper's.
        Err(_) if buf.starts_with(b"PRI * HTTP/2") => return Some(Prepared::Fallback),
        Err(_) => return Some(Prepared::Invalid),
    };
    let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Some(Prepared::Fallback);
    };
    let head = Head::new(method, target, parsed.headers, head_len);
    let Some(framing) = request::framing(&head) else { return Some(Prepared::Fallback) };
    let routes = proxy.routes.load();
    let host_raw = head.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).map_or(&b""[..], |h| h.value);
    let host = normalize_host(std::str::from_utf8(host_raw).unwrap_or(""));
    let Some(route) = routes.find(&host, head.path) else {
        let response = local(StatusCode::NOT_FOUND, "default backend - 404\n");
        return Some(Prepared::Local { response, route: None, head_len, framing });
    };
    if route.protocol != crate::annotations::BackendProtocol::Http {
        return Some(Prepared::Fallback);
    }
    Some(match proxy.decide(conn, route, &host, method, target, &head) {
        Decision::Local(response) => Prepared::Local { response, route: Some(route.clone()), head_len, framing },
        Decision::Forward(forward) => {
            let rewritten = route.upstream_path(head.path);
            request::write_upstream_head(upstream_head, &head, rewritten.as_deref().unwrap_or(head.path), conn);
            Prepared::Forward(Exchange {
                route: route.clone(),
                forward,
                head_len,
                framing,
                method_idempotent: crate::proxy::is_idempotent(method),
                head_request: method == "HEAD",
            })
        }
    })
}

/// Writes a locally made response (404, 403, redirects, errors; small bodies).
async fn write_local<I>(
    io: &mut I,
    out: &mut Vec<u8>,
    response: &Response<ProxyBody>,
    close: bool,
) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    let body: &[u8] = match response.body() {
        ProxyBody::Full(Some(bytes)) => bytes,
        _ => b"",
    };
    out.clear();
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        request::push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    request::push_header(out, b"date", &http_date());
    if !response.headers().contains_key(http::header::CONTENT_LENGTH) {
        request::push_header(out, b"content-length", body.len().to_string().as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    io.write_all(out).await?;
    io.flush().await
}

/// The `Date` header value for now: formatted once per second per thread, as hyper does.
pub(crate) fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, text) = cached.get();
        if at == second {
            return text;
        }
        let mut text = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        cached.set((second, text));
        text
    })
}

/// Pooled upstream sockets: usable unless the endpoint closed them or sent unasked bytes
/// while idle. Readiness is what the runtime already knows from epoll, so a check of a quiet
/// socket costs no system call.
impl Reusable for TcpStream {
    fn usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
