//! One container of a pod, from first start to final stop: resolve its program and
//! environment, start instances under `skiff shim`, watch them exit, restart them per
//! `restartPolicy` with back-off, run its probes, and stop it gracefully (preStop, SIGTERM,
//! grace period, SIGKILL). Its state is published as a [`ContainerSnapshot`].

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};

use crate::agent::{pod_command, Agent};
use crate::env;
use crate::events::EventType;
use crate::image::{self, Program, NO_PROGRAM_REASON};
use crate::instance::{instances, now_rfc3339, ExitRecord, InstanceDir, Launch};
use crate::ipam::write_atomic;
use crate::probe::{ProbeTarget, Probes, Unhealthy};
use crate::sandbox::{signal_group, SandboxSpec};

/// How often a container's exit file is checked.
const POLL: Duration = Duration::from_millis(100);
/// Default PATH of a container whose env sets none (what images usually set).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container's state as Pod.status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSnapshot {
    pub name: String,
    pub image: String,
    pub restart_count: u32,
    /// A core/v1 ContainerState (`waiting`, `running` or `terminated`).
    pub state: Value,
    pub last_state: Value,
    pub ready: bool,
    pub started: bool,
    pub container_id: Option<String>,
    /// Set when the container has ended for good (no restart will follow): its exit code.
    pub finished: Option<i32>,
}

impl ContainerSnapshot {
    pub fn waiting(name: &str, image: &str, reason: &str, message: Option<&str>) -> ContainerSnapshot {
        let mut waiting = json!({"reason": reason});
        if let Some(m) = message {
            waiting["message"] = json!(m);
        }
        ContainerSnapshot {
            name: name.to_owned(),
            image: image.to_owned(),
            restart_count: 0,
            state: json!({"waiting": waiting}),
            last_state: json!({}),
            ready: false,
            started: false,
            container_id: None,
            finished: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.state.get("running").is_some()
    }
}

/// Sent to a runner to stop its container.
#[derive(Clone, Copy, Debug)]
pub struct StopRequest {
    pub grace: Duration,
}

/// Is this a regular or an init container (init containers end when they succeed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Main,
    Init,
}

/// Drives one container; see the module docs.
pub struct Runner {
    pub agent: Arc<Agent>,
    pub pod: Arc<Pod>,
    pub container: Container,
    pub role: Role,
    pub dir: PathBuf,
    pub sandbox: SandboxSpec,
    pub pod_ip: String,
    pub status: watch::Sender<ContainerSnapshot>,
    pub changed: Arc<Notify>,
    pub stop: watch::Receiver<Option<StopRequest>>,
}

enum Supervised {
    Exited(ExitRecord),
    Stopped,
}

fn container_id(pod_uid: &str, name: &str, index: u32) -> String {
    format!("skiff://{pod_uid}-{name}-{index}")
}

fn terminated_state(exit: &ExitRecord, id: &str) -> Value {
    let mut t =
        json!({"exitCode": exit.exit_code, "reason": exit.reason, "finishedAt": exit.finished_at, "containerID": id});
    if let Some(s) = &exit.started_at {
        t["startedAt"] = json!(s);
    }
    if let Some(sig) = exit.signal {
        t["signal"] = json!(sig);
    }
    if let Some(m) = &exit.message {
        t["message"] = json!(m);
    }
    json!({"terminated": t})
}

impl Runner {
    fn restart_policy(&self) -> &str {
        if self.role == Role::Init {
            // Init containers are retried unless the pod never restarts anything.
            return match self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
                Some("Never") => "Never",
                _ => "OnFailure",
            };
        }
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
    }

    fn uid(&self) -> String {
        self.pod.metadata.uid.clone().unwrap_or_default()
    }

    fn publish(&self, f: impl FnOnce(&mut ContainerSnapshot)) {
        let mut changed = false;
        self.status.send_if_modified(|snap| {
            let before = snap.clone();
            f(snap);
            changed = *snap != before;
            changed
        });
        if changed {
            self.changed.notify_one();
        }
    }

    fn stop_requested(&self) -> Option<StopRequest> {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or returns true early when a stop is requested.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        if self.stop_requested().is_some() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = async { let _ = self.stop.wait_for(|s| s.is_some()).await; } => true,
        }
    }

    pub async fn run(mut self) {
        let name = self.container.name.clone();
        let mut backoff_step: u32 = 0;
        let mut pending: Option<(u32, ExitRecord)> = None;
        let mut current: Option<InstanceDir> = None;
        // Re-adopt what a previous agent left behind.
        if let Some(latest) = instances(&self.dir).pop() {
            self.publish(|s| s.restart_count = latest.index);
            match latest.read_exit() {
                Some(exit) => pending = Some((latest.index, exit)),
                None if latest.live_pid().is_some() => current = Some(latest),
                None => pending = Some((latest.index, lost_exit(&latest))),
            }
        }
        loop {
            if self.stop_requested().is_some() {
                return;
            }
            if current.is_none() {
                if let Some((index, exit)) = pending.take() {
                    let id = container_id(&self.uid(), &name, index);
                    let terminated = terminated_state(&exit, &id);
                    let restart = match self.restart_policy() {
                        "Always" => true,
                        "OnFailure" => exit.exit_code != 0,
                        _ => false,
                    };
                    if !restart {
                        self.publish(|s| {
                            s.state = terminated.clone();
                            s.ready = false;
                            s.started = false;
                            s.container_id = Some(id.clone());
                            s.finished = Some(exit.exit_code);
                        });
                        let _ = self.stop.wait_for(|s| s.is_some()).await;
                        return;
                    }
                    let ran = ran_for(&exit);
                    if ran > Duration::from_secs(600) {
                        backoff_step = 0;
                    }
                    let delay = self.backoff_delay(backoff_step);
                    backoff_step += 1;
                    self.publish(|s| {
                        s.last_state = terminated.clone();
                        s.ready = false;
                        s.started = false;
                        s.container_id = Some(id.clone());
                    });
                    if !delay.is_zero() {
                        let message = format!(
                            "back-off {}s restarting failed container={name} pod={}_{}({})",
                            delay.as_secs(),
                            self.pod.metadata.name.clone().unwrap_or_default(),
                            self.pod.metadata.namespace.clone().unwrap_or_default(),
                            self.uid()
                        );
                        self.publish(|s| {
                            s.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}})
                        });
                        self.agent.event(
                            &self.pod,
                            Some(&name),
                            EventType::Warning,
                            "BackOff",
                            "Back-off restarting failed container",
                        );
                        if self.sleep_or_stop(delay).await {
                            return;
                        }
                    }
                }
                let next = instances(&self.dir).last().map(|i| i.index + 1).unwrap_or(0);
                match self.start(next).await {
                    Ok(instance) => {
                        self.agent.metrics.container_starts.fetch_add(1, Ordering::Relaxed);
                        current = Some(instance);
                    }
                    Err((reason, message, retry)) => {
                        self.agent.metrics.container_start_failures.fetch_add(1, Ordering::Relaxed);
                        self.publish(|s| {
                            s.state = json!({"waiting": {"reason": reason, "message": message}});
                            s.ready = false;
                        });
                        self.agent.event(
                            &self.pod,
                            Some(&name),
                            EventType::Warning,
                            "Failed",
                            &format!("Error: {message}"),
                        );
                        if self.sleep_or_stop(retry).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(instance) = current.take() else { continue };
            match self.supervise(&instance).await {
                Supervised::Exited(exit) => {
                    // Only right after a watched exit: the group id cannot have been reused yet.
                    kill_leftovers(&instance);
                    pending = Some((instance.index, exit));
                }
                Supervised::Stopped => return,
            }
        }
    }

    fn backoff_delay(&self, step: u32) -> Duration {
        if step == 0 {
            return Duration::ZERO;
        }
        let policy = self.agent.backoff;
        let factor = 1u32.checked_shl(step - 1).unwrap_or(u32::MAX);
        policy.initial.checked_mul(factor).unwrap_or(policy.max).min(policy.max)
    }

    /// Starts instance `index`; on failure, the waiting (reason, message, retry delay).
    async fn start(&mut self, index: u32) -> Result<InstanceDir, (String, String, Duration)> {
        let c = &self.container;
        let command = c.command.clone().unwrap_or_default();
        let args = c.args.clone().unwrap_or_default();
        let image = c.image.clone().unwrap_or_default();
        let argv = match image::resolve(&image, &command, &args, &self.agent.exe) {
            Program::Argv(argv) => argv,
            Program::Missing(message) => return Err((NO_PROGRAM_REASON.into(), message, Duration::from_secs(30))),
        };
        let env = self
            .environment()
            .await
            .map_err(|message| ("CreateContainerConfigError".to_owned(), message, Duration::from_secs(10)))?;
        // `$(VAR)` references in command and args expand from the container's environment.
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let argv: Vec<String> = argv.iter().map(|a| env::expand(a, lookup)).collect();
        let launch = Launch {
            argv,
            env,
            cwd: c.working_dir.clone(),
            sandbox: self.sandbox.clone(),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        };
        let instance = InstanceDir::new(&self.dir, index);
        let fail = |e: String| ("RunContainerError".to_owned(), e, Duration::from_secs(10));
        std::fs::create_dir_all(&instance.path).map_err(|e| fail(e.to_string()))?;
        let launch_json = serde_json::to_vec_pretty(&launch).map_err(|e| fail(e.to_string()))?;
        write_atomic(&instance.launch_path(), &launch_json).map_err(|e| fail(e.to_string()))?;
        self.spawn_shim(&instance).map_err(|e| fail(format!("starting the container supervisor: {e}")))?;
        // The shim writes the pid once the process runs, or an exit record if it cannot start.
        let deadline = Instant::now() + Duration::from_secs(10);
        while instance.read_pid().is_none() && instance.read_exit().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.publish(|s| s.restart_count = index);
        tracing::debug!(container = %self.container.name, pod = ?self.pod.metadata.name, index, "container started");
        self.agent.event(
            &self.pod,
            Some(&self.container.name),
            EventType::Normal,
            "Started",
            &format!("Started container {}", self.container.name),
        );
        Ok(instance)
    }

    fn spawn_shim(&self, instance: &InstanceDir) -> std::io::Result<()> {
        let log = std::fs::File::create(instance.path.join("shim.log"))?;
        let mut command = tokio::process::Command::new(&self.agent.exe);
        command
            .arg("shim")
            .arg("--instance")
            .arg(&instance.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .env_remove("RUST_LOG");
        // SAFETY: setsid(2) is async-signal-safe; it only detaches the shim into its own
        // session so it outlives the agent and its process group.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        // Reap the shim when it ends (while this agent runs; afterwards init does).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// The container's environment: env/envFrom plus the service variables of the Services
    /// that exist now.
    async fn environment(&self) -> Result<Vec<(String, String)>, String> {
        let client = &self.agent.client;
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let (config_maps, secrets) = env::referenced_objects(&self.container);
        let mut sources =
            env::Sources { pod_ip: self.pod_ip.clone(), host_ip: self.agent.node_ip.to_string(), ..Default::default() };
        let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        for name in config_maps {
            let found = cm_api.get_opt(&name).await.map_err(|e| format!("reading configmap {name:?}: {e}"))?;
            sources.config_maps.insert(name, found);
        }
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        for name in secrets {
            let found = secret_api.get_opt(&name).await.map_err(|e| format!("reading secret {name:?}: {e}"))?;
            sources.secrets.insert(name, found);
        }
        let links = self.pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let services: Vec<Service> = if links {
            let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
            api.list(&ListParams::default()).await.map_err(|e| format!("listing services: {e}"))?.items
        } else {
            Vec::new()
        };
        let default_api: Api<Service> = Api::namespaced(client.clone(), "default");
        let kubernetes =
            default_api.get_opt("kubernetes").await.map_err(|e| format!("reading default/kubernetes: {e}"))?;
        let service_env = env::service_env(&namespace, &services, kubernetes.as_ref(), links);
        let mut vars = env::container_env(&self.pod, &self.container, &sources, &service_env)?;
        let hostname = self.sandbox.hostname.clone().unwrap_or_else(|| self.agent.node_name.clone());
        for (name, value) in [("PATH", DEFAULT_PATH.to_owned()), ("HOSTNAME", hostname), ("HOME", "/root".to_owned())] {
            if !vars.iter().any(|(k, _)| k == name) {
                vars.insert(0, (name.to_owned(), value));
            }
        }
        Ok(vars)
    }

    /// Watches a running instance until it exits or the container is stopped.
    async fn supervise(&mut self, instance: &InstanceDir) -> Supervised {
        let id = container_id(&self.uid(), &self.container.name, instance.index);
        let started_at = instance.read_pid().map(|p| p.started_at).unwrap_or_else(now_rfc3339);
        if let Some(exit) = instance.read_exit() {
            return Supervised::Exited(exit);
        }
        let launch = instance.read_launch();
        let target = ProbeTarget {
            sandbox: self.sandbox.clone(),
            pod_ip: self.pod_ip.parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            env: launch.as_ref().map(|l| l.env.clone()).unwrap_or_default(),
            cwd: launch.as_ref().and_then(|l| l.cwd.clone()),
        };
        let probe_changed = Arc::new(Notify::new());
        let (unhealthy_tx, mut unhealthy_rx) = mpsc::channel::<Unhealthy>(1);
        let probes = Probes::start(&self.container, target, probe_changed.clone(), unhealthy_tx);
        let initial = probes.current();
        self.publish(|s| {
            s.state = json!({"running": {"startedAt": started_at}});
            s.ready = initial.ready;
            s.started = initial.started;
            s.container_id = Some(id.clone());
            s.restart_count = instance.index;
        });
        let mut missing_since: Option<Instant> = None;
        let mut stop = self.stop.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {
                    if let Some(exit) = instance.read_exit() {
                        return Supervised::Exited(exit);
                    }
                    // The shim died without recording an exit (killed): once the container
                    // process is gone too, record it as lost.
                    if instance.live_pid().is_none() {
                        let since = *missing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            let exit = lost_exit(instance);
                            let _ = write_atomic(&instance.exit_path(), &serde_json::to_vec(&exit).unwrap_or_default());
                            return Supervised::Exited(exit);
                        }
                    } else {
                        missing_since = None;
                    }
                }
                _ = probe_changed.notified() => {
                    let now = probes.current();
                    self.publish(|s| { s.ready = now.ready; s.started = now.started; });
                }
                Some(unhealthy) = unhealthy_rx.recv() => {
                    let name = self.container.name.clone();
                    self.agent.event(&self.pod, Some(&name), EventType::Warning, "Unhealthy", &unhealthy.message);
                    self.agent.event(&self.pod, Some(&name), EventType::Normal, "Killing",
                        &format!("Container {name} failed its probe, will be restarted"));
                    self.publish(|s| s.ready = false);
                    let grace = self.pod_grace();
                    self.kill(instance, grace, false).await;
                }
                _ = async { let _ = stop.wait_for(|s| s.is_some()).await; } => {
                    let grace = self.stop_requested().map(|s| s.grace).unwrap_or_default();
                    drop(probes);
                    self.publish(|s| s.ready = false);
                    self.kill(instance, grace, true).await;
                    if let Some(exit) = instance.read_exit() {
                        let terminated = terminated_state(&exit, &id);
                        self.publish(|s| { s.state = terminated; s.started = false; });
                    }
                    return Supervised::Stopped;
                }
            }
        }
    }

    fn pod_grace(&self) -> Duration {
        let secs = self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// preStop (when asked), SIGTERM, up to `grace`, then SIGKILL; returns once the exit is
    /// recorded (or after a bounded wait).
    async fn kill(&self, instance: &InstanceDir, grace: Duration, pre_stop: bool) {
        let deadline = Instant::now() + grace;
        // The container leads its own process group; its pid stays reserved as the group id
        // while any member lives, so signalling the group never hits an unrelated process.
        let group = instance.read_pid().map(|p| p.pid);
        if instance.read_exit().is_none() {
            if pre_stop {
                self.run_pre_stop(instance, grace).await;
            }
            if let Some(pid) = group {
                signal_group(pid, libc::SIGTERM);
            }
            while instance.read_exit().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // SIGKILL whatever is left: the main process after the grace period, and background
        // processes it left behind.
        if let Some(pid) = group {
            signal_group(pid, libc::SIGKILL);
        }
        let hard = Instant::now() + Duration::from_secs(5);
        while instance.read_exit().is_none() && Instant::now() < hard {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run_pre_stop(&self, instance: &InstanceDir, grace: Duration) {
        let Some(handler) = self.container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return };
        let Some(exec) = &handler.exec else {
            if let Some(sleep) = &handler.sleep {
                tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(grace)).await;
            }
            return;
        };
        let argv = exec.command.clone().unwrap_or_default();
        let launch = instance.read_launch();
        let env = launch.as_ref().map(|l| l.env.clone()).unwrap_or_default();
        let cwd = launch.as_ref().and_then(|l| l.cwd.clone());
        match pod_command(&self.sandbox, &argv, &env, cwd.as_deref(), false) {
            Ok(mut command) => {
                command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                match tokio::time::timeout(grace, command.status()).await {
                    Ok(Ok(status)) if status.success() => {}
                    other => {
                        let message = format!("PreStopHook {argv:?} failed: {other:?}");
                        self.agent.event(
                            &self.pod,
                            Some(&self.container.name),
                            EventType::Warning,
                            "FailedPreStopHook",
                            &message,
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "preStop hook could not start"),
        }
    }
}

/// SIGKILLs what an ended instance left running in its process group (background
/// processes of a shell, for instance).
fn kill_leftovers(instance: &InstanceDir) {
    if let Some(record) = instance.read_pid() {
        signal_group(record.pid, libc::SIGKILL);
    }
}

/// The exit of an instance whose supervisor vanished without recording one.
fn lost_exit(instance: &InstanceDir) -> ExitRecord {
    ExitRecord {
        exit_code: 137,
        signal: None,
        reason: "Error".into(),
        message: Some("the container's supervisor ended without recording an exit status".into()),
        started_at: instance.read_pid().map(|p| p.started_at),
        finished_at: now_rfc3339(),
    }
}

fn ran_for(exit: &ExitRecord) -> Duration {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (exit.started_at.as_deref().and_then(parse), parse(&exit.finished_at)) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}
