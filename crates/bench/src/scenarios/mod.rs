//! The `skiff bench api` run: which scenarios run, in which order, against which server.
//!
//! 1. [`cold_start`] on their own fresh servers, while nothing else runs;
//! 2. one long-lived server: its idle memory, then [`creates`] of the benchmark Services,
//!    then its memory holding them;
//! 3. [`watch`] latency on that same server (with every Service still there), then memory again.
//!
//! With `--etcd-endpoints`, [`etcd`] then runs the same scenarios on etcd-backed servers and the
//! watch fan-out across two of them ([`run_api_on_etcd`]).

pub mod cold_start;
pub mod creates;
pub mod etcd;
pub mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::client::ApiEndpoint;
use crate::procfs;
use crate::report::{ApiReport, MemoryResult};
use crate::server::ServerProcess;
use crate::ApiArgs;

/// The namespace every benchmark object lives in.
pub const NAMESPACE: &str = "bench";
/// Where benchmark Services are created and watched.
pub const SERVICES_PATH: &str = "/api/v1/namespaces/bench/services";

/// How long the long-lived server may take to become ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The skiff binary to start servers from: `--server-binary` or the running executable.
fn server_binary(args: &ApiArgs) -> Result<PathBuf> {
    let binary = match &args.server_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("finding the running skiff binary")?,
    };
    if !binary.is_file() {
        bail!("server binary {} does not exist", binary.display());
    }
    Ok(binary)
}

/// Runs the scenarios on servers backed by `args.etcd_endpoints` (see [`etcd`]).
pub async fn run_api_on_etcd(args: &ApiArgs) -> Result<etcd::EtcdReport> {
    let binary = server_binary(args)?;
    let work = WorkDir::create(args.work_dir.as_deref(), args.keep)?;
    tracing::info!(dir = %work.path().display(), "etcd benchmark work directory");
    etcd::run(args, &binary, work.path()).await
}

/// Runs every API scenario against servers started from `args.server_binary`.
pub async fn run_api(args: &ApiArgs) -> Result<ApiReport> {
    let binary = server_binary(args)?;
    let work = WorkDir::create(args.work_dir.as_deref(), args.keep)?;
    tracing::info!(dir = %work.path().display(), server = %binary.display(), "benchmark work directory");

    tracing::info!(runs = args.cold_starts, "cold start");
    let cold_start = cold_start::run(&binary, work.path(), args.cold_starts).await?;

    let main_dir = work.path().join("server");
    std::fs::create_dir_all(&main_dir).with_context(|| format!("creating {}", main_dir.display()))?;
    let mut server = ServerProcess::spawn(&binary, &main_dir)?;
    let endpoint = server.wait_ready(READY_TIMEOUT).await?;
    create_namespace(&endpoint).await?;
    let idle = procfs::memory(server.pid())?;

    tracing::info!(services = args.services, concurrency = args.concurrency, connections = args.connections, "creates");
    let creates = creates::run(&endpoint, server.pid(), args.services, args.concurrency, args.connections).await?;
    let with_services = procfs::memory(server.pid())?;

    tracing::info!(watchers = args.watchers, events = args.watch_events, "watch latency");
    let interval = Duration::from_millis(args.watch_interval_ms);
    let watch = watch::run(&endpoint, args.watchers, args.watch_events, interval).await?;
    let after_watch = procfs::memory(server.pid())?;
    server.stop().await?;

    Ok(ApiReport {
        bench: "skiff-api",
        client_build: if cfg!(debug_assertions) { "debug" } else { "release" },
        server_binary: binary.display().to_string(),
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cold_start,
        creates,
        memory: MemoryResult::new(args.services, idle, with_services, after_watch),
        watch,
        kept_dir: args.keep.then(|| work.path().display().to_string()),
    })
}

/// Creates the benchmark namespace (it may exist already only if a kept directory is reused,
/// which `WorkDir` never does, so anything but 201 is an error).
pub(crate) async fn create_namespace(endpoint: &ApiEndpoint) -> Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let mut conn = endpoint.connect().await?;
    let (status, answer) = conn.call(Method::POST, "/api/v1/namespaces", Some(Bytes::from(body.to_string()))).await?;
    if status != StatusCode::CREATED {
        bail!("creating namespace {NAMESPACE}: {status}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// The directory holding every server's data and log for one run: removed when dropped
/// (also on errors), unless the user asked to keep it.
enum WorkDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl WorkDir {
    fn create(parent: Option<&Path>, keep: bool) -> Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("skiff-bench-");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .context("creating the benchmark work directory")?;
        Ok(if keep { WorkDir::Kept(dir.keep()) } else { WorkDir::Temporary(dir) })
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(dir) => dir.path(),
            WorkDir::Kept(path) => path,
        }
    }
}
