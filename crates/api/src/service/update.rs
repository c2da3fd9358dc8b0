//! What the apiserver does to a Service between decoding and validation, apart from
//! allocation: status handling, keeping `clusterIP`/`clusterIPs` in step, carrying
//! allocated values over on update, and dropping fields a type change made meaningless
//! (upstream `strategy.go` plus `patchAllocatedValues`/`normalizeClusterIPs` of the storage).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};

use super::spec::{
    cluster_ip, cluster_ips, health_check_node_port, ip_families, needs_cluster_ip, needs_health_check,
    needs_node_port, node_port, non_empty, non_zero, ports, service_node_ports, service_type, spec, spec_mut, text,
    TYPE_LOAD_BALANCER,
};

/// The status a Service starts with: `{"loadBalancer": {}}`, exactly what upstream returns.
fn empty_status() -> ServiceStatus {
    ServiceStatus { load_balancer: Some(LoadBalancerStatus::default()), conditions: None }
}

/// On create: users cannot set status, and an old-style request with only `clusterIP` gets
/// `clusterIPs` filled from it.
pub fn prepare_create(svc: &mut Service) {
    svc.status = Some(empty_status());
    reconcile_with_stored(spec_mut(svc), None);
}

/// On update, before allocation and validation:
/// - status is kept from the stored object (it has its own subresource);
/// - values the server allocated and the client left out (a re-applied manifest without
///   `clusterIP` or `nodePort`s) are carried over, so re-applying is idempotent;
/// - `clusterIP` and `clusterIPs` are brought in step;
/// - on a type change, fields the new type cannot have are dropped, but only if the user did
///   not change them (a changed value is left for validation to reject): ClusterIPs and IP
///   family fields when becoming ExternalName (they are released), node ports when leaving
///   NodePort/LoadBalancer, `healthCheckNodePort` when leaving LoadBalancer+Local,
///   `allocateLoadBalancerNodePorts` and `loadBalancerClass` when leaving LoadBalancer,
///   `externalTrafficPolicy` when leaving NodePort/LoadBalancer; the load-balancer status
///   is cleared for anything but LoadBalancer.
pub fn prepare_update(old: &Service, new: &mut Service) {
    new.status = old.status.clone();
    let old_spec = spec(old);
    let new_spec = spec_mut(new);
    reconcile_with_stored(new_spec, Some(old_spec));
    drop_type_dependent_fields(new_spec, old_spec);
    if service_type(new_spec) != TYPE_LOAD_BALANCER {
        new.status.get_or_insert_with(empty_status).load_balancer = Some(LoadBalancerStatus::default());
    }
}

/// Brings the allocation-related fields of a request in line with the stored object (None
/// on create): zero values omitted, allocated values carried over, `clusterIPs` in step with
/// `clusterIP`. Upstream does this right before allocating, so allocation calls it too; it
/// is idempotent, and also runs here so the type-change rules see the same fields.
pub(super) fn reconcile_with_stored(new: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    omit_zero_values(new);
    if let Some(old) = old {
        patch_allocated_values(new, old);
    }
    normalize_cluster_ips(new, old);
}

fn patch_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if cluster_ips(new).is_empty() {
            new.cluster_ips = old.cluster_ips.clone();
        }
    }

    if needs_node_port(old) && needs_node_port(new) {
        // Matched by port name: the user may have changed anything else about the port.
        let by_name: BTreeMap<&str, i32> = ports(old).iter().map(|p| (text(&p.name), node_port(p))).collect();
        for port in new.ports.iter_mut().flatten() {
            if node_port(port) == 0 {
                if let Some(&np) = by_name.get(text(&port.name)) {
                    port.node_port = (np != 0).then_some(np);
                }
            }
        }
    }

    if needs_health_check(old) && needs_health_check(new) && health_check_node_port(new) == 0 {
        new.health_check_node_port = old.health_check_node_port;
    }
}

/// Old clients only know `clusterIP`; new ones send both. Infer what was meant.
fn normalize_cluster_ips(new: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    let Some(old) = old else {
        if !cluster_ip(new).is_empty() && cluster_ips(new).is_empty() {
            new.cluster_ips = Some(vec![cluster_ip(new).to_string()]);
        }
        return;
    };

    // An old client patching another field sent no clusterIPs: keep them.
    if !cluster_ips(old).is_empty() && cluster_ips(new).is_empty() && cluster_ip(old) == cluster_ip(new) {
        new.cluster_ips = old.cluster_ips.clone();
    }

    if cluster_ip(old) != cluster_ip(new) {
        let plural_unchanged = cluster_ips(old) == cluster_ips(new);
        if !cluster_ip(old).is_empty() && cluster_ip(new).is_empty() {
            // Clearing the singular field clears the plural one too, unless that was edited.
            if plural_unchanged {
                new.cluster_ips = None;
            }
        } else if plural_unchanged {
            new.cluster_ips = Some(vec![cluster_ip(new).to_string()]);
        }
    }
}

fn drop_type_dependent_fields(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if cluster_ip(old) == cluster_ip(new) && cluster_ips(old) == cluster_ips(new) {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if ip_families(old) == ip_families(new) {
            new.ip_families = None;
        }
        if text(&old.ip_family_policy) == text(&new.ip_family_policy) {
            new.ip_family_policy = None;
        }
    }

    // "Unchanged" here means: no node port that the old object did not already have.
    let added_node_port = service_node_ports(new).iter().any(|np| !service_node_ports(old).contains(np));
    if needs_node_port(old) && !needs_node_port(new) && !added_node_port {
        for port in new.ports.iter_mut().flatten() {
            port.node_port = None;
        }
    }

    if needs_health_check(old) && !needs_health_check(new) && health_check_node_port(old) == health_check_node_port(new)
    {
        new.health_check_node_port = None;
    }

    let leaving_load_balancer = service_type(old) == TYPE_LOAD_BALANCER && service_type(new) != TYPE_LOAD_BALANCER;
    if leaving_load_balancer {
        if new.allocate_load_balancer_node_ports.is_some()
            && new.allocate_load_balancer_node_ports == old.allocate_load_balancer_node_ports
        {
            new.allocate_load_balancer_node_ports = None;
        }
        if old.load_balancer_class == new.load_balancer_class {
            new.load_balancer_class = None;
        }
    }

    // The policy belongs to NodePort/LoadBalancer here, even though a ClusterIP Service with
    // externalIPs also takes one (upstream behaves the same way).
    if needs_node_port(old)
        && !needs_node_port(new)
        && text(&old.external_traffic_policy) == text(&new.external_traffic_policy)
    {
        new.external_traffic_policy = None;
    }
}

/// Go omits zero values when serializing; store `None` rather than `""` or `0` so stored
/// objects look the same as upstream's.
fn omit_zero_values(spec: &mut ServiceSpec) {
    spec.cluster_ip = non_empty(cluster_ip(spec));
    if cluster_ips(spec).is_empty() {
        spec.cluster_ips = None;
    }
    spec.health_check_node_port = non_zero(health_check_node_port(spec));
    for port in spec.ports.iter_mut().flatten() {
        port.node_port = non_zero(node_port(port));
    }
}
