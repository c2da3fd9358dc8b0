//! Names and addresses of a local cluster, derived from its name and node count alone, so
//! `skiff up`, `skiff down` and `skiff run` agree without asking each other.
//!
//! ```text
//!  sandbox netns "skiff-<name>" (--isolated; else the machine's own namespace)
//!    bridge  172.30.0.1/24  ── API server :6443, controllers
//!      │ veth
//!  node netns "skiff-<name>-node-<i>"
//!    eth0    172.30.0.(10+i)/24 ── agent, proxy; pods bridged behind it (podCIDR 10.244.x.0/24)
//! ```
//!
//! LoadBalancer addresses come from the top of the node network and are routed (ECMP) to
//! the nodes, whose proxies answer them.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// Node network (underlay) prefix: the bridge is .1, node i is .(10+i).
pub const UNDERLAY_PREFIX: [u8; 3] = [172, 30, 0];
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// LoadBalancer pool on the node network, and the route that covers it.
pub const LB_POOL: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(172, 30, 0, 200), Ipv4Addr::new(172, 30, 0, 250));
pub const LB_ROUTE: &str = "172.30.0.192/26";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const API_PORT: u16 = 6443;
/// The most nodes the node network numbering allows below the LoadBalancer pool.
pub const MAX_NODES: usize = 150;

/// Everything named after the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub nodes: usize,
    pub isolated: bool,
}

impl Layout {
    /// Checks the name (a DNS label of at most 24 characters, since it is part of netns
    /// names users type) and the node count.
    pub fn new(name: &str, nodes: usize, isolated: bool) -> Result<Layout, String> {
        let valid = !name.is_empty()
            && name.len() <= 24
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(format!(
                "invalid cluster name {name:?}: use at most 24 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            ));
        }
        if nodes == 0 || nodes > MAX_NODES {
            return Err(format!("--nodes must be between 1 and {MAX_NODES}, not {nodes}"));
        }
        Ok(Layout { name: name.to_string(), nodes, isolated })
    }

    /// The namespace holding the underlay bridge, API server and controllers: the sandbox
    /// when isolated, else None (the machine's own namespace).
    pub fn sandbox_netns(&self) -> Option<String> {
        self.isolated.then(|| format!("skiff-{}", self.name))
    }

    /// Prefix of every netns this cluster creates (nodes and pods), for cleanup.
    pub fn netns_prefix(&self) -> String {
        format!("skiff-{}-", self.name)
    }

    pub fn node_name(&self, index: usize) -> String {
        format!("node-{index}")
    }

    pub fn node_netns(&self, index: usize) -> String {
        format!("skiff-{}-node-{index}", self.name)
    }

    /// Prefix for the pod netns names of node `index` (the agent appends a pod id).
    pub fn pod_netns_prefix(&self, index: usize) -> String {
        format!("skiff-{}-n{index}-", self.name)
    }

    pub fn node_ip(&self, index: usize) -> Ipv4Addr {
        let [a, b, c] = UNDERLAY_PREFIX;
        Ipv4Addr::new(a, b, c, 10 + index as u8)
    }

    pub fn bridge_ip(&self) -> Ipv4Addr {
        let [a, b, c] = UNDERLAY_PREFIX;
        Ipv4Addr::new(a, b, c, 1)
    }

    pub fn underlay_cidr(&self) -> String {
        let [a, b, c] = UNDERLAY_PREFIX;
        format!("{a}.{b}.{c}.0/{UNDERLAY_PREFIX_LEN}")
    }

    /// Link names live in the namespace that holds the bridge. In the sandbox nothing else
    /// exists, so they can be plain; in the machine's namespace they carry a short hash of
    /// the cluster name (link names are limited to 15 bytes).
    pub fn bridge_name(&self) -> String {
        if self.isolated {
            "skiff0".to_string()
        } else {
            format!("skb{}", self.short_hash())
        }
    }

    /// The bridge-side end of node `index`'s veth (the node side is `eth0`).
    pub fn node_veth(&self, index: usize) -> String {
        if self.isolated {
            format!("veth-n{index}")
        } else {
            format!("skv{}n{index}", self.short_hash())
        }
    }

    fn short_hash(&self) -> String {
        let digest = Sha256::digest(self.name.as_bytes());
        digest.iter().take(3).map(|b| format!("{b:02x}")).collect()
    }

    pub fn api_url(&self) -> String {
        format!("https://{}:{API_PORT}", self.bridge_ip())
    }

    pub fn lb_pool(&self) -> String {
        format!("{}-{}", LB_POOL.0, LB_POOL.1)
    }

    /// The `ip route` next hops spreading traffic over every node (ECMP).
    pub fn all_nodes_nexthops(&self) -> Vec<String> {
        if self.nodes == 1 {
            return vec!["via".into(), self.node_ip(1).to_string()];
        }
        (1..=self.nodes).flat_map(|i| ["nexthop".to_string(), "via".into(), self.node_ip(i).to_string()]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let l = Layout::new("demo", 3, true).unwrap();
        assert_eq!(l.sandbox_netns().as_deref(), Some("skiff-demo"));
        assert_eq!(l.node_netns(2), "skiff-demo-node-2");
        assert_eq!(l.node_ip(3), Ipv4Addr::new(172, 30, 0, 13));
        assert_eq!(l.bridge_name(), "skiff0");
        assert_eq!(l.api_url(), "https://172.30.0.1:6443");
        assert_eq!(
            l.all_nodes_nexthops().join(" "),
            "nexthop via 172.30.0.11 nexthop via 172.30.0.12 nexthop via 172.30.0.13"
        );
        assert!(l.node_netns(1).starts_with(&l.netns_prefix()));
        assert!(l.pod_netns_prefix(1).starts_with(&l.netns_prefix()));
    }

    #[test]
    fn host_namespace_links_fit_in_fifteen_bytes() {
        let l = Layout::new("a-rather-long-cluster-nm", MAX_NODES, false).unwrap();
        assert!(l.bridge_name().len() <= 15);
        assert!(l.node_veth(MAX_NODES).len() <= 15, "{}", l.node_veth(MAX_NODES));
        assert_ne!(l.bridge_name(), Layout::new("other", 1, false).unwrap().bridge_name());
    }

    #[test]
    fn rejects_bad_names_and_counts() {
        assert!(Layout::new("Bad", 1, true).is_err());
        assert!(Layout::new("-x", 1, true).is_err());
        assert!(Layout::new("x", 0, true).is_err());
        assert!(Layout::new("x", MAX_NODES + 1, true).is_err());
    }
}
