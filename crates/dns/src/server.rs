//! The network side: UDP worker threads and a TCP listener around one [`Answerer`].
//!
//! UDP is the hot path. Each worker is a plain OS thread blocked in `recv_from`, answering
//! inline into a reused buffer: no task wake-ups, no allocation, one read lock and one hash
//! lookup per query. Workers share one socket by default (the kernel wakes one waiting
//! worker per datagram, so load stays even whatever the clients' ports); more sockets on
//! the same port with `SO_REUSEPORT` are an option (see [`crate::DnsConfig::udp_sockets`]).
//! Only answers that need an upstream leave the thread, as tasks on the tokio runtime,
//! which also runs the TCP listener (length-prefixed messages, RFC 7766).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::answer::{Answerer, Outcome, Transport, UpstreamJob};
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::wire::MAX_MESSAGE;

/// Most upstream round trips in flight; beyond it queries needing one are dropped (the
/// client retries) rather than queued without bound.
const MAX_UPSTREAM_INFLIGHT: usize = 1024;
/// Most concurrent TCP connections.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Socket receive buffer asked for, to ride out bursts.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// How often blocked workers look at the shutdown flag.
const WORKER_POLL: Duration = Duration::from_millis(250);

/// Everything the listeners share.
#[derive(Clone)]
pub struct Shared {
    pub answerer: Arc<Answerer>,
    pub forwarder: Arc<Forwarder>,
    pub metrics: Arc<Metrics>,
    upstream_slots: Arc<Semaphore>,
}

impl Shared {
    pub fn new(answerer: Arc<Answerer>, forwarder: Arc<Forwarder>, metrics: Arc<Metrics>) -> Shared {
        Shared { answerer, forwarder, metrics, upstream_slots: Arc::new(Semaphore::new(MAX_UPSTREAM_INFLIGHT)) }
    }
}

/// A running server; dropping it stops the UDP workers and the TCP listener.
pub struct RunningServer {
    /// The address UDP and TCP are served on (the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    tcp_task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.tcp_task.abort();
    }
}

/// Binds `addr` on UDP and TCP and starts serving: `workers` UDP threads on `sockets`
/// sockets sharing the port with `SO_REUSEPORT` (worker `i` reads socket `i % sockets`).
/// Must be called inside a tokio runtime.
pub async fn start(addr: SocketAddr, workers: usize, sockets: usize, shared: Shared) -> io::Result<RunningServer> {
    let workers = workers.max(1);
    let (sockets, listener) = bind_udp_and_tcp(addr, sockets.clamp(1, workers)).await?;
    let local_addr = sockets[0].local_addr()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let sockets: Vec<Arc<UdpSocket>> = sockets.into_iter().map(Arc::new).collect();
    let sockets: Vec<Arc<UdpSocket>> = (0..workers).map(|i| sockets[i % sockets.len()].clone()).collect();
    for (index, socket) in sockets.into_iter().enumerate() {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{index}"))
            .spawn(move || udp_worker(index, socket, shared, runtime, shutdown))?;
    }
    let tcp_task = tokio::spawn(serve_tcp(listener, shared, workers));
    Ok(RunningServer { local_addr, shutdown, tcp_task })
}

/// Binds UDP and TCP on one port. With port 0 the UDP socket picks the port and TCP must
/// follow; that port can already be taken on TCP (an outgoing connection's ephemeral port,
/// say), so the pair is retried on a fresh port rather than failing.
async fn bind_udp_and_tcp(addr: SocketAddr, count: usize) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    const ATTEMPTS_WITH_ANY_PORT: usize = 32;
    let attempts = if addr.port() == 0 { ATTEMPTS_WITH_ANY_PORT } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let sockets = bind_udp(addr, count)?;
        match TcpListener::bind(sockets[0].local_addr()?).await {
            Ok(listener) => return Ok((sockets, listener)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// `count` UDP sockets bound to the same address with `SO_REUSEPORT`.
fn bind_udp(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(count);
    let mut bind_to = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(bind_to), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        if bind_to.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Best effort: a smaller buffer only means more drops under bursts.
        let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
        socket.bind(&bind_to.into())?;
        socket.set_read_timeout(Some(WORKER_POLL))?;
        let socket: UdpSocket = socket.into();
        // With port 0 the first socket picks the port; the others must join it.
        bind_to = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn udp_worker(
    index: usize,
    socket: Arc<UdpSocket>,
    shared: Shared,
    runtime: tokio::runtime::Handle,
    shutdown: Arc<AtomicBool>,
) {
    let stats = shared.metrics.thread(index);
    let mut packet = vec![0u8; MAX_MESSAGE];
    let mut out = Vec::with_capacity(MAX_MESSAGE);
    while !shutdown.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut packet) {
            Ok(received) => received,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let started = Instant::now();
        match shared.answerer.answer(&packet[..len], peer.ip(), Transport::Udp, &mut out) {
            Outcome::Reply { qtype, rcode } => {
                let _ = socket.send_to(&out, peer);
                stats.record(qtype, rcode, started.elapsed());
            }
            Outcome::Drop => {}
            Outcome::Upstream(job) => {
                if let Some(rcode) = shared.forwarder.try_cached(&job, &mut out) {
                    let _ = socket.send_to(&out, peer);
                    shared.metrics.count_upstream(true);
                    stats.record(Some(job.query.qtype), rcode, started.elapsed());
                    continue;
                }
                let Ok(permit) = shared.upstream_slots.clone().try_acquire_owned() else { continue };
                let shared = shared.clone();
                let socket = socket.clone();
                runtime.spawn(async move {
                    let mut buf = Vec::new();
                    let rcode = complete_upstream(&shared, &job, &mut buf).await;
                    // A UDP send does not block for long; doing it here keeps the socket std.
                    let _ = socket.send_to(&buf, peer);
                    shared.metrics.thread(index).record(Some(job.query.qtype), rcode, started.elapsed());
                    drop(permit);
                });
            }
        }
    }
}

async fn complete_upstream(shared: &Shared, job: &UpstreamJob, buf: &mut Vec<u8>) -> u16 {
    shared.metrics.count_upstream(false);
    shared.forwarder.complete(job, buf).await
}

async fn serve_tcp(listener: TcpListener, shared: Shared, stats_index: usize) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, &shared, stats_index).await {
                tracing::debug!(%peer, error = %e, "TCP connection ended");
            }
            drop(permit);
        });
    }
}

/// Answers length-prefixed queries on one connection, in order, until it closes or idles.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stats_index: usize,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut packet = Vec::new();
    let mut out = Vec::new();
    let stats = shared.metrics.thread(stats_index);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        packet.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await.map_err(io::Error::other)??;
        let started = Instant::now();
        let (qtype, rcode) = match shared.answerer.answer(&packet, peer.ip(), Transport::Tcp, &mut out) {
            Outcome::Reply { qtype, rcode } => (qtype, rcode),
            Outcome::Drop => return Ok(()),
            Outcome::Upstream(job) => match shared.forwarder.try_cached(&job, &mut out) {
                Some(rcode) => (Some(job.query.qtype), rcode),
                None => (Some(job.query.qtype), complete_upstream(shared, &job, &mut out).await),
            },
        };
        stats.record(qtype, rcode, started.elapsed());
        if out.is_empty() {
            return Ok(());
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len().min(MAX_MESSAGE) as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        stream.write_all(&framed).await?;
    }
}
