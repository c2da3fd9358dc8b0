//! Validation through admission (defaulting, allocation, validation), with upstream's exact
//! field paths and messages.

use serde_json::{json, Value};

use super::{causes, create, svc, update_in};
use crate::service::{default_service, validate, Allocated};

const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with \
     an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for \
     validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
     '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for \
     validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and \
     end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
     '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
     regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// A valid ClusterIP Service; cases merge their changes into it (JSON merge patch rules:
/// objects merge, `null` removes, anything else replaces).
fn base() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    })
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

fn with(patch: Value) -> Value {
    let mut service = base();
    merge(&mut service, patch);
    service
}

/// (case, change to the base Service, expected causes; empty = accepted)
fn create_cases() -> Vec<(&'static str, Value, Vec<String>)> {
    let s = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("valid base", json!({}), vec![]),
        (
            "two unnamed ports",
            json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
            s(&["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
        ),
        (
            "duplicate port names",
            json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 8080}]}}),
            s(&["spec.ports[1].name: Duplicate value: \"http\""]),
        ),
        (
            "port name not a DNS label",
            json!({"spec": {"ports": [{"name": "Http", "port": 80}]}}),
            vec![format!("spec.ports[0].name: Invalid value: \"Http\": {DNS1123_LABEL_MSG}")],
        ),
        (
            "unsupported protocol",
            json!({"spec": {"ports": [{"port": 80, "protocol": "HTTP"}]}}),
            s(&["spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""]),
        ),
        (
            "port 0 (targetPort defaults to it)",
            json!({"spec": {"ports": [{"port": 0}]}}),
            vec![
                format!("spec.ports[0].port: Invalid value: 0: {PORT_RANGE}"),
                format!("spec.ports[0].targetPort: Invalid value: 0: {PORT_RANGE}"),
            ],
        ),
        (
            "port 70000",
            json!({"spec": {"ports": [{"port": 70000, "targetPort": 8080}]}}),
            vec![format!("spec.ports[0].port: Invalid value: 70000: {PORT_RANGE}")],
        ),
        (
            "named targetPort with double hyphen",
            json!({"spec": {"ports": [{"port": 80, "targetPort": "my--port"}]}}),
            s(&["spec.ports[0].targetPort: Invalid value: \"my--port\": must not contain consecutive hyphens"]),
        ),
        (
            "named targetPort too long and without letters",
            json!({"spec": {"ports": [{"port": 80, "targetPort": "1234567890123456"}]}}),
            s(&[
                "spec.ports[0].targetPort: Invalid value: \"1234567890123456\": must be no more than 15 characters",
                "spec.ports[0].targetPort: Invalid value: \"1234567890123456\": must contain at least one letter (a-z)",
            ]),
        ),
        (
            "same protocol and port twice",
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "targetPort": 81}]}}),
            s(&["spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", \
                 AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, \
                 NodePort:0}"]),
        ),
        (
            "same port number over TCP and UDP",
            json!({"spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}}),
            vec![],
        ),
        (
            "nodePort on a ClusterIP Service",
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
            s(&["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
        ),
        (
            "headless NodePort",
            json!({"spec": {"type": "NodePort", "clusterIP": "None"}}),
            s(&["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]),
        ),
        (
            "headless LoadBalancer",
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "None"}}),
            s(&["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"]),
        ),
        ("headless without ports", json!({"spec": {"clusterIP": "None", "ports": null}}), vec![]),
        ("no ports", json!({"spec": {"ports": null}}), s(&["spec.ports: Required value"])),
        (
            "ExternalName with a clusterIP",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.0.5"}}),
            s(&["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
        ),
        (
            "ExternalName without externalName",
            json!({"spec": {"type": "ExternalName"}}),
            s(&["spec.externalName: Required value"]),
        ),
        (
            "ExternalName not a DNS name",
            json!({"spec": {"type": "ExternalName", "externalName": "my_db.example.com"}}),
            vec![format!("spec.externalName: Invalid value: \"my_db.example.com\": {SUBDOMAIN_MSG}")],
        ),
        (
            "ExternalName fully qualified with a trailing dot",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com."}}),
            vec![],
        ),
        (
            "name with capitals",
            json!({"metadata": {"name": "My-Svc"}}),
            vec![format!("metadata.name: Invalid value: \"My-Svc\": {DNS1035_MSG}")],
        ),
        (
            "name starting with a digit (fine for most kinds, not for Services)",
            json!({"metadata": {"name": "1web"}}),
            vec![format!("metadata.name: Invalid value: \"1web\": {DNS1035_MSG}")],
        ),
        (
            "no name",
            json!({"metadata": {"name": null, "generateName": "Web-"}}),
            vec![
                format!("metadata.generateName: Invalid value: \"Web-\": {DNS1035_MSG}"),
                "metadata.name: Required value: name or generateName is required".to_string(),
            ],
        ),
        (
            "selector key invalid",
            json!({"spec": {"selector": {"app!": "web"}}}),
            vec![format!("spec.selector: Invalid value: \"app!\": {NAME_PART_MSG}")],
        ),
        (
            "selector value invalid",
            json!({"spec": {"selector": {"app": "-web"}}}),
            vec![format!("spec.selector: Invalid value: \"-web\": {LABEL_VALUE_MSG}")],
        ),
        (
            "ClientIP affinity timeout 0",
            json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}}),
            s(&["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]),
        ),
        (
            "ClientIP affinity timeout 86401",
            json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}}),
            s(&["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"]),
        ),
        (
            "ClientIP affinity timeout 86400 is the maximum",
            json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}}),
            vec![],
        ),
        (
            "unknown session affinity",
            json!({"spec": {"sessionAffinity": "Sticky"}}),
            s(&["spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""]),
        ),
        (
            "unknown type",
            json!({"spec": {"type": "Foo"}}),
            s(&["spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]),
        ),
        (
            "externalTrafficPolicy on a ClusterIP Service",
            json!({"spec": {"externalTrafficPolicy": "Local"}}),
            s(&["spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"]),
        ),
        (
            "unknown externalTrafficPolicy",
            json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Foo"}}),
            s(&["spec.externalTrafficPolicy: Unsupported value: \"Foo\": supported values: \"Cluster\", \"Local\""]),
        ),
        (
            "healthCheckNodePort without LoadBalancer+Local",
            json!({"spec": {"type": "NodePort", "healthCheckNodePort": 30500}}),
            s(&["spec.healthCheckNodePort: Invalid value: 30500: may only be set when `type` is 'LoadBalancer' and \
                 `externalTrafficPolicy` is 'Local'"]),
        ),
        (
            "unknown internalTrafficPolicy",
            json!({"spec": {"internalTrafficPolicy": "Foo"}}),
            s(&["spec.internalTrafficPolicy: Unsupported value: \"Foo\": supported values: \"Cluster\", \"Local\""]),
        ),
        (
            "unknown trafficDistribution",
            json!({"spec": {"trafficDistribution": "Nearest"}}),
            s(&["spec.trafficDistribution: Unsupported value: \"Nearest\": supported values: \"PreferClose\""]),
        ),
        (
            "loadBalancerSourceRanges on a NodePort Service",
            json!({"spec": {"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
            s(&["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
        ),
        (
            "loadBalancerSourceRanges not a CIDR",
            json!({"spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": [" 10.0.0.0/8", "10.0.0.0/33"]}}),
            s(&["spec.LoadBalancerSourceRanges[1]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. \
                 10.9.8.0/24 or 2001:db8::/64)"]),
        ),
        (
            "source-ranges annotation not a CIDR",
            json!({"metadata": {"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, nope"}},
                   "spec": {"type": "LoadBalancer"}}),
            s(&["metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: \"nope\": \
                 must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]),
        ),
        (
            "allocateLoadBalancerNodePorts on a ClusterIP Service",
            json!({"spec": {"allocateLoadBalancerNodePorts": false}}),
            s(&["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
        ),
        (
            "loadBalancerClass on a NodePort Service",
            json!({"spec": {"type": "NodePort", "loadBalancerClass": "example.com/lb"}}),
            s(&["spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
        ),
        (
            "appProtocol with two slashes",
            json!({"spec": {"ports": [{"port": 80, "appProtocol": "a/b/c"}]}}),
            s(&["spec.ports[0].appProtocol: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric \
                 characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  \
                 or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') \
                 with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
        ),
        (
            "loopback externalIP",
            json!({"spec": {"externalIPs": ["127.0.0.1"]}}),
            s(&["spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]),
        ),
        (
            "externalIP not an IP",
            json!({"spec": {"externalIPs": ["example.com"]}}),
            s(&["spec.externalIPs[0]: Invalid value: \"example.com\": must be a valid IP address, (e.g. 10.9.8.7 or \
                 2001:db8::ffff)"]),
        ),
        (
            "clusterIP and clusterIPs disagree",
            json!({"spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}}),
            s(&["spec.clusterIPs: Invalid value: []string{\"10.96.0.6\"}: first value must match `clusterIP`"]),
        ),
        (
            "clusterIPs without clusterIP",
            json!({"spec": {"clusterIPs": ["10.96.0.6"]}}),
            s(&["spec.clusterIPs: Invalid value: []string{\"10.96.0.6\"}: must be empty when `clusterIP` is not specified"]),
        ),
        (
            "clusterIP not an IP",
            json!({"spec": {"clusterIP": "abc"}}),
            s(&["spec.clusterIPs[0]: Invalid value: \"abc\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]),
        ),
        (
            "None among several clusterIPs",
            json!({"spec": {"clusterIP": "None", "clusterIPs": ["None", "10.96.0.5"]}}),
            s(&["spec.clusterIPs: Invalid value: []string{\"None\", \"10.96.0.5\"}: 'None' must be the first and only value"]),
        ),
        (
            "IPv6 clusterIP on an IPv4 cluster",
            json!({"spec": {"clusterIP": "fd00::10"}}),
            s(&["spec.clusterIPs[0]: Invalid value: []string{\"fd00::10\"}: IPv6 is not configured on this cluster"]),
        ),
        (
            "IPv6 family on an IPv4 cluster",
            json!({"spec": {"ipFamilies": ["IPv6"]}}),
            s(&["spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"]),
        ),
        (
            "unknown IP family",
            json!({"spec": {"ipFamilies": ["IPv5"]}}),
            s(&["spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""]),
        ),
        (
            "dual-stack required on a single-stack cluster",
            json!({"spec": {"ipFamilyPolicy": "RequireDualStack"}}),
            s(&["spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"]),
        ),
        ("dual-stack preferred on a single-stack cluster", json!({"spec": {"ipFamilyPolicy": "PreferDualStack"}}), vec![]),
        (
            "topology annotations disagree",
            json!({"metadata": {"annotations": {
                "service.kubernetes.io/topology-aware-hints": "Auto",
                "service.kubernetes.io/topology-mode": "Disabled"}}}),
            s(&["metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: \"Disabled\": must match \
                 annotations[service.kubernetes.io/topology-aware-hints] when both are specified"]),
        ),
    ]
}

#[test]
fn create_validation_table() {
    let mut failures = Vec::new();
    for (case, patch, expected) in create_cases() {
        let got = match create(with(patch)) {
            Ok(_) => Vec::new(),
            Err(err) => causes(&err),
        };
        if got != expected {
            failures.push(format!("{case}:\n  expected {expected:#?}\n  got      {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn invalid_error_is_a_422_about_the_service() {
    let err = create(with(json!({"spec": {"ports": [{"port": 0, "targetPort": 80}]}}))).unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(
        err.message(),
        "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    );
    assert_eq!(err.to_status()["details"]["kind"], "Service");
}

/// Rules that admission never reaches because allocation or defaulting comes first.
#[test]
fn rules_checked_on_the_object_alone() {
    let mut node_ports = svc(with(json!({"spec": {"type": "NodePort", "ports": [
        {"name": "a", "port": 80, "nodePort": 30080},
        {"name": "b", "port": 81, "nodePort": 30080},
        {"name": "c", "port": 82, "protocol": "UDP", "nodePort": 30080}
    ]}})));
    default_service(&mut node_ports);
    let got: Vec<String> = validate(&node_ports).iter().map(|e| e.full_message()).collect();
    assert_eq!(got, vec!["spec.ports[1].nodePort: Duplicate value: 30080"]);

    let affinity_config_with_none = svc(with(json!({"spec": {
        "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}
    }})));
    let got: Vec<String> = validate(&affinity_config_with_none).iter().map(|e| e.full_message()).collect();
    assert_eq!(got, vec!["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]);

    let mut client_ip_without_config = svc(with(json!({"spec": {"sessionAffinity": "ClientIP"}})));
    default_service(&mut client_ip_without_config);
    client_ip_without_config.spec.as_mut().unwrap().session_affinity_config = None;
    let got: Vec<String> = validate(&client_ip_without_config).iter().map(|e| e.full_message()).collect();
    assert_eq!(got, vec!["spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"]);

    let undefaulted = svc(base());
    let got: Vec<String> = validate(&undefaulted).iter().map(|e| e.full_message()).collect();
    assert_eq!(
        got,
        vec![
            "spec.ports[0].protocol: Required value",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.sessionAffinity: Required value",
            "spec.type: Required value",
        ]
    );
}

/// (case, change to the stored Service, expected causes)
#[test]
fn update_validation_table() {
    let stored = create(with(json!({"spec": {"clusterIP": "10.96.0.5"}}))).unwrap().service;
    let stored_lb = create(with(json!({"spec": {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerClass": "example.com/a"
    }})))
    .unwrap()
    .service;
    let mut allocated = Allocated::default();
    allocated.ips.insert("10.96.0.5".parse().unwrap());

    let as_json = |svc: &k8s_openapi::api::core::v1::Service| serde_json::to_value(svc).unwrap();
    let changed = |stored: &k8s_openapi::api::core::v1::Service, patch: Value| {
        let mut value = as_json(stored);
        merge(&mut value, patch);
        value
    };

    let cases: Vec<(&str, &k8s_openapi::api::core::v1::Service, Value, Vec<&str>)> = vec![
        (
            "clusterIP changed",
            &stored,
            json!({"spec": {"clusterIP": "10.96.0.99"}}),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.99\"}: may not change once set"],
        ),
        (
            "clusterIPs changed alone",
            &stored,
            json!({"spec": {"clusterIPs": ["10.96.0.99"]}}),
            vec!["spec.clusterIPs: Invalid value: []string{\"10.96.0.99\"}: first value must match `clusterIP`"],
        ),
        ("clusterIP left out is kept", &stored, json!({"spec": {"clusterIP": null, "clusterIPs": null}}), vec![]),
        (
            "healthCheckNodePort changed",
            &stored_lb,
            json!({"spec": {"healthCheckNodePort": 32100}}),
            vec!["spec.healthCheckNodePort: Forbidden: field is immutable"],
        ),
        (
            "loadBalancerClass changed",
            &stored_lb,
            json!({"spec": {"loadBalancerClass": "example.com/b"}}),
            vec!["spec.loadBalancerClass: Invalid value: \"example.com/b\": may not change once set"],
        ),
        ("selector changed", &stored, json!({"spec": {"selector": {"app": "other"}}}), vec![]),
    ];

    let mut failures = Vec::new();
    for (case, old, patch, expected) in cases {
        let mut allocated = allocated.clone();
        let (ips, ports) = crate::service::allocations_of(old);
        allocated.ips.extend(ips);
        allocated.node_ports.extend(ports);
        let got = match update_in(old, changed(old, patch), &allocated) {
            Ok(_) => Vec::new(),
            Err(err) => causes(&err),
        };
        if got != expected {
            failures.push(format!("{case}:\n  expected {expected:#?}\n  got      {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
