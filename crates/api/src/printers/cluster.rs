//! Nodes, Namespaces and Leases.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{Column, AGE, NAME};
use super::format::{age, array, name, text};
use super::{KindPrinter, TableRow};

/// A `node-role.kubernetes.io/<role>` label names a role.
const NODE_ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
/// The older `kubernetes.io/role: <role>` label names one too.
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) const NODE: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Status", "The status of the node"),
        Column::string("Roles", "The roles of the node"),
        AGE,
        Column::string("Version", "Kubelet Version reported by the node."),
        Column::string("Internal-IP", "List of addresses reachable to the node.").wide(),
        Column::string("External-IP", "List of addresses reachable to the node.").wide(),
        Column::string(
            "OS-Image",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        )
        .wide(),
        Column::string(
            "Kernel-Version",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        )
        .wide(),
        Column::string(
            "Container-Runtime",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        )
        .wide(),
    ],
    print: print_node,
};

fn print_node(node: &Value, now: DateTime<Utc>) -> TableRow {
    let unknown_if_empty = |value: &str| if value.is_empty() { "<unknown>".to_string() } else { value.to_string() };
    TableRow::new(vec![
        json!(name(node)),
        json!(node_status(node)),
        json!(node_roles(node)),
        json!(age(node, now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(unknown_if_empty(text(node, "/status/nodeInfo/osImage"))),
        json!(unknown_if_empty(text(node, "/status/nodeInfo/kernelVersion"))),
        json!(unknown_if_empty(text(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ])
}

/// `Ready`, `NotReady` or `Unknown` (no Ready condition), plus `,SchedulingDisabled` when
/// the node is cordoned.
fn node_status(node: &Value) -> String {
    // The last Ready condition wins, as in upstream's condition map.
    let ready = array(node, "/status/conditions").iter().rev().find(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// The roles named by the node's labels, sorted, or `<none>`.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| match key.strip_prefix(NODE_ROLE_LABEL_PREFIX) {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None if key == NODE_ROLE_LABEL => value.as_str().filter(|v| !v.is_empty()),
            None => None,
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

/// The first address of a type, or `<none>`.
fn node_address(node: &Value, kind: &str) -> String {
    array(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == kind)
        .map(|a| text(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

pub(super) const NAMESPACE: KindPrinter = KindPrinter {
    columns: &[NAME, Column::string("Status", "The status of the namespace"), AGE],
    print: |namespace, now| {
        TableRow::new(vec![json!(name(namespace)), json!(text(namespace, "/status/phase")), json!(age(namespace, now))])
    },
};

pub(super) const LEASE: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Holder", "holderIdentity contains the identity of the holder of a current lease."),
        AGE,
    ],
    print: |lease, now| {
        TableRow::new(vec![json!(name(lease)), json!(text(lease, "/spec/holderIdentity")), json!(age(lease, now))])
    },
};
