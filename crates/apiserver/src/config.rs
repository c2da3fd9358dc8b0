//! The API server's settings (`skiff server` flags).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything `skiff server` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store, the PKI and the admin kubeconfig live.
    pub data_dir: PathBuf,
    /// Address to serve HTTPS on.
    pub listen: SocketAddr,
    /// The address other components and pods use to reach this server (the endpoint of
    /// Service `default/kubernetes`). Defaults to the listen address, or 127.0.0.1 when
    /// listening on all addresses.
    pub advertise_address: Option<IpAddr>,
    /// ClusterIP range, e.g. `10.96.0.0/16`.
    pub service_cidr: String,
    /// NodePort range, e.g. `30000-32767`.
    pub node_port_range: String,
    /// Name of the cluster in the written kubeconfig.
    pub cluster_name: String,
    /// etcd members to keep the cluster state in; empty = the embedded redb store in
    /// `data_dir`.
    pub etcd_endpoints: Vec<String>,
    /// What replaces the leading `/registry` of every key in etcd.
    pub etcd_prefix: String,
    /// CA certificate (PEM) that signed the etcd members' certificates; needed for
    /// `https://` endpoints (kube-apiserver's `--etcd-cafile`).
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate and key (PEM) presented to etcd (`--etcd-certfile`, `--etcd-keyfile`).
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_keyfile: Option<PathBuf>,
    /// How long this server's address stays in the `kubernetes` endpoints after its last
    /// lease renewal (it renews every two thirds of this; see [`crate::endpoint_leases`]).
    pub endpoint_lease_ttl: Duration,
    /// Further names and addresses for the serving certificate (k3s's `--tls-san`): a
    /// load balancer's name, or the machine's other addresses when listening on 0.0.0.0.
    pub tls_sans: Vec<String>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            listen,
            advertise_address: None,
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: "30000-32767".into(),
            cluster_name: "skiff".into(),
            etcd_endpoints: Vec::new(),
            etcd_prefix: "/registry".into(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            endpoint_lease_ttl: crate::endpoint_leases::DEFAULT_LEASE_TTL,
            tls_sans: Vec::new(),
        }
    }

    /// The TLS material for etcd named by the `etcd_*file` settings, read from disk.
    pub fn etcd_tls(&self) -> anyhow::Result<Option<skiff_store::etcd::EtcdTls>> {
        use anyhow::Context;
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let client_identity = match (&self.etcd_certfile, &self.etcd_keyfile) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--etcd-certfile and --etcd-keyfile must be given together"),
        };
        match &self.etcd_cafile {
            Some(ca) => Ok(Some(skiff_store::etcd::EtcdTls { ca_pem: read(ca)?, client_identity })),
            None if client_identity.is_some() => anyhow::bail!("--etcd-certfile needs --etcd-cafile"),
            None => Ok(None),
        }
    }

    /// The address written into the kubernetes Service's endpoints and the kubeconfig.
    pub fn advertised(&self) -> IpAddr {
        self.advertise_address.unwrap_or_else(|| {
            let ip = self.listen.ip();
            if ip.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            }
        })
    }
}
