//! The cluster's component processes (`skiff server`, `controllers`, `agent`, `proxy`): each
//! is this same binary, started inside its network namespace with `nsenter`, logging to
//! `<data-dir>/logs/<component>.log`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A started component.
pub struct Component {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Component {
    /// Starts `skiff ARGS…` in `netns` (None: the current namespace).
    pub fn start(name: &str, netns: Option<&str>, args: &[String], logs: &Path) -> Result<Component> {
        let exe = std::env::current_exe().context("finding the skiff binary")?;
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        // nsenter switches only the network namespace. (`ip netns exec` would also give the
        // process a private mount namespace, hiding the pod namespaces an agent mounts under
        // /run/netns from everyone else.)
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        command.args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        // Logs of components are for people: no colour codes.
        command.env("NO_COLOR", "1");
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Component { name: name.to_string(), log, child })
    }

    /// Resolves when the process exits, with how it ended.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// How it ended, if it has.
    pub fn try_exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|status| status.to_string())
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }
}

/// Stops components: SIGTERM to all, then SIGKILL to those still running after `grace`.
pub async fn stop_all(components: &mut [Component], grace: Duration) {
    for c in components.iter() {
        c.signal(Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    for c in components.iter_mut() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(remaining, c.child.wait()).await.is_err() {
            c.signal(Signal::SIGKILL);
            let _ = c.child.wait().await;
        }
    }
}

/// SIGKILLs processes by pid (what is left in a cluster's namespaces after its components
/// stopped: pod supervisors and containers).
pub fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}
