//! `/metrics` (Prometheus text), `/healthz` and `/readyz`.
//!
//! Request counters live in one cache-line-aligned block per answering thread, updated with
//! relaxed atomic adds, so counting costs the hot path no shared writes; the blocks are
//! summed when `/metrics` is scraped.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::answer::Answerer;
use crate::wire::{rcode, rtype};

/// Query types counted by name; everything else is `other`.
const QTYPES: [(u16, &str); 9] = [
    (rtype::A, "A"),
    (rtype::AAAA, "AAAA"),
    (rtype::SRV, "SRV"),
    (rtype::PTR, "PTR"),
    (rtype::TXT, "TXT"),
    (rtype::CNAME, "CNAME"),
    (rtype::SOA, "SOA"),
    (rtype::NS, "NS"),
    (rtype::ANY, "ANY"),
];
/// Columns after the named types: `other`, and `none` for unreadable questions.
const QTYPE_SLOTS: usize = QTYPES.len() + 2;

const RCODES: [(u16, &str); 7] = [
    (rcode::NOERROR as u16, "NOERROR"),
    (rcode::FORMERR as u16, "FORMERR"),
    (rcode::SERVFAIL as u16, "SERVFAIL"),
    (rcode::NXDOMAIN as u16, "NXDOMAIN"),
    (rcode::NOTIMP as u16, "NOTIMP"),
    (rcode::REFUSED as u16, "REFUSED"),
    (rcode::BADVERS, "BADVERS"),
];
const RCODE_SLOTS: usize = RCODES.len() + 1;

/// Request latency bucket bounds, seconds (10 µs … 2.5 s).
const LATENCY_BUCKETS: [f64; 17] =
    [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Programming latency bucket bounds, seconds (0.5 ms … 10 s).
const PROGRAMMING_BUCKETS: [f64; 14] =
    [5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters of one answering thread.
#[repr(align(128))]
pub struct ThreadStats {
    requests: [[AtomicU64; RCODE_SLOTS]; QTYPE_SLOTS],
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
}

impl Default for ThreadStats {
    fn default() -> ThreadStats {
        ThreadStats {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_ns: AtomicU64::new(0),
        }
    }
}

impl ThreadStats {
    /// Counts one answered request.
    pub fn record(&self, qtype: Option<u16>, code: u16, elapsed: Duration) {
        let t = match qtype {
            None => QTYPE_SLOTS - 1,
            Some(q) => QTYPES.iter().position(|(t, _)| *t == q).unwrap_or(QTYPES.len()),
        };
        let r = RCODES.iter().position(|(c, _)| *c == code).unwrap_or(RCODES.len());
        self.requests[t][r].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A histogram updated off the hot path (programming latency).
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    fn observe(&mut self, seconds: f64) {
        let bucket = self.bounds.iter().position(|b| seconds <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += seconds.max(0.0);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        render_histogram(out, name, help, self.bounds, &self.counts, self.sum);
    }
}

/// Every metric of the DNS server.
pub struct Metrics {
    threads: Vec<ThreadStats>,
    programming: Mutex<Histogram>,
    watch_apply: Mutex<Histogram>,
    upstream_cache_hits: AtomicU64,
    upstream_requests: AtomicU64,
}

impl Metrics {
    /// Metrics with `threads` independent counter blocks (one per answering thread).
    pub fn new(threads: usize) -> Metrics {
        Metrics {
            threads: (0..threads.max(1)).map(|_| ThreadStats::default()).collect(),
            programming: Mutex::new(Histogram::new(&PROGRAMMING_BUCKETS)),
            watch_apply: Mutex::new(Histogram::new(&PROGRAMMING_BUCKETS)),
            upstream_cache_hits: AtomicU64::new(0),
            upstream_requests: AtomicU64::new(0),
        }
    }

    /// The counter block of thread `index` (indexes beyond the count share the last block).
    pub fn thread(&self, index: usize) -> &ThreadStats {
        &self.threads[index.min(self.threads.len() - 1)]
    }

    /// Time from an EndpointSlice change (its `endpoints.kubernetes.io/last-change-trigger-time`)
    /// to the answer table reflecting it.
    pub fn observe_programming(&self, seconds: f64) {
        self.programming.lock().unwrap_or_else(|e| e.into_inner()).observe(seconds);
    }

    /// Time from a watch event's arrival to the table reflecting it.
    pub fn observe_watch_apply(&self, seconds: f64) {
        self.watch_apply.lock().unwrap_or_else(|e| e.into_inner()).observe(seconds);
    }

    pub fn count_upstream(&self, from_cache: bool) {
        let counter = if from_cache { &self.upstream_cache_hits } else { &self.upstream_requests };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, answerer: &Answerer) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_dns_requests_total DNS requests answered, by query type and response code.\n");
        out.push_str("# TYPE skiff_dns_requests_total counter\n");
        for (t, qtype) in QTYPES.iter().map(|(_, n)| *n).chain(["other", "none"]).enumerate() {
            for (r, code) in RCODES.iter().map(|(_, n)| *n).chain(["other"]).enumerate() {
                let total: u64 = self.threads.iter().map(|s| s.requests[t][r].load(Ordering::Relaxed)).sum();
                if total > 0 {
                    let _ = writeln!(out, "skiff_dns_requests_total{{qtype=\"{qtype}\",rcode=\"{code}\"}} {total}");
                }
            }
        }
        let counts: Vec<u64> = (0..=LATENCY_BUCKETS.len())
            .map(|b| self.threads.iter().map(|s| s.latency[b].load(Ordering::Relaxed)).sum())
            .collect();
        let sum_ns: u64 = self.threads.iter().map(|s| s.latency_sum_ns.load(Ordering::Relaxed)).sum();
        render_histogram(
            &mut out,
            "skiff_dns_request_duration_seconds",
            "Time from reading a query to having its response ready.",
            &LATENCY_BUCKETS,
            &counts,
            sum_ns as f64 / 1e9,
        );
        self.programming.lock().unwrap_or_else(|e| e.into_inner()).render(
            &mut out,
            "skiff_dns_programming_duration_seconds",
            "Time from an EndpointSlice change (last-change-trigger-time) to answers reflecting it.",
        );
        self.watch_apply.lock().unwrap_or_else(|e| e.into_inner()).render(
            &mut out,
            "skiff_dns_watch_apply_duration_seconds",
            "Time from receiving a watch event to answers reflecting it.",
        );
        let _ = writeln!(out, "# TYPE skiff_dns_upstream_total counter");
        let _ = writeln!(
            out,
            "skiff_dns_upstream_total{{source=\"cache\"}} {}",
            self.upstream_cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "skiff_dns_upstream_total{{source=\"upstream\"}} {}",
            self.upstream_requests.load(Ordering::Relaxed)
        );
        let names = answerer.zone.read().map(|z| z.len()).unwrap_or(0);
        let _ = writeln!(out, "# TYPE skiff_dns_zone_names gauge\nskiff_dns_zone_names {names}");
        let _ = writeln!(out, "# TYPE skiff_dns_synced gauge\nskiff_dns_synced {}", u8::from(answerer.is_synced()));
        out
    }
}

fn render_histogram(out: &mut String, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// Serves `/metrics`, `/healthz` and `/readyz` (200 once the watches have synced, 503
/// before) on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, answerer: Arc<Answerer>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        let answerer = answerer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (code, body) = match req.uri().path() {
                    "/healthz" | "/livez" => (200, "ok".to_owned()),
                    "/readyz" if answerer.is_synced() => (200, "ok".to_owned()),
                    "/readyz" => (503, "watches not synced yet".to_owned()),
                    "/metrics" => (200, metrics.render(&answerer)),
                    _ => (404, "not found".to_owned()),
                };
                let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
                std::future::ready(Ok::<_, Infallible>(resp))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Binds the metrics listener (so a bad address fails at startup, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_type_and_code() {
        let m = Metrics::new(2);
        m.thread(0).record(Some(rtype::A), 0, Duration::from_micros(30));
        m.thread(1).record(Some(rtype::A), 0, Duration::from_micros(3));
        m.thread(5).record(Some(99), 3, Duration::from_millis(3));
        m.thread(1).record(None, 1, Duration::from_micros(3));
        m.observe_programming(0.002);
        let answerer = crate::fixture::answerer();
        let text = m.render(&answerer);
        assert!(text.contains("skiff_dns_requests_total{qtype=\"A\",rcode=\"NOERROR\"} 2"), "{text}");
        assert!(text.contains("skiff_dns_requests_total{qtype=\"other\",rcode=\"NXDOMAIN\"} 1"), "{text}");
        assert!(text.contains("skiff_dns_requests_total{qtype=\"none\",rcode=\"FORMERR\"} 1"), "{text}");
        assert!(text.contains("skiff_dns_request_duration_seconds_bucket{le=\"0.00001\"} 2"), "{text}");
        assert!(text.contains("skiff_dns_request_duration_seconds_count 4"), "{text}");
        assert!(text.contains("skiff_dns_programming_duration_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
    }
}
