//! A `skiff server` per test, on its own data directory and an ephemeral port, driven
//! with the real kubectl. Dropping the handle kills the server and removes its files.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

#[path = "../../../store/tests/support/ports.rs"]
pub mod ports;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ports::free_ports;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub kubeconfig: PathBuf,
    /// Extra `skiff server` arguments (e.g. `--etcd-endpoints`), kept for restarts.
    server_args: Vec<String>,
}

impl TestServer {
    /// Starts a server and waits until it is ready.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server with extra `skiff server` arguments (kept for [`TestServer::spawn`]
    /// restarts) and waits until it is ready.
    pub fn start_with(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_args = args.iter().map(|a| a.to_string()).collect();
        let mut s = TestServer { kubeconfig: dir.path().join("kubeconfig"), dir, child: None, server_args };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts the server process on the same data directory.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.server_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig.exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("skiff server exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "server not ready after 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILLs the server (durability tests).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        c.env_remove("KUBECONFIG");
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("running kubectl")
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it failed.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with `stdin` piped in (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
        child.wait_with_output().expect("kubectl output")
    }

    pub fn apply(&self, manifest: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A `skiff controllers` process against a [`TestServer`], killed on drop.
pub struct Controllers {
    child: Child,
    pub log_path: PathBuf,
}

impl Controllers {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The metrics address the controllers bound (started with `--metrics-listen
    /// 127.0.0.1:0`), read from their "metrics listening" log line.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            let found = log
                .lines()
                .filter(|line| line.contains("metrics listening"))
                .find_map(|line| line.split_whitespace().find_map(|word| word.strip_prefix("addr=")?.parse().ok()));
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "controllers never reported a metrics address; log:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestServer {
    /// Starts `skiff controllers --kubeconfig <this server> <extra args>`.
    pub fn start_controllers(&self, extra_args: &[&str]) -> Controllers {
        self.start_controllers_with(&self.kubeconfig, extra_args)
    }

    /// Starts `skiff controllers --kubeconfig <kubeconfig> <extra args>` (logs in this
    /// server's directory).
    pub fn start_controllers_with(&self, kubeconfig: &Path, extra_args: &[&str]) -> Controllers {
        let log_path = self.dir.path().join(format!("controllers-{}.log", rand_suffix()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra_args)
            .env("RUST_LOG", "info,skiff_controllers=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff controllers");
        Controllers { child, log_path }
    }

    /// Polls `check` (every 50 ms, up to `timeout`) until it returns Some; panics with
    /// `what` otherwise. Tests wait for controllers with this, never with fixed sleeps.
    pub fn eventually<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Connection details read back from the kubeconfig the server wrote, for clients that are not
/// kubectl (curl, the Python client, kube-rs).
impl TestServer {
    /// The `https://127.0.0.1:PORT` URL of the running server (changes on every restart).
    pub fn url(&self) -> String {
        let config = std::fs::read_to_string(&self.kubeconfig).expect("reading kubeconfig");
        config
            .lines()
            .find_map(|line| line.trim().strip_prefix("server:"))
            .map(|url| url.trim().to_owned())
            .expect("kubeconfig has a server: line")
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        let token = std::fs::read_to_string(self.data_dir().join("pki/admin.token")).expect("reading admin.token");
        token.trim().to_owned()
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir().join("pki/ca.crt")
    }

    /// Where and how to reach the running server with curl; cheap to clone into threads.
    pub fn target(&self) -> HttpTarget {
        HttpTarget { url: self.url(), ca: self.ca_cert(), token: self.token() }
    }

    /// A raw HTTP request to the server (made with curl, authenticated as admin by default).
    pub fn http(&self, method: &str, path: &str) -> HttpRequest {
        self.target().request(method, path)
    }

    /// GETs `path` and returns its JSON body, failing the test on any status but 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let reply = self.http("GET", path).send();
        assert_eq!(reply.code, 200, "GET {path}: {}", reply.body);
        reply.json()
    }
}

/// Server URL, CA and admin token: everything curl needs to talk to one server incarnation.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub url: String,
    ca: PathBuf,
    token: String,
}

impl HttpTarget {
    pub fn request(&self, method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            url: format!("{}{path}", self.url),
            ca: self.ca.clone(),
            token: Some(self.token.clone()),
            method: method.to_owned(),
            content_type: None,
            body: None,
            http1: false,
        }
    }

    /// A streaming GET (a watch) whose body lines arrive as they are sent.
    pub fn stream(&self, path: &str) -> LineStream {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-N", "--cacert"])
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(format!("{}{path}", self.url));
        LineStream::spawn(cmd)
    }
}

/// One curl invocation, built up with the methods below and run by [`HttpRequest::send`].
pub struct HttpRequest {
    url: String,
    ca: PathBuf,
    token: Option<String>,
    method: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    http1: bool,
}

impl HttpRequest {
    /// Sends a JSON body (`Content-Type: application/json`).
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.body("application/json", body.to_string().into_bytes())
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.to_owned());
        self.body = Some(body.into());
        self
    }

    /// Sends no credentials at all.
    pub fn anonymous(mut self) -> Self {
        self.token = None;
        self
    }

    /// Forces HTTP/1.1 (curl otherwise negotiates HTTP/2 like kubectl does).
    pub fn http1(mut self) -> Self {
        self.http1 = true;
        self
    }

    /// Sends the request, failing the test if curl cannot get an answer.
    pub fn send(self) -> HttpReply {
        self.try_send().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends the request; `Err` when curl got no HTTP answer (server down, connection reset).
    pub fn try_send(self) -> Result<HttpReply, String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-S", "-i", "-X", &self.method, "--cacert"]).arg(&self.ca);
        if let Some(token) = &self.token {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        if let Some(content_type) = &self.content_type {
            cmd.arg("-H").arg(format!("Content-Type: {content_type}"));
        }
        if self.body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        if self.http1 {
            cmd.arg("--http1.1");
        }
        cmd.arg(&self.url).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("running curl");
        let mut stdin = child.stdin.take().expect("curl stdin");
        let body = self.body.unwrap_or_default();
        // Written from a thread: curl may stop reading early when the server answers before
        // the whole body is sent (413), and the error that causes here is expected.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().expect("curl output");
        let _ = writer.join();
        if !out.status.success() {
            return Err(format!(
                "curl {} {} failed ({}): {}",
                self.method,
                self.url,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(HttpReply::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Status code, headers and body of one response.
#[derive(Debug)]
pub struct HttpReply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    /// Parses curl's `-i` output: header blocks (more than one after `100 Continue`), then the body.
    fn parse(raw: &str) -> HttpReply {
        let mut rest = raw;
        loop {
            let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
            let mut lines = head.lines();
            let status_line = lines.next().unwrap_or_default();
            let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            if (100..200).contains(&code) && body.starts_with("HTTP/") {
                rest = body;
                continue;
            }
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return HttpReply { code, headers, body: body.to_owned() };
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// A long-running child process (a watch) whose stdout lines are collected in the background,
/// so a test can wait for a particular line with a deadline. Dropping it kills the process.
pub struct LineStream {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LineStream {
    pub fn spawn(mut cmd: Command) -> LineStream {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawning watcher");
        let stdout = child.stdout.take().expect("watcher stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineStream { child, lines, seen: Vec::new() }
    }

    /// Waits until a line satisfies `want` and returns it; panics with everything seen so far
    /// if none does within `timeout` or the process ends first.
    pub fn wait_for(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no matching line ({e:?}); output so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The next line, waiting up to `timeout`; `Err(Disconnected)` once the process has ended
    /// and every line was read (a watch the server closed), `Err(Timeout)` if none came.
    pub fn next_line(&mut self, timeout: Duration) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        let line = self.lines.recv_timeout(timeout)?;
        self.seen.push(line.clone());
        Ok(line)
    }

    /// Every line received so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real etcd (Debian's `etcd-server`, v3.4+) of one or more members on free loopback ports,
/// for `skiff server --etcd-endpoints`. Its data lives in a temporary directory (in /dev/shm
/// when there is one: etcd fsyncs every write). Dropping it SIGKILLs every member, also when
/// a test panics.
///
/// The binary is `SKIFF_ETCD_BIN`, default `etcd` on the PATH; without it tests fail, they do
/// not skip.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    _dir: tempfile::TempDir,
}

struct EtcdMember {
    client_url: String,
    child: Option<Child>,
    log: PathBuf,
}

impl EtcdCluster {
    /// Starts `size` members forming one new cluster and waits until each reports itself
    /// healthy (which needs an elected leader).
    pub fn start(size: usize) -> EtcdCluster {
        let binary = std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned());
        let dir = match Path::new("/dev/shm").is_dir() {
            true => tempfile::Builder::new().prefix("skiff-e2e-etcd").tempdir_in("/dev/shm"),
            false => tempfile::Builder::new().prefix("skiff-e2e-etcd").tempdir(),
        }
        .expect("temporary directory");
        let ports = free_ports(2 * size);
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial_cluster = (0..size).map(|i| format!("m{i}={}", peer_url(i))).collect::<Vec<_>>().join(",");
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let log = dir.path().join(format!("m{i}.log"));
            let log_file = std::fs::File::create(&log).expect("etcd log file");
            let spawned = Command::new(&binary)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i), "--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("skiff-e2e-{}", ports[0])])
                // Fast elections keep the member-failure tests short.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("etcd log file"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|error| {
                    panic!(
                        "cannot start etcd ({binary}): {error}. These tests need a real etcd v3 server: install \
                         Debian's etcd-server or point SKIFF_ETCD_BIN at an etcd binary."
                    )
                });
            members.push(EtcdMember { client_url, child: Some(spawned), log });
        }
        let mut cluster = EtcdCluster { members, _dir: dir };
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// Polls the member's `/health` endpoint (HTTP on the client port) until it says true.
    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("curl")
                .args(["-s", "-m", "1", &format!("{}/health", self.members[i].client_url)])
                .output()
                .expect("running curl");
            if String::from_utf8_lossy(&out.stdout).contains(r#""health":"true""#) {
                return;
            }
            if let Some(status) = self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("etcd member m{i} exited with {status}:\n{}", self.log(i));
            }
            assert!(Instant::now() < deadline, "etcd member m{i} not healthy after 20 s:\n{}", self.log(i));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `http://127.0.0.1:PORT` client URL of member `i`.
    pub fn client_url(&self, i: usize) -> &str {
        &self.members[i].client_url
    }

    /// Member client URLs in the given order, comma-separated (an `--etcd-endpoints` value;
    /// the first one is the member a `skiff server` talks to until it fails).
    pub fn endpoints(&self, order: &[usize]) -> String {
        order.iter().map(|&i| self.client_url(i)).collect::<Vec<_>>().join(",")
    }

    /// Every member's client URL, comma-separated, in member order.
    pub fn all_endpoints(&self) -> String {
        self.endpoints(&(0..self.members.len()).collect::<Vec<_>>())
    }

    /// The index of the raft leader, asked of every running member through etcd's JSON gateway
    /// (`/v3/maintenance/status`: each member reports its own id and the leader's).
    pub fn leader(&self) -> usize {
        let status = |i: usize| {
            let out = Command::new("curl")
                .args(["-s", "-m", "2", "-X", "POST", "-d", "{}"])
                .arg(format!("{}/v3/maintenance/status", self.client_url(i)))
                .output()
                .expect("running curl");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("etcd member m{i} status is not JSON ({e}): {body}"))
        };
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect();
        let statuses: Vec<_> = running.iter().map(|&i| (i, status(i))).collect();
        let leader = statuses.first().map(|(_, s)| s["leader"].clone()).expect("no etcd member is running");
        statuses
            .iter()
            .find(|(_, s)| s["header"]["member_id"] == leader)
            .map(|(i, _)| *i)
            .unwrap_or_else(|| panic!("no running member is the leader {leader}: {statuses:?}"))
    }

    /// SIGKILLs member `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of member `i`'s log.
    pub fn log(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
