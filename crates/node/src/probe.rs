//! Startup, readiness and liveness probes (httpGet, tcpSocket, exec), run from inside the
//! pod's network namespace with kubelet's timing rules: `initialDelaySeconds`, then every
//! `periodSeconds`, each attempt bounded by `timeoutSeconds`; `successThreshold` and
//! `failureThreshold` consecutive results flip the outcome. Readiness and liveness wait
//! until the startup probe (if any) has succeeded.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::sandbox::{connect_in_netns, SandboxSpec};

/// The container's probe results as the status reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub started: bool,
    pub ready: bool,
}

/// Where probes run.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub sandbox: SandboxSpec,
    pub pod_ip: IpAddr,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
}

/// Why a liveness or startup probe asks for a restart.
#[derive(Debug)]
pub struct Unhealthy {
    pub message: String,
}

/// Probes of one container instance; dropping it stops them.
pub struct Probes {
    pub state: Arc<Mutex<ProbeState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Probes {
    /// Starts the container's probes. `changed` is notified when [`ProbeState`] changes;
    /// `unhealthy` receives liveness/startup failures.
    pub fn start(
        container: &Container,
        target: ProbeTarget,
        changed: Arc<Notify>,
        unhealthy: mpsc::Sender<Unhealthy>,
    ) -> Probes {
        let has_startup = container.startup_probe.is_some();
        let initial = ProbeState { started: !has_startup, ready: !has_startup && container.readiness_probe.is_none() };
        let state = Arc::new(Mutex::new(initial));
        let started = Arc::new(tokio::sync::watch::Sender::new(!has_startup));
        let mut tasks = Vec::new();
        let spawn = |probe: Probe, kind: Kind, tasks: &mut Vec<_>| {
            let ctx = Runner {
                probe,
                kind,
                container: container.clone(),
                target: target.clone(),
                state: state.clone(),
                changed: changed.clone(),
                started: started.clone(),
                unhealthy: unhealthy.clone(),
            };
            tasks.push(tokio::spawn(ctx.run()));
        };
        if let Some(p) = container.startup_probe.clone() {
            spawn(p, Kind::Startup, &mut tasks);
        }
        if let Some(p) = container.readiness_probe.clone() {
            spawn(p, Kind::Readiness, &mut tasks);
        } else if has_startup {
            // Ready follows started when there is no readiness probe.
            let (state, changed, started) = (state.clone(), changed.clone(), started.clone());
            tasks.push(tokio::spawn(async move {
                let _ = started.subscribe().wait_for(|s| *s).await;
                set(&state, &changed, |s| s.ready = true);
            }));
        }
        if let Some(p) = container.liveness_probe.clone() {
            spawn(p, Kind::Liveness, &mut tasks);
        }
        Probes { state, tasks }
    }

    pub fn current(&self) -> ProbeState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn set(state: &Mutex<ProbeState>, changed: &Notify, f: impl FnOnce(&mut ProbeState)) {
    let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
    let before = *guard;
    f(&mut guard);
    if *guard != before {
        changed.notify_one();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Readiness,
    Liveness,
}

struct Runner {
    probe: Probe,
    kind: Kind,
    container: Container,
    target: ProbeTarget,
    state: Arc<Mutex<ProbeState>>,
    changed: Arc<Notify>,
    /// True once the startup probe (if any) succeeded.
    started: Arc<tokio::sync::watch::Sender<bool>>,
    unhealthy: mpsc::Sender<Unhealthy>,
}

fn seconds(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

impl Runner {
    async fn run(self) {
        if self.kind != Kind::Startup {
            let _ = self.started.subscribe().wait_for(|s| *s).await;
        }
        tokio::time::sleep(seconds(self.probe.initial_delay_seconds, 0, 0)).await;
        let period = seconds(self.probe.period_seconds, 10, 1);
        let timeout = seconds(self.probe.timeout_seconds, 1, 1);
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        let (mut successes, mut failures) = (0, 0);
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            let result = match tokio::time::timeout(timeout, self.attempt()).await {
                Ok(r) => r,
                Err(_) => Err(format!("probe timed out after {}s", timeout.as_secs())),
            };
            match result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    match self.kind {
                        Kind::Startup => {
                            set(&self.state, &self.changed, |s| s.started = true);
                            self.started.send_replace(true);
                            return;
                        }
                        Kind::Readiness if successes >= success_threshold => {
                            set(&self.state, &self.changed, |s| s.ready = true)
                        }
                        _ => {}
                    }
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    tracing::debug!(container = ?self.container.name, kind = ?self.kind, %message, "probe failed");
                    if failures >= failure_threshold {
                        match self.kind {
                            Kind::Readiness => set(&self.state, &self.changed, |s| s.ready = false),
                            Kind::Liveness | Kind::Startup => {
                                let what = if self.kind == Kind::Liveness { "Liveness" } else { "Startup" };
                                let _ = self
                                    .unhealthy
                                    .send(Unhealthy { message: format!("{what} probe failed: {message}") })
                                    .await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        if let Some(exec) = &self.probe.exec {
            let argv = exec.command.clone().unwrap_or_default();
            if argv.is_empty() {
                return Err("exec probe without a command".into());
            }
            let mut command = crate::agent::pod_command(
                &self.target.sandbox,
                &argv,
                &self.target.env,
                self.target.cwd.as_deref(),
                false,
            )
            .map_err(|e| e.to_string())?;
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let out = command.output().await.map_err(|e| e.to_string())?;
            return if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "command {argv:?} exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim()
                ))
            };
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let port = self.port(&tcp.port)?;
            let host = tcp.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(self.target.pod_ip);
            self.connect(SocketAddr::new(host, port)).await?;
            return Ok(());
        }
        if let Some(http) = &self.probe.http_get {
            let port = self.port(&http.port)?;
            let host = http.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(self.target.pod_ip);
            let stream = self.connect(SocketAddr::new(host, port)).await?;
            if http.scheme.as_deref() == Some("HTTPS") {
                // Like kubelet skips verification, skiff only checks that the port accepts.
                return Ok(());
            }
            let mut stream = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
            let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
            let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
            for header in http.http_headers.iter().flatten() {
                request.push_str(&format!("{}: {}\r\n", header.name, header.value));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut head = vec![0u8; 64];
            let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
            let line = String::from_utf8_lossy(&head[..n]).into_owned();
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad HTTP answer {line:?}"))?;
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        Err("probe has no handler skiff supports (exec, httpGet, tcpSocket)".into())
    }

    async fn connect(&self, addr: SocketAddr) -> Result<std::net::TcpStream, String> {
        let stream = connect_in_netns(self.target.sandbox.netns.clone(), addr, Duration::from_secs(5))
            .await
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(stream)
    }

    /// A port number, or a named container port.
    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
            IntOrString::String(name) => {
                if let Ok(n) = name.parse() {
                    return Ok(n);
                }
                self.container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name))
                    .and_then(|p| u16::try_from(p.container_port).ok())
                    .ok_or_else(|| format!("no container port named {name:?}"))
            }
        }
    }
}
