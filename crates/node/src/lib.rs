//! `skiff agent`: the node agent (kubelet's job, without images).
//!
//! Start reading at [`run`]. The agent registers its Node and keeps its Lease fresh
//! ([`node`]), programs the node's pod network ([`network`], [`routes`]), and runs every pod
//! bound to it ([`pods`] watches them, [`worker`] drives one pod, [`container`] one
//! container with restarts, [`probe`]s and termination). Containers are processes started
//! by a small supervisor ([`shim`]) inside the pod's sandbox ([`sandbox`]); everything about
//! them is kept in files ([`state`], [`instance`], [`ipam`]), so pods survive agent restarts.
//! `kubectl logs/exec/port-forward` reach the pods through [`runtime`].

pub mod agent;
pub mod attach;
pub mod cidr;
pub mod container;
pub mod env;
pub mod events;
pub mod image;
pub mod instance;
pub mod ipam;
pub mod metrics;
pub mod network;
pub mod node;
pub mod podfiles;
pub mod pods;
pub mod probe;
pub mod routes;
pub mod runtime;
pub mod sandbox;
pub mod serviceaccount;
pub mod shim;
pub mod state;
pub mod status;
pub mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::watch;

pub use shim::ShimArgs;

use crate::agent::{Agent, BackoffPolicy};
use crate::cidr::Ipv4Cidr;
use crate::network::NodeNetwork;
use crate::podfiles::{DnsSettings, ResolvConf};

/// `skiff agent` flags.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kubeconfig of the API server.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Name of this Node.
    #[arg(long)]
    pub node_name: String,
    /// The node's InternalIP (default: the first global IPv4 address of this network namespace).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// Where pod state, IPAM and container logs live.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    pub data_dir: PathBuf,
    /// The cluster's pod network (pods route it via their node).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: Ipv4Cidr,
    /// The Service ClusterIP range.
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: Ipv4Cidr,
    /// Nameserver(s) for ClusterFirst pods (the kube-dns Service IP).
    #[arg(long, default_value = "10.96.0.10", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Port of the kubelet API (logs, exec, port-forward) on the node IP.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Prefix of the pods' network namespace names (`<prefix><pod uid>`).
    #[arg(long, default_value = "skiff-")]
    pub netns_prefix: String,
    /// Name of the node's pod bridge.
    #[arg(long, default_value = "skiff0")]
    pub bridge: String,
    /// Pod capacity reported in Node.status.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Address for /healthz, /readyz and /metrics (e.g. 127.0.0.1:10248).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Runs the agent until the process is stopped. Pods keep running when it stops; the next
/// agent on the same data dir re-adopts them.
pub async fn run(client: kube::Client, args: Args) -> Result<()> {
    let started = Instant::now();
    reenter_launcher_mount_namespace()?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => network::default_node_ip(&args.bridge).await?,
    };
    let facts = node::NodeFacts {
        name: args.node_name.clone(),
        ip: node_ip,
        kubelet_port: args.kubelet_port,
        max_pods: args.max_pods,
    };
    let node = node::register(&client, &facts).await?;
    let (ready_tx, ready_rx) = watch::channel(false);
    // Lease renewals start now: the node is alive while it waits for its podCIDR.
    tokio::spawn(node::heartbeat(client.clone(), facts.clone(), node.clone(), ready_rx));

    let (cidr_tx, mut cidr_rx) = watch::channel::<Option<Ipv4Cidr>>(None);
    let (net_tx, net_rx) = watch::channel::<Option<Arc<NodeNetwork>>>(None);
    tokio::spawn(routes::run(client.clone(), args.node_name.clone(), cidr_tx, net_rx));
    tracing::info!(node = %args.node_name, "waiting for the node's podCIDR");
    let pod_cidr = loop {
        if let Some(c) = *cidr_rx.borrow_and_update() {
            break c;
        }
        cidr_rx.changed().await.context("node watch ended")?;
    };
    let network = Arc::new(NodeNetwork {
        bridge: args.bridge.clone(),
        pod_cidr,
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        node_ip,
        underlay: network::underlay_of(node_ip).await?,
    });
    network.setup_node().await.context("setting up the node's pod network")?;
    net_tx.send_replace(Some(network.clone()));

    let ca_pem = cluster_ca(&args.kubeconfig)?;
    let agent = Arc::new(Agent {
        client: client.clone(),
        node_name: args.node_name.clone(),
        node_ip,
        dns: DnsSettings {
            cluster_dns: args.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            cluster_domain: args.cluster_domain.clone(),
        },
        node_resolv: ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        node_hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        ipam: ipam::Ipam::open(args.data_dir.join("ipam"), pod_cidr)?,
        network,
        netns_prefix: args.netns_prefix.clone(),
        ca_pem: ca_pem.clone(),
        exe: std::env::current_exe().context("locating the skiff binary")?,
        sandbox_slots: tokio::sync::Semaphore::new(8),
        backoff: BackoffPolicy::default(),
        metrics: metrics.clone(),
        token_api_missing: Default::default(),
        pods: Mutex::new(HashMap::new()),
        data_dir: args.data_dir.clone(),
    });

    let listen = SocketAddr::new(IpAddr::V4(node_ip), args.kubelet_port);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding the kubelet API on {listen}"))?;
    let tls = skiff_streams::KubeletTls::self_signed(
        String::from_utf8_lossy(&ca_pem).into_owned(),
        vec![args.node_name.clone(), node_ip.to_string()],
    );
    let runtime = Arc::new(runtime::NodeRuntime { agent: agent.clone() });
    tokio::spawn(async move {
        if let Err(e) = skiff_streams::serve(listener, tls, runtime).await {
            tracing::error!(error = %format!("{e:#}"), "kubelet API stopped");
        }
    });

    node::report_status(&client, &facts, true, Some(&node)).await?;
    ready_tx.send_replace(true);
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        node = %args.node_name, %node_ip, %pod_cidr, kubelet = %listen,
        ready_ms = started.elapsed().as_millis() as u64, "node agent ready"
    );
    pods::run(agent).await;
    anyhow::bail!("the pod watch ended")
}

/// The cluster CA from the kubeconfig (inline data or a file).
fn cluster_ca(kubeconfig: &Path) -> Result<Vec<u8>> {
    use base64::Engine;
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cluster =
        config.clusters.first().and_then(|c| c.cluster.as_ref()).context("the kubeconfig names no cluster")?;
    if let Some(data) = &cluster.certificate_authority_data {
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("decoding certificate-authority-data");
    }
    if let Some(path) = &cluster.certificate_authority {
        return std::fs::read(path).with_context(|| format!("reading {path}"));
    }
    anyhow::bail!("the kubeconfig has no cluster CA (certificate-authority or certificate-authority-data)")
}

/// Set on the re-executed agent, so it never loops.
const MOUNT_NS_ENV: &str = "SKIFF_AGENT_IN_LAUNCHER_MOUNT_NS";

/// Pod network namespaces are bind mounts under /run/netns. Under `ip netns exec`, the agent
/// runs in a private (slave) mount namespace: mounts made there are invisible to everyone
/// else, including the next agent, so pods could not be re-adopted or cleaned up. In that
/// case the agent re-executes itself in its launcher's mount namespace (keeping the
/// network namespace). Started with only the network namespace switched (`nsenter --net`,
/// or `setns(CLONE_NEWNET)`), nothing happens.
fn reenter_launcher_mount_namespace() -> Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(MOUNT_NS_ENV).is_some() {
        return Ok(());
    }
    let parent = std::os::unix::process::parent_id();
    let ours = std::fs::read_link("/proc/self/ns/mnt");
    let theirs = std::fs::read_link(format!("/proc/{parent}/ns/mnt"));
    let (Ok(ours), Ok(theirs)) = (ours, theirs) else { return Ok(()) };
    if ours == theirs || parent <= 1 {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    tracing::info!(
        launcher = parent,
        "the agent was started in a private mount namespace (ip netns exec?); re-entering the launcher's \
         so pod network namespaces are visible outside the agent"
    );
    let error = std::process::Command::new("nsenter")
        .arg(format!("--mount=/proc/{parent}/ns/mnt"))
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MOUNT_NS_ENV, "1")
        .exec();
    Err(anyhow::Error::new(error).context("re-executing the agent with nsenter"))
}
