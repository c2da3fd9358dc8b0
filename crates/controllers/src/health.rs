//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format) of the controllers.
//!
//! The metrics registry is deliberately tiny: labelled counters and histograms with fixed
//! buckets, enough for "how many syncs, how long" without a metrics framework.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Histogram bucket bounds in seconds (1 ms … 10 s).
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters and histograms keyed by (metric name, rendered labels).
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
    histograms: Mutex<BTreeMap<(String, String), Histogram>>,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\""))).collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    pub fn inc(&self, name: &str, labels: &[(&str, &str)]) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((name.to_string(), render_labels(labels))).or_default() += 1;
        }
    }

    pub fn observe(&self, name: &str, labels: &[(&str, &str)], seconds: f64) {
        if let Ok(mut h) = self.histograms.lock() {
            let hist = h.entry((name.to_string(), render_labels(labels))).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    hist.counts[i] += 1;
                }
            }
            hist.sum += seconds;
            hist.count += 1;
        }
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(c) = self.counters.lock() {
            for ((name, labels), v) in c.iter() {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        }
        if let Ok(h) = self.histograms.lock() {
            for ((name, labels), hist) in h.iter() {
                let base = labels.trim_start_matches('{').trim_end_matches('}');
                let sep = if base.is_empty() { "" } else { "," };
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{name}_bucket{{{base}{sep}le=\"{bound}\"}} {}", hist.counts[i]);
                }
                let _ = writeln!(out, "{name}_bucket{{{base}{sep}le=\"+Inf\"}} {}", hist.count);
                let _ = writeln!(out, "{name}_sum{labels} {}", hist.sum);
                let _ = writeln!(out, "{name}_count{labels} {}", hist.count);
            }
        }
        out
    }
}

/// Binds the health and metrics listener. The bound address is logged ("metrics listening"),
/// which is how a caller that asked for port 0 learns the real port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    Ok(listener)
}

/// Serves the health and metrics endpoints on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (code, body) = match req.uri().path() {
                        "/healthz" | "/readyz" | "/livez" => (200, "ok".to_string()),
                        "/metrics" => (200, metrics.render()),
                        _ => (404, "not found".to_string()),
                    };
                    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.inc("skiff_syncs_total", &[("controller", "endpointslice")]);
        m.observe("skiff_sync_duration_seconds", &[("controller", "endpointslice")], 0.003);
        let text = m.render();
        assert!(text.contains("skiff_syncs_total{controller=\"endpointslice\"} 1"), "{text}");
        assert!(
            text.contains("skiff_sync_duration_seconds_bucket{controller=\"endpointslice\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skiff_sync_duration_seconds_bucket{controller=\"endpointslice\",le=\"0.0025\"} 0"),
            "{text}"
        );
    }
}
