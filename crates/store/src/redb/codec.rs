//! Byte layouts of what the redb backend stores: a key's current value (the `kv` table) and one
//! revision's events (the `log` table).
//!
//! The layouts are private to this backend and deliberately plain — fixed-width little-endian
//! integers and length-prefixed byte strings — so that decoding never needs a schema library
//! and a corrupt record is reported as [`StoreError::Backend`] instead of panicking.
//!
//! ```text
//! kv value:   create_revision i64 | mod_revision i64 | value bytes...
//! log entry:  event_count u64 | event*
//! event:      kind u8 (0 put, 1 delete) | key_len u64 | key | create_revision i64
//!             | value_len u64 | value | has_prev u8
//!             [ | prev_create_revision i64 | prev_mod_revision i64 | prev_len u64 | prev_value ]
//! ```
//!
//! An event's `mod_revision` is not stored: it is the revision the log entry is filed under.

use bytes::Bytes;

use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError};

const PUT: u8 = 0;
const DELETE: u8 = 1;

/// Encodes a key's current state for the `kv` table.
pub(crate) fn encode_current(create_revision: Revision, mod_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The `mod_revision` of an encoded `kv` value, without copying the value.
pub(crate) fn current_mod_revision(bytes: &[u8]) -> Result<Revision> {
    let mut reader = Reader::new(bytes);
    reader.i64()?;
    reader.i64()
}

/// Decodes a `kv` table value into the [`KeyValue`] stored under `key`.
pub(crate) fn decode_current(key: &str, bytes: &[u8]) -> Result<KeyValue> {
    let mut reader = Reader::new(bytes);
    let create_revision = reader.i64()?;
    let mod_revision = reader.i64()?;
    Ok(KeyValue { key: key.to_owned(), value: Bytes::copy_from_slice(reader.rest()), create_revision, mod_revision })
}

/// Encodes the events of one revision for the `log` table.
pub(crate) fn encode_events(events: &[Event]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| 64 + e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len()))
        .sum();
    let mut out = Vec::with_capacity(8 + size);
    put_len(&mut out, events.len());
    for event in events {
        out.push(match event.kind {
            EventKind::Put => PUT,
            EventKind::Delete => DELETE,
        });
        put_bytes(&mut out, event.kv.key.as_bytes());
        out.extend_from_slice(&event.kv.create_revision.to_le_bytes());
        put_bytes(&mut out, &event.kv.value);
        match &event.prev {
            None => out.push(0),
            Some(prev) => {
                out.push(1);
                out.extend_from_slice(&prev.create_revision.to_le_bytes());
                out.extend_from_slice(&prev.mod_revision.to_le_bytes());
                put_bytes(&mut out, &prev.value);
            }
        }
    }
    out
}

/// Decodes the events logged at `revision`, keeping only those whose key satisfies `wanted`
/// (values of unwanted events are skipped without being copied).
pub(crate) fn decode_events(revision: Revision, bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Result<Vec<Event>> {
    let mut reader = Reader::new(bytes);
    let count = reader.len()?;
    let mut events = Vec::new();
    for _ in 0..count {
        let kind = match reader.u8()? {
            PUT => EventKind::Put,
            DELETE => EventKind::Delete,
            other => return Err(corrupt(format!("unknown event kind {other}"))),
        };
        let key = std::str::from_utf8(reader.bytes()?).map_err(|_| corrupt("key is not UTF-8"))?;
        let create_revision = reader.i64()?;
        let value = reader.bytes()?;
        let prev = match reader.u8()? {
            0 => None,
            _ => {
                let create_revision = reader.i64()?;
                let mod_revision = reader.i64()?;
                Some((create_revision, mod_revision, reader.bytes()?))
            }
        };
        if !wanted(key) {
            continue;
        }
        let kv = KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision,
            mod_revision: revision,
        };
        let prev = prev.map(|(create_revision, mod_revision, value)| KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(value),
            create_revision,
            mod_revision,
        });
        events.push(Event { kind, kv, prev });
    }
    Ok(events)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // usize is at most 64 bits on every supported target, so this never truncates.
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt record in redb store: {what}"))
}

/// A bounds-checked cursor over an encoded record.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupt(format!("truncated: wanted {n} bytes, {} left", self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize> {
        let len = u64::from_le_bytes(self.array()?);
        usize::try_from(len).map_err(|_| corrupt(format!("length {len} does not fit in memory")))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modr: Revision) -> KeyValue {
        KeyValue { key: key.into(), value: Bytes::from(value.to_owned()), create_revision: create, mod_revision: modr }
    }

    #[test]
    fn current_value_round_trips() {
        let bytes = encode_current(3, 7, b"hello");
        assert_eq!(current_mod_revision(&bytes).unwrap(), 7);
        assert_eq!(decode_current("/a", &bytes).unwrap(), kv("/a", "hello", 3, 7));
    }

    #[test]
    fn events_round_trip_and_filter() {
        let events = vec![
            Event { kind: EventKind::Put, kv: kv("/a/1", "new", 2, 9), prev: Some(kv("/a/1", "old", 2, 5)) },
            Event { kind: EventKind::Delete, kv: kv("/b/1", "", 0, 9), prev: Some(kv("/b/1", "gone", 4, 4)) },
            Event { kind: EventKind::Put, kv: kv("/a/2", "first", 9, 9), prev: None },
        ];
        let bytes = encode_events(&events);
        assert_eq!(decode_events(9, &bytes, |_| true).unwrap(), events);
        let only_a = decode_events(9, &bytes, |k| k.starts_with("/a/")).unwrap();
        assert_eq!(only_a, vec![events[0].clone(), events[2].clone()]);
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let bytes = encode_events(&[Event { kind: EventKind::Put, kv: kv("/a", "v", 1, 1), prev: None }]);
        for cut in 0..bytes.len() {
            assert!(decode_events(1, &bytes[..cut], |_| true).is_err(), "cut at {cut}");
        }
        assert!(decode_current("/a", &[1, 2, 3]).is_err());
    }
}
