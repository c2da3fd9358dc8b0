//! userspace mode: the proxy relays connections itself, as kube-proxy's removed userspace
//! mode did.
//!
//! Each service port gets a relay socket on an ephemeral port (one for ClusterIP traffic,
//! one for external traffic when its endpoints differ by policy). A small nftables table
//! (`ip skiff-userspace`) redirects frontends with endpoints to their relay; ClusterIP
//! traffic left untranslated (no endpoints, unused port) is rejected; LoadBalancer IPs with
//! `loadBalancerSourceRanges` drop other sources before the redirect (a filter hook ahead
//! of NAT, with the same per-range chains as nftables mode). The relay picks
//! endpoints round robin over a list shuffled at each change, retries the next endpoint
//! when a TCP dial fails, keeps ClientIP affinity in a map with a timeout, and keeps one
//! upstream socket per UDP client (dropped when its endpoint goes away).

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use skiff_core::service_view::Protocol;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{Dataplane, Update};
use crate::model::{Backend, ServicePortName, Targets};

/// The nftables table of userspace mode.
pub const TABLE: &str = "skiff-userspace";
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const UDP_IDLE: Duration = Duration::from_secs(60);

/// Endpoint choice for one relay.
#[derive(Default)]
pub struct Balancer {
    backends: Vec<Backend>,
    next: usize,
    affinity_timeout: Option<Duration>,
    affinity: HashMap<IpAddr, (Backend, Instant)>,
}

impl Balancer {
    /// Replaces the endpoints (shuffled, as kube-proxy's LoadBalancerRR did); affinity
    /// entries of removed endpoints are dropped.
    pub fn update(&mut self, backends: &[Backend], affinity_timeout: Option<u32>) {
        let mut sorted_old = self.backends.clone();
        sorted_old.sort();
        self.affinity_timeout = affinity_timeout.map(|t| Duration::from_secs(u64::from(t)));
        if sorted_old != backends {
            let mut shuffled = backends.to_vec();
            shuffled.shuffle(&mut rand::rng());
            self.backends = shuffled;
            self.next = 0;
        }
        let live = &self.backends;
        self.affinity.retain(|_, (b, _)| live.contains(b));
        if self.affinity_timeout.is_none() {
            self.affinity.clear();
        }
    }

    /// Endpoints to try for a client, in order: its affinity endpoint first, then round
    /// robin.
    pub fn candidates(&mut self, client: IpAddr) -> Vec<Backend> {
        let n = self.backends.len();
        if n == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(n);
        if let (Some(timeout), Some((b, at))) = (self.affinity_timeout, self.affinity.get(&client)) {
            if at.elapsed() < timeout {
                out.push(*b);
            }
        }
        let start = self.next % n;
        self.next = (start + 1) % n;
        for i in 0..n {
            let b = self.backends[(start + i) % n];
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    /// Records that `client` was served by `backend` (affinity).
    pub fn served(&mut self, client: IpAddr, backend: Backend) {
        if self.affinity_timeout.is_some() {
            self.affinity.insert(client, (backend, Instant::now()));
        }
    }

    pub fn contains(&self, backend: &Backend) -> bool {
        self.backends.contains(backend)
    }
}

type SharedBalancer = Arc<Mutex<Balancer>>;

fn lock(b: &SharedBalancer) -> std::sync::MutexGuard<'_, Balancer> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// One relay port and its tasks (one accept loop per lane for TCP, one task for UDP).
struct Relay {
    port: u16,
    balancer: SharedBalancer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The relays' threads ("lanes"): one single-threaded tokio runtime per core, each driven by
/// its own thread until the lanes are dropped.
///
/// Relaying is the hot path; runtimes of their own keep it apart from the watches and the
/// health checks. A TCP relay listens on one port with one `SO_REUSEPORT` socket per lane, so
/// the kernel spreads connections over the lanes and each connection stays on the thread that
/// accepted it: no work-stealing scheduler and no cross-thread wakeups per request. (Measured
/// against haproxy `nbthread 1` with `skiff bench proxy --userspace`: one multi-thread tokio
/// runtime needed clearly more CPU per request.) `SKIFF_PROXY_RELAY_THREADS` overrides the
/// lane count.
struct RelayRuntime {
    lanes: Vec<tokio::runtime::Handle>,
    /// Dropping these ends each lane's thread, which then drops its runtime.
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Overrides the relay lane count (1–256).
pub const RELAY_THREADS_ENV: &str = "SKIFF_PROXY_RELAY_THREADS";

impl RelayRuntime {
    fn new() -> std::io::Result<RelayRuntime> {
        let mut lanes = Vec::new();
        let mut stops = Vec::new();
        for i in 0..relay_threads() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            lanes.push(runtime.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            // The thread is created here, so it shares the caller's network namespace.
            std::thread::Builder::new().name(format!("skiff-relay-{i}")).spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })?;
        }
        Ok(RelayRuntime { lanes, stops })
    }

    /// The lane for work that needs only one (UDP relays, binding sockets).
    fn first(&self) -> anyhow::Result<&tokio::runtime::Handle> {
        self.lanes.first().ok_or_else(|| anyhow::anyhow!("the relay lanes are shut down"))
    }
}

impl Drop for RelayRuntime {
    fn drop(&mut self) {
        self.stops.clear();
    }
}

/// The relay runtime's worker count: `SKIFF_PROXY_RELAY_THREADS`, else one per core.
pub fn relay_threads() -> usize {
    let default = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    std::env::var(RELAY_THREADS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=256).contains(n))
        .unwrap_or(default)
}

/// userspace-mode data plane.
pub struct Userspace {
    /// (service port, external?) → relay.
    relays: HashMap<(ServicePortName, bool), Relay>,
    runtime: RelayRuntime,
}

impl Userspace {
    /// Starts the relays' runtime; its threads are created in the caller's network
    /// namespace, where the relays' sockets then live.
    pub fn new() -> anyhow::Result<Userspace> {
        Ok(Userspace { relays: HashMap::new(), runtime: RelayRuntime::new()? })
    }

    fn relay(
        &mut self,
        name: &ServicePortName,
        external: bool,
        targets: &Targets,
        affinity: Option<u32>,
    ) -> anyhow::Result<u16> {
        let id = (name.clone(), external);
        if let Some(relay) = self.relays.get(&id) {
            lock(&relay.balancer).update(&targets.backends, affinity);
            return Ok(relay.port);
        }
        let balancer: SharedBalancer = Arc::new(Mutex::new(Balancer::default()));
        lock(&balancer).update(&targets.backends, affinity);
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let first = self.runtime.first()?;
        let (port, tasks) = match name.protocol {
            Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(any)?;
                socket.set_nonblocking(true)?;
                let port = socket.local_addr()?.port();
                let balancer = balancer.clone();
                let task = first.spawn(async move {
                    match UdpSocket::from_std(socket) {
                        Ok(socket) => relay_udp(Arc::new(socket), balancer).await,
                        Err(e) => tracing::warn!(error = %e, "UDP relay socket unusable"),
                    }
                });
                (port, vec![task])
            }
            _ => {
                // One listener per lane on one port (SO_REUSEPORT): the first picks the port.
                let mut port = 0;
                let mut tasks = Vec::new();
                for lane in &self.runtime.lanes {
                    let listener = reuseport_listener(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
                    port = listener.local_addr()?.port();
                    let balancer = balancer.clone();
                    tasks.push(lane.spawn(async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => relay_tcp(listener, balancer).await,
                            Err(e) => tracing::warn!(error = %e, "TCP relay listener unusable"),
                        }
                    }));
                }
                (port, tasks)
            }
        };
        self.relays.insert(id, Relay { port, balancer, tasks });
        Ok(port)
    }
}

impl Dataplane for Userspace {
    fn mode(&self) -> &'static str {
        "userspace"
    }

    /// Relays are cheap to update in place; the redirect table is small and rewritten
    /// atomically on every sync.
    fn sync(&mut self, update: &Update<'_>) -> anyhow::Result<()> {
        let mut cluster_ips = Vec::new();
        let mut portals = Vec::new();
        let mut nodeport_portals = Vec::new();
        let mut firewalls = Firewalls::default();
        let mut wanted = std::collections::HashSet::new();
        for state in update.desired.values() {
            for port in &state.ports {
                let proto = port.name.protocol.as_lower_str();
                cluster_ips.extend(port.cluster_ips.iter().copied());
                if !port.internal.backends.is_empty() {
                    let relay = self.relay(&port.name, false, &port.internal, port.affinity_timeout)?;
                    wanted.insert((port.name.clone(), false));
                    for ip in &port.cluster_ips {
                        portals.push(format!("{ip} . {proto} . {} : {relay}", port.port));
                    }
                }
                if let Some(firewall) = &port.firewall {
                    firewalls.add(firewall, proto, port.port);
                }
                if port.has_external() && !port.external.backends.is_empty() {
                    let relay = self.relay(&port.name, true, &port.external, port.affinity_timeout)?;
                    wanted.insert((port.name.clone(), true));
                    for ip in &port.external_ips {
                        portals.push(format!("{ip} . {proto} . {} : {relay}", port.port));
                    }
                    if port.node_port != 0 {
                        nodeport_portals.push(format!("{proto} . {} : {relay}", port.node_port));
                    }
                }
            }
        }
        self.relays.retain(|id, _| wanted.contains(id));
        cluster_ips.sort();
        cluster_ips.dedup();
        let text = redirect_table(&cluster_ips, &portals, &nodeport_portals, &firewalls);
        super::run_with_stdin("nft", &["-f", "-"], &text)
    }
}

/// loadBalancerSourceRanges of every Service: `LB IP . proto . port : goto <chain>`
/// elements, and each distinct range list's chain (name → rule).
#[derive(Default)]
struct Firewalls {
    elements: Vec<String>,
    chains: std::collections::BTreeMap<String, String>,
}

impl Firewalls {
    fn add(&mut self, firewall: &crate::model::Firewall, proto: &str, port: u16) {
        let (name, rule) = super::nftables::ruleset::firewall_parts(&firewall.allowed);
        for ip in &firewall.ips {
            self.elements.push(format!("{ip} . {proto} . {port} : goto {name}"));
        }
        self.chains.insert(name, rule);
    }
}

fn redirect_table(
    cluster_ips: &[Ipv4Addr],
    portals: &[String],
    nodeport_portals: &[String],
    firewalls: &Firewalls,
) -> String {
    let elements = |items: Vec<String>| {
        if items.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", items.join(", "))
        }
    };
    let ips = elements(cluster_ips.iter().map(Ipv4Addr::to_string).collect());
    let local = "fib daddr type local ip daddr != 127.0.0.0/8";
    // Port mappings are only valid after a transport protocol match.
    let l4 = "meta l4proto { tcp, udp, sctp }";
    let mut s = String::new();
    let _ = writeln!(s, "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{");
    let _ = writeln!(s, "  set cluster-ips {{ type ipv4_addr;{ips} }}");
    let _ = writeln!(
        s,
        "  map portals {{ type ipv4_addr . inet_proto . inet_service : inet_service;{} }}",
        elements(portals.to_vec())
    );
    let _ = writeln!(
        s,
        "  map nodeport-portals {{ type inet_proto . inet_service : inet_service;{} }}",
        elements(nodeport_portals.to_vec())
    );
    for (chain, hook) in [("nat-prerouting", "prerouting priority dstnat"), ("nat-output", "output priority -100")] {
        let _ = writeln!(
            s,
            "  chain {chain} {{ type nat hook {hook}; policy accept;\n    \
             {l4} redirect to ip daddr . meta l4proto . th dport map @portals\n    \
             {local} {l4} redirect to meta l4proto . th dport map @nodeport-portals\n  }}"
        );
    }
    for (chain, hook) in [("filter-prerouting", "prerouting"), ("filter-output", "output")] {
        let _ = writeln!(
            s,
            "  chain {chain} {{ type filter hook {hook} priority -90; policy accept;\n    \
             ct state new ip daddr @cluster-ips reject\n  }}"
        );
    }
    // Source ranges are checked before the redirect rewrites the destination.
    // The chains first: the map's elements jump to them.
    for (name, rule) in &firewalls.chains {
        let _ = writeln!(s, "  chain {name} {{\n    {rule}\n  }}");
    }
    let _ = writeln!(
        s,
        "  map firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict;{} }}",
        elements(firewalls.elements.clone())
    );
    for (chain, hook) in [("firewall-prerouting", "prerouting"), ("firewall-output", "output")] {
        let _ = writeln!(
            s,
            "  chain {chain} {{ type filter hook {hook} priority -110; policy accept;\n    \
             ct state new {l4} ip daddr . meta l4proto . th dport vmap @firewall-ips\n  }}"
        );
    }
    s.push_str("}\n");
    s
}

/// A non-blocking TCP listener on `addr` that other lanes may bind too (`SO_REUSEPORT`).
///
/// `TCP_NODELAY` is set on the listener because accepted sockets inherit it on Linux: the
/// relay sends each message at once without a `setsockopt` per client connection.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn relay_tcp(listener: TcpListener, balancer: SharedBalancer) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let balancer = balancer.clone();
        tokio::spawn(async move {
            let candidates = lock(&balancer).candidates(peer.ip());
            for backend in candidates {
                let addr = SocketAddr::from(backend);
                match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(upstream)) => {
                        lock(&balancer).served(peer.ip(), backend);
                        // Relay each write at once, as the client sent it (request/response
                        // traffic must not wait for Nagle's algorithm); the client's socket
                        // has it from the listener.
                        let _ = upstream.set_nodelay(true);
                        let (mut client, mut upstream) = (client, upstream);
                        if let Err(e) = super::relay::relay(&mut client, &mut upstream).await {
                            tracing::debug!(%addr, error = %e, "relayed connection ended with an error");
                        }
                        return;
                    }
                    _ => tracing::debug!(%addr, "dial failed; trying the next endpoint"),
                }
            }
        });
    }
}

struct UdpSession {
    backend: Backend,
    upstream: Arc<UdpSocket>,
    task: tokio::task::JoinHandle<()>,
}

async fn relay_udp(socket: Arc<UdpSocket>, balancer: SharedBalancer) {
    let sessions: Arc<Mutex<HashMap<SocketAddr, UdpSession>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf).await else { continue };
        let existing = {
            let map = sessions.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&client).map(|s| (s.backend, s.upstream.clone()))
        };
        let upstream = match existing {
            Some((backend, upstream)) if lock(&balancer).contains(&backend) => upstream,
            _ => {
                let Some(backend) = lock(&balancer).candidates(client.ip()).first().copied() else { continue };
                let Ok(upstream) = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await else {
                    continue;
                };
                if upstream.connect(SocketAddr::from(backend)).await.is_err() {
                    continue;
                }
                lock(&balancer).served(client.ip(), backend);
                let upstream = Arc::new(upstream);
                let task = tokio::spawn(udp_replies(upstream.clone(), socket.clone(), client, sessions.clone()));
                let old = sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(client, UdpSession { backend, upstream: upstream.clone(), task });
                if let Some(old) = old {
                    old.task.abort();
                }
                upstream
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Copies a backend's replies to its client until the session idles out.
async fn udp_replies(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    sessions: Arc<Mutex<HashMap<SocketAddr, UdpSession>>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let _ = socket.send_to(&buf[..n], client).await;
            }
            Ok(Err(_)) => continue,
            Err(_) => break,
        }
    }
    let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
    if map.get(&client).is_some_and(|s| Arc::ptr_eq(&s.upstream, &upstream)) {
        map.remove(&client);
    }
}

/// Deletes userspace mode's table, if present (relays die with their process).
pub fn cleanup() -> anyhow::Result<()> {
    super::run_with_stdin("nft", &["-f", "-"], &format!("add table ip {TABLE}\ndelete table ip {TABLE}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u8) -> Backend {
        (Ipv4Addr::new(10, 0, 0, i), 80)
    }

    #[test]
    fn round_robin_visits_every_endpoint_and_offers_retries() {
        let mut lb = Balancer::default();
        lb.update(&[b(1), b(2), b(3)], None);
        let client: IpAddr = "10.1.1.1".parse().unwrap();
        let firsts: std::collections::HashSet<Backend> = (0..3).map(|_| lb.candidates(client)[0]).collect();
        assert_eq!(firsts.len(), 3);
        assert_eq!(lb.candidates(client).len(), 3, "every endpoint is a retry candidate");
    }

    #[test]
    fn affinity_sticks_until_the_endpoint_goes() {
        let mut lb = Balancer::default();
        lb.update(&[b(1), b(2)], Some(60));
        let client: IpAddr = "10.1.1.1".parse().unwrap();
        let first = lb.candidates(client)[0];
        lb.served(client, first);
        for _ in 0..5 {
            assert_eq!(lb.candidates(client)[0], first);
        }
        let other = if first == b(1) { b(2) } else { b(1) };
        lb.update(&[other], Some(60));
        assert_eq!(lb.candidates(client), vec![other]);
    }

    #[tokio::test]
    async fn relay_listeners_hand_out_sockets_without_nagle() {
        let listener = reuseport_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap(), "accepted sockets inherit TCP_NODELAY from the listener");
    }

    #[test]
    fn redirect_table_text() {
        let mut firewalls = Firewalls::default();
        let firewall = crate::model::Firewall {
            ips: vec!["198.51.100.20".parse().unwrap()],
            allowed: vec![("172.30.0.0".parse().unwrap(), 24)],
        };
        firewalls.add(&firewall, "tcp", 80);
        let t =
            redirect_table(&["10.96.0.5".parse().unwrap()], &["10.96.0.5 . tcp . 80 : 41000".into()], &[], &firewalls);
        assert!(t.contains("elements = { 10.96.0.5 . tcp . 80 : 41000 }"));
        assert!(t.contains("ct state new ip daddr @cluster-ips reject"));
        let (chain, _) = crate::backend::nftables::ruleset::firewall_parts(&firewall.allowed);
        assert!(t.contains(&format!("elements = {{ 198.51.100.20 . tcp . 80 : goto {chain} }}")), "{t}");
        assert!(t.contains("ip saddr != { 172.30.0.0/24 } drop"));
    }
}
