//! Helpers for the `skiff builtin` tests: run a built-in program on loopback (`--bind-host
//! 127.0.0.1`, port 0), learn the addresses it bound from its log, talk to it with the real
//! `curl` and plain sockets, and signal it. Dropping a [`Program`] kills it.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

#[path = "../../../store/tests/support/ports.rs"]
mod ports;

#[allow(unused_imports)] // not every test binary uses it
pub use ports::free_ports;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Every wait in these tests ends after this long.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Program {
    child: Child,
    dir: tempfile::TempDir,
}

impl Program {
    /// Starts `skiff builtin --bind-host 127.0.0.1 <args…>` with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Program {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["builtin", "--bind-host", "127.0.0.1"])
            .args(args)
            .envs(env.iter().copied())
            // Programs that look for files in their working directory (porter's localhost.crt)
            // find only what a test puts there.
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting skiff builtin");
        Program { child, dir }
    }

    pub fn spawn(args: &[&str]) -> Program {
        Program::spawn_with_env(args, &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The address logged right after `marker` (e.g. "Started HTTP server on "), waiting for
    /// the line to appear.
    pub fn logged_addr(&mut self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.stderr();
            if let Some(at) = log.find(marker) {
                let token = log[at + marker.len()..].split_whitespace().next().unwrap_or_default();
                return token.parse().unwrap_or_else(|_| panic!("no address after {marker:?} in: {log}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("program exited with {status} before logging {marker:?}: {log}");
            }
            assert!(Instant::now() < deadline, "no {marker:?} in the log after {WAIT:?}: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `text` shows in stdout.
    pub fn wait_stdout(&mut self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stdout().contains(text) {
            assert!(Instant::now() < deadline, "no {text:?} on stdout: {}", self.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`TERM`, `INT`, `QUIT`) with the real `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the program to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "program still running after {WAIT:?}: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `skiff builtin <args…>` to completion: exit code, stdout, stderr.
pub fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let mut program = Program::spawn(args);
    let status = program.wait_exit();
    (status.code(), program.stdout(), program.stderr())
}

/// A response as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Requests `url` with the real curl (extra curl arguments allowed).
pub fn curl(url: &str, extra: &[&str]) -> Reply {
    let dir = tempfile::tempdir().expect("tempdir");
    let headers_file = dir.path().join("headers");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-D"])
        .arg(&headers_file)
        .args(extra)
        .arg(url)
        .output()
        .expect("running curl");
    assert!(output.status.success(), "curl {url} failed: {}", String::from_utf8_lossy(&output.stderr));
    let raw_headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
    // With -L there is one header block per response; the last one is the answer.
    let block = raw_headers.trim_end().rsplit("\r\n\r\n").next().unwrap_or_default();
    let mut lines = block.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: String::from_utf8_lossy(&output.stdout).into_owned() }
}

/// Sends one datagram from a new loopback socket and returns the answer.
pub fn udp_exchange(to: SocketAddr, payload: &[u8]) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket.send_to(payload, to).expect("udp send");
    let mut buffer = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buffer).expect("udp answer");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// The machine's host name, which the programs report (in a pod: the pod's name).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim_end().to_owned()
}

/// A loopback TCP port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
