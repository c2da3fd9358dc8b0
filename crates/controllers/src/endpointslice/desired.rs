//! What a Service's EndpointSlices should contain: its pods turned into endpoints,
//! grouped by address type and by the set of ports they offer.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::discovery::v1::EndpointPort;

use super::endpoint::{address_types, endpoint_ports, include_pod, pod_to_endpoint, sorted_ports, AddressType};
use super::endpoint::{EndpointSet, PortKey};
use super::model::{PodView, ServiceView};

/// The endpoints that share one port set.
#[derive(Clone, Debug, Default)]
pub struct DesiredGroup {
    pub ports: Vec<EndpointPort>,
    pub endpoints: EndpointSet,
}

/// Desired endpoints of one Service.
#[derive(Debug, Default)]
pub struct Desired {
    /// Every address type the Service publishes has an entry, possibly without groups
    /// (then the Service gets one empty placeholder slice of that type).
    pub groups: BTreeMap<AddressType, BTreeMap<PortKey, DesiredGroup>>,
    /// Pods left out because their node does not exist (yet): the sync reports these as
    /// an error so that it is retried, as upstream does.
    pub problems: Vec<String>,
}

/// Node name → the node's `topology.kubernetes.io/zone` label, for every known Node.
pub type NodeZones = HashMap<String, Option<String>>;

/// Builds the desired endpoints of `service` from its selected `pods`.
pub fn desired_endpoints(service: &ServiceView, pods: &[&PodView], nodes: &NodeZones) -> Desired {
    let mut desired = Desired::default();
    for address_type in address_types(service) {
        let groups = desired.groups.entry(address_type).or_default();
        for pod in pods {
            if !include_pod(pod, true) {
                continue;
            }
            let ports = endpoint_ports(service, pod);
            let group = groups
                .entry(PortKey::of(&ports))
                .or_insert_with(|| DesiredGroup { ports: sorted_ports(ports), endpoints: EndpointSet::default() });
            let zone = match nodes.get(&pod.node_name) {
                Some(zone) => zone.as_deref(),
                // A pod pointing at a node that does not exist is left out (and retried
                // later), unless the Service publishes every address regardless.
                None if !service.publish_not_ready_addresses => {
                    desired.problems.push(format!(
                        "skipping Pod {} for Service {}/{}: Node {} Not Found",
                        pod.name, service.namespace, service.name, pod.node_name
                    ));
                    continue;
                }
                None => None,
            };
            let endpoint = pod_to_endpoint(pod, zone, service, address_type);
            if !endpoint.addresses.is_empty() {
                group.endpoints.insert(endpoint);
            }
        }
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::testing::{pod, service};

    fn nodes() -> NodeZones {
        [("n1".to_string(), Some("zone-a".to_string())), ("n2".to_string(), None)].into()
    }

    #[test]
    fn groups_pods_by_resolved_ports() {
        let svc = service(serde_json::json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let a = pod("a", "10.244.1.5", true);
        let mut b = pod("b", "10.244.1.6", true);
        b.named_ports[0].port = 9090;
        let c = pod("c", "10.244.1.7", false);
        let desired = desired_endpoints(&svc, &[&a, &b, &c], &nodes());
        let groups = &desired.groups[&AddressType::IPv4];
        assert_eq!(groups.len(), 2);
        let sizes: Vec<usize> = groups.values().map(|g| g.endpoints.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 3);
        assert!(desired.problems.is_empty());
    }

    #[test]
    fn pods_on_missing_nodes_are_skipped_unless_publishing_not_ready() {
        let mut a = pod("a", "10.244.1.5", true);
        a.node_name = "gone".into();
        let svc = service(serde_json::json!({}));
        let desired = desired_endpoints(&svc, &[&a], &nodes());
        assert_eq!(desired.problems.len(), 1, "{:?}", desired.problems);
        assert!(desired.groups[&AddressType::IPv4].values().all(|g| g.endpoints.is_empty()));
        let publish = service(serde_json::json!({"publishNotReadyAddresses": true}));
        let desired = desired_endpoints(&publish, &[&a], &nodes());
        assert!(desired.problems.is_empty());
        assert_eq!(desired.groups[&AddressType::IPv4].values().map(|g| g.endpoints.len()).sum::<usize>(), 1);
    }

    #[test]
    fn no_pods_still_yields_each_address_type() {
        let svc = service(serde_json::json!({}));
        let desired = desired_endpoints(&svc, &[], &nodes());
        assert_eq!(desired.groups.keys().copied().collect::<Vec<_>>(), [AddressType::IPv4]);
        assert!(desired.groups[&AddressType::IPv4].is_empty());
    }
}
