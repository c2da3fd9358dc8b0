//! One pod on this node, from acceptance to removal: sandbox (network namespace, IP, the
//! pod's /etc files, service-account token), init containers one after the other, then
//! the regular containers, Pod.status written whenever it changes, and on deletion a
//! graceful stop followed by the final delete (grace 0, as kubelet does) and teardown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::agent::{Agent, PodView};
use crate::container::{ContainerSnapshot, Role, Runner, StopRequest};
use crate::events::EventType;
use crate::instance::now_rfc3339;
use crate::ipam::write_atomic;
use crate::network::{NodeNetwork, SandboxNames};
use crate::podfiles;
use crate::sandbox::{Bind, SandboxSpec, SERVICE_ACCOUNT_DIR};
use crate::serviceaccount;
use crate::state::{PodDir, PodRecord};
use crate::status::{pod_status, StatusInput};

/// How soon after setup the service-account token is renewed the first time (then at 80%
/// of its lifetime).
const TOKEN_CHECK: Duration = Duration::from_secs(600);

/// The latest Pod from the watch, or None once it is gone from the API.
pub type PodUpdates = watch::Receiver<Option<Pod>>;

struct RunnerHandle {
    status: watch::Receiver<ContainerSnapshot>,
    stop: watch::Sender<Option<StopRequest>>,
    task: tokio::task::JoinHandle<()>,
}

/// Drives the pod until it is deleted and torn down.
pub async fn run(agent: Arc<Agent>, mut updates: PodUpdates) {
    let Some(pod) = updates.borrow().clone() else { return };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let key = (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
    let dir = PodDir::new(&agent.data_dir, &uid);
    let terminal = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    let record = dir.read_record();
    if terminal && record.as_ref().is_none_or(|r| r.network_released) {
        // A finished pod whose sandbox is gone: only its logs (while the directory lasts)
        // and its deletion are left. Never set it up again (its IP may be someone else's).
        let view = record.as_ref().map(|r| finished_view(&uid, &dir, r, &pod));
        if let (Some(view), Ok(mut pods)) = (view, agent.pods.lock()) {
            pods.insert(key.clone(), Arc::new(view));
        }
        wait_for_deletion(&mut updates).await;
        if let Ok(mut pods) = agent.pods.lock() {
            if pods.get(&key).is_some_and(|v| v.uid == uid) {
                pods.remove(&key);
            }
        }
        finish_deletion(&agent, &pod).await;
        teardown(&agent, &dir, record.as_ref()).await;
        return;
    }
    let accepted = std::time::Instant::now();
    let record = loop {
        if deleting(&updates) {
            break None;
        }
        match prepare(&agent, &pod, &dir).await {
            Ok(record) => {
                tracing::debug!(pod = ?key, ip = ?record.ip, ms = accepted.elapsed().as_millis() as u64, "pod sandbox ready");
                break Some(record);
            }
            Err(e) => {
                tracing::warn!(pod = ?key, error = %format!("{e:#}"), "pod sandbox setup failed; retrying");
                agent.event(
                    &pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e:#}"),
                );
                agent.metrics.sandbox_failures.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = updates.changed() => {}
                }
            }
        }
    };
    let Some(record) = record else {
        teardown(&agent, &dir, None).await;
        if updates.borrow().is_some() {
            finish_deletion(&agent, &pod).await;
        }
        return;
    };
    let sandbox = sandbox_spec(&record, &dir, &pod);
    let view = finished_view(&uid, &dir, &record, &pod);
    if let Ok(mut pods) = agent.pods.lock() {
        pods.insert(key.clone(), Arc::new(view));
    }
    agent.metrics.pods.fetch_add(1, Ordering::Relaxed);
    let mut worker = Worker {
        agent: agent.clone(),
        pod: Arc::new(pod),
        dir: dir.clone(),
        record,
        sandbox,
        changed: Arc::new(Notify::new()),
        init: Vec::new(),
        main: Vec::new(),
        last_written: None,
        accepted: Some(accepted),
    };
    let deleted_from_api = worker.run_until_deleted(&mut updates).await;
    agent.metrics.pods.fetch_sub(1, Ordering::Relaxed);
    if let Ok(mut pods) = agent.pods.lock() {
        if pods.get(&key).map(|v| v.uid == uid).unwrap_or(false) {
            pods.remove(&key);
        }
    }
    if !deleted_from_api {
        finish_deletion(&agent, &worker.pod).await;
    }
    teardown(&agent, &dir, Some(&worker.record)).await;
}

/// What the kubelet API (logs, exec, attach) knows of a pod.
fn finished_view(uid: &str, dir: &PodDir, record: &PodRecord, pod: &Pod) -> PodView {
    PodView {
        uid: uid.to_owned(),
        dir: dir.clone(),
        sandbox: sandbox_spec(record, dir, pod),
        containers: all_containers(pod).iter().map(|c| c.name.clone()).collect(),
    }
}

fn deleting(updates: &PodUpdates) -> bool {
    match &*updates.borrow() {
        None => true,
        Some(pod) => pod.metadata.deletion_timestamp.is_some(),
    }
}

async fn wait_for_deletion(updates: &mut PodUpdates) {
    while !deleting(updates) {
        if updates.changed().await.is_err() {
            return;
        }
    }
}

/// Deletes the Pod object for good once its containers are stopped.
async fn finish_deletion(agent: &Agent, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "final pod delete failed"),
    }
}

/// Removes the sandbox, frees the IP and deletes the pod directory.
pub async fn teardown(agent: &Agent, dir: &PodDir, record: Option<&PodRecord>) {
    let record = record.cloned().or_else(|| dir.read_record());
    if let Some(r) = &record {
        if let (Some(netns), Some(veth)) = (&r.netns, &r.host_veth) {
            let names = SandboxNames { netns: netns.clone(), host_veth: veth.clone() };
            if let Err(e) = NodeNetwork::delete_sandbox(&names).await {
                tracing::warn!(netns = %netns, error = %e, "removing the pod network namespace failed");
            }
        }
        if let Err(e) = agent.ipam.release(&r.uid) {
            tracing::warn!(error = %e, "releasing the pod IP failed");
        }
    }
    let _ = std::fs::remove_dir_all(&dir.0);
}

/// Creates (or re-adopts) the pod's sandbox and files.
async fn prepare(agent: &Agent, pod: &Pod, dir: &PodDir) -> Result<PodRecord> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let mut record = match dir.read_record() {
        Some(r) => r,
        None => {
            let names = SandboxNames::new(&agent.netns_prefix, &uid.replace('-', ""));
            let start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(now_rfc3339);
            PodRecord {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: uid.clone(),
                host_network,
                ip: None,
                netns: (!host_network).then(|| names.netns.clone()),
                host_veth: (!host_network).then(|| names.host_veth.clone()),
                sandbox_ready: host_network,
                start_time,
                network_released: false,
            }
        }
    };
    if !record.host_network {
        if record.ip.is_none() {
            record.ip = Some(agent.ipam.allocate(&uid)?);
        }
        dir.write_record(&record)?;
        let names = SandboxNames {
            netns: record.netns.clone().context("pod record without a netns")?,
            host_veth: record.host_veth.clone().context("pod record without a veth")?,
        };
        if !record.sandbox_ready || !names.netns_path().exists() {
            let waited = std::time::Instant::now();
            let _slot = agent.sandbox_slots.acquire().await?;
            let ip = record.ip.context("no pod IP")?;
            let began = std::time::Instant::now();
            agent.network.create_sandbox(&names, ip).await?;
            agent.metrics.observe_sandbox_setup(began.elapsed());
            tracing::debug!(
                netns = %names.netns,
                queued_ms = (began - waited).as_millis() as u64,
                setup_ms = began.elapsed().as_millis() as u64,
                "network namespace created"
            );
            record.sandbox_ready = true;
        }
    }
    dir.write_record(&record)?;
    write_pod_files(agent, pod, dir, &record).await?;
    Ok(record)
}

async fn write_pod_files(agent: &Agent, pod: &Pod, dir: &PodDir, record: &PodRecord) -> Result<()> {
    let etc = dir.etc();
    std::fs::create_dir_all(&etc)?;
    let resolv = podfiles::resolv_conf(pod, &agent.dns, &agent.node_resolv);
    write_atomic(&etc.join("resolv.conf"), resolv.render().as_bytes())?;
    let ip = record.ip.map(|ip| ip.to_string()).unwrap_or_else(|| agent.node_ip.to_string());
    let hosts = podfiles::hosts_file(pod, &ip, &agent.dns.cluster_domain, &agent.node_hosts);
    write_atomic(&etc.join("hosts"), hosts.as_bytes())?;
    if serviceaccount::wants_token(pod) {
        std::fs::create_dir_all(dir.service_account())?;
        // The mount point must exist on the node's filesystem (like /run/netns for ip netns).
        std::fs::create_dir_all(SERVICE_ACCOUNT_DIR).context("creating the service-account mount point")?;
        write_token(agent, pod, dir).await;
    }
    Ok(())
}

/// (Re)writes the service-account files; returns when the token should be refreshed, or
/// None when there is no token to refresh.
async fn write_token(agent: &Agent, pod: &Pod, dir: &PodDir) -> Option<Duration> {
    let written = serviceaccount::write_files(
        &agent.client,
        pod,
        &agent.ca_pem,
        &dir.service_account(),
        &agent.token_api_missing,
    )
    .await;
    match written {
        Ok(refresh) => Some(refresh),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no service-account token for the pod");
            agent.event(pod, None, EventType::Warning, "FailedMount", &format!("service account token: {e:#}"));
            None
        }
    }
}

fn sandbox_spec(record: &PodRecord, dir: &PodDir, pod: &Pod) -> SandboxSpec {
    let etc = dir.etc();
    let mut binds = vec![
        Bind { source: etc.join("resolv.conf"), target: "/etc/resolv.conf".into() },
        Bind { source: etc.join("hosts"), target: "/etc/hosts".into() },
    ];
    if serviceaccount::wants_token(pod) {
        binds.push(Bind { source: dir.service_account(), target: SERVICE_ACCOUNT_DIR.into() });
    }
    SandboxSpec {
        netns: record.netns.as_ref().map(|n| std::path::Path::new(crate::network::NETNS_DIR).join(n)),
        hostname: (!record.host_network).then(|| podfiles::hostname(pod)),
        binds,
    }
}

fn all_containers(pod: &Pod) -> Vec<k8s_openapi::api::core::v1::Container> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers.unwrap_or_default().into_iter().chain(spec.containers).collect()
}

struct Worker {
    agent: Arc<Agent>,
    pod: Arc<Pod>,
    dir: PodDir,
    record: PodRecord,
    sandbox: SandboxSpec,
    changed: Arc<Notify>,
    init: Vec<RunnerHandle>,
    main: Vec<RunnerHandle>,
    last_written: Option<Value>,
    /// When the pod was accepted, until all its containers have started once (for the
    /// pod-start latency metric).
    accepted: Option<std::time::Instant>,
}

impl Worker {
    fn spawn_runner(&self, container: k8s_openapi::api::core::v1::Container, role: Role) -> RunnerHandle {
        let image = container.image.clone().unwrap_or_default();
        let (status_tx, status_rx) =
            watch::channel(ContainerSnapshot::waiting(&container.name, &image, "ContainerCreating", None));
        let (stop_tx, stop_rx) = watch::channel(None);
        let runner = Runner {
            agent: self.agent.clone(),
            pod: self.pod.clone(),
            dir: self.dir.container(&container.name),
            container,
            role,
            sandbox: self.sandbox.clone(),
            pod_ip: self.pod_ip(),
            status: status_tx,
            changed: self.changed.clone(),
            stop: stop_rx,
        };
        RunnerHandle { status: status_rx, stop: stop_tx, task: tokio::spawn(runner.run()) }
    }

    fn pod_ip(&self) -> String {
        self.record.ip.map(|ip| ip.to_string()).unwrap_or_else(|| self.agent.node_ip.to_string())
    }

    /// Starts the next init container, or the regular ones once every init container succeeded.
    fn advance(&mut self) -> bool {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.unwrap_or_default();
        let initialized =
            self.init.len() == inits.len() && self.init.iter().all(|r| r.status.borrow().finished == Some(0));
        if initialized {
            if self.main.is_empty() {
                for c in spec.containers {
                    let handle = self.spawn_runner(c, Role::Main);
                    self.main.push(handle);
                }
            }
            return true;
        }
        let current_done = self.init.last().map(|r| r.status.borrow().finished == Some(0)).unwrap_or(true);
        if current_done && self.init.len() < inits.len() {
            let handle = self.spawn_runner(inits[self.init.len()].clone(), Role::Init);
            self.init.push(handle);
        }
        false
    }

    /// Runs the pod until it is deleted; returns whether it vanished from the API itself
    /// (force-deleted) rather than being marked for graceful deletion.
    async fn run_until_deleted(&mut self, updates: &mut PodUpdates) -> bool {
        self.last_written = self.pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        // Tokens from the TokenRequest API expire; the first was written during setup.
        let mut token_refresh =
            serviceaccount::wants_token(&self.pod).then(|| tokio::time::Instant::now() + TOKEN_CHECK);
        loop {
            let initialized = self.advance();
            self.write_status(initialized).await;
            if deleting(updates) {
                break;
            }
            self.release_network_when_finished().await;
            let refresh_at = token_refresh.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = tokio::time::sleep_until(refresh_at), if token_refresh.is_some() => {
                    token_refresh = write_token(&self.agent, &self.pod, &self.dir).await.map(|d| tokio::time::Instant::now() + d);
                }
                _ = self.changed.notified() => {
                    // Let a burst of changes (several containers starting) settle into one write.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                result = updates.changed() => {
                    if result.is_err() {
                        break;
                    }
                    if let Some(pod) = updates.borrow().clone() {
                        self.pod = Arc::new(pod);
                    }
                }
            }
        }
        let gone = updates.borrow().is_none();
        let grace = if gone {
            Duration::from_secs(2)
        } else {
            let pod = &self.pod;
            let secs = pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            Duration::from_secs(secs.max(0) as u64)
        };
        if !gone && !self.main.is_empty() {
            let pod = self.pod.clone();
            for handle in &self.main {
                let name = handle.status.borrow().name.clone();
                if handle.status.borrow().is_running() {
                    self.agent.event(
                        &pod,
                        Some(&name),
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {name}"),
                    );
                }
            }
        }
        for handle in self.init.iter().chain(self.main.iter()) {
            handle.stop.send_replace(Some(StopRequest { grace }));
        }
        for handle in self.init.drain(..).chain(self.main.drain(..)) {
            let _ = tokio::time::timeout(grace + Duration::from_secs(10), handle.task).await;
        }
        gone
    }

    /// Once the pod has finished (phase Succeeded or Failed, nothing will run again), its
    /// network namespace is deleted and its IP freed, as kubelet stops a finished pod's
    /// sandbox; the pod keeps its status (podIP included) and its logs until it is deleted.
    async fn release_network_when_finished(&mut self) {
        let phase = self.last_written.as_ref().and_then(|s| s.get("phase")).and_then(|p| p.as_str());
        if !matches!(phase, Some("Succeeded" | "Failed")) || self.record.host_network || self.record.network_released {
            return;
        }
        if let (Some(netns), Some(veth)) = (&self.record.netns, &self.record.host_veth) {
            let names = SandboxNames { netns: netns.clone(), host_veth: veth.clone() };
            if let Err(e) = NodeNetwork::delete_sandbox(&names).await {
                tracing::warn!(netns = %netns, error = %e, "removing a finished pod's network namespace failed");
                return;
            }
        }
        // Recorded before the IP is freed: a restarted agent must never set this pod up again.
        self.record.network_released = true;
        if let Err(e) = self.dir.write_record(&self.record) {
            tracing::warn!(error = %e, "recording a finished pod's released network failed");
            return;
        }
        if let Err(e) = self.agent.ipam.release(&self.record.uid) {
            tracing::warn!(error = %e, "releasing a finished pod's IP failed");
        }
        tracing::debug!(pod = ?self.pod.metadata.name, "finished pod: network namespace removed, IP released");
    }

    async fn write_status(&mut self, initialized: bool) {
        let init: Vec<ContainerSnapshot> = self.init.iter().map(|r| r.status.borrow().clone()).collect();
        let mut init_all = init.clone();
        let spec = self.pod.spec.clone().unwrap_or_default();
        for c in spec.init_containers.iter().flatten().skip(init.len()) {
            init_all.push(ContainerSnapshot::waiting(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                "PodInitializing",
                None,
            ));
        }
        let mut main: Vec<ContainerSnapshot> = self.main.iter().map(|r| r.status.borrow().clone()).collect();
        if !main.is_empty() && main.iter().all(|c| c.is_running()) {
            if let Some(accepted) = self.accepted.take() {
                self.agent.metrics.observe_pod_start(accepted.elapsed());
            }
        }
        if main.is_empty() {
            for c in &spec.containers {
                main.push(ContainerSnapshot::waiting(
                    &c.name,
                    c.image.as_deref().unwrap_or_default(),
                    "PodInitializing",
                    None,
                ));
            }
        }
        let input = StatusInput {
            pod: &self.pod,
            host_ip: self.agent.node_ip.to_string(),
            pod_ip: Some(self.pod_ip()),
            start_time: self.record.start_time.clone(),
            sandbox_ready: self.record.sandbox_ready,
            init: &init_all,
            initialized,
            main: &main,
            now: now_rfc3339(),
        };
        let status = pod_status(&input);
        if same_status(self.last_written.as_ref(), &status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &self.record.namespace);
        match api
            .patch_status(&self.record.name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
            .await
        {
            Ok(pod) => {
                self.agent.metrics.status_writes.fetch_add(1, Ordering::Relaxed);
                self.last_written = Some(status);
                if pod.metadata.uid == self.pod.metadata.uid {
                    // Keep the conditions' transition times in sync with what was written.
                    let mut updated = (*self.pod).clone();
                    updated.status = pod.status;
                    self.pod = Arc::new(updated);
                }
            }
            Err(e) => {
                tracing::debug!(pod = %self.record.name, error = %e, "status write failed; retrying");
                let changed = self.changed.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    changed.notify_one();
                });
            }
        }
    }
}

/// Whether `new` says nothing `old` (the status last written or read) does not: compared
/// with nulls dropped, since the server does not store them.
fn same_status(old: Option<&Value>, new: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                Value::Object(map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    old.map(|o| strip(o) == strip(new)).unwrap_or(false)
}
