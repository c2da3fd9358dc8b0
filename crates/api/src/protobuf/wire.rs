//! The protobuf wire format, schema-free: a message is a sequence of `(tag, value)` pairs where
//! `tag = field_number << 3 | wire_type`, encoded as a varint.
//!
//! | wire type | meaning            | payload                                      |
//! |-----------|--------------------|----------------------------------------------|
//! | 0         | varint             | 1–10 bytes, 7 bits each, low bits first      |
//! | 1         | 64-bit             | 8 bytes little endian                        |
//! | 2         | length-delimited   | varint length, then that many bytes          |
//! | 3, 4      | group start / end  | deprecated; fields up to the matching end    |
//! | 5         | 32-bit             | 4 bytes little endian                        |
//!
//! Every read is bounds-checked; malformed input is a [`DecodeError`], never a panic.

use super::DecodeError;

/// The payload of one field, not yet interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    /// 64- and 32-bit values: Kubernetes messages have no such fields (no `double`, no `fixed`), so
    /// they only ever belong to unknown fields, which are skipped.
    Fixed64,
    Fixed32,
    /// Strings, bytes, nested messages, map entries and packed repeated scalars.
    Bytes(&'a [u8]),
    /// A (skipped) group; Kubernetes never uses groups, so a known field sent as one is an error.
    Group,
}

impl WireValue<'_> {
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64 => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Group => 3,
            WireValue::Fixed32 => 5,
        }
    }
}

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Reads the fields of one message in order.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field as `(number, value)`, or `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let (number, wire_type) = self.read_tag()?;
        let value = match wire_type {
            0 => WireValue::Varint(self.read_varint()?),
            1 => {
                self.read_slice(8)?;
                WireValue::Fixed64
            }
            2 => {
                let len = self.read_varint()?;
                WireValue::Bytes(self.read_slice(len)?)
            }
            3 => {
                self.skip_group()?;
                WireValue::Group
            }
            4 => return Err(DecodeError::new(format!("unexpected end of group for field {number}"))),
            5 => {
                self.read_slice(4)?;
                WireValue::Fixed32
            }
            other => return Err(DecodeError::new(format!("illegal wire type {other} for field {number}"))),
        };
        Ok(Some((number, value)))
    }

    fn read_tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let tag = self.read_varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(DecodeError::new(format!("illegal tag {number} (wire type {})", tag & 7)));
        }
        // Both conversions are lossless: number <= 2^29 - 1 and the wire type is 3 bits.
        Ok((number as u32, (tag & 7) as u8))
    }

    /// A base-128 varint: at most 10 bytes, bits beyond 64 are dropped (as Go's decoder does, so
    /// that negative int32 values, sign-extended to 10 bytes, come back intact).
    pub(super) fn read_varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::unexpected_eof());
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::new("integer overflow in varint".into()))
    }

    fn read_slice(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len).ok().filter(|&len| len <= remaining).ok_or_else(DecodeError::unexpected_eof)?;
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    /// Skips the fields of a group whose start tag was just read, up to its end tag.
    fn skip_group(&mut self) -> Result<(), DecodeError> {
        let mut depth = 1usize;
        while depth > 0 {
            if self.pos >= self.buf.len() {
                return Err(DecodeError::unexpected_eof());
            }
            let (_, wire_type) = self.read_tag()?;
            match wire_type {
                0 => {
                    self.read_varint()?;
                }
                1 => {
                    self.read_slice(8)?;
                }
                2 => {
                    let len = self.read_varint()?;
                    self.read_slice(len)?;
                }
                3 => depth += 1,
                4 => depth -= 1,
                5 => {
                    self.read_slice(4)?;
                }
                other => return Err(DecodeError::new(format!("illegal wire type {other} inside a group"))),
            }
        }
        Ok(())
    }
}

/// The values of a packed repeated varint field (`[varint, varint, ...]` inside one `Bytes`).
pub(super) fn packed_varints(bytes: &[u8]) -> Result<Vec<u64>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut values = Vec::new();
    while reader.pos < bytes.len() {
        values.push(reader.read_varint()?);
    }
    Ok(values)
}
