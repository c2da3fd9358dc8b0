//! `skiff bench proxy --datapath`: is the data path O(1) in the number of Services?
//!
//! Three namespaces, the client's traffic routed through the node the proxy programs:
//!
//! ```text
//!  client                     node (the proxy's rules)            backend
//!  eth0 172.31.0.2/24 ──veth── eth0 172.31.0.1/24
//!                              eth1 10.245.0.1/24 ──────veth────── eth0 10.245.0.2/24
//!                                                                  + 10.245.0.10–19 (endpoints)
//!                                                                  listener :8080
//! ```
//!
//! N Services are loaded into the node with the proxy's own data plane (nftables, and
//! iptables for contrast). The first and the last Service point at the backend's ten
//! addresses, every other Service at addresses that do not exist. The client then times
//! TCP connects — connect(2) until the handshake completes, so the first packet's trip
//! through the node's NAT rules is inside the measurement — to the first Service's
//! ClusterIP, the last one's and, as a floor, straight to an endpoint. Targets are
//! interleaved round by round (the order rotating), so drift on a shared machine hits all
//! of them alike. Each socket is closed with an RST (SO_LINGER 0), leaving no TIME_WAIT.
//! Each target has its own client address (172.31.0.2, .3, .4): with one address, a source
//! port reused for another target soon after could meet the first connection's closing
//! conntrack entry on the node (same reply tuple after DNAT), and the SYN would be dropped
//! and retried a second later — noise that has nothing to do with rule lookup.
//!
//! The floor is a floor for nftables mode only: in iptables mode a connection to no Service
//! still walks all of `KUBE-SERVICES` without a match, like one to the last Service.
//!
//! Services are named `svc-00000`…: zero-padding makes the name order the index order, so
//! the last Service is also the last rule of iptables mode's `KUBE-SERVICES` chain (which
//! is written in name order): the worst case of a linear rule walk.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use skiff_proxy::backend::Update;
use skiff_proxy::model::NodeContext;
use skiff_proxy::tracker::ChangeTracker;

use crate::proxy::{new_dataplane, service_json_port, slice_json_port, vip, ProxyArgs};
use crate::proxy_netns::{veth, Netns};
use crate::stats::{millis, percentile};

const NODE_CLIENT_SIDE: &str = "172.31.0.1";
const NODE_BACKEND_SIDE: &str = "10.245.0.1";
const BACKEND_PORT: u16 = 8080;
/// Endpoints per target Service; the backend owns these addresses.
const TARGET_ENDPOINTS: u8 = 10;
/// Untimed connects per target before measuring (ARP, route and conntrack caches).
const WARMUP_ROUNDS: usize = 200;

/// Destinations timed: the first Service, the last one, an endpoint without a Service.
const TARGETS: usize = 3;

/// The client address connects to target `t` come from.
fn client_source(t: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 0, 2 + t as u8)
}

fn backend_endpoint(j: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 245, 0, 10 + j)
}

/// Connect latency to one destination, in microseconds with 0.01 µs resolution (the 5 %
/// criterion is about 1.5 µs here, finer than [`crate::stats::LatencySummary`]'s 1 µs).
#[derive(Debug, Serialize)]
pub struct TargetLatency {
    pub target: String,
    pub address: String,
    pub connects: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

impl TargetLatency {
    fn new(target: String, address: SocketAddrV4, mut samples: Vec<Duration>) -> TargetLatency {
        samples.sort_unstable();
        let us = |d: Duration| (d.as_secs_f64() * 1e8).round() / 100.0;
        let at = |p: f64| percentile(&samples, p).map(us).unwrap_or(0.0);
        let total: Duration = samples.iter().sum();
        let mean = if samples.is_empty() { 0.0 } else { us(total) / samples.len() as f64 };
        TargetLatency {
            target,
            address: address.to_string(),
            connects: samples.len(),
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            mean_us: (mean * 100.0).round() / 100.0,
        }
    }
}

/// One proxy mode's data-path measurement.
#[derive(Debug, Serialize)]
pub struct DatapathResult {
    pub mode: &'static str,
    pub services: usize,
    /// Full sync of the N Services into the node (setup; reported for context).
    pub load_ms: f64,
    pub targets: Vec<TargetLatency>,
    /// Median connect latency to the last Service over the first's.
    pub last_over_first_p50: f64,
    pub last_over_first_p99: f64,
}

/// The client, node and backend namespaces, wired and addressed.
struct Lab {
    client: Netns,
    node: Netns,
    backend: Netns,
}

impl Lab {
    fn new(tag: &str) -> Result<Lab> {
        let lab = Lab {
            client: Netns::new(&format!("{tag}-cli"))?,
            node: Netns::new(&format!("{tag}-node"))?,
            backend: Netns::new(&format!("{tag}-be"))?,
        };
        veth(
            &lab.client,
            "eth0",
            &format!("{}/24", client_source(0)),
            &lab.node,
            "eth0",
            &format!("{NODE_CLIENT_SIDE}/24"),
        )?;
        for t in 1..TARGETS {
            lab.client.ip(&["addr", "add", &format!("{}/24", client_source(t)), "dev", "eth0"])?;
        }
        veth(&lab.node, "eth1", &format!("{NODE_BACKEND_SIDE}/24"), &lab.backend, "eth0", "10.245.0.2/24")?;
        for j in 0..TARGET_ENDPOINTS {
            lab.backend.ip(&["addr", "add", &format!("{}/24", backend_endpoint(j)), "dev", "eth0"])?;
        }
        for net in ["10.96.0.0/12", "10.245.0.0/24"] {
            lab.client.ip(&["route", "add", net, "via", NODE_CLIENT_SIDE])?;
        }
        lab.backend.ip(&["route", "add", "default", "via", NODE_BACKEND_SIDE])?;
        lab.node.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(lab)
    }
}

/// Accepts and drops connections on :8080 until `stop` is set (runs in the backend);
/// reports on `listening` once the socket listens (or why it cannot).
fn serve_backend(stop: Arc<AtomicBool>, listening: mpsc::Sender<Result<()>>) -> Result<()> {
    let bound = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, BACKEND_PORT)).context("binding :8080");
    let listener = match bound {
        Ok(l) => {
            let _ = listening.send(Ok(()));
            l
        }
        Err(e) => {
            let _ = listening.send(Err(anyhow::anyhow!("{e:#}")));
            return Err(e);
        }
    };
    // A deep accept queue: connects come back to back, and a full queue drops SYNs (a
    // one-second retry) whenever this thread is not scheduled for a few milliseconds.
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    listener.set_nonblocking(true)?;
    let mut poll = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, 100) };
        if ready > 0 {
            while let Ok((conn, _)) = listener.accept() {
                drop(conn);
            }
        }
    }
    Ok(())
}

/// Creates a TCP socket from `source` (any port) that closes with an RST, and times
/// connect(2) to `addr`.
fn timed_connect(source: Ipv4Addr, addr: SocketAddrV4) -> Result<Duration> {
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: valid fd, pointer to a linger struct of the given size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let local = sockaddr(source, 0);
    // SAFETY: valid fd and a sockaddr_in of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&local as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("bind {source}: {}", std::io::Error::last_os_error());
    }
    let sa = sockaddr(*addr.ip(), addr.port());
    let started = Instant::now();
    // SAFETY: valid fd and a sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let elapsed = started.elapsed();
    if rc != 0 {
        bail!("connect {addr}: {}", std::io::Error::last_os_error());
    }
    Ok(elapsed)
}

/// Loads `services` Services into the node with `mode`'s data plane; returns the sync time.
fn load_services(lab: &Lab, mode: skiff_proxy::Mode, services: usize, endpoints: usize) -> Result<Duration> {
    lab.node.run_in(move || {
        let mut dataplane = new_dataplane(mode)?;
        let mut tracker = ChangeTracker::new(NodeContext { node_name: "node-1".into() });
        let targets: Vec<Ipv4Addr> = (0..TARGET_ENDPOINTS).map(backend_endpoint).collect();
        for i in 0..services {
            let name = format!("svc-{i:05}");
            tracker.apply_service(&service_json_port(&name, vip(i), 80))?;
            let eps: Vec<Ipv4Addr> = if i == 0 || i + 1 == services {
                targets.clone()
            } else {
                (0..endpoints).map(|j| crate::proxy::endpoint(i, j, endpoints)).collect()
            };
            tracker.apply_endpoint_slice(&slice_json_port(&name, &eps, BACKEND_PORT), None)?;
        }
        let started = Instant::now();
        let changes = tracker.take_changes();
        dataplane.sync(&Update { full: true, desired: tracker.desired(), changed: &changes.changed })?;
        Ok(started.elapsed())
    })
}

/// Measures one proxy mode: a fresh lab, N Services, interleaved timed connects.
pub fn measure(mode: skiff_proxy::Mode, args: &ProxyArgs) -> Result<DatapathResult> {
    let lab = Lab::new(&format!("dp-{}", &mode.as_str()[..3]))?;
    let load = load_services(&lab, mode, args.services, args.endpoints)?;

    let stop = Arc::new(AtomicBool::new(false));
    let (listening_tx, listening) = mpsc::channel();
    let server = {
        let stop = stop.clone();
        lab.backend.spawn_in(move || serve_backend(stop, listening_tx))
    };
    listening.recv().map_err(|_| anyhow::anyhow!("backend thread ended early"))??;
    let last = args.services - 1;
    let targets: [(String, SocketAddrV4); TARGETS] = [
        ("Service 1 (ClusterIP)".to_owned(), SocketAddrV4::new(vip(0), 80)),
        (format!("Service {} (ClusterIP)", last + 1), SocketAddrV4::new(vip(last), 80)),
        ("endpoint, no Service (floor)".to_owned(), SocketAddrV4::new(backend_endpoint(0), BACKEND_PORT)),
    ];
    let rounds = args.connects;
    let addrs: Vec<SocketAddrV4> = targets.iter().map(|(_, a)| *a).collect();
    let measured = lab.client.run_in(move || {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); addrs.len()];
        for round in 0..WARMUP_ROUNDS + rounds {
            // Rotate the order every round: no target always goes first.
            for k in 0..addrs.len() {
                let t = (round + k) % addrs.len();
                let elapsed = timed_connect(client_source(t), addrs[t])?;
                if round >= WARMUP_ROUNDS {
                    samples[t].push(elapsed);
                }
            }
        }
        Ok(samples)
    });
    stop.store(true, Ordering::Relaxed);
    let served = server.join().map_err(|_| anyhow::anyhow!("backend thread panicked"))?;
    let samples = measured?;
    served?;

    let targets: Vec<TargetLatency> = targets
        .into_iter()
        .zip(samples)
        .map(|((target, addr), samples)| TargetLatency::new(target, addr, samples))
        .collect();
    let ratio = |f: fn(&TargetLatency) -> f64| f(&targets[1]) / f(&targets[0]).max(1e-9);
    Ok(DatapathResult {
        mode: mode.as_str(),
        services: args.services,
        load_ms: millis(load),
        last_over_first_p50: ratio(|t| t.p50_us),
        last_over_first_p99: ratio(|t| t.p99_us),
        targets,
    })
}

/// The report section: per mode and target, the connect latency percentiles.
pub fn table(results: &[DatapathResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(first) = results.first() else { return s };
    let _ = writeln!(s, "\n## Data path: TCP connect latency through the node, {} Services loaded\n", first.services);
    let _ = writeln!(s, "| mode | target | connects | p50 | p90 | p99 | mean |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in results {
        for t in &r.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
                r.mode, t.target, t.connects, t.p50_us, t.p90_us, t.p99_us, t.mean_us
            );
        }
    }
    let _ = writeln!(s);
    for r in results {
        let within = (r.last_over_first_p50 - 1.0).abs() <= 0.05;
        let _ = writeln!(
            s,
            "- {}: last / first Service p50 {:.3}×, p99 {:.3}× ({} Services loaded in {:.0} ms){}",
            r.mode,
            r.last_over_first_p50,
            r.last_over_first_p99,
            r.services,
            r.load_ms,
            if r.mode == "nftables" {
                format!(" — target p50 within 5 %: {}", if within { "met" } else { "MISSED" })
            } else {
                String::new()
            }
        );
    }
    s
}
