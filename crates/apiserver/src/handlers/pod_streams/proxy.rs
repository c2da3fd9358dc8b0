//! Moving bytes between the client and the kubelet: a streamed log body, or an upgraded
//! connection spliced both ways (upstream's upgrade-aware proxy).

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;
use skiff_api::ApiError;
use tokio::sync::mpsc;

use super::kubelet::Target;
use crate::http::{self as h, Body};
use crate::state::ApiServer;

/// Request headers that carry the upgrade negotiation to the kubelet (credentials do not).
const UPGRADE_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Response headers that carry the negotiation result back to the client.
const UPGRADE_RESPONSE_HEADERS: &[&str] =
    &["connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol", "x-stream-protocol-version"];

/// Largest kubelet error body read into a Status message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The log of a pod that has no node yet: empty, as upstream answers.
pub fn empty_log() -> Response<Body> {
    let mut resp = Response::new(h::full(Bytes::new()));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Sends one request on a fresh kubelet connection (upgrades allowed).
async fn send(
    server: &ApiServer,
    target: &Target,
    request: Request<Empty<Bytes>>,
) -> Result<Response<Incoming>, ApiError> {
    let tls = target.connect(server).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
        .await
        .map_err(|e| ApiError::Internal(format!("kubelet connection: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet connection ended with an error");
        }
    });
    sender.send_request(request).await.map_err(|e| ApiError::Internal(format!("kubelet request: {e}")))
}

fn kubelet_request(method: Method, target: &Target, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path).header(header::HOST, target.authority())
}

/// `GET` a log from the kubelet and stream it to the client as it arrives.
pub async fn logs(server: &ApiServer, target: &Target, path: &str) -> Result<Response<Body>, ApiError> {
    let request = kubelet_request(Method::GET, target, path)
        .body(Empty::new())
        .map_err(|e| ApiError::Internal(format!("building the kubelet request: {e}")))?;
    let resp = send(server, target, request).await?;
    if !resp.status().is_success() {
        return Ok(kubelet_failure(resp).await);
    }
    // A task moves frames over a channel so that a client that goes away drops the kubelet
    // connection (the task's send fails) and a followed log stops there too.
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(Frame::data(b)));
    let mut out = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

/// Forwards an upgrade request (WebSocket or SPDY) to the kubelet; on `101` answers the
/// client the same and splices the two upgraded connections.
pub async fn upgrade(
    server: &ApiServer,
    target: &Target,
    method: Method,
    path: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    if !wants_upgrade {
        return Err(ApiError::BadRequest("Upgrade request required".into()));
    }
    // WebSocket and SPDY upgrades exist only in HTTP/1.1 (kubectl dials them without h2).
    if req.version() != http::Version::HTTP_11 {
        return Err(ApiError::BadRequest("upgrade requests need HTTP/1.1".into()));
    }
    let mut builder = kubelet_request(method, target, path);
    for name in UPGRADE_REQUEST_HEADERS {
        for value in req.headers().get_all(*name) {
            builder = builder.header(*name, value);
        }
    }
    let request =
        builder.body(Empty::new()).map_err(|e| ApiError::Internal(format!("building the kubelet request: {e}")))?;
    let client_side = hyper::upgrade::on(&mut req);
    let mut resp = send(server, target, request).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(kubelet_failure(resp).await);
    }
    let mut out = Response::new(h::full(Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in UPGRADE_RESPONSE_HEADERS {
        for value in resp.headers().get_all(*name) {
            out.headers_mut().append(HeaderName::from_static(name), value.clone());
        }
    }
    let kubelet_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, kubelet) = futures::join!(client_side, kubelet_side);
        match (client, kubelet) {
            (Ok(client), Ok(kubelet)) => {
                let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                    tracing::debug!(error = %e, "streaming proxy ended with an error");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "streaming upgrade failed"),
        }
    });
    Ok(out)
}

/// Turns a kubelet error answer (plain text) into the Status the client sees, keeping the
/// kubelet's code and message (as upstream's generic response checker does).
async fn kubelet_failure(resp: Response<Incoming>) -> Response<Body> {
    let code = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ERROR_BODY).collect().await.map(|b| b.to_bytes());
    let message = body.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if message.is_empty() { format!("the kubelet answered {code}") } else { message };
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    h::json(code, &status)
}
