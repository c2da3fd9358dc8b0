//! Health-check node ports of LoadBalancer Services with externalTrafficPolicy Local.
//!
//! Like kube-proxy, an HTTP server on `healthCheckNodePort` answers 200 when this node has
//! ready endpoints of the Service and 503 when it has none (also while only terminating
//! endpoints remain), with a JSON body naming the Service and the local endpoint count. A
//! load balancer uses it to send traffic only to nodes that can serve it locally.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use skiff_core::service_view::ServiceKey;

use crate::http::{self, Response};
use crate::model::ServiceState;

/// What one port reports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    service: ServiceKey,
    local_endpoints: usize,
}

/// The running health-check servers.
pub struct HealthChecks {
    runtime: tokio::runtime::Handle,
    servers: HashMap<u16, (Arc<Mutex<Entry>>, tokio::task::JoinHandle<()>)>,
}

impl HealthChecks {
    pub fn new(runtime: tokio::runtime::Handle) -> HealthChecks {
        HealthChecks { runtime, servers: HashMap::new() }
    }

    /// Starts, updates and stops servers to match `desired`.
    pub fn update(&mut self, desired: &HashMap<ServiceKey, ServiceState>) {
        let mut wanted: HashMap<u16, Entry> = HashMap::new();
        for (key, state) in desired {
            if state.health_check_node_port != 0 {
                wanted.insert(
                    state.health_check_node_port,
                    Entry { service: key.clone(), local_endpoints: state.local_ready_endpoints },
                );
            }
        }
        self.servers.retain(|port, (_, task)| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, entry) in wanted {
            if let Some((shared, _)) = self.servers.get(&port) {
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = entry;
                continue;
            }
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let listener = match self.runtime.block_on(http::bind(addr)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%port, service = %entry.service, error = %e, "cannot serve health check node port");
                    continue;
                }
            };
            let shared = Arc::new(Mutex::new(entry));
            let reader = shared.clone();
            let task = self.runtime.spawn(http::serve(listener, move |_path| {
                let entry = reader.lock().unwrap_or_else(|p| p.into_inner()).clone();
                async move { respond(&entry) }
            }));
            self.servers.insert(port, (shared, task));
        }
    }
}

fn respond(entry: &Entry) -> Response {
    let body = format!(
        "{{\"service\":{{\"namespace\":{},\"name\":{}}},\"localEndpoints\":{},\"serviceProxyHealthy\":true}}",
        serde_json::Value::from(entry.service.namespace.as_str()),
        serde_json::Value::from(entry.service.name.as_str()),
        entry.local_endpoints
    );
    Response::json(if entry.local_endpoints > 0 { 200 } else { 503 }, body)
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for (_, (_, task)) in self.servers.drain() {
            task.abort();
        }
    }
}
