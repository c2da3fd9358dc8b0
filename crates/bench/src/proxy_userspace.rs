//! `skiff bench proxy --userspace`: userspace mode's relay against haproxy `mode tcp`,
//! both forwarding to the same nginx, measured with the same wrk settings — the setup of
//! `tcp-peers.sh` (nginx with one worker and a 2-byte body, haproxy `nbthread 1`,
//! `wrk -t1 -c50 -d10s --latency`, keep-alive and `Connection: close`).
//!
//! Everything runs in one throwaway namespace, so all three see the same conntrack and
//! loopback costs:
//!
//! ```text
//!  wrk ── 10.96.0.1:80 (ClusterIP) ── nft redirect ── skiff relay ──┐
//!  wrk ── 10.245.1.1:18083 ───────────────────────── haproxy ──────┼── nginx 10.245.1.2:18080
//!  wrk ── 10.245.1.2:18080 (direct, the floor) ─────────────────────┘
//! ```
//!
//! The relay is skiff's userspace data plane itself, programmed from a Service and an
//! EndpointSlice through the change tracker, on the relay runtime it starts itself (as in
//! `skiff proxy`: a worker per core unless `SKIFF_PROXY_RELAY_THREADS` says otherwise; the
//! table header shows the count).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use skiff_proxy::backend::{Dataplane, Update};
use skiff_proxy::model::NodeContext;
use skiff_proxy::tracker::ChangeTracker;

use crate::proxy::{service_json_port, slice_json_port, ProxyArgs};
use crate::proxy_netns::Netns;

const PROXY_IP: &str = "10.245.1.1";
const BACKEND_IP: &str = "10.245.1.2";
const BACKEND_PORT: u16 = 18080;
const HAPROXY_PORT: u16 = 18083;
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const SERVICE_PORT: u16 = 80;

/// One wrk run.
#[derive(Debug, Serialize)]
pub struct WrkResult {
    pub target: String,
    pub close: bool,
    /// Which round of the comparison (from 1).
    pub round: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// wrk's socket error and non-2xx counts, when it printed any.
    pub errors: String,
}

/// A child process stopped (and reaped) on drop: SIGTERM first, so nginx's master takes
/// its worker down with it (a SIGKILLed master leaves the worker running, holding every
/// descriptor it inherited — the benchmark lock's, say), SIGKILL after two seconds.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.0.id()) {
            // SAFETY: signals our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000;\n  client_body_temp_path {d}/tmp_body;\n  \
         proxy_temp_path {d}/tmp_proxy;\n  fastcgi_temp_path {d}/tmp_fcgi;\n  uwsgi_temp_path {d}/tmp_uwsgi;\n  \
         scgi_temp_path {d}/tmp_scgi;\n  \
         server {{\n    listen {BACKEND_IP}:{BACKEND_PORT} reuseport backlog=4096;\n    \
         location / {{ default_type text/plain; return 200 'ok'; }}\n  }}\n}}\n"
    )
}

fn haproxy_conf() -> String {
    format!(
        "global\n    nbthread 1\n    maxconn 8000\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
         timeout client 30s\n    timeout server 30s\nfrontend fe_tcp\n    bind {PROXY_IP}:{HAPROXY_PORT}\n    \
         default_backend be\nbackend be\n    server s1 {BACKEND_IP}:{BACKEND_PORT}\n"
    )
}

/// One HTTP/1.0 GET answering "ok" (run inside the namespace).
fn answers_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.ends_with("ok")
}

/// Waits (inside `ns`) until every address answers "ok".
fn wait_ready(ns: &Netns, addrs: Vec<SocketAddr>) -> Result<()> {
    ns.run_in(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in addrs {
            while !answers_ok(addr) {
                if Instant::now() > deadline {
                    bail!("{addr} did not answer \"ok\" within 10 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    })
}

/// wrk's duration strings ("250us", "1.5ms", "2s") in milliseconds.
fn wrk_millis(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// Requests/s, p50 and p99 (ms) and the error lines of wrk's `--latency` output.
pub fn parse_wrk(out: &str) -> Option<(f64, f64, f64, String)> {
    let field = |first: &str| {
        out.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(first)).then(|| words.next().map(str::to_owned)).flatten()
        })
    };
    let rps = field("Requests/sec:")?.parse().ok()?;
    let p50 = wrk_millis(&field("50%")?)?;
    let p99 = wrk_millis(&field("99%")?)?;
    let errors: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors:") || l.starts_with("Non-2xx"))
        .map(str::to_owned)
        .collect();
    Some((rps, p50, p99, errors.join("; ")))
}

fn run_wrk(ns: &Netns, args: &ProxyArgs, target: &str, url: &str, close: bool, round: usize) -> Result<WrkResult> {
    let mut cmd = ns.command("wrk");
    cmd.args(["-t1", &format!("-c{}", args.wrk_connections), &format!("-d{}", args.wrk_duration), "--latency"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some((rps, p50_ms, p99_ms, errors)) = parse_wrk(&text) else {
        bail!("unreadable wrk output for {target}: {text}{}", String::from_utf8_lossy(&out.stderr));
    };
    Ok(WrkResult { target: target.to_owned(), close, round, rps, p50_ms, p99_ms, errors })
}

/// Runs skiff's userspace relay for one Service inside `ns` until `stop` receives (or is
/// dropped); reports the programmed state (or the error) on `ready`.
fn run_relay(
    ns: &Netns,
    ready: mpsc::Sender<Result<()>>,
    stop: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Result<()>> {
    ns.spawn_in(move || {
        let setup = || -> Result<Box<dyn Dataplane>> {
            let mut dataplane: Box<dyn Dataplane> = Box::new(skiff_proxy::backend::userspace::Userspace::new()?);
            let mut tracker = ChangeTracker::new(NodeContext { node_name: "node-1".into() });
            tracker.apply_service(&service_json_port("web", CLUSTER_IP, SERVICE_PORT))?;
            let backend: Ipv4Addr = BACKEND_IP.parse()?;
            tracker.apply_endpoint_slice(&slice_json_port("web", &[backend], BACKEND_PORT), None)?;
            let changes = tracker.take_changes();
            dataplane.sync(&Update { full: true, desired: tracker.desired(), changed: &changes.changed })?;
            Ok(dataplane)
        };
        match setup() {
            Ok(running) => {
                let _ = ready.send(Ok(()));
                let _ = stop.recv();
                drop(running);
                Ok(())
            }
            Err(e) => {
                let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
                Err(e)
            }
        }
    })
}

/// The whole comparison: direct, haproxy and skiff taking turns for `--wrk-rounds` rounds,
/// keep-alive then `Connection: close`.
pub fn measure(args: &ProxyArgs) -> Result<Vec<WrkResult>> {
    for tool in ["wrk", "nginx", "haproxy"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|o| o.status.success()) {
            bail!("{tool} is not installed");
        }
    }
    let ns = Netns::new("us")?;
    for ip in [PROXY_IP, BACKEND_IP] {
        ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
    }
    // Locally sent packets to a ClusterIP need a route before the redirect rewrites them.
    ns.ip(&["route", "add", "10.96.0.0/12", "dev", "lo"])?;
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path()))?;
    let nginx_err = dir.path().join("error.log");
    let spawn = |mut cmd: Command, log: &str| -> Result<Guard> {
        let log = std::fs::File::create(dir.path().join(log))?;
        Ok(Guard(cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null()).spawn()?))
    };
    let mut nginx = ns.command("nginx");
    nginx.arg("-e").arg(&nginx_err).arg("-p").arg(dir.path()).arg("-c").arg(&conf);
    let _nginx = spawn(nginx, "nginx.out")?;
    let haproxy_cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&haproxy_cfg, haproxy_conf())?;
    let mut haproxy = ns.command("haproxy");
    haproxy.arg("-db").arg("-f").arg(&haproxy_cfg);
    let _haproxy = spawn(haproxy, "haproxy.out")?;

    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let relay = run_relay(&ns, ready_tx, stop_rx);
    let programmed = ready_rx.recv().map_err(|_| anyhow::anyhow!("relay thread ended early"))?;
    let measured = programmed.and_then(|()| {
        let backend = SocketAddr::from((BACKEND_IP.parse::<Ipv4Addr>()?, BACKEND_PORT));
        let haproxy = SocketAddr::from((PROXY_IP.parse::<Ipv4Addr>()?, HAPROXY_PORT));
        let service = SocketAddr::from((CLUSTER_IP, SERVICE_PORT));
        wait_ready(&ns, vec![backend, haproxy, service])?;
        let version = haproxy_version();
        let targets = [
            ("direct nginx (floor)".to_owned(), format!("http://{backend}/")),
            (format!("haproxy {version} mode tcp"), format!("http://{haproxy}/")),
            ("skiff userspace (ClusterIP)".to_owned(), format!("http://{service}/")),
        ];
        let mut results = Vec::new();
        for close in [false, true] {
            for round in 1..=args.wrk_rounds {
                for (target, url) in &targets {
                    results.push(run_wrk(&ns, args, target, url, close, round)?);
                }
            }
        }
        Ok(results)
    });
    let _ = stop_tx.send(());
    let _ = relay.join();
    measured
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|v| v.split('-').next().unwrap_or(v).to_owned())
        })
        .unwrap_or_default()
}

/// The report section, with skiff's ratios to haproxy.
pub fn table(results: &[WrkResult], args: &ProxyArgs) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## userspace mode vs haproxy: wrk -t1 -c{} -d{} --latency, nginx backend (skiff relay threads: {})\n",
        args.wrk_connections,
        args.wrk_duration,
        skiff_proxy::backend::userspace::relay_threads()
    );
    let _ = writeln!(s, "| round | target | connections | req/s | p50 | p99 | errors |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.3} ms | {:.3} ms | {} |",
            r.round,
            r.target,
            if r.close { "close" } else { "keep-alive" },
            r.rps,
            r.p50_ms,
            r.p99_ms,
            if r.errors.is_empty() { "–" } else { &r.errors }
        );
    }
    let _ = writeln!(s);
    for close in [false, true] {
        if let Some(v) = verdict(results, close) {
            let _ = writeln!(
                s,
                "- {} (medians of {} rounds): skiff / haproxy req/s {:.2}×, p99 {:.3} vs {:.3} ms; skiff ahead on \
                 req/s in {} and on p99 in {} of {} rounds — target req/s ≥ and p99 ≤ haproxy: {}",
                if close { "Connection: close" } else { "keep-alive" },
                v.rounds,
                v.rps_ratio,
                v.skiff_p99_ms,
                v.haproxy_p99_ms,
                v.rps_wins,
                v.p99_wins,
                v.rounds,
                if v.met { "met" } else { "MISSED" }
            );
        }
    }
    s
}

/// skiff against haproxy over the rounds of one connection mode.
#[derive(Debug, PartialEq)]
struct Verdict {
    rounds: usize,
    /// Median req/s of skiff over median req/s of haproxy.
    rps_ratio: f64,
    skiff_p99_ms: f64,
    haproxy_p99_ms: f64,
    /// Rounds in which skiff had at least haproxy's req/s of that round.
    rps_wins: usize,
    /// Rounds in which skiff's p99 was at most haproxy's of that round.
    p99_wins: usize,
    met: bool,
}

fn verdict(results: &[WrkResult], close: bool) -> Option<Verdict> {
    let runs = |prefix: &str| -> Vec<&WrkResult> {
        results.iter().filter(|r| r.close == close && r.target.starts_with(prefix)).collect()
    };
    let (skiff, haproxy) = (runs("skiff"), runs("haproxy"));
    if skiff.is_empty() || haproxy.is_empty() {
        return None;
    }
    let median = |runs: &[&WrkResult], value: fn(&WrkResult) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(|r| value(r)).collect();
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        }
    };
    let (skiff_rps, haproxy_rps) = (median(&skiff, |r| r.rps), median(&haproxy, |r| r.rps));
    let (skiff_p99_ms, haproxy_p99_ms) = (median(&skiff, |r| r.p99_ms), median(&haproxy, |r| r.p99_ms));
    let same_round = |s: &&WrkResult| haproxy.iter().find(|h| h.round == s.round).copied();
    let rps_wins = skiff.iter().filter(|s| same_round(s).is_some_and(|h| s.rps >= h.rps)).count();
    let p99_wins = skiff.iter().filter(|s| same_round(s).is_some_and(|h| s.p99_ms <= h.p99_ms)).count();
    Some(Verdict {
        rounds: skiff.len(),
        rps_ratio: skiff_rps / haproxy_rps.max(1e-9),
        skiff_p99_ms,
        haproxy_p99_ms,
        rps_wins,
        p99_wins,
        met: skiff_rps >= haproxy_rps && skiff_p99_ms <= haproxy_p99_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, round: usize, rps: f64, p99_ms: f64) -> WrkResult {
        WrkResult { target: target.into(), close: false, round, rps, p50_ms: 0.5, p99_ms, errors: String::new() }
    }

    #[test]
    fn verdict_compares_medians_and_counts_rounds() {
        let results = [
            run("haproxy", 1, 80_000.0, 1.0),
            run("skiff", 1, 84_000.0, 0.9),
            // A noisy round for haproxy only: the medians are not moved by it.
            run("haproxy", 2, 40_000.0, 9.0),
            run("skiff", 2, 83_000.0, 1.1),
            run("haproxy", 3, 85_000.0, 0.95),
            run("skiff", 3, 82_000.0, 1.0),
        ];
        let v = verdict(&results, false).unwrap();
        assert_eq!((v.rounds, v.rps_wins, v.p99_wins), (3, 2, 2));
        assert!((v.rps_ratio - 83_000.0 / 80_000.0).abs() < 1e-9);
        assert_eq!((v.skiff_p99_ms, v.haproxy_p99_ms), (1.0, 1.0));
        assert!(v.met);
        assert!(verdict(&results, true).is_none(), "no close-mode runs");
        let worse = [run("haproxy", 1, 80_000.0, 1.0), run("skiff", 1, 81_000.0, 1.2)];
        assert!(!verdict(&worse, false).unwrap().met);
    }

    #[test]
    fn reads_wrk_latency_output() {
        let out = "Running 10s test @ http://127.0.0.1:18083/\n  1 threads and 50 connections\n\
                   \x20 Latency Distribution\n     50%  420.00us\n     75%  1.02ms\n     90%    1.50ms\n     \
                   99%    2.10ms\n  12345 requests in 10.00s, 1.5MB read\n  \
                   Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec:  41234.56\n";
        let (rps, p50, p99, errors) = parse_wrk(out).unwrap();
        assert_eq!(rps, 41234.56);
        assert!((p50 - 0.42).abs() < 1e-9);
        assert!((p99 - 2.1).abs() < 1e-9);
        assert_eq!(errors, "Socket errors: connect 0, read 3, write 0, timeout 0");
        assert!(parse_wrk("garbage").is_none());
        assert_eq!(wrk_millis("1.5s"), Some(1500.0));
    }
}
