//! netexec's `/dial`: from this server, send `request` to `host:port` `tries` times over HTTP
//! (`GET http://host:port/<request>`) or UDP (the datagram `<request>`), each try on a new
//! connection, and answer `{"errors":[…],"responses":[…]}`. The e2e tests use it to check
//! which backends a Service reaches from a pod.
//!
//! Upstream's quirks are kept because tests parse this output: the status is 200 whenever the
//! parameters were valid, `errors` is left out when empty, and `responses` is left out when the
//! *last* try got no answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};

use crate::http::{error, go_json, ok, Form, Response};
use crate::net::go_errno;

/// Per-try limit, as upstream's HTTP client timeout and UDP read deadline.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Redirects followed per HTTP try (Go's client default).
const MAX_REDIRECTS: usize = 10;
/// Largest UDP answer read.
const UDP_BUFFER: usize = 2048;

#[derive(Clone, Copy)]
enum Protocol {
    Http,
    Udp,
}

/// Answers one `/dial` request.
pub async fn handle(form: &Form) -> Response {
    let (host, port, request) = (form.get("host"), form.get("port"), form.get("request"));
    let tries: i64 = match form.get("tries") {
        "" => 1,
        text => match text.parse() {
            Ok(n) => n,
            Err(_) => {
                let message = format!("tries parameter is invalid. strconv.Atoi: parsing {text:?}: invalid syntax");
                return error(StatusCode::BAD_REQUEST, &message);
            }
        },
    };
    if request.is_empty() {
        return error(StatusCode::BAD_REQUEST, "request parameter not specified. <nil>");
    }
    let protocol = match form.get("protocol").to_lowercase().as_str() {
        "" | "http" => Protocol::Http,
        "udp" => Protocol::Udp,
        other => return error(StatusCode::BAD_REQUEST, &format!("unsupported protocol. {other}")),
    };
    let addr = match resolve(host, port).await {
        Ok(addr) => addr,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("host and/or port param are invalid. {e}")),
    };
    tracing::info!(%addr, request, tries, "GET /dial");

    let (mut responses, mut errors) = (Vec::new(), Vec::new());
    let mut last_response = String::new();
    for _ in 0..tries {
        let result = match protocol {
            Protocol::Http => dial_http(request, addr).await,
            Protocol::Udp => dial_udp(request, addr).await,
        };
        match result {
            Ok(response) => {
                last_response = response.clone();
                responses.push(Value::String(response));
            }
            Err(e) => {
                last_response.clear();
                errors.push(Value::String(e));
            }
        }
    }
    // Keys in Go's (sorted) order.
    let mut output = Map::new();
    if !errors.is_empty() {
        output.insert("errors".to_owned(), Value::Array(errors));
    }
    if !last_response.is_empty() {
        output.insert("responses".to_owned(), Value::Array(responses));
    }
    ok(go_json(&Value::Object(output)))
}

/// `host:port` as a socket address: an IP literal, a name looked up in DNS (IPv4 preferred, as
/// Go does), or no host at all for this machine.
async fn resolve(host: &str, port: &str) -> Result<SocketAddr, String> {
    let port: u16 = match port {
        "" => 0,
        text => text.parse().map_err(|_| format!("lookup tcp/{text}: unknown port"))?,
    };
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let found: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| format!("lookup {host}: {}", go_errno(&e)))?.collect();
    found.iter().find(|a| a.is_ipv4()).or(found.first()).copied().ok_or_else(|| format!("lookup {host}: no such host"))
}

/// One HTTP try: `GET http://addr/<request>`, following redirects; the body whatever the status.
async fn dial_http(request: &str, addr: SocketAddr) -> Result<String, String> {
    let url = format!("http://{addr}/{request}");
    // Upstream's URL has a doubled slash for a request that starts with one; the server it
    // talks to redirects that to the single-slash path, so go there directly.
    let path = format!("/{}", request.trim_start_matches('/'));
    match tokio::time::timeout(TRY_TIMEOUT, get_following_redirects(addr, path)).await {
        Ok(Ok(body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => {
            Err(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

async fn get_following_redirects(mut addr: SocketAddr, mut path: String) -> Result<Bytes, String> {
    for _ in 0..=MAX_REDIRECTS {
        let (status, location, body) = get(addr, &path).await?;
        let redirected = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
        let Some(location) = location.filter(|_| redirected) else { return Ok(body) };
        (addr, path) = redirect_target(addr, &path, &location).await?;
    }
    Err(format!("stopped after {MAX_REDIRECTS} redirects"))
}

/// Where a `Location` header points, relative to the request that got it.
async fn redirect_target(addr: SocketAddr, path: &str, location: &str) -> Result<(SocketAddr, String), String> {
    if let Some(rest) = location.strip_prefix("http://") {
        let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (host, port),
            _ => (authority, "80"),
        };
        let target = if target.is_empty() { "/" } else { target };
        return Ok((resolve(host, port).await?, target.to_owned()));
    }
    if location.contains("://") {
        return Err(format!("unsupported protocol scheme in redirect to {location:?}"));
    }
    if location.starts_with('/') {
        return Ok((addr, location.to_owned()));
    }
    let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok((addr, format!("{directory}{location}")))
}

/// One HTTP/1.1 GET on a new connection: status, `Location` and the whole body.
async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, Option<String>, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {}", go_errno(&e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "Go-http-client/1.1")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request path {path:?}: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let location = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, location, body))
}

/// One UDP try: send the datagram, wait for one answer.
async fn dial_udp(request: &str, addr: SocketAddr) -> Result<String, String> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = async {
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok::<_, std::io::Error>(socket)
    }
    .await
    .map_err(|e| format!("udp dial failed. err:dial udp {addr}: {}", go_errno(&e)))?;
    socket
        .send(request.as_bytes())
        .await
        .map_err(|e| format!("udp connection write failed. err:write udp {addr}: {}", go_errno(&e)))?;
    let mut buffer = vec![0u8; UDP_BUFFER];
    let local = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let failed = |why: String| format!("reading from udp connection failed. err:'read udp {local}->{addr}: {why}'");
    match tokio::time::timeout(TRY_TIMEOUT, socket.recv(&mut buffer)).await {
        Err(_) => Err(failed("i/o timeout".to_owned())),
        Ok(Err(e)) => Err(failed(format!("read: {}", go_errno(&e)))),
        Ok(Ok(0)) => Err("reading from udp connection failed. err:'<nil>'".to_owned()),
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&buffer[..n]).into_owned()),
    }
}
