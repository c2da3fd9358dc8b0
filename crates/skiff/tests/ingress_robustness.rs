//! Robustness of `skiff ingress`: malformed and hostile requests get 4xx (never a crash), slow
//! clients are cut off, WebSocket upgrades pass through and survive route updates, and many
//! route updates under load fail no request.

mod common;
mod ingress_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use ingress_support::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Sends raw bytes and returns the status code of the first response (0 if none).
fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = s.write_all(request);
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A keep-alive HTTP/1.1 client on one connection.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(KeepAlive { reader: BufReader::new(s.try_clone()?), writer: s })
    }

    /// GET `/` for `host`; returns the status code.
    fn get(&mut self, host: &str) -> std::io::Result<u16> {
        write!(self.writer, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let code = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut length = 0;
        loop {
            let mut h = String::new();
            if self.reader.read_line(&mut h)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(code)
    }
}

#[test]
fn hostile_input_and_slow_clients() {
    let server = TestServer::start();
    let be = Backend::start("be", 1);
    let mut items = vec![ingress_class(true)];
    items.extend(be.manifests("default"));
    items.push(ingress("any", json!({}), json!({"rules": [rule(None, &[("/", "Prefix", "be")])]})));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &["--client-header-timeout", "1"]);
    eventually("route", WAIT, || (ing.who("x", "/") == "be").then_some(()));

    assert_eq!(raw_status(ing.http, b"GARBAGE\r\n\r\n"), 400);
    assert_eq!(raw_status(ing.http, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), 400);
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(raw_status(ing.http, huge.as_bytes()), 431);
    // Content-Length + Transfer-Encoding (request smuggling): 400, then the connection is
    // closed, so the request hidden after the chunked body is never served. Both header
    // orders, and after an ordinary request on the same keep-alive connection.
    let smuggles: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n\
GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n\
POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for smuggle in smuggles {
        let mut s = TcpStream::connect(ing.http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(smuggle).expect("write");
        let mut all = String::new();
        let _ = s.read_to_string(&mut all); // returns once the ingress closes the connection
        let statuses: Vec<&str> = all.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
        let expected = if smuggle.starts_with(b"GET /first") {
            vec!["HTTP/1.1 200 OK", "HTTP/1.1 400 Bad Request"]
        } else {
            vec!["HTTP/1.1 400 Bad Request"]
        };
        assert_eq!(statuses, expected, "{all}");
        assert!(all.contains("connection: close") && !all.contains("/smuggled"), "{all}");
    }
    // The same through TLS.
    let tls_reply = ing.tls_raw("x", smuggles[0]);
    assert!(tls_reply.starts_with("HTTP/1.1 400"), "{tls_reply}");
    assert!(!tls_reply.contains("/smuggled"), "{tls_reply}");
    // An ordinary chunked upload still goes through.
    let chunked = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(raw_status(ing.http, chunked), 200);
    let double_length = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    assert_eq!(raw_status(ing.http, double_length), 400);

    // A client that never finishes its request head is disconnected (bounded wait).
    let mut slow = TcpStream::connect(ing.http).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("write");
    let mut buf = [0u8; 512];
    let closed = match slow.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "slow client was not cut off");
    // Also one whose head trickles in a byte at a time, faster than the 1 s limit per read
    // but never ending: the limit holds for the whole head (it would otherwise trickle on
    // for the 30 s the writer below keeps going).
    let trickle = TcpStream::connect(ing.http).expect("connect");
    let mut writer = trickle.try_clone().expect("clone");
    let trickler = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        for _ in 0..100 {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let mut reader = trickle;
    reader.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let cut_off = match reader.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(cut_off, "a client trickling its head was not cut off");
    drop(reader);
    let _ = trickler.join();
    // Same for a TLS client that never sends its hello.
    let mut silent = TcpStream::connect(ing.https).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)), "silent TLS client was not cut off");

    // Still serving, no panic in the log.
    assert_eq!(ing.who("x", "/"), "be");
    assert!(!ing.log().contains("panicked"), "{}", ing.log());
}

#[test]
fn websocket_and_route_updates_under_load() {
    let server = TestServer::start();
    let one = Backend::start("one", 2);
    let two = Backend::start("two", 2);
    let mut items = vec![ingress_class(true)];
    items.extend(one.manifests("default"));
    items.extend(two.manifests("default"));
    items.push(ingress("load", json!({}), json!({"rules": [rule(Some("load.example"), &[("/", "Prefix", "one")])]})));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &[]);
    eventually("route", WAIT, || (ing.who("load.example", "/") == "one").then_some(()));

    // WebSocket: upgrade through the ingress, then echo frames.
    let mut ws = TcpStream::connect(ing.http).expect("connect");
    ws.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: load.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .expect("handshake");
    let mut reader = BufReader::new(ws.try_clone().expect("clone"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).expect("header");
        if h.trim().is_empty() {
            break;
        }
    }
    let echo = |reader: &mut BufReader<TcpStream>, ws: &mut TcpStream, text: &str| {
        ws.write_all(&websocket_frame(1, text.as_bytes(), Some([1, 2, 3, 4]))).expect("frame");
        let mut head = [0u8; 2];
        reader.read_exact(&mut head).expect("frame head");
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        reader.read_exact(&mut payload).expect("payload");
        String::from_utf8_lossy(&payload).into_owned()
    };
    assert_eq!(echo(&mut reader, &mut ws, "hello"), "hello");

    // Load: keep-alive clients on load.example while its Ingress flips between two Services
    // and 20 other Ingresses change with it, 1,000 Ingress updates in all.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), ing.http);
            std::thread::spawn(move || {
                let mut client = KeepAlive::connect(addr).expect("connect");
                // Bounded: stops when told, or after 200k requests.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match client.get("load.example") {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let mut updates = 0;
    for round in 0..50 {
        let service = if round % 2 == 0 { "two" } else { "one" };
        let mut batch = vec![ingress(
            "load",
            json!({}),
            json!({"rules": [rule(Some("load.example"), &[("/", "Prefix", service)])]}),
        )];
        for i in 0..19 {
            let host = format!("churn-{i}.example");
            batch.push(ingress(
                &format!("churn-{i}"),
                json!({"round": round.to_string()}),
                json!({"rules": [rule(Some(&host), &[(&format!("/r{round}"), "Prefix", service)])]}),
            ));
        }
        updates += batch.len();
        apply_all(&server, batch);
    }
    // The last round pointed load.example at "one"; wait until it is served, then stop.
    eventually("last update", WAIT, || (ing.who("churn-3.example", "/r49") == "one").then_some(()));
    assert_eq!(echo(&mut reader, &mut ws, "still here"), "still here", "WebSocket survived route updates");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(updates, 1000);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 0, "no request succeeded");
    assert_eq!(failed, 0, "{failed} of {} requests failed during route updates", ok + failed);
}
