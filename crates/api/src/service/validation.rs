//! Service validation with upstream's field paths and messages (`ValidateService` and
//! `ValidateServiceUpdate` in `pkg/apis/core/validation/validation.go`).
//!
//! Validation runs on the fully prepared object: defaulted, and with ClusterIPs and node
//! ports already allocated (upstream allocates before it validates, which is why for example
//! a LoadBalancer with `externalTrafficPolicy: Local` may require `healthCheckNodePort`).
//! Errors come out in upstream's order. Only `metadata.name`/`generateName` of the object
//! metadata are checked here; the rest of `ObjectMeta` is common to every kind.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use super::formats::{
    dns1123_subdomain, is_port_number, label_value, non_special_ip, parse_cidr, parse_ip, qualified_name, service_name,
    INVALID_CIDR_MSG, INVALID_IP_MSG, PORT_RANGE_MSG,
};
use super::spec::{
    cluster_ips, externally_accessible, health_check_node_port, is_headless, list, needs_health_check, ports,
    service_type, spec, text, AFFINITY_CLIENT_IP, AFFINITY_NONE, POLICY_CLUSTER, POLICY_LOCAL, TYPE_CLUSTER_IP,
    TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
};
use super::validation_ips::{validate_cluster_ip_fields, validate_cluster_ips_update, validate_ip_families_update};
use super::validation_ports::{validate_each_port, validate_port_set};
use crate::status::FieldError;

/// Longest ClientIP affinity: one day.
pub const MAX_CLIENT_IP_TIMEOUT_SECONDS: i32 = 86400;

const SUPPORTED_TYPES: [&str; 4] = [TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT];
const SUPPORTED_AFFINITIES: [&str; 2] = [AFFINITY_CLIENT_IP, AFFINITY_NONE];
const SUPPORTED_TRAFFIC_POLICIES: [&str; 2] = [POLICY_CLUSTER, POLICY_LOCAL];
const PREFER_CLOSE: &str = "PreferClose";
const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";
const TOPOLOGY_HINTS_ANNOTATION: &str = "service.kubernetes.io/topology-aware-hints";
const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
const ONLY_LOAD_BALANCER: &str = "may only be used when `type` is 'LoadBalancer'";

/// Everything that must hold for a Service to be stored (create rules).
pub fn validate(svc: &Service) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_name(svc, &mut errs);
    validate_topology_annotations(svc, &mut errs);

    let spec = spec(svc);
    let headless = is_headless(spec);
    if ports(spec).is_empty() && !headless && service_type(spec) != TYPE_EXTERNAL_NAME {
        errs.push(FieldError::required("spec.ports", ""));
    }
    validate_type_specific(spec, headless, &mut errs);
    validate_each_port(spec, &mut errs);
    validate_selector(spec, &mut errs);
    validate_session_affinity(spec, &mut errs);
    errs.extend(validate_cluster_ip_fields(spec));
    validate_external_ips(spec, &mut errs);

    let service_type = service_type(spec);
    if service_type.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !SUPPORTED_TYPES.contains(&service_type) {
        errs.push(FieldError::not_supported("spec.type", service_type, &SUPPORTED_TYPES));
    }

    validate_port_set(spec, &mut errs);
    validate_source_ranges(svc, spec, &mut errs);

    if spec.allocate_load_balancer_node_ports.is_some() && service_type != TYPE_LOAD_BALANCER {
        errs.push(FieldError::forbidden("spec.allocateLoadBalancerNodePorts", ONLY_LOAD_BALANCER));
    }
    if service_type == TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_none() {
        // Upstream's path lacks the `spec.` prefix; kept for identical output.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }

    validate_load_balancer_class(None, spec, &mut errs);
    validate_traffic_policies(spec, &mut errs);
    errs
}

/// Update rules: what may not change, then every create rule on the new object.
/// Identical errors are reported once.
pub fn validate_update(old: &Service, new: &Service) -> Vec<FieldError> {
    let (old_spec, new_spec) = (spec(old), spec(new));
    let mut errs = validate_cluster_ips_update(old_spec, new_spec);
    errs.extend(validate_ip_families_update(old_spec, new_spec));
    validate_load_balancer_class(Some(old_spec), new_spec, &mut errs);
    if needs_health_check(old_spec)
        && needs_health_check(new_spec)
        && health_check_node_port(old_spec) != health_check_node_port(new_spec)
    {
        errs.push(FieldError::forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    errs.extend(validate(new));

    let mut unique: Vec<FieldError> = Vec::with_capacity(errs.len());
    for err in errs {
        if !unique.contains(&err) {
            unique.push(err);
        }
    }
    unique
}

/// Service names are DNS-1035 labels (stricter than most kinds: they must start with a
/// letter, because they become DNS names and environment variable names).
fn validate_name(svc: &Service, errs: &mut Vec<FieldError>) {
    let generate_name = text(&svc.metadata.generate_name);
    if !generate_name.is_empty() {
        for msg in service_name(generate_name, true) {
            errs.push(FieldError::invalid("metadata.generateName", generate_name, msg));
        }
    }
    let name = text(&svc.metadata.name);
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for msg in service_name(name, false) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
}

fn validate_topology_annotations(svc: &Service, errs: &mut Vec<FieldError>) {
    let Some(annotations) = &svc.metadata.annotations else { return };
    if let (Some(hints), Some(mode)) =
        (annotations.get(TOPOLOGY_HINTS_ANNOTATION), annotations.get(TOPOLOGY_MODE_ANNOTATION))
    {
        if hints != mode {
            errs.push(FieldError::invalid(
                format!("metadata.annotations[{TOPOLOGY_MODE_ANNOTATION}]"),
                mode,
                format!("must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified"),
            ));
        }
    }
}

/// Headless is impossible for NodePort/LoadBalancer; ExternalName has no cluster IPs at all
/// and needs a DNS name (a trailing dot, marking it fully qualified, is allowed).
fn validate_type_specific(spec: &ServiceSpec, headless: bool, errs: &mut Vec<FieldError>) {
    match service_type(spec) {
        kind @ (TYPE_LOAD_BALANCER | TYPE_NODE_PORT) if headless => {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                &cluster_ips(spec)[0],
                format!("may not be set to 'None' for {kind} services"),
            ));
        }
        TYPE_EXTERNAL_NAME => {
            if !cluster_ips(spec).is_empty() {
                errs.push(FieldError::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            if !list(&spec.ip_families).is_empty() {
                errs.push(FieldError::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
            }
            let cname = text(&spec.external_name);
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                for msg in dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid("spec.externalName", cname, msg));
                }
            }
        }
        _ => {}
    }
}

/// Selector keys and values follow the label rules; errors point at `spec.selector` itself.
fn validate_selector(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    for (key, value) in spec.selector.iter().flatten() {
        for msg in qualified_name(key) {
            errs.push(FieldError::invalid("spec.selector", key, msg));
        }
        for msg in label_value(value) {
            errs.push(FieldError::invalid("spec.selector", value, msg));
        }
    }
}

fn validate_session_affinity(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let affinity = text(&spec.session_affinity);
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !SUPPORTED_AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported("spec.sessionAffinity", affinity, &SUPPORTED_AFFINITIES));
    }

    let path = "spec.sessionAffinityConfig";
    if affinity == AFFINITY_CLIENT_IP {
        let why = "when session affinity type is ClientIP";
        let Some(config) = &spec.session_affinity_config else {
            errs.push(FieldError::required(path, why));
            return;
        };
        let Some(client_ip) = &config.client_ip else {
            errs.push(FieldError::required(format!("{path}.clientIP"), why));
            return;
        };
        let Some(timeout) = client_ip.timeout_seconds else {
            errs.push(FieldError::required(format!("{path}.clientIP.timeoutSeconds"), why));
            return;
        };
        if timeout <= 0 || timeout > MAX_CLIENT_IP_TIMEOUT_SECONDS {
            errs.push(FieldError::invalid(
                format!("{path}.clientIP.timeoutSeconds"),
                timeout,
                format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT_SECONDS}"),
            ));
        }
    } else if affinity == AFFINITY_NONE && spec.session_affinity_config.is_some() {
        errs.push(FieldError::forbidden(path, "must not be set when session affinity is None"));
    }
}

fn validate_external_ips(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    for (i, value) in list(&spec.external_ips).iter().enumerate() {
        let path = format!("spec.externalIPs[{i}]");
        match parse_ip(value) {
            None => errs.push(FieldError::invalid(path, value, INVALID_IP_MSG)),
            Some(ip) => {
                for msg in non_special_ip(value, ip) {
                    errs.push(FieldError::invalid(path.clone(), value, msg));
                }
            }
        }
    }
}

/// `loadBalancerSourceRanges` (or its older annotation) only for LoadBalancer, and only CIDRs.
/// Values may be space-padded for historical reasons.
fn validate_source_ranges(svc: &Service, spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let is_lb = service_type(spec) == TYPE_LOAD_BALANCER;
    let ranges = list(&spec.load_balancer_source_ranges);
    if !ranges.is_empty() {
        // Upstream's capitalised path, kept for identical output.
        let path = "spec.LoadBalancerSourceRanges";
        if !is_lb {
            errs.push(FieldError::forbidden(path, ONLY_LOAD_BALANCER));
        }
        for (i, value) in ranges.iter().enumerate() {
            let value = value.trim();
            if parse_cidr(value).is_none() {
                errs.push(FieldError::invalid(format!("{path}[{i}]"), value, INVALID_CIDR_MSG));
            }
        }
        return;
    }
    let Some(annotation) = svc.metadata.annotations.as_ref().and_then(|a| a.get(SOURCE_RANGES_ANNOTATION)) else {
        return;
    };
    let path = format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]");
    if !is_lb {
        errs.push(FieldError::forbidden(path.clone(), ONLY_LOAD_BALANCER));
    }
    let annotation = annotation.trim();
    if !annotation.is_empty() {
        for value in annotation.split(',').map(str::trim) {
            if parse_cidr(value).is_none() {
                errs.push(FieldError::invalid(path.clone(), value, INVALID_CIDR_MSG));
            }
        }
    }
}

/// `loadBalancerClass` only for LoadBalancer, a qualified name, and fixed once set while
/// the Service stays a LoadBalancer.
fn validate_load_balancer_class(old: Option<&ServiceSpec>, new: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let path = "spec.loadBalancerClass";
    let is_lb = service_type(new) == TYPE_LOAD_BALANCER;
    if let Some(old) = old {
        if service_type(old) == TYPE_LOAD_BALANCER && is_lb && old.load_balancer_class != new.load_balancer_class {
            let value = new.load_balancer_class.as_deref().unwrap_or("null");
            errs.push(FieldError::invalid(path, value, "may not change once set"));
        }
    }
    match &new.load_balancer_class {
        Some(class) if is_lb => {
            for msg in qualified_name(class) {
                errs.push(FieldError::invalid(path, class, msg));
            }
        }
        Some(_) => errs.push(FieldError::forbidden(path, ONLY_LOAD_BALANCER)),
        None => {}
    }
}

/// externalTrafficPolicy (only for externally reachable Services), healthCheckNodePort (only
/// for LoadBalancer + Local), internalTrafficPolicy and trafficDistribution.
fn validate_traffic_policies(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let etp = text(&spec.external_traffic_policy);
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !SUPPORTED_TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported("spec.externalTrafficPolicy", etp, &SUPPORTED_TRAFFIC_POLICIES));
    }

    let hcnp = health_check_node_port(spec);
    if !needs_health_check(spec) {
        if hcnp != 0 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                hcnp,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hcnp == 0 {
        errs.push(FieldError::required("spec.healthCheckNodePort", ""));
    } else if !is_port_number(i64::from(hcnp)) {
        errs.push(FieldError::invalid("spec.healthCheckNodePort", hcnp, PORT_RANGE_MSG));
    }

    match &spec.internal_traffic_policy {
        None if matches!(service_type(spec), TYPE_NODE_PORT | TYPE_LOAD_BALANCER | TYPE_CLUSTER_IP) => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(itp) if !SUPPORTED_TRAFFIC_POLICIES.contains(&itp.as_str()) => {
            errs.push(FieldError::not_supported("spec.internalTrafficPolicy", itp, &SUPPORTED_TRAFFIC_POLICIES));
        }
        _ => {}
    }

    if let Some(distribution) = &spec.traffic_distribution {
        if distribution != PREFER_CLOSE {
            errs.push(FieldError::not_supported("spec.trafficDistribution", distribution, &[PREFER_CLOSE]));
        }
    }
}
