//! `agnhost porter`: for every environment variable `SERVE_PORT_<N>=<value>`, an HTTP server on
//! port N answering every request with `<value>` (with `--json-response`:
//! `{"Method":"GET","Body":"<value>"}`). The e2e proxy tests use it behind Services.
//!
//! `SERVE_TLS_PORT_<N>` serves the same over HTTPS with the certificate and key in the files
//! `CERT_FILE` and `KEY_FILE` (default `localhost.crt` and `localhost.key`, which the image ships;
//! without them skiff makes a self-signed certificate for localhost, 127.0.0.1 and ::1).
//! `SERVE_SCTP_PORT_<N>` is reported and skipped: skiff has no SCTP.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use http::header::{HeaderValue, CONTENT_TYPE};
use serde_json::{Map, Value};

use crate::flags::{self, Flag, Kind};
use crate::http::{go_json, ok, Handler};
use crate::net::{BindHost, Signals};

const FLAGS: &[Flag] =
    &[Flag { name: "json-response", kind: Kind::Bool, help: "Respond with JSON including the request method" }];

const PLAIN_PREFIX: &str = "SERVE_PORT_";
const TLS_PREFIX: &str = "SERVE_TLS_PORT_";
const SCTP_PREFIX: &str = "SERVE_SCTP_PORT_";
/// The image's certificate files, relative to its working directory.
const DEFAULT_CERT_FILE: &str = "localhost.crt";
const DEFAULT_KEY_FILE: &str = "localhost.key";

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        out!("Usage: agnhost porter [flags]\n\nFlags:\n{}", flags::usage(FLAGS));
        return Ok(0);
    }
    let json = parsed.bool("json-response", false);
    let mut signals = Signals::install()?;
    // Upstream listens on 0.0.0.0 (IPv4 only) for these.
    let bind = BindHost(bind.0.or(Some(std::net::Ipv4Addr::UNSPECIFIED.into())));
    let mut tls = None;
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else { continue };
        let (port, tls_acceptor) = if let Some(port) = key.strip_prefix(PLAIN_PREFIX) {
            (port, None)
        } else if let Some(port) = key.strip_prefix(TLS_PREFIX) {
            if tls.is_none() {
                tls = Some(tls_acceptor()?);
            }
            (port, tls.clone())
        } else {
            if key.starts_with(SCTP_PREFIX) {
                tracing::warn!("{key}: skiff's built-in porter has no SCTP; not serving it");
            }
            continue;
        };
        let port: u16 = port.parse().map_err(|_| anyhow!("{key}: {port:?} is not a port number"))?;
        let listener = bind.tcp(port, &format!("porter ({key})"))?;
        tracing::info!("Serving {key} on {}", listener.local_addr().context("listener address")?);
        let handler = handler(value.to_owned(), json);
        tokio::spawn(crate::http::serve_with_tls(listener, tls_acceptor, handler, std::future::pending()));
    }
    signals.next().await;
    Ok(0)
}

/// The TLS acceptor for the TLS ports: `CERT_FILE`/`KEY_FILE` if set, else the image's default
/// files if present, else a self-signed localhost certificate.
fn tls_acceptor() -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let cert = std::env::var("CERT_FILE").ok().filter(|s| !s.is_empty());
    let key = std::env::var("KEY_FILE").ok().filter(|s| !s.is_empty());
    if cert.is_none() && key.is_none() && !Path::new(DEFAULT_CERT_FILE).exists() {
        tracing::info!("no {DEFAULT_CERT_FILE}: serving TLS with a self-signed certificate for localhost");
        return crate::tls::self_signed_localhost();
    }
    let cert = cert.unwrap_or_else(|| DEFAULT_CERT_FILE.to_owned());
    let key = key.unwrap_or_else(|| DEFAULT_KEY_FILE.to_owned());
    crate::tls::acceptor_from_files(Path::new(&cert), Path::new(&key))
}

fn handler(value: String, json: bool) -> Handler {
    let value: Arc<str> = value.into();
    Arc::new(move |req, _peer| {
        let response = if json {
            let mut object = Map::new();
            object.insert("Method".to_owned(), Value::String(req.method().to_string()));
            object.insert("Body".to_owned(), Value::String(value.to_string()));
            let mut response = ok(go_json(&Value::Object(object)));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        } else {
            ok(value.to_string())
        };
        Box::pin(std::future::ready(response))
    })
}
