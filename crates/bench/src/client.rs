//! A minimal Kubernetes API client for the benchmark: HTTP/2 over TLS (hyper + rustls),
//! bearer-token authentication, the cluster CA as the only trust root.
//!
//! It is deliberately thin, so the numbers measure the server and not a client library:
//! no discovery, no typed objects, bodies as bytes. One [`Connection`] is one TLS
//! connection; clones share it and multiplex their requests as HTTP/2 streams, the way a
//! single kube-rs or client-go client does.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where an API server listens and how to talk to it, as its data directory describes it.
#[derive(Clone)]
pub struct ApiEndpoint {
    addr: SocketAddr,
    /// `https://host:port`, the prefix of every request URI (HTTP/2 needs absolute URIs).
    base: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    authorization: HeaderValue,
}

impl ApiEndpoint {
    /// Reads what `skiff server` writes into its data directory: the server URL from
    /// `kubeconfig`, the CA from `pki/ca.crt` and the admin bearer token from `pki/admin.token`.
    pub fn from_data_dir(data_dir: &Path) -> Result<Self> {
        let kubeconfig_path = data_dir.join("kubeconfig");
        let kubeconfig = std::fs::read_to_string(&kubeconfig_path)
            .with_context(|| format!("reading {}", kubeconfig_path.display()))?;
        let server = server_url(&kubeconfig).with_context(|| format!("in {}", kubeconfig_path.display()))?;
        let ca_path = data_dir.join("pki/ca.crt");
        let ca_pem = std::fs::read(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
        let token_path = data_dir.join("pki/admin.token");
        let token =
            std::fs::read_to_string(&token_path).with_context(|| format!("reading {}", token_path.display()))?;
        Self::new(&server, &ca_pem, token.trim())
    }

    /// An endpoint for `server` (`https://IP:port`), trusting only the CA in `ca_pem`.
    pub fn new(server: &str, ca_pem: &[u8], token: &str) -> Result<Self> {
        let uri: Uri = server.parse().with_context(|| format!("server URL {server:?}"))?;
        if uri.scheme_str() != Some("https") {
            bail!("server URL {server:?} is not https");
        }
        let host = uri.host().with_context(|| format!("server URL {server:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        // The benchmark only ever talks to a server it started on loopback; an IP keeps
        // name resolution (and any traffic it could cause) out of the picture.
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .with_context(|| format!("server URL {server:?}: expected an IP address"))?;
        let addr = SocketAddr::new(ip, port);

        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
            roots.add(cert.context("parsing the CA certificate")?).context("adding the CA certificate")?;
        }
        if roots.is_empty() {
            bail!("no CA certificate found");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];

        Ok(ApiEndpoint {
            addr,
            base: format!("https://{addr}"),
            server_name: ServerName::IpAddress(ip.into()),
            tls: Arc::new(tls),
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a header value")?,
        })
    }

    /// Opens one TLS connection and negotiates HTTP/2 on it.
    pub async fn connect(&self) -> Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", self.addr))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("{} did not agree to HTTP/2", self.addr);
        }
        let (sender, connection) =
            http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(tls)).await.context("HTTP/2 handshake")?;
        // The connection task ends when every sender and response body is gone.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "benchmark client connection ended");
            }
        });
        Ok(Connection { sender, endpoint: self.clone() })
    }
}

/// The `server:` of the first cluster in a kubeconfig.
fn server_url(kubeconfig: &str) -> Result<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(kubeconfig).context("parsing the kubeconfig")?;
    doc.get("clusters")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("server"))
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .context("no clusters[0].cluster.server")
}

/// One HTTP/2 connection to the API server. Cloning shares the connection.
#[derive(Clone)]
pub struct Connection {
    sender: http2::SendRequest<Full<Bytes>>,
    endpoint: ApiEndpoint,
}

impl Connection {
    /// Sends a request for `path_and_query` and returns once the response headers arrived;
    /// the body is left to the caller (a watch body never ends by itself).
    pub async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.endpoint.base, path_and_query))
            .header(header::AUTHORIZATION, self.endpoint.authorization.clone())
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default())).context("building the request")?;
        self.sender.ready().await.context("the connection is closed")?;
        self.sender.send_request(request).await.context("sending the request")
    }

    /// Sends a request and reads the whole response body.
    pub async fn call(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        let response = self.send(method, path_and_query, body).await?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading the response body")?.to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_server_url() {
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: https://127.0.0.1:41234\n    certificate-authority-data: AAAA\n";
        assert_eq!(server_url(kubeconfig).expect("server"), "https://127.0.0.1:41234");
        assert!(server_url("clusters: []").is_err());
        assert!(server_url(": not yaml :").is_err());
    }

    #[test]
    fn refuses_names_and_plain_http() {
        assert!(ApiEndpoint::new("http://127.0.0.1:80", b"", "t").is_err());
        assert!(ApiEndpoint::new("https://example.com:443", b"", "t").is_err());
        // A valid URL still needs a CA.
        assert!(ApiEndpoint::new("https://127.0.0.1:6443", b"", "t").is_err());
    }
}
