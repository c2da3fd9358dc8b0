//! The node's pod network, programmed with iproute2 (`ip -batch`: one process per pod and
//! side, which keeps sandbox setup to a few milliseconds without a netlink dependency).
//!
//! - Node namespace: bridge `skiff0` holding the podCIDR's first address (the pods'
//!   gateway), `ip_forward` on, a route to every other node's podCIDR via its InternalIP
//!   (host-gw style, no encapsulation, no NAT) and the service CIDR routed out of the
//!   underlay device so that Service IPs have a route (the proxy DNATs them).
//! - Pod namespace `<prefix><uid>`: `lo` up, `eth0` (veth peer of `sk<uid>` on the bridge)
//!   with the pod IP, routes to the cluster CIDR, the service CIDR and the node subnet via
//!   the gateway, and deliberately no default route.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;

use crate::cidr::Ipv4Cidr;

pub const NETNS_DIR: &str = "/run/netns";

/// Static facts about the node's network.
#[derive(Clone, Debug)]
pub struct NodeNetwork {
    pub bridge: String,
    pub pod_cidr: Ipv4Cidr,
    pub cluster_cidr: Ipv4Cidr,
    pub service_cidr: Ipv4Cidr,
    pub node_ip: Ipv4Addr,
    /// The device holding the node IP and its subnet, when the IP is on an interface.
    pub underlay: Option<(String, Ipv4Cidr)>,
}

/// A pod's network namespace and the node side of its veth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxNames {
    pub netns: String,
    pub host_veth: String,
}

impl SandboxNames {
    /// `uid_key` is the pod uid without dashes; link names stay within 15 characters.
    pub fn new(prefix: &str, uid_key: &str) -> SandboxNames {
        let short: String = uid_key.chars().take(12).collect();
        SandboxNames { netns: format!("{prefix}{short}"), host_veth: format!("sk{short}") }
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.netns)
    }
}

/// Runs `ip <args>`, feeding `batch` on stdin when given, and returns stdout.
pub async fn ip(args: &[&str], batch: Option<String>) -> Result<String> {
    let mut command = tokio::process::Command::new("ip");
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    if batch.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().context("running ip (iproute2 is required)")?;
    if let (Some(mut stdin), Some(batch)) = (child.stdin.take(), batch) {
        stdin.write_all(batch.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The IPv4 addresses of this namespace (`ip -j addr`), as (device, address, prefix).
pub async fn addresses() -> Result<Vec<(String, Ipv4Addr, u8)>> {
    let out = ip(&["-j", "-4", "addr", "show"], None).await?;
    let links: serde_json::Value = serde_json::from_str(&out).context("parsing ip -j addr")?;
    let mut found = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        let dev = link["ifname"].as_str().unwrap_or_default();
        for info in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(prefix)) = (info["local"].as_str(), info["prefixlen"].as_u64()) else { continue };
            if info["scope"].as_str() != Some("global") {
                continue;
            }
            if let Ok(addr) = local.parse() {
                found.push((dev.to_owned(), addr, prefix as u8));
            }
        }
    }
    Ok(found)
}

/// The node IP when none is given: the first global IPv4 address not on `bridge`.
pub async fn default_node_ip(bridge: &str) -> Result<Ipv4Addr> {
    addresses()
        .await?
        .into_iter()
        .find(|(dev, _, _)| dev != bridge)
        .map(|(_, ip, _)| ip)
        .context("this network namespace has no global IPv4 address; pass --node-ip")
}

/// The device and subnet holding `ip`.
pub async fn underlay_of(ip_addr: Ipv4Addr) -> Result<Option<(String, Ipv4Cidr)>> {
    Ok(addresses()
        .await?
        .into_iter()
        .find(|(_, a, _)| *a == ip_addr)
        .and_then(|(dev, a, prefix)| Some((dev, Ipv4Cidr::new(a, prefix)?))))
}

impl NodeNetwork {
    /// Creates the bridge with the gateway address, turns forwarding on and routes the
    /// service CIDR. Idempotent (a restarted agent runs it again).
    pub async fn setup_node(&self) -> Result<()> {
        if ip(&["link", "show", "dev", &self.bridge], None).await.is_err() {
            ip(&["link", "add", &self.bridge, "type", "bridge"], None).await?;
        }
        let gateway = format!("{}/{}", self.pod_cidr.gateway(), self.pod_cidr.prefix());
        let mut batch = format!("addr replace {gateway} dev {}\nlink set {} up\n", self.bridge, self.bridge);
        if let Some((dev, _)) = &self.underlay {
            batch.push_str(&format!("route replace {} dev {dev} src {}\n", self.service_cidr, self.node_ip));
        }
        ip(&["-batch", "-"], Some(batch)).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling ip_forward")?;
        Ok(())
    }

    /// Creates the pod's namespace and veth, with `ip` as its address. A half-made sandbox
    /// of the same name (agent crashed mid-setup) is removed first.
    pub async fn create_sandbox(&self, names: &SandboxNames, pod_ip: Ipv4Addr) -> Result<()> {
        if names.netns_path().exists() {
            let _ = ip(&["netns", "del", &names.netns], None).await;
        }
        let _ = ip(&["link", "del", &names.host_veth], None).await;
        // Hairpin mode on the bridge port: with br_netfilter loaded, a pod reaching itself
        // through its Service has its DNATed packet bridged back out of the port it came in
        // by, which a bridge refuses unless the port is in hairpin mode.
        let node_side = format!(
            "netns add {ns}\nlink add {veth} type veth peer name eth0 netns {ns}\nlink set {veth} master {br} up\n\
             link set {veth} type bridge_slave hairpin on\n",
            ns = names.netns,
            veth = names.host_veth,
            br = self.bridge
        );
        ip(&["-batch", "-"], Some(node_side)).await?;
        let gw = self.pod_cidr.gateway();
        let mut pod_side = format!(
            "link set lo up\naddr add {pod_ip}/{prefix} dev eth0\nlink set eth0 up\n\
             route add {cluster} via {gw} dev eth0\nroute add {service} via {gw} dev eth0\n",
            prefix = self.pod_cidr.prefix(),
            cluster = self.cluster_cidr,
            service = self.service_cidr,
        );
        if let Some((_, subnet)) = &self.underlay {
            if !subnet.contains(gw) && !self.cluster_cidr.contains(subnet.network()) {
                pod_side.push_str(&format!("route add {subnet} via {gw} dev eth0\n"));
            }
        }
        ip(&["-n", &names.netns, "-batch", "-"], Some(pod_side)).await?;
        Ok(())
    }

    /// Removes the pod's namespace (its veth pair goes with it).
    pub async fn delete_sandbox(names: &SandboxNames) -> Result<()> {
        if names.netns_path().exists() {
            ip(&["netns", "del", &names.netns], None).await?;
        }
        let _ = ip(&["link", "del", &names.host_veth], None).await;
        Ok(())
    }

    /// Makes the routes to other nodes' podCIDRs exactly `desired` (podCIDR → node IP):
    /// replaces what changed and deletes gateway routes inside the cluster CIDR that are
    /// no longer wanted.
    pub async fn sync_routes(&self, desired: &BTreeMap<Ipv4Cidr, Ipv4Addr>) -> Result<()> {
        let out = ip(&["-j", "-4", "route", "show"], None).await?;
        let current: serde_json::Value = serde_json::from_str(&out).context("parsing ip -j route")?;
        let mut existing: BTreeMap<Ipv4Cidr, Ipv4Addr> = BTreeMap::new();
        for route in current.as_array().into_iter().flatten() {
            let (Some(dst), Some(gw)) = (route["dst"].as_str(), route["gateway"].as_str()) else { continue };
            let (Ok(dst), Ok(gw)) = (dst.parse::<Ipv4Cidr>(), gw.parse::<Ipv4Addr>()) else { continue };
            if self.cluster_cidr.contains(dst.network()) && dst.prefix() >= self.cluster_cidr.prefix() {
                existing.insert(dst, gw);
            }
        }
        let mut batch = String::new();
        for (cidr, gw) in desired {
            if *cidr != self.pod_cidr && existing.get(cidr) != Some(gw) {
                batch.push_str(&format!("route replace {cidr} via {gw}\n"));
            }
        }
        for cidr in existing.keys() {
            if !desired.contains_key(cidr) {
                batch.push_str(&format!("route del {cidr}\n"));
            }
        }
        if !batch.is_empty() {
            // -force: one unreachable gateway must not keep the other routes out.
            ip(&["-force", "-batch", "-"], Some(batch)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_link_limits() {
        let n = SandboxNames::new("skiff-c1-node-1-", "0123456789abcdef0123456789abcdef");
        assert_eq!(n.netns, "skiff-c1-node-1-0123456789ab");
        assert_eq!(n.host_veth, "sk0123456789ab");
        assert!(n.host_veth.len() <= 15);
        assert_eq!(n.netns_path(), PathBuf::from("/run/netns/skiff-c1-node-1-0123456789ab"));
    }
}
