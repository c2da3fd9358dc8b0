//! Defaulting, checked on the serialized form a client would read back.

use serde_json::json;

use super::svc;
use crate::service::default_service;

fn defaulted(value: serde_json::Value) -> serde_json::Value {
    let mut service = svc(value);
    default_service(&mut service);
    let once = serde_json::to_value(&service).unwrap();
    default_service(&mut service);
    assert_eq!(serde_json::to_value(&service).unwrap(), once, "defaulting must be idempotent");
    once["spec"].clone()
}

#[test]
fn cluster_ip_defaults() {
    let spec = defaulted(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": "http"}]}}),
    );
    assert_eq!(
        spec,
        json!({
            "internalTrafficPolicy": "Cluster",
            "ports": [
                {"port": 80, "protocol": "TCP", "targetPort": 80},
                {"port": 81, "protocol": "TCP", "targetPort": "http"}
            ],
            "sessionAffinity": "None",
            "type": "ClusterIP"
        })
    );
}

#[test]
fn externally_reachable_services_get_an_external_traffic_policy() {
    let node_port = defaulted(json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
    assert_eq!(node_port["externalTrafficPolicy"], "Cluster");
    assert!(node_port.get("allocateLoadBalancerNodePorts").is_none());

    let lb = defaulted(json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}}));
    assert_eq!(lb["externalTrafficPolicy"], "Local");
    assert_eq!(lb["allocateLoadBalancerNodePorts"], true);

    let external_ips = defaulted(json!({"spec": {"externalIPs": ["192.0.2.10"]}}));
    assert_eq!(external_ips["externalTrafficPolicy"], "Cluster");

    let external_name = defaulted(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    assert!(external_name.get("externalTrafficPolicy").is_none());
    assert!(external_name.get("internalTrafficPolicy").is_none());
}

#[test]
fn session_affinity_defaults() {
    let client_ip = defaulted(json!({"spec": {"sessionAffinity": "ClientIP"}}));
    assert_eq!(client_ip["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));

    let kept = defaulted(json!({"spec": {"sessionAffinity": "ClientIP",
                                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}));
    assert_eq!(kept["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 60}}));

    let none = defaulted(json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}));
    assert!(none.get("sessionAffinityConfig").is_none());
}

#[test]
fn load_balancer_ingress_ip_mode() {
    let mut service = svc(json!({"spec": {"type": "LoadBalancer"},
                                 "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example.com"}]}}}));
    default_service(&mut service);
    assert_eq!(
        serde_json::to_value(&service.status).unwrap(),
        json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}, {"hostname": "lb.example.com"}]}})
    );
}
