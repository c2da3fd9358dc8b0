//! An isolated `skiff up` cluster per test: a unique name, its own data directory, kubectl
//! and clients run inside the cluster's sandbox with `skiff run` (DESIGN.md §4: nothing is
//! sent to cluster addresses from the machine's own namespace). Dropping the handle stops the
//! cluster (SIGTERM, as Ctrl-C would) and then runs `skiff down` in case anything was left.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");

/// The agnhost image tests run (skiff's built-in agnhost).
pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.47";

/// A Deployment of agnhost netexec pods (HTTP 8080, UDP 8081), Ready once /healthz answers.
pub fn netexec_deployment(name: &str, replicas: usize) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: netexec
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"#
    )
}

pub struct Cluster {
    pub name: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every line `skiff up` printed so far.
    output: mpsc::Receiver<String>,
    pub printed: Vec<String>,
}

impl Cluster {
    /// Starts `skiff up --isolated` with `nodes` nodes and waits for its `ready` line.
    pub fn up(nodes: usize, proxy_mode: &str) -> Cluster {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(SKIFF);
        command
            .args(["up", "--isolated", "--name", &name, "--nodes", &nodes.to_string(), "--proxy-mode", proxy_mode])
            .arg("--data-dir")
            .arg(dir.path());
        Cluster::start(command, name, dir)
    }

    /// Runs a prepared `skiff up` command (named `name`, `--data-dir` set to `dir`) and waits
    /// for its `ready` line; dropping the result stops the cluster and runs `skiff down`.
    pub fn start(mut command: Command, name: String, dir: tempfile::TempDir) -> Cluster {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("starting skiff up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut cluster = Cluster { name, dir, child: Some(child), output: rx, printed: Vec::new() };
        cluster.wait_for_line(Duration::from_secs(90), |l| l.starts_with("ready"));
        cluster
    }

    /// Waits for a printed line matching `want` (panics with everything printed otherwise).
    pub fn wait_for_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "skiff up never printed the expected line; printed:\n{}\nlogs:\n{}",
                    self.printed.join("\n"),
                    self.logs()
                ),
            }
        }
    }

    /// The tail of every component log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out += &format!(
                    "--- {}\n{}\n",
                    entry.path().display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                );
            }
        }
        out
    }

    /// `skiff run --name <cluster> -- ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(SKIFF).args(["run", "--name", &self.name, "--"]).args(args).output().expect("skiff run")
    }

    /// Like [`Cluster::run`], panicking on failure; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all = vec!["kubectl"];
        all.extend_from_slice(args);
        self.run_ok(&all)
    }

    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl printed JSON")
    }

    pub fn apply(&self, manifest: &str) {
        let mut child = Command::new(SKIFF)
            .args(["run", "--name", &self.name, "--", "kubectl", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl apply");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("writing the manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(out.status.success(), "kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Polls `check` every 100 ms until it returns Some (panics after `timeout`).
    pub fn eventually<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pods matching `selector` that are Running and Ready, with their IPs and nodes.
    pub fn ready_pods(&self, selector: &str) -> Vec<(String, String, String)> {
        let list = self.kubectl_json(&["get", "pods", "-l", selector]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .map(|p| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (s(&p["metadata"]["name"]), s(&p["status"]["podIP"]), s(&p["spec"]["nodeName"]))
            })
            .collect()
    }

    /// Stops `skiff up` with SIGTERM and waits for it to finish its cleanup.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("cluster running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for skiff up") {
                while let Ok(line) = self.output.try_recv() {
                    self.printed.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("skiff up did not stop within 60 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `skiff up` with SIGKILL (as a crash would), leaving everything behind.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("cluster running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Network namespaces named after this cluster.
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("skiff-{}", self.name);
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n == &prefix || n.starts_with(&format!("{prefix}-")))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let _ = Command::new(SKIFF).args(["down", "--name", &self.name]).output();
    }
}
