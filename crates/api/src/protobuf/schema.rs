//! The shape of the generated schema table (`generated.rs`).
//!
//! A protobuf message alone does not say how its Go struct looks in JSON: client-go writes every
//! Go value field (`name: ""`, `port: 0`, `spec: {}`) and only non-nil pointers, and Go's JSON
//! encoder then drops or keeps zero values according to `omitempty`. So each [`Field`] records,
//! besides its number and type, the Go shape ([`Shape`]) and the `omitempty` flag ([`Empty`]).

/// One protobuf message, that is one Go struct of k8s.io/api or k8s.io/apimachinery.
pub(super) struct Message {
    /// Fully qualified protobuf name (`k8s.io.api.core.v1.ServiceSpec`), for error messages.
    pub name: &'static str,
    /// The fields in Go struct order, which is also the order of the keys in the JSON object.
    pub fields: &'static [Field],
}

/// A kind whose body can be decoded: `apiVersion`/`kind` from the envelope select `message`.
pub(super) struct Root {
    /// `"*"` matches any apiVersion (DeleteOptions is sent under the resource's group version).
    pub api_version: &'static str,
    pub kind: &'static str,
    pub message: &'static Message,
}

pub(super) struct Field {
    /// The protobuf field number.
    pub number: u32,
    /// The JSON key; empty for [`Shape::Inline`].
    pub json_name: &'static str,
    /// For lists and maps: the element (map value) type. Map keys are always strings.
    pub ty: FieldType,
    pub shape: Shape,
}

#[derive(Clone, Copy)]
pub(super) enum FieldType {
    String,
    /// Go `[]byte`: base64 in JSON.
    Bytes,
    Bool,
    Int32,
    Int64,
    /// A nested message rendered field by field.
    Struct(&'static Message),
    /// metav1.Time: `{1: seconds, 2: nanos}`, JSON RFC 3339 in whole seconds, zero is `null`.
    Time,
    /// metav1.MicroTime: like Time, with 6 fractional digits.
    MicroTime,
    /// intstr.IntOrString: `{1: type, 2: intVal, 3: strVal}`, JSON a number or a string.
    IntOrString,
    /// resource.Quantity: `{1: string}`, JSON the string.
    Quantity,
    /// metav1.FieldsV1 and runtime.RawExtension: `{1: raw}` holding JSON, embedded as is.
    RawJson,
}

/// Go's `omitempty`: whether a zero value disappears from the JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Empty {
    Omit,
    Keep,
}

#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// A Go value (`string`, `int32`, a struct). Absent on the wire means the zero value. A zero
    /// scalar is dropped under `omitempty`; a struct is always written (`"status": {}`).
    Value(Empty),
    /// A Go pointer. Absent means nil (dropped under `omitempty`, else `null`); present is
    /// written even when zero (`"replicas": 0`).
    Pointer(Empty),
    /// A Go slice: a repeated field. None decodes to a nil slice: dropped or `null`.
    List(Empty),
    /// A Go map: repeated `{1: key, 2: value}` entries. None decodes to a nil map: dropped or `null`.
    Map(Empty),
    /// An embedded struct whose fields Go's JSON encoder lifts into the parent object
    /// (core/v1 `Volume.VolumeSource`).
    Inline,
}

pub(super) const fn value(number: u32, json_name: &'static str, ty: FieldType, empty: Empty) -> Field {
    Field { number, json_name, ty, shape: Shape::Value(empty) }
}

pub(super) const fn pointer(number: u32, json_name: &'static str, ty: FieldType, empty: Empty) -> Field {
    Field { number, json_name, ty, shape: Shape::Pointer(empty) }
}

pub(super) const fn list(number: u32, json_name: &'static str, ty: FieldType, empty: Empty) -> Field {
    Field { number, json_name, ty, shape: Shape::List(empty) }
}

pub(super) const fn map(number: u32, json_name: &'static str, ty: FieldType, empty: Empty) -> Field {
    Field { number, json_name, ty, shape: Shape::Map(empty) }
}

pub(super) const fn inline(number: u32, message: &'static Message) -> Field {
    Field { number, json_name: "", ty: FieldType::Struct(message), shape: Shape::Inline }
}
