//! Helpers for the ingress tests: loopback HTTP backends that say who they are, a
//! `skiff ingress` process, manifests for Services + hand-written EndpointSlices, and curl.
//!
//! Backends listen on distinct 127.x.y.z addresses (all loopback) with one port per Service,
//! so an EndpointSlice lists them like pod IPs and each reply names the backend it came from.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::TestServer;

/// Polls `check` every 50 ms until it returns Some, for at most `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A unique loopback address per call: 127.<pid-derived>.<n>.<n> (never 127.0.0.1).
pub fn loopback_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(127, (pid % 200 + 20) as u8, (n / 250 + (pid / 200) % 50) as u8, (n % 250 + 2) as u8)
}

/// A Service backed by `replicas` loopback HTTP servers sharing one port.
pub struct Backend {
    pub name: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Starts `replicas` servers answering with their identity (`backend <name> <ip>`), the
    /// request line and headers. They also echo WebSocket frames after an upgrade.
    pub fn start(name: &str, replicas: usize) -> Backend {
        for _ in 0..20 {
            let first_ip = loopback_ip();
            let Ok(first) = TcpListener::bind((first_ip, 0)) else { continue };
            let port = first.local_addr().expect("addr").port();
            let mut listeners = vec![first];
            for _ in 1..replicas {
                match TcpListener::bind((loopback_ip(), port)) {
                    Ok(l) => listeners.push(l),
                    Err(_) => break,
                }
            }
            if listeners.len() < replicas {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let addrs = listeners.iter().map(|l| l.local_addr().expect("addr")).collect();
            for listener in listeners {
                let name = name.to_owned();
                let stop = stop.clone();
                std::thread::spawn(move || accept_loop(listener, name, stop));
            }
            return Backend { name: name.to_owned(), port, addrs, stop };
        }
        panic!("could not bind backend {name}");
    }

    /// The Service and its EndpointSlice, as JSON objects for a List manifest.
    pub fn manifests(&self, namespace: &str) -> Vec<Value> {
        let ips: Vec<IpAddr> = self.addrs.iter().map(|a| a.ip()).collect();
        service_manifests(&self.name, namespace, &ips, self.port)
    }

    pub fn ips(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.ip().to_string()).collect()
    }
}

/// A selector-less Service (port 80, named `http`) and a hand-written EndpointSlice listing
/// `ips` on `port`.
pub fn service_manifests(name: &str, namespace: &str, ips: &[IpAddr], port: u16) -> Vec<Value> {
    let endpoints: Vec<Value> =
        ips.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect();
    vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": format!("{name}-manual"), "namespace": namespace,
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
               "endpoints": endpoints}),
    ]
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for addr in &self.addrs {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(100));
        }
    }
}

fn accept_loop(listener: TcpListener, name: String, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let name = name.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, &name);
        });
    }
}

/// Serves keep-alive HTTP/1.1 requests on one connection.
fn serve(stream: TcpStream, name: &str) -> std::io::Result<()> {
    let local = stream.local_addr()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let mut body = Vec::new();
        if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        if header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            out.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n",
            )?;
            return websocket_echo(reader, out);
        }
        // `/sleep/<ms>` answers late (timeout tests).
        if let Some(ms) = request_line.split_whitespace().nth(1).and_then(|p| p.strip_prefix("/sleep/")) {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        let mut text = format!("backend {name} {}\nrequest {request_line}\nbody-bytes {}\n", local.ip(), body.len());
        for (k, v) in &headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: test-backend\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        out.write_all(response.as_bytes())?;
    }
}

/// Echoes WebSocket text/binary frames (unmasked replies) until a close frame or EOF.
fn websocket_echo(mut reader: BufReader<TcpStream>, mut out: TcpStream) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        reader.read_exact(&mut head)?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b)?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            reader.read_exact(&mut b)?;
            len = u64::from_be_bytes(b);
        }
        let mut mask = [0u8; 4];
        if masked {
            reader.read_exact(&mut mask)?;
        }
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload)?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        if opcode == 8 {
            out.write_all(&[0x88, 0])?;
            return Ok(());
        }
        out.write_all(&websocket_frame(opcode, &payload, None))?;
    }
}

/// A WebSocket frame (payload < 64 KiB), masked when `mask` is given.
pub fn websocket_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        frame.push(mask_bit | payload.len() as u8);
    } else {
        frame.push(mask_bit | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(m) => {
            frame.extend_from_slice(&m);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// A running `skiff ingress`, killed on drop.
pub struct IngressProcess {
    child: Child,
    pub log_path: PathBuf,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub metrics: SocketAddr,
}

impl IngressProcess {
    pub fn start(server: &TestServer, extra: &[&str]) -> IngressProcess {
        let log_path = server.dir.path().join(format!("ingress-{}.log", loopback_ip()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("ingress")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--http-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info,skiff_ingress=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff ingress");
        let mut ingress = IngressProcess {
            child,
            log_path,
            http: "0.0.0.0:0".parse().expect("addr"),
            https: "0.0.0.0:0".parse().expect("addr"),
            metrics: "0.0.0.0:0".parse().expect("addr"),
        };
        let (http, https, metrics) = eventually("ingress listening line", Duration::from_secs(30), || {
            if let Ok(Some(status)) = ingress.child.try_wait() {
                panic!("skiff ingress exited with {status}: {}", ingress.log());
            }
            let log = ingress.log();
            let line = log.lines().find(|l| l.contains("ingress listening"))?;
            let field = |name: &str| {
                line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))?.parse::<SocketAddr>().ok())
            };
            Some((field("http")?, field("https")?, field("metrics")?))
        });
        ingress.http = http;
        ingress.https = https;
        ingress.metrics = metrics;
        eventually("ingress /readyz", Duration::from_secs(30), || {
            (curl(&["-s", &format!("http://{metrics}/readyz")]).1 == "ok").then_some(())
        });
        ingress
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `curl http://127.0.0.1:<http port><path>` with Host `host` and extra args;
    /// returns (status, body).
    pub fn get(&self, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("http://{}{path}", self.http);
        let mut args = vec!["-s", "--max-time", "10", "-H"];
        let host_header = format!("Host: {host}");
        args.push(&host_header);
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    }

    /// Which backend answered `host` + `path` ("404" / "503" / … for local answers).
    pub fn who(&self, host: &str, path: &str) -> String {
        let (code, body) = self.get(host, path, &[]);
        backend_name(code, &body)
    }

    pub fn metrics_text(&self) -> String {
        curl(&["-s", &format!("http://{}/metrics", self.metrics)]).1
    }

    /// Sends raw bytes over TLS (SNI `sni`, HTTP/1.1 by ALPN) with `openssl s_client` and
    /// returns everything the ingress answers until it closes the connection (or 15 s pass).
    pub fn tls_raw(&self, sni: &str, request: &[u8]) -> String {
        let mut child = Command::new("timeout")
            .args(["15", "openssl", "s_client", "-quiet", "-alpn", "http/1.1", "-servername", sni, "-connect"])
            .arg(self.https.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(request);
        }
        let out = child.wait_with_output().expect("openssl s_client output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for IngressProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend name in a reply, or the status code for answers that are not from a backend.
pub fn backend_name(code: u16, body: &str) -> String {
    match body.lines().next().and_then(|l| l.strip_prefix("backend ")) {
        Some(rest) if code == 200 => rest.split_whitespace().next().unwrap_or_default().to_owned(),
        _ => code.to_string(),
    }
}

/// The backend IP in a reply.
pub fn backend_ip(body: &str) -> Option<IpAddr> {
    body.lines().next()?.strip_prefix("backend ")?.split_whitespace().nth(1)?.parse().ok()
}

/// A request header as the backend saw it.
pub fn seen_header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// Runs curl with `-w '\n%{http_code}'` appended; returns (status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl").args(args).args(["-w", "\n%{http_code}"]).output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Applies a List of objects.
pub fn apply_all(server: &TestServer, items: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    // Client-side schema validation needs OpenAPI documents the test server may not serve
    // for every group; the server validates anyway.
    let out = server.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], &list.to_string());
    assert!(out.status.success(), "kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// IngressClass `skiff` for skiff's controller, optionally the default class.
pub fn ingress_class(default: bool) -> Value {
    let mut class = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "skiff"}, "spec": {"controller": "skiff.io/ingress-controller"}});
    if default {
        class["metadata"]["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    class
}

/// An Ingress of class `skiff` with `spec` (ingressClassName added unless present).
pub fn ingress(name: &str, annotations: Value, mut spec: Value) -> Value {
    if spec.get("ingressClassName").is_none() {
        spec["ingressClassName"] = json!("skiff");
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "default", "annotations": annotations}, "spec": spec})
}

/// One rule: host (None for host-less) → [(path, pathType, service)], port named `http`.
pub fn rule(host: Option<&str>, paths: &[(&str, &str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, t, svc)| json!({"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}))
        .collect();
    let mut r = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        r["host"] = json!(h);
    }
    r
}

/// A self-signed CA and a certificate for `hosts` signed by it (openssl CLI).
pub struct TestCert {
    pub ca: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_cert(dir: &Path, tag: &str, hosts: &[&str]) -> TestCert {
    let p = |n: &str| dir.join(format!("{tag}-{n}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &s(&p("ca.key")),
        "-out",
        &s(&p("ca.pem")),
        "-days",
        "2",
        "-subj",
        &format!("/CN={tag} test CA"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &s(&p("key.pem")),
        "-out",
        &s(&p("csr.pem")),
        "-subj",
        &format!("/CN={}", hosts[0]),
    ]);
    let san: Vec<String> = hosts.iter().map(|h| format!("DNS:{h}")).collect();
    std::fs::write(p("ext.cnf"), format!("subjectAltName={}\n", san.join(","))).expect("ext file");
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&p("csr.pem")),
        "-CA",
        &s(&p("ca.pem")),
        "-CAkey",
        &s(&p("ca.key")),
        "-CAcreateserial",
        "-out",
        &s(&p("cert.pem")),
        "-days",
        "2",
        "-extfile",
        &s(&p("ext.cnf")),
    ]);
    TestCert {
        ca: p("ca.pem"),
        cert_path: p("cert.pem"),
        key_path: p("key.pem"),
        cert_pem: std::fs::read_to_string(p("cert.pem")).expect("cert"),
        key_pem: std::fs::read_to_string(p("key.pem")).expect("key"),
    }
}

/// A `kubernetes.io/tls` Secret holding `cert`.
pub fn tls_secret(name: &str, cert: &TestCert) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": name, "namespace": "default"},
           "data": {"tls.crt": base64(cert.cert_pem.as_bytes()), "tls.key": base64(cert.key_pem.as_bytes())}})
}

/// Standard base64 with padding (Secret `data` values).
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `openssl s_server -www` on a loopback address: an HTTPS upstream (killed on drop).
pub struct TlsUpstream {
    child: Child,
    pub addr: SocketAddr,
}

impl TlsUpstream {
    pub fn start(cert: &TestCert) -> TlsUpstream {
        let ip = loopback_ip();
        let port = TcpListener::bind((ip, 0)).expect("probe port").local_addr().expect("addr").port();
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &addr.to_string(), "-cert"])
            .arg(&cert.cert_path)
            .arg("-key")
            .arg(&cert.key_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        eventually("openssl s_server", Duration::from_secs(10), || TcpStream::connect(addr).ok().map(|_| ()));
        TlsUpstream { child, addr }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
