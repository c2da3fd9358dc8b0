//! What should be programmed: the service ports of one Service, each with its frontends
//! (ClusterIP, external and LoadBalancer IPs, NodePort) and the endpoints each frontend
//! forwards to. Pure: computed from a [`ServiceEntry`] of the shared service view and a
//! little node context, so every rule of endpoint selection is testable without a kernel.
//!
//! The selection follows kube-proxy (`CategorizeEndpoints`):
//! - cluster endpoints are the ready ones; when none is ready, the ones that are serving
//!   and terminating (graceful termination, KEP-1669);
//! - local endpoints are the same, restricted to this node;
//! - a traffic policy of `Local` uses the local set; a frontend without endpoints rejects
//!   when the Service has no usable endpoint anywhere and drops when it only lacks local
//!   ones.

use std::net::{IpAddr, Ipv4Addr};

use skiff_core::service_view::{Endpoint, Protocol, ServiceEntry, ServiceKey, ServiceType, TrafficPolicy};

/// Identifies one port of one Service, as kube-proxy's `ServicePortName`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub service: ServiceKey,
    pub port: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.service, self.port, self.protocol.as_lower_str())
    }
}

/// An endpoint address and the port it serves this service port on.
pub type Backend = (Ipv4Addr, u16);

/// What a frontend does with a new connection when it has no endpoint to send it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoEndpoints {
    /// No usable endpoint anywhere: refuse at once (ICMP port unreachable).
    Reject,
    /// Endpoints exist, but none on this node and the policy is `Local`: drop silently.
    Drop,
}

/// The endpoints one frontend forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// Chosen at random (nftables, iptables) or in turn (userspace). Sorted.
    pub backends: Vec<Backend>,
    /// Only meaningful when `backends` is empty.
    pub when_empty: NoEndpoints,
}

/// One service port as the data plane sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortState {
    pub name: ServicePortName,
    /// The Service's IPv4 ClusterIPs (IPv6 is not programmed).
    pub cluster_ips: Vec<Ipv4Addr>,
    pub port: u16,
    /// 0 when the Service has no node port.
    pub node_port: u16,
    /// `spec.externalIPs` and LoadBalancer ingress IPs: both are external frontends.
    pub external_ips: Vec<Ipv4Addr>,
    /// Where ClusterIP traffic goes (internalTrafficPolicy).
    pub internal: Targets,
    /// Where NodePort, external and LoadBalancer IP traffic goes (externalTrafficPolicy).
    pub external: Targets,
    /// externalTrafficPolicy Cluster: external traffic is masqueraded so replies come back
    /// through this node; Local keeps the client's address.
    pub masquerade_external: bool,
    /// sessionAffinity ClientIP timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// loadBalancerSourceRanges: only these sources may use the LoadBalancer IPs.
    pub firewall: Option<Firewall>,
}

/// `loadBalancerSourceRanges` of a LoadBalancer Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firewall {
    /// The LoadBalancer IPs the ranges guard (external IPs and node ports are not guarded).
    pub ips: Vec<Ipv4Addr>,
    /// Allowed source networks (address, prefix length), sorted.
    pub allowed: Vec<(Ipv4Addr, u8)>,
}

impl ServicePortState {
    /// Whether any external frontend (NodePort, external or LoadBalancer IP) exists.
    pub fn has_external(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty()
    }
}

/// Everything the proxy programs for one Service, plus its health-check needs.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceState {
    pub ports: Vec<ServicePortState>,
    /// `healthCheckNodePort` of a LoadBalancer Service with externalTrafficPolicy Local.
    pub health_check_node_port: u16,
    /// Ready endpoints on this node (what the health check reports).
    pub local_ready_endpoints: usize,
}

/// Node facts the selection needs.
#[derive(Clone, Debug, Default)]
pub struct NodeContext {
    pub node_name: String,
}

/// Builds the state of one Service, or `None` when the proxy has nothing to do for it
/// (headless, ExternalName, no IPv4 ClusterIP).
pub fn service_state(entry: &ServiceEntry<'_>, node: &NodeContext) -> Option<ServiceState> {
    let service = entry.service;
    if service.headless || service.service_type == ServiceType::ExternalName {
        return None;
    }
    let cluster_ips: Vec<Ipv4Addr> = service.cluster_ips.iter().filter_map(ipv4).collect();
    if cluster_ips.is_empty() {
        return None;
    }
    let mut external_ips: Vec<Ipv4Addr> = service.external_ips.iter().filter_map(ipv4).collect();
    if service.service_type == ServiceType::LoadBalancer {
        external_ips.extend(service.load_balancer_ips.iter().filter_map(ipv4));
    }
    external_ips.sort();
    external_ips.dedup();
    let node_ports_apply = matches!(service.service_type, ServiceType::NodePort | ServiceType::LoadBalancer);
    let firewall = firewall(service);
    let is_local = |e: &Endpoint| e.node_name.as_deref() == Some(node.node_name.as_str());
    let ready = |e: &Endpoint| e.ready || service.publish_not_ready_addresses;

    let ports = service
        .ports
        .iter()
        .map(|port| {
            let name =
                ServicePortName { service: service.key.clone(), port: port.name.clone(), protocol: port.protocol };
            let serving: Vec<(&Endpoint, Backend)> = entry
                .endpoints
                .iter()
                .filter_map(|e| {
                    let address = ipv4(&e.address)?;
                    let target = e.ports.iter().find(|p| p.name == port.name && p.protocol == port.protocol)?;
                    Some((e, (address, target.port)))
                })
                .collect();
            let cluster = usable(&serving, |_| true, ready);
            let local = usable(&serving, is_local, ready);
            let targets = |policy: TrafficPolicy| match policy {
                TrafficPolicy::Cluster => Targets { backends: cluster.clone(), when_empty: NoEndpoints::Reject },
                TrafficPolicy::Local => Targets {
                    backends: local.clone(),
                    when_empty: if cluster.is_empty() { NoEndpoints::Reject } else { NoEndpoints::Drop },
                },
            };
            ServicePortState {
                name,
                cluster_ips: cluster_ips.clone(),
                port: port.port,
                node_port: if node_ports_apply { port.node_port } else { 0 },
                external_ips: external_ips.clone(),
                internal: targets(service.internal_traffic_policy),
                external: targets(service.external_traffic_policy),
                masquerade_external: service.external_traffic_policy == TrafficPolicy::Cluster,
                affinity_timeout: service.session_affinity_timeout,
                firewall: firewall.clone(),
            }
        })
        .collect();
    let local_ready_endpoints = entry.endpoints.iter().filter(|e| is_local(e) && ready(e)).count();
    let health_check_node_port = if service.service_type == ServiceType::LoadBalancer
        && service.external_traffic_policy == TrafficPolicy::Local
    {
        service.health_check_node_port
    } else {
        0
    };
    Some(ServiceState { ports, health_check_node_port, local_ready_endpoints })
}

/// The source-range firewall of a LoadBalancer Service with ranges and IPv4 ingress IPs.
/// Ranges that do not parse are ignored (the API server validates them).
fn firewall(service: &skiff_core::service_view::Service) -> Option<Firewall> {
    if service.service_type != ServiceType::LoadBalancer || service.load_balancer_source_ranges.is_empty() {
        return None;
    }
    let ips: Vec<Ipv4Addr> = service.load_balancer_ips.iter().filter_map(ipv4).collect();
    let mut allowed: Vec<(Ipv4Addr, u8)> =
        service.load_balancer_source_ranges.iter().filter_map(|r| crate::parse_cidr(r).ok()).collect();
    allowed.sort();
    allowed.dedup();
    (!ips.is_empty()).then_some(Firewall { ips, allowed })
}

/// Ready endpoints among those `keep` selects; when none is ready, the serving and
/// terminating ones. Sorted and without duplicates.
fn usable(
    serving: &[(&Endpoint, Backend)],
    keep: impl Fn(&Endpoint) -> bool,
    ready: impl Fn(&Endpoint) -> bool,
) -> Vec<Backend> {
    let mut chosen: Vec<Backend> = serving.iter().filter(|(e, _)| keep(e) && ready(e)).map(|(_, b)| *b).collect();
    if chosen.is_empty() {
        chosen = serving.iter().filter(|(e, _)| keep(e) && e.serving && e.terminating).map(|(_, b)| *b).collect();
    }
    chosen.sort();
    chosen.dedup();
    chosen
}

fn ipv4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use skiff_core::service_view::ServiceView;

    fn view(spec: Value, endpoints: Value) -> ServiceView {
        let mut view = ServiceView::default();
        view.apply_service(&json!({"metadata": {"namespace": "ns", "name": "svc"}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}}}))
            .unwrap();
        view.apply_endpoint_slice(&json!({
            "metadata": {"namespace": "ns", "name": "svc-1", "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints
        }))
        .unwrap();
        view
    }

    fn state(view: &ServiceView) -> Option<ServiceState> {
        let entry = view.service(&ServiceKey::new("ns", "svc")).unwrap();
        service_state(&entry, &NodeContext { node_name: "node-1".into() })
    }

    fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
        json!({"addresses": [ip], "nodeName": node,
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    }

    const PORTS: &str = r#"[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]"#;

    #[test]
    fn ready_endpoints_per_port_and_protocol() {
        let ports: Value = serde_json::from_str(PORTS).unwrap();
        let v = view(
            json!({"type": "NodePort", "clusterIP": "10.96.0.5", "ports": ports}),
            json!([
                ep("10.244.1.2", "node-1", true, true, false),
                ep("10.244.2.2", "node-2", true, true, false),
                ep("10.244.2.3", "node-2", false, false, false)
            ]),
        );
        let s = state(&v).unwrap();
        assert_eq!(s.ports.len(), 2);
        let http = &s.ports[0];
        assert_eq!(http.name.protocol, Protocol::Tcp);
        assert_eq!(http.node_port, 30080);
        assert_eq!(
            http.internal.backends,
            vec![("10.244.1.2".parse().unwrap(), 8080), ("10.244.2.2".parse().unwrap(), 8080)]
        );
        assert!(http.masquerade_external);
        assert!(http.external_ips.is_empty(), "LB ingress IPs only count for LoadBalancer Services");
        let dns = &s.ports[1];
        assert_eq!(dns.name.protocol, Protocol::Udp);
        assert_eq!(dns.internal.backends[0].1, 5353);
    }

    #[test]
    fn falls_back_to_serving_terminating_endpoints() {
        let v = view(
            json!({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}),
            json!([ep("10.244.1.2", "node-1", false, true, true), ep("10.244.2.2", "node-2", false, false, true)]),
        );
        let s = state(&v).unwrap();
        assert_eq!(s.ports[0].internal.backends, vec![("10.244.1.2".parse().unwrap(), 8080)]);
    }

    #[test]
    fn local_policies_and_no_endpoint_verdicts() {
        let v = view(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.5", "externalTrafficPolicy": "Local",
                   "internalTrafficPolicy": "Local", "healthCheckNodePort": 32000, "externalIPs": ["203.0.113.9"],
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            json!([ep("10.244.2.2", "node-2", true, true, false)]),
        );
        let s = state(&v).unwrap();
        let p = &s.ports[0];
        assert!(p.internal.backends.is_empty());
        assert_eq!(p.internal.when_empty, NoEndpoints::Drop);
        assert_eq!(p.external.when_empty, NoEndpoints::Drop);
        assert!(!p.masquerade_external);
        assert_eq!(p.external_ips, vec!["172.30.0.200".parse::<Ipv4Addr>().unwrap(), "203.0.113.9".parse().unwrap()]);
        assert_eq!(s.health_check_node_port, 32000);
        assert!(p.firewall.is_none());
        assert_eq!(s.local_ready_endpoints, 0);

        let none = view(json!({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}), json!([]));
        assert_eq!(state(&none).unwrap().ports[0].internal.when_empty, NoEndpoints::Reject);
    }

    #[test]
    fn source_ranges_guard_load_balancer_ips() {
        let v = view(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.5", "externalIPs": ["203.0.113.9"],
                   "loadBalancerSourceRanges": ["10.1.0.0/16", "bad", "192.168.1.7/24"],
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            json!([]),
        );
        let fw = state(&v).unwrap().ports[0].firewall.clone().unwrap();
        assert_eq!(fw.ips, vec!["172.30.0.200".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(fw.allowed, vec![("10.1.0.0".parse().unwrap(), 16), ("192.168.1.0".parse().unwrap(), 24)]);
    }

    #[test]
    fn headless_and_external_name_are_skipped() {
        let v = view(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}), json!([]));
        assert!(state(&v).is_none());
        let v = view(json!({"type": "ExternalName", "externalName": "example.com"}), json!([]));
        assert!(state(&v).is_none());
    }

    #[test]
    fn affinity_timeout_carries_over() {
        let v = view(
            json!({"clusterIP": "10.96.0.5", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}},
                   "ports": [{"name": "http", "port": 80}]}),
            json!([ep("10.244.1.2", "node-1", true, true, false)]),
        );
        assert_eq!(state(&v).unwrap().ports[0].affinity_timeout, Some(30));
    }
}
