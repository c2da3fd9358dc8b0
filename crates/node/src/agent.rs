//! The agent's shared context ([`Agent`]) and the way every process enters a pod
//! ([`pod_command`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::events::{self, EventType};
use crate::ipam::Ipam;
use crate::network::NodeNetwork;
use crate::podfiles::{DnsSettings, ResolvConf};
use crate::sandbox::{PreparedSandbox, SandboxSpec};
use crate::state::PodDir;

/// Restart back-off: the first restart is immediate, then 10 s doubling up to 5 min; a
/// container that ran for 10 min starts over (kubelet's numbers).
#[derive(Clone, Copy, Debug)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { initial: Duration::from_secs(10), max: Duration::from_secs(300) }
    }
}

/// What the kubelet API (logs, exec, port-forward) needs to find a running pod.
#[derive(Clone, Debug)]
pub struct PodView {
    pub uid: String,
    pub dir: PodDir,
    pub sandbox: SandboxSpec,
    pub containers: Vec<String>,
}

/// Everything the pod workers share.
pub struct Agent {
    pub client: kube::Client,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub dns: DnsSettings,
    pub node_resolv: ResolvConf,
    pub node_hosts: String,
    pub network: Arc<NodeNetwork>,
    pub ipam: Ipam,
    pub netns_prefix: String,
    /// The cluster CA (PEM), for pods' ca.crt.
    pub ca_pem: Vec<u8>,
    /// This binary, for `skiff shim` and `skiff builtin`.
    pub exe: PathBuf,
    /// Bounds concurrent sandbox setups (each runs `ip` twice) so a burst of pods does not
    /// fork hundreds of processes at once.
    pub sandbox_slots: tokio::sync::Semaphore,
    pub backoff: BackoffPolicy,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set once the API server turned out to have no TokenRequest API.
    pub token_api_missing: std::sync::atomic::AtomicBool,
    /// Running pods by (namespace, name).
    pub pods: Mutex<HashMap<(String, String), Arc<PodView>>>,
}

impl Agent {
    pub fn event(&self, pod: &Pod, container: Option<&str>, kind: EventType, reason: &str, message: &str) {
        events::record(&self.client, &self.node_name, pod, container, kind, reason, message);
    }

    pub fn pod_view(&self, namespace: &str, name: &str) -> Option<Arc<PodView>> {
        self.pods.lock().ok()?.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// A command that runs `argv` inside the pod's sandbox with `env`, in its own session.
/// With `tty`, the caller's stdin must be a terminal (it becomes the controlling one).
pub fn pod_command(
    sandbox: &SandboxSpec,
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    tty: bool,
) -> std::io::Result<tokio::process::Command> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"));
    };
    let prepared = PreparedSandbox::prepare(sandbox, cwd, tty)?;
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
    // SAFETY: `enter` only makes raw syscalls on memory prepared before the fork.
    unsafe {
        command.pre_exec(move || prepared.enter());
    }
    Ok(command)
}
