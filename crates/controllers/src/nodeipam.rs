//! Node IPAM: gives every Node a pod CIDR, a /24 of the cluster CIDR by default
//! (upstream's node IPAM controller with its range allocator).
//!
//! A Node without `spec.podCIDR` gets the next free subnet in `spec.podCIDR` and
//! `spec.podCIDRs`; the node's agent then hands pod addresses out of it. Subnets in use are
//! read back from the Nodes (so a restart changes nothing), a subnet is free again once its
//! Node is deleted, and like upstream the search continues after the last subnet handed out
//! rather than from the start, so a freed subnet is not reused at once. When the cluster
//! CIDR is full the Node waits, with a CIDRNotAvailable event.
//!
//! Reconciles run one at a time, so two Nodes never get the same subnet.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::context::Context;
use crate::events::EventType;

/// How soon a Node waiting for a subnet tries again (a deleted Node may have freed one).
const FULL_RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// The cluster CIDR cut into equal subnets, numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetSet {
    base: u32,
    cluster_prefix: u8,
    node_prefix: u8,
}

impl SubnetSet {
    /// None when the node prefix does not fit in the cluster CIDR.
    pub fn new((ip, cluster_prefix): (Ipv4Addr, u8), node_prefix: u8) -> Option<SubnetSet> {
        if cluster_prefix > node_prefix || node_prefix > 32 || node_prefix - cluster_prefix > 24 {
            return None;
        }
        let mask = if cluster_prefix == 0 { 0 } else { u32::MAX << (32 - cluster_prefix) };
        Some(SubnetSet { base: u32::from(ip) & mask, cluster_prefix, node_prefix })
    }

    /// How many subnets there are.
    pub fn count(&self) -> u32 {
        1 << (self.node_prefix - self.cluster_prefix)
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.node_prefix)
    }

    /// The subnet `index` as `a.b.c.d/len`.
    pub fn cidr(&self, index: u32) -> String {
        let start = u64::from(self.base) + u64::from(index) * self.size();
        format!("{}/{}", Ipv4Addr::from(start as u32), self.node_prefix)
    }

    /// The index of a subnet given as a CIDR string, if it is exactly one of the set.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len.parse::<u8>().ok()? != self.node_prefix {
            return None;
        }
        let offset = u64::from(u32::from(ip)).checked_sub(u64::from(self.base))?;
        let index = offset / self.size();
        (offset % self.size() == 0 && index < u64::from(self.count())).then_some(index as u32)
    }

    /// The first free index at or after `from`, wrapping around.
    pub fn next_free(&self, from: u32, used: &BTreeSet<u32>) -> Option<u32> {
        let n = self.count();
        (0..n).map(|i| (from.wrapping_add(i)) % n).find(|i| !used.contains(i))
    }
}

struct State {
    ctx: Arc<Context>,
    subnets: SubnetSet,
    nodes: Store<Node>,
    /// Subnets written recently, by node name with its uid (the cache may lag), and where
    /// the next search starts.
    allocations: Mutex<Allocations>,
}

#[derive(Default)]
struct Allocations {
    written: HashMap<String, (String, u32)>,
    next: u32,
}

/// Runs the node IPAM controller until the process ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let Some(subnets) = SubnetSet::new(ctx.config.cluster_cidr, ctx.config.node_cidr_prefix) else {
        let (ip, len) = ctx.config.cluster_cidr;
        tracing::error!(cluster_cidr = %format!("{ip}/{len}"), node_prefix = ctx.config.node_cidr_prefix,
            "node pod CIDRs do not fit in the cluster CIDR; node IPAM disabled");
        return Ok(());
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let controller =
        Controller::new(api, watcher::Config::default()).with_config(controller::Config::default().concurrency(1));
    let state =
        Arc::new(State { ctx, subnets, nodes: controller.store(), allocations: Mutex::new(Allocations::default()) });
    controller
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                if !matches!(e, controller::Error::ObjectNotFound(_)) {
                    tracing::warn!(error = %e, "node IPAM controller");
                }
            }
        })
        .await;
    Ok(())
}

fn error_policy(_node: Arc<Node>, error: &Error, state: Arc<State>) -> Action {
    state.ctx.metrics.inc("skiff_controller_sync_errors_total", &[("controller", "nodeipam")]);
    tracing::debug!(%error, "node IPAM sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(single) = spec.and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty()) {
        if !cidrs.contains(&single) {
            cidrs.push(single);
        }
    }
    cidrs
}

impl State {
    /// Subnets held by Nodes other than `except` (from the cache and recent writes).
    fn used(&self, except: &str, allocations: &mut Allocations) -> BTreeSet<u32> {
        let nodes = self.nodes.state();
        let mut used: BTreeSet<u32> = nodes
            .iter()
            .filter(|n| n.name_any() != except)
            .flat_map(|n| pod_cidrs(n))
            .filter_map(|c| self.subnets.index_of(&c))
            .collect();
        let live: HashMap<String, Option<&str>> =
            nodes.iter().map(|n| (n.name_any(), n.metadata.uid.as_deref())).collect();
        allocations.written.retain(|name, (uid, _)| live.get(name).is_some_and(|u| *u == Some(uid.as_str())));
        used.extend(allocations.written.iter().filter(|(name, _)| *name != except).map(|(_, (_, i))| *i));
        used
    }
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = sync(&node, &state).await;
    let labels = [("controller", "nodeipam")];
    state.ctx.metrics.inc("skiff_controller_syncs_total", &labels);
    state.ctx.metrics.observe("skiff_controller_sync_duration_seconds", &labels, started.elapsed().as_secs_f64());
    result
}

async fn sync(node: &Node, state: &State) -> Result<Action, Error> {
    if !pod_cidrs(node).is_empty() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let picked = {
        let mut allocations = state.allocations.lock().unwrap_or_else(|p| p.into_inner());
        let used = state.used(&name, &mut allocations);
        match allocations.written.get(&name) {
            // Written already; the cache has not caught up.
            Some((uid, index)) if node.metadata.uid.as_deref() == Some(uid.as_str()) => Some(*index),
            _ => state.subnets.next_free(allocations.next, &used),
        }
    };
    let Some(index) = picked else {
        let message = format!("Node {name} status is now: CIDRNotAvailable");
        state.ctx.recorder.publish(node, EventType::Normal, "CIDRNotAvailable", &message).await;
        tracing::warn!(node = %name, "no pod CIDR left in the cluster CIDR");
        return Ok(Action::requeue(FULL_RETRY));
    };
    let cidr = state.subnets.cidr(index);
    let api: Api<Node> = Api::all(state.ctx.client.clone());
    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        let message = format!("Node {name} status is now: CIDRAssignmentFailed");
        state.ctx.recorder.publish(node, EventType::Normal, "CIDRAssignmentFailed", &message).await;
        return Err(e.into());
    }
    tracing::info!(node = %name, %cidr, "assigned pod CIDR");
    let mut allocations = state.allocations.lock().unwrap_or_else(|p| p.into_inner());
    allocations.written.insert(name, (node.metadata.uid.clone().unwrap_or_default(), index));
    allocations.next = (index + 1) % state.subnets.count();
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_the_cluster_cidr_into_subnets() {
        let s = SubnetSet::new((Ipv4Addr::new(10, 244, 0, 0), 16), 24).unwrap();
        assert_eq!(s.count(), 256);
        assert_eq!(s.cidr(0), "10.244.0.0/24");
        assert_eq!(s.cidr(255), "10.244.255.0/24");
        assert_eq!(s.index_of("10.244.7.0/24"), Some(7));
        assert_eq!(s.index_of("10.244.7.1/24"), None);
        assert_eq!(s.index_of("10.245.0.0/24"), None);
        assert_eq!(s.index_of("10.243.0.0/24"), None);
        assert_eq!(s.index_of("10.244.7.0/25"), None);
        assert_eq!(s.index_of("garbage"), None);
        assert!(SubnetSet::new((Ipv4Addr::new(10, 0, 0, 0), 24), 16).is_none());
        let small = SubnetSet::new((Ipv4Addr::new(10, 250, 1, 0), 23), 24).unwrap();
        assert_eq!((small.cidr(0), small.cidr(1)), ("10.250.0.0/24".to_string(), "10.250.1.0/24".to_string()));
    }

    #[test]
    fn searches_round_robin() {
        let s = SubnetSet::new((Ipv4Addr::new(10, 0, 0, 0), 22), 24).unwrap();
        let used = BTreeSet::from([0, 1]);
        assert_eq!(s.next_free(0, &used), Some(2));
        assert_eq!(s.next_free(3, &BTreeSet::from([3])), Some(0));
        assert_eq!(s.next_free(1, &BTreeSet::from([0, 1, 2, 3])), None);
    }
}
