//! `skiff`: Kubernetes Service networking in one binary. Each subcommand starts one
//! component; see `skiff --help`.

mod client;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes Service networking in one binary", long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes-compatible API server.
    ///
    /// Serves HTTPS with a self-generated cluster CA. Writes an admin kubeconfig to
    /// <data-dir>/kubeconfig; use it with `kubectl --kubeconfig`.
    Server(ServerArgs),
    /// Run the controllers (EndpointSlices, Endpoints, ReplicaSets, Deployments, garbage
    /// collection, namespaces, node lifecycle, LoadBalancer IPs) against any Kubernetes API.
    Controllers(ControllersArgs),
    /// Run benchmarks against a `skiff server` the benchmark starts itself.
    Bench(skiff_bench::Args),
    /// Run the cluster DNS server (the Kubernetes DNS spec for the cluster zone, forwarding
    /// for other names) against any Kubernetes API.
    Dns(DnsArgs),
    /// Run a built-in program for a well-known image (`agnhost …`, `nginx`, `pause`); the node
    /// agent runs these inside pods.
    #[command(hide = true)]
    Builtin(skiff_agnhost::Args),
    /// Start a local multi-node cluster in network namespaces (needs root).
    Up(skiff_cluster::UpArgs),
    /// Remove what a `skiff up` left behind (or stop a running one).
    Down(skiff_cluster::DownArgs),
    /// Run a command inside a local cluster's node network with KUBECONFIG set.
    Run(skiff_cluster::RunArgs),
    /// Run the service proxy (kube-proxy's job) in this network namespace: nftables
    /// (default), iptables or userspace mode.
    Proxy(skiff_proxy::Args),
    /// Run the node agent: register this Node and run the pods bound to it as processes in
    /// their own network namespaces (start it in the node's network namespace).
    Agent(skiff_node::Args),
    /// Supervise one container process (started by `skiff agent`).
    #[command(hide = true)]
    Shim(skiff_node::ShimArgs),
    /// Run the Ingress controller (networking.k8s.io/v1, IngressClass `skiff`): an HTTP/1.1,
    /// HTTP/2 and TLS proxy to EndpointSlice addresses, updated without reloads.
    Ingress(skiff_ingress::Args),
    // [subcommands]
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory for the store, the PKI (pki/) and the admin kubeconfig.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address and port to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Address other components and pods use to reach this server (the endpoint of the
    /// `default/kubernetes` Service). Defaults to the listen address, or 127.0.0.1.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// ClusterIP range for Services. Its first address is `kubernetes`, the tenth `kube-dns`.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cidr: String,
    /// NodePort range (inclusive).
    #[arg(long, default_value = "30000-32767")]
    node_port_range: String,
    /// Keep the cluster state in etcd instead of the embedded store (comma-separated
    /// http:// or https:// URLs of the members). Several `skiff server`s on one etcd serve one cluster.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Key prefix in etcd (replaces kube-apiserver's default `/registry`).
    #[arg(long, default_value = "/registry")]
    etcd_prefix: String,
    /// CA certificate (PEM) of the etcd members' certificates; required for https:// endpoints.
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd (with --etcd-keyfile).
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    /// Private key (PEM) of --etcd-certfile.
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    /// Seconds this server stays in the `kubernetes` Service's endpoints after it stops
    /// renewing its lease (it renews every two thirds of this; a clean shutdown leaves at once).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    endpoint_lease_ttl: u64,
    /// Further DNS names or IP addresses for the serving certificate (repeatable), e.g. the
    /// name of a load balancer in front of several servers, or this machine's other addresses
    /// when listening on 0.0.0.0.
    #[arg(long = "tls-san", value_name = "NAME_OR_IP")]
    tls_sans: Vec<String>,
}

#[derive(clap::Args)]
struct ControllersArgs {
    /// Kubeconfig of the API server to work against.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Pool of LoadBalancer IPs, inclusive (e.g. 172.30.255.1-172.30.255.254). Without it,
    /// LoadBalancer Services stay <pending>.
    #[arg(long)]
    lb_pool: Option<String>,
    /// Pod network; each Node gets a /24 of it as its podCIDR.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Address for /healthz and /metrics (e.g. 127.0.0.1:10257).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Name of this replica in the leader-election Lease (default: hostname-pid).
    #[arg(long)]
    identity: Option<String>,
    /// How long a node's Lease may go unrenewed before the node is marked Ready=Unknown.
    #[arg(long, default_value = "40s", hide = true)]
    node_monitor_grace_period: String,
}

async fn run_controllers(args: ControllersArgs) -> Result<()> {
    let mut config = skiff_controllers::ControllerConfig::default();
    if let Some(pool) = &args.lb_pool {
        config.lb_pool = Some(skiff_controllers::context::parse_ip_range(pool).map_err(anyhow::Error::msg)?);
    }
    config.cluster_cidr = skiff_controllers::context::parse_cidr(&args.cluster_cidr).map_err(anyhow::Error::msg)?;
    config.metrics_listen = args.metrics_listen;
    config.node_monitor_grace = skiff_controllers::node_lifecycle::parse_duration(&args.node_monitor_grace_period)
        .map_err(anyhow::Error::msg)?;
    if let Some(id) = args.identity {
        config.identity = id;
    }
    let client = client::from_kubeconfig(&args.kubeconfig).await?;
    skiff_controllers::run(client, config).await
}

#[derive(clap::Args)]
struct DnsArgs {
    /// Kubeconfig of the API server to watch. Without one (in a pod), the in-cluster
    /// configuration: the mounted ServiceAccount token and KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address and port to answer on, over UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// Upstream server for names outside the cluster zone (repeatable). Defaults to the
    /// nameservers of /etc/resolv.conf.
    #[arg(long = "upstream")]
    upstreams: Vec<SocketAddr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    zone: String,
    /// TTL of cluster records (also the negative-caching TTL).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3600))]
    ttl: u32,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// UDP worker threads (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    udp_workers: Option<u16>,
    /// Answers for a-b-c-d.<ns>.pod.<zone> names.
    #[arg(long, default_value = "insecure", value_parser = ["disabled", "insecure", "verified"])]
    pods: String,
    /// Turn off server-side search-path completion for known pods.
    #[arg(long)]
    no_autopath: bool,
}

async fn run_dns(args: DnsArgs) -> Result<()> {
    let mut config = skiff_dns::DnsConfig::new(args.listen);
    config.upstreams = if args.upstreams.is_empty() {
        skiff_dns::resolv_conf_nameservers(std::path::Path::new("/etc/resolv.conf"))
    } else {
        args.upstreams
    };
    config.zone = args.zone;
    config.ttl = args.ttl;
    config.metrics_listen = args.metrics_listen;
    if let Some(workers) = args.udp_workers {
        config.udp_workers = usize::from(workers);
    }
    config.pods = match args.pods.as_str() {
        "disabled" => skiff_dns::PodsMode::Disabled,
        "verified" => skiff_dns::PodsMode::Verified,
        _ => skiff_dns::PodsMode::Insecure,
    };
    config.autopath = !args.no_autopath;
    let client = client::from_kubeconfig_or_in_cluster(args.kubeconfig.as_deref()).await?;
    let upstreams = format!("{:?}", config.upstreams);
    skiff_dns::run(client, config, |bound| {
        let metrics = bound.metrics.map(|m| m.to_string()).unwrap_or_default();
        tracing::info!(listen = %bound.dns, metrics_listen = %metrics, %upstreams, "DNS server listening");
    })
    .await
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: logs redirected to files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    // Commands that need no shared runtime run first: a container supervisor (one per
    // container, so its footprint counts) and the cluster commands (`up` runs its own runtime
    // on a thread that first enters the cluster's sandbox namespace; `run` replaces this
    // process).
    let command = match cli.command {
        Command::Shim(args) => return skiff_node::shim::run(args),
        Command::Up(args) => return skiff_cluster::up(args),
        Command::Down(args) => return skiff_cluster::down(args),
        Command::Run(args) => return skiff_cluster::run(args),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match command {
            Command::Server(args) => run_server(args).await,
            Command::Controllers(args) => run_controllers(args).await,
            Command::Bench(args) => skiff_bench::run(args).await,
            Command::Dns(args) => run_dns(args).await,
            Command::Builtin(args) => skiff_agnhost::run(args).await,
            Command::Shim(_) | Command::Up(_) | Command::Down(_) | Command::Run(_) => {
                anyhow::bail!("dispatched before the runtime starts")
            }
            Command::Proxy(args) => {
                let client = client::from_kubeconfig(&args.kubeconfig).await?;
                skiff_proxy::run(client, args).await
            }
            Command::Agent(args) => {
                let client = client::from_kubeconfig(&args.kubeconfig).await?;
                skiff_node::run(client, args).await
            }
            Command::Ingress(args) => {
                let client = client::from_kubeconfig_or_in_cluster(args.kubeconfig.as_deref()).await?;
                skiff_ingress::run(client, args).await
            } // [dispatch]
        }
    })
}

async fn run_server(args: ServerArgs) -> Result<()> {
    let mut config = skiff_apiserver::ServerConfig::new(args.data_dir, args.listen);
    config.advertise_address = args.advertise_address;
    config.service_cidr = args.service_cidr;
    config.node_port_range = args.node_port_range;
    config.etcd_endpoints = args.etcd_endpoints;
    config.etcd_prefix = args.etcd_prefix;
    config.endpoint_lease_ttl = std::time::Duration::from_secs(args.endpoint_lease_ttl);
    config.etcd_cafile = args.etcd_cafile;
    config.etcd_certfile = args.etcd_certfile;
    config.etcd_keyfile = args.etcd_keyfile;
    config.tls_sans = args.tls_sans;
    let started = std::time::Instant::now();
    skiff_apiserver::run(config, |server| {
        tracing::info!(
            listen = %server.config.listen,
            kubeconfig = %server.config.data_dir.join("kubeconfig").display(),
            ready_ms = started.elapsed().as_millis() as u64,
            "API server ready"
        );
    })
    .await
}
