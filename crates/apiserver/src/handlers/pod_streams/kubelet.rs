//! Reaching a node's kubelet API: its address from the Node object, and an HTTPS connection
//! authenticated with the API server's kubelet client certificate.
//!
//! Like kube-apiserver without `--kubelet-certificate-authority`, the kubelet's serving
//! certificate is not verified (agents generate self-signed ones); the kubelet verifies us.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use skiff_api::ApiError;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::super::Ctx;
use crate::state::ApiServer;
use crate::storage::{decode, store_error};

/// kubelet's default port, used when a Node does not report its own.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a node's kubelet API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Reads the Node: the first InternalIP (then ExternalIP, then Hostname) address and
    /// `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub async fn of_node(ctx: &Ctx, node_name: &str) -> Result<Target, ApiError> {
        let def = skiff_api::registry::lookup("", "v1", "nodes")
            .ok_or_else(|| ApiError::Internal("the nodes resource is not registered".into()))?;
        let (kv, _) = ctx.server.store.get(&def.key(None, node_name)).await.map_err(store_error)?;
        let node = decode(&kv.ok_or_else(|| ApiError::NotFound(def.subject(node_name)))?)?;
        Target::from_node(&node, node_name)
    }

    pub fn from_node(node: &Value, node_name: &str) -> Result<Target, ApiError> {
        let addresses = node.pointer("/status/addresses").and_then(Value::as_array).cloned().unwrap_or_default();
        let address_of = |kind: &str| {
            addresses
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|a| a.get("address").and_then(Value::as_str))
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        };
        let host = address_of("InternalIP")
            .or_else(|| address_of("ExternalIP"))
            .or_else(|| address_of("Hostname"))
            .ok_or_else(|| ApiError::BadRequest(format!("node {node_name} has no address to reach its kubelet")))?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Ok(Target { host, port })
    }

    /// `host:port`, with brackets around IPv6 addresses.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// Opens a TLS connection to the kubelet API.
    pub async fn connect(&self, server: &ApiServer) -> Result<TlsStream<TcpStream>, ApiError> {
        let dial_error = |e: &dyn std::fmt::Display| {
            ApiError::Internal(format!("error dialing backend: dial tcp {}: {e}", self.authority()))
        };
        let config = client_config(server).map_err(|e| ApiError::Internal(format!("kubelet client TLS: {e}")))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| dial_error(&"i/o timeout"))?
            .map_err(|e| dial_error(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = match self.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(self.host.clone()).map_err(|e| dial_error(&e))?,
        };
        TlsConnector::from(config).connect(name, tcp).await.map_err(|e| dial_error(&e))
    }
}

/// The TLS client configuration for kubelet APIs, built once per cluster CA.
fn client_config(server: &ApiServer) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    static CONFIGS: OnceLock<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(Default::default);
    let ca = &server.pki.ca_cert_pem;
    if let Some(config) = configs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.get(ca) {
        return Ok(config.clone());
    }
    let (cert_pem, key_pem) = crate::pki::issue_kubelet_client_cert(ca, &server.pki.ca_key_pem)?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow::anyhow!("no key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
        .with_client_auth_cert(certs, key)?;
    // The upgrades (WebSocket, SPDY) are HTTP/1.1 mechanisms.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    configs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(ca.clone(), config.clone());
    Ok(config)
}

/// Accepts any kubelet serving certificate (signatures are still checked, so the handshake
/// proves the peer holds the certificate's key).
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_come_from_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}},
        }});
        assert_eq!(Target::from_node(&node, "n1").unwrap(), Target { host: "10.0.0.5".into(), port: 12345 });
        let bare = json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        let t = Target::from_node(&bare, "n").unwrap();
        assert_eq!(t.authority(), "[fd00::1]:10250");
        assert_eq!(Target::from_node(&json!({}), "n").unwrap_err().code(), 400);
    }
}
