//! Decoding request bodies into objects and the metadata rules every object obeys
//! (name/generateName, namespace, uid, creationTimestamp, generation, resourceVersion).

use serde_json::{Map, Value};

use crate::registry::ResourceDef;
use crate::status::{ApiError, FieldError};

/// How unknown fields in a request body are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request (kubectl's default since 1.27).
    Strict,
    /// Accept, drop the fields, and warn.
    Warn,
    /// Accept and drop silently.
    Ignore,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<FieldValidation, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other:?}; valid values are Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Parses a request body as JSON or YAML (by content type) into a JSON object.
pub fn parse_body(bytes: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    let media = content_type.unwrap_or("application/json").split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?,
        // kubectl's typed-client commands (`create deployment`, ...) send protobuf.
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(bytes)?,
        "application/json" | "" | "*/*" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other})"
            )))
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "couldn't get version/kind; json parse error: the body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// Checks (and fills in when absent) `apiVersion` and `kind` against the URL's resource.
pub fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let expected_version = def.api_version();
    let map = obj.as_object_mut().ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), Value::String(expected_version.clone()));
        }
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), Value::String(def.kind.to_string()));
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )))
        }
    }
    Ok(())
}

/// Decodes the object through its type, returning the normalized object and the paths of
/// fields the type does not know (for `fieldValidation`).
pub fn normalize(def: &ResourceDef, obj: &Value) -> Result<(Value, Vec<String>), ApiError> {
    let normalized = (def.normalize)(obj).map_err(|e| match &e.missing_field {
        Some(field) => {
            let path = if e.path.is_empty() { field.clone() } else { format!("{}.{field}", e.path) };
            ApiError::Invalid(def.subject(object_name(obj)), vec![FieldError::required(path, "")])
        }
        None => ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {}{}",
            def.kind,
            def.version,
            def.kind,
            if e.path.is_empty() { String::new() } else { format!("{}: ", e.path) },
            e.message
        )),
    })?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &normalized, "", &mut unknown);
    Ok((normalized, unknown))
}

/// The field-validation findings of a request body, as upstream words them
/// (`unknown field "spec.bogus"`, `duplicate field "metadata.name"`).
pub fn field_findings(unknown: &[String], duplicates: &[String]) -> Vec<String> {
    let mut out: Vec<String> = duplicates.iter().map(|f| format!("duplicate field {f:?}")).collect();
    out.extend(unknown.iter().map(|f| format!("unknown field {f:?}")));
    out
}

/// The rejection for findings under `fieldValidation=Strict` on create and update.
pub fn strict_error(findings: &[String]) -> ApiError {
    ApiError::BadRequest(format!("strict decoding error: {}", findings.join(", ")))
}

fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

pub fn object_name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

pub fn object_namespace(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}

/// The `metadata` map of an object, created if absent.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"].as_object_mut().expect("metadata was just made an object")
}

/// The current time as Kubernetes serializes `metav1.Time` (RFC 3339, seconds).
pub fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five lowercase alphanumeric characters, upstream's generateName suffix alphabet
/// (no vowels and no look-alike characters, so names never spell words).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// Sets the server-owned metadata of a new object: name from generateName, namespace from
/// the URL, uid, creationTimestamp, generation; clears what a client may not set.
pub fn prepare_create_metadata(
    def: &ResourceDef,
    obj: &mut Value,
    url_namespace: Option<&str>,
) -> Result<(), ApiError> {
    let has_generation = def.has_generation;
    let meta = metadata_mut(obj);
    if def.namespaced {
        let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        let url_ns = url_namespace.unwrap_or("");
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        meta.insert("namespace".into(), Value::String(url_ns.to_string()));
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        if let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            // Upstream trims the prefix so prefix+suffix stays within 63 characters.
            let prefix: String = prefix.chars().take(58).collect();
            meta.insert("name".into(), Value::String(format!("{prefix}{}", random_suffix())));
        }
    }
    if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError::BadRequest("resourceVersion should not be set on objects to be created".into()));
    }
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(now_timestamp()));
    if has_generation {
        meta.insert("generation".into(), Value::from(1));
    } else {
        meta.remove("generation");
    }
    Ok(())
}

/// Metadata fields a client cannot change on update: they are copied from the stored object.
pub fn preserve_immutable_metadata(old: &Value, new: &mut Value) {
    let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let meta = metadata_mut(new);
    for key in
        ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace"]
    {
        match old_meta.get(key) {
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
            None => {
                meta.remove(key);
            }
        }
    }
    meta.remove("selfLink");
}

/// The parts of an object that are neither metadata nor status ("the spec"): a change there
/// bumps `metadata.generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Increments `metadata.generation` when the spec changed.
pub fn bump_generation(def: &ResourceDef, old: &Value, new: &mut Value) {
    if !def.has_generation {
        return;
    }
    let gen = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
    let next = if spec_changed(old, new) { gen + 1 } else { gen };
    metadata_mut(new).insert("generation".into(), Value::from(next));
}

/// Two stored forms are equal apart from resourceVersion (an update that changes nothing
/// is not written, so watchers see no event).
pub fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_with_paths() {
        let svc = lookup("", "v1", "services").unwrap();
        let obj = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},
            "spec":{"bogus":1,"ports":[{"port":80,"nope":"x"}]}});
        let (_, unknown) = normalize(svc, &obj).unwrap();
        assert_eq!(unknown, vec!["spec.bogus".to_string(), "spec.ports[0].nope".to_string()]);
    }

    #[test]
    fn wrong_types_are_bad_requests_with_paths() {
        let svc = lookup("", "v1", "services").unwrap();
        let obj = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":"x"}]}});
        let err = normalize(svc, &obj).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.message().contains("spec.ports[0].port"), "{}", err.message());
    }

    #[test]
    fn type_meta_mismatch_is_rejected() {
        let svc = lookup("", "v1", "services").unwrap();
        let mut obj = json!({"apiVersion":"apps/v1","kind":"Service"});
        assert_eq!(check_type_meta(svc, &mut obj).unwrap_err().code(), 400);
        let mut obj = json!({"apiVersion":"v1","kind":"Pod"});
        assert_eq!(check_type_meta(svc, &mut obj).unwrap_err().code(), 400);
        let mut obj = json!({"metadata":{"name":"x"}});
        check_type_meta(svc, &mut obj).unwrap();
        assert_eq!(obj["kind"], "Service");
    }

    #[test]
    fn generate_name_gets_suffix() {
        let cm = lookup("", "v1", "configmaps").unwrap();
        let mut obj = json!({"metadata":{"generateName":"web-"}});
        prepare_create_metadata(cm, &mut obj, Some("default")).unwrap();
        let name = object_name(&obj);
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(object_namespace(&obj), "default");
    }
}

/// Paths of keys that appear twice in the same JSON object of a request body (strict
/// field validation reports them; serde_json silently keeps the last one).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::de::DeserializeSeed::deserialize(DuplicateScan { path: String::new(), found: &mut found }, &mut de);
    found
}

/// Walks a JSON document with serde, remembering the keys of every object it enters.
struct DuplicateScan<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for DuplicateScan<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DuplicateScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let seed = DuplicateScan { path: format!("{}[{i}]", self.path), found: &mut *self.found };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(DuplicateScan { path, found: &mut *self.found })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod duplicate_tests {
    use super::duplicate_fields;

    #[test]
    fn finds_nested_duplicates() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"ports":[{"port":1,"port":2}]}}"#;
        assert_eq!(duplicate_fields(body), vec!["metadata.name".to_string(), "spec.ports[0].port".to_string()]);
        assert!(duplicate_fields(br#"{"a":1,"b":{"a":2}}"#).is_empty());
    }
}
