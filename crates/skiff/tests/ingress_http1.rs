//! HTTP/1.1 details of `skiff ingress` against an upstream that frames its responses in
//! every way HTTP/1.1 allows: chunked with trailers, until close, interim 100 responses,
//! HEAD, and keep-alive connections the upstream drops without notice. Clients pipeline
//! requests, send bodies in pieces, and switch to what the ingress serves through hyper
//! (HTTP/1.0, chunked uploads, h2c) in the middle of a connection.

mod common;
mod ingress_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use ingress_support::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A hand-written HTTP/1.1 upstream; the request path picks the response's framing.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    fn start() -> RawUpstream {
        let listener = TcpListener::bind((loopback_ip(), 0)).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || serve_upstream(stream));
            }
        });
        RawUpstream { addr, connections, stop }
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request (head and Content-Length body) from `stream`, keeping bytes after it in
/// `pending`. `None` when the connection ends.
fn read_request(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    pending.drain(..head_end);
    if lower.contains("transfer-encoding: chunked") {
        let body = read_chunked(stream, pending)?;
        return Some((head, body));
    }
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while pending.len() < length {
        let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending.drain(..length).collect();
    Some((head, body))
}

/// Decodes a chunked body (no extensions or trailers: the ingress sends none here).
fn read_chunked(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16 * 1024];
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = pending.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
            pending.extend_from_slice(&buf[..n]);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&pending[..line_end]).ok()?.trim(), 16).ok()?;
        while pending.len() < line_end + 2 + size + 2 {
            let n = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
            pending.extend_from_slice(&buf[..n]);
        }
        body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
        pending.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Some(body);
        }
    }
}

fn serve_upstream(mut stream: TcpStream) {
    let mut pending = Vec::new();
    while let Some((head, body)) = read_request(&mut stream, &mut pending) {
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let method = head.split_whitespace().next().unwrap_or("").to_owned();
        let reply: Vec<u8> = match path.as_str() {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            "/until-close" => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close body\n");
                return;
            }
            "/drop-after" => {
                // Keep-alive by the rules (HTTP/1.1, no Connection: close), then dropped.
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ndropped\n");
                return;
            }
            "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndone\n".to_vec(),
            "/echo-length" => {
                let text = format!("len={}\n", body.len());
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
            }
            _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
            _ => {
                let version = head.lines().next().unwrap_or("").rsplit(' ').next().unwrap_or("");
                // A line of its own, so that pipelined answers read as lines.
                let text = format!("path={path} version={version}\n");
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
            }
        };
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Writes `request` on a new connection and reads until the ingress closes it (or 10 s).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request).expect("write");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

fn statuses(all: &str) -> Vec<&str> {
    all.lines().filter(|l| l.starts_with("HTTP/1.")).collect()
}

#[test]
fn every_framing_passes_through() {
    let server = TestServer::start();
    let upstream = RawUpstream::start();
    let mut items = vec![ingress_class(true)];
    items.extend(service_manifests("raw", "default", &[upstream.addr.ip()], upstream.addr.port()));
    // The 3 MB upload below is over ingress-nginx's default body limit (1m).
    let annotations = json!({"nginx.ingress.kubernetes.io/proxy-body-size": "8m"});
    items.push(ingress("raw", annotations, json!({"rules": [rule(Some("raw.example"), &[("/", "Prefix", "raw")])]})));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &[]);
    eventually("route", WAIT, || (ing.get("raw.example", "/", &[]).0 == 200).then_some(()));

    // Pipelined: three requests in one write, three answers in order on one connection.
    let all = exchange(
        ing.http,
        b"GET /one HTTP/1.1\r\nHost: raw.example\r\n\r\nGET /chunked HTTP/1.1\r\nHost: raw.example\r\n\r\n\
GET /two HTTP/1.1\r\nHost: raw.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&all), ["HTTP/1.1 200 OK"; 3], "{all}");
    let (one, two) = (all.find("path=/one").expect(&all), all.find("path=/two").expect(&all));
    let chunked = all.find("5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n").expect(&all);
    assert!(one < chunked && chunked < two, "{all}");
    assert!(all.contains("connection: close") || all.contains("Connection: close"), "{all}");

    // Chunked coding reaches the client intact (curl decodes it) and the upstream
    // connection is reused afterwards.
    let before = upstream.connections.load(Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(ing.get("raw.example", "/chunked", &[]), (200, "hello world".to_owned()));
    }
    assert!(
        upstream.connections.load(Ordering::Relaxed) - before <= 2,
        "chunked responses should leave the upstream connection reusable"
    );

    // A response delimited by the upstream closing: the client gets it all, then its
    // connection closes too.
    let all = exchange(ing.http, b"GET /until-close HTTP/1.1\r\nHost: raw.example\r\n\r\n");
    assert!(all.starts_with("HTTP/1.1 200 OK") && all.ends_with("until-close body\n"), "{all}");
    assert!(all.to_ascii_lowercase().contains("connection: close"), "{all}");

    // Interim 100 responses the client never asked for are not passed on.
    assert_eq!(ing.get("raw.example", "/continue", &[]), (200, "done\n".to_owned()));

    // HEAD: the headers, no body, and the connection stays usable.
    let all = exchange(
        ing.http,
        b"HEAD /head HTTP/1.1\r\nHost: raw.example\r\n\r\nGET /after-head HTTP/1.1\r\nHost: raw.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&all), ["HTTP/1.1 200 OK"; 2], "{all}");
    assert!(all.contains("Content-Length: 1234") && all.contains("path=/after-head"), "{all}");

    // An upstream that drops each keep-alive connection after answering: every request
    // still succeeds (a dropped pooled connection is noticed, or the request sent again).
    for i in 0..20 {
        assert_eq!(ing.get("raw.example", "/drop-after", &[]), (200, "dropped\n".to_owned()), "request {i}");
    }

    // Request bodies: 3 MB sent in pieces, and one that arrives with its head.
    let big = vec![b'x'; 3 * 1024 * 1024];
    let mut s = TcpStream::connect(ing.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "POST /echo-length HTTP/1.1\r\nHost: raw.example\r\nContent-Length: {}\r\n\r\n", big.len())
        .expect("head");
    for piece in big.chunks(64 * 1024) {
        s.write_all(piece).expect("body");
    }
    s.write_all(
        b"POST /echo-length HTTP/1.1\r\nHost: raw.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .expect("second");
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.contains(&format!("len={}", big.len())) && all.contains("len=3"), "{all}");

    // From the fast path to hyper and on, within one connection: HTTP/1.0 and a chunked upload.
    let all = exchange(
        ing.http,
        b"GET /fast HTTP/1.1\r\nHost: raw.example\r\n\r\nGET /old HTTP/1.0\r\nHost: raw.example\r\nConnection: keep-alive\r\n\r\n\
POST /echo-length HTTP/1.1\r\nHost: raw.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(statuses(&all).len(), 3, "{all}");
    assert!(all.contains("path=/fast") && all.contains("path=/old version=HTTP/1.1") && all.contains("len=3"), "{all}");

    // h2c with prior knowledge.
    let url = format!("http://{}/h2c", ing.http);
    let (code, body) = curl(&["-s", "--max-time", "10", "--http2-prior-knowledge", "-H", "Host: raw.example", &url]);
    assert_eq!((code, body.trim()), (200, "path=/h2c version=HTTP/1.1"));

    assert!(!ing.log().contains("panicked"), "{}", ing.log());
}
