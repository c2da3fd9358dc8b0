//! A throwaway lab for the `skiff proxy` tests, built from network namespaces the test
//! owns (DESIGN.md §4): nothing is added to the machine's own namespace.
//!
//! ```text
//!  client netns                node netns                           backend netns (one each)
//!  eth0 172.30.0.2/24 ──veth── eth0 172.30.0.10/24                  eth0 10.244.1.(10+i)/24
//!  routes 10.96/16, 203.0.113/24,   br0 10.244.1.1/24 ──veth── ...
//!  198.51.100/24 via the node       skiff server (127.0.0.1), skiff proxy, kubectl
//! ```
//!
//! Backends run `backend.py`, which answers each TCP connection and UDP datagram with
//! "<name> <client-ip>"; clients run `client.py`. Both are plain python3 scripts next to
//! this file. Dropping the lab kills its processes and deletes its namespaces, also when
//! a test panics.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BACKEND_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy_support/backend.py");
const CLIENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy_support/client.py");

pub const NODE_IP: &str = "172.30.0.10";
pub const CLIENT_IP: &str = "172.30.0.2";
pub const NODE_POD_GW: &str = "10.244.1.1";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A backend namespace with its server process.
pub struct BackendNs {
    pub name: String,
    pub ns: String,
    pub ip: String,
    pub alt_port: u16,
    child: Option<Child>,
}

pub struct Lab {
    prefix: String,
    pub node: String,
    pub client: String,
    namespaces: Vec<String>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    server: Option<Child>,
    proxy: Option<Child>,
    pub backends: Vec<BackendNs>,
    mode: String,
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn run_ok(args: &[&str]) {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lab {
    /// Creates the namespaces and starts the API server inside the node namespace.
    pub fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("skp{}-{n}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lab = Lab {
            node: format!("{prefix}-node"),
            client: format!("{prefix}-cli"),
            prefix,
            namespaces: Vec::new(),
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            server: None,
            proxy: None,
            backends: Vec::new(),
            mode: String::new(),
        };
        lab.add_ns(&lab.node.clone());
        lab.add_ns(&lab.client.clone());
        let (node, client) = (lab.node.clone(), lab.client.clone());
        run_ok(&["ip", "-n", &node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &client]);
        run_ok(&["ip", "-n", &node, "addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"]);
        run_ok(&["ip", "-n", &node, "link", "set", "eth0", "up"]);
        run_ok(&["ip", "-n", &client, "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"]);
        run_ok(&["ip", "-n", &client, "link", "set", "eth0", "up"]);
        for net in ["10.96.0.0/16", "203.0.113.0/24", "198.51.100.0/24", "10.244.0.0/16"] {
            run_ok(&["ip", "-n", &client, "route", "add", net, "via", NODE_IP]);
        }
        run_ok(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"]);
        run_ok(&["ip", "-n", &node, "addr", "add", &format!("{NODE_POD_GW}/24"), "dev", "br0"]);
        run_ok(&["ip", "-n", &node, "link", "set", "br0", "up"]);
        // Node-local clients need a route to Service IPs (DNAT re-routes afterwards).
        run_ok(&["ip", "-n", &node, "route", "add", "10.96.0.0/16", "dev", "br0"]);
        run_ok(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Rejections are ICMP errors; the default per-peer rate limit (a burst of 6, then
        // one per second) would turn back-to-back refusals into timeouts.
        run_ok(&["ip", "netns", "exec", &node, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
        lab.start_server();
        lab
    }

    fn add_ns(&mut self, ns: &str) {
        run_ok(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_owned());
        run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.node, env!("CARGO_BIN_EXE_skiff"), "server", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff server");
        self.server = Some(child);
        self.eventually("API server ready", Duration::from_secs(30), || {
            (self.kubeconfig.exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success()).then_some(())
        });
    }

    /// Adds a backend namespace on the node's bridge, serving TCP and UDP 8080 and TCP
    /// `alt_port` (so per-endpoint target ports can be told apart).
    pub fn add_backend(&mut self, name: &str, alt_port: u16) -> usize {
        let i = self.backends.len();
        let ns = format!("{}-b{i}", self.prefix);
        self.add_ns(&ns);
        let ip = format!("10.244.1.{}", 10 + i);
        let port = format!("vb{i}");
        run_ok(&["ip", "-n", &self.node, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        run_ok(&["ip", "-n", &self.node, "link", "set", &port, "master", "br0", "up"]);
        // With br_netfilter, DNAT back to the sender happens at the bridge: the frame must
        // be allowed out of the port it came in on (kubelet sets the same on pod veths).
        run_ok(&["ip", "-n", &self.node, "link", "set", &port, "type", "bridge_slave", "hairpin", "on"]);
        run_ok(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        run_ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        for net in ["10.96.0.0/16", "172.30.0.0/24", "203.0.113.0/24", "198.51.100.0/24"] {
            run_ok(&["ip", "-n", &ns, "route", "add", net, "via", NODE_POD_GW]);
        }
        self.backends.push(BackendNs { name: name.to_owned(), ns, ip, alt_port, child: None });
        self.start_backend(i);
        i
    }

    /// (Re)starts backend `i`'s server and waits until it listens.
    pub fn start_backend(&mut self, i: usize) {
        let b = &mut self.backends[i];
        let mut child = Command::new("ip")
            .args(["netns", "exec", &b.ns, "python3", "-u", BACKEND_PY, &b.name])
            .args(["tcp:0.0.0.0:8080", "udp:0.0.0.0:8080", "sctp:0.0.0.0:8080", &format!("tcp:0.0.0.0:{}", b.alt_port)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting backend");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("backend ready line");
        assert_eq!(line.trim(), "ready", "backend did not start");
        b.child = Some(child);
    }

    /// Stops backend `i`'s server (its namespace stays).
    pub fn stop_backend(&mut self, i: usize) {
        if let Some(mut c) = self.backends[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn backend_ip(&self, i: usize) -> &str {
        &self.backends[i].ip
    }

    /// Starts `skiff proxy` in the node namespace (metrics on 127.0.0.1:10249 there) and
    /// waits for its first sync.
    pub fn start_proxy(&mut self, mode: &str) {
        self.stop_proxy();
        self.mode = mode.to_owned();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("proxy.log"))
            .expect("proxy log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.node, env!("CARGO_BIN_EXE_skiff"), "proxy", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--mode", mode, "--node-name", "node-1", "--metrics-listen", "127.0.0.1:10249"])
            .args(["--cluster-cidr", "10.244.0.0/16"])
            .env("RUST_LOG", "info,skiff_proxy=debug")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff proxy");
        let mut child = child;
        self.eventually("proxy healthy", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("skiff proxy exited with {status}: {}", self.proxy_log());
            }
            (self.http_in_node("/healthz").0 == 200).then_some(())
        });
        self.proxy = Some(child);
    }

    pub fn stop_proxy(&mut self) {
        if let Some(mut c) = self.proxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Runs a command inside namespace `ns`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec")
    }

    /// (status, body) of `GET http://127.0.0.1:10249<path>` inside the node namespace.
    pub fn http_in_node(&self, path: &str) -> (u16, String) {
        self.http(&self.node.clone(), &format!("http://127.0.0.1:10249{path}"))
    }

    /// (status, body) of a GET with curl inside `ns`; status 0 when it failed.
    pub fn http(&self, ns: &str, url: &str) -> (u16, String) {
        let out = self.exec(ns, &["curl", "-s", "-m", "3", "-w", "\n%{http_code}", url]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.node, "kubectl", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, manifest: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node, "kubectl", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["apply", "-f", "-"])
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl apply");
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(out.status.success(), "kubectl apply failed: {}\n{manifest}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs client.py in `ns`; one line per attempt.
    pub fn client_in(&self, ns: &str, args: &[&str]) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "python3", CLIENT_PY])
            .args(args)
            .output()
            .expect("client.py");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// `count` TCP connections from the client namespace.
    pub fn tcp(&self, ip: &str, port: u16, count: usize) -> Vec<String> {
        self.client_in(&self.client.clone(), &["tcp", ip, &port.to_string(), &count.to_string()])
    }

    pub fn udp(&self, ip: &str, port: u16, count: usize) -> Vec<String> {
        self.client_in(&self.client.clone(), &["udp", ip, &port.to_string(), &count.to_string()])
    }

    /// Polls `check` every 100 ms until it returns `Some` or `timeout` passes (then fails
    /// the test with the proxy's log).
    pub fn eventually<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                let log = self.proxy_log();
                let tail: String =
                    log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                panic!("timed out waiting for {what}; proxy log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a single TCP attempt to ip:port gives a line satisfying `want`.
    pub fn wait_tcp(&self, ip: &str, port: u16, what: &str, want: impl Fn(&str) -> bool) -> String {
        self.eventually(what, Duration::from_secs(20), || self.tcp(ip, port, 1).into_iter().next().filter(|l| want(l)))
    }

    pub fn wait_udp(&self, ip: &str, port: u16, what: &str, want: impl Fn(&str) -> bool) -> String {
        self.eventually(what, Duration::from_secs(20), || self.udp(ip, port, 1).into_iter().next().filter(|l| want(l)))
    }

    /// The nftables ruleset of the node namespace (for failure messages and checks).
    pub fn node_ruleset(&self) -> String {
        String::from_utf8_lossy(&self.exec(&self.node.clone(), &["nft", "list", "ruleset"]).stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_proxy();
        for i in 0..self.backends.len() {
            self.stop_backend(i);
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Why SCTP tests cannot run here (`None` when the kernel has SCTP): the same socket the
/// test backends and clients open, tried with python3.
pub fn sctp_unsupported() -> Option<String> {
    let probe = "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)";
    let out = run(&["python3", "-c", probe]);
    if out.status.success() {
        return None;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or("unknown error").trim().to_owned();
    Some(format!("this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): {last})"))
}

/// Names of the backends that answered (the first word of each OK line).
pub fn answered(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("OK "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// One EndpointSlice endpoint.
pub struct Ep<'a> {
    pub ip: &'a str,
    pub node: &'a str,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl<'a> Ep<'a> {
    pub fn ready(ip: &'a str, node: &'a str) -> Ep<'a> {
        Ep { ip, node, ready: true, serving: true, terminating: false }
    }
}

/// An EndpointSlice manifest for Service `svc` in `default`.
pub fn slice(name: &str, svc: &str, ports: &[(&str, u16, &str)], endpoints: &[Ep<'_>]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|(n, p, proto)| format!("{{\"name\": \"{n}\", \"port\": {p}, \"protocol\": \"{proto}\"}}"))
        .collect();
    let eps: Vec<String> = endpoints
        .iter()
        .map(|e| {
            format!(
                "{{\"addresses\": [\"{}\"], \"nodeName\": \"{}\", \"conditions\": {{\"ready\": {}, \"serving\": {}, \"terminating\": {}}}}}",
                e.ip, e.node, e.ready, e.serving, e.terminating
            )
        })
        .collect();
    format!(
        "{{\"apiVersion\": \"discovery.k8s.io/v1\", \"kind\": \"EndpointSlice\", \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"default\", \
         \"labels\": {{\"kubernetes.io/service-name\": \"{svc}\"}}}}, \"addressType\": \"IPv4\", \"ports\": [{}], \"endpoints\": [{}]}}",
        ports.join(", "),
        eps.join(", ")
    )
}
