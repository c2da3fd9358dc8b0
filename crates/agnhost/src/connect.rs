//! `agnhost connect <host:port> [--timeout D] [--protocol tcp|udp] [--udp-data S]`: tries one
//! connection and exits 0 on success, or 1 with stderr starting with a fixed word that e2e
//! tests check (NetworkPolicy tests especially):
//!
//! - `UNKNOWN` – not a network problem (bad arguments), or an unclassified UDP failure;
//! - `DNS` – the host (or port) does not resolve;
//! - `TIMEOUT` – no answer within `--timeout` (0, the default, waits as long as the OS does);
//! - `REFUSED` – connection refused (for UDP: the ICMP port-unreachable answer);
//! - `OTHER` – any other network error (no route to host, …).
//!
//! Over UDP it sends `--udp-data` (default `hostname`) plus a newline and needs an answer.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::anyhow;

use crate::flags::{self, Flag, Kind};
use crate::net::go_errno;

const FLAGS: &[Flag] = &[
    Flag { name: "timeout", kind: Kind::Value, help: "Maximum time before returning an error (default 0s)" },
    Flag { name: "protocol", kind: Kind::Value, help: "tcp or udp (default tcp)" },
    Flag { name: "udp-data", kind: Kind::Value, help: "The UDP payload sent to the server (default hostname)" },
];

/// Why a connection attempt failed: the fixed word tests look for, and the details.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    class: &'static str,
    detail: Option<String>,
}

impl Failure {
    fn new(class: &'static str, detail: impl Into<String>) -> Failure {
        Failure { class, detail: Some(detail.into()) }
    }
}

pub async fn run(argv: &[String]) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        out!("Usage: agnhost connect [host:port] [flags]\n\nFlags:\n{}", flags::usage(FLAGS));
        return Ok(0);
    }
    let [dest] = parsed.positional.as_slice() else {
        anyhow::bail!("accepts 1 arg(s), received {}", parsed.positional.len());
    };
    let timeout = parsed.duration("timeout", Duration::ZERO).map_err(|e| anyhow!(e))?;
    let result = match parsed.string("protocol", "tcp").as_str() {
        "" | "tcp" => connect_tcp(dest, timeout).await,
        "udp" => connect_udp(dest, timeout, &parsed.string("udp-data", "hostname")).await,
        "sctp" => Err(Failure::new("OTHER", "skiff's built-in agnhost has no SCTP")),
        other => {
            errln!("Unsupported protocol {other}");
            return Ok(1);
        }
    };
    match result {
        Ok(()) => Ok(0),
        Err(Failure { class, detail: None }) => {
            errln!("{class}");
            Ok(1)
        }
        Err(Failure { class, detail: Some(detail) }) => {
            errln!("{class}: {detail}");
            Ok(1)
        }
    }
}

async fn connect_tcp(dest: &str, timeout: Duration) -> Result<(), Failure> {
    let (host, port) = split_host_port(dest).map_err(|e| Failure::new("UNKNOWN", e))?;
    let addr = resolve(host, port).await.map_err(|e| Failure::new("DNS", e))?;
    let attempt = tokio::net::TcpStream::connect(addr);
    let result = if timeout.is_zero() {
        attempt.await
    } else {
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => return Err(Failure { class: "TIMEOUT", detail: None }),
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Err(Failure { class: "REFUSED", detail: None }),
        Err(e) if e.kind() == ErrorKind::TimedOut => Err(Failure { class: "TIMEOUT", detail: None }),
        Err(e) => Err(Failure::new("OTHER", format!("dial tcp {addr}: connect: {}", go_errno(&e)))),
    }
}

async fn connect_udp(dest: &str, timeout: Duration, data: &str) -> Result<(), Failure> {
    let (host, port) = split_host_port(dest).map_err(|e| Failure::new("DNS", e))?;
    let addr = resolve(host, port).await.map_err(|e| Failure::new("DNS", e))?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = async {
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok::<_, std::io::Error>(socket)
    }
    .await
    .map_err(|e| Failure::new("OTHER", format!("dial udp {addr}: {}", go_errno(&e))))?;
    let exchange = async {
        socket.send(format!("{data}\n").as_bytes()).await.map_err(|e| ("write", e))?;
        let mut buffer = [0u8; 1024];
        socket.recv(&mut buffer).await.map_err(|e| ("read", e))
    };
    let received = if timeout.is_zero() {
        exchange.await
    } else {
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => return Err(Failure::new("TIMEOUT", format!("read udp {addr}: i/o timeout"))),
        }
    };
    match received {
        Ok(0) => Err(Failure::new(
            "OTHER",
            "No data received from the server. Cannot guarantee the server received the request.",
        )),
        Ok(_) => Ok(()),
        Err((op, e)) => {
            let detail = format!("{op} udp {addr}: {}", go_errno(&e));
            Err(Failure::new(if e.kind() == ErrorKind::ConnectionRefused { "REFUSED" } else { "UNKNOWN" }, detail))
        }
    }
}

/// Go's `net.SplitHostPort`: `host:port`, `[v6]:port`.
fn split_host_port(dest: &str) -> Result<(&str, &str), String> {
    let missing = || format!("address {dest}: missing port in address");
    if let Some(rest) = dest.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("address {dest}: missing ']' in address"))?;
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        return Ok((host, port));
    }
    let (host, port) = dest.rsplit_once(':').ok_or_else(missing)?;
    if host.contains(':') {
        return Err(format!("address {dest}: too many colons in address"));
    }
    Ok((host, port))
}

/// An IP literal or a name (IPv4 preferred), and a numeric port.
async fn resolve(host: &str, port: &str) -> Result<SocketAddr, String> {
    let port: u16 = port.parse().map_err(|_| format!("lookup tcp/{port}: unknown port"))?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let found: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| format!("lookup {host}: {}", go_errno(&e)))?.collect();
    found.iter().find(|a| a.is_ipv4()).or(found.first()).copied().ok_or_else(|| format!("lookup {host}: no such host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("10.0.0.1:80"), Ok(("10.0.0.1", "80")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port("svc.ns:8080"), Ok(("svc.ns", "8080")));
        assert!(split_host_port("10.0.0.1").is_err());
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("[::1]").is_err());
    }
}
