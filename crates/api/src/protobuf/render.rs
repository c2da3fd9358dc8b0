//! One protobuf message → the JSON object Go's `encoding/json` writes for the same struct.
//!
//! Two passes per message: first every wire field is filed under its schema field (unknown field
//! numbers are skipped), then the schema fields are rendered in Go struct order with Go's rules
//! (see [`Shape`]). Protobuf merge semantics apply to repeated occurrences of a singular field:
//! the last scalar wins, message chunks are concatenated (which merges them).

use std::borrow::Cow;

use base64::Engine as _;
use chrono::{DateTime, Datelike};
use serde_json::{Map, Value};

use super::schema::{Empty, Field, FieldType, Message, Shape};
use super::wire::{packed_varints, Reader, WireValue};
use super::DecodeError;

/// Nesting deeper than any served kind needs; bounds the recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which metav1.Time renders as `null`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

pub(super) fn message_to_json(
    bytes: &[u8],
    message: &'static Message,
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::new(format!("{} is nested more than {MAX_DEPTH} levels deep", message.name)));
    }
    let occurrences = collect_fields(bytes, message)?;
    let mut object = Map::new();
    for (field, values) in message.fields.iter().zip(&occurrences) {
        render_field(field, values, depth, &mut object)?;
    }
    Ok(object)
}

/// Pass 1: the wire values of each schema field, in arrival order, checked against the field's type.
fn collect_fields<'a>(bytes: &'a [u8], message: &'static Message) -> Result<Vec<Vec<WireValue<'a>>>, DecodeError> {
    let mut occurrences = vec![Vec::new(); message.fields.len()];
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        let Some(index) = message.fields.iter().position(|field| field.number == number) else {
            continue;
        };
        let field = &message.fields[index];
        let packed_list = matches!(field.shape, Shape::List(_)) && matches!(value, WireValue::Bytes(_));
        let expected = if is_varint(field.ty) && !matches!(field.shape, Shape::Map(_)) { 0 } else { 2 };
        if value.wire_type() != expected && !packed_list {
            return Err(DecodeError::new(format!(
                "wrong wire type {} for field {}",
                value.wire_type(),
                field_label(message, field)
            )));
        }
        occurrences[index].push(value);
    }
    Ok(occurrences)
}

/// Pass 2: one field into `object`, following Go's JSON encoder.
fn render_field(
    field: &Field,
    values: &[WireValue<'_>],
    depth: usize,
    object: &mut Map<String, Value>,
) -> Result<(), DecodeError> {
    let name = field.json_name.to_string();
    match field.shape {
        Shape::Value(empty) => {
            let value = match last_or_merged(field.ty, values) {
                Some(single) => render_single(field.ty, single, depth)?,
                // client-go writes every value field, but other encoders may leave zeros out.
                // A nil []byte is `null`, unlike the empty one a present field decodes to.
                None if matches!(field.ty, FieldType::Bytes) => Value::Null,
                None => zero_value(field.ty, depth)?,
            };
            if !(empty == Empty::Omit && is_empty_scalar(field.ty, &value)) {
                object.insert(name, value);
            }
        }
        Shape::Pointer(empty) => match last_or_merged(field.ty, values) {
            Some(single) => {
                object.insert(name, render_single(field.ty, single, depth)?);
            }
            None if empty == Empty::Keep => {
                object.insert(name, Value::Null);
            }
            None => {}
        },
        Shape::List(empty) => {
            let mut items = Vec::new();
            for value in values {
                match *value {
                    WireValue::Varint(v) => items.push(render_varint(field.ty, v)),
                    WireValue::Bytes(bytes) if is_varint(field.ty) => {
                        items.extend(packed_varints(bytes)?.into_iter().map(|v| render_varint(field.ty, v)))
                    }
                    WireValue::Bytes(bytes) => items.push(render_single(field.ty, Single::Bytes(bytes.into()), depth)?),
                    // collect_fields admits nothing else.
                    WireValue::Fixed64 | WireValue::Fixed32 | WireValue::Group => {}
                }
            }
            insert_collection(object, name, empty, (!items.is_empty()).then_some(Value::Array(items)));
        }
        Shape::Map(empty) => {
            let mut entries = Map::new();
            for value in values {
                if let WireValue::Bytes(entry) = value {
                    let (key, value) = map_entry(entry, field, depth)?;
                    entries.insert(key, value);
                }
            }
            insert_collection(object, name, empty, (!values.is_empty()).then_some(Value::Object(entries)));
        }
        Shape::Inline => {
            if let FieldType::Struct(message) = field.ty {
                let bytes = merged_bytes(values).unwrap_or_default();
                object.extend(message_to_json(&bytes, message, depth + 1)?);
            }
        }
    }
    Ok(())
}

/// A nil slice or map: left out under `omitempty`, else `null`. An empty but present one is
/// impossible after protobuf decoding (empty collections are simply not on the wire).
fn insert_collection(object: &mut Map<String, Value>, name: String, empty: Empty, value: Option<Value>) {
    match (value, empty) {
        (Some(value), _) => {
            object.insert(name, value);
        }
        (None, Empty::Keep) => {
            object.insert(name, Value::Null);
        }
        (None, Empty::Omit) => {}
    }
}

/// The payload of a singular field: a varint, or bytes (possibly several message chunks merged).
enum Single<'a> {
    Varint(u64),
    Bytes(Cow<'a, [u8]>),
}

/// The effective value of a singular field, `None` if it is not on the wire.
fn last_or_merged<'a>(ty: FieldType, values: &[WireValue<'a>]) -> Option<Single<'a>> {
    if is_message(ty) {
        return merged_bytes(values).map(Single::Bytes);
    }
    values.iter().rev().find_map(|value| match *value {
        WireValue::Varint(v) => Some(Single::Varint(v)),
        WireValue::Bytes(bytes) => Some(Single::Bytes(Cow::Borrowed(bytes))),
        WireValue::Fixed64 | WireValue::Fixed32 | WireValue::Group => None,
    })
}

/// All length-delimited chunks of a field concatenated: protobuf's merge of repeated messages.
fn merged_bytes<'a>(values: &[WireValue<'a>]) -> Option<Cow<'a, [u8]>> {
    let mut chunks = values.iter().filter_map(|value| match *value {
        WireValue::Bytes(bytes) => Some(bytes),
        _ => None,
    });
    let first = chunks.next()?;
    match chunks.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut merged = [first, second].concat();
            chunks.for_each(|chunk| merged.extend_from_slice(chunk));
            Some(Cow::Owned(merged))
        }
    }
}

fn render_single(ty: FieldType, single: Single<'_>, depth: usize) -> Result<Value, DecodeError> {
    match single {
        Single::Varint(v) => Ok(render_varint(ty, v)),
        Single::Bytes(bytes) => match ty {
            FieldType::String => Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
            FieldType::Bytes => Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))),
            FieldType::Struct(message) => Ok(Value::Object(message_to_json(&bytes, message, depth + 1)?)),
            FieldType::Time => time(&bytes),
            FieldType::MicroTime => micro_time(&bytes),
            FieldType::IntOrString => int_or_string(&bytes),
            FieldType::Quantity => quantity(&bytes),
            FieldType::RawJson => raw_json(&bytes),
            // collect_fields and map_entry check wire types, so this is not reached.
            FieldType::Bool | FieldType::Int32 | FieldType::Int64 => {
                Err(DecodeError::new("a varint field arrived length-delimited".into()))
            }
        },
    }
}

/// The Go zero value of a type: what an absent value field or map value decodes to.
fn zero_value(ty: FieldType, depth: usize) -> Result<Value, DecodeError> {
    if is_varint(ty) {
        return Ok(render_varint(ty, 0));
    }
    // An empty message is the zero struct; empty bytes are the zero string/bytes.
    render_single(ty, Single::Bytes(Cow::Borrowed(&[])), depth)
}

/// Varints as Go reads them: int32 keeps the low 32 bits, so negative values survive the
/// 10-byte sign extension; any nonzero bool is true.
fn render_varint(ty: FieldType, v: u64) -> Value {
    match ty {
        FieldType::Bool => Value::Bool(v != 0),
        FieldType::Int32 => Value::from(v as i32),
        _ => Value::from(v as i64),
    }
}

/// One `{1: key, 2: value}` map entry; a missing key or value is its zero value.
fn map_entry(entry: &[u8], field: &Field, depth: usize) -> Result<(String, Value), DecodeError> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(entry);
    while let Some((number, wire)) = reader.next_field()? {
        match (number, wire) {
            (1, WireValue::Bytes(bytes)) => key = String::from_utf8_lossy(bytes).into_owned(),
            (2, WireValue::Varint(v)) if is_varint(field.ty) => value = Some(Single::Varint(v)),
            (2, WireValue::Bytes(bytes)) if !is_varint(field.ty) => value = Some(Single::Bytes(bytes.into())),
            (1 | 2, other) => {
                return Err(DecodeError::new(format!(
                    "wrong wire type {} in a map entry of field {}",
                    other.wire_type(),
                    field.json_name
                )))
            }
            _ => {}
        }
    }
    let value = match value {
        Some(single) => render_single(field.ty, single, depth)?,
        None => zero_value(field.ty, depth)?,
    };
    Ok((key, value))
}

fn is_varint(ty: FieldType) -> bool {
    matches!(ty, FieldType::Bool | FieldType::Int32 | FieldType::Int64)
}

fn is_message(ty: FieldType) -> bool {
    !is_varint(ty) && !matches!(ty, FieldType::String | FieldType::Bytes)
}

/// Go's `omitempty` test. Structs (including Time, IntOrString, Quantity) are never empty.
fn is_empty_scalar(ty: FieldType, value: &Value) -> bool {
    match ty {
        FieldType::String | FieldType::Bytes => value.is_null() || value.as_str() == Some(""),
        FieldType::Bool => value == &Value::Bool(false),
        FieldType::Int32 | FieldType::Int64 => value.as_i64() == Some(0),
        _ => false,
    }
}

fn field_label(message: &Message, field: &Field) -> String {
    match field.json_name {
        "" => format!("{} (field {})", message.name, field.number),
        name => format!("{}.{name}", message.name),
    }
}

// ---- Types with their own JSON form ---------------------------------------------------------

/// The last wire value of each of the fields `1..=N` of a small fixed message (index = number - 1);
/// other field numbers are skipped.
fn small_message<const N: usize>(bytes: &[u8]) -> Result<[Option<WireValue<'_>>; N], DecodeError> {
    let mut fields = [None; N];
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        if let Some(slot) = (number as usize).checked_sub(1).and_then(|index| fields.get_mut(index)) {
            *slot = Some(value);
        }
    }
    Ok(fields)
}

/// A varint field of a small message; absent is 0.
fn varint_of(value: Option<WireValue<'_>>, label: &str) -> Result<u64, DecodeError> {
    match value {
        None => Ok(0),
        Some(WireValue::Varint(v)) => Ok(v),
        Some(other) => Err(wrong_wire_type(other, label)),
    }
}

/// A length-delimited field of a small message; absent is `None`.
fn bytes_of<'a>(value: Option<WireValue<'a>>, label: &str) -> Result<Option<&'a [u8]>, DecodeError> {
    match value {
        None => Ok(None),
        Some(WireValue::Bytes(bytes)) => Ok(Some(bytes)),
        Some(other) => Err(wrong_wire_type(other, label)),
    }
}

fn wrong_wire_type(value: WireValue<'_>, label: &str) -> DecodeError {
    DecodeError::new(format!("wrong wire type {} for field {label}", value.wire_type()))
}

/// `{1: seconds, 2: nanos}`, the protobuf form of metav1.Time and MicroTime.
fn timestamp(bytes: &[u8]) -> Result<(i64, i64), DecodeError> {
    let [seconds, nanos] = small_message(bytes)?;
    let seconds = varint_of(seconds, "Timestamp.seconds")? as i64;
    let nanos = varint_of(nanos, "Timestamp.nanos")? as i32;
    Ok((seconds, i64::from(nanos)))
}

/// metav1.Time: whole seconds (the decoder drops nanos, as upstream does), `null` when zero.
fn time(bytes: &[u8]) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (seconds, _) = timestamp(bytes)?;
    if seconds == GO_ZERO_TIME_UNIX {
        return Ok(Value::Null);
    }
    format_time(seconds, 0, "%Y-%m-%dT%H:%M:%SZ")
}

/// metav1.MicroTime: nanos truncated to microseconds, six fractional digits, `null` when zero.
fn micro_time(bytes: &[u8]) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (seconds, nanos) = timestamp(bytes)?;
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos - nanos % 1000);
    if total == i128::from(GO_ZERO_TIME_UNIX) * 1_000_000_000 {
        return Ok(Value::Null);
    }
    let whole_seconds = i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| time_out_of_range(seconds))?;
    // rem_euclid by a positive divisor lies in 0..1e9, which fits a u32.
    let nanos = total.rem_euclid(1_000_000_000) as u32;
    format_time(whole_seconds, nanos, "%Y-%m-%dT%H:%M:%S%.6fZ")
}

/// RFC 3339 in UTC; only years 0000-9999 have an RFC 3339 form (Go's output would not parse back).
fn format_time(seconds: i64, nanos: u32, format: &str) -> Result<Value, DecodeError> {
    let time = DateTime::from_timestamp(seconds, nanos).ok_or_else(|| time_out_of_range(seconds))?;
    if !(0..=9999).contains(&time.year()) {
        return Err(time_out_of_range(seconds));
    }
    Ok(Value::String(time.format(format).to_string()))
}

fn time_out_of_range(seconds: i64) -> DecodeError {
    DecodeError::new(format!("timestamp {seconds} is outside the years 0000-9999"))
}

/// intstr.IntOrString `{1: type (0 int, 1 string), 2: intVal, 3: strVal}`.
fn int_or_string(bytes: &[u8]) -> Result<Value, DecodeError> {
    let [kind, int_val, str_val] = small_message(bytes)?;
    match varint_of(kind, "IntOrString.type")? as i64 {
        0 => Ok(Value::from(varint_of(int_val, "IntOrString.intVal")? as i32)),
        1 => {
            let text = bytes_of(str_val, "IntOrString.strVal")?.unwrap_or_default();
            Ok(Value::String(String::from_utf8_lossy(text).into_owned()))
        }
        other => Err(DecodeError::new(format!("impossible IntOrString type {other}"))),
    }
}

/// resource.Quantity `{1: string}`. client-go writes the canonical form, which is also what the
/// JSON encoder would print, so the string passes through; a missing one is the zero quantity.
fn quantity(bytes: &[u8]) -> Result<Value, DecodeError> {
    let [text] = small_message(bytes)?;
    match bytes_of(text, "Quantity.string")? {
        None => Ok(Value::String("0".into())),
        Some([]) => Err(DecodeError::new("quantities must not be empty".into())),
        Some(text) => Ok(Value::String(String::from_utf8_lossy(text).into_owned())),
    }
}

/// metav1.FieldsV1 / runtime.RawExtension `{1: raw}`: raw JSON embedded as is; no raw is `null`.
fn raw_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let [raw] = small_message(bytes)?;
    match bytes_of(raw, "raw")? {
        None => Ok(Value::Null),
        Some(raw) => serde_json::from_slice(raw)
            .map_err(|e| DecodeError::new(format!("embedded raw object is not valid JSON: {e}"))),
    }
}
