//! Create throughput: `services` ClusterIP Services created by `concurrency` parallel
//! workers over `connections` HTTP/2 connections, each worker sending its next create as
//! soon as the previous one was answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::{NAMESPACE, SERVICES_PATH};
use crate::client::{ApiEndpoint, Connection};
use crate::procfs;
use crate::stats::{millis, LatencySummary};

/// A create that takes longer than this counts as failed; it bounds the whole scenario.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct CreateResult {
    pub services: usize,
    pub concurrency: usize,
    pub connections: usize,
    /// Creates answered 201.
    pub created: usize,
    pub errors: usize,
    /// The first failure, to tell what went wrong.
    pub first_error: Option<String>,
    pub wall_ms: f64,
    /// Successful creates per second of wall time.
    pub creates_per_sec: f64,
    pub latency: LatencySummary,
    /// CPU time the server used during the scenario.
    pub server_cpu_ms: f64,
    /// CPU time this benchmark process (the clients) used during the scenario.
    pub client_cpu_ms: f64,
}

/// The name of the `i`-th benchmark Service.
pub fn service_name(i: usize) -> String {
    format!("bench-{i:05}")
}

/// A small ClusterIP Service with a selector and one port.
pub fn service_body(name: &str) -> Bytes {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "skiff-bench"}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        },
    });
    Bytes::from(service.to_string())
}

/// What one worker saw.
#[derive(Default)]
struct WorkerLog {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl WorkerLog {
    fn failed(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

pub async fn run(
    endpoint: &ApiEndpoint,
    server_pid: u32,
    services: usize,
    concurrency: usize,
    connections: usize,
) -> Result<CreateResult> {
    let mut pool = Vec::with_capacity(connections);
    for _ in 0..connections {
        pool.push(endpoint.connect().await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let server_cpu_before = procfs::cpu_time(server_pid)?;
    let client_cpu_before = procfs::cpu_time(std::process::id())?;
    let started = Instant::now();
    let workers: Vec<_> =
        (0..concurrency).map(|w| tokio::spawn(worker(pool[w % pool.len()].clone(), next.clone(), services))).collect();
    let mut latencies = Vec::with_capacity(services);
    let (mut errors, mut first_error) = (0, None);
    for worker in workers {
        let log = worker.await.context("a create worker failed")?;
        latencies.extend(log.latencies);
        errors += log.errors;
        first_error = first_error.or(log.first_error);
    }
    let wall = started.elapsed();
    let server_cpu = procfs::cpu_time(server_pid)?.saturating_sub(server_cpu_before);
    let client_cpu = procfs::cpu_time(std::process::id())?.saturating_sub(client_cpu_before);
    let created = latencies.len();
    Ok(CreateResult {
        services,
        concurrency,
        connections,
        created,
        errors,
        first_error,
        wall_ms: millis(wall),
        creates_per_sec: (created as f64 / wall.as_secs_f64() * 10.0).round() / 10.0,
        latency: LatencySummary::from_samples(&mut latencies),
        server_cpu_ms: millis(server_cpu),
        client_cpu_ms: millis(client_cpu),
    })
}

/// Takes Service numbers from `next` until `services` are handed out. Only successful
/// creates contribute a latency; failures are counted.
async fn worker(mut conn: Connection, next: Arc<AtomicUsize>, services: usize) -> WorkerLog {
    let mut log = WorkerLog::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= services {
            return log;
        }
        let name = service_name(i);
        let body = service_body(&name);
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, conn.call(Method::POST, SERVICES_PATH, Some(body))).await;
        let elapsed = sent.elapsed();
        match outcome {
            Ok(Ok((StatusCode::CREATED, _))) => log.latencies.push(elapsed),
            Ok(Ok((status, body))) => log.failed(format!("{name}: {status}: {}", String::from_utf8_lossy(&body))),
            Ok(Err(e)) => log.failed(format!("{name}: {e:#}")),
            Err(_) => log.failed(format!("{name}: no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
}
