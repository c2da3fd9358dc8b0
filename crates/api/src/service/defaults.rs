//! Defaulting, as the apiserver applies it to every Service it decodes (upstream
//! `SetDefaults_Service` in `pkg/apis/core/v1/defaults.go`).
//!
//! Note what is *not* here: `ipFamilies` and `ipFamilyPolicy` are not static defaults
//! upstream; they depend on the cluster's configured families and, on update, on the old
//! object, so they are filled during allocation (see `ip_families.rs`).

use k8s_openapi::api::core::v1::{ClientIPConfig, Service, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spec::{
    externally_accessible, service_type, spec_mut, text, AFFINITY_CLIENT_IP, AFFINITY_NONE, POLICY_CLUSTER,
    TYPE_CLUSTER_IP, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
};

/// ClientIP session stickiness lasts three hours unless configured.
pub const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 10800;

/// A load-balancer IP that nodes treat as their own (traffic to it is short-circuited).
const IP_MODE_VIP: &str = "VIP";

/// Fills every field upstream defaults. Idempotent, so it is safe to apply more than once.
///
/// - `sessionAffinity` None; with None any `sessionAffinityConfig` is dropped; with ClientIP a
///   missing timeout becomes 10800 seconds;
/// - `type` ClusterIP;
/// - each port: `protocol` TCP, `targetPort` = `port` when unset, 0 or "";
/// - `externalTrafficPolicy` Cluster for externally accessible Services (NodePort,
///   LoadBalancer, ClusterIP with externalIPs);
/// - `internalTrafficPolicy` Cluster for ClusterIP, NodePort and LoadBalancer;
/// - `allocateLoadBalancerNodePorts` true for LoadBalancer;
/// - for LoadBalancer, `status.loadBalancer.ingress[].ipMode` VIP where an IP is set.
pub fn default_service(svc: &mut Service) {
    let spec = spec_mut(svc);

    if text(&spec.session_affinity).is_empty() {
        spec.session_affinity = Some(AFFINITY_NONE.to_string());
    }
    match text(&spec.session_affinity) {
        AFFINITY_NONE => spec.session_affinity_config = None,
        AFFINITY_CLIENT_IP => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .is_some_and(|c| c.timeout_seconds.is_some());
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig { timeout_seconds: Some(DEFAULT_CLIENT_IP_TIMEOUT_SECONDS) }),
                });
            }
        }
        _ => {}
    }

    if service_type(spec).is_empty() {
        spec.type_ = Some(TYPE_CLUSTER_IP.to_string());
    }

    for port in spec.ports.iter_mut().flatten() {
        if text(&port.protocol).is_empty() {
            port.protocol = Some("TCP".to_string());
        }
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 0,
            Some(IntOrString::String(s)) => s.is_empty(),
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }

    if externally_accessible(spec) && text(&spec.external_traffic_policy).is_empty() {
        spec.external_traffic_policy = Some(POLICY_CLUSTER.to_string());
    }

    let service_type = service_type(spec).to_string();
    if spec.internal_traffic_policy.is_none()
        && matches!(service_type.as_str(), TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
    {
        spec.internal_traffic_policy = Some(POLICY_CLUSTER.to_string());
    }

    if service_type == TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_none() {
        spec.allocate_load_balancer_node_ports = Some(true);
    }

    if service_type == TYPE_LOAD_BALANCER {
        let ingress =
            svc.status.iter_mut().flat_map(|s| s.load_balancer.iter_mut()).flat_map(|lb| lb.ingress.iter_mut());
        for entry in ingress.flatten() {
            if !text(&entry.ip).is_empty() && entry.ip_mode.is_none() {
                entry.ip_mode = Some(IP_MODE_VIP.to_string());
            }
        }
    }
}
