//! Reading a Service the way upstream's Go code sees it.
//!
//! In Go every field has a zero value (`""`, `0`, nil slice); k8s-openapi wraps them in
//! `Option`. These helpers treat `None` and the zero value alike, so the rules in the other
//! modules read like the upstream ones, and write back `None` instead of zero values so
//! serialized objects omit them as upstream does.

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
/// `clusterIP: None` makes a headless Service.
pub const CLUSTER_IP_NONE: &str = "None";
pub const POLICY_CLUSTER: &str = "Cluster";
pub const POLICY_LOCAL: &str = "Local";
pub const AFFINITY_NONE: &str = "None";
pub const AFFINITY_CLIENT_IP: &str = "ClientIP";
pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";
pub const SINGLE_STACK: &str = "SingleStack";
pub const PREFER_DUAL_STACK: &str = "PreferDualStack";
pub const REQUIRE_DUAL_STACK: &str = "RequireDualStack";

static EMPTY_SPEC: LazyLock<ServiceSpec> = LazyLock::new(ServiceSpec::default);

/// The spec, or an empty one when absent.
pub fn spec(svc: &Service) -> &ServiceSpec {
    svc.spec.as_ref().unwrap_or(&EMPTY_SPEC)
}

/// The spec, created empty when absent.
pub fn spec_mut(svc: &mut Service) -> &mut ServiceSpec {
    svc.spec.get_or_insert_with(ServiceSpec::default)
}

pub fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

pub fn list<T>(value: &Option<Vec<T>>) -> &[T] {
    value.as_deref().unwrap_or(&[])
}

pub fn service_type(spec: &ServiceSpec) -> &str {
    text(&spec.type_)
}

pub fn cluster_ip(spec: &ServiceSpec) -> &str {
    text(&spec.cluster_ip)
}

pub fn cluster_ips(spec: &ServiceSpec) -> &[String] {
    list(&spec.cluster_ips)
}

pub fn ip_families(spec: &ServiceSpec) -> &[String] {
    list(&spec.ip_families)
}

pub fn ports(spec: &ServiceSpec) -> &[ServicePort] {
    list(&spec.ports)
}

/// `nodePort`, 0 when unset.
pub fn node_port(port: &ServicePort) -> i32 {
    port.node_port.unwrap_or(0)
}

pub fn health_check_node_port(spec: &ServiceSpec) -> i32 {
    spec.health_check_node_port.unwrap_or(0)
}

/// Stores a port number, omitting zero.
pub fn non_zero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

/// Stores a string, omitting the empty string.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Every type except ExternalName has a ClusterIP (even if it is `None`).
pub fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    service_type(spec) != TYPE_EXTERNAL_NAME
}

/// NodePort and LoadBalancer Services may carry node ports.
pub fn needs_node_port(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
}

/// Whether node ports are allocated for ports that did not ask for one: always for
/// NodePort, for LoadBalancer unless `allocateLoadBalancerNodePorts: false`.
pub fn should_allocate_node_ports(spec: &ServiceSpec) -> bool {
    match service_type(spec) {
        TYPE_NODE_PORT => true,
        TYPE_LOAD_BALANCER => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// Reachable from outside the cluster: NodePort, LoadBalancer, or ClusterIP with externalIPs.
pub fn externally_accessible(spec: &ServiceSpec) -> bool {
    match service_type(spec) {
        TYPE_NODE_PORT | TYPE_LOAD_BALANCER => true,
        TYPE_CLUSTER_IP => !list(&spec.external_ips).is_empty(),
        _ => false,
    }
}

/// A LoadBalancer with `externalTrafficPolicy: Local` gets a health-check node port so the
/// load balancer can tell which nodes have local endpoints.
pub fn needs_health_check(spec: &ServiceSpec) -> bool {
    service_type(spec) == TYPE_LOAD_BALANCER && text(&spec.external_traffic_policy) == POLICY_LOCAL
}

/// `clusterIPs: ["None"]`.
pub fn is_headless(spec: &ServiceSpec) -> bool {
    matches!(cluster_ips(spec), [only] if only == CLUSTER_IP_NONE)
}

/// Set of non-zero node ports of the Service ports, in order, without repeats.
pub fn service_node_ports(spec: &ServiceSpec) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for port in ports(spec) {
        let np = node_port(port);
        if np != 0 && !out.contains(&np) {
            out.push(np);
        }
    }
    out
}
