//! TLS for the built-in servers that offer HTTPS: netexec with `--tls-cert-file` and porter's
//! `SERVE_TLS_PORT_<N>` ports.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor for the PEM certificate chain and private key in these files.
pub fn acceptor_from_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = std::fs::read(cert_file).with_context(|| format!("reading {}", cert_file.display()))?;
    let key_pem = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no PEM certificate", cert_file.display()));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("parsing the private key in {}", key_file.display()))?
        .ok_or_else(|| anyhow!("{}: no PEM private key", key_file.display()))?;
    acceptor(certs, key)
}

/// A TLS acceptor with a new self-signed certificate for `localhost`, 127.0.0.1 and ::1 (what
/// the agnhost image's bundled `localhost.crt` covers).
pub fn self_signed_localhost() -> anyhow::Result<TlsAcceptor> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).context("generating a localhost certificate")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der()));
    acceptor(vec![generated.cert.der().clone()], key)
}

fn acceptor(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate does not match the private key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_self_signed_acceptor() {
        assert!(self_signed_localhost().is_ok());
    }

    #[test]
    fn missing_files_are_clear_errors() {
        let error = acceptor_from_files(Path::new("/no/such.crt"), Path::new("/no/such.key")).err();
        assert!(format!("{error:?}").contains("/no/such.crt"), "{error:?}");
    }
}
