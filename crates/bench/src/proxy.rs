//! `skiff bench proxy`: how fast the service proxy programs the kernel, against the
//! kube-proxy-style rulesets of `ruleset-peers.sh`, all in throwaway network namespaces.
//!
//! Measured for skiff's nftables mode (and, with `--iptables`, its iptables mode):
//! - full sync of N Services × M endpoints: the change tracker turning the synced watch
//!   cache into the model, plus the data plane writing it (what kube-proxy's first
//!   `syncProxyRules` does);
//! - one endpoint change with N Services loaded: EndpointSlice event into the tracker to
//!   the kernel transaction's acknowledgement, repeated, p50/p99;
//! - resident memory of this process after the full sync.
//!
//! The peers are the rulesets `gen-rules.py` writes (kube-proxy's nftables layout, a
//! compact verdict-map layout, kube-proxy's iptables layout), loaded with `nft -f` and
//! `iptables-restore` into a fresh namespace each, timed the same way as
//! `ruleset-peers.sh`. Same services, same endpoints, same machine, same run.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use serde_json::{json, Value};
use skiff_proxy::backend::{Dataplane, Update};
use skiff_proxy::model::NodeContext;
use skiff_proxy::tracker::ChangeTracker;

use crate::proxy_netns::Netns;
use crate::stats::{millis, LatencySummary};
use crate::{proxy_datapath, proxy_userspace};

#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    /// Services to program.
    #[arg(long, default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=60_000))]
    pub services: usize,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 10, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub endpoints: usize,
    /// Single endpoint changes to time.
    #[arg(long, default_value_t = 200, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub changes: usize,
    /// Skip the kube-proxy nftables peer (minutes at 10,000 Services).
    #[arg(long)]
    pub skip_nft_kp: bool,
    /// Skip all peers.
    #[arg(long)]
    pub skip_peers: bool,
    /// Also measure skiff's iptables mode.
    #[arg(long)]
    pub iptables: bool,
    /// Directory with gen-rules.py (the peers' ruleset generator).
    #[arg(long, default_value = "../shared/bench/peers")]
    pub peers_dir: PathBuf,
    /// Skip the sync measurement (full sync, one change, memory) and its peers.
    #[arg(long)]
    pub skip_sync: bool,
    /// Also time TCP connects to the first and the last of the loaded Services through a
    /// node namespace (nftables; iptables too with `--iptables`).
    #[arg(long)]
    pub datapath: bool,
    /// Timed connects per target in the data-path measurement.
    #[arg(long, default_value_t = 5000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub connects: usize,
    /// Also compare userspace mode's relay with haproxy mode tcp (wrk, nginx backend).
    #[arg(long)]
    pub userspace: bool,
    /// wrk's -d for the userspace comparison.
    #[arg(long, default_value = "10s")]
    pub wrk_duration: String,
    /// wrk's -c for the userspace comparison.
    #[arg(long, default_value_t = 50, value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub wrk_connections: usize,
    /// Rounds of the userspace comparison: the targets take turns in every round and the
    /// verdict compares medians, so a noisy spell of the machine hits every target alike.
    #[arg(long, default_value_t = 3, value_parser = RangedU64ValueParser::<usize>::new().range(1..=20))]
    pub wrk_rounds: usize,
}

/// The ClusterIP of Service `i`.
pub(crate) fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1)
}

/// Endpoint j of Service i, as gen-rules.py's "unique" mode addresses them.
pub(crate) fn endpoint(i: usize, j: usize, per_service: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + (i * per_service + j) as u32 + 1)
}

/// Service `i` of the sync measurement (`svc-<i>`, port 80 → 8080).
fn service_json(i: usize) -> Value {
    service_json_port(&format!("svc-{i}"), vip(i), 80)
}

/// The EndpointSlice of Service `i` of the sync measurement.
fn slice_json(i: usize, endpoints: &[Ipv4Addr]) -> Value {
    slice_json_port(&format!("svc-{i}"), endpoints, 8080)
}

/// A ClusterIP Service `default/<name>` with one TCP port `port` (named http, target 8080).
pub(crate) fn service_json_port(name: &str, cluster_ip: Ipv4Addr, port: u16) -> Value {
    json!({"metadata": {"namespace": "default", "name": name},
           "spec": {"clusterIP": cluster_ip.to_string(), "ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
}

/// The EndpointSlice of Service `default/<name>`: ready `endpoints` on node-1, TCP `port`.
pub(crate) fn slice_json_port(name: &str, endpoints: &[Ipv4Addr], port: u16) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "nodeName": "node-1", "conditions": {"ready": true}}))
        .collect();
    json!({"metadata": {"namespace": "default", "name": format!("{name}-abc"),
                        "labels": {"kubernetes.io/service-name": name}},
           "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}], "endpoints": eps})
}

/// A kernel data plane of `mode` (nftables or iptables) for the calling thread's namespace.
pub(crate) fn new_dataplane(mode: skiff_proxy::Mode) -> Result<Box<dyn Dataplane>> {
    Ok(match mode {
        skiff_proxy::Mode::Nftables => Box::new(skiff_proxy::backend::nftables::Nftables::new(None)?),
        skiff_proxy::Mode::Iptables => Box::new(skiff_proxy::backend::iptables::Iptables::new(None)),
        skiff_proxy::Mode::Userspace => bail!("userspace mode has no kernel data plane to time"),
    })
}

/// Results of one skiff mode.
#[derive(Debug, serde::Serialize)]
pub struct ModeResult {
    pub mode: &'static str,
    pub full_sync_ms: f64,
    pub model_ms: f64,
    pub change: LatencySummary,
    pub rss_after_full_mib: f64,
}

/// One peer style loaded from text.
#[derive(Debug, serde::Serialize)]
pub struct PeerResult {
    pub style: String,
    pub load_ms: f64,
    pub maxrss_mib: f64,
}

fn rss_mib() -> f64 {
    crate::procfs::memory(std::process::id()).map(|m| m.rss_kib as f64 / 1024.0).unwrap_or(0.0)
}

/// Full sync then `changes` single-endpoint changes, in a fresh namespace.
fn measure_mode(mode: skiff_proxy::Mode, args: &ProxyArgs) -> Result<ModeResult> {
    let ns = Netns::new(mode.as_str())?;
    ns.enter()?;
    let mut dataplane = new_dataplane(mode)?;
    let mut tracker = ChangeTracker::new(NodeContext { node_name: "node-1".into() });
    for i in 0..args.services {
        tracker.apply_service(&service_json(i))?;
        let eps: Vec<Ipv4Addr> = (0..args.endpoints).map(|j| endpoint(i, j, args.endpoints)).collect();
        tracker.apply_endpoint_slice(&slice_json(i, &eps), None)?;
    }
    let started = Instant::now();
    let changes = tracker.take_changes();
    let model = started.elapsed();
    dataplane.sync(&Update { full: true, desired: tracker.desired(), changed: &changes.changed })?;
    let full = started.elapsed();
    let rss = rss_mib();

    // Replace endpoint 0 of a Service with a fresh address, alternating back and forth.
    // iptables mode rewrites all of KUBE-SERVICES per change (seconds at 10k Services, as
    // in kube-proxy), so it gets a few samples only.
    let count = if mode == skiff_proxy::Mode::Iptables { args.changes.min(10) } else { args.changes };
    let mut samples = Vec::with_capacity(count);
    for k in 0..count {
        let i = (k * 7919) % args.services;
        let mut eps: Vec<Ipv4Addr> = (0..args.endpoints).map(|j| endpoint(i, j, args.endpoints)).collect();
        if k % 2 == 0 {
            eps[0] = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + k as u32);
        }
        let slice = slice_json(i, &eps);
        let t0 = Instant::now();
        tracker.apply_endpoint_slice(&slice, None)?;
        let changes = tracker.take_changes();
        dataplane.sync(&Update { full: false, desired: tracker.desired(), changed: &changes.changed })?;
        samples.push(t0.elapsed());
    }
    Ok(ModeResult {
        mode: mode.as_str(),
        full_sync_ms: millis(full),
        model_ms: millis(model),
        change: LatencySummary::from_samples(&mut samples),
        rss_after_full_mib: rss,
    })
}

/// Loads one gen-rules.py style into a fresh namespace, timed like ruleset-peers.sh.
fn measure_peer(style: &str, args: &ProxyArgs) -> Result<PeerResult> {
    let generator = args.peers_dir.join("gen-rules.py");
    let rules = tempfile::NamedTempFile::new()?;
    let out = Command::new("python3")
        .arg(&generator)
        .args(["--style", style, "--services", &args.services.to_string(), "--endpoints", &args.endpoints.to_string()])
        .stdout(rules.reopen()?)
        .status()
        .with_context(|| format!("running {}", generator.display()))?;
    if !out.success() {
        bail!("{} --style {style} failed", generator.display());
    }
    let ns = Netns::new("peer")?;
    let path = rules.path().to_string_lossy().into_owned();
    let load: Vec<&str> = if style == "ipt" { vec!["iptables-restore", &path] } else { vec!["nft", "-f", &path] };
    let timing = tempfile::NamedTempFile::new()?;
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(timing.path())
        .args(["ip", "netns", "exec", &ns.name])
        .args(&load)
        .status();
    let elapsed = started.elapsed();
    let (load_ms, rss_kib) = match status {
        Ok(s) if s.success() => {
            let text = std::fs::read_to_string(timing.path()).unwrap_or_default();
            let mut parts = text.split_whitespace();
            let secs: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(elapsed.as_secs_f64());
            (secs * 1000.0, parts.next().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0))
        }
        // No /usr/bin/time: time the load ourselves.
        _ => {
            let started = Instant::now();
            let s = Command::new("ip").args(["netns", "exec", &ns.name]).args(&load).status()?;
            if !s.success() {
                bail!("loading the {style} ruleset failed");
            }
            (started.elapsed().as_secs_f64() * 1000.0, 0.0)
        }
    };
    Ok(PeerResult { style: style.to_owned(), load_ms, maxrss_mib: rss_kib / 1024.0 })
}

/// Runs every measurement asked for and prints a table per part and one JSON line.
pub fn run(args: &ProxyArgs) -> Result<()> {
    let mut modes = vec![skiff_proxy::Mode::Nftables];
    if args.iptables {
        modes.push(skiff_proxy::Mode::Iptables);
    }
    let mut results = Vec::new();
    let mut peers = Vec::new();
    if !args.skip_sync {
        for &mode in &modes {
            // Each mode in its own thread, so entering the namespace leaves the caller alone.
            let a = args.clone();
            eprintln!("skiff bench proxy: {} full sync and changes…", mode.as_str());
            let r = std::thread::spawn(move || measure_mode(mode, &a))
                .join()
                .map_err(|_| anyhow::anyhow!("measurement thread panicked"))??;
            results.push(r);
        }
        if !args.skip_peers {
            let mut styles = vec!["nft-compact", "ipt"];
            if !args.skip_nft_kp {
                styles.insert(0, "nft-kp");
            }
            for style in styles {
                eprintln!("skiff bench proxy: peer {style}…");
                match measure_peer(style, args) {
                    Ok(p) => peers.push(p),
                    Err(e) => eprintln!("peer {style} skipped: {e:#}"),
                }
            }
        }
        print!("{}", table(args, &results, &peers));
    }
    let mut datapath = Vec::new();
    if args.datapath {
        for &mode in &modes {
            eprintln!("skiff bench proxy: {} data path…", mode.as_str());
            datapath.push(proxy_datapath::measure(mode, args)?);
        }
        print!("{}", proxy_datapath::table(&datapath));
    }
    let mut userspace = Vec::new();
    if args.userspace {
        eprintln!("skiff bench proxy: userspace relay vs haproxy…");
        userspace = proxy_userspace::measure(args)?;
        print!("{}", proxy_userspace::table(&userspace, args));
    }
    println!(
        "{}",
        json!({"bench": "proxy", "services": args.services, "endpoints": args.endpoints,
               "skiff": results, "peers": peers, "datapath": datapath, "userspace": userspace})
    );
    Ok(())
}

fn table(args: &ProxyArgs, results: &[ModeResult], peers: &[PeerResult]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "## skiff bench proxy: {} Services × {} endpoints\n", args.services, args.endpoints);
    let _ = writeln!(s, "| what | full sync | model part | one change p50 | p99 | max | RSS after full sync |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            s,
            "| skiff {} | {:.0} ms | {:.0} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} MiB |",
            r.mode, r.full_sync_ms, r.model_ms, r.change.p50_ms, r.change.p99_ms, r.change.max_ms, r.rss_after_full_mib
        );
    }
    for p in peers {
        let _ = writeln!(
            s,
            "| peer {} (text load) | {:.0} ms | – | – | – | – | {:.0} MiB (loader) |",
            p.style, p.load_ms, p.maxrss_mib
        );
    }
    if let Some(nft) = results.iter().find(|r| r.mode == "nftables") {
        let _ = writeln!(s);
        for p in peers {
            let _ = writeln!(
                s,
                "- {} / skiff nftables full sync: {:.1}×",
                p.style,
                p.load_ms / nft.full_sync_ms.max(0.001)
            );
        }
        let target = |ok: bool| if ok { "met" } else { "MISSED" };
        // The targets: 10,000 Services × 10 in 2 s, 30,000 in 6 s.
        let (limit_ms, at) = if args.services > 10_000 { (6000.0, "30k") } else { (2000.0, "10k") };
        let _ = writeln!(
            s,
            "- target full sync ≤ {:.0} s at {at}×10: {:.0} ms ({})",
            limit_ms / 1000.0,
            nft.full_sync_ms,
            target(nft.full_sync_ms <= limit_ms)
        );
        if args.services <= 10_000 {
            let _ = writeln!(
                s,
                "- target memory ≤ 200 MB after the full sync at 10k×10: {:.0} MiB RSS of this process ({})",
                nft.rss_after_full_mib,
                target(nft.rss_after_full_mib * 1.048_576 <= 200.0)
            );
        }
        let _ = writeln!(
            s,
            "- target one change ≤ 20 ms p99: {:.2} ms ({})",
            nft.change.p99_ms,
            target(nft.change.p99_ms <= 20.0)
        );
    }
    s
}
