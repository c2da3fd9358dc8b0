//! `agnhost serve-hostname`: answers every HTTP request (default), TCP connection (`--tcp`) or
//! UDP datagram (`--udp`) on `--port` (default 9376) with the host name, i.e. the pod's name.
//! The e2e tests use it to see which backend a Service connection reached.
//!
//! As upstream: `--tcp`/`--udp` need `--http=false`; `--close` ends each HTTP connection after
//! one answer; after SIGTERM it keeps serving for 60 s ("awaiting pod deletion") and then exits
//! 0. SIGINT exits at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use http::header::{HeaderValue, CONNECTION};
use tokio::io::AsyncWriteExt;

use crate::flags::{self, Flag, Kind};
use crate::http::{ok, Handler};
use crate::net::{hostname, BindHost, Signals, Stop};

const FLAGS: &[Flag] = &[
    Flag { name: "tcp", kind: Kind::Bool, help: "Serve raw over TCP." },
    Flag { name: "udp", kind: Kind::Bool, help: "Serve raw over UDP." },
    Flag { name: "http", kind: Kind::Bool, help: "Serve HTTP. (default true)" },
    Flag { name: "close", kind: Kind::Bool, help: "Close connection per each HTTP request." },
    Flag { name: "port", kind: Kind::Value, help: "Port number. (default 9376)" },
];

/// How long the servers keep answering after SIGTERM.
const AWAIT_DELETION: Duration = Duration::from_secs(60);
/// Upstream reads UDP requests into a 16-byte buffer; the content does not matter.
const UDP_BUFFER: usize = 16;

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        out!("Usage: agnhost serve-hostname [flags]\n\nFlags:\n{}", flags::usage(FLAGS));
        return Ok(0);
    }
    let (tcp, udp, http, close) =
        (parsed.bool("tcp", false), parsed.bool("udp", false), parsed.bool("http", true), parsed.bool("close", false));
    if http && (tcp || udp) {
        bail!("Can't serve TCP/UDP mode and HTTP mode at the same time");
    }
    let port = parsed.int("port", 9376).map_err(|e| anyhow!(e))?;
    let port = u16::try_from(port).map_err(|_| anyhow!("--port={port}: not a port number"))?;
    let mut signals = Signals::install()?;
    let name = hostname()?;

    if tcp {
        let listener = bind.tcp(port, "serve-hostname TCP server")?;
        tracing::info!("Serving TCP on {}", listener.local_addr().context("TCP listener address")?);
        tokio::spawn(serve_tcp(listener, name.clone()));
    }
    if udp {
        let socket = bind.udp(port, "serve-hostname UDP server")?;
        tracing::info!("Serving UDP on {}", socket.local_addr().context("UDP socket address")?);
        tokio::spawn(serve_udp(socket, name.clone()));
    }
    if http {
        let listener = bind.tcp(port, "serve-hostname HTTP server")?;
        tracing::info!("Serving HTTP on {}", listener.local_addr().context("HTTP listener address")?);
        tokio::spawn(crate::http::serve(listener, http_handler(name, close), std::future::pending()));
    }
    tracing::info!("Serving on port {port}.");

    if signals.next().await == Stop::Terminate {
        tracing::info!("Shutting down after receiving signal: terminated.");
        tracing::info!("Awaiting pod deletion.");
        let deadline = tokio::time::sleep(AWAIT_DELETION);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                stop = signals.next() => if stop == Stop::Interrupt { break },
            }
        }
    }
    Ok(0)
}

fn http_handler(name: String, close: bool) -> Handler {
    let name: Arc<str> = name.into();
    Arc::new(move |_req, peer| {
        tracing::debug!(%peer, "HTTP request");
        let mut response = ok(name.to_string());
        if close {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Box::pin(std::future::ready(response))
    })
}

async fn serve_tcp(listener: tokio::net::TcpListener, name: String) {
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                tracing::debug!(%peer, "TCP request");
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(name.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a TCP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_udp(socket: tokio::net::UdpSocket, name: String) {
    let mut buffer = [0u8; UDP_BUFFER];
    loop {
        match socket.recv_from(&mut buffer).await {
            Ok((_, peer)) => {
                tracing::debug!(%peer, "UDP request");
                if let Err(e) = socket.send_to(name.as_bytes(), peer).await {
                    tracing::warn!(%peer, error = %e, "failed to answer UDP client");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving a UDP datagram failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
