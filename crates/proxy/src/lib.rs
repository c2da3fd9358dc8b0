//! # skiff-proxy: kube-proxy's job
//!
//! `skiff proxy` programs the network namespace it runs in so that Service addresses work:
//! ClusterIPs, NodePorts, external and LoadBalancer IPs are translated to endpoints. Its
//! design follows kube-proxy's: a change tracker builds the desired state, and each mode
//! only translates that state into the kernel.
//!
//! Where to start:
//! - [`model`]: what one Service should look like in the data plane (endpoint selection,
//!   traffic policies, no-endpoint verdicts), pure and unit-tested;
//! - [`tracker`]: Service/EndpointSlice events in, changed Services out (uses the shared
//!   `skiff_core::service_view` join);
//! - [`watch`]: the kube-rs watches that feed the tracker;
//! - [`sync`]: the loop that asks the tracker for changes and has the data plane write them;
//! - [`backend`]: the data planes behind one trait — [`backend::nftables`] (default; set
//!   elements over netlink), [`backend::iptables`] (iptables-restore, kube-proxy's chains),
//!   [`backend::userspace`] (a round-robin TCP/UDP relay);
//! - [`conntrack`], [`healthcheck`], [`metrics`]: UDP conntrack cleanup, health-check node
//!   ports, `/metrics` `/healthz` `/proxyMode`.

pub mod backend;
pub mod conntrack;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod model;
pub mod sync;
pub mod tracker;
pub mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

pub use backend::Mode;

/// `skiff proxy` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Kubeconfig of the API server to watch.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// How Services are implemented.
    #[arg(long, value_enum, default_value = "nftables")]
    pub mode: Mode,
    /// This node's name (endpoints on it are local for the Local traffic policies).
    #[arg(long)]
    pub node_name: String,
    /// Address for /metrics, /healthz and /proxyMode (e.g. 0.0.0.0:10249).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Remove every mode's rules and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// The pod network: ClusterIP traffic from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
}

/// Parses `a.b.c.d/len` (IPv4).
pub fn parse_cidr(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/').with_context(|| format!("{s:?} is not a CIDR (a.b.c.d/len)"))?;
    let ip: Ipv4Addr = ip.parse().with_context(|| format!("bad address in {s:?}"))?;
    let len: u8 = len.parse().with_context(|| format!("bad prefix length in {s:?}"))?;
    anyhow::ensure!(len <= 32, "prefix length of {s:?} exceeds 32");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((Ipv4Addr::from(u32::from(ip) & mask), len))
}

/// Builds the data plane of `mode` after removing the other modes' state.
pub fn dataplane(mode: Mode, cluster_cidr: Option<(Ipv4Addr, u8)>) -> anyhow::Result<Box<dyn backend::Dataplane>> {
    if let Err(e) = backend::cleanup_except(Some(mode)) {
        tracing::warn!(error = %format!("{e:#}"), "removing other proxy modes' rules");
    }
    Ok(match mode {
        Mode::Nftables => Box::new(backend::nftables::Nftables::new(cluster_cidr)?),
        Mode::Iptables => Box::new(backend::iptables::Iptables::new(cluster_cidr)),
        Mode::Userspace => Box::new(backend::userspace::Userspace::new()?),
    })
}

/// Runs the proxy until the process is stopped (or, with `--cleanup`, cleans up and returns).
pub async fn run(client: kube::Client, args: Args) -> anyhow::Result<()> {
    if args.cleanup {
        backend::cleanup_except(None)?;
        tracing::info!("removed all proxy rules");
        return Ok(());
    }
    let cluster_cidr = args.cluster_cidr.as_deref().map(parse_cidr).transpose()?;
    let dataplane = dataplane(args.mode, cluster_cidr)?;
    let metrics = metrics::Metrics::new(args.mode.as_str());
    let tracker = tracker::ChangeTracker::new(model::NodeContext { node_name: args.node_name.clone() });
    let shared = Arc::new(sync::Shared::new(tracker, metrics));

    if let Some(addr) = args.metrics_listen {
        let listener = http::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        let shared = shared.clone();
        let mode = args.mode.as_str();
        tokio::spawn(http::serve(listener, move |path| {
            let shared = shared.clone();
            async move {
                match path.as_str() {
                    "/metrics" => http::Response::text(200, shared.metrics.render()),
                    "/healthz" | "/livez" => {
                        let (status, body) = shared.metrics.healthz();
                        http::Response::json(status, body)
                    }
                    "/proxyMode" => http::Response::text(200, mode),
                    _ => http::Response::text(404, "not found\n"),
                }
            }
        }));
        tracing::info!(metrics_listen = %bound, "serving /metrics, /healthz and /proxyMode");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let health = healthcheck::HealthChecks::new(tokio::runtime::Handle::current());
    let sync_thread = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("proxy-sync".into())
            .spawn(move || sync::run(shared, dataplane, Some(health), stop))?
    };
    tracing::info!(mode = args.mode.as_str(), node = %args.node_name, "service proxy started");
    tokio::select! {
        _ = watch::run(client, args.node_name.clone(), shared.clone()) => {}
        _ = shutdown_signal() => tracing::info!("stopping; rules stay in place for the next start"),
    }
    stop.store(true, Ordering::Relaxed);
    shared.notify();
    let _ = tokio::task::spawn_blocking(move || sync_thread.join()).await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_cidrs() {
        assert_eq!(super::parse_cidr("10.244.3.7/16").unwrap(), ("10.244.0.0".parse().unwrap(), 16));
        assert!(super::parse_cidr("10.244.0.0").is_err());
        assert!(super::parse_cidr("10.244.0.0/33").is_err());
    }
}
