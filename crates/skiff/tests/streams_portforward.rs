//! `kubectl port-forward` through the API server to a node's kubelet API: SPDY/3.1 tunnelled
//! in a WebSocket (kubectl 1.32's default) and the plain SPDY upgrade (its fallback), several
//! connections, a large transfer, and an unreachable port.

mod common;
mod streams_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};

use streams_support::Cluster;

/// An HTTP server on 127.0.0.1 standing in for the pod's port: `/big` answers 2 MiB, every
/// other path its own name.
fn pod_http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = if path == "/big" { "x".repeat(2 << 20) } else { format!("hello from {path}") };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A running `kubectl port-forward` and the local port it listens on.
struct PortForward {
    child: Child,
    local: u16,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(c: &Cluster, target: &str, websockets: bool) -> PortForward {
    let mut cmd = c.server.kubectl_cmd();
    cmd.args(["port-forward", "pod/p", &format!(":{target}")]).stdout(Stdio::piped()).stderr(Stdio::piped());
    if !websockets {
        cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
    }
    let mut child = cmd.spawn().expect("kubectl port-forward");
    // "Forwarding from 127.0.0.1:LOCAL -> TARGET"
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("kubectl output");
    // Keep draining: kubectl prints more (the IPv6 listener) and dies of a closed pipe otherwise.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let local = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
    PortForward { child, local }
}

fn curl(port: u16, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn forwards_connections(websockets: bool) {
    let c = Cluster::start();
    c.pod("p", &["main"], Some("node-1"), &[]);
    let target = pod_http_server();
    let pf = port_forward(&c, &target.to_string(), websockets);
    for i in 0..3 {
        assert_eq!(curl(pf.local, &format!("/seq{i}")), format!("hello from /seq{i}"));
    }
    let local = pf.local;
    let parallel: Vec<_> = (0..4).map(|i| std::thread::spawn(move || curl(local, &format!("/par{i}")))).collect();
    for (i, t) in parallel.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), format!("hello from /par{i}"));
    }
    assert_eq!(curl(pf.local, "/big").len(), 2 << 20);
}

#[test]
fn port_forward_over_websocket_tunnelled_spdy() {
    forwards_connections(true);
}

#[test]
fn port_forward_over_plain_spdy_fallback() {
    forwards_connections(false);
}

#[test]
fn unreachable_pod_port_is_reported() {
    let c = Cluster::start();
    c.pod("p", &["main"], Some("node-1"), &[]);
    // A port nothing listens on: bind and drop.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut pf = port_forward(&c, &closed.to_string(), true);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("http://127.0.0.1:{}/", pf.local)])
        .output()
        .expect("curl");
    assert!(!out.status.success(), "a connection to a closed port must fail");
    let _ = pf.child.kill();
    let mut stderr = String::new();
    let _ = pf.child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(stderr.contains(&format!("error forwarding port {closed} to pod default/p")), "{stderr}");
}
