//! Exec over SPDY (remotecommand `v4.channel.k8s.io` … `channel.k8s.io`): what kubectl falls
//! back to when the WebSocket upgrade fails, or uses with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`.
//!
//! The client opens one SPDY stream per standard stream, named by its `streamType` header
//! (`error`, `stdin`, `stdout`, `stderr`, `resize`); the session starts once every stream the
//! request asked for exists. Stdin ends with the stream's FIN; the outcome goes on `error`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::channel::ChannelProtocol;
use crate::exec::SessionKind;
use crate::exec::{error_message, parse_resize, OUTPUT_DRAIN_AFTER_EXIT};
use crate::runtime::{ExecRequest, ExecSession, ExitOutcome, PodRef, PodRuntime};
use crate::spdy::{self, IncomingStream, StreamWriter};

/// The remotecommand versions served, newest first.
pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// How long the client has to open its streams (kubelet's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

const STREAM_TYPES: &[&str] = &["error", "stdin", "stdout", "stderr", "resize"];

/// The streams of one exec session.
#[derive(Default)]
struct Streams {
    error: Option<IncomingStream>,
    stdin: Option<IncomingStream>,
    stdout: Option<IncomingStream>,
    stderr: Option<IncomingStream>,
    resize: Option<IncomingStream>,
}

impl Streams {
    fn complete(&self, request: &ExecRequest, with_resize: bool) -> bool {
        self.error.is_some()
            && (!request.stdin || self.stdin.is_some())
            && (!request.stdout || self.stdout.is_some())
            && (!request.stderr || self.stderr.is_some())
            && (!(request.tty && with_resize) || self.resize.is_some())
    }
}

/// Runs an exec session on an upgraded SPDY connection speaking `protocol`.
pub async fn run<IO>(
    io: IO,
    protocol: &'static str,
    runtime: Arc<dyn PodRuntime>,
    kind: SessionKind,
    pod: PodRef,
    container: String,
    request: ExecRequest,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let mut session = spdy::serve_session(io, |headers| match headers.get("streamtype") {
        Some(t) if STREAM_TYPES.contains(&t) => Ok(()),
        other => Err(format!("invalid stream type {other:?}")),
    });
    // The resize stream exists from v3 on; v4 reports errors as Status objects.
    let with_resize = matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let errors =
        ChannelProtocol { name: protocol, status_errors: protocol == PROTOCOLS[0], close_signal: false, base64: false };
    let mut streams = Streams::default();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !streams.complete(&request, with_resize) {
        let stream = tokio::select! {
            s = session.streams.recv() => match s { Some(s) => s, None => return },
            _ = &mut deadline => {
                tracing::debug!("exec client did not open its streams in time");
                return;
            }
        };
        let slot = match stream.headers.get("streamtype") {
            Some("error") => &mut streams.error,
            Some("stdin") => &mut streams.stdin,
            Some("stdout") => &mut streams.stdout,
            Some("stderr") => &mut streams.stderr,
            _ => &mut streams.resize,
        };
        *slot = Some(stream);
    }
    let Some(error) = streams.error.take() else { return };
    let command = request.command.clone();
    let outcome = match kind.start(runtime.as_ref(), &pod, &container, request).await {
        Ok(exec) => match pump(exec, &mut streams, session.closed.clone()).await {
            Some(outcome) => Ok(outcome),
            None => return,
        },
        Err(e) => Err(e),
    };
    if let Some(message) = error_message(errors, &command, outcome) {
        let _ = error.writer.send(&message).await;
    }
    let _ = error.writer.finish().await;
    // The client closes the connection once it has read everything; wait for that so the
    // frames queued above are written before the session is dropped.
    let mut closed = session.closed.clone();
    let _ = tokio::time::timeout(STREAM_CREATION_TIMEOUT, closed.wait_for(|c| *c)).await;
}

/// Moves bytes until the process exits and its output is drained; None if the client left.
async fn pump(
    exec: ExecSession,
    streams: &mut Streams,
    mut closed: tokio::sync::watch::Receiver<bool>,
) -> Option<ExitOutcome> {
    let ExecSession { stdin, stdout, stderr, resize, mut exit } = exec;
    let mut tasks = Vec::new();
    if let (Some(mut w), Some(mut s)) = (stdin, streams.stdin.take()) {
        tasks.push(tokio::spawn(async move {
            while let Some(chunk) = s.data.recv().await {
                if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        }));
    }
    if let (Some(tx), Some(mut s)) = (resize, streams.resize.take()) {
        tasks.push(tokio::spawn(async move {
            // Sizes arrive as JSON objects one after another, split anywhere.
            let mut pending = BytesMut::new();
            while let Some(chunk) = s.data.recv().await {
                pending.extend_from_slice(&chunk);
                let mut objects = serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
                let mut used = 0;
                while let Some(Ok(value)) = objects.next() {
                    used = objects.byte_offset();
                    if let Some(size) = parse_resize(&bytes::Bytes::from(value.to_string())) {
                        let _ = tx.send(size).await;
                    }
                }
                pending.advance(used);
            }
        }));
    }
    let out_writer = streams.stdout.as_ref().map(|s| s.writer.clone());
    let err_writer = streams.stderr.as_ref().map(|s| s.writer.clone());
    let outputs = async { futures::join!(copy_output(stdout, out_writer), copy_output(stderr, err_writer)) };
    tokio::pin!(outputs);
    let gone = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    tokio::pin!(gone);
    let outcome = tokio::select! {
        outcome = &mut exit => {
            let _ = tokio::time::timeout(OUTPUT_DRAIN_AFTER_EXIT, &mut outputs).await;
            Some(outcome)
        }
        _ = &mut outputs => tokio::select! {
            outcome = &mut exit => Some(outcome),
            _ = &mut gone => None,
        },
        _ = &mut gone => None,
    };
    for task in tasks {
        task.abort();
    }
    outcome
}

/// Copies a process output to its stream and half-closes the stream at the end.
async fn copy_output(source: Option<Box<dyn AsyncRead + Send + Unpin>>, writer: Option<StreamWriter>) {
    let Some(writer) = writer else { return };
    if let Some(mut source) = source {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match source.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.send(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = writer.finish().await;
}
