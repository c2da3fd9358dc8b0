//! `skiff up`: network, API server, controllers, and an agent and a proxy per node; then
//! `ready`, then (on Ctrl-C / SIGTERM, or when a component dies) everything removed again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::layout::{self, Layout};
use crate::netns;
use crate::processes::{self, Component};
use crate::state::ClusterRecord;
use crate::teardown;

/// How long `skiff up` waits for the cluster before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Cluster name: part of every namespace and file the cluster creates, so several
    /// clusters with different names run at once.
    #[arg(long, default_value = "skiff")]
    pub name: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Put the node network in a sandbox namespace (`skiff-<name>`), leaving the machine's
    /// own network untouched; reach the cluster with `skiff run --name <name> -- CMD`.
    #[arg(long)]
    pub isolated: bool,
    /// Service proxy mode of every node.
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables", "userspace"])]
    pub proxy_mode: String,
    /// State, logs and kubeconfig (default /var/lib/skiff/clusters/<name>). Emptied at start.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the cluster state in this etcd (comma-separated client URLs, passed to `skiff
    /// server --etcd-endpoints`) instead of the server's embedded store. The etcd must be
    /// reachable from the server's namespace (the sandbox with --isolated); its data survives
    /// `skiff down`, so a second `skiff up` on it finds the first cluster's objects.
    #[arg(long, visible_alias = "etcd", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd (`skiff server --etcd-prefix`), so several clusters
    /// can share one etcd.
    #[arg(long, default_value = "/registry", requires = "etcd_endpoints")]
    pub etcd_prefix: String,
}

/// Runs a cluster until Ctrl-C / SIGTERM. Synchronous: the async part runs on a runtime
/// built on a thread that first enters the sandbox namespace, so every connection it opens
/// (to the API server on the node network) starts there.
pub fn up(args: UpArgs) -> Result<()> {
    teardown::require_root("skiff up")?;
    let layout = Layout::new(&args.name, args.nodes, args.isolated).map_err(anyhow::Error::msg)?;
    if let Some(record) = ClusterRecord::load(&layout.name)? {
        if record.alive() {
            bail!(
                "cluster {:?} is already running (skiff up, pid {}); stop it with Ctrl-C or `skiff down --name {}`",
                layout.name,
                record.pid,
                layout.name
            );
        }
    }
    let leftovers = teardown::leftovers(&layout);
    if !leftovers.is_empty() {
        println!("removing what an earlier run of {:?} left: {}", layout.name, leftovers.join(", "));
        teardown::remove_leftovers(&layout);
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from("/var/lib/skiff/clusters").join(&layout.name));
    prepare_data_dir(&data_dir)?;
    let record = ClusterRecord {
        name: layout.name.clone(),
        nodes: layout.nodes,
        isolated: layout.isolated,
        data_dir: data_dir.clone(),
        kubeconfig: data_dir.join("server").join("kubeconfig"),
        pid: std::process::id(),
    };
    record.save()?;

    let started = Instant::now();
    let mode = if layout.isolated { "isolated" } else { "on this machine's network" };
    println!(
        "starting cluster {:?}: {} node(s), proxy {}, {mode}, data in {}",
        layout.name,
        layout.nodes,
        args.proxy_mode,
        data_dir.display()
    );
    let result = match build_network(&layout) {
        Ok(()) => {
            progress(
                started,
                &format!("network    node network {} on bridge {}", layout.underlay_cidr(), layout.bridge_name()),
            );
            run_in_cluster_namespace(&layout, &args, &record, started)
        }
        Err(e) => Err(e),
    };
    println!("stopping cluster {:?}", layout.name);
    teardown::remove_leftovers(&layout);
    ClusterRecord::remove(&layout.name);
    println!("cluster {:?} removed", layout.name);
    result
}

fn progress(started: Instant, what: &str) {
    println!("  {what:<60} {:>6} ms", started.elapsed().as_millis());
}

fn prepare_data_dir(dir: &std::path::Path) -> Result<()> {
    for sub in ["server", "nodes", "logs"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("clearing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// The underlay: a bridge (in the sandbox when isolated) and one namespace per node joined
/// to it by a veth; LoadBalancer addresses routed to the nodes.
fn build_network(layout: &Layout) -> Result<()> {
    let sandbox = layout.sandbox_netns();
    let sb = sandbox.as_deref();
    if let Some(ns) = sb {
        netns::add(ns)?;
    }
    let bridge = layout.bridge_name();
    let bridge_cidr = format!("{}/{}", layout.bridge_ip(), layout::UNDERLAY_PREFIX_LEN);
    netns::ip(sb, &["link", "add", &bridge, "type", "bridge"])?;
    netns::ip(sb, &["addr", "add", &bridge_cidr, "dev", &bridge])?;
    netns::ip(sb, &["link", "set", &bridge, "up"])?;
    for i in 1..=layout.nodes {
        let node_ns = layout.node_netns(i);
        let veth = layout.node_veth(i);
        netns::add(&node_ns)?;
        netns::ip(sb, &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &node_ns])?;
        netns::ip(sb, &["link", "set", &veth, "master", &bridge, "up"])?;
        let node_cidr = format!("{}/{}", layout.node_ip(i), layout::UNDERLAY_PREFIX_LEN);
        netns::ip(Some(&node_ns), &["addr", "add", &node_cidr, "dev", "eth0"])?;
        netns::ip(Some(&node_ns), &["link", "set", "eth0", "up"])?;
        netns::sysctl(Some(&node_ns), "net.ipv4.ip_forward", "1")?;
    }
    // LoadBalancer addresses and ClusterIPs are routed to the nodes (ECMP), whose proxies
    // answer them, so clients on the node network (`skiff run`) reach both.
    let hops = layout.all_nodes_nexthops();
    for destination in [layout::LB_ROUTE, layout::SERVICE_CIDR] {
        let mut route = vec!["route", "replace", destination];
        route.extend(hops.iter().map(String::as_str));
        netns::ip(sb, &route)?;
    }
    Ok(())
}

fn run_in_cluster_namespace(layout: &Layout, args: &UpArgs, record: &ClusterRecord, started: Instant) -> Result<()> {
    let layout = layout.clone();
    let args = args.clone();
    let record = record.clone();
    let thread = std::thread::Builder::new().name("cluster".into()).spawn(move || -> Result<()> {
        if let Some(ns) = layout.sandbox_netns() {
            netns::enter(&ns)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(run_cluster(layout, args, record, started))
    })?;
    thread.join().map_err(|_| anyhow::anyhow!("the cluster thread panicked"))?
}

async fn run_cluster(layout: Layout, args: UpArgs, record: ClusterRecord, started: Instant) -> Result<()> {
    let logs = record.data_dir.join("logs");
    let server_dir = record.data_dir.join("server");
    let sandbox = layout.sandbox_netns();
    let mut components: Vec<Component> = Vec::new();
    // Signals are taken before anything starts, so Ctrl-C during startup still cleans up.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let start_and_run = async {
        let listen = format!("{}:{}", layout.bridge_ip(), layout::API_PORT);
        let mut server_args = strings(&[
            "server",
            "--data-dir",
            &server_dir.to_string_lossy(),
            "--listen",
            &listen,
            "--advertise-address",
            &layout.bridge_ip().to_string(),
            "--service-cidr",
            layout::SERVICE_CIDR,
        ]);
        if !args.etcd_endpoints.is_empty() {
            server_args.extend(["--etcd-endpoints".to_owned(), args.etcd_endpoints.join(",")]);
            server_args.extend(["--etcd-prefix".to_owned(), args.etcd_prefix.clone()]);
        }
        components.push(Component::start("server", sandbox.as_deref(), &server_args, &logs)?);
        let client = wait_for_api(&record.kubeconfig, &mut components).await?;
        progress(started, &format!("server     {}", layout.api_url()));

        let kubeconfig = record.kubeconfig.to_string_lossy().to_string();
        let controller_args = strings(&[
            "controllers",
            "--kubeconfig",
            &kubeconfig,
            "--cluster-cidr",
            layout::CLUSTER_CIDR,
            "--lb-pool",
            &layout.lb_pool(),
        ]);
        components.push(Component::start("controllers", sandbox.as_deref(), &controller_args, &logs)?);
        progress(started, "controllers started");

        for i in 1..=layout.nodes {
            let node = layout.node_name(i);
            let node_ns = layout.node_netns(i);
            let node_dir = record.data_dir.join("nodes").join(&node);
            std::fs::create_dir_all(&node_dir)?;
            let agent_args = strings(&[
                "agent",
                "--kubeconfig",
                &kubeconfig,
                "--node-name",
                &node,
                "--node-ip",
                &layout.node_ip(i).to_string(),
                "--data-dir",
                &node_dir.to_string_lossy(),
                "--cluster-cidr",
                layout::CLUSTER_CIDR,
                "--service-cidr",
                layout::SERVICE_CIDR,
                "--cluster-dns",
                &layout::CLUSTER_DNS.to_string(),
                "--netns-prefix",
                &layout.pod_netns_prefix(i),
            ]);
            components.push(Component::start(&format!("agent-{node}"), Some(&node_ns), &agent_args, &logs)?);
            let proxy_args = strings(&[
                "proxy",
                "--kubeconfig",
                &kubeconfig,
                "--mode",
                &args.proxy_mode,
                "--node-name",
                &node,
                "--cluster-cidr",
                layout::CLUSTER_CIDR,
            ]);
            components.push(Component::start(&format!("proxy-{node}"), Some(&node_ns), &proxy_args, &logs)?);
        }
        let routes = tokio::spawn(sync_pod_routes(client.clone(), sandbox.clone()));
        wait_for_nodes(&client, layout.nodes, &mut components).await?;
        progress(started, &format!("nodes      {} Ready", layout.nodes));
        crate::system::install(&client).await?;
        progress(started, "system     cluster DNS (kube-dns) and the Ingress controller installed");

        let run = match &sandbox {
            Some(_) => format!("skiff run --name {} -- kubectl get nodes -o wide", layout.name),
            None => format!("KUBECONFIG={kubeconfig} kubectl get nodes -o wide"),
        };
        println!(
            "ready in {:.2}s: kubeconfig {kubeconfig} (API {}); try: {run}",
            started.elapsed().as_secs_f64(),
            layout.api_url()
        );
        let outcome = wait_for_exit(&mut components).await;
        routes.abort();
        outcome
    };
    let result = tokio::select! {
        result = start_and_run => result,
        _ = terminate.recv() => Ok(()),
        _ = interrupt.recv() => Ok(()),
    };
    processes::stop_all(&mut components, Duration::from_secs(5)).await;
    result
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Waits for the kubeconfig the server writes and for the API to answer.
async fn wait_for_api(kubeconfig: &std::path::Path, components: &mut [Component]) -> Result<kube::Client> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        check_running(components)?;
        if kubeconfig.exists() {
            if let Ok(client) = client_from(kubeconfig).await {
                if client.apiserver_version().await.is_ok() {
                    return Ok(client);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the API server did not come up within {START_TIMEOUT:?}; see {}", components[0].log.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client_from(path: &std::path::Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Fails with the component's log when one has exited.
fn check_running(components: &mut [Component]) -> Result<()> {
    for c in components.iter_mut() {
        if let Some(status) = c.try_exited() {
            bail!("{} exited ({status}); last log lines:\n{}", c.name, c.log_tail(20));
        }
    }
    Ok(())
}

async fn wait_for_nodes(client: &kube::Client, count: usize, components: &mut [Component]) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        check_running(components)?;
        if let Ok(list) = nodes.list(&Default::default()).await {
            let ready = list.items.iter().filter(|n| node_ready(n) && has_pod_cidr(n)).count();
            if ready >= count {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "nodes did not become Ready within {START_TIMEOUT:?}; see the agent logs in {}",
                components[0].log.parent().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn has_pod_cidr(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).is_some_and(|c| !c.is_empty())
}

/// Routes every node's podCIDR via that node in the namespace holding the node network, so
/// replies from the API server (and from `skiff run` clients) reach pods without NAT.
async fn sync_pod_routes(client: kube::Client, sandbox: Option<String>) {
    let nodes: Api<Node> = Api::all(client);
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    let mut events = std::pin::pin!(watcher::watcher(nodes, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let node = match event {
            Ok(Event::Apply(node)) | Ok(Event::InitApply(node)) => node,
            _ => continue,
        };
        let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()).unwrap_or_default();
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()))
            .unwrap_or_default();
        if cidr.is_empty() || ip.is_empty() || routes.get(&cidr) == Some(&ip) {
            continue;
        }
        let sandbox = sandbox.clone();
        let (c, via) = (cidr.clone(), ip.clone());
        let added =
            tokio::task::spawn_blocking(move || netns::ip(sandbox.as_deref(), &["route", "replace", &c, "via", &via]))
                .await;
        match added {
            Ok(Ok(())) => {
                tracing::debug!(node = %node.name_any(), %cidr, %ip, "pod route");
                routes.insert(cidr, ip);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "adding a pod route"),
            Err(e) => tracing::warn!(error = %e, "adding a pod route"),
        }
    }
}

/// Resolves (with an error carrying its log) when a component dies.
async fn wait_for_exit(components: &mut [Component]) -> Result<()> {
    let exits = components.iter_mut().map(|c| Box::pin(async move { (c.exited().await, c) }));
    let ((status, component), _, _) = futures::future::select_all(exits).await;
    bail!("{} exited ({status}); last log lines:\n{}", component.name, component.log_tail(20))
}
