//! What each Kubernetes object puts into the DNS table: the Kubernetes DNS-Based Service
//! Discovery specification 1.1.0, written as pure functions from the service view to
//! [`Contribution`]s.
//!
//! | object | names |
//! |---|---|
//! | ClusterIP Service | `<svc>.<ns>.svc.<zone>` A/AAAA per ClusterIP; SRV for each port there and at `_<port>._<proto>.<svc>…` for named ports; PTR from each ClusterIP |
//! | headless Service | `<svc>…` A/AAAA per published endpoint; `<hostname or dashed IP>.<svc>…` per endpoint; SRV per endpoint × port; PTR from each endpoint address. No published endpoints: no names (NXDOMAIN) |
//! | ExternalName Service | `<svc>…` CNAME to the external name |
//! | Namespace | `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist (NODATA) |
//! | the zone itself | apex NS, `dns-version` TXT, `svc`/`pod` exist; SOA is made when answering |
//!
//! "Published" endpoints are the ready ones, or all of them when the Service sets
//! `publishNotReadyAddresses` (CoreDNS reads only `ready`, which the EndpointSlice
//! controller sets in that case anyway).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use skiff_core::service_view::{Protocol, ServiceEntry, ServiceKey};

use crate::name::{dashed_ip, Name};
use crate::wire::rtype;
use crate::zone::Contribution;

/// The spec version served at `dns-version.<zone>`.
pub const SPEC_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` record (the spec's example and CoreDNS).
pub const VERSION_TTL: u32 = 28_800;
/// The Service whose ClusterIP is the zone's name server address (`ns.dns.<zone>`).
pub const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// Zone-wide settings the records depend on.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// The cluster domain, e.g. `cluster.local.`.
    pub zone: Name,
    /// TTL of every Kubernetes record (and the negative-caching TTL in the SOA).
    pub ttl: u32,
}

impl RecordConfig {
    /// `ns.dns.<zone>`: the name server named in the apex NS and SOA records.
    pub fn ns_name(&self) -> Name {
        self.zone.prepend("dns").and_then(|n| n.prepend("ns")).unwrap_or_else(|_| self.zone.clone())
    }

    /// `<svc>.<ns>.svc.<zone>`, or `None` if it would be too long.
    pub fn service_name(&self, key: &ServiceKey) -> Option<Name> {
        self.zone.prepend("svc").and_then(|n| n.prepend(&key.namespace)).and_then(|n| n.prepend(&key.name)).ok()
    }
}

/// The records of the zone itself.
pub fn zone_records(config: &RecordConfig) -> Contribution {
    let mut c = Contribution::default();
    c.add(config.zone.clone(), rtype::NS, config.ttl, config.ns_name().wire());
    if let Ok(version) = config.zone.prepend("dns-version") {
        let mut txt = vec![SPEC_VERSION.len() as u8];
        txt.extend_from_slice(SPEC_VERSION.as_bytes());
        c.add(version, rtype::TXT, VERSION_TTL, &txt);
    }
    for label in ["svc", "pod"] {
        if let Ok(name) = config.zone.prepend(label) {
            c.touch(name);
        }
    }
    c.touch(config.ns_name());
    c
}

/// A Namespace makes `<ns>.svc.<zone>` and `<ns>.pod.<zone>` exist.
pub fn namespace_records(config: &RecordConfig, namespace: &str) -> Contribution {
    let mut c = Contribution::default();
    for label in ["svc", "pod"] {
        if let Ok(name) = config.zone.prepend(label).and_then(|n| n.prepend(namespace)) {
            c.touch(name);
        }
    }
    c
}

/// Everything a Service (joined with its endpoints) puts into the table.
pub fn service_records(config: &RecordConfig, entry: &ServiceEntry<'_>) -> Contribution {
    let mut c = Contribution::default();
    let service = entry.service;
    for ep in &entry.endpoints {
        if let Some(target) = ep.target_ref.as_ref().filter(|t| t.kind == "Pod") {
            c.pods.push((ep.address, Arc::from(target.namespace.as_str())));
        }
    }
    let Some(svc_name) = config.service_name(&service.key) else { return c };
    let ttl = config.ttl;
    if let Some(external) = &service.external_name {
        if let Ok(target) = Name::from_dotted(external) {
            c.add(svc_name, rtype::CNAME, ttl, target.wire());
        }
        return c;
    }
    if service.headless {
        headless_records(config, entry, &svc_name, &mut c);
        return c;
    }
    if service.cluster_ips.is_empty() {
        return c;
    }
    for ip in &service.cluster_ips {
        add_address(&mut c, &svc_name, *ip, ttl);
        c.add(Name::reverse(*ip), rtype::PTR, ttl, svc_name.wire());
    }
    if (service.key.namespace.as_str(), service.key.name.as_str()) == DNS_SERVICE {
        for ip in &service.cluster_ips {
            add_address(&mut c, &config.ns_name(), *ip, ttl);
        }
    }
    // SRV: one per port at the service name, one per named port at _<port>._<proto>.
    let all_ports: Vec<(String, Protocol, u16)> =
        service.ports.iter().map(|p| (p.name.clone(), p.protocol, p.port)).collect();
    add_srv_sets(&mut c, &svc_name, &all_ports, |_, _| vec![(svc_name.clone(), None)], ttl);
    c
}

/// A target of SRV records: its name, and the port it listens on when that differs per
/// target (headless endpoints). The answerer adds the target's addresses as glue from the
/// target's own records, so SRV sets store no copies of them. Targets are stored relative
/// to the SRV owner (they are the Service name or one label below it), see
/// [`crate::wire::append_relative_name`].
type SrvTarget = (Name, Option<u16>);

/// Adds the SRV record sets of `ports` below `svc_name`: at the service name every port,
/// at `_<port>._<proto>.<svc>` the named ones. `targets` gives, for (port name, protocol),
/// the names answering it.
fn add_srv_sets(
    c: &mut Contribution,
    svc_name: &Name,
    ports: &[(String, Protocol, u16)],
    targets: impl Fn(&str, Protocol) -> Vec<SrvTarget>,
    ttl: u32,
) {
    // (owner) → list of (port, target)
    let mut sets: BTreeMap<Name, Vec<(u16, Name)>> = BTreeMap::new();
    for (port_name, protocol, port) in ports {
        let found = targets(port_name, *protocol);
        let mut owners = vec![svc_name.clone()];
        if !port_name.is_empty() {
            let owner = svc_name
                .prepend(&format!("_{}", protocol.as_lower_str()))
                .and_then(|n| n.prepend(&format!("_{}", port_name.to_ascii_lowercase())));
            if let Ok(owner) = owner {
                owners.push(owner);
            }
        }
        for owner in owners {
            let set = sets.entry(owner).or_default();
            for (target, target_port) in &found {
                let entry = (target_port.unwrap_or(*port), target.clone());
                if !set.contains(&entry) {
                    set.push(entry);
                }
            }
        }
    }
    for (owner, set) in sets {
        if set.is_empty() {
            continue;
        }
        // CoreDNS's weights: an equal share of 100, at least 1.
        let weight = (100 / set.len()).max(1) as u16;
        for (port, target) in &set {
            let mut rdata = Vec::with_capacity(6 + target.wire().len());
            rdata.extend_from_slice(&0u16.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            crate::wire::append_relative_name(&mut rdata, owner.wire(), target.wire());
            c.add(owner.clone(), rtype::SRV, ttl, &rdata);
        }
    }
}

fn headless_records(config: &RecordConfig, entry: &ServiceEntry<'_>, svc_name: &Name, c: &mut Contribution) {
    let ttl = config.ttl;
    // Endpoint name → (addresses, ports) of the published endpoints.
    let mut by_name: Vec<(Name, &skiff_core::service_view::Endpoint)> = Vec::new();
    for ep in entry.published_endpoints() {
        let label = ep.hostname.clone().unwrap_or_else(|| dashed_ip(ep.address));
        let Ok(ep_name) = svc_name.prepend(&label) else { continue };
        add_address(c, svc_name, ep.address, ttl);
        add_address(c, &ep_name, ep.address, ttl);
        c.add(Name::reverse(ep.address), rtype::PTR, ttl, ep_name.wire());
        by_name.push((ep_name, ep));
    }
    let mut ports: Vec<(String, Protocol, u16)> = Vec::new();
    for (_, ep) in &by_name {
        for p in &ep.ports {
            let key = (p.name.clone(), p.protocol, 0);
            if !ports.contains(&key) {
                ports.push(key);
            }
        }
    }
    add_srv_sets(
        c,
        svc_name,
        &ports,
        |port_name, protocol| {
            by_name
                .iter()
                .filter_map(|(name, ep)| {
                    let port = ep.ports.iter().find(|p| p.name == port_name && p.protocol == protocol)?;
                    Some((name.clone(), Some(port.port)))
                })
                .collect()
        },
        ttl,
    );
}

fn address_rdata(ip: IpAddr) -> (u16, Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => (rtype::A, v4.octets().to_vec()),
        IpAddr::V6(v6) => (rtype::AAAA, v6.octets().to_vec()),
    }
}

fn add_address(c: &mut Contribution, owner: &Name, ip: IpAddr, ttl: u32) {
    let (t, data) = address_rdata(ip);
    let records = c.names.entry(owner.clone()).or_default();
    // The same address twice (two slices, two services' PTR) is one record.
    let mut tail = Vec::with_capacity(10 + data.len());
    crate::wire::append_tail(&mut tail, t, ttl, &data);
    if !crate::wire::tails(&records.tails).any(|(_, existing, _)| existing == tail.as_slice()) {
        records.tails.extend_from_slice(&tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_core::service_view::ServiceView;

    fn config() -> RecordConfig {
        RecordConfig { zone: Name::from_dotted("cluster.local").unwrap(), ttl: 30 }
    }

    fn name(text: &str) -> Name {
        Name::from_dotted(text).unwrap()
    }

    fn count(c: &Contribution, owner: &str, t: u16) -> usize {
        c.names
            .get(&name(owner))
            .map(|r| crate::wire::tails(&r.tails).filter(|(rt, _, _)| *rt == t).count())
            .unwrap_or(0)
    }

    #[test]
    fn cluster_ip_service() {
        let mut view = ServiceView::default();
        let key = view
            .apply_service(&json!({"metadata": {"namespace": "testns", "name": "svc1"},
                "spec": {"clusterIP": "10.0.0.1", "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "UDP"}]}}))
            .unwrap();
        let c = service_records(&config(), &view.service(&key).unwrap());
        assert_eq!(count(&c, "svc1.testns.svc.cluster.local", rtype::A), 1);
        assert_eq!(count(&c, "svc1.testns.svc.cluster.local", rtype::SRV), 2);
        assert_eq!(count(&c, "_http._tcp.svc1.testns.svc.cluster.local", rtype::SRV), 1);
        assert_eq!(count(&c, "1.0.0.10.in-addr.arpa", rtype::PTR), 1);
    }

    #[test]
    fn headless_service_with_hostnames() {
        let mut view = ServiceView::default();
        let key = view
            .apply_service(&json!({"metadata": {"namespace": "testns", "name": "hdls1"},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}))
            .unwrap();
        view.apply_endpoint_slice(&json!({
            "metadata": {"namespace": "testns", "name": "hdls1-a", "labels": {"kubernetes.io/service-name": "hdls1"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["172.0.0.2"]}, {"addresses": ["172.0.0.3"], "conditions": {"ready": true}},
                {"addresses": ["172.0.0.4"], "hostname": "my-pet", "targetRef": {"kind": "Pod", "name": "p4"}},
                {"addresses": ["172.0.0.9"], "conditions": {"ready": false}}]
        }))
        .unwrap();
        let c = service_records(&config(), &view.service(&key).unwrap());
        assert_eq!(count(&c, "hdls1.testns.svc.cluster.local", rtype::A), 3);
        assert_eq!(count(&c, "my-pet.hdls1.testns.svc.cluster.local", rtype::A), 1);
        assert_eq!(count(&c, "172-0-0-2.hdls1.testns.svc.cluster.local", rtype::A), 1);
        assert_eq!(count(&c, "172-0-0-9.hdls1.testns.svc.cluster.local", rtype::A), 0);
        assert_eq!(count(&c, "_http._tcp.hdls1.testns.svc.cluster.local", rtype::SRV), 3);
        assert_eq!(count(&c, "4.0.0.172.in-addr.arpa", rtype::PTR), 1);
        assert_eq!(c.pods, vec![("172.0.0.4".parse().unwrap(), Arc::from("testns"))]);
    }

    #[test]
    fn headless_without_ready_endpoints_and_external_name() {
        let mut view = ServiceView::default();
        let key = view
            .apply_service(&json!({"metadata": {"namespace": "testns", "name": "none"}, "spec": {"clusterIP": "None"}}))
            .unwrap();
        assert!(service_records(&config(), &view.service(&key).unwrap()).names.is_empty());
        let key = view
            .apply_service(&json!({"metadata": {"namespace": "testns", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "www.example.com"}}))
            .unwrap();
        let c = service_records(&config(), &view.service(&key).unwrap());
        assert_eq!(count(&c, "ext.testns.svc.cluster.local", rtype::CNAME), 1);
    }

    #[test]
    fn zone_and_namespace_records() {
        let z = zone_records(&config());
        assert_eq!(count(&z, "cluster.local", rtype::NS), 1);
        assert_eq!(count(&z, "dns-version.cluster.local", rtype::TXT), 1);
        let n = namespace_records(&config(), "testns");
        assert!(n.names.contains_key(&name("testns.svc.cluster.local")));
        assert!(n.names.contains_key(&name("testns.pod.cluster.local")));
    }
}
