//! The API server's settings (`skiff server` flags).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
