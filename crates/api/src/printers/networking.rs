//! Services, Endpoints, EndpointSlices, Ingresses and IngressClasses: the objects of
//! Service networking, printed as `kubectl get svc,ep,endpointslices,ing,ingressclass` shows them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{Column, AGE, NAME};
use super::format::{age, array, integer, join_host_port, list_with_more, load_balancer_ingress, name, text};
use super::{KindPrinter, TableRow};
use skiff_core::labels::format_labels;

/// How many addresses, ports or hosts a cell lists before `+ N more...`.
const LIST_MAX: usize = 3;

pub(super) const SERVICE: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Type", "type determines how the Service is exposed."),
        Column::string("Cluster-IP", "clusterIP is the IP address of the service and is usually assigned randomly."),
        Column::string(
            "External-IP",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        ),
        Column::string("Port(s)", "The list of ports that are exposed by this service."),
        AGE,
        Column::string(
            "Selector",
            "Route service traffic to pods with label keys and values matching this selector.",
        )
        .wide(),
    ],
    print: print_service,
};

fn print_service(service: &Value, now: DateTime<Utc>) -> TableRow {
    let cluster_ip = match array(service, "/spec/clusterIPs").first().and_then(Value::as_str) {
        Some(ip) => ip,
        None => match text(service, "/spec/clusterIP") {
            "" => "<none>",
            ip => ip,
        },
    };
    let ports = service_ports(service);
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| format_labels(m.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))))
        .unwrap_or_else(|| "<none>".to_string());
    TableRow::new(vec![
        json!(name(service)),
        json!(text(service, "/spec/type")),
        json!(cluster_ip),
        json!(service_external_ip(service)),
        json!(if ports.is_empty() { "<none>".to_string() } else { ports }),
        json!(age(service, now)),
        json!(selector),
    ])
}

/// EXTERNAL-IP: external IPs for ClusterIP/NodePort, load-balancer addresses (then external
/// IPs) or `<pending>` for LoadBalancer, the DNS name for ExternalName.
fn service_external_ip(service: &Value) -> String {
    let external_ips: Vec<&str> = array(service, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match text(service, "/spec/type") {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = service.pointer("/status/loadBalancer").map(load_balancer_ingress).unwrap_or_default();
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(service, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// PORT(S): `80/TCP`, `80:30080/TCP` when a node port is allocated, joined by `,`.
fn service_ports(service: &Value) -> String {
    let pieces: Vec<String> = array(service, "/spec/ports")
        .iter()
        .map(|port| {
            let (number, protocol) = (integer(port, "/port"), text(port, "/protocol"));
            match integer(port, "/nodePort") {
                node_port if node_port > 0 => format!("{number}:{node_port}/{protocol}"),
                _ => format!("{number}/{protocol}"),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) const ENDPOINTS: KindPrinter = KindPrinter {
    columns: &[NAME, Column::string("Endpoints", "The set of all endpoints is the union of all subsets."), AGE],
    print: print_endpoints,
};

fn print_endpoints(endpoints: &Value, now: DateTime<Utc>) -> TableRow {
    TableRow::new(vec![json!(name(endpoints)), json!(format_endpoints(endpoints)), json!(age(endpoints, now))])
}

/// `ip:port` for every ready address and port, the first three then `+ N more...`;
/// `<none>` without subsets. Not-ready addresses are not listed.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = array(endpoints, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets {
        let addresses = array(subset, "/addresses");
        let ports = array(subset, "/ports");
        if ports.is_empty() {
            // A headless Service may have no ports: list bare IPs.
            count += addresses.len();
            for address in addresses {
                if list.len() == LIST_MAX {
                    more = true;
                    break;
                }
                list.push(text(address, "/ip").to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == LIST_MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(text(address, "/ip"), integer(port, "/port")));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - LIST_MAX)
    } else {
        joined
    }
}

pub(super) const ENDPOINT_SLICE: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
        Column::string("Ports", "ports specifies the list of network ports exposed by each endpoint in this slice."),
        Column::string("Endpoints", "endpoints is a list of unique endpoints in this slice."),
        AGE,
    ],
    print: print_endpoint_slice,
};

fn print_endpoint_slice(slice: &Value, now: DateTime<Utc>) -> TableRow {
    // PORTS: the number, else the name, else `*` (all ports).
    let ports: Vec<String> = array(slice, "/ports")
        .iter()
        .map(|port| match port.get("port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => port.get("name").and_then(Value::as_str).unwrap_or("*").to_string(),
        })
        .collect();
    let addresses: Vec<String> = array(slice, "/endpoints")
        .iter()
        .flat_map(|endpoint| array(endpoint, "/addresses").iter().filter_map(Value::as_str).map(str::to_string))
        .collect();
    TableRow::new(vec![
        json!(name(slice)),
        json!(text(slice, "/addressType")),
        json!(first_few(&ports)),
        json!(first_few(&addresses)),
        json!(age(slice, now)),
    ])
}

/// The first three entries, then `+ N more...`; `<unset>` when empty.
fn first_few(items: &[String]) -> String {
    let shown = &items[..items.len().min(LIST_MAX)];
    list_with_more(shown, items.len() > LIST_MAX, items.len(), LIST_MAX)
}

pub(super) const INGRESS: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string(
            "Class",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        Column::string("Hosts", "Hosts that incoming requests are matched against before the ingress rule"),
        Column::string("Address", "Address is a list containing ingress points for the load-balancer"),
        Column::string("Ports", "Ports of TLS configurations that open"),
        AGE,
    ],
    print: print_ingress,
};

fn print_ingress(ingress: &Value, now: DateTime<Utc>) -> TableRow {
    let class = ingress.pointer("/spec/ingressClassName").and_then(Value::as_str).unwrap_or("<none>");
    let address = ingress.pointer("/status/loadBalancer").map(load_balancer_ingress).unwrap_or_default();
    let ports = if array(ingress, "/spec/tls").is_empty() { "80" } else { "80, 443" };
    TableRow::new(vec![
        json!(name(ingress)),
        json!(class),
        json!(ingress_hosts(array(ingress, "/spec/rules"))),
        json!(address),
        json!(ports),
        json!(age(ingress, now)),
    ])
}

/// HOSTS: the first three rule hosts, `*` when no rule names one, then `+ N more...`
/// (counting every rule, with or without a host, as upstream does).
fn ingress_hosts(rules: &[Value]) -> String {
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == LIST_MAX {
            more = true;
        }
        let host = text(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - LIST_MAX)
    } else {
        joined
    }
}

pub(super) const INGRESS_CLASS: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Controller", "Controller that is responsible for handling this class"),
        Column::string("Parameters", "A reference to a resource with additional parameters"),
        AGE,
    ],
    print: print_ingress_class,
};

fn print_ingress_class(class: &Value, now: DateTime<Utc>) -> TableRow {
    // PARAMETERS: `Kind.apiGroup/name`, or `Kind/name` without an API group.
    let parameters = match class.pointer("/spec/parameters").filter(|p| p.is_object()) {
        Some(p) => {
            let mut out = text(p, "/kind").to_string();
            if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                out.push('.');
                out.push_str(group);
            }
            format!("{out}/{}", text(p, "/name"))
        }
        None => "<none>".to_string(),
    };
    TableRow::new(vec![
        json!(name(class)),
        json!(text(class, "/spec/controller")),
        json!(parameters),
        json!(age(class, now)),
    ])
}
