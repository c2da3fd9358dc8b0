//! TLS for the kubelet API: a serving certificate (self-signed when the agent has none) and
//! mandatory client certificates signed by the cluster CA, which is how the API server
//! authenticates itself when it proxies logs, exec and port-forward here.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Certificates for [`crate::serve`].
#[derive(Clone)]
pub struct KubeletTls {
    /// Serving certificate chain (PEM); None generates a self-signed one.
    pub cert_pem: Option<String>,
    /// Private key of the serving certificate (PEM).
    pub key_pem: Option<String>,
    /// CA (PEM) that client certificates must be signed by: the cluster CA.
    pub client_ca_pem: String,
    /// Names for a generated serving certificate (the node name, its IPs).
    pub hostnames: Vec<String>,
}

impl KubeletTls {
    /// TLS with a self-signed serving certificate for `hostnames`, verifying clients against
    /// `client_ca_pem`.
    pub fn self_signed(client_ca_pem: impl Into<String>, hostnames: Vec<String>) -> KubeletTls {
        KubeletTls { cert_pem: None, key_pem: None, client_ca_pem: client_ca_pem.into(), hostnames }
    }

    /// Builds the rustls configuration: HTTP/1.1 only (the upgrades need it), client
    /// certificates required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let (cert_pem, key_pem) = match (&self.cert_pem, &self.key_pem) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => self_signed_pair(&self.hostnames)?,
        };
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the serving certificate")?;
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut key_pem.as_bytes())?.context("no private key in the serving key PEM")?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pemfile::certs(&mut self.client_ca_pem.as_bytes()) {
            roots.add(ca.context("parsing the client CA")?)?;
        }
        anyhow::ensure!(!roots.is_empty(), "the client CA PEM holds no certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn self_signed_pair(hostnames: &[String]) -> Result<(String, String)> {
    let mut names = hostnames.to_vec();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(names)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
