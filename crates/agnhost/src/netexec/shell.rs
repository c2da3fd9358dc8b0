//! netexec's `/shell?cmd=…`: runs `/bin/sh -c <cmd>` and reports its combined stdout and stderr
//! and, when it fails, the error the way Go's `os/exec` words it (`exit status 1`).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use crate::net::go_errno;

const SHELL: &str = "/bin/sh";

/// The command's combined output and, if it did not succeed, why.
pub struct ShellResult {
    pub output: Vec<u8>,
    pub error: Option<String>,
}

/// Runs `command` with `/bin/sh -c` on a blocking thread.
pub async fn run(command: String) -> ShellResult {
    match tokio::task::spawn_blocking(move || run_blocking(&command)).await {
        Ok(result) => result,
        Err(e) => ShellResult { output: Vec::new(), error: Some(format!("shell task failed: {e}")) },
    }
}

fn run_blocking(command: &str) -> ShellResult {
    let started = (|| -> std::io::Result<_> {
        // One pipe for stdout and stderr keeps their interleaving, like Go's CombinedOutput.
        let (reader, writer) = std::io::pipe()?;
        let mut shell = Command::new(SHELL);
        shell.arg("-c").arg(command).stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer);
        let child = shell.spawn()?;
        // `shell` still holds the pipe's write ends; drop them so reading ends with the child.
        drop(shell);
        Ok((child, reader))
    })();
    let (mut child, mut reader) = match started {
        Ok(started) => started,
        Err(e) => {
            return ShellResult { output: Vec::new(), error: Some(format!("fork/exec {SHELL}: {}", go_errno(&e))) }
        }
    };
    let mut output = Vec::new();
    let read = reader.read_to_end(&mut output);
    let error = match (child.wait(), read) {
        (Ok(status), Ok(_)) => describe_failure(status),
        (Err(e), _) | (_, Err(e)) => Some(go_errno(&e)),
    };
    ShellResult { output, error }
}

/// Go's wording for a process that did not exit 0 (`exit status 2`, `signal: killed`).
fn describe_failure(status: ExitStatus) -> Option<String> {
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exit status {code}"));
    }
    let signal = status.signal().unwrap_or_default();
    let name = match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        15 => "terminated",
        _ => return Some(format!("signal {signal}")),
    };
    Some(format!("signal: {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn combined_output_and_exit_status() {
        let ok = run("echo out; echo err >&2".to_owned()).await;
        assert_eq!(ok.output, b"out\nerr\n");
        assert_eq!(ok.error, None);
        let failed = run("printf x; exit 3".to_owned()).await;
        assert_eq!(failed.output, b"x");
        assert_eq!(failed.error.as_deref(), Some("exit status 3"));
        let killed = run("kill -9 $$".to_owned()).await;
        assert_eq!(killed.error.as_deref(), Some("signal: killed"));
    }
}
