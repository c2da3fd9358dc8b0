//! `/portForward/{ns}/{pod}`: `kubectl port-forward` over SPDY/3.1 (`portforward.k8s.io`),
//! either tunnelled in a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`, kubectl 1.31+)
//! or on a plain `Upgrade: SPDY/3.1` connection (the fallback).
//!
//! Each forwarded TCP connection is a pair of SPDY streams sharing a `requestID` header: an
//! `error` stream (we write a message there if the pod's port cannot be reached) and a `data`
//! stream (the connection's bytes). Both carry the target `port`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::runtime::{PodRef, PodRuntime};
use crate::server::{text, Body};
use crate::spdy::{self, HeaderBlock, IncomingStream};
use crate::websocket;

/// The SPDY subprotocol of port-forward.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels it.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the first stream of a pair waits for its partner (kubelet's stream creation timeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(runtime: Arc<dyn PodRuntime>, pod: PodRef, mut req: Request<Incoming>) -> Response<Body> {
    let headers = req.headers().clone();
    if websocket::is_websocket_upgrade(&headers) {
        let offered = websocket::offered_protocols(&headers);
        if !offered.iter().any(|p| p == WEBSOCKET_PROTOCOL) {
            return text(
                StatusCode::BAD_REQUEST,
                format!("unable to negotiate a protocol: client offered {offered:?}, server supports [{WEBSOCKET_PROTOCOL:?}]"),
            );
        }
        let Some(resp) = websocket::accept_response(&headers, WEBSOCKET_PROTOCOL) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = websocket::from_upgraded(upgraded).await;
                    run(websocket::into_byte_pipe(socket), runtime, pod).await;
                }
                Err(e) => tracing::debug!(error = %e, "port-forward WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    if !spdy::upgrade::is_spdy_upgrade(&headers) {
        return text(StatusCode::BAD_REQUEST, "port-forward needs an upgrade to SPDY/3.1 or a WebSocket");
    }
    let protocol = match spdy::upgrade::negotiate(&headers, &[PROTOCOL]) {
        Ok(p) => p,
        Err(refusal) => return *refusal,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run(hyper_util::rt::TokioIo::new(upgraded), runtime, pod).await,
            Err(e) => tracing::debug!(error = %e, "port-forward SPDY upgrade failed"),
        }
    });
    spdy::upgrade::switching_protocols(protocol)
}

/// What a stream is for, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamRole {
    kind: StreamKind,
    port: u16,
    request_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Error,
    Data,
}

fn stream_role(id: u32, headers: &HeaderBlock) -> Result<StreamRole, String> {
    let kind = match headers.get("streamtype") {
        Some("error") => StreamKind::Error,
        Some("data") => StreamKind::Data,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    let port = headers.get("port").ok_or("missing port header")?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port header {port:?}"))?;
    // Old clients send no request id; their pairs are consecutive odd stream ids, error first.
    let request_id = match headers.get("requestid") {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => match kind {
            StreamKind::Error => id.to_string(),
            StreamKind::Data => id.saturating_sub(2).to_string(),
        },
    };
    Ok(StreamRole { kind, port, request_id })
}

/// Streams waiting for their partner.
struct Pending {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
    since: Instant,
}

async fn run<IO>(io: IO, runtime: Arc<dyn PodRuntime>, pod: PodRef)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    // Streams with bad headers are refused up front (the stream id only matters for pairing).
    let mut session = spdy::serve_session(io, |headers| stream_role(0, headers).map(|_| ()));
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            s = session.streams.recv() => match s { Some(s) => s, None => break },
            _ = sweep.tick() => {
                pending.retain(|_, p| p.since.elapsed() < PAIR_TIMEOUT);
                continue;
            }
        };
        let Ok(role) = stream_role(stream.id, &stream.headers) else { continue };
        let entry = pending.entry(role.request_id.clone()).or_insert(Pending {
            error: None,
            data: None,
            since: Instant::now(),
        });
        match role.kind {
            StreamKind::Error => entry.error = Some(stream),
            StreamKind::Data => entry.data = Some(stream),
        }
        if entry.error.is_some() && entry.data.is_some() {
            if let Some(Pending { error: Some(error), data: Some(data), .. }) = pending.remove(&role.request_id) {
                tokio::spawn(forward(runtime.clone(), pod.clone(), role.port, error, data, session.closed.clone()));
            }
        }
    }
}

/// Forwards one connection: the data stream's bytes to the pod's port and back.
async fn forward(
    runtime: Arc<dyn PodRuntime>,
    pod: PodRef,
    port: u16,
    error: IncomingStream,
    mut data: IncomingStream,
    mut closed: watch::Receiver<bool>,
) {
    let socket = match runtime.port_forward(&pod, port).await {
        Ok(s) => s,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {}/{}: {e}", pod.namespace, pod.name);
            let _ = error.writer.send(message.as_bytes()).await;
            let _ = error.writer.finish().await;
            let _ = data.writer.finish().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = socket.into_split();
    let upstream = async {
        while let Some(chunk) = data.data.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client half-closed (or went away): pass the EOF on.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if data.writer.send(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = data.writer.finish().await;
        let _ = error.writer.finish().await;
    };
    let both = async { futures::join!(upstream, downstream) };
    tokio::select! {
        _ = both => {}
        _ = closed.wait_for(|c| *c) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(&str, &str)]) -> HeaderBlock {
        HeaderBlock(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn reads_stream_roles_like_kubelet() {
        let r = stream_role(5, &block(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")])).unwrap();
        assert_eq!(r, StreamRole { kind: StreamKind::Data, port: 80, request_id: "0".into() });
        // No request id: derived from the stream id so that pairs (1, 3) match.
        let e = stream_role(1, &block(&[("streamtype", "error"), ("port", "80")])).unwrap();
        let d = stream_role(3, &block(&[("streamtype", "data"), ("port", "80")])).unwrap();
        assert_eq!(e.request_id, d.request_id);
        assert!(stream_role(1, &block(&[("streamtype", "data"), ("port", "0")])).is_err());
        assert!(stream_role(1, &block(&[("streamtype", "data"), ("port", "x")])).is_err());
        assert!(stream_role(1, &block(&[("streamtype", "stdin"), ("port", "80")])).is_err());
        assert!(stream_role(1, &block(&[("streamtype", "data")])).is_err());
    }
}
