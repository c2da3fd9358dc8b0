//! ClusterIP and NodePort allocation: bands, requested values, conflicts, full ranges.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::{causes, cluster_ip_of, create, create_in, node_ports_of, seeded, svc};
use crate::service::{admit_create, allocations_of, ip_key, node_port_key, Allocated, Claim, Ipv4Cidr, ServiceConfig};

fn service(spec: Value) -> Value {
    json!({"metadata": {"name": "web"}, "spec": spec})
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn small_cluster(cidr: &str, node_ports: std::ops::RangeInclusive<u16>) -> ServiceConfig {
    ServiceConfig::new(cidr.parse::<Ipv4Cidr>().unwrap(), node_ports).unwrap()
}

#[test]
fn dynamic_cluster_ips_come_from_the_upper_band() {
    let cfg = ServiceConfig::default();
    for seed in 0..200 {
        let admitted = admit_create(
            &svc(service(json!({"ports": [{"port": 80}]}))),
            &Allocated::default(),
            &cfg,
            &mut seeded(seed),
        )
        .unwrap();
        let got = ip(cluster_ip_of(&admitted.service));
        // /16: the static band is the first 256 usable addresses, 10.96.0.1-10.96.1.0.
        assert!(got > ip("10.96.1.0") && got < ip("10.96.255.255"), "seed {seed} picked {got}");
        assert_eq!(admitted.plan.claim_ips, vec![Claim { value: got, explicit: false }]);
        let spec = admitted.service.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ips.as_deref(), Some(&[got.to_string()][..]));
        assert_eq!(spec.ip_families.as_deref(), Some(&["IPv4".to_string()][..]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    }
}

#[test]
fn full_upper_band_falls_back_to_the_static_band() {
    // /27: 30 usable addresses; static band .1-.16, dynamic band .17-.30.
    let cfg = small_cluster("10.0.0.0/27", 30000..=32767);
    let mut allocated = Allocated::default();
    allocated.ips.extend((17..=30).map(|last| Ipv4Addr::new(10, 0, 0, last)));
    let admitted = create_in(service(json!({"ports": [{"port": 80}]})), &allocated, &cfg).unwrap();
    let got = ip(cluster_ip_of(&admitted.service));
    assert!(got >= ip("10.0.0.1") && got <= ip("10.0.0.16"), "picked {got}");

    allocated.ips.extend((1..=16).map(|last| Ipv4Addr::new(10, 0, 0, last)));
    let err = create_in(service(json!({"ports": [{"port": 80}]})), &allocated, &cfg).unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(causes(&err), vec!["Internal error occurred: failed to allocate a serviceIP: range is full"]);
}

#[test]
fn requested_cluster_ip_is_honoured_or_refused() {
    let admitted = create(service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}))).unwrap();
    assert_eq!(cluster_ip_of(&admitted.service), "10.96.0.10");
    assert_eq!(admitted.plan.claim_ips, vec![Claim { value: ip("10.96.0.10"), explicit: true }]);

    let mut allocated = Allocated::default();
    allocated.ips.insert(ip("10.96.0.10"));
    let err = create_in(
        service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})),
        &allocated,
        &ServiceConfig::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(
        err.message(),
        "Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP \
         10.96.0.10: provided IP is already allocated"
    );

    for outside in ["10.97.0.1", "10.96.0.0", "10.96.255.255"] {
        let err = create(service(json!({"clusterIP": outside, "ports": [{"port": 80}]}))).unwrap_err();
        assert_eq!(
            causes(&err),
            vec![format!(
                "spec.clusterIPs: Invalid value: []string{{\"{outside}\"}}: failed to allocate IP {outside}: the \
                 provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.96.0.0/16"
            )]
        );
    }
}

#[test]
fn headless_services_get_no_cluster_ip() {
    let with_selector = create(service(json!({"clusterIP": "None", "selector": {"app": "db"}}))).unwrap();
    assert!(with_selector.plan.is_empty());
    let spec = with_selector.service.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ips.as_deref(), Some(&["None".to_string()][..]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.ip_families.as_deref(), Some(&["IPv4".to_string()][..]));

    // Without selector its endpoints are hand-written and may be of either family.
    let selectorless = create(service(json!({"clusterIP": "None"}))).unwrap();
    let spec = selectorless.service.spec.as_ref().unwrap();
    assert_eq!(spec.ip_family_policy.as_deref(), Some("RequireDualStack"));
    assert_eq!(spec.ip_families.as_deref(), Some(&["IPv4".to_string(), "IPv6".to_string()][..]));
}

#[test]
fn node_ports_are_picked_above_the_static_band_or_honoured() {
    let admitted = create(service(json!({"type": "NodePort", "ports": [
        {"name": "http", "port": 80},
        {"name": "https", "port": 443, "nodePort": 30443}
    ]})))
    .unwrap();
    let ports = node_ports_of(&admitted.service);
    // 30000-32767: the static band is the first 86 ports, 30000-30085.
    assert!((30086..=32767).contains(&ports[0]), "picked {}", ports[0]);
    assert_eq!(ports[1], 30443);
    let dynamic = u16::try_from(ports[0]).unwrap();
    assert_eq!(
        admitted.plan.claim_node_ports,
        vec![Claim { value: dynamic, explicit: false }, Claim { value: 30443, explicit: true }]
    );
    assert_eq!(admitted.plan.claim_ips.len(), 1);
}

#[test]
fn node_port_conflicts_and_range() {
    let mut allocated = Allocated::default();
    allocated.node_ports.insert(30080);
    let cfg = ServiceConfig::default();
    let np = |port: i64| service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}));

    let err = create_in(np(30080), &allocated, &cfg).unwrap_err();
    assert_eq!(causes(&err), vec!["spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"]);

    let err = create_in(np(8888), &allocated, &cfg).unwrap_err();
    assert_eq!(
        err.message(),
        "Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 8888: provided port is not in the valid \
         range. The range of valid ports is 30000-32767"
    );

    // A port number taken by another Service is taken whatever the protocol.
    let udp = service(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "UDP", "nodePort": 30080}]}));
    assert!(create_in(udp, &allocated, &cfg).is_err());

    let tiny = small_cluster("10.96.0.0/16", 30000..=30001);
    let mut full = Allocated::default();
    full.node_ports.extend([30000, 30001]);
    let err = create_in(service(json!({"type": "NodePort", "ports": [{"port": 80}]})), &full, &tiny).unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(causes(&err), vec!["Internal error occurred: failed to allocate a nodePort: range is full"]);
}

#[test]
fn tcp_and_udp_of_one_port_share_a_node_port() {
    let dynamic = create(service(json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
    ]})))
    .unwrap();
    let ports = node_ports_of(&dynamic.service);
    assert_eq!(ports[0], ports[1]);
    assert_eq!(dynamic.plan.claim_node_ports.len(), 1);

    let explicit = create(service(json!({"type": "NodePort", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}
    ]})))
    .unwrap();
    assert_eq!(node_ports_of(&explicit.service), vec![30053, 30053]);
    assert_eq!(explicit.plan.claim_node_ports, vec![Claim { value: 30053, explicit: true }]);

    // Only ports with the same port number share; others conflict, even over another protocol.
    let err = create(service(json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30080},
        {"name": "b", "port": 81, "protocol": "UDP", "nodePort": 30080}
    ]})))
    .unwrap_err();
    assert_eq!(causes(&err), vec!["spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated"]);
}

#[test]
fn load_balancer_local_gets_a_health_check_node_port() {
    let admitted =
        create(service(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]})))
            .unwrap();
    let spec = admitted.service.spec.as_ref().unwrap();
    let hc = spec.health_check_node_port.unwrap();
    let np = node_ports_of(&admitted.service)[0];
    assert!((30086..=32767).contains(&hc) && hc != np);
    assert_eq!(admitted.plan.claim_node_ports.len(), 2);
    assert_eq!(allocations_of(&admitted.service).1.len(), 2);

    let mut allocated = Allocated::default();
    allocated.node_ports.insert(30100);
    let err = create_in(
        service(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30100,
                       "ports": [{"port": 80}]})),
        &allocated,
        &ServiceConfig::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(
        causes(&err),
        vec![
            "Internal error occurred: failed to allocate requested HealthCheck NodePort 30100: provided port is \
              already allocated"
        ]
    );

    let cluster_policy = create(service(json!({"type": "LoadBalancer", "ports": [{"port": 80}]}))).unwrap();
    assert_eq!(cluster_policy.service.spec.as_ref().unwrap().health_check_node_port, None);
}

#[test]
fn load_balancer_without_node_ports_still_honours_requests() {
    let admitted = create(service(json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [
        {"name": "a", "port": 80},
        {"name": "b", "port": 81, "nodePort": 30081}
    ]})))
    .unwrap();
    assert_eq!(node_ports_of(&admitted.service), vec![0, 30081]);
    assert_eq!(admitted.plan.claim_node_ports, vec![Claim { value: 30081, explicit: true }]);
}

#[test]
fn planning_is_deterministic_for_a_seed() {
    let request = svc(service(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                     "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]})));
    let run =
        |seed| admit_create(&request, &Allocated::default(), &ServiceConfig::default(), &mut seeded(seed)).unwrap();
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).plan, run(10).plan);
}

#[test]
fn claim_keys_and_delete_releases() {
    assert_eq!(ip_key(ip("10.96.0.10")), "/registry/ranges/serviceips/10.96.0.10");
    assert_eq!(node_port_key(30080), "/registry/ranges/servicenodeports/30080");

    let admitted = create(service(json!({"type": "NodePort", "clusterIP": "10.96.7.7", "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "nodePort": 30053},
        {"name": "http", "port": 80, "nodePort": 30080}
    ]})))
    .unwrap();
    assert_eq!(allocations_of(&admitted.service), (vec![ip("10.96.7.7")], vec![30053, 30080]));

    let headless = create(service(json!({"clusterIP": "None", "selector": {"a": "b"}}))).unwrap();
    assert_eq!(allocations_of(&headless.service), (vec![], vec![]));
}

#[test]
fn planning_without_preparation_still_reads_the_singular_cluster_ip() {
    // A caller that only defaults before planning: `clusterIP` alone still means that IP.
    let mut service = svc(service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})));
    crate::service::default_service(&mut service);
    let plan = crate::service::plan_allocation(
        &mut service,
        None,
        &Allocated::default(),
        &ServiceConfig::default(),
        &mut seeded(1),
    )
    .unwrap();
    assert_eq!(plan.claim_ips, vec![Claim { value: ip("10.96.0.10"), explicit: true }]);
    assert_eq!(service.spec.as_ref().unwrap().cluster_ips.as_deref(), Some(&["10.96.0.10".to_string()][..]));
    assert!(crate::service::validate(&service).is_empty());
}
