//! SPDY/3 header blocks: a list of (name, value) pairs, zlib-compressed with one compression
//! context per direction for the whole connection, primed with the dictionary from the SPDY/3
//! specification (section 2.6.10.1).

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Name/value pairs of one header block. Names are lower case on the wire; a value holding
/// several values separates them with NUL bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock(pub Vec<(String, String)>);

impl HeaderBlock {
    /// The value of `name` (compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Serialises the uncompressed block: a 32-bit count, then length-prefixed names and values.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            let name = name.to_ascii_lowercase();
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block.
    pub fn decode(mut bytes: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let count = take_u32(&mut bytes)?;
        let mut pairs = Vec::new();
        for _ in 0..count {
            let name = take_string(&mut bytes)?;
            let value = take_string(&mut bytes)?;
            pairs.push((name, value));
        }
        Ok(HeaderBlock(pairs))
    }
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, rest) = bytes.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *bytes = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(bytes: &mut &[u8]) -> Result<String, HeaderError> {
    let len = take_u32(bytes)? as usize;
    if bytes.len() < len {
        return Err(HeaderError::Truncated);
    }
    let (s, rest) = bytes.split_at(len);
    *bytes = rest;
    String::from_utf8(s.to_vec()).map_err(|_| HeaderError::NotUtf8)
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header block is truncated")]
    Truncated,
    #[error("header name or value is not UTF-8")]
    NotUtf8,
    #[error("header block is larger than allowed")]
    TooLarge,
    #[error("header block compression: {0}")]
    Zlib(String),
}

/// Words of the SPDY/3 dictionary that are stored with a 32-bit length prefix each.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, stored as plain text after the prefixed words.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized",
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
);

/// The SPDY/3 zlib dictionary (1423 bytes; its Adler-32, the id zlib streams carry, is 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// Largest decompressed header block accepted (a guard against zlib bombs).
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Compresses the header blocks we send, one context for the connection.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        // Setting the dictionary before any data is valid for zlib-rs; it cannot fail here.
        let _ = zlib.set_dictionary(dictionary());
        HeaderCompressor { zlib }
    }

    /// Compresses one block, ending with a sync flush so the peer can decode it on its own.
    pub fn compress(&mut self, block: &HeaderBlock) -> Result<Vec<u8>, HeaderError> {
        let input = block.encode();
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            out.reserve(256);
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            consumed += (self.zlib.total_in() - before_in) as usize;
            // Done when all input is in and zlib left spare room (nothing more to flush).
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses the header blocks we receive, one context for the connection.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        HeaderDecompressor { zlib: Decompress::new(true) }
    }

    /// Decompresses and parses one block (the compressed bytes of one frame).
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.zlib.total_in();
            let result = self.zlib.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - before_in) as usize;
            match result {
                // The peer's first block names the preset dictionary: load it and go on.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(dictionary()).map_err(|e| HeaderError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
                Ok(Status::StreamEnd) => break,
                // All input used and room left over: zlib has emitted everything it can.
                Ok(_) if consumed == compressed.len() && out.len() < out.capacity() => break,
                // Otherwise zlib stopped for lack of output room; the loop grows the buffer.
                Ok(_) => {}
            }
        }
        HeaderBlock::decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_the_specification() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // Adler-32 of the dictionary: the DICTID every SPDY/3 peer's first header block carries.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in d {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_round_trip_across_one_context() {
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        for i in 0..5 {
            let block = HeaderBlock(vec![
                ("streamtype".into(), "data".into()),
                ("port".into(), "8080".into()),
                ("requestid".into(), i.to_string()),
            ]);
            let wire = c.compress(&block).unwrap();
            assert_eq!(d.decompress(&wire).unwrap(), block);
        }
        assert_eq!(d.decompress(&c.compress(&HeaderBlock::default()).unwrap()).unwrap(), HeaderBlock::default());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(b"\x78\xbb\x00\x00\x00\x00garbage").is_err());
        assert!(HeaderBlock::decode(&[0, 0, 0, 5, 0, 0]).is_err());
    }
}
