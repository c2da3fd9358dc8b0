//! LoadBalancer IPs from a pool, what k3s ServiceLB or MetalLB do on clusters without a
//! cloud load balancer.
//!
//! Every Service of type LoadBalancer without `spec.loadBalancerClass` (a class means
//! another implementation handles it) gets one address of `--lb-pool` in
//! `status.loadBalancer.ingress[{ip, ipMode: VIP}]`, written through the status subresource:
//! - addresses are distinct per Service; a Service keeps the address it has (so restarts
//!   change nothing: the addresses in use are read back from the Services' statuses);
//! - `spec.loadBalancerIP` is honoured when it is in the pool and free; otherwise the
//!   Service stays pending with a Warning event;
//! - an address is free again once its Service is deleted or stops being a LoadBalancer
//!   (its status is then cleared).
//!
//! Without a pool nothing happens and LoadBalancer Services stay `<pending>`.
//!
//! Reconciles run one at a time, so two Services never pick the same free address.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::context::Context;
use crate::events::EventType;

/// How soon a Service waiting for an address tries again (another may have freed one).
const PENDING_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Pool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    /// The lowest address of the pool not in `used`.
    pub fn first_free(&self, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from).find(|ip| !used.contains(ip))
    }
}

/// `namespace/name` of a Service.
type Key = String;

struct State {
    ctx: Arc<Context>,
    pool: Pool,
    services: Store<Service>,
    /// Addresses written recently, by Service key with its uid: the cache may not show
    /// them yet, and they must not be handed out twice.
    written: Mutex<HashMap<Key, (String, Ipv4Addr)>>,
}

/// Runs the LoadBalancer IP controller until the process ends (at once without a pool).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let Some((first, last)) = ctx.config.lb_pool else {
        tracing::info!("no --lb-pool: LoadBalancer Services stay pending");
        return Ok(());
    };
    let api: Api<Service> = Api::all(ctx.client.clone());
    let controller =
        Controller::new(api, watcher::Config::default()).with_config(controller::Config::default().concurrency(1));
    let state = Arc::new(State {
        ctx,
        pool: Pool { first, last },
        services: controller.store(),
        written: Mutex::new(HashMap::new()),
    });
    controller
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                if !matches!(e, controller::Error::ObjectNotFound(_)) {
                    tracing::warn!(error = %e, "loadbalancer controller");
                }
            }
        })
        .await;
    Ok(())
}

fn error_policy(_svc: Arc<Service>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("skiff_controller_sync_errors_total", &[("controller", "loadbalancer")]);
    tracing::debug!(%error, "loadbalancer sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn key(svc: &Service) -> Key {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// Whether this controller gives `svc` an address.
fn managed(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer"))
}

/// The IPv4 addresses in the Service's load-balancer status.
fn status_ips(svc: &Service) -> Vec<Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

fn has_ingress(svc: &Service) -> bool {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

/// The address the Service asks for in `spec.loadBalancerIP`, if any.
fn requested_ip(svc: &Service) -> Option<String> {
    svc.spec.as_ref()?.load_balancer_ip.clone().filter(|ip| !ip.is_empty())
}

/// Whether the Service can use an IPv4 address (it has no IPv4-free family list).
fn wants_ipv4(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.ip_families.as_ref()).is_none_or(|f| f.is_empty() || f.iter().any(|f| f == "IPv4"))
}

impl State {
    /// Addresses of the pool held by managed Services other than `except`, with their holders.
    fn used(&self, except: &Key) -> HashMap<Ipv4Addr, Key> {
        let services = self.services.state();
        let mut used = HashMap::new();
        for svc in services.iter().filter(|s| managed(s) && key(s) != *except) {
            for ip in status_ips(svc).into_iter().filter(|ip| self.pool.contains(*ip)) {
                used.insert(ip, key(svc));
            }
        }
        let live: HashMap<Key, Option<&str>> =
            services.iter().filter(|s| managed(s)).map(|s| (key(s), s.metadata.uid.as_deref())).collect();
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        // Forget writes whose Service is gone, re-created or no longer managed.
        written.retain(|k, (uid, _)| live.get(k).is_some_and(|live_uid| *live_uid == Some(uid.as_str())));
        for (k, (_, ip)) in written.iter().filter(|(k, _)| *k != except) {
            used.insert(*ip, k.clone());
        }
        used
    }
}

/// What a Service should get.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Assign(Ipv4Addr),
    /// Stay pending, with the Warning to give.
    Pending(String),
}

/// Picks the address for a managed Service given who holds what.
fn decide(svc: &Service, pool: Pool, used: &HashMap<Ipv4Addr, Key>) -> Decision {
    let name = key(svc);
    if !wants_ipv4(svc) {
        return Decision::Pending(format!("Failed to allocate IP for {name:?}: the pool has only IPv4 addresses"));
    }
    if let Some(requested) = requested_ip(svc) {
        let Ok(ip) = requested.parse::<Ipv4Addr>() else {
            return Decision::Pending(format!(
                "Failed to allocate IP for {name:?}: {requested:?} is not an IPv4 address"
            ));
        };
        if !pool.contains(ip) {
            return Decision::Pending(format!(
                "Failed to allocate IP for {name:?}: {ip} is not in the pool {}-{}",
                pool.first, pool.last
            ));
        }
        return match used.get(&ip) {
            Some(holder) => {
                Decision::Pending(format!("Failed to allocate IP for {name:?}: {ip} is already in use by {holder:?}"))
            }
            None => Decision::Assign(ip),
        };
    }
    if let Some(ip) = status_ips(svc).into_iter().find(|ip| pool.contains(*ip) && !used.contains_key(ip)) {
        return Decision::Assign(ip);
    }
    let taken: BTreeSet<Ipv4Addr> = used.keys().copied().collect();
    match pool.first_free(&taken) {
        Some(ip) => Decision::Assign(ip),
        None => Decision::Pending(format!("Failed to allocate IP for {name:?}: no available IPs")),
    }
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = sync(&svc, &state).await;
    let labels = [("controller", "loadbalancer")];
    state.ctx.metrics.inc("skiff_controller_syncs_total", &labels);
    state.ctx.metrics.observe("skiff_controller_sync_duration_seconds", &labels, started.elapsed().as_secs_f64());
    result
}

async fn sync(svc: &Service, state: &State) -> Result<Action, Error> {
    let k = key(svc);
    if !managed(svc) {
        forget(state, &k);
        // A Service that is no longer a LoadBalancer keeps no address (one with a class
        // belongs to another implementation and is left alone).
        if !is_load_balancer(svc) && has_ingress(svc) {
            write_status(state, svc, None).await?;
        }
        return Ok(Action::await_change());
    }
    let used = state.used(&k);
    match decide(svc, state.pool, &used) {
        Decision::Assign(ip) => {
            let current = status_ips(svc);
            let exact = current == [ip] && ip_mode_is_vip(svc);
            if !exact {
                write_status(state, svc, Some(ip)).await?;
                let message = format!("Assigned IP [\"{ip}\"]");
                state.ctx.recorder.publish(svc, EventType::Normal, "IPAllocated", &message).await;
                tracing::info!(service = %k, %ip, "assigned LoadBalancer IP");
            }
            let uid = svc.metadata.uid.clone().unwrap_or_default();
            state.written.lock().unwrap_or_else(|p| p.into_inner()).insert(k, (uid, ip));
            Ok(Action::await_change())
        }
        Decision::Pending(message) => {
            forget(state, &k);
            if has_ingress(svc) {
                write_status(state, svc, None).await?;
            }
            state.ctx.recorder.publish(svc, EventType::Warning, "IPAllocationFailed", &message).await;
            Ok(Action::requeue(PENDING_RETRY))
        }
    }
}

fn forget(state: &State, k: &Key) {
    state.written.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
}

fn ip_mode_is_vip(svc: &Service) -> bool {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| i.iter().all(|i| i.ip_mode.as_deref() == Some("VIP")))
}

/// Sets (or, with None, clears) the Service's load-balancer ingress.
async fn write_status(state: &State, svc: &Service, ip: Option<Ipv4Addr>) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(state.ctx.client.clone(), &svc.namespace().unwrap_or_default());
    let ingress = match ip {
        Some(ip) => json!([{"ip": ip.to_string(), "ipMode": "VIP"}]),
        None => serde_json::Value::Null,
    };
    let patch = json!({"metadata": {"resourceVersion": svc.metadata.resource_version},
        "status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool { first: Ipv4Addr::new(10, 0, 0, 1), last: Ipv4Addr::new(10, 0, 0, 3) }
    }

    fn svc(name: &str, spec: serde_json::Value, ips: &[&str]) -> Service {
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
        let mut spec = spec;
        spec["type"] = json!("LoadBalancer");
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}}))
        .unwrap()
    }

    fn used(pairs: &[(&str, &str)]) -> HashMap<Ipv4Addr, Key> {
        pairs.iter().map(|(ip, k)| (ip.parse().unwrap(), k.to_string())).collect()
    }

    #[test]
    fn picks_free_addresses_and_keeps_current_ones() {
        let p = pool();
        assert_eq!(decide(&svc("a", json!({}), &[]), p, &used(&[])), Decision::Assign(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            decide(&svc("b", json!({}), &[]), p, &used(&[("10.0.0.1", "default/a")])),
            Decision::Assign(Ipv4Addr::new(10, 0, 0, 2))
        );
        // Keeps its address even though a lower one is free.
        assert_eq!(
            decide(&svc("c", json!({}), &["10.0.0.3"]), p, &used(&[])),
            Decision::Assign(Ipv4Addr::new(10, 0, 0, 3))
        );
        // Another Service holds it: move.
        assert_eq!(
            decide(&svc("c", json!({}), &["10.0.0.3"]), p, &used(&[("10.0.0.3", "default/d")])),
            Decision::Assign(Ipv4Addr::new(10, 0, 0, 1))
        );
        let full = used(&[("10.0.0.1", "x/1"), ("10.0.0.2", "x/2"), ("10.0.0.3", "x/3")]);
        assert!(
            matches!(decide(&svc("e", json!({}), &[]), p, &full), Decision::Pending(m) if m.contains("no available IPs"))
        );
    }

    #[test]
    fn honours_requested_addresses() {
        let p = pool();
        let wants = |ip: &str| svc("r", json!({"loadBalancerIP": ip}), &[]);
        assert_eq!(decide(&wants("10.0.0.2"), p, &used(&[])), Decision::Assign(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(matches!(decide(&wants("10.0.0.2"), p, &used(&[("10.0.0.2", "default/a")])),
            Decision::Pending(m) if m.contains("already in use by \"default/a\"")));
        assert!(
            matches!(decide(&wants("10.9.9.9"), p, &used(&[])), Decision::Pending(m) if m.contains("not in the pool"))
        );
        assert!(matches!(decide(&wants("fd00::1"), p, &used(&[])), Decision::Pending(_)));
        let v6 = svc("v6", json!({"ipFamilies": ["IPv6"]}), &[]);
        assert!(matches!(decide(&v6, p, &used(&[])), Decision::Pending(_)));
    }

    #[test]
    fn classes_and_other_types_are_not_managed() {
        assert!(managed(&svc("a", json!({}), &[])));
        assert!(!managed(&svc("a", json!({"loadBalancerClass": "example.com/lb"}), &[])));
        let cluster_ip: Service =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"type": "ClusterIP"}})).unwrap();
        assert!(!managed(&cluster_ip) && !is_load_balancer(&cluster_ip));
        assert!(Pool { first: Ipv4Addr::new(10, 0, 0, 1), last: Ipv4Addr::new(10, 0, 0, 1) }
            .first_free(&BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1)]))
            .is_none());
    }
}
