//! `/healthz`, `/readyz` and `/metrics` (Prometheus text) of the agent, on `--metrics-listen`.
//!
//! A handful of counters and two latency histograms, answered by a tiny HTTP/1.1 responder
//! (one GET per connection), so the agent needs no HTTP server dependency of its own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Histogram bucket bounds in seconds (1 ms … 10 s).
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.counts[i]);
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// The agent's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Set once the node's pod network is up and pods are being run.
    pub ready: AtomicBool,
    pub pods: AtomicI64,
    pub container_starts: AtomicU64,
    pub container_start_failures: AtomicU64,
    pub status_writes: AtomicU64,
    pub sandbox_failures: AtomicU64,
    sandbox_setup: Mutex<Histogram>,
    pod_start: Mutex<Histogram>,
}

impl Metrics {
    /// Time to create one pod's network namespace.
    pub fn observe_sandbox_setup(&self, took: Duration) {
        if let Ok(mut h) = self.sandbox_setup.lock() {
            h.observe(took.as_secs_f64());
        }
    }

    /// Time from accepting a pod to all its containers started.
    pub fn observe_pod_start(&self, took: Duration) {
        if let Ok(mut h) = self.pod_start.lock() {
            h.observe(took.as_secs_f64());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        gauge(
            &mut out,
            "skiff_agent_pods",
            "Pods this agent runs.",
            "gauge",
            self.pods.load(Ordering::Relaxed).to_string(),
        );
        let counters = [
            ("skiff_agent_container_starts_total", "Container instances started.", &self.container_starts),
            (
                "skiff_agent_container_start_failures_total",
                "Container starts that could not happen.",
                &self.container_start_failures,
            ),
            ("skiff_agent_status_writes_total", "Pod status writes.", &self.status_writes),
            ("skiff_agent_sandbox_failures_total", "Failed pod sandbox setups.", &self.sandbox_failures),
        ];
        for (name, help, value) in counters {
            gauge(&mut out, name, help, "counter", value.load(Ordering::Relaxed).to_string());
        }
        if let Ok(h) = self.sandbox_setup.lock() {
            h.render(&mut out, "skiff_agent_sandbox_setup_seconds", "Time to create a pod's network namespace.");
        }
        if let Ok(h) = self.pod_start.lock() {
            h.render(
                &mut out,
                "skiff_agent_pod_start_seconds",
                "Time from accepting a pod to all its containers started.",
            );
        }
        out
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` forever.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut request)).await;
            let Ok(Ok(n)) = read else { return };
            let line = String::from_utf8_lossy(&request[..n]);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (code, body, kind) = match path {
                "/healthz" | "/livez" => ("200 OK", "ok".to_owned(), "text/plain"),
                "/readyz" if metrics.ready.load(Ordering::Relaxed) => ("200 OK", "ok".to_owned(), "text/plain"),
                "/readyz" => ("503 Service Unavailable", "pod network not ready".to_owned(), "text/plain"),
                "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
                _ => ("404 Not Found", "not found".to_owned(), "text/plain"),
            };
            let head = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.pods.store(3, Ordering::Relaxed);
        m.container_starts.fetch_add(2, Ordering::Relaxed);
        m.observe_sandbox_setup(Duration::from_millis(20));
        let text = m.render();
        assert!(text.contains("skiff_agent_pods 3\n"), "{text}");
        assert!(text.contains("skiff_agent_container_starts_total 2\n"), "{text}");
        assert!(text.contains("skiff_agent_sandbox_setup_seconds_bucket{le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("skiff_agent_sandbox_setup_seconds_bucket{le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("skiff_agent_sandbox_setup_seconds_count 1\n"), "{text}");
    }
}
