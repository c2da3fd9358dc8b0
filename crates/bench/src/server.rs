//! Process control for the server under test: spawn `skiff server` on a fresh data
//! directory and an ephemeral loopback port, wait until `/readyz` answers 200, stop it.
//!
//! The child is killed when its [`ServerProcess`] is dropped, so an error or Ctrl-C in the
//! middle of a run never leaves a server behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http::{Method, StatusCode};
use tokio::process::{Child, Command};

use crate::client::{ApiEndpoint, Connection};

/// How often readiness is polled: short, because cold start is measured with it.
const READY_POLL: Duration = Duration::from_millis(1);

/// How many lines of the server's log an error message quotes.
const LOG_TAIL_LINES: usize = 20;

/// A running `skiff server` child process.
pub struct ServerProcess {
    child: Child,
    pid: u32,
    data_dir: PathBuf,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `binary server` with its data in `dir/data` and its log in `dir/server.log`.
    /// The server logs at info level whatever RUST_LOG the benchmark runs with, so a
    /// verbose benchmark does not slow the server down.
    pub fn spawn(binary: &Path, dir: &Path) -> Result<Self> {
        ServerProcess::spawn_with(binary, dir, &[])
    }

    /// [`ServerProcess::spawn`] with extra `skiff server` arguments (e.g. `--etcd-endpoints`).
    pub fn spawn_with(binary: &Path, dir: &Path, extra_args: &[String]) -> Result<Self> {
        let data_dir = dir.join("data");
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(binary)
            .arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} server", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        Ok(ServerProcess { child, pid, data_dir, log_path })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Polls until `/readyz` answers 200 and returns the endpoint to talk to. Before the
    /// server has written its kubeconfig and PKI there is nothing to connect to, so those
    /// attempts are retried too, until `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<ApiEndpoint> {
        let deadline = Instant::now() + timeout;
        let mut connection: Option<(ApiEndpoint, Connection)> = None;
        let mut last_error = String::from("nothing tried yet");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status}) before it was ready; its log ends with:\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server was not ready after {timeout:?} (last: {last_error}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            match self.probe(&mut connection).await {
                Ok(Some(endpoint)) => return Ok(endpoint),
                Ok(None) => last_error = "/readyz did not answer 200".into(),
                Err(e) => {
                    last_error = format!("{e:#}");
                    connection = None;
                }
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// One readiness check on a kept connection (opened on first use).
    async fn probe(&self, connection: &mut Option<(ApiEndpoint, Connection)>) -> Result<Option<ApiEndpoint>> {
        if connection.is_none() {
            let endpoint = ApiEndpoint::from_data_dir(&self.data_dir)?;
            let conn = endpoint.connect().await?;
            *connection = Some((endpoint, conn));
        }
        let Some((endpoint, conn)) = connection.as_mut() else { return Ok(None) };
        let (status, _) = conn.call(Method::GET, "/readyz", None).await?;
        Ok((status == StatusCode::OK).then(|| endpoint.clone()))
    }

    /// Kills the server (SIGKILL: nothing of it is kept) and waits for it to exit.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping the server")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}
