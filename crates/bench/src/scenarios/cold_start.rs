//! Cold start: from spawning `skiff server` on an empty data directory (so it also
//! generates its CA and certificates and creates its store) to the first 200 from `/readyz`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::server::ServerProcess;
use crate::stats::{millis, percentile};

/// How long one start may take before the run is called a failure.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct ColdStartResult {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// Every run, in the order they ran.
    pub samples_ms: Vec<f64>,
}

/// Starts and stops the server `runs` times, each on a fresh directory under `work_dir`.
pub async fn run(binary: &Path, work_dir: &Path, runs: usize) -> Result<ColdStartResult> {
    run_with(binary, work_dir, runs, |_| Vec::new()).await
}

/// [`run`] with extra `skiff server` arguments for run `i` (the etcd benchmark gives each run
/// its own `--etcd-prefix`, so every start is on an empty store).
pub async fn run_with(
    binary: &Path,
    work_dir: &Path,
    runs: usize,
    server_args: impl Fn(usize) -> Vec<String>,
) -> Result<ColdStartResult> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let dir = work_dir.join(format!("cold-start-{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let started = Instant::now();
        let mut server = ServerProcess::spawn_with(binary, &dir, &server_args(i))?;
        server.wait_ready(READY_TIMEOUT).await.with_context(|| format!("cold start {}", i + 1))?;
        let elapsed = started.elapsed();
        server.stop().await?;
        tracing::info!(run = i + 1, ready_ms = millis(elapsed), "cold start");
        samples.push(elapsed);
    }
    let in_order: Vec<f64> = samples.iter().copied().map(millis).collect();
    samples.sort_unstable();
    let at = |p: f64| percentile(&samples, p).map(millis).unwrap_or(0.0);
    Ok(ColdStartResult { runs, median_ms: at(50.0), min_ms: at(0.0), max_ms: at(100.0), samples_ms: in_order })
}
