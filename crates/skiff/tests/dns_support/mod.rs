//! Helpers for the `skiff dns` end-to-end tests: the server process, `dig` with its output
//! parsed, and a tiny upstream DNS server the tests own (on loopback; tests never reach
//! the machine's resolver).

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `skiff dns` child process; killed on drop.
pub struct DnsServer {
    child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    log_path: PathBuf,
}

impl DnsServer {
    /// Starts `skiff dns --kubeconfig <kubeconfig> --listen 127.0.0.1:0 --metrics-listen
    /// 127.0.0.1:0 <extra>` and waits until it has bound its sockets. Without an
    /// `--upstream` in `extra`, one that never answers is used, so nothing leaves loopback.
    pub fn start(kubeconfig: &Path, log_dir: &Path, extra: &[&str]) -> DnsServer {
        let log_path = log_dir.join(format!("dns-{}.log", std::process::id() ^ rand_suffix()));
        let log = std::fs::File::create(&log_path).expect("dns log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["--log-format", "json", "dns", "--kubeconfig"]).arg(kubeconfig).args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--udp-workers",
            "2",
        ]);
        if !extra.contains(&"--upstream") {
            // A bound socket nobody reads: forwarded queries time out instead of leaving loopback.
            cmd.args(["--upstream", &silent_upstream().to_string()]);
        }
        let child = cmd
            .args(extra)
            .env("RUST_LOG", "info,skiff_dns=debug")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff dns");
        let mut server = DnsServer {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            metrics: "127.0.0.1:0".parse().unwrap(),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((addr, metrics)) = listening_line(&server.log()) {
                server.addr = addr;
                server.metrics = metrics;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("skiff dns exited with {status}: {}", server.log());
            }
            assert!(Instant::now() < deadline, "skiff dns did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the cluster zone is answered (the watches have synced).
    pub fn wait_synced(&self) {
        poll("skiff dns to sync", Duration::from_secs(20), || {
            (self.dig(Proto::Udp, "dns-version.cluster.local", "TXT", &[]).status == "NOERROR").then_some(())
        });
    }

    /// Runs dig against this server.
    pub fn dig(&self, proto: Proto, name: &str, qtype: &str, extra: &[&str]) -> Dig {
        dig(self.addr, proto, name, qtype, extra)
    }

    /// GETs a path of the metrics listener with curl; returns (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", &format!("http://{}{path}", self.metrics)])
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed) << 20
}

/// Finds the JSON log line `DNS server listening` and returns (listen, metrics_listen).
fn listening_line(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    log.lines().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?;
        (fields.get("message")?.as_str()? == "DNS server listening").then_some(())?;
        let listen = fields.get("listen")?.as_str()?.parse().ok()?;
        let metrics = fields.get("metrics_listen")?.as_str()?.parse().ok()?;
        Some((listen, metrics))
    })
}

/// A loopback UDP address that never answers (the socket is leaked on purpose so the port
/// stays taken for the test's lifetime).
fn silent_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding silent upstream");
    let addr = socket.local_addr().expect("silent upstream addr");
    std::mem::forget(socket);
    addr
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// One resource record as dig prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// dig's output, parsed.
#[derive(Debug, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    pub raw: String,
}

impl Dig {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// RDATA of the answer records of `rtype`, sorted.
    pub fn answers(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self.answer.iter().filter(|r| r.rtype == rtype).map(|r| r.data.clone()).collect();
        v.sort();
        v
    }

    /// NODATA: NOERROR, no answer, the zone's SOA in the authority section.
    pub fn is_nodata(&self) -> bool {
        self.status == "NOERROR" && self.answer.is_empty() && self.authority.iter().any(|r| r.rtype == "SOA")
    }

    pub fn is_nxdomain_with_soa(&self) -> bool {
        self.status == "NXDOMAIN" && self.answer.is_empty() && self.authority.iter().any(|r| r.rtype == "SOA")
    }
}

/// Runs `dig @server -p port name qtype` over `proto` and parses the result.
pub fn dig(server: SocketAddr, proto: Proto, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1", "+nocookie"])
        .arg(if proto == Proto::Tcp { "+tcp" } else { "+notcp" })
        .args(extra)
        .args([name, qtype])
        .output()
        .expect("running dig (apt-get install bind9-dnsutils)");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(raw: &str) -> Dig {
    let mut dig = Dig { raw: raw.to_owned(), ..Dig::default() };
    let mut section: Option<&str> = None;
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap_or_default().to_owned();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            dig.flags = rest.split(';').next().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        }
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = Some(if line.contains("ANSWER") {
                "answer"
            } else if line.contains("AUTHORITY") {
                "authority"
            } else if line.contains("ADDITIONAL") {
                "additional"
            } else {
                "other"
            });
            continue;
        }
        if line.trim().is_empty() {
            section = None;
            continue;
        }
        if line.starts_with(';') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rr = Rr {
            name: name.to_owned(),
            ttl: ttl.parse().unwrap_or(0),
            rtype: rtype.to_owned(),
            data: parts.collect::<Vec<_>>().join(" "),
        };
        match section {
            Some("answer") => dig.answer.push(rr),
            Some("authority") => dig.authority.push(rr),
            Some("additional") => dig.additional.push(rr),
            _ => {}
        }
    }
    dig
}

/// Polls `check` every 20 ms until it returns Some, or panics after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal upstream DNS server on 127.0.0.1 owned by the test: answers every A query
/// with 192.0.2.53 (TTL 300), names starting with `nx` with NXDOMAIN, other types with
/// NODATA, and records every name it was asked. Stops on drop.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

pub const UPSTREAM_ANSWER: [u8; 4] = [192, 0, 2, 53];

impl FakeUpstream {
    pub fn start() -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding fake upstream");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (asked2, stop2) = (asked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some((name, reply)) = fake_answer(&buf[..n]) {
                    asked2.lock().unwrap().push(name);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        FakeUpstream { addr, asked, stop }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// (dotted lowercase name, response) for a query packet.
fn fake_answer(query: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        if len == 0 || len > 63 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_ascii_lowercase());
        at += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let question_end = at + 5;
    let name = labels.join(".");
    let nx = name.starts_with("nx");
    let mut reply = query.get(..2)?.to_vec();
    reply.extend_from_slice(&[0x81, if nx { 0x83 } else { 0x80 }, 0, 1, 0, u8::from(!nx && qtype == 1), 0, 0, 0, 0]);
    reply.extend_from_slice(query.get(12..question_end)?);
    if !nx && qtype == 1 {
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
        reply.extend_from_slice(&UPSTREAM_ANSWER);
    }
    Some((name, reply))
}
