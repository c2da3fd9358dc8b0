//! # The Endpoints controller
//!
//! Keeps one legacy `v1` Endpoints object per Service with a selector, named like the
//! Service — what `kubectl get endpoints` and older clients read. As upstream:
//!
//! - every selected pod with an IP of the Service's first IP family becomes an address
//!   (with its node, its pod as `targetRef`, and its hostname when its subdomain is the
//!   Service), under `addresses` when ready and `notReadyAddresses` otherwise; terminating
//!   pods are left out unless the Service publishes not-ready addresses;
//! - addresses are grouped by the ports they offer ("repacked": a named `targetPort` may
//!   resolve to different numbers on different pods), in a canonical order, so equal
//!   content compares equal and nothing is written when nothing changed;
//! - more than 1000 addresses are truncated (ready ones kept first) and the object is
//!   annotated `endpoints.kubernetes.io/over-capacity: truncated`;
//! - the Endpoints is deleted with its Service; Endpoints of Services without a selector
//!   are users' to manage and are left alone.
//!
//! The Endpoints it manages are labelled `endpointslice.kubernetes.io/skip-mirror: "true"`,
//! so the mirroring controller does not copy them into slices (the EndpointSlice
//! controller already publishes the same pods).
//!
//! The machinery (watches, pod/Service index, work queue, write-through cache) is the
//! EndpointSlice controller's, see [`crate::endpointslice`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::Api;

use crate::endpointslice::cache::{ObjectCache, Seen};
use crate::endpointslice::endpoint::{find_port, include_pod, parse_ip, pod_reference, should_set_hostname};
use crate::endpointslice::membership::Membership;
use crate::endpointslice::model::{ObjectKey, PodView, ServiceView};
use crate::endpointslice::queue::{self, WorkQueue};
use crate::endpointslice::trigger_time::{format_time, TriggerTimes};
use crate::endpointslice::watch::{Change, Tasks};
use crate::endpointslice::{ANNOTATION_TRIGGER_TIME, LABEL_HEADLESS, LABEL_SKIP_MIRROR};
use crate::events::EventType;
use crate::Context;

/// Most addresses an Endpoints object holds.
pub const MAX_ADDRESSES: usize = 1000;
/// Set (to `truncated`) when addresses were left out.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints used for leader election (by old components) are never touched.
pub const ANNOTATION_LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// Counter of Endpoints writes, labelled by operation.
pub const WRITES_METRIC: &str = "skiff_endpoints_writes_total";

/// The `controller` label of this controller's metrics.
const METRICS_NAME: &str = "endpoints";
const WORKERS: usize = 4;

#[derive(Default)]
struct State {
    membership: Membership,
    endpoints: ObjectCache<Endpoints>,
    trigger_times: TriggerTimes,
    /// Whether the Endpoints watch listed once (the first list looks for leftovers).
    listed: bool,
}

enum Work {
    Nothing,
    /// The Service is gone: delete its Endpoints.
    Delete,
    /// Create (`create`) or update the Endpoints to `endpoints`.
    Write {
        endpoints: Box<Endpoints>,
        create: bool,
    },
}

struct Controller {
    ctx: Arc<Context>,
    state: Mutex<State>,
    queue: WorkQueue<ObjectKey>,
}

/// Runs the Endpoints controller until a watch ends for good.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    let controller = Arc::new(Controller { ctx, state: Mutex::new(State::default()), queue: WorkQueue::default() });
    let mut tasks = Tasks::default();
    let c = controller.clone();
    let view = |s: Service| ServiceView::from_service(&s);
    tasks.watch(Api::<Service>::all(client.clone()), watcher::Config::default(), view, move |ch| c.on_service(ch));
    let c = controller.clone();
    let view = |p: Pod| PodView::from_pod(&p);
    tasks.watch(Api::<Pod>::all(client.clone()), watcher::Config::default(), view, move |ch| c.on_pod(ch));
    let c = controller.clone();
    tasks.watch(Api::<Endpoints>::all(client), watcher::Config::default(), |e| e, move |ch| c.on_endpoints(ch));
    tasks.wait_listed().await?;

    tracing::info!(controller = METRICS_NAME, "caches synced; starting workers");
    for _ in 0..WORKERS {
        let c = controller.clone();
        let sync = {
            let c = controller.clone();
            move |key: ObjectKey| {
                let c = c.clone();
                async move { c.sync(&key).await }
            }
        };
        tasks.spawn(async move { queue::work(&c.queue, &c.ctx.metrics, METRICS_NAME, sync).await });
    }
    tasks.join().await
}

impl Controller {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn on_service(&self, change: Change<ServiceView>) {
        let keys = self.state().membership.apply_service_change(change);
        self.queue.add_all(keys);
    }

    fn on_pod(&self, change: Change<PodView>) {
        let keys = self.state().membership.apply_pod_change(change);
        self.queue.add_all(keys);
    }

    /// As upstream, only deletions by others trigger a sync (the Service recreates its
    /// Endpoints); the first list queues every Endpoints, so that those whose Service was
    /// deleted while no controller ran are cleaned up.
    fn on_endpoints(&self, change: Change<Endpoints>) {
        let mut st = self.state();
        match change {
            Change::Applied(e) => {
                st.endpoints.observe_applied(e);
            }
            Change::Deleted(e) => {
                let key = ObjectKey::of(&e);
                if st.endpoints.observe_deleted(&key) == Seen::External {
                    drop(st);
                    self.queue.add(key);
                }
            }
            Change::Relisted(all) => {
                let first = !st.listed;
                st.listed = true;
                let changed = st.endpoints.observe_relist(all);
                let keys: Vec<ObjectKey> = if first {
                    st.endpoints
                        .values()
                        .filter(|e| !has_annotation(e, ANNOTATION_LEADER))
                        .map(|e| ObjectKey::of(e.as_ref()))
                        .collect()
                } else {
                    changed.into_iter().filter(|k| st.endpoints.get(k).is_none()).collect()
                };
                drop(st);
                self.queue.add_all(keys);
            }
        }
    }

    fn decide(&self, key: &ObjectKey) -> Work {
        let mut st = self.state();
        let st = &mut *st;
        let Some(service) = st.membership.service(key).cloned() else {
            st.trigger_times.forget(key);
            return if st.endpoints.get(key).is_some() { Work::Delete } else { Work::Nothing };
        };
        if service.external_name || service.selector.is_none() {
            return Work::Nothing;
        }
        let pods = st.membership.pods_of(&service);
        let trigger =
            st.trigger_times.compute(key, service.created, pods.iter().map(|p| (p.name.as_str(), p.ready_transition)));
        let subsets = desired_subsets(&service, &pods);
        let current = st.endpoints.get(key).map(|e| e.as_ref());
        match desired_endpoints(&service, current, subsets, trigger.map(format_time)) {
            Some(endpoints) => Work::Write { endpoints: Box::new(endpoints), create: current.is_none() },
            None => Work::Nothing,
        }
    }

    async fn sync(&self, key: &ObjectKey) -> Result<(), String> {
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let count = |operation: &str| {
            self.ctx.metrics.inc(WRITES_METRIC, &[("controller", METRICS_NAME), ("operation", operation)])
        };
        match self.decide(key) {
            Work::Nothing => Ok(()),
            Work::Delete => match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {
                    count("delete");
                    self.state().endpoints.deleted(key);
                    Ok(())
                }
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    self.state().endpoints.deleted(key);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            Work::Write { endpoints, create } => {
                let result = if create {
                    api.create(&PostParams::default(), &endpoints).await
                } else {
                    api.replace(&key.name, &PostParams::default(), &endpoints).await
                };
                match result {
                    Ok(written) => {
                        count(if create { "create" } else { "update" });
                        self.state().endpoints.wrote(written);
                        Ok(())
                    }
                    Err(e) if create && namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        let (reason, message) = if create {
                            ("FailedToCreateEndpoint", format!("Failed to create endpoint for service {key}: {e}"))
                        } else {
                            ("FailedToUpdateEndpoint", format!("Failed to update endpoint {key}: {e}"))
                        };
                        self.ctx.recorder.publish(endpoints.as_ref(), EventType::Warning, reason, &message).await;
                        Err(e.to_string())
                    }
                }
            }
        }
    }
}

fn namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

fn has_annotation(endpoints: &Endpoints, key: &str) -> bool {
    endpoints.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(key))
}

/// The address of `pod` for `service`: its IP of the Service's (first) IP family.
fn endpoint_address(service: &ServiceView, pod: &PodView) -> Option<EndpointAddress> {
    let want_v6 = match service.ip_families.first() {
        Some(family) => family == "IPv6",
        None if service.has_cluster_ip() => parse_ip(&service.cluster_ip).is_some_and(|ip| ip.is_ipv6()),
        None => pod.ips.first().and_then(|ip| parse_ip(ip)).is_some_and(|ip| ip.is_ipv6()),
    };
    let ip = pod.ips.iter().find(|ip| parse_ip(ip).is_some_and(|ip| ip.is_ipv6() == want_v6))?;
    Some(EndpointAddress {
        ip: ip.clone(),
        node_name: Some(pod.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        hostname: should_set_hostname(pod, service).then(|| pod.hostname.clone()),
    })
}

/// The subsets of `service`'s Endpoints for its selected `pods`, repacked.
pub(crate) fn desired_subsets(service: &ServiceView, pods: &[&PodView]) -> Vec<EndpointSubset> {
    let tolerate_unready = service.publish_not_ready_addresses;
    let mut subsets = Vec::new();
    let subset = |address: EndpointAddress, port: Option<EndpointPort>, ready: bool| EndpointSubset {
        addresses: ready.then(|| vec![address.clone()]),
        not_ready_addresses: (!ready).then(|| vec![address]),
        ports: port.map(|p| vec![p]),
    };
    for pod in pods {
        if !include_pod(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = endpoint_address(service, pod) else { continue };
        let ready = tolerate_unready || pod.ready;
        if service.ports.is_empty() {
            // A headless Service may have no ports at all.
            if service.cluster_ip == "None" {
                subsets.push(subset(address, None, ready));
            }
            continue;
        }
        for port in &service.ports {
            let Some(number) = find_port(pod, port) else { continue };
            let endpoint_port = EndpointPort {
                name: Some(port.name.clone()).filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(port.protocol.clone()),
                app_protocol: port.app_protocol.clone(),
            };
            subsets.push(subset(address.clone(), Some(endpoint_port), ready));
        }
    }
    repack(subsets)
}

/// An address is the same address when its IP and target pod are.
type AddressId = (String, String);
/// How ports compare: name, number, protocol (TCP by default), app protocol.
type PortId = (String, i32, String, Option<String>);

fn address_id(address: &EndpointAddress) -> AddressId {
    (address.ip.clone(), address.target_ref.as_ref().and_then(|t| t.uid.clone()).unwrap_or_default())
}

fn port_id(port: &EndpointPort) -> PortId {
    (
        port.name.clone().unwrap_or_default(),
        port.port,
        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
        port.app_protocol.clone(),
    )
}

/// Canonical subsets (upstream's `RepackSubsets`): each address is listed once per set
/// of ports it offers, addresses with the same ports (and readiness) share a subset, and
/// everything is sorted. An address that is not ready on a port counts as not ready
/// there even if listed as ready elsewhere.
pub(crate) fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    let mut addresses: HashMap<AddressId, EndpointAddress> = HashMap::new();
    let mut ports: HashMap<PortId, EndpointPort> = HashMap::new();
    // Port (None: "no ports", kept so port-less headless addresses survive) → address → ready.
    let mut by_port: BTreeMap<Option<PortId>, BTreeMap<AddressId, bool>> = BTreeMap::new();
    for subset in &subsets {
        let subset_ports: Vec<Option<PortId>> = match subset.ports.as_deref() {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|p| {
                    let id = port_id(p);
                    ports.entry(id.clone()).or_insert_with(|| p.clone());
                    Some(id)
                })
                .collect(),
            _ => vec![None],
        };
        let listed = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false)));
        for (address, ready) in listed {
            let id = address_id(address);
            addresses.entry(id.clone()).or_insert_with(|| address.clone());
            for port in &subset_ports {
                let state = by_port.entry(port.clone()).or_default().entry(id.clone()).or_insert(ready);
                *state = *state && ready;
            }
        }
    }
    let mut groups: BTreeMap<Vec<(AddressId, bool)>, Vec<Option<PortId>>> = BTreeMap::new();
    for (port, members) in by_port {
        groups.entry(members.into_iter().collect()).or_default().push(port);
    }
    let mut repacked: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(members, port_ids)| {
            let pick = |want_ready: bool| -> Vec<EndpointAddress> {
                let mut list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, ready)| *ready == want_ready)
                    .filter_map(|(id, _)| addresses.get(id).cloned())
                    .collect();
                list.sort_by(compare_addresses);
                list
            };
            let mut subset_ports: Vec<EndpointPort> =
                port_ids.iter().flatten().filter_map(|id| ports.get(id).cloned()).collect();
            subset_ports.sort_by_key(port_id);
            let ready = pick(true);
            let not_ready = pick(false);
            EndpointSubset {
                addresses: Some(ready).filter(|l| !l.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|l| !l.is_empty()),
                ports: Some(subset_ports).filter(|l| !l.is_empty()),
            }
        })
        .collect();
    repacked.sort_by_key(subset_order);
    repacked
}

/// Addresses sort by IP (as text), then by target UID.
fn compare_addresses(a: &EndpointAddress, b: &EndpointAddress) -> Ordering {
    address_id(a).cmp(&address_id(b))
}

fn subset_order(subset: &EndpointSubset) -> (Vec<AddressId>, Vec<AddressId>, Vec<PortId>) {
    (
        subset.addresses.iter().flatten().map(address_id).collect(),
        subset.not_ready_addresses.iter().flatten().map(address_id).collect(),
        subset.ports.iter().flatten().map(port_id).collect(),
    )
}

/// Cuts subsets down to [`MAX_ADDRESSES`] addresses, as upstream does: ready addresses
/// are kept before not-ready ones, and each subset keeps a share proportional to its
/// size. Returns whether anything was cut.
pub(crate) fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |f: fn(&EndpointSubset) -> &Option<Vec<EndpointAddress>>| -> usize {
        subsets.iter().map(|s| f(s).as_ref().map_or(0, Vec::len)).sum()
    };
    let total_ready = count(|s| &s.addresses);
    let total_not_ready = count(|s| &s.not_ready_addresses);
    if total_ready + total_not_ready <= MAX_ADDRESSES {
        return false;
    }
    let truncate_ready = total_ready > MAX_ADDRESSES;
    let (max, total) =
        if truncate_ready { (MAX_ADDRESSES, total_ready) } else { (MAX_ADDRESSES - total_ready, total_not_ready) };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let here = list.as_ref().map_or(0, Vec::len);
        let share = (here * max).div_ceil(total).min(room);
        if let Some(list) = list.as_mut() {
            list.truncate(share);
        }
        room -= list.as_ref().map_or(0, Vec::len);
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    true
}

/// The labels of a Service's Endpoints: the Service's own, the skip-mirror label, and
/// the headless label for headless Services.
fn endpoints_labels(service: &ServiceView) -> BTreeMap<String, String> {
    let mut labels = service.labels.clone();
    labels.insert(LABEL_SKIP_MIRROR.to_string(), "true".to_string());
    if service.has_cluster_ip() {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels
}

/// Subsets in comparable form: absent lists are empty, target resourceVersions and
/// empty names are ignored, the default protocol is spelled out.
fn comparable(subsets: &[EndpointSubset]) -> Vec<(Vec<EndpointAddress>, Vec<EndpointAddress>, Vec<PortId>)> {
    let addresses = |list: &Option<Vec<EndpointAddress>>| -> Vec<EndpointAddress> {
        list.iter()
            .flatten()
            .map(|a| {
                let mut a = a.clone();
                if let Some(t) = a.target_ref.as_mut() {
                    t.resource_version = None;
                }
                a.hostname = a.hostname.filter(|h| !h.is_empty());
                a
            })
            .collect()
    };
    subsets
        .iter()
        .map(|s| {
            (
                addresses(&s.addresses),
                addresses(&s.not_ready_addresses),
                s.ports.iter().flatten().map(port_id).collect(),
            )
        })
        .collect()
}

/// The Endpoints to write for `service` given the `current` one (if any) and the
/// desired `subsets`; `None` when the current one is already right. The trigger time is
/// written along with a change but is not a reason to write by itself.
pub(crate) fn desired_endpoints(
    service: &ServiceView,
    current: Option<&Endpoints>,
    mut subsets: Vec<EndpointSubset>,
    trigger_time: Option<String>,
) -> Option<Endpoints> {
    let truncated = truncate(&mut subsets);
    let labels = endpoints_labels(service);
    if let Some(current) = current {
        let over_capacity = current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_OVER_CAPACITY))
            .is_some_and(|v| v == "truncated");
        let same = comparable(current.subsets.as_deref().unwrap_or_default()) == comparable(&subsets)
            && current.metadata.labels.clone().unwrap_or_default() == labels
            && over_capacity == truncated
            && (truncated || !has_annotation(current, ANNOTATION_OVER_CAPACITY));
        if same {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(service.name.clone()),
            namespace: Some(service.namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    });
    endpoints.subsets = Some(subsets).filter(|s| !s.is_empty());
    endpoints.metadata.labels = Some(labels);
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(time) => annotations.insert(ANNOTATION_TRIGGER_TIME.to_string(), time),
        None => annotations.remove(ANNOTATION_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(ANNOTATION_OVER_CAPACITY.to_string(), "truncated".to_string());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    endpoints.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
    Some(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::testing::{pod, service};

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses() {
        let svc = service(serde_json::json!({}));
        let (a, b) = (pod("a", "10.244.1.5", true), pod("b", "10.244.1.6", false));
        let subsets = desired_subsets(&svc, &[&b, &a]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.5"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.1.6"]);
        let port = &subsets[0].ports.clone().unwrap_or_default()[0];
        assert_eq!((port.name.as_deref(), port.port, port.protocol.as_deref()), (Some("http"), 8080, Some("TCP")));
        let address = &subsets[0].addresses.clone().unwrap_or_default()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(address.target_ref.as_ref().and_then(|t| t.name.as_deref()), Some("a"));
    }

    #[test]
    fn terminating_pods_only_with_publish_not_ready() {
        let mut a = pod("a", "10.244.1.5", true);
        a.terminating = true;
        assert!(desired_subsets(&service(serde_json::json!({})), &[&a]).is_empty());
        let publish = service(serde_json::json!({"publishNotReadyAddresses": true}));
        let subsets = desired_subsets(&publish, &[&a]);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.5"]);
        let mut b = pod("b", "10.244.1.6", false);
        b.hostname = "b".into();
        b.subdomain = "web".into();
        let subsets = desired_subsets(&publish, &[&b]);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.6"], "not-ready pods are published as ready");
        assert_eq!(subsets[0].addresses.clone().unwrap_or_default()[0].hostname.as_deref(), Some("b"));
    }

    #[test]
    fn named_ports_resolving_differently_split_subsets() {
        let svc = service(serde_json::json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let a = pod("a", "10.244.1.5", true);
        let mut b = pod("b", "10.244.1.6", true);
        b.named_ports[0].port = 9090;
        let subsets = desired_subsets(&svc, &[&a, &b]);
        assert_eq!(subsets.len(), 2);
        let numbers: Vec<i32> = subsets.iter().map(|s| s.ports.clone().unwrap_or_default()[0].port).collect();
        assert_eq!(numbers, [8080, 9090]);
    }

    #[test]
    fn repack_merges_ports_and_keeps_not_ready_sticky() {
        let address = |ip: &str| EndpointAddress { ip: ip.into(), ..Default::default() };
        let port = |n: i32| EndpointPort { name: Some(format!("p{n}")), port: n, ..Default::default() };
        let subsets = vec![
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.2"), address("10.0.0.1")]),
                ports: Some(vec![port(80)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.1")]),
                ports: Some(vec![port(443)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.2")]),
                ports: Some(vec![port(443)]),
                ..Default::default()
            },
            EndpointSubset {
                not_ready_addresses: Some(vec![address("10.0.0.2")]),
                ports: Some(vec![port(80)]),
                ..Default::default()
            },
        ];
        let repacked = repack(subsets);
        // 80: .1 ready, .2 not ready (not-ready wins); 443: both ready.
        assert_eq!(repacked.len(), 2);
        let by_port: BTreeMap<i32, (Vec<&str>, Vec<&str>)> = repacked
            .iter()
            .map(|s| (s.ports.as_ref().map_or(0, |p| p[0].port), (ips(&s.addresses), ips(&s.not_ready_addresses))))
            .collect();
        assert_eq!(by_port[&80], (vec!["10.0.0.1"], vec!["10.0.0.2"]));
        assert_eq!(by_port[&443], (vec!["10.0.0.1", "10.0.0.2"], vec![]));
        // Repacking is idempotent.
        assert_eq!(comparable(&repack(repacked.clone())), comparable(&repacked));
    }

    #[test]
    fn headless_without_ports() {
        let svc = service(serde_json::json!({"clusterIP": "None", "ports": null}));
        let a = pod("a", "10.244.1.5", true);
        let subsets = desired_subsets(&svc, &[&a]);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.5"]);
        assert_eq!(subsets[0].ports, None);
        let labels = endpoints_labels(&svc);
        assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    }

    #[test]
    fn truncates_at_capacity_keeping_ready_first() {
        let svc = service(serde_json::json!({}));
        let pods: Vec<PodView> = (0..1200)
            .map(|i| pod(&format!("p{i}"), &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256), i < 900))
            .collect();
        let refs: Vec<&PodView> = pods.iter().collect();
        let endpoints = desired_endpoints(&svc, None, desired_subsets(&svc, &refs), None).expect("endpoints");
        let subsets = endpoints.subsets.clone().unwrap_or_default();
        let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        let not_ready: usize = subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
        assert_eq!((ready, not_ready), (900, 100));
        let annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANNOTATION_OVER_CAPACITY).map(String::as_str), Some("truncated"));
        // Truncated content is stable: a second pass writes nothing.
        assert!(desired_endpoints(&svc, Some(&endpoints), desired_subsets(&svc, &refs), None).is_none());
    }

    #[test]
    fn no_write_when_nothing_changed_but_labels_count() {
        let svc = service(serde_json::json!({}));
        let a = pod("a", "10.244.1.5", true);
        let first = desired_endpoints(&svc, None, desired_subsets(&svc, &[&a]), None).expect("endpoints");
        let labels = first.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_SKIP_MIRROR).map(String::as_str), Some("true"));
        assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
        assert!(desired_endpoints(&svc, Some(&first), desired_subsets(&svc, &[&a]), Some("t".into())).is_none());
        let mut relabelled = svc.clone();
        relabelled.labels.insert("tier".into(), "front".into());
        assert!(desired_endpoints(&relabelled, Some(&first), desired_subsets(&svc, &[&a]), None).is_some());
        let mut flipped = a.clone();
        flipped.ready = false;
        let second = desired_endpoints(&svc, Some(&first), desired_subsets(&svc, &[&flipped]), Some("t".into()))
            .expect("a readiness flip is a change");
        let annotations = second.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANNOTATION_TRIGGER_TIME).map(String::as_str), Some("t"));
    }
}
