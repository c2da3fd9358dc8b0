//! The HTTPS listener and request routing (kubelet's paths).

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Result;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::exec::SessionKind;
use crate::runtime::{PodRef, PodRuntime, RuntimeError};
use crate::tls::KubeletTls;

/// Response bodies: a buffer or a stream (logs).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn empty() -> Body {
    Empty::new().boxed_unsync()
}

/// A plain-text response, as kubelet answers errors (the API server turns them into Status
/// objects for the client).
pub fn text(code: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut body = message.into();
    body.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The HTTP answer for a runtime error raised before any upgrade.
pub fn runtime_error(err: &RuntimeError) -> Response<Body> {
    let code = match err {
        RuntimeError::PodNotFound(_) | RuntimeError::ContainerNotFound(_) => StatusCode::NOT_FOUND,
        RuntimeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        RuntimeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, err.to_string())
}

/// Serves the kubelet API on `listener` until the process ends: TLS with mandatory client
/// certificates from `tls`, requests answered through `runtime`.
pub async fn serve(listener: TcpListener, tls: KubeletTls, runtime: Arc<dyn PodRuntime>) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.server_config()?));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "kubelet API accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "kubelet API TLS handshake failed");
                    return;
                }
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let runtime = runtime.clone();
                async move { Ok::<_, Infallible>(route(runtime, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%peer, error = %e, "kubelet API connection ended with an error");
            }
        });
    }
}

/// Which kubelet endpoint a path names.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Logs(PodRef, String),
    Exec(PodRef, String),
    Attach(PodRef, String),
    PortForward(PodRef),
}

fn parse_path(path: &str) -> Option<Endpoint> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let pod = |ns: &str, name: &str| PodRef { namespace: ns.to_string(), name: name.to_string() };
    match segs.as_slice() {
        ["containerLogs", ns, name, container] => Some(Endpoint::Logs(pod(ns, name), container.to_string())),
        ["exec", ns, name, container] => Some(Endpoint::Exec(pod(ns, name), container.to_string())),
        // kubelet also accepts a pod UID before the container; it is not needed here.
        ["exec", ns, name, _uid, container] => Some(Endpoint::Exec(pod(ns, name), container.to_string())),
        ["attach", ns, name, container] | ["attach", ns, name, _, container] => {
            Some(Endpoint::Attach(pod(ns, name), container.to_string()))
        }
        ["portForward", ns, name] | ["portForward", ns, name, _] => Some(Endpoint::PortForward(pod(ns, name))),
        _ => None,
    }
}

async fn route(runtime: Arc<dyn PodRuntime>, req: Request<Incoming>) -> Response<Body> {
    let endpoint = match parse_path(req.uri().path()) {
        Some(e) => e,
        None => return text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let query = crate::query::Query::parse(req.uri().query());
    match endpoint {
        Endpoint::Logs(pod, container) => {
            if req.method() != Method::GET {
                return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
            crate::logs::serve(runtime, pod, container, &query).await
        }
        Endpoint::Exec(pod, container) => {
            crate::exec::serve(runtime, SessionKind::Exec, pod, container, &query, req).await
        }
        Endpoint::Attach(pod, container) => {
            crate::exec::serve(runtime, SessionKind::Attach, pod, container, &query, req).await
        }
        Endpoint::PortForward(pod) => crate::portforward::serve(runtime, pod, req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubelet_paths() {
        let p = PodRef { namespace: "ns".into(), name: "p".into() };
        assert_eq!(parse_path("/containerLogs/ns/p/c"), Some(Endpoint::Logs(p.clone(), "c".into())));
        assert_eq!(parse_path("/exec/ns/p/c"), Some(Endpoint::Exec(p.clone(), "c".into())));
        assert_eq!(parse_path("/attach/ns/p/c"), Some(Endpoint::Attach(p.clone(), "c".into())));
        assert_eq!(parse_path("/attach/ns/p/uid/c"), Some(Endpoint::Attach(p.clone(), "c".into())));
        assert_eq!(parse_path("/portForward/ns/p"), Some(Endpoint::PortForward(p)));
        assert_eq!(parse_path("/containerLogs/ns/p"), None);
        assert_eq!(parse_path("/"), None);
    }
}
