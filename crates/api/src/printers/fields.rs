//! The values field selectors compare against (`?fieldSelector=spec.nodeName=node-1`).
//!
//! Each kind supports `metadata.name`, usually `metadata.namespace`, and a few fields of its
//! own, exactly the set upstream's field label conversions accept. Asking for another field
//! is an error whose text is upstream's (`field label not supported: spec.foo` for kinds with
//! their own fields, `"spec.foo" is not a known field selector: only "metadata.name",
//! "metadata.namespace"` for the rest); the API returns it as a 400 BadRequest.

use serde_json::Value;

use super::format::{array, text};

/// The value of `field` on `obj`, a `group`/`kind` object.
///
/// `Ok(None)` means the object has no value there; field selectors compare it as "" (so
/// `spec.nodeName=` selects unscheduled Pods). `Err` means the kind does not support the
/// field at all.
pub fn field_value(group: &str, kind: &str, obj: &Value, field: &str) -> Result<Option<String>, String> {
    let supported = match (group, kind) {
        ("", "Pod") => pod_field(obj, field),
        ("", "Event") => event_field(obj, field),
        ("", "Secret") => match field {
            "type" => Some(string_at(obj, "/type")),
            _ => None,
        },
        ("", "Service") => match field {
            "spec.clusterIP" => Some(string_at(obj, "/spec/clusterIP")),
            "spec.type" => Some(string_at(obj, "/spec/type")),
            _ => None,
        },
        ("", "Node") => match field {
            "spec.unschedulable" => Some(Some(bool_at(obj, "/spec/unschedulable"))),
            // Nodes are cluster-scoped and upstream accepts no namespace field for them.
            "metadata.namespace" => return Err(unsupported(field)),
            _ => None,
        },
        ("", "Namespace") => match field {
            "status.phase" => Some(string_at(obj, "/status/phase")),
            "metadata.namespace" => return Err(unsupported(field)),
            _ => None,
        },
        ("apps", "ReplicaSet") | ("", "ReplicationController") => match field {
            "status.replicas" => {
                Some(Some(obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0).to_string()))
            }
            _ => None,
        },
        _ => {
            return match field {
                "metadata.name" | "metadata.namespace" => Ok(metadata_field(obj, field)),
                _ => Err(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )),
            }
        }
    };
    match supported {
        Some(value) => Ok(value),
        None if matches!(field, "metadata.name" | "metadata.namespace") => Ok(metadata_field(obj, field)),
        None => Err(unsupported(field)),
    }
}

fn unsupported(field: &str) -> String {
    format!("field label not supported: {field}")
}

fn metadata_field(obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => string_at(obj, "/metadata/name"),
        _ => string_at(obj, "/metadata/namespace"),
    }
}

fn string_at(obj: &Value, pointer: &str) -> Option<String> {
    obj.pointer(pointer).and_then(Value::as_str).map(str::to_string)
}

/// A boolean field as Go's `strconv.FormatBool` prints it; absent is `false`.
fn bool_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer).and_then(Value::as_bool).unwrap_or(false).to_string()
}

/// Pod fields; `spec.host` is the old name of `spec.nodeName`, still accepted.
/// `None` = not a Pod field; `Some(None)` = a Pod field without a value.
fn pod_field(pod: &Value, field: &str) -> Option<Option<String>> {
    Some(match field {
        "spec.nodeName" | "spec.host" => string_at(pod, "/spec/nodeName"),
        "spec.restartPolicy" => string_at(pod, "/spec/restartPolicy"),
        "spec.schedulerName" => string_at(pod, "/spec/schedulerName"),
        "spec.serviceAccountName" => string_at(pod, "/spec/serviceAccountName"),
        "spec.hostNetwork" => Some(bool_at(pod, "/spec/hostNetwork")),
        "status.phase" => string_at(pod, "/status/phase"),
        // The first of status.podIPs (status.podIP mirrors it).
        "status.podIP" => match array(pod, "/status/podIPs").first() {
            Some(first) => Some(text(first, "/ip").to_string()),
            None => string_at(pod, "/status/podIP"),
        },
        "status.nominatedNodeName" => string_at(pod, "/status/nominatedNodeName"),
        _ => return None,
    })
}

/// Event fields (what `kubectl describe` filters on); `source` falls back to the reporting
/// controller for new-style events.
fn event_field(event: &Value, field: &str) -> Option<Option<String>> {
    Some(match field {
        "involvedObject.kind" => string_at(event, "/involvedObject/kind"),
        "involvedObject.namespace" => string_at(event, "/involvedObject/namespace"),
        "involvedObject.name" => string_at(event, "/involvedObject/name"),
        "involvedObject.uid" => string_at(event, "/involvedObject/uid"),
        "involvedObject.apiVersion" => string_at(event, "/involvedObject/apiVersion"),
        "involvedObject.resourceVersion" => string_at(event, "/involvedObject/resourceVersion"),
        "involvedObject.fieldPath" => string_at(event, "/involvedObject/fieldPath"),
        "reason" => string_at(event, "/reason"),
        "reportingComponent" => string_at(event, "/reportingComponent"),
        "source" => match text(event, "/source/component") {
            "" => string_at(event, "/reportingComponent"),
            component => Some(component.to_string()),
        },
        "type" => string_at(event, "/type"),
        _ => return None,
    })
}
