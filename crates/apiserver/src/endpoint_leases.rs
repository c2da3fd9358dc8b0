//! The endpoints of Service `default/kubernetes` when several API servers share one store:
//! every live server's advertise address, as kube-apiserver's *lease* endpoint reconciler
//! keeps them.
//!
//! How upstream does it, and what skiff keeps of it:
//! - each server holds a lease key `/registry/masterleases/<advertise-ip>` that it renews
//!   every reconcile interval and that expires after a TTL (upstream: etcd TTL of 15 s, renewed
//!   every 10 s);
//! - after renewing, a server lists the unexpired leases and rewrites Endpoints
//!   `default/kubernetes` (and its EndpointSlice) when the set of addresses differs, always
//!   including its own address (the listing may lag its own renewal);
//! - on a clean shutdown a server deletes its lease and rewrites the endpoints without itself,
//!   so clients stop being sent to it at once; a server that dies without shutting down
//!   (`kill -9`, a lost machine) drops out when its lease expires.
//!
//! The store has no key TTLs (redb has none), so a lease records when it was renewed and for
//! how long it holds; readers ignore expired leases and delete them. The servers' clocks must
//! therefore agree to well within the TTL (as upstream's coordination Leases also assume).
//!
//! Like upstream, every server publishes its *own* port for all addresses: the servers of one
//! cluster must serve on the same port (the `kubernetes` Service has a single targetPort).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use skiff_store::{Compare, Op, RangeOptions, StoreError};
use tokio::sync::watch;

use crate::state::ApiServer;
use crate::storage::decode;

/// Where the leases live (upstream's key layout).
pub const LEASE_PREFIX: &str = "/registry/masterleases/";

/// Upstream's lease TTL (`masterEndpointReconcileTTL`); `--endpoint-lease-ttl` changes it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// How many times a shutdown retries publishing the endpoints without itself when another
/// server writes them at the same moment.
const REMOVE_ATTEMPTS: usize = 5;

/// One server's lease, as stored (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Lease {
    ip: IpAddr,
    /// Wall-clock time of the last renewal, milliseconds since the Unix epoch.
    renew_time_millis: u64,
    /// How long the lease holds after a renewal.
    ttl_millis: u64,
}

impl Lease {
    fn expired(&self, now_millis: u64) -> bool {
        now_millis > self.renew_time_millis.saturating_add(self.ttl_millis)
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn lease_key(ip: IpAddr) -> String {
    format!("{LEASE_PREFIX}{ip}")
}

/// How often a server renews its lease and reconciles the endpoints: two thirds of the TTL
/// (upstream: 10 s for 15 s), so one late renewal does not expire a live server.
pub fn renew_interval(ttl: Duration) -> Duration {
    (ttl * 2 / 3).max(Duration::from_millis(100))
}

/// Renews this server's lease, then publishes every live server's address.
pub async fn reconcile(server: &ApiServer) -> Result<()> {
    renew(server).await?;
    let mut addresses = live_addresses(server).await?;
    // Our own renewal may not be visible yet in the listing on every backend; we are alive.
    let own = server.config.advertised();
    if !addresses.contains(&own) {
        addresses.push(own);
        addresses.sort();
    }
    publish(server, &addresses).await
}

/// Renews the lease and reconciles every [`renew_interval`] until `stop` changes or its
/// sender is dropped; then deletes the lease and publishes the endpoints without this server.
pub async fn run(server: Arc<ApiServer>, mut stop: watch::Receiver<()>) {
    let interval = renew_interval(server.config.endpoint_lease_ttl);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = reconcile(&server).await {
            tracing::warn!(error = %e, "reconciling the kubernetes endpoints failed");
        }
    }
}

/// Deletes this server's lease and publishes the endpoints of the other live servers (the
/// clean-shutdown path: clients stop being sent here at once). Upstream leaves the endpoints
/// alone when no other server is alive, so in-cluster clients keep an address to retry.
pub async fn remove(server: &ApiServer) -> Result<()> {
    let own = server.config.advertised();
    server.store.txn(Vec::new(), vec![Op::delete(lease_key(own))]).await?;
    for _ in 0..REMOVE_ATTEMPTS {
        let others: Vec<IpAddr> = live_addresses(server).await?.into_iter().filter(|ip| *ip != own).collect();
        if others.is_empty() {
            return Ok(());
        }
        publish(server, &others).await?;
        if published_addresses(server).await? == others {
            return Ok(());
        }
    }
    Err(anyhow!("the kubernetes endpoints kept changing while this server removed itself"))
}

async fn renew(server: &ApiServer) -> Result<()> {
    let ip = server.config.advertised();
    let lease =
        Lease { ip, renew_time_millis: now_millis(), ttl_millis: server.config.endpoint_lease_ttl.as_millis() as u64 };
    let value = serde_json::to_vec(&lease)?;
    server.store.txn(Vec::new(), vec![Op::put(lease_key(ip), value)]).await?;
    Ok(())
}

/// The addresses of every unexpired lease, sorted. Expired leases are deleted (only if
/// unchanged since read, so a server renewing at that moment keeps its lease).
async fn live_addresses(server: &ApiServer) -> Result<Vec<IpAddr>> {
    let listed = server.store.range(LEASE_PREFIX, RangeOptions::default()).await?;
    let now = now_millis();
    let mut live = Vec::new();
    for kv in &listed.kvs {
        match serde_json::from_slice::<Lease>(&kv.value) {
            Ok(lease) if !lease.expired(now) => live.push(lease.ip),
            parsed => {
                if let Err(e) = &parsed {
                    tracing::warn!(key = kv.key, error = %e, "deleting an unreadable API server lease");
                }
                let compares = vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)];
                match server.store.txn(compares, vec![Op::delete(kv.key.clone())]).await {
                    Ok(_) | Err(StoreError::CompareFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    live.sort();
    live.dedup();
    Ok(live)
}

/// Writes Endpoints and EndpointSlice `default/kubernetes` with `addresses` on this server's
/// port (creating them if missing, rewriting them if they differ).
async fn publish(server: &ApiServer, addresses: &[IpAddr]) -> Result<()> {
    let port = server.config.listen.port();
    let ips: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    let endpoint_addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    crate::bootstrap::ensure(
        server,
        crate::bootstrap::def("endpoints", "")?,
        Some("default"),
        json!({"metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
               "subsets": [{"addresses": endpoint_addresses, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
        &["subsets"],
    )
    .await?;
    let slice_endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}))
        .collect();
    crate::bootstrap::ensure(
        server,
        crate::bootstrap::def("endpointslices", "discovery.k8s.io")?,
        Some("default"),
        json!({"metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
               "addressType": "IPv4",
               "endpoints": slice_endpoints,
               "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
        &["endpoints", "ports"],
    )
    .await
}

/// The addresses Endpoints `default/kubernetes` lists now, sorted.
async fn published_addresses(server: &ApiServer) -> Result<Vec<IpAddr>> {
    let key = crate::bootstrap::def("endpoints", "")?.key(Some("default"), "kubernetes");
    let Some(kv) = server.store.get(&key).await?.0 else { return Ok(Vec::new()) };
    let endpoints = decode(&kv).map_err(|e| anyhow!("{e}"))?;
    let mut ips: Vec<IpAddr> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|subset| subset["addresses"].as_array().into_iter().flatten())
        .filter_map(|address| address["ip"].as_str()?.parse().ok())
        .collect();
    ips.sort();
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_ttl() {
        let lease = Lease { ip: IpAddr::from([10, 0, 0, 1]), renew_time_millis: 1_000, ttl_millis: 500 };
        assert!(!lease.expired(1_000));
        assert!(!lease.expired(1_500));
        assert!(lease.expired(1_501));
    }

    #[test]
    fn renewals_come_well_before_expiry() {
        assert_eq!(renew_interval(DEFAULT_LEASE_TTL), Duration::from_secs(10));
        assert!(renew_interval(Duration::from_millis(30)) >= Duration::from_millis(100));
    }
}
