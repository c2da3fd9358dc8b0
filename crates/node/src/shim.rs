//! `skiff shim`: the small supervisor each container runs under (conmon's job). The agent
//! starts it in a new session, so it outlives agent restarts; it enters the pod's sandbox,
//! runs the container, writes its stdout/stderr to the log file with timestamps, and records
//! the pid and finally the exit status (see [`crate::instance`] for the files).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::attach;
use crate::instance::{now_rfc3339, start_ticks, ExitRecord, InstanceDir, Launch, PidRecord};
use crate::ipam::write_atomic;
use crate::sandbox::{resize_pty, PreparedSandbox, Pty};

/// Arguments of the hidden `skiff shim` subcommand.
#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The container instance directory (holds launch.json; pid, log and exit are written there).
    #[arg(long)]
    pub instance: PathBuf,
}

/// Runs one container instance to completion. Errors before the container starts are
/// recorded as a `StartError` exit, so the agent always finds an `exit` file.
pub fn run(args: ShimArgs) -> anyhow::Result<()> {
    let index = args.instance.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).unwrap_or(0);
    let parent = args.instance.parent().map(PathBuf::from).unwrap_or_default();
    let instance = InstanceDir::new(&parent, index);
    let started = now_rfc3339();
    let result = supervise(&instance);
    let record = match result {
        Ok(record) => record,
        Err(e) => ExitRecord {
            exit_code: 128,
            signal: None,
            reason: "StartError".into(),
            message: Some(e.to_string()),
            started_at: Some(started),
            finished_at: now_rfc3339(),
        },
    };
    write_atomic(&instance.exit_path(), &serde_json::to_vec(&record)?)?;
    Ok(())
}

fn supervise(instance: &InstanceDir) -> anyhow::Result<ExitRecord> {
    let launch: Launch = serde_json::from_slice(&fs::read(instance.launch_path())?)?;
    let program = launch.argv.first().ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let sandbox = PreparedSandbox::prepare(&launch.sandbox, launch.cwd.as_deref(), launch.tty)?;
    let log = Arc::new(Mutex::new(fs::OpenOptions::new().create(true).append(true).open(instance.log_path())?));
    let attached = Attached::default();
    // Bound before the container starts, so an attach right after start finds it.
    let listener = attach::listen(&instance.path)?;
    let mut command = Command::new(program);
    command.args(&launch.argv[1..]).env_clear().envs(launch.env.iter().map(|(k, v)| (k, v)));
    let pty = if launch.tty { Some(Pty::open()?) } else { None };
    match &pty {
        Some(pty) => {
            command.stdin(Stdio::from(pty.slave.try_clone()?));
            command.stdout(Stdio::from(pty.slave.try_clone()?));
            command.stderr(Stdio::from(pty.slave.try_clone()?));
        }
        None => {
            command.stdin(if launch.stdin { Stdio::piped() } else { Stdio::null() });
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    // SAFETY: `enter` only makes raw syscalls on memory prepared before the fork.
    unsafe {
        command.pre_exec(move || sandbox.enter());
    }
    let mut child = command.spawn().map_err(|e| anyhow::anyhow!("failed to start {program:?}: {e}"))?;
    let started_at = now_rfc3339();
    let pid = child.id() as i32;
    let record = PidRecord { pid, start_ticks: start_ticks(pid).unwrap_or(0), started_at: started_at.clone() };
    write_atomic(&instance.pid_path(), &serde_json::to_vec(&record)?)?;
    let mut copiers = Vec::new();
    let input = match pty {
        Some(pty) => {
            drop(pty.slave);
            let master = fs::File::from(pty.master);
            let terminal = master.try_clone()?;
            copiers.push(copy_output(PtyOutput(master.try_clone()?), attach::STDOUT, log.clone(), attached.clone()));
            let input = launch.stdin.then_some(Box::new(master) as Box<dyn Write + Send>);
            StdinSink::new(input, Some(terminal), launch.stdin_once)
        }
        None => {
            if let Some(out) = child.stdout.take() {
                copiers.push(copy_output(out, attach::STDOUT, log.clone(), attached.clone()));
            }
            if let Some(err) = child.stderr.take() {
                copiers.push(copy_output(err, attach::STDERR, log.clone(), attached.clone()));
            }
            let input = child.stdin.take().map(|s| Box::new(s) as Box<dyn Write + Send>);
            StdinSink::new(input, None, launch.stdin_once)
        }
    };
    accept_attachments(listener, attached.clone(), input);
    let status = child.wait()?;
    // Background processes may hold the pipes open after the main process ended: give the
    // copiers a moment to drain, but record the exit without waiting for them.
    let drained = Instant::now() + Duration::from_secs(1);
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Attached clients see the end of the stream: the container is gone.
    attached.close_all();
    let (exit_code, signal) = match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (255, None),
    };
    Ok(ExitRecord {
        exit_code,
        signal,
        reason: if exit_code == 0 { "Completed".into() } else { "Error".into() },
        message: None,
        started_at: Some(started_at),
        finished_at: now_rfc3339(),
    })
}

/// The clients attached to this container (`kubectl attach`), each sent every output chunk.
#[derive(Clone, Default)]
struct Attached(Arc<Mutex<Vec<UnixStream>>>);

impl Attached {
    fn clients(&self) -> std::sync::MutexGuard<'_, Vec<UnixStream>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one output chunk to every client; a client that cannot take it within the
    /// write timeout is dropped rather than allowed to stall the container's output.
    fn broadcast(&self, kind: u8, chunk: &[u8]) {
        let mut clients = self.clients();
        if clients.is_empty() {
            return;
        }
        let frame = attach::frame(kind, chunk);
        clients.retain_mut(|client| client.write_all(&frame).is_ok());
    }

    fn close_all(&self) {
        for client in self.clients().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Where attached clients' input goes: the container's stdin (a pipe or the pty) and, with a
/// tty, the terminal's size. With `stdinOnce`, stdin is closed when the first client that
/// attached leaves, as kubelet does.
struct StdinSink {
    input: Mutex<Option<Box<dyn Write + Send>>>,
    terminal: Option<fs::File>,
    once: bool,
}

impl StdinSink {
    fn new(input: Option<Box<dyn Write + Send>>, terminal: Option<fs::File>, once: bool) -> Arc<StdinSink> {
        Arc::new(StdinSink { input: Mutex::new(input), terminal, once })
    }

    fn write(&self, data: &[u8]) {
        let mut input = self.input.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sink) = input.as_mut() {
            if sink.write_all(data).and_then(|()| sink.flush()).is_err() {
                *input = None;
            }
        }
    }

    /// A client is done with stdin: only a `stdinOnce` container's stdin closes.
    fn client_done(&self) {
        if self.once {
            *self.input.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
    }

    fn resize(&self, width: u16, height: u16) {
        if let Some(terminal) = &self.terminal {
            resize_pty(terminal, width, height);
        }
    }
}

/// Serves attach connections for as long as the shim runs: each client is added to
/// `attached` for output and read for input on its own thread.
fn accept_attachments(listener: UnixListener, attached: Attached, input: Arc<StdinSink>) {
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(writer) = client.try_clone() else { continue };
            let _ = writer.set_write_timeout(Some(ATTACHED_WRITE_TIMEOUT));
            attached.clients().push(writer);
            let input = input.clone();
            std::thread::spawn(move || read_attached_input(client, &input));
        }
    });
}

/// How long one output chunk may wait for an attached client before it is dropped.
const ATTACHED_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

fn read_attached_input(mut client: UnixStream, input: &StdinSink) {
    loop {
        match attach::read_frame(&mut client) {
            Ok(Some((attach::STDIN, data))) => input.write(&data),
            Ok(Some((attach::RESIZE, payload))) => {
                if let Some((width, height)) = attach::parse_resize(&payload) {
                    input.resize(width, height);
                }
            }
            Ok(Some((attach::STDIN_CLOSED, _))) => {
                input.client_done();
                return;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                input.client_done();
                return;
            }
        }
    }
}

/// A pty master as the container's output: EIO (every slave closed) is the end of it.
struct PtyOutput(fs::File);

impl Read for PtyOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            other => other,
        }
    }
}

/// Longest log line written as one entry; longer lines are split into partial (`P`) entries.
const MAX_LINE: usize = 16 * 1024;

/// Copies one output stream: every chunk to the attached clients as it comes, and into the
/// log as one CRI entry per line.
fn copy_output(
    mut stream: impl Read + Send + 'static,
    kind: u8,
    log: Arc<Mutex<fs::File>>,
    attached: Attached,
) -> std::thread::JoinHandle<()> {
    let name = if kind == attach::STDERR { "stderr" } else { "stdout" };
    std::thread::spawn(move || {
        let mut lines = LogLines { name, log, pending: Vec::new() };
        let mut buf = vec![0u8; MAX_LINE];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            attached.broadcast(kind, &buf[..n]);
            lines.feed(&buf[..n]);
        }
        lines.finish();
    })
}

/// Turns output chunks into CRI log entries.
struct LogLines {
    name: &'static str,
    log: Arc<Mutex<fs::File>>,
    /// Output after the last newline.
    pending: Vec<u8>,
}

impl LogLines {
    fn feed(&mut self, mut chunk: &[u8]) {
        while let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&chunk[..end]);
            self.entry(true);
            chunk = &chunk[end + 1..];
        }
        self.pending.extend_from_slice(chunk);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.entry(false);
            self.pending = rest;
        }
    }

    /// The stream ended: a last line without a newline is a partial entry.
    fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.entry(false);
        }
    }

    fn entry(&mut self, full: bool) {
        let mut entry = format!(
            "{} {} {} ",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            self.name,
            if full { 'F' } else { 'P' }
        )
        .into_bytes();
        entry.append(&mut self.pending);
        entry.push(b'\n');
        let mut file = self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = file.write_all(&entry);
    }
}

/// One parsed CRI log entry.
#[derive(Debug, PartialEq, Eq)]
pub struct LogEntry<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    /// False for a partial (`P`) entry: the line continues in the next entry.
    pub complete: bool,
    pub text: &'a [u8],
}

/// Parses one line of a shim log file.
pub fn parse_log_line(line: &[u8]) -> Option<LogEntry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(LogEntry { time, stream, complete: tag != b"P", text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_round_trip() {
        let e = parse_log_line(b"2026-01-01T00:00:00.000000001Z stdout F hello world").unwrap();
        assert_eq!(
            e,
            LogEntry { time: "2026-01-01T00:00:00.000000001Z", stream: "stdout", complete: true, text: b"hello world" }
        );
        assert!(!parse_log_line(b"t stderr P part").unwrap().complete);
        assert_eq!(parse_log_line(b"t stdout F ").unwrap().text, b"");
        assert!(parse_log_line(b"garbage").is_none());
    }
}
