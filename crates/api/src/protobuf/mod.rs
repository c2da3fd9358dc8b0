//! Kubernetes protobuf request bodies → the JSON the same object has in the JSON encoding.
//!
//! kubectl's typed-client commands (`kubectl create deployment`, `create service clusterip`,
//! `create secret generic`, ...) send `Content-Type: application/vnd.kubernetes.protobuf`. The
//! API server handles JSON only, so [`decode`] turns such a body into the JSON object Go's
//! `encoding/json` would write for the decoded object, and the normal JSON path takes over.
//!
//! # Wire format
//!
//! ```text
//! body    = "k8s\x00" Unknown                 4-byte magic, then a runtime.Unknown message
//! Unknown = { 1: TypeMeta, 2: raw bytes,      raw = the object's own protobuf message
//!             3: contentEncoding, 4: contentType }   (both unused, as upstream ignores them)
//! TypeMeta = { 1: apiVersion, 2: kind }
//! ```
//!
//! The object is a proto2 message from k8s.io/api's `generated.proto` (see `wire.rs` for the
//! encoding of fields). Maps are repeated `{1: key, 2: value}` entries; repeated varints may be
//! packed or not; unknown field numbers are skipped.
//!
//! # JSON form
//!
//! Protobuf says nothing about JSON, so the generated table (`generated.rs`, shaped as `schema.rs`
//! describes, built by `scripts/gen-proto-schema.py` from the upstream Go types) records for each field its JSON
//! name, whether Go holds it as a value, a pointer, a slice, a map or an inlined struct, and
//! `omitempty`. With that the output matches Go's: `"creationTimestamp": null` and `"status": {}`
//! appear, `"replicas": 0` is kept, an unset `imagePullPolicy` is absent. Types with their own JSON
//! form: IntOrString (number or string), Quantity (string), Time and MicroTime (RFC 3339), bytes
//! (base64), FieldsV1 and RawExtension (embedded JSON). `apiVersion` and `kind` come from the
//! envelope.
//!
//! Served kinds: core/v1 Namespace, Service, Endpoints, Pod, Node, Secret, ConfigMap, Event,
//! ServiceAccount; discovery/v1 EndpointSlice; apps/v1 Deployment, ReplicaSet; autoscaling/v1
//! Scale; networking/v1 Ingress, IngressClass; coordination/v1 Lease; and meta/v1 DeleteOptions
//! under any apiVersion. Another kind is a `ROOTS` entry in the script and a regeneration.
//!
//! Errors are [`ApiError::BadRequest`]; no input makes the decoder panic.

// One field per line reads better than rustfmt's packing; the script writes it that way.
#[rustfmt::skip]
mod generated;
mod render;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::status::ApiError;
use wire::{Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these bytes: "k8s" and encoding style 0 (a runtime.Unknown).
const MAGIC: &[u8; 4] = b"k8s\x00";

/// Decodes a Kubernetes protobuf body into the object's JSON form (with `apiVersion` and `kind`).
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    decode_object(body)
        .map(Value::Object)
        .map_err(|e| ApiError::BadRequest(format!("unable to decode the protobuf request body: {}", e.0)))
}

fn decode_object(body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::new("empty body".into()));
    }
    let Some(unknown) = body.strip_prefix(MAGIC) else {
        return Err(DecodeError::new(format!("the data does not start with the protobuf prefix {MAGIC:?}")));
    };
    if unknown.is_empty() {
        return Err(DecodeError::new("empty body after the protobuf prefix".into()));
    }
    let envelope = Envelope::parse(unknown)?;
    if envelope.kind.is_empty() {
        return Err(DecodeError::new("Object 'Kind' is missing".into()));
    }
    if envelope.api_version.is_empty() {
        return Err(DecodeError::new("Object 'apiVersion' is missing".into()));
    }
    let root = generated::ROOTS
        .iter()
        .find(|root| {
            root.kind == envelope.kind && (root.api_version == "*" || root.api_version == envelope.api_version)
        })
        .ok_or_else(|| {
            DecodeError::new(format!(
                "no kind {:?} is registered for version {:?} in protobuf",
                envelope.kind, envelope.api_version
            ))
        })?;
    let fields = render::message_to_json(envelope.raw, root.message, 0)?;
    // Go's TypeMeta comes first in every object: kind, then apiVersion.
    let mut object = Map::with_capacity(fields.len() + 2);
    object.insert("kind".into(), Value::String(envelope.kind));
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.extend(fields);
    Ok(object)
}

/// The runtime.Unknown around every object.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut envelope = Envelope { api_version: String::new(), kind: String::new(), raw: &[] };
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.next_field()? {
            match (number, value) {
                (1, WireValue::Bytes(type_meta)) => envelope.parse_type_meta(type_meta)?,
                (2, WireValue::Bytes(raw)) => envelope.raw = raw,
                (3 | 4, WireValue::Bytes(_)) => {}
                (1..=4, other) => {
                    return Err(DecodeError::new(format!(
                        "wrong wire type {} for field {number} of runtime.Unknown",
                        other.wire_type()
                    )))
                }
                _ => {}
            }
        }
        Ok(envelope)
    }

    fn parse_type_meta(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let mut reader = Reader::new(bytes);
        while let Some((number, value)) = reader.next_field()? {
            match (number, value) {
                (1, WireValue::Bytes(s)) => self.api_version = String::from_utf8_lossy(s).into_owned(),
                (2, WireValue::Bytes(s)) => self.kind = String::from_utf8_lossy(s).into_owned(),
                (1 | 2, other) => {
                    return Err(DecodeError::new(format!(
                        "wrong wire type {} for field {number} of runtime.TypeMeta",
                        other.wire_type()
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Why a body could not be decoded; [`decode`] turns it into a BadRequest.
#[derive(Debug)]
struct DecodeError(String);

impl DecodeError {
    fn new(message: String) -> Self {
        DecodeError(message)
    }

    fn unexpected_eof() -> Self {
        DecodeError("unexpected end of data".into())
    }
}
