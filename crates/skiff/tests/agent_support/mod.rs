//! A one-node cluster in network namespaces for the `skiff agent` tests.
//!
//! Layout (all names unique per test, removed on drop, also on panic):
//! - netns `skn<pid>-<n>` = the node: `lo` up, veth `skv<pid><n>a` = 172.31.0.2/24 (the
//!   node's InternalIP); `skiff server`, `skiff controllers` and `skiff agent` run inside it
//!   (via `nsenter --net`, keeping the machine's mount namespace, so the pods' namespaces
//!   under /run/netns are visible to the test), and so does kubectl. The server listens
//!   on the node IP, the address the `kubernetes` Service points at.
//! - netns `skq<pid>-<n>` = the underlay peer: the veth's other end, 172.31.0.1/24.
//! - pod namespaces `skag<pid>-<n>-<uid>`, created by the agent.
//!
//! Nothing is added to the machine's own network namespace.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const NODE_NAME: &str = "node-1";
pub const NODE_IP: &str = "172.31.0.2";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn run_ok(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The test cluster; see the module docs.
pub struct Cluster {
    pub node_ns: String,
    pub peer_ns: String,
    pub pod_ns_prefix: String,
    pub dir: tempfile::TempDir,
    /// A directory pods may write to (containers share the machine's filesystem).
    pub out: PathBuf,
    pub kubeconfig: PathBuf,
    server: Option<Child>,
    controllers: Option<Child>,
    agent: Option<Child>,
    agent_starts: u32,
}

impl Cluster {
    /// Creates the namespaces and starts server, controllers and agent; returns once the
    /// Node is Ready.
    pub fn start() -> Cluster {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let node_ns = format!("skn{pid}-{n}");
        let peer_ns = format!("skq{pid}-{n}");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("out dir");
        let mut cluster = Cluster {
            pod_ns_prefix: format!("skag{pid}-{n}-"),
            kubeconfig: dir.path().join("server/kubeconfig"),
            node_ns,
            peer_ns,
            dir,
            out,
            server: None,
            controllers: None,
            agent: None,
            agent_starts: 0,
        };
        cluster.create_namespaces(pid, n);
        cluster.start_server();
        cluster.start_controllers();
        cluster.start_agent();
        cluster.wait_node_ready();
        cluster
    }

    fn create_namespaces(&self, pid: u32, n: u32) {
        run_ok("ip", &["netns", "add", &self.node_ns]);
        run_ok("ip", &["netns", "add", &self.peer_ns]);
        let a = format!("skv{pid}{n}a");
        let b = format!("skv{pid}{n}b");
        run_ok(
            "ip",
            &["link", "add", &a, "netns", &self.node_ns, "type", "veth", "peer", "name", &b, "netns", &self.peer_ns],
        );
        for (ns, dev, addr) in [(&self.node_ns, &a, "172.31.0.2/24"), (&self.peer_ns, &b, "172.31.0.1/24")] {
            run_ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
            run_ok("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            run_ok("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// A command run inside the node's network namespace (machine mount namespace).
    pub fn in_node(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.node_ns)).arg("--").arg(program);
        c
    }

    fn skiff(&self, log: &str) -> Command {
        let mut c = self.in_node(env!("CARGO_BIN_EXE_skiff"));
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join(log)).expect("log file");
        c.stdout(Stdio::null()).stderr(log).env_remove("KUBECONFIG");
        c
    }

    fn start_server(&mut self) {
        let data = self.dir.path().join("server");
        let child = self
            .skiff("server.log")
            .args(["server", "--listen", &format!("{NODE_IP}:0"), "--data-dir"])
            .arg(&data)
            .spawn()
            .expect("starting skiff server");
        self.server = Some(child);
        self.eventually("the API server", Duration::from_secs(30), || {
            (self.kubeconfig.exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success()).then_some(())
        });
    }

    fn start_controllers(&mut self) {
        let child = self
            .skiff("controllers.log")
            .args(["controllers", "--cluster-cidr", "10.244.0.0/16", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .spawn()
            .expect("starting skiff controllers");
        self.controllers = Some(child);
    }

    /// (Re)starts the agent on the same data directory.
    pub fn start_agent(&mut self) {
        let command = self.in_node(env!("CARGO_BIN_EXE_skiff"));
        self.spawn_agent(command);
    }

    /// (Re)starts the agent the way `ip netns exec` launches programs: in a private mount
    /// namespace (the agent must re-enter ours so its pod namespaces stay visible).
    pub fn start_agent_with_ip_netns_exec(&mut self) {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.node_ns, env!("CARGO_BIN_EXE_skiff")]);
        self.spawn_agent(command);
    }

    fn spawn_agent(&mut self, mut command: Command) {
        self.agent_starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info,skiff_node=debug")
            .args(["agent", "--node-name", NODE_NAME, "--netns-prefix", &self.pod_ns_prefix])
            .args(["--metrics-listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--data-dir")
            .arg(self.dir.path().join("agent"))
            .spawn()
            .expect("starting skiff agent");
        self.agent = Some(child);
    }

    /// SIGKILLs the agent (its pods keep running).
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How many "node agent ready" lines the agent log has.
    pub fn agent_ready_count(&self) -> usize {
        self.agent_log().matches("node agent ready").count()
    }

    /// GETs `path` from the agent's metrics address (the latest "metrics listening" line).
    pub fn agent_http(&self, path: &str) -> String {
        let log = self.agent_log();
        let addr = log
            .lines()
            .filter(|l| l.contains("metrics listening"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .next_back()
            .expect("the agent logged its metrics address")
            .to_owned();
        let out = self.in_node("curl").args(["-s", "-S", &format!("http://{addr}{path}")]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn wait_node_ready(&self) {
        let starts = self.agent_starts as usize;
        self.eventually("the agent to be ready", Duration::from_secs(30), || {
            (self.agent_ready_count() >= starts).then_some(())
        });
        self.eventually("Node Ready", Duration::from_secs(30), || {
            let node = self.get_json(&["get", "node", NODE_NAME])?;
            let ready =
                node["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(())
        });
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut c = self.in_node("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args).env_remove("KUBECONFIG");
        c.output().expect("running kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl <args> -o json`, or None when kubectl fails (e.g. not found).
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.get_json(&["get", "pod", name])
    }

    pub fn apply(&self, manifest: &str) {
        let mut c = self.in_node("kubectl");
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(["apply", "-f", "-"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("kubectl apply");
        child.stdin.take().expect("stdin").write_all(manifest.as_bytes()).expect("writing manifest");
        let out = child.wait_with_output().expect("kubectl apply output");
        assert!(out.status.success(), "kubectl apply failed: {}\n{manifest}", String::from_utf8_lossy(&out.stderr));
    }

    /// Polls `check` every 100 ms until Some, failing the test after `timeout`.
    pub fn eventually<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nagent log (tail):\n{}",
                tail(&self.agent_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pod is Running with an IP and returns it.
    pub fn wait_running(&self, name: &str) -> Value {
        self.eventually(&format!("pod {name} Running"), Duration::from_secs(30), || {
            let pod = self.pod(name)?;
            (pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()).then_some(pod)
        })
    }

    pub fn wait_ready(&self, name: &str, ready: bool) -> Value {
        let want = if ready { "True" } else { "False" };
        self.eventually(&format!("pod {name} Ready={want}"), Duration::from_secs(30), || {
            let pod = self.pod(name)?;
            let cond = pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
            (cond["status"] == want).then_some(pod)
        })
    }

    pub fn wait_gone(&self, name: &str, timeout: Duration) {
        self.eventually(&format!("pod {name} gone"), timeout, || self.pod(name).is_none().then_some(()));
    }

    /// The pod's IP.
    pub fn pod_ip(&self, name: &str) -> String {
        self.wait_running(name)["status"]["podIP"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits for a file a pod writes into [`Cluster::out`] and returns its content.
    pub fn wait_file(&self, name: &str) -> String {
        let path = self.out.join(name);
        self.eventually(&format!("file {name}"), Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&path).ok()?;
            // Writers finish with a line "END"; partial files are not taken.
            text.strip_suffix("END\n").map(str::to_owned)
        })
    }

    /// The network namespaces the agent created for pods.
    pub fn pod_namespaces(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(&self.pod_ns_prefix))
            .collect();
        found.sort();
        found
    }

    /// Processes whose command line contains `marker` (to count container processes).
    pub fn processes_with(&self, marker: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) && !cmdline.contains("nsenter") {
                pids.push(pid);
            }
        }
        pids
    }

    /// Events about `object` (name) as "reason: message" lines.
    pub fn events_for(&self, object: &str) -> Vec<String> {
        let Some(list) = self.get_json(&["get", "events"]) else { return Vec::new() };
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["name"] == object)
            .map(|e| {
                format!("{}: {}", e["reason"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default())
            })
            .collect()
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill_namespace_processes(ns: &str) {
    let out = run("ip", &["netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_agent();
        for child in [self.controllers.take(), self.server.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.pod_namespaces() {
            kill_namespace_processes(&ns);
            let _ = run("ip", &["netns", "del", &ns]);
        }
        // Shims and hostNetwork containers live in the node namespace.
        kill_namespace_processes(&self.node_ns);
        let _ = run("ip", &["netns", "del", &self.node_ns]);
        let _ = run("ip", &["netns", "del", &self.peer_ns]);
        if std::env::var_os("SKIFF_KEEP_TEST_DIR").is_some() {
            if let Ok(empty) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, empty).keep();
                eprintln!("test dir kept at {}", kept.display());
            }
        }
    }
}

/// A pod manifest bound to the test node running `script` with /bin/sh.
pub fn sh_pod(name: &str, script: &str, extra_spec: &str) -> String {
    let script = serde_json::to_string(script).expect("json string");
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {{"app": "{name}"}}}},
  "spec": {{"nodeName": "{NODE_NAME}", "terminationGracePeriodSeconds": 2 {extra_spec},
    "containers": [{{"name": "main", "image": "busybox", "command": ["/bin/sh", "-c", {script}]}}]}}}}"#
    )
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
