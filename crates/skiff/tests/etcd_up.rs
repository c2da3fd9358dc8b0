//! `skiff up --etcd URL --etcd-prefix P`: a local cluster whose API server keeps its state in an
//! external etcd. The node registers, and its Node object is in etcd under the prefix.
//!
//! Everything runs inside a network namespace the test creates (DESIGN.md §4): etcd on that
//! namespace's loopback, and `skiff up` without `--isolated`, so its underlay bridge and
//! nodes hang off that namespace instead of the machine's own.
//!
//! Needs root, `ip`, the `etcd` binary (Debian's etcd-server; `SKIFF_ETCD_BIN` overrides),
//! curl and kubectl.

mod cluster_support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster_support::Cluster;

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
const WAIT: Duration = Duration::from_secs(90);
const ETCD_URL: &str = "http://127.0.0.1:2379";

/// A network namespace owned by the test, deleted on drop (also on panic).
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("skeu-{}", std::process::id());
        // A namespace left by an earlier run of this pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add");
        assert!(ok.success(), "creating netns {name}");
        let ns = Netns(name);
        assert!(ns.command("ip").args(["link", "set", "lo", "up"]).status().expect("ip link").success());
        ns
    }

    /// `ip netns exec NS program`.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stdout_of(out: Output) -> Option<String> {
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every key etcd holds under `<prefix>/`, read through etcd's JSON gateway.
fn etcd_keys(ns: &Netns, prefix: &str) -> Vec<String> {
    let b64 = |s: &str| {
        let out = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = out.expect("base64");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("base64 input");
        String::from_utf8_lossy(&child.wait_with_output().expect("base64").stdout).into_owned()
    };
    let body = format!(
        r#"{{"key":"{}","range_end":"{}","keys_only":true}}"#,
        b64(&format!("{prefix}/")),
        b64(&format!("{prefix}0"))
    );
    let out = ns
        .command("curl")
        .args(["-s", "-m", "5", "-X", "POST", "-d", &body, &format!("{ETCD_URL}/v3/kv/range")])
        .output()
        .expect("curl");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    reply["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| kv["key"].as_str())
        .filter_map(|key| {
            let out = Command::new("sh").args(["-c", &format!("printf %s '{key}' | base64 -d")]).output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect()
}

#[test]
fn skiff_up_keeps_the_cluster_state_in_etcd() {
    // Not etcd's default prefix: `skiff up --etcd-prefix` must reach the server.
    const PREFIX: &str = "/skiff-test";
    let ns = Netns::create();
    let etcd_dir = tempfile::tempdir().expect("tempdir");
    let etcd_bin = std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned());
    let etcd = ns
        .command(&etcd_bin)
        .arg("--data-dir")
        .arg(etcd_dir.path().join("data"))
        .args(["--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-cluster", "default=http://127.0.0.1:2380", "--logger", "zap", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting etcd: install Debian's etcd-server");
    let _etcd = Process(etcd);

    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("eu{}", std::process::id());
    let mut command = ns.command(SKIFF);
    command.args(["up", "--name", &name, "--nodes", "1", "--etcd", ETCD_URL, "--etcd-prefix", PREFIX]);
    command.arg("--data-dir").arg(dir.path());
    let up = Cluster::start(command, name, dir);
    let dir = &up.dir;

    let server_log = std::fs::read_to_string(dir.path().join("logs").join("server.log")).unwrap_or_default();
    assert!(server_log.contains("etcd store connected"), "the server is not on etcd:\n{server_log}");
    let kubeconfig = dir.path().join("server").join("kubeconfig");
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = ns
            .command("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"])
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl");
        let keys = etcd_keys(&ns, PREFIX);
        if stdout_of(nodes).is_some_and(|n| n.contains("node-1")) && keys.iter().any(|k| k.ends_with("/node-1")) {
            break;
        }
        assert!(Instant::now() < deadline, "node-1 never appeared in etcd under {PREFIX}; keys: {keys:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
