//! Watches Nodes: publishes this node's podCIDR (assigned by the controllers' node IPAM) and
//! keeps a route to every other node's podCIDR via its InternalIP.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::sync::watch;

use crate::cidr::Ipv4Cidr;
use crate::network::NodeNetwork;

/// (podCIDR, InternalIP) of a node, when it has both.
fn route_of(node: &Node) -> Option<(Ipv4Cidr, Ipv4Addr)> {
    let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())?;
    Some((cidr, ip))
}

/// Runs forever. `own_cidr` receives this node's podCIDR; once `network` is set, routes
/// to the other nodes follow every change.
pub async fn run(
    client: kube::Client,
    own_name: String,
    own_cidr: watch::Sender<Option<Ipv4Cidr>>,
    mut network: watch::Receiver<Option<Arc<NodeNetwork>>>,
) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut nodes: BTreeMap<String, (Ipv4Cidr, Ipv4Addr)> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<String, (Ipv4Cidr, Ipv4Addr)>> = None;
    let mut synced = false;
    loop {
        let changed = tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "node watch error; retrying");
                    false
                }
                Some(Ok(event)) => match event {
                    Event::Init => {
                        relisting = Some(BTreeMap::new());
                        false
                    }
                    Event::InitApply(node) => {
                        if node.name_any() == own_name {
                            publish_own(&own_cidr, &node);
                        }
                        if let (Some(seen), Some(route)) = (relisting.as_mut(), route_of(&node)) {
                            seen.insert(node.name_any(), route);
                        }
                        false
                    }
                    Event::InitDone => {
                        nodes = relisting.take().unwrap_or_default();
                        synced = true;
                        true
                    }
                    Event::Apply(node) => {
                        if node.name_any() == own_name {
                            publish_own(&own_cidr, &node);
                        }
                        match route_of(&node) {
                            Some(route) => nodes.insert(node.name_any(), route) != Some(route),
                            None => nodes.remove(&node.name_any()).is_some(),
                        }
                    }
                    Event::Delete(node) => nodes.remove(&node.name_any()).is_some(),
                },
            },
            result = network.changed() => result.is_ok(),
        };
        if !changed || !synced {
            continue;
        }
        let Some(net) = network.borrow().clone() else { continue };
        let desired: BTreeMap<Ipv4Cidr, Ipv4Addr> = nodes
            .iter()
            .filter(|(name, (cidr, _))| **name != own_name && *cidr != net.pod_cidr)
            .map(|(_, route)| *route)
            .collect();
        if let Err(e) = net.sync_routes(&desired).await {
            tracing::warn!(error = %e, "programming routes to other nodes failed");
        }
    }
}

fn publish_own(own_cidr: &watch::Sender<Option<Ipv4Cidr>>, node: &Node) {
    let cidr = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse().ok());
    if cidr.is_some() && *own_cidr.borrow() != cidr {
        own_cidr.send_replace(cidr);
    }
}
