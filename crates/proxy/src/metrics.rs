//! kube-proxy's metrics (same names, `kubeproxy_` prefix), `/healthz` and `/proxyMode`.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// kube-proxy's sync-duration buckets (exponential from 1 ms).
const SYNC_BUCKETS: [f64; 15] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384];
/// kube-proxy's network-programming buckets (seconds).
const PROGRAMMING_BUCKETS: [f64; 20] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0];

/// A cumulative histogram with fixed buckets.
#[derive(Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, bound) in bounds.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, bounds: &[f64]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

#[derive(Default)]
struct Values {
    sync: Histogram,
    full_sync: Histogram,
    partial_sync: Histogram,
    programming: Histogram,
    last_sync: Option<SystemTime>,
    last_queued: Option<SystemTime>,
    failures: u64,
    service_changes: u64,
    endpoint_changes: u64,
    services: usize,
    endpoints: usize,
    no_local_internal: usize,
    no_local_external: usize,
    /// Changes are waiting since this time (cleared by a successful sync).
    pending_since: Option<SystemTime>,
}

/// Shared between the sync loop (writer) and the HTTP endpoints (readers).
pub struct Metrics {
    mode: &'static str,
    values: Mutex<Values>,
}

/// Gauges the sync loop reports after each successful sync.
pub struct SyncFacts {
    pub full: bool,
    pub duration: Duration,
    pub changed_services: usize,
    pub services: usize,
    pub endpoints: usize,
    pub no_local_internal: usize,
    pub no_local_external: usize,
}

/// `/healthz` turns unhealthy when queued changes wait longer than this.
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(60);

impl Metrics {
    pub fn new(mode: &'static str) -> Metrics {
        Metrics { mode, values: Mutex::new(Values::default()) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Values) -> T) -> T {
        let mut guard = self.values.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A change arrived and waits for a sync.
    pub fn queued(&self) {
        self.with(|v| {
            let now = SystemTime::now();
            v.last_queued = Some(now);
            v.pending_since.get_or_insert(now);
        });
    }

    pub fn synced(&self, facts: &SyncFacts) {
        self.with(|v| {
            let secs = facts.duration.as_secs_f64();
            v.sync.observe(&SYNC_BUCKETS, secs);
            if facts.full {
                v.full_sync.observe(&SYNC_BUCKETS, secs);
            } else {
                v.partial_sync.observe(&SYNC_BUCKETS, secs);
            }
            v.last_sync = Some(SystemTime::now());
            v.pending_since = None;
            v.service_changes += facts.changed_services as u64;
            v.endpoint_changes += facts.changed_services as u64;
            v.services = facts.services;
            v.endpoints = facts.endpoints;
            v.no_local_internal = facts.no_local_internal;
            v.no_local_external = facts.no_local_external;
        });
    }

    pub fn sync_failed(&self) {
        self.with(|v| v.failures += 1);
    }

    pub fn observe_programming(&self, seconds: f64) {
        self.with(|v| v.programming.observe(&PROGRAMMING_BUCKETS, seconds.max(0.0)));
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mode = self.mode;
        self.with(|v| {
            let mut out = String::new();
            v.sync.render(&mut out, "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", &SYNC_BUCKETS);
            v.full_sync.render(&mut out, "kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", &SYNC_BUCKETS);
            v.partial_sync.render(&mut out, "kubeproxy_sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", &SYNC_BUCKETS);
            v.programming.render(&mut out, "kubeproxy_network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds", &PROGRAMMING_BUCKETS);
            let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
            };
            let ts = |t: Option<SystemTime>| {
                t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()).unwrap_or(0.0)
            };
            gauge(&mut out, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced", "gauge", ts(v.last_sync).to_string());
            gauge(&mut out, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued", "gauge", ts(v.last_queued).to_string());
            let failures = if mode == "iptables" {
                "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
            } else {
                "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
            };
            gauge(&mut out, failures, "Cumulative proxy rules sync failures", "counter", v.failures.to_string());
            gauge(&mut out, "kubeproxy_sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes", "counter", v.service_changes.to_string());
            gauge(&mut out, "kubeproxy_sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes", "counter", v.endpoint_changes.to_string());
            let _ = writeln!(
                out,
                "# HELP kubeproxy_sync_proxy_rules_no_local_endpoints_total Number of services with a Local traffic policy and no endpoints\n\
                 # TYPE kubeproxy_sync_proxy_rules_no_local_endpoints_total gauge\n\
                 kubeproxy_sync_proxy_rules_no_local_endpoints_total{{traffic_policy=\"internal\"}} {}\n\
                 kubeproxy_sync_proxy_rules_no_local_endpoints_total{{traffic_policy=\"external\"}} {}",
                v.no_local_internal, v.no_local_external
            );
            gauge(&mut out, "skiff_proxy_services", "Service ports programmed", "gauge", v.services.to_string());
            gauge(&mut out, "skiff_proxy_endpoints", "Endpoints programmed, summed over service ports", "gauge", v.endpoints.to_string());
            out
        })
    }

    /// kube-proxy's `/healthz`: 200 while syncs keep up, 503 when changes wait too long.
    /// The body has `lastUpdated` and `currentTime` in Go's `time.Time` format.
    pub fn healthz(&self) -> (u16, String) {
        self.with(|v| {
            let now = SystemTime::now();
            let stale = v.pending_since.is_some_and(|p| now.duration_since(p).unwrap_or_default() > HEALTHZ_TIMEOUT);
            let healthy = v.last_sync.is_some() && !stale;
            let body = format!(
                "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\", \"nodeEligible\": true}}",
                go_time(v.last_sync.unwrap_or(SystemTime::UNIX_EPOCH)),
                go_time(now)
            );
            (if healthy { 200 } else { 503 }, body)
        })
    }
}

/// Formats like Go's `time.Time.String()`: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = dt.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(go_time(t), "2023-11-14 22:13:20.12 +0000 UTC");
        assert_eq!(go_time(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn renders_upstream_names() {
        let m = Metrics::new("nftables");
        assert_eq!(m.healthz().0, 503, "unhealthy before the first sync");
        m.synced(&SyncFacts {
            full: true,
            duration: Duration::from_millis(3),
            changed_services: 2,
            services: 2,
            endpoints: 4,
            no_local_internal: 0,
            no_local_external: 1,
        });
        let text = m.render();
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0"));
        assert!(text.contains("traffic_policy=\"external\"} 1"));
        let (status, body) = m.healthz();
        assert_eq!(status, 200);
        assert!(body.contains("lastUpdated"));
    }
}
