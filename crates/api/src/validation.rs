//! Validation of `metadata`, the rules every kind shares (upstream's `ValidateObjectMeta`).

use serde_json::Value;
use skiff_core::names;

use crate::registry::ResourceDef;
use crate::status::FieldError;

/// Which name rule a kind's objects obey.
fn name_rule(def: &ResourceDef) -> fn(&str) -> Vec<String> {
    match (def.group, def.kind) {
        // Namespaces and Services become DNS labels (`<svc>.<ns>.svc.cluster.local`).
        ("", "Namespace") => names::is_dns1123_label,
        ("", "Service") => names::is_dns1035_label,
        _ => names::is_dns1123_subdomain,
    }
}

/// Checks name, namespace, labels and annotations of an object about to be stored.
pub fn validate_metadata(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").and_then(Value::as_object);
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else {
        for msg in name_rule(def)(name) {
            errs.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    if def.namespaced {
        let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        }
    }
    if let Some(labels) = meta.and_then(|m| m.get("labels")).and_then(Value::as_object) {
        for (k, v) in labels {
            for msg in names::is_qualified_name(k) {
                errs.push(FieldError::invalid("metadata.labels", k.as_str(), msg));
            }
            let v = v.as_str().unwrap_or("");
            for msg in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid("metadata.labels", v, msg));
            }
        }
    }
    if let Some(annotations) = meta.and_then(|m| m.get("annotations")).and_then(Value::as_object) {
        for k in annotations.keys() {
            for msg in names::is_valid_annotation_key(k) {
                errs.push(FieldError::invalid("metadata.annotations", k.as_str(), msg));
            }
        }
        let pairs = annotations.iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")));
        if names::validate_annotations_size(pairs).is_err() {
            let detail = names::too_long_error(names::TOTAL_ANNOTATION_SIZE_LIMIT_B);
            errs.push(FieldError::new(crate::FieldErrorType::TooLong, "metadata.annotations", None, detail));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn rejects_bad_names_per_kind() {
        let svc = lookup("", "v1", "services").unwrap();
        let errs = validate_metadata(svc, &json!({"metadata": {"name": "1abc", "namespace": "default"}}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "metadata.name");
        let cm = lookup("", "v1", "configmaps").unwrap();
        assert!(validate_metadata(cm, &json!({"metadata": {"name": "a.b-c", "namespace": "x"}})).is_empty());
        assert!(!validate_metadata(cm, &json!({"metadata": {"name": "Upper", "namespace": "x"}})).is_empty());
        let errs =
            validate_metadata(cm, &json!({"metadata": {"name": "ok", "namespace": "x", "labels": {"a b": "c"}}}));
        assert_eq!(errs[0].field, "metadata.labels");
    }
}
