//! The results of `skiff bench api`: a table for people (Markdown, so it pastes into the
//! README) and one JSON line for tools and for comparing runs.

use std::fmt::Write as _;

use serde::Serialize;

use crate::procfs::Memory;
use crate::scenarios::{cold_start::ColdStartResult, creates::CreateResult, watch::WatchResult};

/// Targets from the API server issue ("Performance").
pub const TARGET_COLD_START_MS: f64 = 200.0;
pub const TARGET_CREATES_PER_SEC: f64 = 2000.0;
pub const TARGET_RSS_MB: f64 = 150.0;
pub const TARGET_WATCH_P99_MS: f64 = 10.0;

/// Everything one `skiff bench api` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ApiReport {
    pub bench: &'static str,
    /// How the benchmark client was compiled; the server binary may differ.
    pub client_build: &'static str,
    pub server_binary: String,
    /// CPUs of the machine, shared by the server and the client.
    pub cpus: usize,
    pub cold_start: ColdStartResult,
    pub creates: CreateResult,
    pub memory: MemoryResult,
    pub watch: WatchResult,
    /// Where the servers' data and logs were kept (`--keep`).
    pub kept_dir: Option<String>,
}

/// Server memory at the points of the run that matter, in MB (10^6 bytes).
#[derive(Debug, Clone, Serialize)]
pub struct MemoryResult {
    pub services: usize,
    /// After start-up, before any benchmark object existed.
    pub idle_rss_mb: f64,
    /// Right after the creates: the server holding every benchmark Service.
    pub rss_mb: f64,
    /// After the watch scenario (watch streams closed by then or closing).
    pub rss_after_watch_mb: f64,
    /// The highest RSS over the whole run (VmHWM).
    pub peak_rss_mb: f64,
}

impl MemoryResult {
    pub fn new(services: usize, idle: Memory, with_services: Memory, after_watch: Memory) -> Self {
        let mb = |kib: u64| (kib as f64 * 1024.0 / 1e6 * 10.0).round() / 10.0;
        MemoryResult {
            services,
            idle_rss_mb: mb(idle.rss_kib),
            rss_mb: mb(with_services.rss_kib),
            rss_after_watch_mb: mb(after_watch.rss_kib),
            peak_rss_mb: mb(after_watch.peak_kib),
        }
    }
}

/// Whether each issue target was met.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TargetsMet {
    pub cold_start: bool,
    pub creates_per_sec: bool,
    pub rss: bool,
    pub watch_p99: bool,
}

impl ApiReport {
    pub fn targets_met(&self) -> TargetsMet {
        TargetsMet {
            cold_start: self.cold_start.median_ms < TARGET_COLD_START_MS,
            creates_per_sec: self.creates.creates_per_sec >= TARGET_CREATES_PER_SEC && self.creates.errors == 0,
            rss: self.memory.rss_mb < TARGET_RSS_MB,
            watch_p99: self.watch.after_ack.p99_ms < TARGET_WATCH_P99_MS && self.watch.missing == 0,
        }
    }

    /// The report and the targets as one line of JSON.
    pub fn json_line(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let (Some(obj), Ok(met)) = (value.as_object_mut(), serde_json::to_value(self.targets_met())) {
            obj.insert("targets_met".into(), met);
        }
        value.to_string()
    }

    /// A Markdown table of the headline numbers with their targets.
    pub fn table(&self) -> String {
        let met = self.targets_met();
        let (c, w, m) = (&self.creates, &self.watch, &self.memory);
        let mut rows: Vec<[String; 5]> = Vec::new();
        let mut row = |scenario: &str, metric: &str, value: String, target: &str, ok: Option<bool>| {
            let ok = ok.map_or("", |ok| if ok { "yes" } else { "NO" });
            rows.push([scenario.into(), metric.into(), value, target.into(), ok.into()]);
        };
        let cs = &self.cold_start;
        row(
            "cold start",
            &format!("spawn to /readyz 200, median of {}", cs.runs),
            format!("{:.1} ms ({:.1}–{:.1})", cs.median_ms, cs.min_ms, cs.max_ms),
            "< 200 ms",
            Some(met.cold_start),
        );
        let creates = format!("create {} Services", c.services);
        row(&creates, "throughput", format!("{:.0} /s", c.creates_per_sec), "≥ 2000 /s", Some(met.creates_per_sec));
        row(&creates, "latency p50 / p99", format!("{:.1} / {:.1} ms", c.latency.p50_ms, c.latency.p99_ms), "", None);
        row(&creates, "errors", c.errors.to_string(), "0", Some(c.errors == 0));
        row(
            &creates,
            "CPU server / client",
            format!("{:.1} s / {:.1} s in {:.1} s", c.server_cpu_ms / 1e3, c.client_cpu_ms / 1e3, c.wall_ms / 1e3),
            "",
            None,
        );
        row("memory", "server RSS idle", format!("{:.1} MB", m.idle_rss_mb), "", None);
        row(
            "memory",
            &format!("server RSS with {} Services", m.services),
            format!("{:.1} MB", m.rss_mb),
            "< 150 MB",
            Some(met.rss),
        );
        row("memory", "server peak RSS (VmHWM)", format!("{:.1} MB", m.peak_rss_mb), "", None);
        let watch = format!("watch, {} watchers", w.watchers);
        row(
            &watch,
            "delivery p50 / p99 after the 201",
            format!("{:.2} / {:.2} ms", w.after_ack.p50_ms, w.after_ack.p99_ms),
            "p99 < 10 ms",
            Some(met.watch_p99),
        );
        row(
            &watch,
            "delivery p50 / p99 from send (incl. the create)",
            format!("{:.2} / {:.2} ms", w.from_send.p50_ms, w.from_send.p99_ms),
            "",
            None,
        );
        row(
            &watch,
            "the timed creates p50 / p99",
            format!("{:.2} / {:.2} ms", w.create_latency.p50_ms, w.create_latency.p99_ms),
            "",
            None,
        );
        row(
            &watch,
            "events delivered / missing",
            format!("{} / {}", w.delivered, w.missing),
            "0 missing",
            Some(w.missing == 0),
        );

        let mut out = String::new();
        let _ = writeln!(
            out,
            "skiff bench api: server {}, client build {}, {} CPUs shared by server and client\n",
            self.server_binary, self.client_build, self.cpus
        );
        let header = ["scenario", "metric", "result", "target", "met"].map(String::from);
        for cells in std::iter::once(&header).chain(rows.iter()) {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if std::ptr::eq(cells, &header) {
                let _ = writeln!(out, "|---|---|---|---|---|");
            }
        }
        let _ = writeln!(
            out,
            "\nCreates: {} workers over {} HTTP/2 connections. Watch: {} creates {} ms apart from one writer, one\n\
             connection per watcher. Delivery is measured from the create's 201 (a lower bound: {} of {} events\n\
             arrived before it) and from just before the create was sent (an upper bound: it includes the create\n\
             itself). The client runs on the same CPUs as the server; its CPU time during the creates is shown.",
            c.concurrency, c.connections, w.events, w.interval_ms, w.before_ack, w.delivered
        );
        if let Some(dir) = &self.kept_dir {
            let _ = writeln!(out, "Kept the servers' data and logs in {dir}");
        }
        out
    }
}
