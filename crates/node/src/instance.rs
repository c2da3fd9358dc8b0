//! One run of a container ("instance" `n`, the `n`-th start, so `restartCount = n`), as files
//! in `<pod dir>/containers/<name>/<n>/`:
//!
//! | file | written by | content |
//! |---|---|---|
//! | `launch.json` | agent | argv, env, working dir, sandbox ([`Launch`]) |
//! | `pid` | shim | container pid, its kernel start time, start timestamp ([`PidRecord`]) |
//! | `log` | shim | CRI-format log lines (`<RFC3339Nano> stdout F <text>`) |
//! | `exit` | shim | exit code, signal, reason, timestamps ([`ExitRecord`]) |
//!
//! The files are the whole truth about a container, so a restarted agent re-adopts running
//! containers from them and never starts a second copy.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::SandboxSpec;

/// What the shim runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub sandbox: SandboxSpec,
    /// The container's `stdin`, `stdinOnce` and `tty` (what `kubectl attach` / `run -i` use).
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub tty: bool,
}

/// The running container process; `start_ticks` (field 22 of /proc/<pid>/stat) tells a
/// live container from an unrelated process that reused its pid.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: i32,
    pub start_ticks: u64,
    pub started_at: String,
}

/// How an instance ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `StartError` (kubelet's reasons).
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

/// The directory of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceDir {
    pub path: PathBuf,
    pub index: u32,
}

impl InstanceDir {
    pub fn new(container_dir: &Path, index: u32) -> InstanceDir {
        InstanceDir { path: container_dir.join(index.to_string()), index }
    }

    pub fn launch_path(&self) -> PathBuf {
        self.path.join("launch.json")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.path.join("pid")
    }

    pub fn exit_path(&self) -> PathBuf {
        self.path.join("exit")
    }

    pub fn log_path(&self) -> PathBuf {
        self.path.join("log")
    }

    pub fn read_launch(&self) -> Option<Launch> {
        serde_json::from_slice(&fs::read(self.launch_path()).ok()?).ok()
    }

    pub fn read_pid(&self) -> Option<PidRecord> {
        serde_json::from_slice(&fs::read(self.pid_path()).ok()?).ok()
    }

    pub fn read_exit(&self) -> Option<ExitRecord> {
        serde_json::from_slice(&fs::read(self.exit_path()).ok()?).ok()
    }

    /// The container process, if it is still the one this instance started.
    pub fn live_pid(&self) -> Option<i32> {
        let record = self.read_pid()?;
        (start_ticks(record.pid) == Some(record.start_ticks)).then_some(record.pid)
    }
}

/// The instances of a container, oldest first.
pub fn instances(container_dir: &Path) -> Vec<InstanceDir> {
    let mut indexes: Vec<u32> = fs::read_dir(container_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    indexes.sort_unstable();
    indexes.into_iter().map(|i| InstanceDir::new(container_dir, i)).collect()
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let state = rest.split_whitespace().next()?;
    if state == "Z" {
        return None; // a zombie has exited already
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The current time as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_listing_sorts() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        let dir = tempfile::tempdir().unwrap();
        for i in [10, 2, 1] {
            fs::create_dir_all(dir.path().join(i.to_string())).unwrap();
        }
        fs::create_dir_all(dir.path().join("junk")).unwrap();
        let found: Vec<u32> = instances(dir.path()).iter().map(|i| i.index).collect();
        assert_eq!(found, vec![1, 2, 10]);
        let inst = InstanceDir::new(dir.path(), 1);
        let record = PidRecord { pid: me, start_ticks: start_ticks(me).unwrap(), started_at: now_rfc3339() };
        fs::write(inst.pid_path(), serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(inst.live_pid(), Some(me));
        let stale = PidRecord { start_ticks: record.start_ticks + 1, ..record };
        fs::write(inst.pid_path(), serde_json::to_vec(&stale).unwrap()).unwrap();
        assert_eq!(inst.live_pid(), None);
    }
}
