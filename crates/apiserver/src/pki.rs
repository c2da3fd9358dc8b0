//! The cluster's certificates: a self-generated CA, the API server's serving certificate,
//! the admin client certificate and the kubeconfig that carries it.
//!
//! Everything lives in `<data-dir>/pki/`. The CA and the admin credentials are created once
//! and kept (so kubeconfigs stay valid across restarts); the serving certificate is issued
//! anew at every start because its names depend on the flags (`--advertise-address`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Common name of the admin user; its organisation `system:masters` is the admin group.
pub const ADMIN_USER: &str = "skiff-admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// PEM material loaded or created at startup.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// Secret for signing ServiceAccount tokens (HMAC-SHA256), shared by every API server
    /// that uses this data directory.
    pub token_signing_key: Vec<u8>,
}

fn read_or_create(path: &Path, create: impl FnOnce() -> Result<String>) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = create()?;
            write_private(path, s.as_bytes())?;
            Ok(s)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a file readable only by its owner (keys and kubeconfigs).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "skiff-ca");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn leaf_params(
    cn: &str,
    org: Option<&str>,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// Issues a client certificate signed by the cluster CA (used for the admin kubeconfig and
/// by `skiff up` for component identities).
pub fn issue_client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    user: &str,
    group: Option<&str>,
) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let cert = leaf_params(user, group, vec![], ExtendedKeyUsagePurpose::ClientAuth)?.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The user the API server presents to node agents when it proxies logs, exec and
/// port-forward to their kubelet API (kube-apiserver's conventional name for it).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// Issues the API server's client certificate for node agents' kubelet API: CN
/// [`KUBELET_CLIENT_USER`], O `system:masters`, signed by the cluster CA they trust.
pub fn issue_kubelet_client_cert(ca_cert_pem: &str, ca_key_pem: &str) -> Result<(String, String)> {
    issue_client_cert(ca_cert_pem, ca_key_pem, KUBELET_CLIENT_USER, Some(ADMIN_GROUP))
}

impl Pki {
    /// Loads the PKI under `<data_dir>/pki`, creating what is missing, and issues a serving
    /// certificate valid for `hosts` (DNS names or IPs).
    pub fn load_or_create(data_dir: &Path, hosts: &[String]) -> Result<Pki> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key_pem = read_or_create(&dir.join("ca.key"), || Ok(KeyPair::generate()?.serialize_pem()))?;
        let ca_cert_pem = read_or_create(&dir.join("ca.crt"), || {
            let key = KeyPair::from_pem(&ca_key_pem)?;
            Ok(ca_params()?.self_signed(&key)?.pem())
        })?;
        let (admin_cert_pem, admin_key_pem) =
            match (std::fs::read_to_string(dir.join("admin.crt")), std::fs::read_to_string(dir.join("admin.key"))) {
                (Ok(c), Ok(k)) => (c, k),
                _ => {
                    let (c, k) = issue_client_cert(&ca_cert_pem, &ca_key_pem, ADMIN_USER, Some(ADMIN_GROUP))?;
                    write_private(&dir.join("admin.key"), k.as_bytes())?;
                    write_private(&dir.join("admin.crt"), c.as_bytes())?;
                    (c, k)
                }
            };
        let token_key_b64 = read_or_create(&dir.join("sa.key"), || {
            let bytes: [u8; 32] = rand::random();
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        })?;
        let token_signing_key =
            base64::engine::general_purpose::STANDARD.decode(token_key_b64.trim()).context("sa.key is not base64")?;

        // The serving certificate is re-issued each start: cheap, and always matches the flags.
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;
        let mut sans = Vec::new();
        for h in hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(
                    h.clone().try_into().with_context(|| format!("{h:?} is neither an IP address nor a DNS name"))?,
                )),
            }
        }
        let key = KeyPair::generate()?;
        let cert =
            leaf_params("kube-apiserver", None, sans, ExtendedKeyUsagePurpose::ServerAuth)?.signed_by(&key, &issuer)?;
        let serving_cert_pem = cert.pem();
        let serving_key_pem = key.serialize_pem();
        write_private(&dir.join("apiserver.crt"), serving_cert_pem.as_bytes())?;
        write_private(&dir.join("apiserver.key"), serving_key_pem.as_bytes())?;

        Ok(Pki {
            dir,
            ca_cert_pem,
            ca_key_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            token_signing_key,
        })
    }

    /// A kubeconfig for the admin user against `server_url`, credentials embedded.
    pub fn admin_kubeconfig(&self, server_url: &str, cluster_name: &str) -> String {
        kubeconfig(server_url, cluster_name, &self.ca_cert_pem, ADMIN_USER, &self.admin_cert_pem, &self.admin_key_pem)
    }
}

/// Renders a kubeconfig with one cluster, one user (client certificate) and one context.
pub fn kubeconfig(server_url: &str, cluster: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: default\ncurrent-context: {cluster}\npreferences: {{}}\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// Store key holding the cluster CA and the token signing key, so every API server on one
/// store (several `skiff server`s on one etcd) serves the same CA and accepts the same
/// tokens. Only the CA and the token key are shared; each server issues its own serving
/// certificate.
pub const SHARED_PKI_KEY: &str = "/registry/skiff.io/pki";

/// Makes `<data_dir>/pki` hold the cluster's shared CA and token key: the first server to
/// start on a store publishes its own (compare-and-create), every later one adopts it.
pub async fn share_through_store(store: &dyn skiff_store::Store, data_dir: &Path) -> Result<()> {
    let dir = data_dir.join("pki");
    std::fs::create_dir_all(&dir)?;
    loop {
        let (existing, _) = store.get(SHARED_PKI_KEY).await?;
        if let Some(kv) = existing {
            let shared: serde_json::Value =
                serde_json::from_slice(&kv.value).context("shared PKI in the store is corrupt")?;
            for (field, file) in [("caCert", "ca.crt"), ("caKey", "ca.key"), ("tokenKey", "sa.key")] {
                let value = shared.get(field).and_then(|v| v.as_str()).context("shared PKI lacks a field")?;
                let path = dir.join(file);
                if std::fs::read_to_string(&path).ok().as_deref() != Some(value) {
                    write_private(&path, value.as_bytes())?;
                    // Credentials issued by another CA are no longer valid.
                    let _ = std::fs::remove_file(dir.join("admin.crt"));
                    let _ = std::fs::remove_file(dir.join("admin.key"));
                }
            }
            return Ok(());
        }
        // Nothing shared yet: publish ours (created on the spot if this is a new data dir).
        let ca_key = read_or_create(&dir.join("ca.key"), || Ok(KeyPair::generate()?.serialize_pem()))?;
        let ca_cert = read_or_create(&dir.join("ca.crt"), || {
            let key = KeyPair::from_pem(&ca_key)?;
            Ok(ca_params()?.self_signed(&key)?.pem())
        })?;
        let token_key = read_or_create(&dir.join("sa.key"), || {
            let bytes: [u8; 32] = rand::random();
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        })?;
        let value = serde_json::json!({"caCert": ca_cert, "caKey": ca_key, "tokenKey": token_key}).to_string();
        match store
            .txn(
                vec![skiff_store::Compare::Absent(SHARED_PKI_KEY.into())],
                vec![skiff_store::Op::put(SHARED_PKI_KEY, value)],
            )
            .await
        {
            Ok(_) => return Ok(()),
            // Another server published first: loop and adopt theirs.
            Err(skiff_store::StoreError::CompareFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
