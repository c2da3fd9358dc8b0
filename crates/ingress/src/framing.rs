//! Request-smuggling guard: finds HTTP/1.1 requests that carry both `Content-Length` and
//! `Transfer-Encoding`.
//!
//! hyper reads such a request as chunked, drops `Content-Length` from the headers it hands
//! over and closes the connection after the response (RFC 9112 §6.1), so the handler cannot
//! tell that the conflict was there. ingress-nginx (and the issue) answer it with 400 instead.
//! [`Scanned`] wraps a client connection and follows the request framing of the bytes hyper
//! reads: it parses each request head (with httparse, as hyper does), skips its body by
//! `Content-Length` or chunked framing, and records the ordinal of a head with both headers.
//! The proxy counts the requests it handles on the connection and answers that one with 400.
//!
//! When the scanner cannot follow the stream (an HTTP/2 preface, an upgrade, a head hyper
//! would reject anyway, more headers than it parses) it stops, which leaves hyper's own
//! handling (chunked wins, connection closed) in place: it fails safe, never blocks a request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::chunked::{ChunkedFollower, Followed};

/// Headers parsed per request head; a head with more stops the scanner (hyper's limit is 100).
const MAX_HEADERS: usize = 100;
/// A partial head is kept up to this size; beyond it hyper answers 431 and the scanner stops.
const MAX_PARTIAL_HEAD: usize = 64 * 1024;

/// What the scanner learnt about a connection, shared with the request handler.
#[derive(Debug, Default)]
pub struct FramingReport {
    /// 1-based ordinal of the first request head with both Content-Length and
    /// Transfer-Encoding; 0 when none was seen.
    conflict_at: AtomicU64,
    /// Requests handled so far (counted by [`FramingReport::next_request_conflicts`]).
    handled: AtomicU64,
}

impl FramingReport {
    /// Counts one more request handled on this connection and tells whether it is the one
    /// whose head had both framing headers. Call once per request, in order.
    pub fn next_request_conflicts(&self) -> bool {
        let n = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        self.conflict_at.load(Ordering::Relaxed) == n
    }
}

/// Where the scanner is in the request stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting (more of) a request head.
    Head,
    /// Inside a body of known length: bytes left.
    Fixed(u64),
    /// Inside a chunked body.
    Chunked(ChunkedFollower),
    /// Not following any more.
    Off,
}

/// Follows the framing of the request stream of one connection.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// Bytes of a head split across reads.
    partial: Vec<u8>,
    heads: u64,
    report: Arc<FramingReport>,
}

impl Scanner {
    pub fn new(report: Arc<FramingReport>) -> Scanner {
        Scanner { state: State::Head, partial: Vec::new(), heads: 0, report }
    }

    /// Feeds bytes as they were read from the client.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            data = match self.state {
                State::Off => return,
                State::Head => self.head(data),
                State::Fixed(left) => {
                    let n = left.min(data.len() as u64);
                    self.state = if n == left { State::Head } else { State::Fixed(left - n) };
                    &data[n as usize..]
                }
                State::Chunked(mut follower) => match follower.feed(data) {
                    Followed::More => {
                        self.state = State::Chunked(follower);
                        return;
                    }
                    Followed::End(n) => {
                        self.state = State::Head;
                        &data[n..]
                    }
                    Followed::Invalid => {
                        self.state = State::Off;
                        return;
                    }
                },
            };
        }
    }

    /// Consumes a request head from `data` (or keeps a partial one); returns what follows it.
    fn head<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.partial.is_empty() {
            match self.parse_head(data) {
                Some(Some(len)) => return &data[len..],
                Some(None) if data.len() <= MAX_PARTIAL_HEAD => self.partial.extend_from_slice(data),
                _ => self.state = State::Off,
            }
            return &[];
        }
        let before = self.partial.len();
        self.partial.extend_from_slice(data);
        let joined = std::mem::take(&mut self.partial);
        match self.parse_head(&joined) {
            Some(Some(len)) => &data[len.saturating_sub(before).min(data.len())..],
            Some(None) if joined.len() <= MAX_PARTIAL_HEAD => {
                self.partial = joined;
                &[]
            }
            _ => {
                self.state = State::Off;
                &[]
            }
        }
    }

    /// Parses a head at the start of `data`: `Some(Some(len))` when complete (state set for
    /// its body), `Some(None)` when incomplete, `None` when the scanner must stop.
    fn parse_head(&mut self, data: &[u8]) -> Option<Option<usize>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(data) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Some(None),
            Err(_) => return None,
        };
        if request.version != Some(1) || request.method == Some("CONNECT") {
            return None;
        }
        self.heads += 1;
        let mut content_length = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).ok()?;
                content_length = Some(text.trim().parse::<u64>().ok()?);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                let text = std::str::from_utf8(h.value).ok()?;
                chunked = text.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                // The connection may stop being HTTP/1.1 after this request.
                return None;
            }
        }
        if transfer_encoding && content_length.is_some() {
            let _ = self.report.conflict_at.compare_exchange(0, self.heads, Ordering::Relaxed, Ordering::Relaxed);
            // hyper closes the connection after this request: nothing more to follow.
            self.state = State::Off;
            return Some(Some(len));
        }
        self.state = match (transfer_encoding, chunked, content_length) {
            (true, true, _) => State::Chunked(ChunkedFollower::new()),
            // hyper rejects a final encoding other than chunked.
            (true, false, _) => return None,
            (false, _, Some(0) | None) => State::Head,
            (false, _, Some(n)) => State::Fixed(n),
        };
        Some(Some(len))
    }
}

/// A client connection whose incoming bytes pass through a [`Scanner`].
pub struct Scanned<I> {
    inner: I,
    scanner: Scanner,
    /// Bytes read from `inner` before (by the fast path), read again first.
    prefix: Bytes,
}

impl<I> Scanned<I> {
    pub fn new(inner: I, report: Arc<FramingReport>) -> Scanned<I> {
        Scanned { inner, scanner: Scanner::new(report), prefix: Bytes::new() }
    }

    /// Reads `prefix` before anything more from the connection (bytes the fast path read
    /// before handing the connection over).
    pub fn with_prefix(mut self, prefix: Bytes) -> Scanned<I> {
        self.prefix = prefix;
        self
    }

    /// Stops scanning (for a connection that speaks HTTP/2).
    pub fn stop(&mut self) {
        self.scanner.state = State::Off;
    }

    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Scanned<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = if this.prefix.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            Poll::Ready(Ok(()))
        };
        if let Poll::Ready(Ok(())) = result {
            if this.scanner.state != State::Off {
                this.scanner.feed(&buf.filled()[before..]);
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Scanned<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> (u64, State) {
        let report = Arc::new(FramingReport::default());
        let mut scanner = Scanner::new(report.clone());
        for chunk in chunks {
            scanner.feed(chunk);
        }
        (report.conflict_at.load(Ordering::Relaxed), scanner.state)
    }

    #[test]
    fn finds_the_conflicting_head_after_bodies_of_both_kinds() {
        let stream: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 39\r\n\r\nGET /fake HTTP/1.1\r\nContent-Length: 1\r\n\
POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n\
POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(scan(&[stream]), (4, State::Off));
        // The same bytes one at a time (heads and chunk lines split across reads).
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytes).0, 4);
        // Header order does not matter.
        assert_eq!(scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"]).0, 1);
    }

    #[test]
    fn ordinary_traffic_has_no_conflict() {
        let (conflict, state) = scan(&[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        ]);
        assert_eq!((conflict, state), (0, State::Head));
    }

    #[test]
    fn stops_where_it_cannot_follow() {
        assert_eq!(scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).1, State::Off);
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"]).1, State::Off);
        assert_eq!(scan(&[b"GARBAGE\r\n\r\n"]).1, State::Off);
        assert_eq!(scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]).1, State::Off);
    }

    /// A prefix (bytes the fast path read) is read first, and scanned like the rest.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_and_scans_the_prefix_first() {
        use tokio::io::AsyncReadExt;
        let report = Arc::new(FramingReport::default());
        let rest: &[u8] = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let prefix = Bytes::from_static(b"POST / HTTP/1.1\r\nHost: a\r\n");
        let mut scanned = Scanned::new(rest, report.clone()).with_prefix(prefix);
        let mut all = Vec::new();
        scanned.read_to_end(&mut all).await.expect("read");
        assert!(all.starts_with(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"));
        assert!(report.next_request_conflicts(), "the head split across prefix and stream was scanned");
    }

    #[test]
    fn report_matches_the_request_ordinal() {
        let report = FramingReport::default();
        report.conflict_at.store(2, Ordering::Relaxed);
        assert!(!report.next_request_conflicts());
        assert!(report.next_request_conflicts());
        assert!(!report.next_request_conflicts());
    }
}
