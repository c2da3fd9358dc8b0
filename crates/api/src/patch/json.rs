//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use serde_json::{Map, Value};

use super::{bad_request, describe_type, unprocessable};
use crate::status::ApiError;

/// Upstream's cap on the operations in one JSON patch (`maxJSONPatchOperations`); more is a 413.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON patch to `doc` and returns the patched copy.
///
/// A body that is not a list of well-formed operations is a 400; an operation that cannot be
/// applied (a failing `test`, a missing path, an index out of range) is a 422, as upstream.
///
/// Cosmetic difference from upstream: `remove` and `move` out of an object let the object's
/// last key take the removed key's place (the `json-patch` crate swap-removes), so key order
/// in the answer can change; contents are the same.
pub fn apply_json_patch(doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let operations = decode_operations(patch)?;
    let mut patched = doc.clone();
    // `patch_unsafe` leaves the document half-patched on failure, which is fine: the copy is
    // dropped then. (The undoing variant can panic while undoing, so it is avoided.)
    json_patch::patch_unsafe(&mut patched, &operations).map_err(|error| {
        let op = operations.get(error.operation).map(operation_name).unwrap_or("unknown");
        unprocessable(describe_failure(&error, op))
    })?;
    Ok(patched)
}

fn decode_operations(patch: &[u8]) -> Result<Vec<json_patch::PatchOperation>, ApiError> {
    let body: Value =
        serde_json::from_slice(patch).map_err(|e| bad_request(format!("error decoding JSON patch: {e}")))?;
    let Value::Array(items) = body else {
        return Err(bad_request(format!("a JSON patch must be a list of operations, got {}", describe_type(&body))));
    };
    if items.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::RequestEntityTooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value(item)
                .map_err(|e| bad_request(format!("error decoding JSON patch operation {index}: {e}")))
        })
        .collect()
}

fn operation_name(operation: &json_patch::PatchOperation) -> &'static str {
    match operation {
        json_patch::PatchOperation::Add(_) => "add",
        json_patch::PatchOperation::Remove(_) => "remove",
        json_patch::PatchOperation::Replace(_) => "replace",
        json_patch::PatchOperation::Move(_) => "move",
        json_patch::PatchOperation::Copy(_) => "copy",
        json_patch::PatchOperation::Test(_) => "test",
    }
}

fn describe_failure(error: &json_patch::PatchError, op: &str) -> String {
    let index = error.operation;
    let path = &error.path;
    let reason = match error.kind {
        json_patch::PatchErrorKind::TestFailed => format!("the value at \"{path}\" does not match"),
        json_patch::PatchErrorKind::InvalidFromPointer => "its \"from\" path does not exist".to_string(),
        json_patch::PatchErrorKind::InvalidPointer => format!("the path \"{path}\" does not exist"),
        json_patch::PatchErrorKind::CannotMoveInsideItself => {
            format!("a value cannot be moved into itself (to \"{path}\")")
        }
        _ => error.kind.to_string(),
    };
    format!("JSON patch operation {index} ({op}) failed: {reason}")
}

/// Applies an RFC 7386 JSON merge patch to `doc` and returns the patched copy: objects merge
/// recursively, `null` deletes a key, anything else (lists included) replaces.
///
/// The patch must be a JSON object (400 otherwise): a Kubernetes object is always an object,
/// and a bare value would replace it wholesale (upstream rejects `null` and scalars as an
/// invalid patch). Keys keep their order, new keys go last.
pub fn apply_merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, ApiError> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| bad_request(format!("error decoding merge patch: {e}")))?;
    let Value::Object(patch) = patch else {
        return Err(bad_request(format!("a merge patch must be a JSON object, got {}", describe_type(&patch))));
    };
    let mut patched = doc.clone();
    merge_object(&mut patched, patch);
    Ok(patched)
}

fn merge_object(target: &mut Value, patch: Map<String, Value>) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { return };
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.shift_remove(&key);
            }
            Value::Object(nested) => merge_object(target.entry(key).or_insert(Value::Null), nested),
            other => {
                target.insert(key, other);
            }
        }
    }
}
