//! # skiff-bench: benchmarks, run as `skiff bench`
//!
//! `skiff bench api` starts its own `skiff server` (a child process on a temporary data
//! directory and an ephemeral loopback port) and measures what the API server issue asks
//! for: cold start, create throughput and latency, memory with many Services, and watch
//! delivery latency. Start at [`scenarios::run_api`], which runs the scenarios in order.
//!
//! - [`client`]: a thin HTTP/2-over-TLS client with the server's CA and admin token
//! - [`server`]: starting, probing and stopping the server under test
//! - [`scenarios`]: one module per measurement
//! - [`proxy`]: `skiff bench proxy`, the service proxy's sync times against kube-proxy-style rulesets;
//!   [`proxy_datapath`] (connect latency vs Service count), [`proxy_userspace`] (relay vs haproxy),
//!   [`proxy_netns`] (the throwaway namespaces they run in)
//! - [`report`]: the table and the JSON line
//! - [`stats`] (percentiles) and [`procfs`] (memory and CPU time of a process)

pub mod client;
pub mod procfs;
pub mod proxy;
pub mod proxy_datapath;
pub mod proxy_netns;
pub mod proxy_userspace;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod stats;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::builder::RangedU64ValueParser;

/// `skiff bench`: which benchmark to run.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Benchmark the API server: cold start, Service creates, memory, watch latency.
    ///
    /// Starts `skiff server` itself (temporary data directory, 127.0.0.1, ephemeral port),
    /// stops it and removes its data at the end. Prints a Markdown table with the targets,
    /// then one JSON line with every number.
    Api(ApiArgs),
    /// Benchmark the service proxy: full sync and one-change latency of N Services × M
    /// endpoints in throwaway network namespaces, against kube-proxy-style rulesets.
    Proxy(proxy::ProxyArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// Services to create in the throughput scenario.
    #[arg(long, default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub services: usize,
    /// Parallel create workers (each has one request in flight).
    #[arg(long, default_value_t = 32, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: usize,
    /// HTTP/2 connections the create workers share.
    #[arg(long, default_value_t = 4, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub connections: usize,
    /// Concurrent watch streams, one connection each.
    #[arg(long, default_value_t = 100, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub watchers: usize,
    /// Timed creates the watchers must see.
    #[arg(long, default_value_t = 200, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub watch_events: usize,
    /// Milliseconds between two timed creates.
    #[arg(long, default_value_t = 5, value_parser = RangedU64ValueParser::<u64>::new().range(1..=10_000))]
    pub watch_interval_ms: u64,
    /// Cold starts to measure (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub cold_starts: usize,
    /// The skiff binary to benchmark. Defaults to the running executable.
    #[arg(long)]
    pub server_binary: Option<PathBuf>,
    /// Where to create the temporary work directory. Defaults to the system's temp dir.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the servers' data directories and logs (the path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Also run the scenarios on `skiff server`s keeping their state in this etcd
    /// (comma-separated client URLs), each under a fresh `--etcd-prefix`, and print them next
    /// to the redb numbers, with the watch fan-out across two API servers.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
}

/// Runs the chosen benchmark and prints its report to stdout. Ctrl-C stops it cleanly:
/// the server under test is killed and its data removed (unless `--keep`).
pub async fn run(args: Args) -> Result<()> {
    match args.command {
        BenchCommand::Api(api) => {
            let report = tokio::select! {
                report = scenarios::run_api(&api) => report?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            print!("{}", report.table());
            println!("{}", report.json_line());
            if !api.etcd_endpoints.is_empty() {
                let on_etcd = tokio::select! {
                    report = scenarios::run_api_on_etcd(&api) => report?,
                    _ = tokio::signal::ctrl_c() => bail!("interrupted"),
                };
                print!("{}", on_etcd.table(&report));
                println!("{}", on_etcd.json_line());
            }
            Ok(())
        }
        BenchCommand::Proxy(proxy) => tokio::task::spawn_blocking(move || proxy::run(&proxy)).await?,
    }
}
