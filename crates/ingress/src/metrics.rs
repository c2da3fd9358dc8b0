//! Prometheus metrics: requests by Ingress and status, upstream latency, route updates.
//!
//! Counters are atomics reached through the route a request matched (no lock on the request
//! path). Per-Ingress counters outlive route-table swaps: [`Metrics::ingress`] hands out the
//! same `Arc` for the same Ingress every time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Status codes counted individually; others are counted per class (`4xx`, …).
const TRACKED: [u16; 20] =
    [200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504];

/// Upstream latency histogram bounds, seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Request counts of one Ingress.
#[derive(Debug, Default)]
pub struct IngressCounters {
    tracked: [AtomicU64; TRACKED.len()],
    by_class: [AtomicU64; 6],
}

impl IngressCounters {
    pub fn record(&self, status: u16) {
        match TRACKED.iter().position(|s| *s == status) {
            Some(i) => self.tracked[i].fetch_add(1, Ordering::Relaxed),
            None => self.by_class[usize::from(status / 100).min(5)].fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// All metrics of one controller.
#[derive(Debug, Default)]
pub struct Metrics {
    ingresses: Mutex<BTreeMap<String, Arc<IngressCounters>>>,
    /// Requests no Ingress matched (the built-in 404) and those rejected before routing.
    pub unrouted: IngressCounters,
    upstream_latency: Histogram,
    pub upstream_errors: AtomicU64,
    pub connect_retries: AtomicU64,
    pub route_updates: AtomicU64,
    pub cert_swaps: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
}

impl Metrics {
    /// The counters of Ingress `namespace/name` (created on first use).
    pub fn ingress(&self, name: &str) -> Arc<IngressCounters> {
        let mut map = self.ingresses.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Drops counters of Ingresses that are gone (those not in `live`).
    pub fn retain_ingresses(&self, live: &std::collections::HashSet<String>) {
        let mut map = self.ingresses.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| live.contains(name));
    }

    pub fn observe_upstream(&self, seconds: f64) {
        let h = &self.upstream_latency;
        // One bucket per observation (cumulated when rendered) keeps the hot path to two adds.
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_ingress_requests_total Requests answered, by Ingress and status code.\n");
        out.push_str("# TYPE skiff_ingress_requests_total counter\n");
        let map = self.ingresses.lock().unwrap_or_else(|p| p.into_inner());
        let rows = map.iter().map(|(name, c)| (name.as_str(), &**c)).chain(std::iter::once(("", &self.unrouted)));
        for (name, counters) in rows {
            let (namespace, ingress) = name.split_once('/').unwrap_or(("", ""));
            let labels = format!("namespace=\"{namespace}\",ingress=\"{ingress}\"");
            for (i, status) in TRACKED.iter().enumerate() {
                let n = counters.tracked[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "skiff_ingress_requests_total{{{labels},status=\"{status}\"}} {n}");
                }
            }
            for (class, counter) in counters.by_class.iter().enumerate() {
                let n = counter.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "skiff_ingress_requests_total{{{labels},status=\"{class}xx\"}} {n}");
                }
            }
        }
        drop(map);
        let h = &self.upstream_latency;
        out.push_str("# HELP skiff_ingress_upstream_latency_seconds Time to the upstream's response headers.\n");
        out.push_str("# TYPE skiff_ingress_upstream_latency_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let n = cumulative;
            let _ = writeln!(out, "skiff_ingress_upstream_latency_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "skiff_ingress_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "skiff_ingress_upstream_latency_seconds_sum {}",
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "skiff_ingress_upstream_latency_seconds_count {count}");
        let counters = [
            ("skiff_ingress_upstream_errors_total", "Upstream connect or protocol failures.", &self.upstream_errors),
            (
                "skiff_ingress_connect_retries_total",
                "Requests moved to another endpoint after a failed connect.",
                &self.connect_retries,
            ),
            ("skiff_ingress_route_updates_total", "Route tables compiled and swapped in.", &self.route_updates),
            ("skiff_ingress_certificate_swaps_total", "Certificate sets swapped in.", &self.cert_swaps),
            (
                "skiff_ingress_tls_handshake_errors_total",
                "Failed or timed-out TLS handshakes.",
                &self.tls_handshake_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_histogram() {
        let m = Metrics::default();
        m.ingress("default/web").record(200);
        m.ingress("default/web").record(200);
        m.ingress("default/web").record(418);
        m.observe_upstream(0.002);
        let text = m.render();
        assert!(
            text.contains("skiff_ingress_requests_total{namespace=\"default\",ingress=\"web\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("status=\"4xx\"} 1"), "{text}");
        assert!(text.contains("skiff_ingress_upstream_latency_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("skiff_ingress_upstream_latency_seconds_bucket{le=\"0.001\"} 0"), "{text}");
    }
}
