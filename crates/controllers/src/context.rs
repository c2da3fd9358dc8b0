//! What every controller shares: the API client, the configuration, events and metrics.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::events::Recorder;
use crate::health::Metrics;

/// `skiff controllers` flags.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Name of this replica in the leader Lease.
    pub identity: String,
    /// Namespace and name of the leader-election Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// LoadBalancer IP pool, inclusive (`--lb-pool 172.30.255.1-172.30.255.254`).
    pub lb_pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Pod network from which each Node gets a /24 (`--cluster-cidr 10.244.0.0/16`).
    pub cluster_cidr: (Ipv4Addr, u8),
    /// Prefix length of each node's podCIDR.
    pub node_cidr_prefix: u8,
    /// A node whose Lease is older than this is marked Ready=Unknown.
    pub node_monitor_grace: std::time::Duration,
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            identity: format!("skiff-controllers-{}", std::process::id()),
            lease_namespace: "kube-system".into(),
            lease_name: "skiff-controllers".into(),
            lb_pool: None,
            cluster_cidr: (Ipv4Addr::new(10, 244, 0, 0), 16),
            node_cidr_prefix: 24,
            node_monitor_grace: std::time::Duration::from_secs(40),
            metrics_listen: None,
        }
    }
}

/// Shared by every controller task.
pub struct Context {
    pub client: kube::Client,
    pub config: ControllerConfig,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(client: kube::Client, config: ControllerConfig) -> Self {
        let recorder = Recorder::new(client.clone(), "skiff-controllers");
        Context { client, config, recorder, metrics: Arc::new(Metrics::default()) }
    }
}

/// Parses `A-B` (two IPv4 addresses) for `--lb-pool`.
pub fn parse_ip_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range like 172.30.255.1-172.30.255.254"))?;
    let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if u32::from(a) > u32::from(b) {
        return Err(format!("{s:?}: the first address is after the last"));
    }
    Ok((a, b))
}

/// Parses `10.244.0.0/16` for `--cluster-cidr`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR like 10.244.0.0/16"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("{s:?}: bad prefix length"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((Ipv4Addr::from(u32::from(ip) & mask), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(
            parse_ip_range("10.0.0.1-10.0.0.9").unwrap(),
            (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9))
        );
        assert!(parse_ip_range("10.0.0.9-10.0.0.1").is_err());
        assert_eq!(parse_cidr("10.244.3.7/16").unwrap(), (Ipv4Addr::new(10, 244, 0, 0), 16));
        assert!(parse_cidr("10.244.0.0/40").is_err());
    }
}
