//! The HTTP serving shared by the built-in programs: a hyper 1 accept loop with a graceful
//! drain, request form values read the way Go's `Request.FormValue` reads them, and responses
//! with the headers Go's `net/http` puts on plain-text answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio_rustls::TlsAcceptor;

use crate::net::canonical;

/// Every built-in answer is small and complete, so one buffered body type serves all.
pub type Body = Full<Bytes>;
pub type Response = http::Response<Body>;
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
/// A request handler: the request and the client's address (`ip:port`, IPv4 clients of a
/// dual-stack socket shown as IPv4).
pub type Handler = Arc<dyn Fn(Request<Incoming>, SocketAddr) -> ResponseFuture + Send + Sync>;

/// A client that does not finish its TLS handshake in this time is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest form body read (Go's limit for url-encoded bodies is 10 MB as well).
const MAX_FORM_BODY: usize = 10 << 20;

/// Serves HTTP/1.1 (and h2c) on `listener` until `drain` resolves with a grace period; then
/// stops accepting and gives open connections up to that period to finish their requests.
pub async fn serve(listener: tokio::net::TcpListener, handler: Handler, drain: impl Future<Output = Duration>) {
    serve_with_tls(listener, None, handler, drain).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    drain: impl Future<Output = Duration>,
) {
    let graceful = GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(drain);
    let grace = loop {
        let (tcp, peer) = tokio::select! {
            grace = &mut drain => break grace,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let peer = canonical(peer);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let response = handler(req, peer);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(tcp), service).into_owned()).await,
                Some(tls) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err("TLS handshake timed out".into()),
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    };
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::info!(?grace, "connections still open after the grace period");
    }
}

/// A plain-text answer, with the `Content-Type` Go's content sniffing gives text.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let body = body.into();
    let mut response = http::Response::new(Full::new(body.clone()));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}

/// `200 OK` with a plain-text body.
pub fn ok(body: impl Into<Bytes>) -> Response {
    text(StatusCode::OK, body)
}

/// An error answer the way Go's `http.Error` writes it: the message and a newline.
pub fn error(status: StatusCode, message: &str) -> Response {
    let mut response = text(status, format!("{message}\n"));
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// The request's form values: url-encoded body values first (POST, PUT and PATCH only), then
/// the query string's, like Go's `Request.Form`.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads the form of `req`, consuming its body.
    pub async fn read(req: Request<Incoming>) -> (http::request::Parts, Form) {
        let (parts, body) = req.into_parts();
        let mut values = Vec::new();
        let is_form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/x-www-form-urlencoded"));
        if is_form && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            if let Ok(collected) = Limited::new(body, MAX_FORM_BODY).collect().await {
                values.extend(form_urlencoded::parse(&collected.to_bytes()).into_owned());
            }
        }
        values.extend(Form::from_query(parts.uri.query()).0);
        (parts, Form(values))
    }

    /// The values of a query string alone.
    pub fn from_query(query: Option<&str>) -> Form {
        Form(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    /// The first value of `key`, or "" (Go's `FormValue`).
    pub fn get(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_default()
    }
}

/// JSON the way Go's `encoding/json` writes it: `<`, `>` and `&` escaped for HTML safety.
pub fn go_json(value: &serde_json::Value) -> String {
    let plain = value.to_string();
    // Those three characters only ever occur inside JSON strings, so escaping them is safe.
    plain.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}
