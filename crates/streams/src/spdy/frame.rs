//! SPDY/3.1 frames on the wire.
//!
//! Every frame starts with 8 bytes. Control frames: a set high bit, the version (3) in 15 bits,
//! a 16-bit type, then 8 bits of flags and a 24-bit payload length. Data frames: a clear high
//! bit, a 31-bit stream id, 8 bits of flags, a 24-bit length.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::headers::{HeaderBlock, HeaderCompressor, HeaderDecompressor, HeaderError};

pub const VERSION: u16 = 3;

/// FIN: the sender will send nothing more on this stream.
pub const FLAG_FIN: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// Largest payload a frame may carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: HeaderBlock,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Settings are parsed only to be skipped: nothing here depends on them.
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type SPDY/3.1 does not define; the spec says to ignore it.
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("{0} frame is too short")]
    Short(&'static str),
    #[error(transparent)]
    Headers(#[from] HeaderError),
}

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

impl Frame {
    /// Serialises the frame; header blocks go through the connection's compressor, so frames
    /// must be encoded in the order they are written.
    pub fn encode(&self, compressor: &mut HeaderCompressor) -> Result<Bytes, HeaderError> {
        let mut out = BytesMut::new();
        match self {
            Frame::Data { stream_id, flags, data } => {
                out.put_u32(stream_id & STREAM_ID_MASK);
                out.put_u32((u32::from(*flags) << 24) | data.len() as u32);
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let block = compressor.compress(headers)?;
                let mut payload = BytesMut::new();
                payload.put_u32(stream_id & STREAM_ID_MASK);
                payload.put_u32(associated_to & STREAM_ID_MASK);
                payload.put_u8((priority & 0x7) << 5);
                payload.put_u8(0);
                payload.extend_from_slice(&block);
                control(&mut out, TYPE_SYN_STREAM, *flags, &payload);
            }
            Frame::SynReply { stream_id, flags, headers } => {
                let block = compressor.compress(headers)?;
                let mut payload = BytesMut::new();
                payload.put_u32(stream_id & STREAM_ID_MASK);
                payload.extend_from_slice(&block);
                control(&mut out, TYPE_SYN_REPLY, *flags, &payload);
            }
            Frame::Headers { stream_id, flags, headers } => {
                let block = compressor.compress(headers)?;
                let mut payload = BytesMut::new();
                payload.put_u32(stream_id & STREAM_ID_MASK);
                payload.extend_from_slice(&block);
                control(&mut out, TYPE_HEADERS, *flags, &payload);
            }
            Frame::RstStream { stream_id, status } => {
                control(&mut out, TYPE_RST_STREAM, 0, &pair(stream_id & STREAM_ID_MASK, *status));
            }
            Frame::Ping { id } => control(&mut out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good_stream_id, status } => {
                control(&mut out, TYPE_GOAWAY, 0, &pair(last_good_stream_id & STREAM_ID_MASK, *status));
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(&mut out, TYPE_WINDOW_UPDATE, 0, &pair(stream_id & STREAM_ID_MASK, *delta));
            }
            Frame::Settings => control(&mut out, TYPE_SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Unknown { kind } => control(&mut out, *kind, 0, &[]),
        }
        Ok(out.freeze())
    }

    /// Reads one frame; `Ok(None)` at a clean end of the connection between frames.
    pub async fn read<R: AsyncRead + Unpin>(
        reader: &mut R,
        decompressor: &mut HeaderDecompressor,
    ) -> Result<Option<Frame>, FrameError> {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        reader.read_exact(&mut head[1..]).await?;
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await?;
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream_id: word, flags, data: Bytes::from(payload) }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (word & 0xffff) as u16;
        let p = &payload[..];
        let frame = match kind {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(FrameError::Short("SYN_STREAM"));
                }
                Frame::SynStream {
                    stream_id: be32(&p[0..4]) & STREAM_ID_MASK,
                    associated_to: be32(&p[4..8]) & STREAM_ID_MASK,
                    priority: p[8] >> 5,
                    flags,
                    headers: decompressor.decompress(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => {
                if p.len() < 4 {
                    return Err(FrameError::Short("SYN_REPLY"));
                }
                Frame::SynReply {
                    stream_id: be32(&p[0..4]) & STREAM_ID_MASK,
                    flags,
                    headers: decompressor.decompress(&p[4..])?,
                }
            }
            TYPE_HEADERS => {
                if p.len() < 4 {
                    return Err(FrameError::Short("HEADERS"));
                }
                Frame::Headers {
                    stream_id: be32(&p[0..4]) & STREAM_ID_MASK,
                    flags,
                    headers: decompressor.decompress(&p[4..])?,
                }
            }
            TYPE_RST_STREAM => {
                if p.len() < 8 {
                    return Err(FrameError::Short("RST_STREAM"));
                }
                Frame::RstStream { stream_id: be32(&p[0..4]) & STREAM_ID_MASK, status: be32(&p[4..8]) }
            }
            TYPE_PING => {
                if p.len() < 4 {
                    return Err(FrameError::Short("PING"));
                }
                Frame::Ping { id: be32(&p[0..4]) }
            }
            TYPE_GOAWAY => {
                if p.len() < 4 {
                    return Err(FrameError::Short("GOAWAY"));
                }
                let status = if p.len() >= 8 { be32(&p[4..8]) } else { 0 };
                Frame::GoAway { last_good_stream_id: be32(&p[0..4]) & STREAM_ID_MASK, status }
            }
            TYPE_WINDOW_UPDATE => {
                if p.len() < 8 {
                    return Err(FrameError::Short("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: be32(&p[0..4]) & STREAM_ID_MASK,
                    delta: be32(&p[4..8]) & STREAM_ID_MASK,
                }
            }
            TYPE_SETTINGS => Frame::Settings,
            other => Frame::Unknown { kind: other },
        };
        Ok(Some(frame))
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    out.extend_from_slice(payload);
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..].copy_from_slice(&b.to_be_bytes());
    out
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: HeaderBlock(vec![("streamtype".into(), "error".into())]),
            },
            Frame::SynReply { stream_id: 1, flags: 0, headers: HeaderBlock::default() },
            Frame::Data { stream_id: 1, flags: FLAG_FIN, data: Bytes::from_static(b"hello") },
            Frame::RstStream { stream_id: 3, status: RST_CANCEL },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 5, status: 0 },
            Frame::WindowUpdate { stream_id: 1, delta: 1000 },
            Frame::Headers { stream_id: 1, flags: FLAG_FIN, headers: HeaderBlock(vec![("a".into(), "b".into())]) },
        ];
        let mut compressor = HeaderCompressor::new();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&f.encode(&mut compressor).unwrap());
        }
        let mut reader = &wire[..];
        let mut decompressor = HeaderDecompressor::new();
        for f in &frames {
            assert_eq!(Frame::read(&mut reader, &mut decompressor).await.unwrap().as_ref(), Some(f));
        }
        assert!(Frame::read(&mut reader, &mut decompressor).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn truncated_and_wrong_version_frames_are_errors() {
        let mut d = HeaderDecompressor::new();
        let mut short: &[u8] = &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 0];
        assert!(Frame::read(&mut short, &mut d).await.is_err());
        let mut v2: &[u8] = &[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(Frame::read(&mut v2, &mut d).await, Err(FrameError::Version(2))));
        let mut cut: &[u8] = &[0x00, 0x00, 0x00, 0x01, 0, 0, 0, 9, 1, 2];
        assert!(Frame::read(&mut cut, &mut d).await.is_err());
    }
}
