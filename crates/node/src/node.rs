//! The Node object and its heartbeat: registration (addresses, capacity, nodeInfo, kubelet
//! port, Ready condition), the Lease in `kube-node-lease` renewed every 10 s, and a periodic
//! status update that keeps the Ready heartbeat fresh.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_DURATION_SECONDS: i32 = 40;
const STATUS_EVERY: Duration = Duration::from_secs(20);

/// What the Node reports about this machine.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub ip: Ipv4Addr,
    pub kubelet_port: u16,
    pub max_pods: u32,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Node.status as this agent reports it; `ready` says whether the pod network is up.
/// Conditions whose status is unchanged from `previous` keep their lastTransitionTime.
pub fn node_status(facts: &NodeFacts, ready: bool, previous: Option<&Node>) -> Value {
    let old: Vec<Value> = previous
        .and_then(|n| n.status.as_ref())
        .and_then(|s| serde_json::to_value(&s.conditions).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_kib = read_trimmed("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let capacity = json!({"cpu": cpus.to_string(), "memory": format!("{mem_kib}Ki"), "pods": facts.max_pods.to_string(),
        "ephemeral-storage": "0"});
    let kernel = read_trimmed("/proc/sys/kernel/osrelease");
    let boot_id = read_trimmed("/proc/sys/kernel/random/boot_id");
    let machine_id = read_trimmed("/etc/machine-id");
    let os_image = read_trimmed("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_else(|| "Linux".into());
    let heartbeat = now();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let since = old
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| heartbeat.clone());
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": heartbeat, "lastTransitionTime": since})
    };
    json!({
        "addresses": [{"type": "InternalIP", "address": facts.ip.to_string()}, {"type": "Hostname", "address": facts.name}],
        "capacity": capacity.clone(),
        "allocatable": capacity,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
        "nodeInfo": {
            "machineID": machine_id, "systemUUID": machine_id, "bootID": boot_id, "kernelVersion": kernel,
            "osImage": os_image, "containerRuntimeVersion": concat!("skiff://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.33.0-skiff", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            if ready {
                condition("Ready", "True", "KubeletReady", "skiff agent is posting ready status")
            } else {
                condition("Ready", "False", "KubeletNotReady", "pod network is not ready: waiting for spec.podCIDR")
            },
        ],
    })
}

/// Creates the Node (or takes over an existing one of the same name) and reports its status.
pub async fn register(client: &kube::Client, facts: &NodeFacts) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let arch = std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64");
    let labels = json!({"kubernetes.io/hostname": facts.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch});
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": facts.name, "labels": labels},
        "spec": {},
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %facts.name, "registered Node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(&facts.name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": labels}})))
                .await?;
            tracing::info!(node = %facts.name, "Node exists; taking it over");
        }
        Err(e) => return Err(e).context("registering the Node"),
    }
    let existing = api.get_opt(&facts.name).await?;
    report_status(client, facts, false, existing.as_ref()).await
}

/// Writes Node.status (`previous`: the Node as last read, for condition transition times).
pub async fn report_status(
    client: &kube::Client,
    facts: &NodeFacts,
    ready: bool,
    previous: Option<&Node>,
) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": node_status(facts, ready, previous)});
    Ok(api.patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&patch)).await?)
}

/// Renews the Lease every 10 s and re-reports the status every 20 s, forever.
/// `ready` is read on every status report.
pub async fn heartbeat(client: kube::Client, facts: NodeFacts, node: Node, ready: tokio::sync::watch::Receiver<bool>) {
    let node_uid = node.metadata.uid.clone().unwrap_or_default();
    let mut last = node;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&leases, &facts.name, &node_uid).await {
                    tracing::warn!(error = %e, "renewing the node Lease failed");
                }
            }
            _ = status_tick.tick() => {
                let ready = *ready.borrow();
                match report_status(&client, &facts, ready, Some(&last)).await {
                    Ok(node) => last = node,
                    Err(e) => tracing::warn!(error = %e, "reporting Node status failed"),
                }
            }
        }
    }
}

async fn renew_lease(leases: &Api<Lease>, name: &str, node_uid: &str) -> Result<()> {
    let spec =
        json!({"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now_micro()});
    let patch = json!({"spec": spec});
    match leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]},
                "spec": spec,
            }))?;
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
