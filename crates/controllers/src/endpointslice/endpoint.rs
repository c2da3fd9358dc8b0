//! The building blocks shared by the EndpointSlice, Endpoints and mirroring controllers:
//! which pods become endpoints, which port a Service port reaches on a given pod, and how
//! endpoints and port sets are identified so that existing slices can be updated in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use super::model::{PodView, ServicePortView, ServiceView, TargetPort};

/// The `addressType` of an EndpointSlice that carries IP addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressType {
    IPv4,
    IPv6,
}

impl AddressType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressType::IPv4,
            IpAddr::V6(_) => AddressType::IPv6,
        }
    }
}

/// Parses an IP address the way upstream's `ParseIPSloppy` does (IPv4 octets may carry
/// leading zeros), so `010.001.002.003` and `10.1.2.3` are the same address.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = text.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut bytes = [0u8; 4];
    for (byte, octet) in bytes.iter_mut().zip(&octets) {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = octet.parse().ok()?;
    }
    Some(IpAddr::from(bytes))
}

/// The address types a Service's endpoints are published in: its `ipFamilies`, or, for
/// objects written before families existed, the family of its cluster IP (both families
/// for a headless Service).
pub fn address_types(service: &ServiceView) -> BTreeSet<AddressType> {
    let mut types: BTreeSet<AddressType> = service
        .ip_families
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        })
        .collect();
    if types.is_empty() {
        if service.has_cluster_ip() {
            let v6 = parse_ip(&service.cluster_ip).is_some_and(|ip| ip.is_ipv6());
            types.insert(if v6 { AddressType::IPv6 } else { AddressType::IPv4 });
        } else {
            types.insert(AddressType::IPv4);
            types.insert(AddressType::IPv6);
        }
    }
    types
}

/// Whether a pod belongs in a Service's endpoints at all: it has an IP and has not
/// finished (phase Succeeded/Failed). Terminating pods (deletion requested, still
/// running) are kept only when `include_terminating` is set: EndpointSlices always keep
/// them (with conditions saying so), the legacy Endpoints only for
/// `publishNotReadyAddresses` Services.
pub fn include_pod(pod: &PodView, include_terminating: bool) -> bool {
    !pod.terminal && !pod.ips.is_empty() && (include_terminating || !pod.terminating)
}

/// The port a Service port reaches on `pod`: a numeric `targetPort` as is; a named one is
/// looked up among the pod's named container ports with the same protocol, so two pods of
/// one Service may expose different numbers. `None` when the pod has no such port.
pub fn find_port(pod: &PodView, port: &ServicePortView) -> Option<i32> {
    match &port.target {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => {
            pod.named_ports.iter().find(|p| p.name == *name && p.protocol == port.protocol).map(|p| p.port)
        }
    }
}

/// A pod's endpoint carries its hostname when the pod asked for one and named this
/// Service as its subdomain (that is what makes `<hostname>.<service>` resolvable).
pub fn should_set_hostname(pod: &PodView, service: &ServiceView) -> bool {
    !pod.hostname.is_empty() && pod.subdomain == service.name && pod.namespace == service.namespace
}

/// The pod's addresses of one family, in canonical text form.
pub fn pod_addresses(pod: &PodView, address_type: AddressType) -> Vec<String> {
    pod.ips
        .iter()
        .filter_map(|ip| parse_ip(ip))
        .filter(|ip| AddressType::of(ip) == address_type)
        .map(|ip| ip.to_string())
        .collect()
}

/// The slice ports a pod offers for a Service: one per Service port that resolves on this
/// pod (a headless Service may have none at all).
pub fn endpoint_ports(service: &ServiceView, pod: &PodView) -> Vec<EndpointPort> {
    service
        .ports
        .iter()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone()),
                port: Some(number),
                protocol: Some(port.protocol.clone()),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The EndpointSlice endpoint for a pod. The conditions follow upstream exactly:
/// `serving` is the pod's readiness, `terminating` whether it is shutting down, and
/// `ready` is "serving and not terminating" — or always true when the Service publishes
/// not-ready addresses.
pub fn pod_to_endpoint(
    pod: &PodView,
    zone: Option<&str>,
    service: &ServiceView,
    address_type: AddressType,
) -> Endpoint {
    let serving = pod.ready;
    let terminating = pod.terminating;
    let ready = service.publish_not_ready_addresses || (serving && !terminating);
    Endpoint {
        addresses: pod_addresses(pod, address_type),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pod_reference(pod)),
        node_name: Some(pod.node_name.clone()).filter(|n| !n.is_empty()),
        zone: zone.filter(|z| !z.is_empty()).map(str::to_string),
        hostname: should_set_hostname(pod, service).then(|| pod.hostname.clone()),
        ..Default::default()
    }
}

/// `{kind: Pod, namespace, name, uid}`: how endpoints point back at their pod.
pub fn pod_reference(pod: &PodView) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    }
}

/// The identity of an endpoint: its addresses, hostname and target. Everything else
/// (conditions, node, zone) may change without the endpoint becoming another one, which
/// is what lets a slice be updated in place when a pod turns ready.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    addresses: Vec<String>,
    hostname: String,
    target_namespace: String,
    target_name: String,
}

impl EndpointKey {
    pub fn of(endpoint: &Endpoint) -> Self {
        let mut addresses = endpoint.addresses.clone();
        addresses.sort();
        let target = endpoint.target_ref.as_ref();
        EndpointKey {
            addresses,
            hostname: endpoint.hostname.clone().unwrap_or_default(),
            target_namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
            target_name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        }
    }
}

/// Whether two endpoints with the same [`EndpointKey`] are the same in every attribute
/// the controllers write (a target's resourceVersion is ignored).
pub fn equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    };
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name == b.node_name && a.zone == b.zone && conditions(a) == conditions(b) && target(a) == target(b)
}

/// Endpoints by identity, in a stable order.
#[derive(Clone, Debug, Default)]
pub struct EndpointSet(BTreeMap<EndpointKey, Endpoint>);

impl EndpointSet {
    pub fn insert(&mut self, endpoint: Endpoint) {
        self.0.insert(EndpointKey::of(&endpoint), endpoint);
    }

    /// Removes and returns the desired endpoint with the same identity as `endpoint`.
    pub fn take(&mut self, endpoint: &Endpoint) -> Option<Endpoint> {
        self.0.remove(&EndpointKey::of(endpoint))
    }

    pub fn get(&self, endpoint: &Endpoint) -> Option<&Endpoint> {
        self.0.get(&EndpointKey::of(endpoint))
    }

    pub fn pop(&mut self) -> Option<Endpoint> {
        self.0.pop_first().map(|(_, e)| e)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A set of slice ports, independent of order: slices are grouped by it, because every
/// endpoint in a slice offers exactly the slice's ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey(Vec<(String, i32, String, Option<String>)>);

impl PortKey {
    pub fn of(ports: &[EndpointPort]) -> Self {
        let mut entries: Vec<_> = ports.iter().map(port_sort_key).collect();
        entries.sort();
        PortKey(entries)
    }
}

/// How a port compares: name, number, protocol (TCP when unset, as the API defaults it),
/// app protocol.
fn port_sort_key(port: &EndpointPort) -> (String, i32, String, Option<String>) {
    (
        port.name.clone().unwrap_or_default(),
        port.port.unwrap_or_default(),
        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
        port.app_protocol.clone(),
    )
}

/// Ports in the canonical order used for new slices.
pub fn sorted_ports(mut ports: Vec<EndpointPort>) -> Vec<EndpointPort> {
    ports.sort_by_key(port_sort_key);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::testing::pod;

    fn service(publish_not_ready: bool) -> ServiceView {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20", "ipFamilies": ["IPv4"],
                     "publishNotReadyAddresses": publish_not_ready,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                               {"name": "admin", "port": 81, "targetPort": "admin", "protocol": "TCP"},
                               {"name": "raw", "port": 82, "targetPort": 9999, "protocol": "UDP"}]}
        }))
        .expect("service");
        ServiceView::from_service(&svc)
    }

    fn conditions(e: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    }

    #[test]
    fn conditions_follow_upstream() {
        let svc = service(false);
        let ready = pod("a", "10.244.1.5", true);
        assert_eq!(
            conditions(&pod_to_endpoint(&ready, None, &svc, AddressType::IPv4)),
            (Some(true), Some(true), Some(false))
        );
        let not_ready = pod("b", "10.244.1.6", false);
        assert_eq!(
            conditions(&pod_to_endpoint(&not_ready, None, &svc, AddressType::IPv4)),
            (Some(false), Some(false), Some(false))
        );
        let mut terminating = ready.clone();
        terminating.terminating = true;
        assert_eq!(
            conditions(&pod_to_endpoint(&terminating, None, &svc, AddressType::IPv4)),
            (Some(false), Some(true), Some(true))
        );
        let publish = service(true);
        assert_eq!(
            conditions(&pod_to_endpoint(&terminating, None, &publish, AddressType::IPv4)),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(
            conditions(&pod_to_endpoint(&not_ready, None, &publish, AddressType::IPv4)),
            (Some(true), Some(false), Some(false))
        );
    }

    #[test]
    fn endpoint_carries_node_zone_target_and_hostname() {
        let svc = service(false);
        let mut p = pod("a", "10.244.1.5", true);
        let e = pod_to_endpoint(&p, Some("zone-a"), &svc, AddressType::IPv4);
        assert_eq!(e.addresses, ["10.244.1.5"]);
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        assert_eq!(e.zone.as_deref(), Some("zone-a"));
        assert_eq!(e.hostname, None);
        let target = e.target_ref.expect("target");
        assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("a")));
        assert_eq!(target.uid.as_deref(), Some("uid-a"));
        p.hostname = "web-0".into();
        p.subdomain = "other".into();
        assert_eq!(pod_to_endpoint(&p, None, &svc, AddressType::IPv4).hostname, None);
        p.subdomain = "web".into();
        assert_eq!(pod_to_endpoint(&p, None, &svc, AddressType::IPv4).hostname.as_deref(), Some("web-0"));
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let svc = service(false);
        let a = pod("a", "10.244.1.5", true);
        let mut b = pod("b", "10.244.1.6", true);
        b.named_ports[0].port = 9090;
        let ports_a = endpoint_ports(&svc, &a);
        let ports_b = endpoint_ports(&svc, &b);
        // "admin" exists on neither pod; the numeric UDP port always resolves.
        let numbers = |ports: &[EndpointPort]| ports.iter().map(|p| p.port.unwrap_or(0)).collect::<Vec<_>>();
        assert_eq!(numbers(&ports_a), [8080, 9999]);
        assert_eq!(numbers(&ports_b), [9090, 9999]);
        assert_ne!(PortKey::of(&ports_a), PortKey::of(&ports_b));
        let mut reversed = ports_a.clone();
        reversed.reverse();
        assert_eq!(PortKey::of(&ports_a), PortKey::of(&reversed));
        // A named port must also match the protocol.
        let mut udp = a.clone();
        udp.named_ports[0].protocol = "UDP".into();
        assert_eq!(numbers(&endpoint_ports(&svc, &udp)), [9999]);
    }

    #[test]
    fn which_pods_are_included() {
        let mut p = pod("a", "10.244.1.5", false);
        assert!(include_pod(&p, false));
        p.terminating = true;
        assert!(include_pod(&p, true) && !include_pod(&p, false));
        p.terminating = false;
        p.terminal = true;
        assert!(!include_pod(&p, true));
        p.terminal = false;
        p.ips.clear();
        assert!(!include_pod(&p, true));
    }

    #[test]
    fn endpoint_identity_ignores_conditions() {
        let svc = service(false);
        let a = pod_to_endpoint(&pod("a", "10.244.1.5", true), None, &svc, AddressType::IPv4);
        let b = pod_to_endpoint(&pod("a", "10.244.1.5", false), None, &svc, AddressType::IPv4);
        assert_eq!(EndpointKey::of(&a), EndpointKey::of(&b));
        assert!(!equal_beyond_key(&a, &b));
        let mut c = a.clone();
        if let Some(t) = c.target_ref.as_mut() {
            t.resource_version = Some("42".into());
        }
        assert!(equal_beyond_key(&a, &c));
    }

    #[test]
    fn address_families_and_sloppy_ips() {
        assert_eq!(parse_ip("010.001.002.003"), "10.1.2.3".parse().ok());
        assert_eq!(parse_ip("nonsense"), None);
        let mut p = pod("a", "10.244.1.5", true);
        p.ips.push("fd00::5".into());
        assert_eq!(pod_addresses(&p, AddressType::IPv6), ["fd00::5"]);
        assert_eq!(pod_addresses(&p, AddressType::IPv4), ["10.244.1.5"]);
        let mut svc = service(false);
        assert_eq!(address_types(&svc), [AddressType::IPv4].into());
        svc.ip_families.clear();
        svc.cluster_ip = "None".into();
        assert_eq!(address_types(&svc), [AddressType::IPv4, AddressType::IPv6].into());
    }
}
