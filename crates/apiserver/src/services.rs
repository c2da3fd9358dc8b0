//! Services in the API server: the glue between the pure rules of
//! [`skiff_api::service`] and the store.
//!
//! ClusterIPs and NodePorts are claimed with one store key each
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`), created
//! with compare-`Absent` in the same transaction that writes the Service. Two API servers
//! racing for the same address cannot both commit; the loser re-plans. To avoid reading
//! every claim on every create, each server keeps an [`AllocationCache`] fed by a watch on
//! the claim keys; the transaction, not the cache, is what guarantees uniqueness.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use skiff_api::service::{self as rules, Allocated};
use skiff_api::status::RenderedValue;
use skiff_api::{ApiError, FieldError};
use skiff_store::{Compare, EventKind, Op, RangeOptions, Store, WatchResponse};

use crate::handlers::Ctx;
use crate::storage::store_error;

use skiff_api::service::{IP_KEY_PREFIX as IP_PREFIX, NODE_PORT_KEY_PREFIX as PORT_PREFIX};

fn is_service(ctx: &Ctx) -> bool {
    ctx.req.def.group.is_empty() && ctx.req.def.kind == "Service"
}

fn typed(obj: &Value) -> Option<Service> {
    serde_json::from_value(obj.clone()).ok()
}

/// One claim key a write creates, and what to answer if another writer got it first.
#[derive(Debug, Clone)]
struct Claim {
    /// The user asked for this exact value: losing it is "already allocated", not a retry.
    explicit_error: Option<FieldError>,
}

/// The store operations a write carries besides the object itself.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
    claims: Vec<Claim>,
}

impl Extra {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The error for the claim at `index` of [`Extra::compares`] lost to another writer,
    /// or None when the write should simply re-plan.
    pub fn lost_claim(&self, index: usize) -> Option<FieldError> {
        self.claims.get(index).and_then(|c| c.explicit_error.clone())
    }
}

/// Admits a Service write (defaults, type-change rules, allocation, validation — in
/// upstream's order) and returns the claims and releases to commit with it. Status writes
/// change no allocation and pass through.
pub async fn plan(ctx: &Ctx, old: Option<&Value>, new: &mut Value) -> Result<Extra, ApiError> {
    if !is_service(ctx) || ctx.req.subresource.is_some() {
        return Ok(Extra::default());
    }
    let Some(requested) = typed(new) else { return Ok(Extra::default()) };
    let old_svc = old.and_then(typed);
    let cache = &ctx.server.allocations;
    let cfg = &ctx.server.services;
    let admit = |allocated: &Allocated| match &old_svc {
        None => rules::admit_create(&requested, allocated, cfg, &mut rand::rng()),
        Some(o) => rules::admit_update(o, &requested, allocated, cfg, &mut rand::rng()),
    };
    let admitted = match admit(&cache.snapshot()) {
        Ok(a) => a,
        // The cache may be behind; ask the store before telling the user "already allocated".
        Err(_) => admit(&cache.reload(ctx.server.store.as_ref()).await?)?,
    };
    let svc = admitted.service;
    let plan = admitted.plan;
    *new = serde_json::to_value(&svc).map_err(|e| ApiError::Internal(e.to_string()))?;

    let name = skiff_api::object::object_name(new).to_string();
    let owner = format!("{}/{}", ctx.req.namespace.as_deref().unwrap_or(""), name);
    let mut extra = Extra::default();
    for claim in &plan.claim_ips {
        let ip = claim.value;
        extra.compares.push(Compare::Absent(rules::ip_key(ip)));
        extra.ops.push(Op::put(rules::ip_key(ip), owner.clone()));
        let explicit = claim.explicit.then(|| {
            let ips: Vec<String> = vec![ip.to_string()];
            FieldError::invalid(
                "spec.clusterIPs",
                RenderedValue::from(ips.as_slice()),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            )
        });
        extra.claims.push(Claim { explicit_error: explicit });
    }
    for claim in &plan.claim_node_ports {
        let port = claim.value;
        extra.compares.push(Compare::Absent(rules::node_port_key(port)));
        extra.ops.push(Op::put(rules::node_port_key(port), owner.clone()));
        let explicit = claim
            .explicit
            .then(|| FieldError::invalid(node_port_field(&svc, port), port, "provided port is already allocated"));
        extra.claims.push(Claim { explicit_error: explicit });
    }
    for ip in &plan.release_ips {
        extra.ops.push(Op::delete(rules::ip_key(*ip)));
    }
    for port in &plan.release_node_ports {
        extra.ops.push(Op::delete(rules::node_port_key(*port)));
    }
    Ok(extra)
}

/// The field path naming a nodePort in error messages.
fn node_port_field(svc: &Service, port: u16) -> String {
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.health_check_node_port) == Some(i32::from(port)) {
        return "spec.healthCheckNodePort".into();
    }
    let idx = spec
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().position(|p| p.node_port == Some(i32::from(port))))
        .unwrap_or(0);
    format!("spec.ports[{idx}].nodePort")
}

/// Store ops releasing what a deleted Service held.
pub fn release_ops(ctx: &Ctx, old: &Value) -> Vec<Op> {
    if !is_service(ctx) {
        return Vec::new();
    }
    let Some(svc) = typed(old) else { return Vec::new() };
    let (ips, ports) = rules::allocations_of(&svc);
    ips.into_iter()
        .map(|ip| Op::delete(rules::ip_key(ip)))
        .chain(ports.into_iter().map(|p| Op::delete(rules::node_port_key(p))))
        .collect()
}

/// What this server believes is allocated, kept current by a watch on the claim keys.
#[derive(Default)]
pub struct AllocationCache {
    inner: RwLock<Allocated>,
}

impl AllocationCache {
    pub fn snapshot(&self) -> Allocated {
        self.inner.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// Reads every claim from the store (start-up, and before reporting a conflict).
    pub async fn reload(&self, store: &dyn Store) -> Result<Allocated, ApiError> {
        let (allocated, _) = read_claims(store).await?;
        if let Ok(mut inner) = self.inner.write() {
            *inner = allocated.clone();
        }
        Ok(allocated)
    }

    fn apply(&self, key: &str, present: bool) {
        let Ok(mut inner) = self.inner.write() else { return };
        if let Some(ip) = key.strip_prefix(IP_PREFIX).and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            if present {
                inner.ips.insert(ip);
            } else {
                inner.ips.remove(&ip);
            }
        } else if let Some(port) = key.strip_prefix(PORT_PREFIX).and_then(|s| s.parse::<u16>().ok()) {
            if present {
                inner.node_ports.insert(port);
            } else {
                inner.node_ports.remove(&port);
            }
        }
    }

    /// Loads the claims and follows changes until the store goes away. Restarts the watch
    /// (with a reload) whenever it ends, so the cache never stays behind for long.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            let revision = match read_claims(store.as_ref()).await {
                Ok((allocated, rev)) => {
                    if let Ok(mut inner) = self.inner.write() {
                        *inner = allocated;
                    }
                    rev
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading allocations failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut stream = match store.watch("/registry/ranges/", revision).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watching allocations failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(Ok(resp)) = stream.next().await {
                if let WatchResponse::Events(events) = resp {
                    for ev in events {
                        self.apply(&ev.kv.key, ev.kind == EventKind::Put);
                    }
                }
            }
        }
    }
}

async fn read_claims(store: &dyn Store) -> Result<(Allocated, i64), ApiError> {
    let mut allocated = Allocated::default();
    let ips = store.range(IP_PREFIX, RangeOptions::default()).await.map_err(store_error)?;
    let ports = store
        .range(PORT_PREFIX, RangeOptions { revision: ips.revision, ..Default::default() })
        .await
        .map_err(store_error)?;
    allocated.ips =
        ips.kvs.iter().filter_map(|kv| kv.key.strip_prefix(IP_PREFIX)?.parse().ok()).collect::<BTreeSet<_>>();
    allocated.node_ports = ports.kvs.iter().filter_map(|kv| kv.key.strip_prefix(PORT_PREFIX)?.parse().ok()).collect();
    Ok((allocated, ips.revision))
}
