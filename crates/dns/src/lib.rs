//! # skiff-dns: cluster DNS answered straight from the watch
//!
//! `skiff dns` serves the Kubernetes DNS-Based Service Discovery specification (1.1.0) for
//! the cluster zone over UDP and TCP, with CoreDNS's NXDOMAIN/NODATA behaviour, and forwards
//! every other name to upstream servers. It is a client of any Kubernetes API: Services,
//! EndpointSlices and Namespaces come from kube-rs watches.
//!
//! How a query travels, and where to read:
//! - [`server`]: UDP worker threads (sharing one socket by default), and the TCP listener;
//! - [`wire`]: reading the query (header, question, EDNS) and writing the response;
//! - [`answer`]: the decisions (records, CNAME chains, NODATA vs NXDOMAIN, pod names,
//!   search-path completion, SERVFAIL before the first sync);
//! - [`zone`]: the table answers come from, keyed by lowercase wire name;
//! - [`forward`]: names outside the zone, to the upstreams, with a short cache.
//!
//! How the table is kept current: [`watch`] feeds events to [`feed::ZoneFeeder`], which
//! joins Services with their EndpointSlices ([`skiff_core::service_view`]) and writes what
//! [`records`] derives from each Service into the [`zone::Zone`]. [`metrics`] serves
//! `/metrics`, `/healthz` and `/readyz`. [`name`] has the domain-name helpers; [`fixture`]
//! is the spec checklist's test data.
//!
//! The cargo feature `server` (on by default) adds everything with I/O: [`server`],
//! [`forward`], [`watch`], [`metrics`] and [`run`]. Without it only the packet path is
//! built, for the fuzz target in `fuzz/`.

pub mod answer;
pub mod feed;
pub mod fixture;
#[cfg(feature = "server")]
pub mod forward;
#[cfg(feature = "server")]
pub mod metrics;
pub mod name;
pub mod records;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod watch;
pub mod wire;
pub mod zone;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
#[cfg(feature = "server")]
use std::sync::Arc;

#[cfg(feature = "server")]
use anyhow::{Context, Result};

pub use answer::{AnswerConfig, Answerer, PodsMode};
pub use feed::ZoneFeeder;
#[cfg(feature = "server")]
pub use forward::Forwarder;
#[cfg(feature = "server")]
pub use metrics::Metrics;
#[cfg(feature = "server")]
pub use server::{RunningServer, Shared};

/// Default largest UDP response (and the size advertised in OPT records).
pub const DEFAULT_MAX_UDP: u16 = 4096;

/// Settings of `skiff dns`.
#[cfg(feature = "server")]
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Address for UDP and TCP.
    pub listen: SocketAddr,
    /// Upstream servers for names outside the cluster zone (empty: outside names are
    /// REFUSED).
    pub upstreams: Vec<SocketAddr>,
    /// The cluster domain.
    pub zone: String,
    /// TTL of cluster records, and the negative-caching TTL.
    pub ttl: u32,
    /// Address for `/metrics`, `/healthz`, `/readyz`.
    pub metrics_listen: Option<SocketAddr>,
    /// UDP worker threads.
    pub udp_workers: usize,
    /// UDP sockets the workers share. 1 (the default): every worker blocks on the same
    /// socket and the kernel hands each datagram to a waiting worker, so no worker idles
    /// while another has a queue. More: `SO_REUSEPORT` sockets, the kernel picking one per
    /// client flow (address and port hash), which spreads the socket lock but loads workers
    /// unevenly when there are few client flows: with dnsperf's 4 client sockets on 2
    /// workers, one worker often got 2/3 of the queries or all of them, and p99 latency was
    /// about twice that of one shared socket (scripts/bench-dns, 2-core machine).
    pub udp_sockets: usize,
    pub pods: PodsMode,
    /// Server-side search-path completion for known pod clients.
    pub autopath: bool,
    pub max_udp: u16,
}

#[cfg(feature = "server")]
impl DnsConfig {
    /// Defaults: zone `cluster.local`, TTL 30 (the default Corefile's), one UDP worker per
    /// CPU sharing one socket, pods `insecure`, autopath on, no upstreams.
    pub fn new(listen: SocketAddr) -> DnsConfig {
        DnsConfig {
            listen,
            upstreams: Vec::new(),
            zone: "cluster.local".to_owned(),
            ttl: 30,
            metrics_listen: None,
            udp_workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            udp_sockets: 1,
            pods: PodsMode::Insecure,
            autopath: true,
            max_udp: DEFAULT_MAX_UDP,
        }
    }

    /// The answering state for this configuration, with an empty (unsynced) table.
    pub fn answerer(&self) -> Result<Answerer> {
        let zone = name::Name::from_dotted(&self.zone).with_context(|| format!("invalid zone {:?}", self.zone))?;
        let serial =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let config = AnswerConfig {
            records: records::RecordConfig { zone: zone.clone(), ttl: self.ttl },
            pods: self.pods,
            autopath: self.autopath,
            forwarding: !self.upstreams.is_empty(),
            max_udp: self.max_udp,
        };
        Ok(Answerer::new(config, zone::Zone::new(zone, serial)))
    }
}

/// Addresses bound by [`run`].
#[cfg(feature = "server")]
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub dns: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs the DNS server against the API behind `client` until the process ends. `on_ready`
/// is called once the sockets are bound (before the watches have synced).
#[cfg(feature = "server")]
pub async fn run(client: kube::Client, config: DnsConfig, on_ready: impl FnOnce(Bound)) -> Result<()> {
    let answerer = Arc::new(config.answerer()?);
    let metrics = Arc::new(Metrics::new(config.udp_workers + 1));
    let forwarder = Arc::new(Forwarder::new(config.upstreams.clone()));
    let feeder = ZoneFeeder::new(answerer.clone());
    let shared = Shared::new(answerer.clone(), forwarder, metrics.clone());
    let server = server::start(config.listen, config.udp_workers, config.udp_sockets, shared)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let listener = metrics::bind(addr).await.with_context(|| format!("metrics listener on {addr}"))?;
            let bound = listener.local_addr()?;
            tokio::spawn(metrics::serve(listener, metrics.clone(), answerer.clone()));
            Some(bound)
        }
        None => None,
    };
    on_ready(Bound { dns: server.local_addr, metrics: metrics_addr });
    watch::run(client, feeder, metrics).await;
    drop(server);
    Ok(())
}

/// The `nameserver` entries of a resolv.conf, on port 53.
pub fn resolv_conf_nameservers(path: &Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    parse_resolv_conf(&text)
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(words.next()?)
        })
        .filter_map(|ip| {
            // Strip an IPv6 zone (`fe80::1%eth0`), which SocketAddr cannot carry.
            let ip = ip.split('%').next()?;
            let ip: std::net::IpAddr = ip.parse().ok()?;
            (ip, 53).to_socket_addrs().ok()?.next()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver bad\n";
        let servers = parse_resolv_conf(text);
        assert_eq!(servers, vec!["192.0.2.1:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]);
    }
}
