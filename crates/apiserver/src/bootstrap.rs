//! What every cluster has from its first second (upstream's bootstrap controllers):
//! the system namespaces, Service `default/kubernetes` at the first ClusterIP, and a
//! `default` ServiceAccount in every namespace. The Service's Endpoints/EndpointSlice list
//! every live API server: see [`crate::endpoint_leases`].

use std::sync::Arc;

use anyhow::{anyhow, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Value};
use skiff_api::registry::{self, ResourceDef};
use skiff_api::{object, service as rules, strategy};
use skiff_store::{Compare, EventKind, Op, RangeOptions, StoreError, WatchResponse};

use crate::state::ApiServer;
use crate::storage::{decode, encode};

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

pub(crate) fn def(plural: &str, group: &str) -> Result<&'static ResourceDef> {
    let version = "v1";
    registry::lookup(group, version, plural).ok_or_else(|| anyhow!("resource {plural} missing from the registry"))
}

/// Creates `obj` unless it exists. With `reconcile`, an existing object whose content
/// differs in the given top-level fields is updated to them.
pub(crate) async fn ensure(
    server: &ApiServer,
    def: &'static ResourceDef,
    ns: Option<&str>,
    mut obj: Value,
    reconcile: &[&str],
) -> Result<()> {
    let name = object::object_name(&obj).to_string();
    let key = def.key(ns, &name);
    let (existing, _) = server.store.get(&key).await?;
    if let Some(kv) = existing {
        if reconcile.is_empty() {
            return Ok(());
        }
        let current = decode(&kv).map_err(|e| anyhow!("{e}"))?;
        if reconcile.iter().all(|f| current.get(*f) == obj.get(*f)) {
            return Ok(());
        }
        let mut updated = current.clone();
        for f in reconcile {
            updated[*f] = obj[*f].clone();
        }
        match server
            .store
            .txn(vec![Compare::ModRevision(key.clone(), kv.mod_revision)], vec![Op::put(key, encode(&updated))])
            .await
        {
            Ok(_) | Err(StoreError::CompareFailed { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    object::check_type_meta(def, &mut obj).map_err(|e| anyhow!("{e}"))?;
    object::prepare_create_metadata(def, &mut obj, ns).map_err(|e| anyhow!("{e}"))?;
    strategy::prepare_for_create(def, &mut obj);
    let mut compares = vec![Compare::Absent(key.clone())];
    let mut ops = Vec::new();
    if def.kind == "Service" {
        let mut svc: Service = serde_json::from_value(obj.clone())?;
        let allocated = server.allocations.reload(server.store.as_ref()).await.map_err(|e| anyhow!("{e}"))?;
        let admission = rules::admit_create(&svc, &allocated, &server.services, &mut rand::rng());
        let admitted = match admission {
            Ok(a) => a,
            // Another API server on the same store may have created it since our read
            // (servers starting together); then its IP is "taken" by that very Service.
            Err(_) if server.store.get(&key).await?.0.is_some() => return Ok(()),
            Err(e) => return Err(anyhow!("admitting Service {name}: {e}")),
        };
        svc = admitted.service;
        for ip in admitted.plan.claim_ips.iter().map(|c| c.value) {
            compares.push(Compare::Absent(rules::ip_key(ip)));
            ops.push(Op::put(rules::ip_key(ip), format!("{}/{name}", ns.unwrap_or(""))));
        }
        obj = serde_json::to_value(&svc)?;
    }
    ops.insert(0, Op::put(key, encode(&obj)));
    match server.store.txn(compares, ops).await {
        Ok(_) | Err(StoreError::CompareFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How often the bootstrap objects are re-checked (upstream reconciles `kubernetes` every 10 s).
const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Re-creates the system namespaces and `default/kubernetes` if someone deleted them
/// (`kubectl delete svc --all` in `default` does).
pub async fn reconcile(server: Arc<ApiServer>) {
    loop {
        tokio::time::sleep(RECONCILE_INTERVAL).await;
        if let Err(e) = bootstrap(&server).await {
            tracing::warn!(error = %e, "reconciling bootstrap objects failed");
        }
    }
}

/// Runs at startup, before the server reports ready, and then every [`RECONCILE_INTERVAL`].
pub async fn bootstrap(server: &ApiServer) -> Result<()> {
    let namespaces = def("namespaces", "")?;
    for ns in SYSTEM_NAMESPACES {
        ensure(server, namespaces, None, json!({"metadata": {"name": ns}}), &[]).await?;
    }
    let port = server.config.listen.port();
    let kubernetes_ip = server.services.kubernetes_ip().to_string();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        server,
        def("services", "")?,
        Some("default"),
        json!({"metadata": {"name": "kubernetes", "labels": labels},
               "spec": {"type": "ClusterIP", "clusterIP": kubernetes_ip, "clusterIPs": [kubernetes_ip],
                        "sessionAffinity": "None",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
        &[],
    )
    .await?;
    for ns in SYSTEM_NAMESPACES {
        ensure_default_service_account(server, ns).await?;
    }
    Ok(())
}

async fn ensure_default_service_account(server: &ApiServer, ns: &str) -> Result<()> {
    ensure(server, def("serviceaccounts", "")?, Some(ns), json!({"metadata": {"name": "default"}}), &[]).await
}

/// Keeps a `default` ServiceAccount in every namespace (upstream's serviceaccount
/// controller), following namespace creations through a store watch.
pub async fn service_accounts(server: Arc<ApiServer>) {
    loop {
        let listed = match server.store.range("/registry/namespaces/", RangeOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing namespaces failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        for kv in &listed.kvs {
            if let Some(ns) = kv.key.strip_prefix("/registry/namespaces/") {
                if let Err(e) = ensure_default_service_account(&server, ns).await {
                    tracing::debug!(namespace = ns, error = %e, "creating the default ServiceAccount failed");
                }
            }
        }
        let Ok(mut stream) = server.store.watch("/registry/namespaces/", listed.revision).await else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        while let Some(Ok(resp)) = stream.next().await {
            let WatchResponse::Events(events) = resp else { continue };
            for ev in events {
                let created = ev.kind == EventKind::Put && ev.prev.is_none();
                if let Some(ns) = ev.kv.key.strip_prefix("/registry/namespaces/").filter(|_| created) {
                    if let Err(e) = ensure_default_service_account(&server, ns).await {
                        tracing::debug!(namespace = ns, error = %e, "creating the default ServiceAccount failed");
                    }
                }
            }
        }
    }
}
