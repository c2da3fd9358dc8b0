//! `skiff shim`: the small supervisor each container runs under (conmon's job). The agent
//! starts it in a new session, so it outlives agent restarts; it enters the pod's sandbox,
//! runs the container, writes its stdout/stderr to the log file with timestamps, and records
//! the pid and finally the exit status (see [`crate::instance`] for the files).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::instance::{now_rfc3339, start_ticks, ExitRecord, InstanceDir, Launch, PidRecord};
use crate::ipam::write_atomic;
use crate::sandbox::PreparedSandbox;

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
    let sandbox = PreparedSandbox::prepare(&launch.sandbox, launch.cwd.as_deref(), false)?;
    let log = Arc::new(Mutex::new(fs::OpenOptions::new().create(true).append(true).open(instance.log_path())?));
    let mut command = Command::new(program);
    command
        .args(&launch.argv[1..])
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    if let Some(out) = child.stdout.take() {
        copiers.push(copy_lines(out, "stdout", log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(copy_lines(err, "stderr", log.clone()));
    }
    let status = child.wait()?;
    // Background processes may hold the pipes open after the main process ended: give the
    // copiers a moment to drain, but record the exit without waiting for them.
    let drained = Instant::now() + Duration::from_secs(1);
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < drained {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
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

/// Longest log line written as one entry; longer lines are split into partial (`P`) entries.
const MAX_LINE: usize = 16 * 1024;

/// Copies a stream into the log, one CRI entry per line.
fn copy_lines(
    stream: impl Read + Send + 'static,
    name: &'static str,
    log: Arc<Mutex<fs::File>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(MAX_LINE, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let full = line.last() == Some(&b'\n');
            if full {
                line.pop();
            }
            let mut entry = format!(
                "{} {name} {} ",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                if full { 'F' } else { 'P' }
            )
            .into_bytes();
            entry.extend_from_slice(&line);
            entry.push(b'\n');
            let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = file.write_all(&entry);
        }
    })
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
