//! Deployments and ReplicaSets: how many replicas are wanted, up to date, ready, available.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{Column, AGE, CONTAINERS, IMAGES, NAME};
use super::format::{age, array, container_cells, integer, name};
use super::{KindPrinter, TableRow};
use skiff_core::labels::selector_from_api_value;

pub(super) const DEPLOYMENT: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Ready", "Number of the pod with ready state"),
        Column::string(
            "Up-to-date",
            "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
        ),
        Column::string(
            "Available",
            "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::string("Selector", "Label selector for pods.").wide(),
    ],
    print: print_deployment,
};

/// `spec.replicas`, which defaulting sets to 1 when omitted.
fn desired_replicas(object: &Value) -> i64 {
    object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

fn print_deployment(deployment: &Value, now: DateTime<Utc>) -> TableRow {
    let (containers, images) = container_cells(array(deployment, "/spec/template/spec/containers"));
    // Upstream prints the parsed selector's text, or `<invalid>` when it does not convert.
    let selector = selector_from_api_value(deployment.pointer("/spec/selector"))
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "<invalid>".to_string());
    TableRow::new(vec![
        json!(name(deployment)),
        json!(format!("{}/{}", integer(deployment, "/status/readyReplicas"), desired_replicas(deployment))),
        json!(integer(deployment, "/status/updatedReplicas")),
        json!(integer(deployment, "/status/availableReplicas")),
        json!(age(deployment, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ])
}

pub(super) const REPLICA_SET: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::integer("Desired", "Replicas is the number of desired pods."),
        Column::integer("Current", "Replicas is the most recently observed number of non-terminating pods."),
        Column::integer(
            "Ready",
            "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        Column::string("Selector", "Selector is a label query over pods that should match the replica count.").wide(),
    ],
    print: print_replica_set,
};

fn print_replica_set(replica_set: &Value, now: DateTime<Utc>) -> TableRow {
    let (containers, images) = container_cells(array(replica_set, "/spec/template/spec/containers"));
    // Upstream's `FormatLabelSelector`: `<error>` when invalid, `<none>` when empty.
    let selector = match selector_from_api_value(replica_set.pointer("/spec/selector")) {
        Ok(s) if s.requirements().is_empty() => "<none>".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    };
    TableRow::new(vec![
        json!(name(replica_set)),
        json!(desired_replicas(replica_set)),
        json!(integer(replica_set, "/status/replicas")),
        json!(integer(replica_set, "/status/readyReplicas")),
        json!(age(replica_set, now)),
        json!(containers),
        json!(images),
        json!(selector),
    ])
}
