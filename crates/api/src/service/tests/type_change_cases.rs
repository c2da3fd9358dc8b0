//! Updates across Service types: what is allocated, kept, released and dropped.

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};

use super::{cluster_ip_of, commit, create, node_ports_of, update_in};
use crate::service::{allocations_of, Allocated, Claim};

/// The stored object with `patch` applied at the top of `spec` (simple field replacement).
fn edited(stored: &Service, spec_changes: Value) -> Value {
    let mut value = serde_json::to_value(stored).unwrap();
    let spec = value["spec"].as_object_mut().unwrap();
    for (key, field) in spec_changes.as_object().unwrap() {
        if field.is_null() {
            spec.remove(key);
        } else {
            spec.insert(key.clone(), field.clone());
        }
    }
    value
}

fn held_by(svc: &Service) -> Allocated {
    let (ips, node_ports) = allocations_of(svc);
    Allocated { ips: ips.into_iter().collect(), node_ports: node_ports.into_iter().collect() }
}

#[test]
fn cluster_ip_to_node_port_to_load_balancer_to_external_name_and_back() {
    let created = create(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}
    ]}}))
    .unwrap();
    let mut allocated = Allocated::default();
    commit(&mut allocated, &created.plan);
    let cluster_ip = cluster_ip_of(&created.service).to_string();
    assert_eq!(node_ports_of(&created.service), vec![0, 0]);

    // ClusterIP -> NodePort: node ports are allocated, the ClusterIP stays.
    let node_port =
        update_in(&created.service, edited(&created.service, json!({"type": "NodePort"})), &allocated).unwrap();
    commit(&mut allocated, &node_port.plan);
    assert_eq!(cluster_ip_of(&node_port.service), cluster_ip);
    let ports = node_ports_of(&node_port.service);
    assert!(ports.iter().all(|p| (30086..=32767).contains(p)));
    assert!(node_port.plan.claim_ips.is_empty() && node_port.plan.release_node_ports.is_empty());
    assert_eq!(node_port.plan.claim_node_ports.len(), 2);
    let spec = node_port.service.spec.as_ref().unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));

    // NodePort -> LoadBalancer with Local policy: node ports kept (even when the manifest
    // omits them), a health-check node port is added.
    let lb = update_in(
        &node_port.service,
        edited(
            &node_port.service,
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [
                {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}),
        ),
        &allocated,
    )
    .unwrap();
    commit(&mut allocated, &lb.plan);
    assert_eq!(node_ports_of(&lb.service), ports);
    let hc = lb.service.spec.as_ref().unwrap().health_check_node_port.unwrap();
    assert_eq!(lb.plan.claim_node_ports, vec![Claim { value: u16::try_from(hc).unwrap(), explicit: false }]);
    assert_eq!(lb.service.spec.as_ref().unwrap().allocate_load_balancer_node_ports, Some(true));

    // Local -> Cluster: the health-check node port is released and dropped.
    let lb_cluster =
        update_in(&lb.service, edited(&lb.service, json!({"externalTrafficPolicy": "Cluster"})), &allocated).unwrap();
    commit(&mut allocated, &lb_cluster.plan);
    assert_eq!(lb_cluster.plan.release_node_ports, vec![u16::try_from(hc).unwrap()]);
    assert_eq!(lb_cluster.service.spec.as_ref().unwrap().health_check_node_port, None);

    // LoadBalancer -> ExternalName: ClusterIP and node ports released, their fields dropped.
    let external = update_in(
        &lb_cluster.service,
        edited(&lb_cluster.service, json!({"type": "ExternalName", "externalName": "web.example.com"})),
        &allocated,
    )
    .unwrap();
    commit(&mut allocated, &external.plan);
    assert_eq!(external.plan.release_ips, vec![cluster_ip.parse::<std::net::Ipv4Addr>().unwrap()]);
    let mut released: Vec<i32> = external.plan.release_node_ports.iter().map(|p| i32::from(*p)).collect();
    released.sort();
    let mut expected = ports.clone();
    expected.sort();
    assert_eq!(released, expected);
    assert_eq!(allocated, Allocated::default());
    let spec = external.service.spec.as_ref().unwrap();
    assert_eq!(
        (&spec.cluster_ip, &spec.cluster_ips, &spec.ip_families, &spec.ip_family_policy),
        (&None, &None, &None, &None)
    );
    assert_eq!(node_ports_of(&external.service), vec![0, 0]);
    assert_eq!(spec.external_traffic_policy, None);
    assert_eq!(spec.allocate_load_balancer_node_ports, None);

    // ExternalName -> ClusterIP: a fresh ClusterIP.
    let back = update_in(
        &external.service,
        edited(&external.service, json!({"type": "ClusterIP", "externalName": null})),
        &allocated,
    )
    .unwrap();
    commit(&mut allocated, &back.plan);
    assert_eq!(back.plan.claim_ips.len(), 1);
    assert!(!cluster_ip_of(&back.service).is_empty());
    assert_eq!(allocated, held_by(&back.service));
}

#[test]
fn node_port_to_cluster_ip_releases_node_ports() {
    let created = create(json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "selector": {"app": "web"},
                                "ports": [{"port": 80, "nodePort": 30080}]}}))
    .unwrap();
    let mut allocated = held_by(&created.service);
    let updated =
        update_in(&created.service, edited(&created.service, json!({"type": "ClusterIP"})), &allocated).unwrap();
    commit(&mut allocated, &updated.plan);
    assert_eq!(updated.plan.release_node_ports, vec![30080]);
    assert_eq!(node_ports_of(&updated.service), vec![0]);
    assert_eq!(updated.service.spec.as_ref().unwrap().external_traffic_policy, None);

    // Changing a node port while leaving NodePort is refused: it is not silently dropped.
    let err = update_in(
        &created.service,
        edited(&created.service, json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30090}]})),
        &held_by(&created.service),
    )
    .unwrap_err();
    assert_eq!(
        super::causes(&err),
        vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
}

#[test]
fn reapplying_a_manifest_keeps_allocations_and_claims_nothing() {
    let manifest = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "admin", "port": 9090}]}});
    let created = create(manifest.clone()).unwrap();
    let allocated = held_by(&created.service);

    // The same manifest again: requested port held by the Service itself is no conflict,
    // the omitted clusterIP and dynamic node port are carried over.
    let again = update_in(&created.service, manifest, &allocated).unwrap();
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    assert_eq!(again.service.spec, created.service.spec);

    // Moving the requested port swaps claims: new one claimed, old one released.
    let moved = update_in(
        &created.service,
        edited(
            &created.service,
            json!({"ports": [{"name": "http", "port": 80, "nodePort": 30081},
                                                   {"name": "admin", "port": 9090}]}),
        ),
        &allocated,
    )
    .unwrap();
    assert_eq!(moved.plan.claim_node_ports, vec![Claim { value: 30081, explicit: true }]);
    assert_eq!(moved.plan.release_node_ports, vec![30080]);
    assert_eq!(node_ports_of(&moved.service)[1], node_ports_of(&created.service)[1]);
}

#[test]
fn status_is_kept_on_update_and_cleared_when_not_a_load_balancer() {
    let created =
        create(json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}))
        .unwrap();
    // Users cannot set status on create.
    assert_eq!(serde_json::to_value(&created.service.status).unwrap(), json!({"loadBalancer": {}}));

    let mut stored = created.service.clone();
    stored.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}]}})).unwrap();
    let allocated = held_by(&stored);
    let mut request = edited(&stored, json!({"selector": {"app": "other"}}));
    request["status"] = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}});
    let updated = update_in(&stored, request, &allocated).unwrap();
    assert_eq!(updated.service.status, stored.status);

    let to_cluster_ip = update_in(&stored, edited(&stored, json!({"type": "ClusterIP"})), &allocated).unwrap();
    assert_eq!(serde_json::to_value(&to_cluster_ip.service.status).unwrap(), json!({"loadBalancer": {}}));
}

#[test]
fn old_client_switching_to_external_name_without_cluster_ips() {
    let created =
        create(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
            .unwrap();
    let allocated = held_by(&created.service);
    // An old client knows only `clusterIP`, sends it back unchanged and omits `clusterIPs`.
    let request = edited(
        &created.service,
        json!({"type": "ExternalName", "externalName": "web.example.com", "clusterIPs": null,
               "ipFamilies": null, "ipFamilyPolicy": null}),
    );
    let external = update_in(&created.service, request, &allocated).unwrap();
    let spec = external.service.spec.as_ref().unwrap();
    assert_eq!((&spec.cluster_ip, &spec.cluster_ips), (&None, &None));
    assert_eq!(external.plan.release_ips, allocations_of(&created.service).0);
}
