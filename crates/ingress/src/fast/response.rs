//! An upstream's response head: parsed in place, its body framing found (RFC 9112 §6.3),
//! and rewritten for the client.
//!
//! The body goes to the client as the upstream framed it (Content-Length, or chunked coding
//! passed through unchanged, or until the upstream closes — then the client connection
//! closes after it too), so only the head is rewritten: hop-by-hop headers and those the
//! `Connection` header names are dropped, and the affinity cookie and CORS headers added as
//! on hyper's path.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::proxy::{hop_bit_of, Forward, HOP_TRANSFER_ENCODING};
use crate::routes::Route;

use super::request::{connection_named, push_header, tokens};

/// Headers parsed per response head; more makes the response a 502.
const MAX_HEADERS: usize = 100;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 204, 304).
    None,
    /// Content-Length.
    Fixed(u64),
    /// Chunked coding.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A response head, written for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Length of the head in the upstream's buffer (the body starts there).
    pub len: usize,
    pub framing: BodyFraming,
    /// The upstream connection can carry another request after this body.
    pub reusable: bool,
    /// The client connection must close after this response.
    pub close_client: bool,
}

/// What [`parse`] found at the start of the upstream's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A 1xx interim response of this length, to skip.
    Interim(usize),
    /// A final response head; the client's head is in `out`.
    Complete(ResponseHead),
    /// Not a response a proxy can pass on.
    Invalid,
}

/// How the client's copy of a response head is made.
pub struct ClientHead<'a> {
    /// The request was HEAD (no body follows whatever the headers say).
    pub head_request: bool,
    /// The client asked to close after this exchange.
    pub client_close: bool,
    /// Affinity cookie and CORS headers to add: the decision, its route, and the endpoint
    /// that answered. `None` when the route adds nothing.
    pub decorate: Option<(&'a Forward, &'a Route, std::net::SocketAddr)>,
}

/// Parses the response head at the start of `buf`; when complete, writes the client's head
/// into `out` (cleared first).
pub fn parse(buf: &[u8], how: &ClientHead<'_>, out: &mut Vec<u8>) -> Parsed {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let (Some(status), Some(version)) = (response.code, response.version) else { return Parsed::Invalid };
    match status {
        // A 101 was never asked for (upgrades take hyper's path).
        101 => return Parsed::Invalid,
        100..=199 => return Parsed::Interim(len),
        _ => {}
    }
    let headers = &*response.headers;
    let Some(framing) = framing(status, how.head_request, headers) else { return Parsed::Invalid };
    let upstream_close = version == 0
        || headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| tokens(h.value))
            .any(|t| t.eq_ignore_ascii_case(b"close"));
    let close_client = how.client_close || framing == BodyFraming::UntilClose;
    write_client_head(out, status, response.reason.unwrap_or(""), headers, framing, close_client, how);
    Parsed::Complete(ResponseHead {
        status,
        len,
        framing,
        reusable: !upstream_close && framing != BodyFraming::UntilClose,
        close_client,
    })
}

/// The body framing of a response (RFC 9112 §6.3); `None` for conflicting lengths.
fn framing(status: u16, head_request: bool, headers: &[httparse::Header<'_>]) -> Option<BodyFraming> {
    if head_request || status == 204 || status == 304 {
        return Some(BodyFraming::None);
    }
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().map(<[u8]>::trim_ascii);
            return Some(match last {
                Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => BodyFraming::Chunked,
                _ => BodyFraming::UntilClose,
            });
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value).ok()?.trim().parse::<u64>().ok()?;
            if length.is_some_and(|l| l != value) {
                return None;
            }
            length = Some(value);
        }
    }
    Some(length.map_or(BodyFraming::UntilClose, BodyFraming::Fixed))
}

fn write_client_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[httparse::Header<'_>],
    framing: BodyFraming,
    close_client: bool,
    how: &ClientHead<'_>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse accepts exactly three digits.
    let digits = [(status / 100) % 10, (status / 10) % 10, status % 10].map(|d| b'0' + d as u8);
    out.extend_from_slice(&digits);
    out.push(b' ');
    let reason = if reason.is_empty() {
        StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
    } else {
        reason
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = connection_named(headers);
    let kept = headers.iter().filter(|h| {
        let name = h.name.as_bytes();
        match hop_bit_of(name) {
            // The chunked coding is passed through, so its header stays.
            HOP_TRANSFER_ENCODING => framing == BodyFraming::Chunked,
            0 => {
                // A chunked body's Content-Length would contradict its coding.
                let stale_length = framing == BodyFraming::Chunked && name.eq_ignore_ascii_case(b"content-length");
                let listed = named.iter().any(|n| n.eq_ignore_ascii_case(name));
                !stale_length && !listed
            }
            _ => false,
        }
    });
    match how.decorate {
        None => kept.for_each(|h| push_header(out, h.name.as_bytes(), h.value)),
        Some((forward, route, served_by)) => {
            // Rare (affinity, CORS): through a HeaderMap, so the headers are exactly those
            // of hyper's path (CORS replaces the upstream's own values).
            let mut map = HeaderMap::new();
            for h in kept {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
                {
                    map.append(name, value);
                }
            }
            forward.decorate(route, served_by, &mut map);
            for (name, value) in &map {
                push_header(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    // Like hyper's server (and nginx), every response carries a Date.
    if !headers.iter().any(|h| h.name.eq_ignore_ascii_case("date")) {
        push_header(out, b"date", &super::http_date());
    }
    if close_client {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: ClientHead<'static> = ClientHead { head_request: false, client_close: false, decorate: None };

    fn parse_str(raw: &str, how: &ClientHead<'_>) -> (Parsed, String) {
        let mut out = Vec::new();
        let parsed = parse(raw.as_bytes(), how, &mut out);
        (parsed, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn fixed_length_response_keeps_end_to_end_headers() {
        let raw = "HTTP/1.1 200 OK\r\nServer: be\r\nDate: d\r\nContent-Length: 2\r\nConnection: keep-alive, x-hop\r\n\
Keep-Alive: timeout=5\r\nx-hop: 1\r\nSet-Cookie: a=1\r\n\r\nok";
        let (parsed, out) = parse_str(raw, &PLAIN);
        let Parsed::Complete(head) = parsed else { panic!("{parsed:?}") };
        assert_eq!(head.framing, BodyFraming::Fixed(2));
        assert_eq!(head.len, raw.len() - 2);
        assert!(head.reusable && !head.close_client);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nServer: be\r\nDate: d\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n\r\n");
    }

    #[test]
    fn framing_rules() {
        let framing_of = |raw: &str, how: &ClientHead<'_>| match parse_str(raw, how).0 {
            Parsed::Complete(h) => (h.framing, h.reusable, h.close_client),
            other => panic!("{other:?}"),
        };
        let chunked = "HTTP/1.1 200 OK\r\nDate: d\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing_of(chunked, &PLAIN), (BodyFraming::Chunked, true, false));
        let (_, out) = parse_str(chunked, &PLAIN);
        assert_eq!(
            out, "HTTP/1.1 200 OK\r\nDate: d\r\nTransfer-Encoding: chunked\r\n\r\n",
            "length dropped, coding kept"
        );
        assert_eq!(framing_of("HTTP/1.1 200 OK\r\n\r\n", &PLAIN), (BodyFraming::UntilClose, false, true));
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &PLAIN),
            (BodyFraming::Fixed(1), false, false)
        );
        assert_eq!(framing_of("HTTP/1.1 204 No Content\r\n\r\n", &PLAIN), (BodyFraming::None, true, false));
        let head = ClientHead { head_request: true, client_close: true, decorate: None };
        assert_eq!(framing_of("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", &head), (BodyFraming::None, true, true));
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", &PLAIN),
            (BodyFraming::Fixed(2), false, false)
        );
        let (_, out) = parse_str("HTTP/1.1 200 OK\r\n\r\n", &PLAIN);
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\ndate: ") && out.ends_with(" GMT\r\nConnection: close\r\n\r\n"),
            "{out}"
        );
    }

    #[test]
    fn interim_invalid_and_partial() {
        assert_eq!(parse_str("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", &PLAIN).0, Parsed::Interim(25));
        assert_eq!(parse_str("HTTP/1.1 101 Switching Protocols\r\n\r\n", &PLAIN).0, Parsed::Invalid);
        assert_eq!(
            parse_str("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &PLAIN).0,
            Parsed::Invalid
        );
        assert_eq!(parse_str("garbage\r\n\r\n", &PLAIN).0, Parsed::Invalid);
        assert_eq!(parse_str("HTTP/1.1 200 OK\r\nServer:", &PLAIN).0, Parsed::Partial);
        let (parsed, out) = parse_str("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", &PLAIN);
        assert!(matches!(parsed, Parsed::Complete(_)));
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
    }
}
