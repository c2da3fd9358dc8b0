//! The HTTP side of a SPDY connection: `Upgrade: SPDY/3.1` with the subprotocol negotiated in
//! `X-Stream-Protocol-Version` (client-go's httpstream handshake).

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::server::{empty, text, Body};

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether the request asks to upgrade to SPDY/3.1.
pub fn is_spdy_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("SPDY/3.1")))
}

/// Picks the first subprotocol the client offers that `supported` contains; otherwise the
/// `403` kubelet answers.
pub fn negotiate(headers: &HeaderMap, supported: &[&'static str]) -> Result<&'static str, Box<Response<Body>>> {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    offered.iter().find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied()).ok_or_else(|| {
        Box::new(text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            ),
        ))
    })
}

/// The `101 Switching Protocols` answer naming the negotiated subprotocol.
pub fn switching_protocols(protocol: &'static str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    resp
}
