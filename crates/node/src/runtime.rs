//! The kubelet API's view of this node ([`skiff_streams::PodRuntime`]): `kubectl exec` runs
//! the command inside the pod's sandbox (with a pty for `-t`), `kubectl port-forward`
//! connects to 127.0.0.1:<port> inside the pod's network namespace, and `kubectl logs`
//! reads the shim's log files (`--previous` = the instance before the latest).

use std::io::SeekFrom;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use skiff_streams::{
    ExecRequest, ExecSession, ExitOutcome, LogOptions, PodRef, PodRuntime, RuntimeError, TerminalSize,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::agent::{pod_command, Agent, PodView};
use crate::attach;
use crate::instance::{instances, InstanceDir};
use crate::sandbox::{connect_in_netns, resize_pty, Pty};
use crate::shim::parse_log_line;

/// [`PodRuntime`] over the agent's pods.
pub struct NodeRuntime {
    pub agent: Arc<Agent>,
}

impl NodeRuntime {
    fn view(&self, pod: &PodRef) -> Result<Arc<PodView>, RuntimeError> {
        self.agent
            .pod_view(&pod.namespace, &pod.name)
            .ok_or_else(|| RuntimeError::PodNotFound(format!("{}/{}", pod.namespace, pod.name)))
    }

    fn container_dir(&self, view: &PodView, container: &str) -> Result<PathBuf, RuntimeError> {
        if !view.containers.iter().any(|c| c == container) {
            return Err(RuntimeError::ContainerNotFound(container.to_owned()));
        }
        Ok(view.dir.container(container))
    }
}

#[async_trait::async_trait]
impl PodRuntime for NodeRuntime {
    async fn exec(&self, pod: &PodRef, container: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        let view = self.view(pod)?;
        let dir = self.container_dir(&view, container)?;
        let latest = instances(&dir).pop();
        if latest.as_ref().and_then(|i| i.live_pid()).is_none() {
            return Err(RuntimeError::BadRequest(format!("container {container} is not running")));
        }
        let launch = latest.and_then(|i| i.read_launch());
        let env = launch.as_ref().map(|l| l.env.clone()).unwrap_or_default();
        let cwd = launch.as_ref().and_then(|l| l.cwd.clone());
        let mut command = pod_command(&view.sandbox, &request.command, &env, cwd.as_deref(), request.tty)
            .map_err(|e| RuntimeError::BadRequest(e.to_string()))?;
        if request.tty {
            return exec_with_tty(command, &request);
        }
        command
            .stdin(if request.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if request.stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(if request.stderr { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().map_err(|e| RuntimeError::BadRequest(exec_error(&request.command, &e)))?;
        let stdin = child.stdin.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
        let exit = Box::pin(async move { outcome(child.wait().await) });
        Ok(ExecSession { stdin, stdout, stderr, resize: None, exit })
    }

    async fn attach(&self, pod: &PodRef, container: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        let view = self.view(pod)?;
        let dir = self.container_dir(&view, container)?;
        let latest = instances(&dir).pop().filter(|i| i.live_pid().is_some());
        let Some(instance) = latest else {
            return Err(RuntimeError::BadRequest(format!("container {container} is not running")));
        };
        let stream = attach::connect(&instance.path).and_then(|s| {
            s.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(s)
        });
        let stream = stream.map_err(|e| {
            // Containers started by an agent before attach existed have no socket.
            RuntimeError::BadRequest(format!("container {container} cannot be attached to (restart it): {e}"))
        })?;
        Ok(attach_session(stream, &request))
    }

    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<tokio::net::TcpStream, RuntimeError> {
        let view = self.view(pod)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = connect_in_netns(view.sandbox.netns.clone(), addr, Duration::from_secs(5)).await.map_err(|e| {
            RuntimeError::Internal(format!("failed to connect to localhost:{port} inside the pod: {e}"))
        })?;
        stream.set_nonblocking(true).map_err(|e| RuntimeError::Internal(e.to_string()))?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| RuntimeError::Internal(e.to_string()))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>, RuntimeError> {
        let view = self.view(pod)?;
        let dir = self.container_dir(&view, container)?;
        let all = instances(&dir);
        let chosen = if options.previous {
            all.len().checked_sub(2).and_then(|i| all.get(i)).cloned().ok_or_else(|| {
                RuntimeError::BadRequest(format!(
                    "previous terminated container \"{container}\" in pod \"{}\" not found",
                    pod.name
                ))
            })?
        } else {
            all.last().cloned().ok_or_else(|| {
                RuntimeError::BadRequest(format!(
                    "container \"{container}\" in pod \"{}\" is waiting to start",
                    pod.name
                ))
            })?
        };
        read_logs(chosen, options).await
    }
}

/// Bridges an attach connection to the shim into an [`ExecSession`]: output frames become
/// the stdout/stderr readers, the stdin writer and resizes become frames. The session ends
/// when the shim closes the connection (the container exited).
fn attach_session(stream: tokio::net::UnixStream, request: &ExecRequest) -> ExecSession {
    use tokio::io::AsyncWriteExt;
    let (mut from_shim, mut to_shim) = stream.into_split();
    let pipe = || tokio::io::duplex(64 * 1024);
    let (stdout_writer, stdout_reader) = pipe();
    let (stderr_writer, stderr_reader) = pipe();
    // Output: demultiplexed until the shim hangs up; the exit resolves then.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (want_stdout, want_stderr) = (request.stdout, request.stderr);
    tokio::spawn(async move {
        let (mut stdout, mut stderr) = (stdout_writer, stderr_writer);
        while let Ok(Some((kind, data))) = attach::read_frame_async(&mut from_shim).await {
            // With a tty, stderr is not requested; its output then goes nowhere, as with kubelet.
            let _ = match kind {
                attach::STDOUT if want_stdout => stdout.write_all(&data).await,
                attach::STDERR if want_stderr => stderr.write_all(&data).await,
                _ => Ok(()),
            };
        }
        let _ = done_tx.send(());
    });
    // Input: stdin chunks and terminal sizes, framed, through one writer task.
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if to_shim.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let stdin = request.stdin.then(|| {
        let (writer, mut reader) = pipe();
        let frames = frames_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if frames.send(attach::frame(attach::STDIN, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = frames.send(attach::frame(attach::STDIN_CLOSED, &[])).await;
        });
        Box::new(writer) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>
    });
    let resize = request.tty.then(|| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
        let frames = frames_tx.clone();
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let payload = attach::resize_payload(size.width, size.height);
                if frames.send(attach::frame(attach::RESIZE, &payload)).await.is_err() {
                    return;
                }
            }
        });
        tx
    });
    let reader =
        |on: bool, r: tokio::io::DuplexStream| on.then(|| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    ExecSession {
        stdin,
        stdout: reader(request.stdout, stdout_reader),
        stderr: reader(request.stderr, stderr_reader),
        resize,
        exit: Box::pin(async move {
            let _ = done_rx.await;
            ExitOutcome::Code(0)
        }),
    }
}

fn exec_error(command: &[String], e: &std::io::Error) -> String {
    format!("failed to exec in container: starting {command:?}: {e}")
}

fn outcome(status: std::io::Result<std::process::ExitStatus>) -> ExitOutcome {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => ExitOutcome::Code(code),
            (None, Some(sig)) => ExitOutcome::Signal(sig),
            (None, None) => ExitOutcome::Error("unknown exit status".into()),
        },
        Err(e) => ExitOutcome::Error(e.to_string()),
    }
}

/// `kubectl exec -t`: the process gets a pty as its controlling terminal; the client's
/// stdin/stdout are the pty master.
fn exec_with_tty(mut command: tokio::process::Command, request: &ExecRequest) -> Result<ExecSession, RuntimeError> {
    let internal = |e: std::io::Error| RuntimeError::Internal(e.to_string());
    let pty = Pty::open().map_err(internal)?;
    let slave = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    command.stdin(slave(&pty.slave).map_err(internal)?);
    command.stdout(slave(&pty.slave).map_err(internal)?);
    command.stderr(slave(&pty.slave).map_err(internal)?);
    let mut child = command.spawn().map_err(|e| RuntimeError::BadRequest(exec_error(&request.command, &e)))?;
    drop(pty.slave);
    let master = std::fs::File::from(pty.master);
    let writer = master.try_clone().map_err(internal)?;
    let resize_fd = master.try_clone().map_err(internal)?;
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
    tokio::spawn(async move {
        while let Some(size) = resize_rx.recv().await {
            resize_pty(&resize_fd, size.width, size.height);
        }
    });
    let stdout = PtyReader { file: tokio::fs::File::from_std(master) };
    let stdin = request
        .stdin
        .then(|| Box::new(tokio::fs::File::from_std(writer)) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
    let exit = Box::pin(async move { outcome(child.wait().await) });
    Ok(ExecSession { stdin, stdout: Some(Box::new(stdout)), stderr: None, resize: Some(resize_tx), exit })
}

/// A pty master reader that reports the end of the session (EIO once the last slave fd
/// closes) as end of file.
struct PtyReader {
    file: tokio::fs::File,
}

impl tokio::io::AsyncRead for PtyReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.file).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => std::task::Poll::Ready(Ok(())),
            other => other,
        }
    }
}

/// Log selection as kubelet applies it: since, tail, timestamps, limit; then follow.
async fn read_logs(
    instance: InstanceDir,
    options: LogOptions,
) -> Result<BoxStream<'static, std::io::Result<Bytes>>, RuntimeError> {
    let path = instance.log_path();
    let content = tokio::fs::read(&path).await.unwrap_or_default();
    let since = options.since_time.or_else(|| {
        options.since_seconds.map(|s| chrono::Utc::now() - chrono::Duration::seconds(s.min(i64::MAX as u64) as i64))
    });
    // Complete lines only; a trailing fragment is left for the follower.
    let complete_len = content.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
    let mut lines: Vec<Vec<u8>> = content[..complete_len]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| render(l, &options, since))
        .collect();
    if let Some(tail) = options.tail_lines {
        let keep = (tail as usize).min(lines.len());
        lines.drain(..lines.len() - keep);
    }
    let mut initial: Vec<u8> = lines.concat();
    let mut budget = options.limit_bytes.map(|l| l as usize);
    if let Some(limit) = budget {
        initial.truncate(limit);
        budget = Some(limit - initial.len());
    }
    let head = futures::stream::once(async move { Ok(Bytes::from(initial)) });
    if !options.follow || budget == Some(0) {
        return Ok(head.boxed());
    }
    // Follow: poll the file for appended lines until the instance has exited and is drained.
    let state = (path, complete_len as u64, Vec::<u8>::new(), instance, options, budget);
    let tail =
        futures::stream::unfold(state, |(path, mut offset, mut partial, instance, options, mut budget)| async move {
            loop {
                let exited = instance.read_exit().is_some();
                let mut chunk = Vec::new();
                if let Ok(mut file) = tokio::fs::File::open(&path).await {
                    if file.seek(SeekFrom::Start(offset)).await.is_ok() {
                        let _ = file.read_to_end(&mut chunk).await;
                    }
                }
                offset += chunk.len() as u64;
                partial.extend_from_slice(&chunk);
                let done = partial.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
                let ready: Vec<u8> = partial.drain(..done).collect();
                let mut out: Vec<u8> = ready
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| render(l, &options, None))
                    .collect::<Vec<_>>()
                    .concat();
                if let Some(left) = budget.as_mut() {
                    out.truncate(*left);
                    *left -= out.len();
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), (path, offset, partial, instance, options, budget)));
                }
                if (exited && chunk.is_empty()) || budget == Some(0) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    Ok(head.chain(tail).boxed())
}

/// One log-file line as `kubectl logs` prints it, or None when filtered out.
fn render(line: &[u8], options: &LogOptions, since: Option<chrono::DateTime<chrono::Utc>>) -> Option<Vec<u8>> {
    let entry = parse_log_line(line)?;
    if let Some(since) = since {
        let at = chrono::DateTime::parse_from_rfc3339(entry.time).ok()?;
        if at < since {
            return None;
        }
    }
    let mut out = Vec::with_capacity(entry.text.len() + 40);
    if options.timestamps {
        out.extend_from_slice(entry.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(entry.text);
    if entry.complete {
        out.push(b'\n');
    }
    Some(out)
}
