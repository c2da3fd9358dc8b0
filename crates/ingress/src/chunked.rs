//! Follows chunked transfer coding (RFC 9112 §7.1) byte by byte without decoding it: where
//! does a chunked body end?
//!
//! Two places need exactly that and nothing more: the request-smuggling guard
//! ([`crate::framing`]) skips chunked request bodies to find the next request head, and the
//! HTTP/1.1 fast path ([`crate::fast`]) passes chunked responses through unchanged and must
//! know where one ends to reuse the upstream connection. Neither needs the chunk data itself,
//! so the follower only counts.

/// The longest trailer line accepted (the same bound as a request head).
const MAX_TRAILER_LINE: usize = 64 * 1024;

/// Where the follower is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a chunk-size line: `size` so far, `digits` read, `in_ext` after a `;`.
    Size { size: u64, digits: u32, in_ext: bool },
    /// Chunk data: bytes left, then CRLF.
    Data(u64),
    /// The CRLF after chunk data (`seen_cr`).
    DataEnd { seen_cr: bool },
    /// The trailer section after the last chunk: `line_len` bytes of the current line.
    Trailers { line_len: usize },
}

/// What a [`ChunkedFollower::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Every byte fed belongs to the body, and the body goes on.
    More,
    /// The body ends after this many of the bytes fed (the rest belongs to what follows).
    End(usize),
    /// Not valid chunked coding.
    Invalid,
}

/// The framing state of one chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedFollower {
    position: Position,
}

impl Default for ChunkedFollower {
    fn default() -> Self {
        ChunkedFollower::new()
    }
}

impl ChunkedFollower {
    /// A follower at the start of a chunked body.
    pub fn new() -> ChunkedFollower {
        ChunkedFollower { position: Position::Size { size: 0, digits: 0, in_ext: false } }
    }

    /// Feeds the next bytes of the body. After `End` or `Invalid` the follower must not be
    /// fed again.
    pub fn feed(&mut self, data: &[u8]) -> Followed {
        let mut at = 0;
        while at < data.len() {
            if let Position::Data(left) = self.position {
                // Chunk data is skipped in one step, not byte by byte.
                let n = left.min((data.len() - at) as u64);
                at += n as usize;
                self.position = if n == left { Position::DataEnd { seen_cr: false } } else { Position::Data(left - n) };
                continue;
            }
            let b = data[at];
            at += 1;
            self.position = match self.position {
                Position::Size { size, digits, in_ext } => match b {
                    b'\n' if digits == 0 => return Followed::Invalid,
                    b'\n' if size == 0 => Position::Trailers { line_len: 0 },
                    b'\n' => Position::Data(size),
                    b'\r' => Position::Size { size, digits, in_ext },
                    _ if in_ext => Position::Size { size, digits, in_ext },
                    b';' | b' ' | b'\t' => Position::Size { size, digits, in_ext: true },
                    _ => match (char::from(b).to_digit(16), digits < 16) {
                        (Some(d), true) => {
                            Position::Size { size: size * 16 + u64::from(d), digits: digits + 1, in_ext }
                        }
                        _ => return Followed::Invalid,
                    },
                },
                Position::DataEnd { seen_cr } => match b {
                    b'\r' if !seen_cr => Position::DataEnd { seen_cr: true },
                    b'\n' => Position::Size { size: 0, digits: 0, in_ext: false },
                    _ => return Followed::Invalid,
                },
                Position::Trailers { line_len } => match b {
                    b'\n' if line_len == 0 => return Followed::End(at),
                    b'\n' => Position::Trailers { line_len: 0 },
                    b'\r' => Position::Trailers { line_len },
                    _ if line_len >= MAX_TRAILER_LINE => return Followed::Invalid,
                    _ => Position::Trailers { line_len: line_len + 1 },
                },
                // Handled above; kept as is.
                Position::Data(left) => Position::Data(left),
            };
        }
        Followed::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(chunks: &[&[u8]]) -> Vec<Followed> {
        let mut follower = ChunkedFollower::new();
        chunks.iter().map(|c| follower.feed(c)).collect()
    }

    #[test]
    fn finds_the_end_in_one_piece_or_byte_by_byte() {
        let body: &[u8] = b"5;ext=1\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        assert_eq!(follow(&[body]), [Followed::End(body.len() - 4)]);
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let results = follow(&bytes[..body.len() - 4]);
        assert!(results[..results.len() - 1].iter().all(|r| *r == Followed::More));
        assert_eq!(results.last(), Some(&Followed::End(1)));
        assert_eq!(follow(&[b"0\r\n\r\n"]), [Followed::End(5)]);
        assert_eq!(follow(&[b"3\r\nab", b"c\r\n0\r\n", b"\r\n"]), [Followed::More, Followed::More, Followed::End(2)]);
    }

    #[test]
    fn rejects_what_is_not_chunked() {
        assert_eq!(follow(&[b"zz\r\n"]), [Followed::Invalid]);
        assert_eq!(follow(&[b"\r\n"]), [Followed::Invalid]);
        assert_eq!(follow(&[b"3\r\nabcX"]), [Followed::Invalid]);
        assert_eq!(follow(&[b"11111111111111111\r\n"]), [Followed::Invalid], "more than 16 hex digits");
    }
}
