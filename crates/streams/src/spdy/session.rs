//! One SPDY connection, server side: a reader task that accepts the streams the client opens
//! and routes their data, and a writer task that owns the socket's write half and the header
//! compressor (so frames leave in the order they were queued).

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::frame::{self, Frame, FLAG_FIN};
use super::headers::{HeaderBlock, HeaderCompressor, HeaderDecompressor};

/// Largest DATA frame we send (what Go's io.Copy buffers are, so peers see familiar sizes).
const MAX_DATA_FRAME: usize = 32 * 1024;
/// Chunks buffered per stream between the reader and the stream's consumer.
const STREAM_BUFFER: usize = 16;
/// Frames buffered for the writer task.
const WRITE_BUFFER: usize = 64;

/// A stream the client opened and we accepted (its SYN_REPLY is already queued).
pub struct IncomingStream {
    pub id: u32,
    pub headers: HeaderBlock,
    /// What the client sends on the stream; ends at its FIN, at RST_STREAM or when the
    /// connection ends.
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// Sends on one stream. Errors mean the connection is gone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    frames: mpsc::Sender<Frame>,
}

/// The connection is closed; nothing more can be sent.
#[derive(Debug, thiserror::Error)]
#[error("SPDY connection closed")]
pub struct Closed;

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends bytes as DATA frames.
    pub async fn send(&self, data: &[u8]) -> Result<(), Closed> {
        for chunk in data.chunks(MAX_DATA_FRAME) {
            let frame = Frame::Data { stream_id: self.id, flags: 0, data: Bytes::copy_from_slice(chunk) };
            self.frames.send(frame).await.map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN.
    pub async fn finish(&self) -> Result<(), Closed> {
        let frame = Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Bytes::new() };
        self.frames.send(frame).await.map_err(|_| Closed)
    }

    /// Aborts the stream.
    pub async fn reset(&self, status: u32) -> Result<(), Closed> {
        self.frames.send(Frame::RstStream { stream_id: self.id, status }).await.map_err(|_| Closed)
    }
}

/// A running connection.
pub struct Session {
    /// Accepted streams, in the order the client opened them; ends with the connection.
    pub streams: mpsc::Receiver<IncomingStream>,
    /// Becomes true when the connection is gone (read end or write failure).
    pub closed: watch::Receiver<bool>,
}

/// Starts serving a SPDY connection on `io` (already upgraded). `accept` vets each new
/// stream's headers; a refused stream gets RST_STREAM(REFUSED_STREAM) and never reaches
/// [`Session::streams`].
pub fn serve_session<IO>(io: IO, accept: impl Fn(&HeaderBlock) -> Result<(), String> + Send + 'static) -> Session
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let (frames_tx, frames_rx) = mpsc::channel(WRITE_BUFFER);
    let (streams_tx, streams_rx) = mpsc::channel(WRITE_BUFFER);
    let (closed_tx, closed_rx) = watch::channel(false);
    let closed_tx = std::sync::Arc::new(closed_tx);
    tokio::spawn(write_loop(writer, frames_rx, closed_tx.clone()));
    tokio::spawn(async move {
        if let Err(e) = read_loop(reader, frames_tx, streams_tx, accept).await {
            tracing::debug!(error = %e, "SPDY connection ended with an error");
        }
        let _ = closed_tx.send(true);
    });
    Session { streams: streams_rx, closed: closed_rx }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Frame>,
    closed: std::sync::Arc<watch::Sender<bool>>,
) {
    let mut compressor = HeaderCompressor::new();
    while let Some(frame) = frames.recv().await {
        let bytes = match frame.encode(&mut compressor) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode SPDY frame");
                break;
            }
        };
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
        // Flush when nothing else is queued, so bursts go out together.
        if frames.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    let _ = closed.send(true);
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    frames: mpsc::Sender<Frame>,
    streams: mpsc::Sender<IncomingStream>,
    accept: impl Fn(&HeaderBlock) -> Result<(), String>,
) -> Result<(), frame::FrameError> {
    let mut decompressor = HeaderDecompressor::new();
    // Client streams still open for sending, by id.
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut last_id = 0u32;
    let mut going_away = false;
    let send = |frame: Frame| {
        let frames = frames.clone();
        async move { frames.send(frame).await.is_ok() }
    };
    while let Some(frame) = Frame::read(&mut reader, &mut decompressor).await? {
        match frame {
            Frame::SynStream { stream_id, flags, headers, .. } => {
                // Client-initiated streams have odd, increasing ids.
                if stream_id % 2 == 0 || stream_id <= last_id {
                    send(Frame::RstStream { stream_id, status: frame::RST_PROTOCOL_ERROR }).await;
                    continue;
                }
                last_id = stream_id;
                if going_away {
                    send(Frame::RstStream { stream_id, status: frame::RST_REFUSED_STREAM }).await;
                    continue;
                }
                if let Err(reason) = accept(&headers) {
                    tracing::debug!(stream_id, %reason, "refusing SPDY stream");
                    send(Frame::RstStream { stream_id, status: frame::RST_REFUSED_STREAM }).await;
                    continue;
                }
                if !send(Frame::SynReply { stream_id, flags: 0, headers: HeaderBlock::default() }).await {
                    break;
                }
                let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
                if flags & FLAG_FIN == 0 {
                    open.insert(stream_id, data_tx);
                }
                let writer = StreamWriter { id: stream_id, frames: frames.clone() };
                let stream = IncomingStream { id: stream_id, headers, data: data_rx, writer };
                if streams.send(stream).await.is_err() {
                    break;
                }
            }
            Frame::Data { stream_id, flags, data } => {
                if let Some(tx) = open.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        // The consumer is gone; drop what the client still sends.
                        open.remove(&stream_id);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&stream_id);
                }
            }
            Frame::Headers { stream_id, flags, .. } => {
                if flags & FLAG_FIN != 0 {
                    open.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                open.remove(&stream_id);
            }
            Frame::Ping { id } => {
                send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => going_away = true,
            // Replies are for server-initiated streams, which we never open; settings and
            // windows only matter for flow control, which spdystream peers do not do.
            Frame::SynReply { .. } | Frame::Settings | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal client over an in-memory pipe: opens a stream, sends data, reads the echo.
    #[tokio::test]
    async fn accepts_streams_and_carries_data_both_ways() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut session = serve_session(server, |h| match h.get("streamtype") {
            Some("data") => Ok(()),
            _ => Err("unknown stream type".into()),
        });
        tokio::spawn(async move {
            while let Some(mut s) = session.streams.recv().await {
                tokio::spawn(async move {
                    while let Some(chunk) = s.data.recv().await {
                        let _ = s.writer.send(&chunk).await;
                    }
                    let _ = s.writer.finish().await;
                });
            }
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut c = HeaderCompressor::new();
        let mut d = HeaderDecompressor::new();
        let syn = |id: u32, kind: &str| Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: HeaderBlock(vec![("streamtype".into(), kind.into())]),
        };
        for f in [
            syn(1, "bogus"),
            syn(3, "data"),
            Frame::Ping { id: 9 },
            Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Bytes::from_static(b"ping-pong") },
        ] {
            wr.write_all(&f.encode(&mut c).unwrap()).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut echoed = Vec::new();
        loop {
            match Frame::read(&mut rd, &mut d).await.unwrap().unwrap() {
                Frame::Data { stream_id: 3, flags, data } => {
                    echoed.extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        break;
                    }
                }
                other => seen.push(other),
            }
        }
        assert_eq!(echoed, b"ping-pong");
        assert!(seen.contains(&Frame::RstStream { stream_id: 1, status: frame::RST_REFUSED_STREAM }));
        assert!(seen.contains(&Frame::SynReply { stream_id: 3, flags: 0, headers: HeaderBlock::default() }));
        assert!(seen.contains(&Frame::Ping { id: 9 }));
    }
}
