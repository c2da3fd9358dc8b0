//! `agnhost netexec`: the Kubernetes e2e tests' Swiss-army server. An HTTP server (default port
//! 8080) whose endpoints echo, report the client address and host name, run shell commands, dial
//! other servers and exit on request (see [`routes`]), and a UDP server (default port 8081)
//! answering `hostname`, `echo <msg>` and `clientip` (see [`udp`]).
//!
//! Lifecycle, as upstream: `/healthz` is 200 once the UDP server is up (412 before, and always
//! when UDP is disabled with `--udp-port=-1`); on SIGTERM `/readyz` turns 503 while the servers
//! keep answering for `--delay-shutdown` seconds, then the process exits 0 (SIGINT: at once);
//! `/exit?code=N` drains connections for `timeout` and exits with N. With `--tls-cert-file` and
//! `--tls-private-key-file` the HTTP server speaks HTTPS.

mod dial;
mod routes;
mod shell;
mod udp;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::sync::{mpsc, oneshot};

use crate::flags::{self, Flag, Kind};
use crate::net::{hostname, BindHost, Signals, Stop};

const FLAGS: &[Flag] = &[
    Flag { name: "http-port", kind: Kind::Value, help: "HTTP Listen Port (default 8080)" },
    Flag { name: "udp-port", kind: Kind::Value, help: "UDP Listen Port, -1 for none (default 8081)" },
    Flag { name: "sctp-port", kind: Kind::Value, help: "SCTP Listen Port (skiff: only -1, the default)" },
    Flag { name: "udp-listen-addresses", kind: Kind::Value, help: "Comma-separated IPs the UDP server listens on" },
    Flag { name: "delay-shutdown", kind: Kind::Value, help: "Seconds to keep serving after SIGTERM" },
    Flag { name: "http-override", kind: Kind::Value, help: "Answer every request as a GET of this path?query" },
    Flag { name: "tls-cert-file", kind: Kind::Value, help: "PEM certificate (chain) file: serve HTTPS" },
    Flag { name: "tls-private-key-file", kind: Kind::Value, help: "PEM private key matching --tls-cert-file" },
];

/// netexec's settings, from its flags.
#[derive(Debug)]
struct Config {
    http_port: u16,
    /// `None`: `--udp-port=-1`.
    udp_port: Option<u16>,
    /// Empty: every address.
    udp_addresses: Vec<IpAddr>,
    delay_shutdown: Duration,
    http_override: Option<http::uri::PathAndQuery>,
    /// `--tls-cert-file` and `--tls-private-key-file`: serve HTTPS.
    tls_files: Option<(PathBuf, PathBuf)>,
}

impl Config {
    fn from_flags(parsed: &flags::Parsed) -> anyhow::Result<Config> {
        let port = |name: &str, default: i64| -> anyhow::Result<Option<u16>> {
            match parsed.int(name, default).map_err(|e| anyhow!(e))? {
                -1 => Ok(None),
                n => Ok(Some(u16::try_from(n).map_err(|_| anyhow!("--{name}={n}: not a port number"))?)),
            }
        };
        let http_port = port("http-port", 8080)?.ok_or_else(|| anyhow!("--http-port=-1: not a port number"))?;
        if port("sctp-port", -1)?.is_some() {
            bail!("--sctp-port: skiff's built-in netexec has no SCTP server");
        }
        let tls_files = match (parsed.string("tls-cert-file", ""), parsed.string("tls-private-key-file", "")) {
            (cert, _) if cert.is_empty() => None,
            (_, key) if key.is_empty() => bail!("--tls-cert-file needs --tls-private-key-file"),
            (cert, key) => Some((PathBuf::from(cert), PathBuf::from(key))),
        };
        let mut udp_addresses = Vec::new();
        for text in parsed.string("udp-listen-addresses", "").split(',').filter(|s| !s.is_empty()) {
            let ip: IpAddr = text.trim().parse().map_err(|_| anyhow!("parseAddress: invalid address {text}"))?;
            if !udp_addresses.contains(&ip) {
                udp_addresses.push(ip);
            }
        }
        let delay = parsed.int("delay-shutdown", 0).map_err(|e| anyhow!(e))?;
        let http_override = match parsed.get("http-override").filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| anyhow!("--http-override={text:?}: not a path and query"))?),
        };
        Ok(Config {
            http_port,
            udp_port: port("udp-port", 8081)?,
            udp_addresses,
            delay_shutdown: Duration::from_secs(delay.max(0).unsigned_abs()),
            http_override,
            tls_files,
        })
    }
}

/// What the handlers share with the program's main loop.
pub(crate) struct State {
    hostname: String,
    /// The UDP server is up (upstream's "serverReady").
    udp_ready: AtomicBool,
    /// SIGTERM arrived: `/readyz` answers 503 from now on.
    terminating: AtomicBool,
    exits: mpsc::UnboundedSender<ExitRequest>,
    http_override: Option<http::uri::PathAndQuery>,
}

/// `/exit` or `/shutdown` asks the process to exit with `code`, after draining connections for
/// `drain` (zero: at once).
pub(crate) struct ExitRequest {
    code: i32,
    drain: Duration,
}

const USAGE: &str =
    "Usage: agnhost netexec [flags]\n\nHTTP server (--http-port) with /, /clientip, /dial, /echo, /exit, \
/header, /healthz, /readyz, /hostname, /redirect, /shell, /shutdown; UDP server (--udp-port) answering \
hostname, echo <msg>, clientip.\n\nFlags:\n";

/// Runs netexec; returns the process exit code.
pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        out!("{USAGE}{}", flags::usage(FLAGS));
        return Ok(0);
    }
    let config = Config::from_flags(&parsed)?;
    let mut signals = Signals::install()?;
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        hostname: hostname()?,
        udp_ready: AtomicBool::new(false),
        terminating: AtomicBool::new(false),
        exits: exit_tx,
        http_override: config.http_override.clone(),
    });

    let tls = match &config.tls_files {
        Some((cert, key)) => Some(crate::tls::acceptor_from_files(cert, key)?),
        None => None,
    };
    let listener = bind.tcp(config.http_port, "netexec HTTP server")?;
    let (udp_failed_tx, mut udp_failed) = mpsc::unbounded_channel::<anyhow::Error>();
    if let Some(port) = config.udp_port {
        let hosts: Vec<Option<IpAddr>> = if config.udp_addresses.is_empty() {
            vec![bind.0]
        } else {
            config.udp_addresses.iter().copied().map(Some).collect()
        };
        for host in hosts {
            let socket = bind.udp_on(host, port, "netexec UDP server")?;
            tracing::info!("Started UDP server on {}", socket.local_addr().context("UDP socket address")?);
            let (state, failed) = (state.clone(), udp_failed_tx.clone());
            tokio::spawn(async move {
                let error = udp::serve(socket, state.clone()).await;
                state.udp_ready.store(false, Ordering::SeqCst);
                let _ = failed.send(error);
            });
        }
        state.udp_ready.store(true, Ordering::SeqCst);
    }
    drop(udp_failed_tx);

    let scheme = if tls.is_some() { "HTTPS" } else { "HTTP" };
    tracing::info!("Started {scheme} server on {}", listener.local_addr().context("HTTP listener address")?);
    let (drain_tx, drain_rx) = oneshot::channel::<Duration>();
    let drain = async move { drain_rx.await.unwrap_or(Duration::ZERO) };
    let server = tokio::spawn(crate::http::serve_with_tls(listener, tls, routes::handler(state.clone()), drain));

    tokio::select! {
        Some(request) = exit_rx.recv() => {
            if !request.drain.is_zero() {
                let _ = drain_tx.send(request.drain);
                let _ = server.await;
                tracing::info!("Graceful shutdown completed");
            }
            Ok(request.code)
        }
        stop = signals.next() => {
            if stop == Stop::Terminate {
                state.terminating.store(true, Ordering::SeqCst);
                if !config.delay_shutdown.is_zero() {
                    tracing::info!("Sleeping {} seconds before terminating...", config.delay_shutdown.as_secs());
                    tokio::time::sleep(config.delay_shutdown).await;
                }
            }
            Ok(0)
        }
        Some(error) = udp_failed.recv() => Err(error),
    }
}
