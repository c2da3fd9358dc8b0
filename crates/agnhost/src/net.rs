//! Sockets the built-in servers listen on, and the signals that stop them.
//!
//! Go's `net.Listen("tcp", ":8080")` listens on every IPv4 *and* IPv6 address with one socket;
//! the servers here do the same (`[::]` with `IPV6_V6ONLY` off, or `0.0.0.0` where IPv6 is
//! unavailable), unless `skiff builtin --bind-host` names one address (tests use 127.0.0.1 so
//! nothing listens on the machine's own interfaces).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Where the servers of one program listen.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindHost(pub Option<IpAddr>);

impl BindHost {
    /// A TCP listener on `port` (0: any free port), with a clear error on failure.
    pub fn tcp(self, port: u16, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
        let socket = self
            .socket(port, Type::STREAM, Protocol::TCP)
            .and_then(|(socket, addr)| {
                socket.bind(&addr.into())?;
                socket.listen(1024)?;
                Ok(socket)
            })
            .with_context(|| format!("{what}: cannot listen on TCP port {port}{}", self.describe()))?;
        socket.set_nonblocking(true)?;
        Ok(tokio::net::TcpListener::from_std(socket.into())?)
    }

    /// A UDP socket bound to `port` (0: any free port), with a clear error on failure.
    pub fn udp(self, port: u16, what: &str) -> anyhow::Result<tokio::net::UdpSocket> {
        self.udp_on(self.0, port, what)
    }

    /// A UDP socket bound to `host` (or every address) and `port`.
    pub fn udp_on(self, host: Option<IpAddr>, port: u16, what: &str) -> anyhow::Result<tokio::net::UdpSocket> {
        let socket = BindHost(host)
            .socket(port, Type::DGRAM, Protocol::UDP)
            .and_then(|(socket, addr)| {
                socket.bind(&addr.into())?;
                Ok(socket)
            })
            .with_context(|| format!("{what}: cannot listen on UDP port {port}{}", BindHost(host).describe()))?;
        socket.set_nonblocking(true)?;
        Ok(tokio::net::UdpSocket::from_std(socket.into())?)
    }

    /// A socket for `port`: on the bind host if there is one, else dual-stack `[::]` falling
    /// back to `0.0.0.0` when the kernel has no IPv6.
    fn socket(self, port: u16, ty: Type, protocol: Protocol) -> io::Result<(Socket, SocketAddr)> {
        let make = |addr: SocketAddr| -> io::Result<(Socket, SocketAddr)> {
            let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
            if ty == Type::STREAM {
                // Restarts may bind while old connections linger in TIME_WAIT; for UDP the same
                // option would let two servers share a port silently, so only TCP gets it.
                socket.set_reuse_address(true)?;
            }
            if addr.is_ipv6() && addr.ip().is_unspecified() {
                socket.set_only_v6(false)?;
            }
            Ok((socket, addr))
        };
        match self.0 {
            Some(ip) => make(SocketAddr::new(ip, port)),
            None => make(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
                .or_else(|_| make(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))),
        }
    }

    fn describe(self) -> String {
        self.0.map(|ip| format!(" on {ip}")).unwrap_or_default()
    }
}

/// The peer address as the program reports it: an IPv4 client of a dual-stack socket arrives
/// as `::ffff:a.b.c.d`, which Go (and so every test written against agnhost) shows as `a.b.c.d`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The signals that ask a program to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Terminate,
    Interrupt,
}

/// SIGTERM and SIGINT handlers, installed when the program starts so a signal that arrives
/// early is not lost (nor kills the process with the default action).
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Terminate,
            _ = self.int.recv() => Stop::Interrupt,
        }
    }
}

/// An I/O error in Go's words: `connection refused`, not `Connection refused (os error 111)`.
pub fn go_errno(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The host name (in a pod: the pod's name, set by the agent in the pod's UTS namespace).
pub fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    Ok(name.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_error_wording() {
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(go_errno(&refused), "connection refused");
    }

    #[test]
    fn ipv4_clients_of_dual_stack_sockets_show_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:99".parse().expect("address");
        assert_eq!(canonical(mapped).to_string(), "10.0.0.7:99");
        let v6: SocketAddr = "[::1]:99".parse().expect("address");
        assert_eq!(canonical(v6).to_string(), "[::1]:99");
    }
}
