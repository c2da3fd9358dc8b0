//! The kubelet API on its own, with curl: client certificates are required and must come from
//! the configured CA; logs and errors are answered as kubelet answers them.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use skiff_streams::{ExecRequest, ExecSession, KubeletTls, LogOptions, PodRef, PodRuntime, RuntimeError};

/// One pod `default/p` with container `c` whose log is two lines.
struct OnePod;

#[async_trait]
impl PodRuntime for OnePod {
    async fn exec(&self, _: &PodRef, _: &str, _: ExecRequest) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::Internal("exec is not part of this test".into()))
    }
    async fn attach(&self, _: &PodRef, _: &str, _: ExecRequest) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::Internal("attach is not part of this test".into()))
    }
    async fn port_forward(&self, _: &PodRef, _: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        Err(RuntimeError::Internal("port-forward is not part of this test".into()))
    }
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, RuntimeError> {
        if pod.namespace != "default" || pod.name != "p" {
            return Err(RuntimeError::PodNotFound(format!("{}/{}", pod.namespace, pod.name)));
        }
        if container != "c" {
            return Err(RuntimeError::ContainerNotFound(container.to_string()));
        }
        let lines = if options.tail_lines == Some(1) { "second\n" } else { "first\nsecond\n" };
        Ok(stream::iter([Ok(Bytes::from_static(lines.as_bytes()))]).boxed())
    }
}

struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// Writes a client certificate signed by `ca` and its key into `dir`.
fn client_cert(ca: &Ca, dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// `curl -k` (the serving certificate is self-signed) → (HTTP code, body), None if the TLS
/// handshake or connection failed.
fn curl(port: u16, path: &str, cert: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> Option<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.arg(format!("https://127.0.0.1:{port}{path}")).output().expect("curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.parse().ok()?, body.to_string()))
}

#[test]
fn client_certificates_are_required_and_endpoints_answer_like_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = ca("cluster-ca");
    let other_ca = ca("someone-else");
    let good = client_cert(&cluster_ca, dir.path(), "good");
    let foreign = client_cert(&other_ca, dir.path(), "foreign");

    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = tokio.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = KubeletTls::self_signed(cluster_ca.cert_pem.clone(), vec!["127.0.0.1".into()]);
    tokio.spawn(skiff_streams::serve(listener, tls, Arc::new(OnePod)));

    assert_eq!(curl(port, "/containerLogs/default/p/c", Some(&good)), Some((200, "first\nsecond\n".into())));
    assert_eq!(curl(port, "/containerLogs/default/p/c?tailLines=1", Some(&good)), Some((200, "second\n".into())));
    // No certificate, or one from another CA: the handshake fails.
    assert_eq!(curl(port, "/containerLogs/default/p/c", None), None);
    assert_eq!(curl(port, "/containerLogs/default/p/c", Some(&foreign)), None);

    let (code, body) = curl(port, "/containerLogs/default/q/c", Some(&good)).unwrap();
    assert_eq!((code, body.trim()), (404, "pod default/q not found"));
    let (code, body) = curl(port, "/containerLogs/default/p/zz", Some(&good)).unwrap();
    assert_eq!((code, body.trim()), (404, "container zz not found"));
    assert_eq!(curl(port, "/containerLogs/default/p/c?limitBytes=3", Some(&good)), Some((200, "fir".into())));
    assert_eq!(curl(port, "/containerLogs/default/p/c?tailLines=x", Some(&good)).unwrap().0, 400);
    assert_eq!(curl(port, "/nothing/here", Some(&good)).unwrap().0, 404);
    // exec and port-forward need an upgrade.
    assert_eq!(curl(port, "/exec/default/p/c?command=ls&stdout=1", Some(&good)).unwrap().0, 400);
    assert_eq!(curl(port, "/portForward/default/p", Some(&good)).unwrap().0, 400);
}
