//! WebSocket plumbing: recognising an upgrade request, picking the subprotocol, answering the
//! handshake, and a byte-pipe view of a WebSocket for protocols that tunnel a byte stream
//! (SPDY for port-forward).
//!
//! The HTTP part of the handshake is hyper's (`hyper::upgrade`); framing after it is
//! tokio-tungstenite's, a well-kept WebSocket implementation on tokio.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role};
use tokio_tungstenite::WebSocketStream;

use crate::server::Body;

/// A WebSocket on an upgraded HTTP connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|part| part.trim().eq_ignore_ascii_case(token))))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// The client's offered subprotocols, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `101 Switching Protocols` answer for `protocol` (empty: none), or None when the request
/// lacks a key.
pub fn accept_response(headers: &HeaderMap, protocol: &str) -> Option<Response<Body>> {
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    let accept = derive_accept_key(key.as_bytes());
    let mut resp = Response::new(crate::server::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).ok()?);
    // A client that offered no subprotocol must not be answered one.
    if !protocol.is_empty() {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(protocol).ok()?);
    }
    Some(resp)
}

/// The close message that ends a session cleanly. It must carry a status code: client-go
/// treats only "normal closure" (1000) as the end of its streams; a bare close (1005) is an
/// error to it.
pub fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// Wraps an upgraded connection as the server end of a WebSocket.
pub async fn from_upgraded(upgraded: Upgraded) -> Socket {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// Presents a WebSocket as a byte stream: binary messages in are bytes to read, bytes written
/// go out as binary messages (the framing kubectl's SPDY-over-WebSocket tunnel uses). The
/// pump stops when either side closes.
pub fn into_byte_pipe(socket: Socket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (mut pipe_rx, mut pipe_tx) = tokio::io::split(ours);
        let inbound = async {
            while let Some(Ok(msg)) = ws_rx.next().await {
                let data: Bytes = match msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if pipe_tx.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = pipe_tx.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ws_tx.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = ws_tx.send(normal_close()).await;
            let _ = ws_tx.close().await;
        };
        // When the peer goes away the inbound side ends; the SPDY session then ends, its
        // writer shuts the pipe and the outbound side ends too.
        futures::join!(inbound, outbound);
    });
    theirs
}
