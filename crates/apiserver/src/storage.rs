//! Objects in the store: encoding, decoding and the resourceVersion rule.
//!
//! Stored values are the object's JSON **without** `metadata.resourceVersion`: the
//! resourceVersion is the store revision of the key's last write, filled in on every read,
//! exactly as kube-apiserver does with etcd's `mod_revision`.

use bytes::Bytes;
use serde_json::Value;
use skiff_api::object::metadata_mut;
use skiff_api::ApiError;
use skiff_store::{KeyValue, StoreError};

/// Serializes an object for storage (dropping resourceVersion).
pub fn encode(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Parses a stored object and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, rv: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

/// The resourceVersion of an object, if set and numeric.
pub fn resource_version(obj: &Value) -> Result<Option<i64>, ApiError> {
    match obj.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some(s) => parse_rv(s).map(Some),
    }
}

pub fn parse_rv(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {s:?}")))
}

/// Store failures that are not precondition failures.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, compacted } => {
            ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, .. } => {
            ApiError::Timeout(format!("Too large resource version: {requested}"))
        }
        StoreError::Unavailable(m) => ApiError::ServiceUnavailable(m),
        other => ApiError::Internal(other.to_string()),
    }
}
