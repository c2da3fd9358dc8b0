//! Per-kind rules applied on create and update, after metadata handling and before
//! storage: status handling, defaulting and validation (upstream's registry strategies).
//!
//! Service rules are in [`crate::service`]; this module routes to them and holds the
//! smaller rules of the other kinds.

use serde_json::{json, Value};

use crate::object::metadata_mut;
use crate::registry::ResourceDef;
use crate::status::FieldError;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTarget {
    /// The object itself: for kinds with a status subresource, `.status` is not writable here.
    Main,
    /// `/status`: only `.status` (and metadata labels/annotations are kept from the stored object).
    Status,
    /// A Namespace's `/finalize`: only `.spec.finalizers`, the list the namespace controller
    /// empties once the namespace's content is gone.
    Finalize,
    /// A Pod's `/binding`: the handler has already set `spec.nodeName`, the binding's
    /// annotations and the PodScheduled condition on a copy of the stored pod; all of it is kept.
    Binding,
}

/// Prepares a new object: resets status where upstream does, applies defaults.
pub fn prepare_for_create(def: &ResourceDef, obj: &mut Value) {
    match (def.group, def.kind) {
        ("", "Service") | ("apps", "Deployment") | ("apps", "ReplicaSet") | ("networking.k8s.io", "Ingress") => {
            obj["status"] = json!({});
        }
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            if !obj.pointer("/spec/finalizers").is_some_and(Value::is_array) {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        _ => {}
    }
    apply_defaults(def, obj);
}

/// Prepares an update: keeps what this write may not change, applies defaults.
pub fn prepare_for_update(def: &ResourceDef, target: WriteTarget, old: &Value, new: &mut Value) {
    match target {
        WriteTarget::Main if def.has_status() => match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        },
        WriteTarget::Main | WriteTarget::Binding => {}
        WriteTarget::Finalize => {
            let finalizers = new.pointer("/spec/finalizers").cloned();
            let rv = new.pointer("/metadata/resourceVersion").cloned();
            *new = old.clone();
            set_namespace_finalizers(new, finalizers);
            if let Some(rv) = rv {
                metadata_mut(new).insert("resourceVersion".into(), rv);
            }
        }
        WriteTarget::Status => {
            // Everything but status comes from the stored object (upstream's status
            // strategies also ignore metadata changes other than a few kinds' labels).
            let status = new.get("status").cloned();
            let rv = new.pointer("/metadata/resourceVersion").cloned();
            // Upstream's Deployment status strategy resets only spec and labels: the
            // deployment controller records `deployment.kubernetes.io/revision` in the
            // same status write (without bumping the generation).
            let annotations = (def.group == "apps" && def.kind == "Deployment")
                .then(|| new.pointer("/metadata/annotations").cloned())
                .flatten();
            *new = old.clone();
            if let Some(annotations) = annotations {
                metadata_mut(new).insert("annotations".into(), annotations);
            }
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(rv) = rv {
                metadata_mut(new).insert("resourceVersion".into(), rv);
            }
        }
    }
    if def.kind == "Namespace" && target == WriteTarget::Main {
        // As upstream: a Namespace's finalizers change only through `/finalize`.
        set_namespace_finalizers(new, old.pointer("/spec/finalizers").cloned());
    }
    apply_defaults(def, new);
}

/// Sets (or, with None, removes) a Namespace's `spec.finalizers`.
fn set_namespace_finalizers(ns: &mut Value, finalizers: Option<Value>) {
    match finalizers {
        Some(f) => {
            ensure_object(ns, "spec").insert("finalizers".into(), f);
        }
        None => {
            if let Some(spec) = ns.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
    }
}

/// Defaults every write gets (upstream's `SetDefaults_*` for the fields clients rely on).
pub fn apply_defaults(def: &ResourceDef, obj: &mut Value) {
    match (def.group, def.kind) {
        ("", "Service") => {
            if let Ok(mut svc) = serde_json::from_value::<k8s_openapi::api::core::v1::Service>(obj.clone()) {
                crate::service::default_service(&mut svc);
                if let Ok(v) = serde_json::to_value(&svc) {
                    *obj = v;
                }
            }
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
            default_service_account(obj.pointer_mut("/spec"));
        }
        ("apps", "Deployment") => {
            let spec = ensure_object(obj, "spec");
            spec.entry("replicas").or_insert(json!(1));
            spec.entry("revisionHistoryLimit").or_insert(json!(10));
            spec.entry("progressDeadlineSeconds").or_insert(json!(600));
            let strategy = spec.entry("strategy").or_insert(json!({}));
            if let Some(s) = strategy.as_object_mut() {
                let kind = s.entry("type").or_insert(json!("RollingUpdate")).clone();
                if kind == "RollingUpdate" {
                    let ru = s.entry("rollingUpdate").or_insert(json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        ru.entry("maxUnavailable").or_insert(json!("25%"));
                        ru.entry("maxSurge").or_insert(json!("25%"));
                    }
                }
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        ("apps", "ReplicaSet") => {
            ensure_object(obj, "spec").entry("replicas").or_insert(json!(1));
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        ("", "Secret") if obj.get("type").and_then(Value::as_str).unwrap_or("").is_empty() => {
            obj["type"] = json!("Opaque");
        }
        ("", "Endpoints") => {
            if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
                for subset in subsets {
                    default_protocols(subset.get_mut("ports"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => default_protocols(obj.get_mut("ports")),
        ("", "Namespace") => {
            // Upstream labels every namespace with its own name (for namespaceSelector).
            let name = crate::object::object_name(obj).to_string();
            let meta = metadata_mut(obj);
            let labels = meta.entry("labels").or_insert(json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        _ => {}
    }
}

fn ensure_object<'a>(obj: &'a mut Value, key: &str) -> &'a mut serde_json::Map<String, Value> {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = json!({});
    }
    obj[key].as_object_mut().expect("just made an object")
}

fn default_protocols(ports: Option<&mut Value>) {
    if let Some(ports) = ports.and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert(json!("TCP"));
            }
        }
    }
}

fn default_service_account(spec: Option<&mut Value>) {
    if let Some(spec) = spec.and_then(Value::as_object_mut) {
        let sa = spec.get("serviceAccountName").and_then(Value::as_str).unwrap_or("").to_string();
        let sa = if sa.is_empty() { "default".to_string() } else { sa };
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
    }
}

/// Pod spec defaults (upstream `SetDefaults_PodSpec` / `SetDefaults_Container`).
fn default_pod_spec(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else { return };
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("terminationGracePeriodSeconds").or_insert(json!(30));
    spec.entry("schedulerName").or_insert(json!("default-scheduler"));
    spec.entry("securityContext").or_insert(json!({}));
    spec.entry("enableServiceLinks").or_insert(json!(true));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    c.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
    c.entry("terminationMessagePolicy").or_insert(json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // `:latest` or no tag means "always pull" upstream; a digest or another tag "if not present".
    let last = image.rsplit('/').next().unwrap_or("");
    let policy = if image.contains('@') || (last.contains(':') && !last.ends_with(":latest")) {
        "IfNotPresent"
    } else {
        "Always"
    };
    c.entry("imagePullPolicy").or_insert(json!(policy));
    c.entry("resources").or_insert(json!({}));
    default_protocols(c.get_mut("ports"));
}

/// Kind-specific validation of a new object (metadata rules are checked by the caller).
pub fn validate_create(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (def.group, def.kind) {
        ("apps", "Deployment") | ("apps", "ReplicaSet") => validate_workload(obj, &mut errs),
        ("", "Pod") => validate_containers(obj.get("spec"), "spec", &mut errs),
        _ => {}
    }
    errs
}

/// Kind-specific validation of an update.
pub fn validate_update(def: &ResourceDef, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = validate_create(def, new);
    if let ("apps", "Deployment") | ("apps", "ReplicaSet") = (def.group, def.kind) {
        if old.pointer("/spec/selector") != new.pointer("/spec/selector") {
            errs.push(FieldError::invalid(
                "spec.selector",
                crate::status::RenderedValue::raw(compact(new.pointer("/spec/selector"))),
                "field is immutable",
            ));
        }
    }
    errs
}

fn compact(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "null".into())
}

fn validate_workload(obj: &Value, errs: &mut Vec<FieldError>) {
    let selector = obj.pointer("/spec/selector");
    let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    let match_labels = selector.and_then(|s| s.get("matchLabels")).and_then(Value::as_object);
    let has_expressions =
        selector.and_then(|s| s.get("matchExpressions")).and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if match_labels.is_none_or(|m| m.is_empty()) && !has_expressions {
        errs.push(FieldError::required("spec.selector", ""));
    } else if let Some(ml) = match_labels {
        let matches = ml.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                crate::status::RenderedValue::raw(compact(obj.pointer("/spec/template/metadata/labels"))),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            errs.push(FieldError::invalid("spec.replicas", r, "must be greater than or equal to 0"));
        }
    }
    validate_containers(obj.pointer("/spec/template/spec"), "spec.template.spec", errs);
}

fn validate_containers(spec: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(list) if list.is_empty() => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(list) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in list.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(format!("{path}.containers[{i}].name"), ""));
                } else if !seen.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{path}.containers[{i}].name"), name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RESOURCES;

    fn namespace_def() -> &'static ResourceDef {
        RESOURCES.iter().find(|r| r.kind == "Namespace").expect("namespaces are served")
    }

    fn terminating() -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"a": "b"}, "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}})
    }

    #[test]
    fn finalize_changes_only_spec_finalizers() {
        let old = terminating();
        let mut new = old.clone();
        new["spec"]["finalizers"] = json!([]);
        new["metadata"]["labels"] = json!({"changed": "yes"});
        new["status"] = json!({"phase": "Active"});
        prepare_for_update(namespace_def(), WriteTarget::Finalize, &old, &mut new);
        assert_eq!(new["spec"]["finalizers"], json!([]));
        assert_eq!(new["metadata"]["labels"]["a"], "b");
        assert!(new["metadata"]["labels"].get("changed").is_none());
        assert_eq!(new["status"]["phase"], "Terminating");

        let mut dropped = old.clone();
        dropped["spec"] = json!({});
        prepare_for_update(namespace_def(), WriteTarget::Finalize, &old, &mut dropped);
        assert!(dropped.pointer("/spec/finalizers").is_none());
    }

    #[test]
    fn main_updates_keep_namespace_finalizers() {
        let old = terminating();
        let mut new = old.clone();
        new["spec"] = json!({});
        new["metadata"]["labels"] = json!({"changed": "yes"});
        prepare_for_update(namespace_def(), WriteTarget::Main, &old, &mut new);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(new["metadata"]["labels"]["changed"], "yes");
    }
}
