//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for, and the
//! values field selectors compare against.
//!
//! `kubectl get` sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
//! columns the server chose. [`table`] builds them with upstream's column definitions and
//! cell formats (kubernetes `pkg/printers/internalversion/printers.go`), so `kubectl get svc`
//! shows TYPE, CLUSTER-IP, EXTERNAL-IP and PORT(S) exactly as against a real cluster. As
//! upstream's server does, every row carries the wide columns too (priority 1); kubectl
//! shows them only with `-o wide`. Kinds without a printer get upstream's generic table:
//! Name and Created At.
//!
//! One module per family of kinds: `pod`, `networking` (Services, Endpoints,
//! EndpointSlices, Ingresses), `workloads` (Deployments, ReplicaSets), `cluster` (Nodes,
//! Namespaces, Leases), `config` (Secrets, ConfigMaps, ServiceAccounts), `event` and
//! `generic`. `format` holds the shared cell formats (ages, container lists), and
//! [`fields`] answers field selectors.

mod cluster;
mod columns;
mod config;
mod event;
pub mod fields;
mod format;
mod generic;
mod networking;
mod pod;
mod workloads;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use columns::Column;

pub use fields::field_value;
pub use format::human_duration;

/// One column of a table, as `meta.k8s.io/v1` `TableColumnDefinition` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDefinition {
    pub name: String,
    /// An OpenAPI type: `string`, `integer`, `date`, ...
    pub type_: String,
    /// A format hint; `name` marks the column that holds the object's name.
    pub format: String,
    pub description: String,
    /// 0 for the default view, 1 for columns kubectl only shows with `-o wide`.
    pub priority: i32,
}

/// A condition of a row (upstream defines only `Completed`, for finished Pods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCondition {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: &'static str,
}

/// The cells of one object, in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub cells: Vec<Value>,
    pub conditions: Vec<RowCondition>,
}

impl TableRow {
    fn new(cells: Vec<Value>) -> Self {
        TableRow { cells, conditions: Vec::new() }
    }
}

/// What each row carries besides its cells (the `includeObject` table option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter (empty means the default, `Metadata`). The
    /// error is upstream's validation message for any other value.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            )),
        }
    }
}

/// The printed form of a list of objects: column definitions and one row per object.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub column_definitions: Vec<ColumnDefinition>,
    /// `rows[i]` prints `objects[i]` of the slice given to [`table`].
    pub rows: Vec<TableRow>,
}

impl Table {
    /// The `meta.k8s.io/v1` Table JSON. `objects` must be the slice the table was built from
    /// (row `i` takes its object from `objects[i]`). `metadata` is left empty for the caller
    /// to fill with the list's `resourceVersion` / `continue`; a watch event after the first
    /// sends empty `columnDefinitions` (upstream's `noHeaders`).
    pub fn to_json(&self, objects: &[Value], include: IncludeObject) -> Value {
        let columns: Vec<Value> = self
            .column_definitions
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut out = Map::new();
                out.insert("cells".into(), Value::Array(row.cells.clone()));
                if !row.conditions.is_empty() {
                    let conditions = row
                        .conditions
                        .iter()
                        .map(|c| json!({"type": c.type_, "status": c.status, "reason": c.reason, "message": c.message}))
                        .collect();
                    out.insert("conditions".into(), Value::Array(conditions));
                }
                if let Some(object) = objects.get(i).and_then(|o| included_object(o, include)) {
                    out.insert("object".into(), object);
                }
                Value::Object(out)
            })
            .collect();
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "columnDefinitions": columns,
            "rows": rows,
        })
    }
}

/// A row's `object` for the `includeObject` option.
fn included_object(object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

/// How one kind is printed: its columns and how an object becomes cells.
struct KindPrinter {
    columns: &'static [Column],
    print: fn(&Value, DateTime<Utc>) -> TableRow,
}

/// The printer upstream's server uses for a kind, or the generic Name/Created At one.
fn printer_for(group: &str, kind: &str) -> &'static KindPrinter {
    match (group, kind) {
        ("", "Pod") => &pod::POD,
        ("", "Service") => &networking::SERVICE,
        ("", "Endpoints") => &networking::ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => &networking::ENDPOINT_SLICE,
        ("networking.k8s.io", "Ingress") => &networking::INGRESS,
        ("networking.k8s.io", "IngressClass") => &networking::INGRESS_CLASS,
        ("apps", "Deployment") => &workloads::DEPLOYMENT,
        ("apps", "ReplicaSet") => &workloads::REPLICA_SET,
        ("", "Node") => &cluster::NODE,
        ("", "Namespace") => &cluster::NAMESPACE,
        ("coordination.k8s.io", "Lease") => &cluster::LEASE,
        ("", "Secret") => &config::SECRET,
        ("", "ConfigMap") => &config::CONFIG_MAP,
        ("", "ServiceAccount") => &config::SERVICE_ACCOUNT,
        ("", "Event") => &event::CORE_EVENT,
        ("events.k8s.io", "Event") => &event::EVENTS_EVENT,
        _ => &generic::GENERIC,
    }
}

/// Prints `objects` of one kind the way `kubectl get` shows them (all columns, wide ones
/// included), with ages relative to `now`.
pub fn table(group: &str, kind: &str, objects: &[Value], now: DateTime<Utc>) -> Table {
    let printer = printer_for(group, kind);
    Table {
        column_definitions: printer.columns.iter().map(Column::definition).collect(),
        rows: objects.iter().map(|object| (printer.print)(object, now)).collect(),
    }
}

#[cfg(test)]
mod tests;
