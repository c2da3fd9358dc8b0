//! `/exec/{ns}/{pod}/{container}?command=…&stdin&stdout&stderr&tty` and
//! `/attach/{ns}/{pod}/{container}?stdin&stdout&stderr&tty` over a WebSocket channel protocol
//! ([`crate::channel`]), or over SPDY ([`crate::exec_spdy`]). Both are the same session on the
//! wire; exec starts a new process, attach joins the container's own.
//!
//! As kubelet does, the upgrade is answered first and every failure after it — the pod or
//! container missing, the command failing to start, a non-zero exit — is reported on the
//! error channel, where kubectl turns it into its message and exit code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::channel::{self, ChannelProtocol};
use crate::query::Query;
use crate::runtime::{ExecRequest, ExecSession, ExitOutcome, PodRef, PodRuntime, RuntimeError, TerminalSize};
use crate::server::{text, Body};
use crate::spdy;
use crate::websocket::{self, Socket};

/// How long output may keep flowing after the process exited (a background child holding
/// stdout open must not keep the session alive forever).
pub(crate) const OUTPUT_DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What a streaming session joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A new process in the container (`command`).
    Exec,
    /// The container's main process.
    Attach,
}

impl SessionKind {
    /// Starts the session in the runtime.
    pub(crate) async fn start(
        self,
        runtime: &dyn PodRuntime,
        pod: &PodRef,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        match self {
            SessionKind::Exec => runtime.exec(pod, container, request).await,
            SessionKind::Attach => runtime.attach(pod, container, request).await,
        }
    }
}

/// Reads the exec or attach parameters as kubelet does.
pub fn parse_request(query: &Query, kind: SessionKind) -> Result<ExecRequest, String> {
    let command = query.all("command");
    if command.is_empty() && kind == SessionKind::Exec {
        return Err("you must specify at least one command for the container".into());
    }
    let tty = query.flag("tty");
    let request = ExecRequest {
        command,
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout"),
        // A terminal merges stderr into stdout, as kubelet ignores stderr with a tty.
        stderr: query.flag("stderr") && !tty,
        tty,
    };
    if !request.stdin && !request.stdout && !request.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    Ok(request)
}

pub async fn serve(
    runtime: Arc<dyn PodRuntime>,
    kind: SessionKind,
    pod: PodRef,
    container: String,
    query: &Query,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let request = match parse_request(query, kind) {
        Ok(r) => r,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    if !websocket::is_websocket_upgrade(req.headers()) {
        if !spdy::upgrade::is_spdy_upgrade(req.headers()) {
            return text(StatusCode::BAD_REQUEST, "exec needs an upgrade to a WebSocket or to SPDY/3.1");
        }
        let protocol = match spdy::upgrade::negotiate(req.headers(), crate::exec_spdy::PROTOCOLS) {
            Ok(p) => p,
            Err(refusal) => return *refusal,
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    crate::exec_spdy::run(io, protocol, runtime, kind, pod, container, request).await;
                }
                Err(e) => tracing::debug!(error = %e, "exec SPDY upgrade failed"),
            }
        });
        return spdy::upgrade::switching_protocols(protocol);
    }
    let offered = websocket::offered_protocols(req.headers());
    let Some(protocol) = channel::negotiate(&offered) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "unable to negotiate a protocol: client offered {offered:?}, server supports {:?}",
                channel::supported_names()
            ),
        );
    };
    let Some(resp) = websocket::accept_response(req.headers(), protocol.name) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = websocket::from_upgraded(upgraded).await;
                run(socket, protocol, runtime, kind, pod, container, request).await;
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    resp
}

/// One exec session on an open WebSocket.
async fn run(
    socket: Socket,
    protocol: ChannelProtocol,
    runtime: Arc<dyn PodRuntime>,
    kind: SessionKind,
    pod: PodRef,
    container: String,
    request: ExecRequest,
) {
    let (mut sink, stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    // One task owns the sink so that output, status and close go out in order.
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        let _ = sink.send(websocket::normal_close()).await;
        let _ = sink.close().await;
    });
    // Tell the client the streams are ready: an empty message on the lowest channel it reads.
    let ready_channel = if request.stdout {
        channel::STDOUT
    } else if request.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    let _ = out_tx.send(protocol.encode(ready_channel, &[])).await;

    // The client is read from start to end, whatever happens to the process: its stdin and
    // resizes are queued for the process, and reading on until its close reply means we never
    // close a socket with unread data (which would reset the connection under our last frames).
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(4);
    let mut reader = tokio::spawn(read_client(stream, protocol, stdin_tx, resize_tx));

    let command = request.command.clone();
    let outcome = match kind.start(runtime.as_ref(), &pod, &container, request).await {
        Ok(session) => match pump(session, stdin_rx, resize_rx, &mut reader, protocol, &out_tx).await {
            Some(outcome) => Ok(outcome),
            None => return,
        },
        Err(e) => Err(e),
    };
    if let Some(message) = error_message(protocol, &command, outcome) {
        let _ = out_tx.send(protocol.encode(channel::ERROR, &message)).await;
    }
    drop(out_tx);
    let _ = writer.await;
    if tokio::time::timeout(CLOSE_REPLY_TIMEOUT, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// How long to wait for the client's reply to our close message.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Moves bytes between the client and the process until it exits and its output is drained.
/// Returns None when the client went away first (the session is then dropped, which tells the
/// runtime nobody waits for the process any more).
async fn pump(
    session: ExecSession,
    mut stdin_rx: mpsc::Receiver<Bytes>,
    mut resize_rx: mpsc::Receiver<TerminalSize>,
    reader: &mut tokio::task::JoinHandle<()>,
    protocol: ChannelProtocol,
    out: &mpsc::Sender<Message>,
) -> Option<ExitOutcome> {
    let ExecSession { stdin, stdout, stderr, resize, mut exit } = session;
    let stdin_task = tokio::spawn(async move {
        let Some(mut stdin) = stdin else { return };
        while let Some(chunk) = stdin_rx.recv().await {
            if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
        }
        // The client closed stdin (v5 close signal) or left.
        let _ = stdin.shutdown().await;
    });
    let resize_task = tokio::spawn(async move {
        let Some(resize) = resize else { return };
        while let Some(size) = resize_rx.recv().await {
            let _ = resize.send(size).await;
        }
    });
    let outputs = async {
        futures::join!(
            copy_output(stdout, channel::STDOUT, protocol, out.clone()),
            copy_output(stderr, channel::STDERR, protocol, out.clone())
        )
    };
    tokio::pin!(outputs);
    let outcome = tokio::select! {
        outcome = &mut exit => {
            // Output still in the pipes belongs before the status.
            let _ = tokio::time::timeout(OUTPUT_DRAIN_AFTER_EXIT, &mut outputs).await;
            Some(outcome)
        }
        _ = &mut outputs => {
            tokio::select! {
                outcome = &mut exit => Some(outcome),
                _ = &mut *reader => None,
            }
        }
        _ = &mut *reader => None,
    };
    stdin_task.abort();
    resize_task.abort();
    outcome
}

async fn copy_output(
    source: Option<Box<dyn AsyncRead + Send + Unpin>>,
    channel: u8,
    protocol: ChannelProtocol,
    out: mpsc::Sender<Message>,
) {
    let Some(mut source) = source else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match source.read(&mut buf).await {
            // A pty master reports EIO once the terminal's last user exits: that is its EOF.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(protocol.encode(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads client messages until the connection ends: stdin bytes, terminal resizes, the v5
/// close signal. Dropping `stdin` tells the process its input ended; a consumer that went away
/// only means later input is discarded.
async fn read_client(
    mut stream: SplitStream<Socket>,
    protocol: ChannelProtocol,
    stdin: mpsc::Sender<Bytes>,
    resize: mpsc::Sender<TerminalSize>,
) {
    let mut stdin = Some(stdin);
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_close() {
            break;
        }
        let Some((channel, data)) = protocol.decode(msg) else { continue };
        match channel {
            channel::STDIN => {
                if let Some(tx) = &stdin {
                    if tx.send(data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            channel::RESIZE => {
                if let Some(size) = parse_resize(&data) {
                    let _ = resize.try_send(size);
                }
            }
            channel::CLOSE if protocol.close_signal && data.first() == Some(&channel::STDIN) => stdin = None,
            _ => {}
        }
    }
}

/// `{"Width":80,"Height":24}` (Go field names, as client-go sends them).
pub(crate) fn parse_resize(data: &Bytes) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v.get(k).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
    Some(TerminalSize { width: dim("Width")?, height: dim("Height")? })
}

/// What goes on the error channel for an outcome: a Status (v4+) or plain text (earlier),
/// nothing for success on the old protocols.
pub(crate) fn error_message(
    protocol: ChannelProtocol,
    command: &[String],
    outcome: Result<ExitOutcome, RuntimeError>,
) -> Option<Vec<u8>> {
    let status = exec_status(command, outcome);
    if protocol.status_errors {
        return Some(serde_json::to_vec(&status).unwrap_or_default());
    }
    if status["status"] == "Success" {
        return None;
    }
    status["message"].as_str().map(|m| m.as_bytes().to_vec())
}

/// The `metav1.Status` kubelet reports for an exec outcome.
pub fn exec_status(command: &[String], outcome: Result<ExitOutcome, RuntimeError>) -> Value {
    let code = match outcome {
        Ok(ExitOutcome::Code(0)) => return json!({"metadata": {}, "status": "Success"}),
        Ok(ExitOutcome::Code(code)) => code,
        // A signalled process reports 128+signal, as shells and container runtimes do.
        Ok(ExitOutcome::Signal(signal)) => 128 + signal,
        Ok(ExitOutcome::Error(message)) | Err(RuntimeError::Internal(message)) => {
            let message = format!("error executing command in container: {message}");
            return json!({
                "metadata": {}, "status": "Failure", "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500,
            });
        }
        Err(e @ (RuntimeError::PodNotFound(_) | RuntimeError::ContainerNotFound(_))) => {
            return json!({"metadata": {}, "status": "Failure", "message": e.to_string(), "reason": "NotFound", "code": 404});
        }
        Err(RuntimeError::BadRequest(message)) => {
            return json!({"metadata": {}, "status": "Failure", "message": message, "reason": "BadRequest", "code": 400});
        }
    };
    // Exit codes travel as an 8-bit value (client-go parses them as uint8).
    let code = code.rem_euclid(256);
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_become_the_statuses_client_go_decodes() {
        let cmd = ["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(exec_status(&cmd, Ok(ExitOutcome::Code(0)))["status"], "Success");
        let failed = exec_status(&cmd, Ok(ExitOutcome::Code(3)));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let killed = exec_status(&cmd, Ok(ExitOutcome::Signal(9)));
        assert_eq!(killed["details"]["causes"][0]["message"], "137");
        let missing = exec_status(&cmd, Err(RuntimeError::ContainerNotFound("c".into())));
        assert_eq!((missing["reason"].as_str(), missing["code"].as_u64()), (Some("NotFound"), Some(404)));
        let broken = exec_status(&cmd, Ok(ExitOutcome::Error("no such file".into())));
        assert_eq!(broken["message"], "Internal error occurred: error executing command in container: no such file");
    }

    #[test]
    fn old_protocols_get_plain_text_errors_and_nothing_on_success() {
        let v1 = channel::negotiate(&["channel.k8s.io".to_string()]).unwrap();
        let cmd = ["false".to_string()];
        assert_eq!(error_message(v1, &cmd, Ok(ExitOutcome::Code(0))), None);
        let text = error_message(v1, &cmd, Ok(ExitOutcome::Code(1))).unwrap();
        assert!(String::from_utf8(text).unwrap().starts_with("command terminated with non-zero exit code"));
    }

    #[test]
    fn exec_parameters_follow_kubelet() {
        let q = Query::parse(Some("command=ls&command=-l&stdout=1&stderr=1&tty=1"));
        let r = parse_request(&q, SessionKind::Exec).unwrap();
        assert_eq!(r.command, ["ls", "-l"]);
        assert!(r.tty && r.stdout && !r.stderr, "a terminal drops stderr");
        assert!(parse_request(&Query::parse(Some("stdout=1")), SessionKind::Exec).is_err());
        assert!(parse_request(&Query::parse(Some("command=ls")), SessionKind::Exec).is_err());
        // Attach joins the container's own process: no command, but still at least one stream.
        let attach = parse_request(&Query::parse(Some("stdin=1&stdout=1")), SessionKind::Attach).unwrap();
        assert!(attach.command.is_empty() && attach.stdin && attach.stdout);
        assert!(parse_request(&Query::parse(Some("tty=1")), SessionKind::Attach).is_err());
        assert_eq!(
            parse_resize(&Bytes::from_static(br#"{"Width":80,"Height":24}"#)),
            Some(TerminalSize { width: 80, height: 24 })
        );
        assert_eq!(parse_resize(&Bytes::from_static(b"{}")), None);
    }
}
