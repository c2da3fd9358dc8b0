//! The fixed part of the nftables ruleset, as `nft -f` text, and the names and element
//! layouts of the sets and maps that carry all per-Service state.
//!
//! Layout (compare kube-proxy's `pkg/proxy/nftables`; base chain names and priorities are
//! the same): kube-proxy gives every Service port a chain and every endpoint a chain, and
//! loading ten thousand Services takes minutes of kernel time to validate the chain graph
//! (measured: 230 s). Here every Service shares a handful of chains and only set and map
//! *elements* differ per Service, which the kernel loads in bulk:
//!
//! - `service-ips` maps `daddr . proto . dport` of every ClusterIP, external IP and
//!   LoadBalancer IP frontend to `goto service-<N>`, where N is the frontend's endpoint
//!   count; `service-nodeports` does the same for `proto . dport` on local addresses.
//! - `service-<N>` draws a slot 1..=N into the connection mark
//!   (`ct mark set numgen random mod N offset 1`) and DNATs through the `endpoints` map
//!   `daddr . proto . dport . slot → endpoint . port`: uniform random choice, O(1).
//! - `service-<N>-affinity-<T>` (sessionAffinity ClientIP, timeout T) first looks the
//!   client up in the dynamic map `affinity-<N>-<T>` (`saddr . daddr . proto . dport →
//!   slot`), draws only on a miss, and refreshes the entry.
//! - Filter chains reject (`no-endpoint-*` verdict maps → `reject-chain` or `drop`) before
//!   DNAT, and reject what is still addressed to a ClusterIP after DNAT (an unused port).
//! - `firewall-ips` sends LoadBalancer IPs with `loadBalancerSourceRanges` to a
//!   `firewall-<hash>` chain per distinct range list, which drops other sources.
//! - Masquerading uses kube-proxy's mark bit: external frontends of Cluster-policy
//!   Services (`masq-frontends`, `masq-nodeports`), ClusterIP traffic from outside the
//!   cluster CIDR, and hairpin connections (`hairpin`: `endpoint . endpoint` pairs, matched
//!   after DNAT as `saddr . daddr`).

use std::fmt::Write;
use std::net::Ipv4Addr;

/// The table all nftables-mode state lives in (family `ip`).
pub const TABLE: &str = "skiff-proxy";
/// kube-proxy's masquerade mark bit.
pub const MASQ_MARK: u32 = 0x4000;

pub const SET_CLUSTER_IPS: &str = "cluster-ips";
pub const MAP_SERVICE_IPS: &str = "service-ips";
pub const MAP_SERVICE_NODEPORTS: &str = "service-nodeports";
pub const MAP_ENDPOINTS: &str = "endpoints";
pub const MAP_NODEPORT_ENDPOINTS: &str = "nodeport-endpoints";
pub const SET_MASQ_FRONTENDS: &str = "masq-frontends";
pub const SET_MASQ_NODEPORTS: &str = "masq-nodeports";
pub const MAP_NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const MAP_NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const SET_HAIRPIN: &str = "hairpin";
pub const MAP_FIREWALL_IPS: &str = "firewall-ips";
pub const REJECT_CHAIN: &str = "reject-chain";

/// Every set and map holding per-Service elements (flushed on a full sync).
pub const ELEMENT_SETS: [&str; 11] = [
    SET_CLUSTER_IPS,
    MAP_SERVICE_IPS,
    MAP_SERVICE_NODEPORTS,
    MAP_ENDPOINTS,
    MAP_NODEPORT_ENDPOINTS,
    SET_MASQ_FRONTENDS,
    SET_MASQ_NODEPORTS,
    MAP_NO_ENDPOINT_SERVICES,
    MAP_NO_ENDPOINT_NODEPORTS,
    SET_HAIRPIN,
    MAP_FIREWALL_IPS,
];

/// IANA protocol numbers, as `meta l4proto` sees them.
pub fn proto_number(protocol: skiff_core::service_view::Protocol) -> u8 {
    match protocol {
        skiff_core::service_view::Protocol::Tcp => 6,
        skiff_core::service_view::Protocol::Udp => 17,
        skiff_core::service_view::Protocol::Sctp => 132,
    }
}

/// Key layouts. Each field of a concatenation takes a whole 32-bit register: addresses
/// as-is, the protocol byte and the big-endian port padded with zeros, marks in host order.
pub mod key {
    use std::net::Ipv4Addr;

    pub fn ip(ip: Ipv4Addr) -> Vec<u8> {
        ip.octets().to_vec()
    }

    /// `daddr . proto . dport`
    pub fn frontend(ip: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
        let mut k = Vec::with_capacity(16);
        k.extend_from_slice(&ip.octets());
        proto_port(&mut k, proto, port);
        k
    }

    /// `proto . dport`
    pub fn nodeport(proto: u8, port: u16) -> Vec<u8> {
        let mut k = Vec::with_capacity(12);
        proto_port(&mut k, proto, port);
        k
    }

    /// A frontend key followed by a slot (`… . ct mark`).
    pub fn with_slot(mut frontend: Vec<u8>, slot: u32) -> Vec<u8> {
        frontend.extend_from_slice(&slot.to_ne_bytes());
        frontend
    }

    /// `endpoint . port` (map data of `endpoints`).
    pub fn backend(ip: Ipv4Addr, port: u16) -> Vec<u8> {
        let mut k = Vec::with_capacity(8);
        k.extend_from_slice(&ip.octets());
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    }

    /// `saddr . daddr` (the hairpin set).
    pub fn pair(a: Ipv4Addr, b: Ipv4Addr) -> Vec<u8> {
        let mut k = Vec::with_capacity(8);
        k.extend_from_slice(&a.octets());
        k.extend_from_slice(&b.octets());
        k
    }

    fn proto_port(k: &mut Vec<u8>, proto: u8, port: u16) {
        k.extend_from_slice(&[proto, 0, 0, 0]);
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
    }
}

/// The fixed ruleset, written so that loading it over an existing table of the same
/// layout changes nothing a packet sees (`add` + `flush chain` + rules, one transaction):
/// a restarted proxy leaves no window without rules.
pub fn base_ruleset(cluster_cidr: Option<(Ipv4Addr, u8)>) -> String {
    let t = format!("ip {TABLE}");
    let mut s = String::new();
    let _ = writeln!(s, "add table {t}");
    let frontend = "ipv4_addr . inet_proto . inet_service";
    for (name, spec) in [
        (SET_CLUSTER_IPS, "type ipv4_addr;".to_owned()),
        (MAP_SERVICE_IPS, format!("type {frontend} : verdict;")),
        (MAP_SERVICE_NODEPORTS, "type inet_proto . inet_service : verdict;".to_owned()),
        (MAP_ENDPOINTS, format!("type {frontend} . mark : ipv4_addr . inet_service;")),
        (MAP_NODEPORT_ENDPOINTS, "type inet_proto . inet_service . mark : ipv4_addr . inet_service;".to_owned()),
        (SET_MASQ_FRONTENDS, format!("type {frontend};")),
        (SET_MASQ_NODEPORTS, "type inet_proto . inet_service;".to_owned()),
        (MAP_NO_ENDPOINT_SERVICES, format!("type {frontend} : verdict;")),
        (MAP_NO_ENDPOINT_NODEPORTS, "type inet_proto . inet_service : verdict;".to_owned()),
        (SET_HAIRPIN, "type ipv4_addr . ipv4_addr;".to_owned()),
        (MAP_FIREWALL_IPS, format!("type {frontend} : verdict;")),
    ] {
        let kind = if spec.contains(':') { "map" } else { "set" };
        let _ = writeln!(s, "add {kind} {t} {name} {{ {spec} }}");
    }
    let base = |s: &mut String, name: &str, hook: &str| {
        let _ = writeln!(s, "add chain {t} {name} {{ {hook}; policy accept; }}");
        let _ = writeln!(s, "flush chain {t} {name}");
    };
    let plain = |s: &mut String, name: &str| {
        let _ = writeln!(s, "add chain {t} {name}");
        let _ = writeln!(s, "flush chain {t} {name}");
    };
    let rule = |s: &mut String, chain: &str, rule: &str| {
        let _ = writeln!(s, "add rule {t} {chain} {rule}");
    };
    plain(&mut s, REJECT_CHAIN);
    rule(&mut s, REJECT_CHAIN, "reject");
    plain(&mut s, "mark-for-masquerade");
    rule(&mut s, "mark-for-masquerade", &format!("meta mark set meta mark or {MASQ_MARK:#x}"));

    // Before DNAT: loadBalancerSourceRanges, then refuse or drop new connections to
    // frontends without endpoints.
    let no_endpoints = [
        format!("ct state new ip daddr . meta l4proto . th dport vmap @{MAP_FIREWALL_IPS}"),
        format!("ct state new ip daddr . meta l4proto . th dport vmap @{MAP_NO_ENDPOINT_SERVICES}"),
        format!(
            "ct state new fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{MAP_NO_ENDPOINT_NODEPORTS}"
        ),
    ];
    // After DNAT: what still goes to a ClusterIP hit no service port.
    let unused_port = format!("ct state new ip daddr @{SET_CLUSTER_IPS} reject");
    for (chain, hook, rules) in [
        ("filter-prerouting", "type filter hook prerouting priority -110", &no_endpoints[..]),
        ("filter-output", "type filter hook output priority -110", &no_endpoints[..]),
        ("filter-prerouting-post-dnat", "type filter hook prerouting priority -90", std::slice::from_ref(&unused_port)),
        ("filter-output-post-dnat", "type filter hook output priority -90", std::slice::from_ref(&unused_port)),
    ] {
        base(&mut s, chain, hook);
        for r in rules {
            rule(&mut s, chain, r);
        }
    }

    plain(&mut s, "services");
    if let Some((net, len)) = cluster_cidr {
        rule(
            &mut s,
            "services",
            &format!("ip daddr @{SET_CLUSTER_IPS} ip saddr != {net}/{len} jump mark-for-masquerade"),
        );
    }
    rule(
        &mut s,
        "services",
        &format!("ip daddr . meta l4proto . th dport @{SET_MASQ_FRONTENDS} jump mark-for-masquerade"),
    );
    rule(&mut s, "services", &format!("ip daddr . meta l4proto . th dport vmap @{MAP_SERVICE_IPS}"));
    let local = "fib daddr type local ip daddr != 127.0.0.0/8";
    rule(
        &mut s,
        "services",
        &format!("{local} meta l4proto . th dport @{SET_MASQ_NODEPORTS} jump mark-for-masquerade"),
    );
    rule(&mut s, "services", &format!("{local} meta l4proto . th dport vmap @{MAP_SERVICE_NODEPORTS}"));

    base(&mut s, "nat-prerouting", "type nat hook prerouting priority dstnat");
    rule(&mut s, "nat-prerouting", "jump services");
    base(&mut s, "nat-output", "type nat hook output priority -100");
    rule(&mut s, "nat-output", "jump services");
    base(&mut s, "nat-postrouting", "type nat hook postrouting priority srcnat");
    rule(
        &mut s,
        "nat-postrouting",
        &format!("ct status dnat ip saddr . ip daddr @{SET_HAIRPIN} jump mark-for-masquerade"),
    );
    rule(&mut s, "nat-postrouting", &format!("meta mark & {MASQ_MARK:#x} == 0 return"));
    rule(&mut s, "nat-postrouting", &format!("meta mark set meta mark xor {MASQ_MARK:#x}"));
    rule(&mut s, "nat-postrouting", "masquerade fully-random");
    s
}

/// Which dispatch chain a frontend jumps to: by endpoint count and affinity timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DispatchChain {
    pub nodeport: bool,
    pub endpoints: usize,
    pub affinity_timeout: Option<u32>,
}

impl DispatchChain {
    pub fn name(&self) -> String {
        let kind = if self.nodeport { "nodeport" } else { "service" };
        match self.affinity_timeout {
            None => format!("{kind}-{}", self.endpoints),
            Some(t) => format!("{kind}-{}-affinity-{t}", self.endpoints),
        }
    }

    /// `nft -f` text creating (or refreshing) this chain and, with affinity, its map.
    pub fn text(&self) -> String {
        let t = format!("ip {TABLE}");
        let name = self.name();
        let n = self.endpoints;
        let (map, dnat_key) = if self.nodeport {
            (MAP_NODEPORT_ENDPOINTS, "meta l4proto . th dport . ct mark")
        } else {
            (MAP_ENDPOINTS, "ip daddr . meta l4proto . th dport . ct mark")
        };
        let mut s = String::new();
        let _ = writeln!(s, "add chain {t} {name}");
        let _ = writeln!(s, "flush chain {t} {name}");
        let draw = format!("ct mark set numgen random mod {n} offset 1");
        match self.affinity_timeout {
            None => {
                let _ = writeln!(s, "add rule {t} {name} {draw}");
            }
            Some(timeout) => {
                let affinity = format!("affinity-{n}-{timeout}");
                let client = "ip saddr . ip daddr . meta l4proto . th dport";
                let _ = writeln!(
                    s,
                    "add map {t} {affinity} {{ type ipv4_addr . ipv4_addr . inet_proto . inet_service : mark; \
                     flags dynamic,timeout; timeout {timeout}s; size 1048576; }}"
                );
                let _ = writeln!(s, "add rule {t} {name} ct mark set {client} map @{affinity}");
                let _ = writeln!(s, "add rule {t} {name} ct mark 0 {draw}");
                let _ = writeln!(s, "add rule {t} {name} update @{affinity} {{ {client} : ct mark }}");
            }
        }
        let _ = writeln!(s, "add rule {t} {name} dnat to {dnat_key} map @{map}");
        s
    }
}

/// The chain that drops sources outside `allowed` (shared by every frontend with the
/// same ranges): its name and `nft -f` text.
pub fn firewall_chain(allowed: &[(Ipv4Addr, u8)]) -> (String, String) {
    let (name, rule) = firewall_parts(allowed);
    let t = format!("ip {TABLE}");
    let text = format!("add chain {t} {name}\nflush chain {t} {name}\nadd rule {t} {name} {rule}\n");
    (name, text)
}

/// A firewall chain's name (`firewall-<hash of the ranges>`) and its one rule, for any
/// table (userspace mode writes the same chain into its own table).
pub fn firewall_parts(allowed: &[(Ipv4Addr, u8)]) -> (String, String) {
    use sha2::Digest;
    let list: Vec<String> = allowed.iter().map(|(ip, len)| format!("{ip}/{len}")).collect();
    let digest = sha2::Sha256::digest(list.join(",").as_bytes());
    let name = format!("firewall-{}", digest.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>());
    let rule = if list.is_empty() { "drop".to_owned() } else { format!("ip saddr != {{ {} }} drop", list.join(", ")) };
    (name, rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts_match_nft_registers() {
        // Compare `nft --debug=netlink add element … { 10.96.0.11 . udp . 53 . 1 : 10.244.1.6 . 5353 }`.
        let k = key::with_slot(key::frontend("10.96.0.11".parse().unwrap(), 17, 53), 1);
        assert_eq!(k, [10, 96, 0, 11, 17, 0, 0, 0, 0, 53, 0, 0, 1, 0, 0, 0]);
        assert_eq!(key::backend("10.244.1.6".parse().unwrap(), 5353), [10, 244, 1, 6, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn chain_names_and_text() {
        let c = DispatchChain { nodeport: false, endpoints: 3, affinity_timeout: Some(30) };
        assert_eq!(c.name(), "service-3-affinity-30");
        let text = c.text();
        assert!(text.contains("numgen random mod 3 offset 1"));
        assert!(text.contains("@affinity-3-30"));
        let (name, text) = firewall_chain(&[("10.1.0.0".parse().unwrap(), 16)]);
        assert!(name.starts_with("firewall-") && name.len() == 17);
        assert!(text.contains("ip saddr != { 10.1.0.0/16 } drop"));
        let base = base_ruleset(Some(("10.244.0.0".parse().unwrap(), 16)));
        assert!(base.contains("ip saddr != 10.244.0.0/16"));
        assert!(base.contains("masquerade fully-random"));
    }
}
