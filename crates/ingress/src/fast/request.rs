//! A client's request head: parsed in place, checked, and rewritten for the upstream.
//!
//! The upstream head is the client's head with ingress-nginx's header rules applied (the
//! same rules as [`crate::proxy`]'s `forward_headers` on hyper's path): hop-by-hop headers
//! and those the `Connection` header names are dropped, the `X-Forwarded-*` family is
//! replaced by ours (the client's first `X-Forwarded-For` kept as
//! `X-Original-Forwarded-For`), and an `X-Request-ID` is added when the client sent none.
//! Every other header is copied byte for byte, in order.

use crate::proxy::{hop_bit_of, request_id, ConnInfo, HeaderView, HOP_TE};

/// Headers parsed per request head; a head with more goes to the hyper path (which takes 100).
pub const MAX_HEADERS: usize = 64;

/// A parsed request head, borrowing the connection's buffer.
pub struct Head<'b> {
    pub method: &'b str,
    /// The request target as sent: path and query (origin form).
    pub target: &'b str,
    /// The path part of the target.
    pub path: &'b str,
    /// The query part of the target, without its `?`.
    pub query: Option<&'b str>,
    pub headers: &'b [httparse::Header<'b>],
    /// Length of the head in the buffer (the body starts there).
    pub len: usize,
}

impl<'b> Head<'b> {
    pub fn new(method: &'b str, target: &'b str, headers: &'b [httparse::Header<'b>], len: usize) -> Head<'b> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Head { method, target, path, query, headers, len }
    }
}

impl HeaderView for Head<'_> {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }

    fn first_ignore_case<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.first(name)
    }
}

/// How the request body is framed, as far as the fast path takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Content-Length (0 when absent).
    pub body_len: u64,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
}

/// Why a request head is left to the hyper path: hyper either supports what the fast path
/// does not (HTTP/1.0, upgrades, chunked request bodies, `Expect`, absolute-form targets) or
/// answers it with the right error (conflicting or repeated framing headers, 400s).
pub fn framing(head: &Head<'_>) -> Option<Framing> {
    if !head.target.starts_with('/') {
        return None;
    }
    let mut body_len = None;
    let mut close = false;
    for h in head.headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let text = std::str::from_utf8(h.value).ok()?;
            if body_len.is_some() || text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            body_len = Some(text.parse::<u64>().ok()?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return None;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        }
    }
    Some(Framing { body_len: body_len.unwrap_or(0), close })
}

/// The comma-separated tokens of a header value, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

/// The header names a `Connection` header lists (besides `keep-alive` and `close`): they are
/// hop-by-hop too. Empty (no allocation) in the usual case.
pub fn connection_named<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
        .collect()
}

/// Headers the proxy sets itself; the client's copies are dropped.
const REPLACED: [&[u8]; 6] =
    [b"x-forwarded-for", b"x-real-ip", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-proto", b"x-scheme"];

/// Writes the upstream request head for `head` into `out` (cleared first): request line
/// with `path` (rewritten, or the client's) and the client's query, then the headers.
pub fn write_upstream_head(out: &mut Vec<u8>, head: &Head<'_>, path: &str, conn: &ConnInfo) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(query) = head.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let named = connection_named(head.headers);
    let original_xff = head.first("x-forwarded-for");
    let mut host = None;
    let mut has_request_id = false;
    for h in head.headers {
        let name = h.name.as_bytes();
        let hop = hop_bit_of(name);
        // `TE: trailers` goes through (gRPC needs it); every other hop-by-hop header stays here.
        let dropped = match hop {
            0 => false,
            HOP_TE => h.value != b"trailers",
            _ => true,
        };
        if dropped
            || REPLACED.iter().any(|r| r.eq_ignore_ascii_case(name))
            || (original_xff.is_some() && name.eq_ignore_ascii_case(b"x-original-forwarded-for"))
            || named.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            host.get_or_insert(h.value);
        } else if name.eq_ignore_ascii_case(b"x-request-id") {
            has_request_id = true;
        }
        push_header(out, name, h.value);
    }
    if let Some(host) = host {
        push_header(out, b"X-Forwarded-Host", host);
    }
    let ip = conn.remote_ip_value.as_bytes();
    push_header(out, b"X-Forwarded-For", ip);
    if let Some(original) = original_xff {
        push_header(out, b"X-Original-Forwarded-For", original);
    }
    push_header(out, b"X-Real-IP", ip);
    push_header(out, b"X-Forwarded-Port", conn.local_port_value.as_bytes());
    let scheme: &[u8] = if conn.tls { b"https" } else { b"http" };
    push_header(out, b"X-Forwarded-Proto", scheme);
    push_header(out, b"X-Scheme", scheme);
    if !has_request_id {
        push_header(out, b"X-Request-ID", request_id().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n`.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    fn parse<'b>(raw: &'b [u8], headers: &'b mut [httparse::Header<'b>]) -> Head<'b> {
        let mut req = httparse::Request::new(headers);
        let len = match req.parse(raw) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("test head does not parse: {other:?}"),
        };
        let (method, target) = (req.method.expect("method"), req.path.expect("path"));
        Head::new(method, target, req.headers, len)
    }

    /// The fast path's upstream head and hyper's path (`forward_headers`) agree on the header
    /// set (names and values; the order may differ).
    #[test]
    fn upstream_headers_match_the_hyper_path() {
        let raw = b"GET /app?q=1 HTTP/1.1\r\nHost: myhost:80\r\nX-Forwarded-For: 1.2.3.4\r\n\
Connection: keep-alive, x-secret\r\nx-secret: s\r\nProxy: http://evil\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\n\
X-Real-IP: 9.9.9.9\r\nAccept: */*\r\nAccept: text/plain\r\nX-Original-Forwarded-For: spoofed\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = parse(raw, &mut storage);
        let conn = ConnInfo::new("10.1.1.1:5555".parse().expect("addr"), 80, false);
        let mut out = Vec::new();
        write_upstream_head(&mut out, &head, "/rewritten", &conn);

        let mut upstream_storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let upstream = parse(&out, &mut upstream_storage);
        assert_eq!((upstream.method, upstream.target, upstream.len), ("GET", "/rewritten?q=1", out.len()));
        let mut fast: Vec<(String, Vec<u8>)> = upstream
            .headers
            .iter()
            .filter(|h| !h.name.eq_ignore_ascii_case("x-request-id"))
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();

        let mut map = HeaderMap::new();
        for h in head.headers {
            map.append(
                HeaderName::from_bytes(h.name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(h.value).expect("value"),
            );
        }
        let host = map.get("host").cloned();
        crate::proxy::forward_headers(&mut map, &conn, host.as_ref(), false);
        let mut hyper: Vec<(String, Vec<u8>)> = map
            .iter()
            .filter(|(n, _)| n.as_str() != "x-request-id")
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        fast.sort();
        hyper.sort();
        assert_eq!(fast, hyper);
        assert_eq!(upstream.values("x-request-id").count(), 1);
    }

    #[test]
    fn framing_takes_only_what_the_fast_path_handles() {
        let check = |raw: &[u8]| {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let head = parse(raw, &mut storage);
            framing(&head)
        };
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Framing { body_len: 0, close: false }));
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: Close\r\n\r\n"),
            Some(Framing { body_len: 12, close: true })
        );
        assert_eq!(check(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), None);
        assert_eq!(check(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), None);
        assert_eq!(check(b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), None);
        assert_eq!(check(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"), None);
        assert_eq!(check(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"), None);
        assert_eq!(check(b"GET http://a/ HTTP/1.1\r\n\r\n"), None);
    }
}
