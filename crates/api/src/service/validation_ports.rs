//! Rules for `spec.ports` (upstream `validateServicePort` and the duplicate checks of
//! `ValidateService`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::formats::{dns1123_label, is_port_number, port_name, qualified_name, PORT_RANGE_MSG};
use super::spec::{node_port, ports, service_type, text, TYPE_CLUSTER_IP};
use crate::status::{FieldError, RenderedValue};

/// Port protocols a Service may use, sorted as upstream lists them in errors.
pub const SUPPORTED_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// Each port on its own: name (required once there are several, a unique DNS label), port
/// number, protocol, targetPort (number or IANA service name), appProtocol.
pub fn validate_each_port(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let all = ports(spec);
    let require_name = all.len() > 1;
    let mut names = BTreeSet::new();
    for (i, port) in all.iter().enumerate() {
        validate_port(port, &format!("spec.ports[{i}]"), require_name, &mut names, errs);
    }
}

fn validate_port(
    port: &ServicePort,
    path: &str,
    require_name: bool,
    names: &mut BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = text(&port.name);
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        for msg in dns1123_label(name) {
            errs.push(FieldError::invalid(format!("{path}.name"), name, msg));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }

    if !is_port_number(i64::from(port.port)) {
        errs.push(FieldError::invalid(format!("{path}.port"), port.port, PORT_RANGE_MSG));
    }

    let protocol = text(&port.protocol);
    if protocol.is_empty() {
        errs.push(FieldError::required(format!("{path}.protocol"), ""));
    } else if !SUPPORTED_PROTOCOLS.contains(&protocol) {
        errs.push(FieldError::not_supported(format!("{path}.protocol"), protocol, &SUPPORTED_PROTOCOLS));
    }

    // An unset targetPort is Go's zero IntOrString: the number 0.
    match port.target_port.as_ref().unwrap_or(&IntOrString::Int(0)) {
        IntOrString::Int(n) => {
            if !is_port_number(i64::from(*n)) {
                errs.push(FieldError::invalid(format!("{path}.targetPort"), *n, PORT_RANGE_MSG));
            }
        }
        IntOrString::String(s) => {
            for msg in port_name(s) {
                errs.push(FieldError::invalid(format!("{path}.targetPort"), s, msg));
            }
        }
    }

    if let Some(app_protocol) = &port.app_protocol {
        for msg in qualified_name(app_protocol) {
            errs.push(FieldError::invalid(format!("{path}.appProtocol"), app_protocol, msg));
        }
    }
}

/// Rules across ports: no nodePort on a ClusterIP Service, no two ports with the same
/// (protocol, nodePort) and none with the same (protocol, port).
pub fn validate_port_set(spec: &ServiceSpec, errs: &mut Vec<FieldError>) {
    let all = ports(spec);
    if service_type(spec) == TYPE_CLUSTER_IP {
        for (i, port) in all.iter().enumerate() {
            if node_port(port) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    let mut node_ports = BTreeSet::new();
    for (i, port) in all.iter().enumerate() {
        let np = node_port(port);
        if np != 0 && !node_ports.insert((text(&port.protocol), np)) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}].nodePort"), np));
        }
    }

    let mut numbers = BTreeSet::new();
    for (i, port) in all.iter().enumerate() {
        let protocol = text(&port.protocol);
        if !numbers.insert((protocol, port.port)) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}]"), go_port_key(protocol, port.port)));
        }
    }
}

/// Upstream reports a duplicate port by printing its lookup key, a Go `core.ServicePort`
/// holding only protocol and port, with `%#v`. Users see exactly this text.
fn go_port_key(protocol: &str, port: i32) -> RenderedValue {
    RenderedValue::raw(format!(
        "core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{port}, \
         TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
    ))
}
