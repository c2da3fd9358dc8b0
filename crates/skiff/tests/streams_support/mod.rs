//! An in-test node for the streaming subresources: the real kubelet API server of
//! `skiff-streams` (TLS, WebSocket, SPDY — the protocols under test) on 127.0.0.1, with a
//! small [`PodRuntime`] that runs exec'd commands as host processes, forwards ports to
//! 127.0.0.1 and serves logs kept in memory. [`Cluster`] adds a `skiff server` with a Node
//! pointing at it and pods bound to that node.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use futures::FutureExt;
use skiff_streams::{
    ExecRequest, ExecSession, ExitOutcome, KubeletTls, LogOptions, PodRef, PodRuntime, RuntimeError, TerminalSize,
};
use tokio::sync::{mpsc, watch};

use crate::common::TestServer;

/// One container's log: timestamped lines, and whether the container still writes to it.
#[derive(Clone, Default)]
struct LogBook {
    lines: Vec<(chrono::DateTime<chrono::Utc>, String)>,
    ended: bool,
}

/// The test runtime: pods are names, containers are processes on the host.
#[derive(Default)]
pub struct TestRuntime {
    /// `ns/pod` → container names.
    pods: Mutex<HashMap<String, Vec<String>>>,
    /// `ns/pod/container` → current log.
    logs: Mutex<HashMap<String, watch::Sender<LogBook>>>,
    /// `ns/pod/container` → the previous instance's log.
    previous: Mutex<HashMap<String, Vec<String>>>,
    /// Terminal sizes received from exec clients.
    pub resizes: Arc<Mutex<Vec<TerminalSize>>>,
}

fn pod_key(pod: &PodRef) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

impl TestRuntime {
    pub fn add_pod(&self, namespace: &str, name: &str, containers: &[&str]) {
        let names = containers.iter().map(|c| c.to_string()).collect();
        self.pods.lock().unwrap().insert(format!("{namespace}/{name}"), names);
    }

    fn log_book(&self, key: &str) -> watch::Sender<LogBook> {
        self.logs.lock().unwrap().entry(key.to_string()).or_insert_with(|| watch::channel(LogBook::default()).0).clone()
    }

    /// Appends a line to a container's current log.
    pub fn log(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        let now = chrono::Utc::now();
        self.log_book(&format!("{namespace}/{pod}/{container}")).send_modify(|b| b.lines.push((now, line.to_string())));
    }

    /// Marks a container's log finished (a followed log ends).
    pub fn end_log(&self, namespace: &str, pod: &str, container: &str) {
        self.log_book(&format!("{namespace}/{pod}/{container}")).send_modify(|b| b.ended = true);
    }

    pub fn set_previous(&self, namespace: &str, pod: &str, container: &str, lines: &[&str]) {
        let lines = lines.iter().map(|l| l.to_string()).collect();
        self.previous.lock().unwrap().insert(format!("{namespace}/{pod}/{container}"), lines);
    }

    fn check(&self, pod: &PodRef, container: Option<&str>) -> Result<(), RuntimeError> {
        let pods = self.pods.lock().unwrap();
        let containers = pods.get(&pod_key(pod)).ok_or_else(|| RuntimeError::PodNotFound(pod_key(pod)))?;
        match container {
            Some(c) if !containers.iter().any(|n| n == c) => Err(RuntimeError::ContainerNotFound(c.to_string())),
            _ => Ok(()),
        }
    }
}

/// Renders log lines as kubelet does: optional RFC 3339 timestamp, newline-terminated.
fn render(line: &(chrono::DateTime<chrono::Utc>, String), timestamps: bool) -> String {
    if timestamps {
        format!("{} {}\n", line.0.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), line.1)
    } else {
        format!("{}\n", line.1)
    }
}

/// Cuts `text` to what `limit` still allows, updating it.
fn limit(mut text: String, remaining: &mut Option<u64>) -> String {
    if let Some(left) = remaining {
        if text.len() as u64 > *left {
            text.truncate(*left as usize);
        }
        *left -= text.len() as u64;
    }
    text
}

/// Quotes words for `sh -c`.
fn shell_words(words: &[String]) -> String {
    words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl PodRuntime for TestRuntime {
    async fn exec(&self, pod: &PodRef, container: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.check(pod, Some(container))?;
        let mut cmd = if request.tty {
            // `script` gives the command a terminal; its own stdio stay pipes.
            let mut c = tokio::process::Command::new("script");
            c.args(["-qfec", &shell_words(&request.command), "/dev/null"]);
            c
        } else {
            let (program, args) =
                request.command.split_first().ok_or(RuntimeError::BadRequest("empty command".into()))?;
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        };
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(piped(request.stdin)).stdout(piped(request.stdout)).stderr(piped(request.stderr)).kill_on_drop(true);
        let mut child =
            cmd.spawn().map_err(|e| RuntimeError::Internal(format!("starting {:?}: {e}", request.command)))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
        let resize = request.tty.then(|| {
            let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
            let sink = self.resizes.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    sink.lock().unwrap().push(size);
                }
            });
            tx
        });
        let exit = async move {
            match child.wait().await {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => ExitOutcome::Code(code),
                    (None, Some(signal)) => ExitOutcome::Signal(signal),
                    (None, None) => ExitOutcome::Error("unknown exit status".into()),
                },
                Err(e) => ExitOutcome::Error(e.to_string()),
            }
        }
        .boxed();
        Ok(ExecSession { stdin, stdout, stderr, resize, exit })
    }

    async fn attach(&self, pod: &PodRef, container: &str, _: ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.check(pod, Some(container))?;
        // Containers here are only log books; attach is tested against the real agent.
        Err(RuntimeError::BadRequest("this test runtime has no container processes to attach to".into()))
    }

    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        self.check(pod, None)?;
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| RuntimeError::Internal(format!("connecting to port {port}: {e}")))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, RuntimeError> {
        self.check(pod, Some(container))?;
        let key = format!("{}/{container}", pod_key(pod));
        let mut remaining = options.limit_bytes;
        if options.previous {
            let previous = self.previous.lock().unwrap().get(&key).cloned().ok_or_else(|| {
                RuntimeError::BadRequest(format!(
                    "previous terminated container {container:?} in pod {:?} not found",
                    pod.name
                ))
            })?;
            let text: String = previous.iter().map(|l| format!("{l}\n")).collect();
            return Ok(stream::iter([Ok(Bytes::from(limit(text, &mut remaining)))]).boxed());
        }
        let mut book = self.log_book(&key).subscribe();
        let current = book.borrow_and_update().clone();
        let since = options
            .since_time
            .or_else(|| options.since_seconds.map(|s| chrono::Utc::now() - chrono::Duration::seconds(s as i64)));
        let mut lines: Vec<_> = current.lines.iter().filter(|(t, _)| since.is_none_or(|s| *t >= s)).collect();
        if let Some(n) = options.tail_lines {
            let skip = lines.len().saturating_sub(n as usize);
            lines.drain(..skip);
        }
        let text: String = lines.iter().map(|l| render(l, options.timestamps)).collect();
        let first = Bytes::from(limit(text, &mut remaining));
        if !options.follow {
            return Ok(stream::iter([Ok(first)]).boxed());
        }
        // Followed: then every line appended later, until the log ends or the limit is used up.
        let sent = current.lines.len();
        let timestamps = options.timestamps;
        let rest = stream::unfold((book, sent, remaining), move |(mut book, mut sent, mut remaining)| async move {
            loop {
                if remaining == Some(0) {
                    return None;
                }
                let snapshot = book.borrow_and_update().clone();
                if snapshot.lines.len() > sent {
                    let text: String = snapshot.lines[sent..].iter().map(|l| render(l, timestamps)).collect();
                    sent = snapshot.lines.len();
                    let chunk = Bytes::from(limit(text, &mut remaining));
                    return Some((Ok(chunk), (book, sent, remaining)));
                }
                if snapshot.ended || book.changed().await.is_err() {
                    return None;
                }
            }
        });
        Ok(stream::iter([Ok(first)]).chain(rest).boxed())
    }
}

/// The kubelet API on 127.0.0.1 with a [`TestRuntime`], running on its own tokio runtime.
pub struct TestKubelet {
    pub port: u16,
    pub runtime: Arc<TestRuntime>,
    _tokio: tokio::runtime::Runtime,
}

impl TestKubelet {
    /// Serves with a self-signed certificate, accepting clients signed by `client_ca_pem`.
    pub fn start(client_ca_pem: &str) -> TestKubelet {
        let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let runtime = Arc::new(TestRuntime::default());
        let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("binding the kubelet API");
        let port = listener.local_addr().unwrap().port();
        let tls = KubeletTls::self_signed(client_ca_pem, vec!["127.0.0.1".into()]);
        let served: Arc<dyn PodRuntime> = runtime.clone();
        tokio.spawn(async move {
            if let Err(e) = skiff_streams::serve(listener, tls, served).await {
                eprintln!("kubelet API failed: {e:#}");
            }
        });
        TestKubelet { port, runtime, _tokio: tokio }
    }
}

/// A `skiff server`, a Node `node-1` whose kubelet API is a [`TestKubelet`], and pods on it.
pub struct Cluster {
    pub server: TestServer,
    pub kubelet: TestKubelet,
}

impl Cluster {
    pub fn start() -> Cluster {
        let server = TestServer::start();
        let ca = std::fs::read_to_string(server.ca_cert()).expect("reading the cluster CA");
        let kubelet = TestKubelet::start(&ca);
        server.apply("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n");
        let status = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        }});
        server.kubectl_ok(&[
            "patch",
            "node",
            "node-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        Cluster { server, kubelet }
    }

    /// Creates a running pod on node-1 (or unscheduled with `node: None`) and registers it with
    /// the runtime.
    pub fn pod(&self, name: &str, containers: &[&str], node: Option<&str>, annotations: &[(&str, &str)]) {
        let containers_json: Vec<_> =
            containers.iter().map(|c| serde_json::json!({"name": c, "image": "busybox"})).collect();
        let annotations: serde_json::Map<_, _> =
            annotations.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        let mut pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"containers": containers_json},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = serde_json::json!(node);
        }
        self.server.apply(&pod.to_string());
        let status = serde_json::json!({"status": {"phase": "Running"}}).to_string();
        self.server.kubectl_ok(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &status]);
        self.kubelet.runtime.add_pod("default", name, containers);
    }
}
