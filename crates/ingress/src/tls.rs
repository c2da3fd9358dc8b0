//! TLS termination: certificates from `kubernetes.io/tls` Secrets chosen by SNI.
//!
//! The rustls `ServerConfig` is built once; its certificate resolver reads a [`CertMap`]
//! from a [`Snapshot`], so a changed Secret or Ingress swaps certificates for the next
//! handshake without touching open connections. Unknown SNI (or none) and `tls` entries
//! without `secretName` get the default certificate: `--default-ssl-certificate`, or a
//! self-signed one generated at start-up (ingress-nginx's "Fake Certificate").

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::snapshot::Snapshot;

/// Certificates by TLS host, as the compiled Ingresses ask for them.
#[derive(Debug)]
pub struct CertMap {
    /// Lowercase exact host → certificate.
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.foo.com` stored under `foo.com`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
    pub default: Arc<CertifiedKey>,
}

impl CertMap {
    pub fn only_default(default: Arc<CertifiedKey>) -> CertMap {
        CertMap { exact: HashMap::new(), wildcard: HashMap::new(), default }
    }

    /// The certificate for a (lowercase) SNI name.
    pub fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else { return self.default.clone() };
        if let Some(cert) = self.exact.get(name) {
            return cert.clone();
        }
        name.split_once('.')
            .and_then(|(_, rest)| self.wildcard.get(rest))
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// The rustls resolver over the current [`CertMap`].
#[derive(Debug)]
pub struct SniResolver {
    pub certs: Arc<Snapshot<CertMap>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands SNI over lowercased and without a trailing dot.
        Some(self.certs.load().lookup(hello.server_name()))
    }
}

/// The server-side TLS configuration: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub fn server_config(certs: Arc<Snapshot<CertMap>>) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Reads a certificate chain and private key (PEM, as in a Secret's `tls.crt`/`tls.key`).
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>().context("reading tls.crt")?;
    if chain.is_empty() {
        return Err(anyhow!("tls.crt holds no certificate"));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("reading tls.key")?
        .ok_or_else(|| anyhow!("tls.key holds no private key"))?;
    certified_key(chain, key)
}

fn certified_key(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<CertifiedKey> {
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| anyhow!("tls.key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| anyhow!("tls.crt does not match tls.key: {e}"))?;
    Ok(certified)
}

/// A self-signed certificate like ingress-nginx's default one (one year).
pub fn self_signed_default() -> Result<CertifiedKey> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_owned()])?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Kubernetes Ingress Controller Fake Certificate");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme Co");
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    certified_key(vec![cert.der().clone()], key_der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cert_is_valid_and_lookup_falls_back_to_it() {
        let default = Arc::new(self_signed_default().expect("cert"));
        let other = Arc::new(self_signed_default().expect("cert"));
        let mut map = CertMap::only_default(default.clone());
        map.exact.insert("a.example".into(), other.clone());
        map.wildcard.insert("w.example".into(), other.clone());
        assert!(Arc::ptr_eq(&map.lookup(Some("a.example")), &other));
        assert!(Arc::ptr_eq(&map.lookup(Some("x.w.example")), &other));
        assert!(Arc::ptr_eq(&map.lookup(Some("y.x.w.example")), &default));
        assert!(Arc::ptr_eq(&map.lookup(None), &default));
    }

    #[test]
    fn pem_errors_are_reported() {
        assert!(certified_key_from_pem(b"", b"").is_err());
        assert!(certified_key_from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", b"")
            .is_err());
    }
}
