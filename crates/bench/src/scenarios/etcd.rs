//! The API scenarios on etcd (`skiff bench api --etcd-endpoints URLS`): the same cold start,
//! creates, memory and watch measurements with `skiff server`s keeping their state in the
//! given etcd, printed next to the redb numbers of the same run, plus the watch **fan-out
//! across two API servers**: creates through server A, watchers on server B (both on one
//! etcd), so each event travels A → etcd → B's etcd watch → B's watchers.
//!
//! Every server runs under a fresh `--etcd-prefix` (`/skiff-bench-<pid>-<time>…`), so runs
//! never see each other's objects and cold starts begin on an empty store. The keys stay in
//! etcd afterwards (delete the prefix with `etcdctl del --prefix` if the etcd is long-lived).
//! The server RSS shown is the API server's only; etcd's own memory is not counted.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{cold_start, create_namespace, creates, watch, READY_TIMEOUT};
use crate::procfs;
use crate::report::{ApiReport, MemoryResult};
use crate::scenarios::cold_start::ColdStartResult;
use crate::scenarios::creates::CreateResult;
use crate::scenarios::watch::WatchResult;
use crate::server::ServerProcess;
use crate::ApiArgs;

/// What one run of the scenarios on etcd measured.
#[derive(Debug, Clone, Serialize)]
pub struct EtcdReport {
    pub bench: &'static str,
    pub etcd_endpoints: String,
    /// The prefix every key of this run lives under.
    pub etcd_prefix: String,
    pub cold_start: ColdStartResult,
    pub creates: CreateResult,
    pub memory: MemoryResult,
    /// Writer and watchers on the same server.
    pub watch: WatchResult,
    /// Writer on server A, watchers on server B.
    pub fanout: WatchResult,
}

/// Runs cold start, creates, memory and watch on etcd-backed servers, then the fan-out.
pub async fn run(args: &ApiArgs, binary: &Path, work_dir: &Path) -> Result<EtcdReport> {
    let endpoints = args.etcd_endpoints.join(",");
    let prefix = run_prefix();
    let server_args = |prefix: &str| -> Vec<String> {
        vec!["--etcd-endpoints".into(), endpoints.clone(), "--etcd-prefix".into(), prefix.to_owned()]
    };

    tracing::info!(runs = args.cold_starts, %endpoints, %prefix, "cold start on etcd");
    let cold_dir = work_dir.join("etcd-cold");
    let cold_start =
        cold_start::run_with(binary, &cold_dir, args.cold_starts, |i| server_args(&format!("{prefix}-cold-{i}")))
            .await?;

    let main_prefix = format!("{prefix}-main");
    let mut server = spawn(binary, &work_dir.join("etcd-server"), &server_args(&main_prefix))?;
    let endpoint = server.wait_ready(READY_TIMEOUT).await?;
    create_namespace(&endpoint).await?;
    let idle = procfs::memory(server.pid())?;
    tracing::info!(services = args.services, "creates on etcd");
    let creates = creates::run(&endpoint, server.pid(), args.services, args.concurrency, args.connections).await?;
    let with_services = procfs::memory(server.pid())?;
    let interval = Duration::from_millis(args.watch_interval_ms);
    tracing::info!(watchers = args.watchers, events = args.watch_events, "watch latency on etcd");
    let watch = watch::run(&endpoint, args.watchers, args.watch_events, interval).await?;
    let after_watch = procfs::memory(server.pid())?;
    server.stop().await?;

    // Fan-out on a cluster of its own: two servers, one etcd prefix.
    let fanout_prefix = format!("{prefix}-fanout");
    let mut writer = spawn(binary, &work_dir.join("etcd-fanout-a"), &server_args(&fanout_prefix))?;
    let writer_endpoint = writer.wait_ready(READY_TIMEOUT).await?;
    let mut watched = spawn(binary, &work_dir.join("etcd-fanout-b"), &server_args(&fanout_prefix))?;
    let watched_endpoint = watched.wait_ready(READY_TIMEOUT).await?;
    create_namespace(&writer_endpoint).await?;
    tracing::info!(watchers = args.watchers, events = args.watch_events, "watch fan-out: write on A, watch on B");
    let fanout =
        watch::run_across(&writer_endpoint, &watched_endpoint, args.watchers, args.watch_events, interval).await?;
    writer.stop().await?;
    watched.stop().await?;

    Ok(EtcdReport {
        bench: "skiff-api-etcd",
        etcd_endpoints: endpoints,
        etcd_prefix: prefix,
        cold_start,
        creates,
        memory: MemoryResult::new(args.services, idle, with_services, after_watch),
        watch,
        fanout,
    })
}

fn spawn(binary: &Path, dir: &Path, args: &[String]) -> Result<ServerProcess> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    ServerProcess::spawn_with(binary, dir, args)
}

/// A prefix no other run uses: process id and start time.
fn run_prefix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("/skiff-bench-{}-{nanos}", std::process::id())
}

impl EtcdReport {
    pub fn json_line(&self) -> String {
        serde_json::to_value(self).unwrap_or_default().to_string()
    }

    /// A Markdown table of the headline numbers: redb (from the same run), etcd, and their ratio.
    pub fn table(&self, redb: &ApiReport) -> String {
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |metric: String, redb: Option<f64>, etcd: f64, unit: &str| {
            let ratio = redb.filter(|r| *r > 0.0).map_or(String::new(), |r| format!("{:.2}×", etcd / r));
            let redb = redb.map_or("—".to_owned(), |r| format!("{r:.2} {unit}"));
            rows.push([metric, redb, format!("{etcd:.2} {unit}"), ratio]);
        };
        row("cold start, median".into(), Some(redb.cold_start.median_ms), self.cold_start.median_ms, "ms");
        let (r, e) = (&redb.creates, &self.creates);
        row(format!("creates of {} Services", e.services), Some(r.creates_per_sec), e.creates_per_sec, "/s");
        row("create latency p50".into(), Some(r.latency.p50_ms), e.latency.p50_ms, "ms");
        row("create latency p99".into(), Some(r.latency.p99_ms), e.latency.p99_ms, "ms");
        row("create errors".into(), Some(r.errors as f64), e.errors as f64, "");
        row("server RSS with the Services".into(), Some(redb.memory.rss_mb), self.memory.rss_mb, "MB");
        let (r, e) = (&redb.watch, &self.watch);
        row(
            format!("watch p50 after the 201, {} watchers", e.watchers),
            Some(r.after_ack.p50_ms),
            e.after_ack.p50_ms,
            "ms",
        );
        row("watch p99 after the 201".into(), Some(r.after_ack.p99_ms), e.after_ack.p99_ms, "ms");
        row("watch events missing".into(), Some(r.missing as f64), e.missing as f64, "");
        let f = &self.fanout;
        row("fan-out A→B p50 after the 201".into(), Some(r.after_ack.p50_ms), f.after_ack.p50_ms, "ms");
        row("fan-out A→B p99 after the 201".into(), Some(r.after_ack.p99_ms), f.after_ack.p99_ms, "ms");
        row("fan-out A→B p50 from send".into(), None, f.from_send.p50_ms, "ms");
        row("fan-out A→B p99 from send".into(), None, f.from_send.p99_ms, "ms");
        row("fan-out events missing".into(), None, f.missing as f64, "");

        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nskiff bench api on etcd ({}, prefix {}) next to redb\n",
            self.etcd_endpoints, self.etcd_prefix
        );
        let _ = writeln!(out, "| metric | redb | etcd | etcd / redb |\n|---|---|---|---|");
        for cells in &rows {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(
            out,
            "\nFan-out: {} watchers on server B, {} creates {} ms apart through server A (both on the etcd above);\n\
             its redb column is the single-server redb watch for comparison. Server RSS excludes etcd's own memory.",
            f.watchers, f.events, f.interval_ms
        );
        out
    }
}
