//! # The EndpointSlice mirroring controller
//!
//! A Service without a selector gets its endpoints from a hand-written `v1` Endpoints
//! object (seed 003's headless example does exactly that). Consumers of EndpointSlices —
//! the proxy, DNS, the ingress — would not see those, so this controller copies each such
//! Endpoints into "mirrored" slices, as upstream's mirroring controller does:
//!
//! - one slice per subset (after repacking) and address family, named `<endpoints>-<suffix>`,
//!   labelled `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`
//!   and `kubernetes.io/service-name: <name>` plus the Endpoints' own labels, carrying its
//!   annotations, and owned by the Endpoints;
//! - `addresses` become endpoints with `ready: true`, `notReadyAddresses` with
//!   `ready: false`; at most 1000 addresses per subset are mirrored (an event says how
//!   many were skipped), invalid IPs are skipped (with an event too);
//! - Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (those the
//!   Endpoints controller manages, and the API server's `default/kubernetes`) or used for
//!   leader election are not mirrored;
//! - mirrored slices are removed when the Endpoints or the Service goes away, or when the
//!   Service gains a selector.
//!
//! Only slices carrying this controller's `managed-by` label are ever written: slices
//! users create by hand are left alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::watcher;
use kube::Api;

use crate::endpoints::{repack, ANNOTATION_LEADER};
use crate::endpointslice::cache::{ObjectCache, Seen, SliceIndex};
use crate::endpointslice::endpoint::{equal_beyond_key, parse_ip, AddressType, EndpointSet, PortKey};
use crate::endpointslice::model::ObjectKey;
use crate::endpointslice::queue::{self, WorkQueue};
use crate::endpointslice::reconcile::SlicePlan;
use crate::endpointslice::watch::{Change, Tasks};
use crate::endpointslice::writes;
use crate::endpointslice::{ANNOTATION_TRIGGER_TIME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR};
use crate::events::EventType;
use crate::Context;

/// The `managed-by` value of mirrored slices.
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// Most addresses mirrored per Endpoints subset (upstream's default).
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// kubectl's record of the last applied configuration: not copied to slices.
const ANNOTATION_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const METRICS_NAME: &str = "endpointslicemirroring";
const WORKERS: usize = 2;

#[derive(Default)]
struct State {
    endpoints: ObjectCache<Endpoints>,
    /// Every Service, and whether it has a selector.
    services: HashMap<ObjectKey, bool>,
    slices: SliceIndex,
}

enum Work {
    RemoveAll(Vec<Arc<EndpointSlice>>),
    Mirror { endpoints: Arc<Endpoints>, mirrored: Mirrored },
}

struct Controller {
    ctx: Arc<Context>,
    state: Mutex<State>,
    queue: WorkQueue<ObjectKey>,
}

/// Runs the mirroring controller until a watch ends for good.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    let controller = Arc::new(Controller { ctx, state: Mutex::new(State::default()), queue: WorkQueue::default() });
    let mut tasks = Tasks::default();
    let c = controller.clone();
    let selector = |s: Service| (ObjectKey::of(&s), has_selector(&s));
    tasks.watch(Api::<Service>::all(client.clone()), watcher::Config::default(), selector, move |ch| c.on_service(ch));
    let c = controller.clone();
    tasks.watch(Api::<Endpoints>::all(client.clone()), watcher::Config::default(), |e| e, move |ch| c.on_endpoints(ch));
    let c = controller.clone();
    let ours = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}"));
    tasks.watch(Api::<EndpointSlice>::all(client), ours, |s| s, move |ch| c.on_slice(ch));
    tasks.wait_listed().await?;

    tracing::info!(controller = CONTROLLER_NAME, "caches synced; starting workers");
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

/// Whether an Endpoints is one to mirror at all (its Service is checked separately).
fn should_mirror(endpoints: &Endpoints) -> bool {
    let skip = endpoints.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SKIP_MIRROR)).is_some_and(|v| v == "true");
    let leader = endpoints.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_LEADER));
    !skip && !leader
}

fn has_selector(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty())
}

impl Controller {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Only whether a Service exists and has a selector matters here: as upstream, the
    /// Endpoints is synced when a selector-less Service appears or goes, or when a
    /// Service gains or loses its selector.
    fn on_service(&self, change: Change<(ObjectKey, bool)>) {
        let mut st = self.state();
        let matters = |before: Option<bool>, after: Option<bool>| match (before, after) {
            (None, Some(selector)) | (Some(selector), None) => !selector,
            (Some(before), Some(after)) => before != after,
            (None, None) => false,
        };
        let keys: Vec<ObjectKey> = match change {
            Change::Applied((key, selector)) => {
                let before = st.services.insert(key.clone(), selector);
                if matters(before, Some(selector)) {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            Change::Deleted((key, selector)) => {
                let before = st.services.remove(&key);
                if matters(before.or(Some(selector)), None) {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            Change::Relisted(all) => {
                let fresh: HashMap<ObjectKey, bool> = all.into_iter().collect();
                let mut keys: Vec<ObjectKey> = fresh
                    .iter()
                    .filter(|(k, v)| matters(st.services.get(*k).copied(), Some(**v)))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.extend(
                    st.services.iter().filter(|(k, v)| !fresh.contains_key(*k) && !**v).map(|(k, _)| k.clone()),
                );
                st.services = fresh;
                keys
            }
        };
        drop(st);
        self.queue.add_all(keys);
    }

    fn on_endpoints(&self, change: Change<Endpoints>) {
        let mut st = self.state();
        let keys: Vec<ObjectKey> = match change {
            Change::Applied(e) => {
                let key = ObjectKey::of(&e);
                let mirrored_before = st.endpoints.get(&key).is_some_and(|old| should_mirror(old));
                let mirror_now = should_mirror(&e);
                let seen = st.endpoints.observe_applied(e);
                if seen == Seen::External && (mirror_now || mirrored_before) {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            Change::Deleted(e) => {
                let key = ObjectKey::of(&e);
                st.endpoints.observe_deleted(&key);
                if should_mirror(&e) {
                    vec![key]
                } else {
                    Vec::new()
                }
            }
            Change::Relisted(all) => {
                let mut keys = st.endpoints.observe_relist(all);
                // Mirrored slices whose Endpoints vanished while nobody watched.
                keys.extend(st.slices.owners().filter(|o| st.endpoints.get(o).is_none()).cloned());
                keys
            }
        };
        drop(st);
        self.queue.add_all(keys);
    }

    fn on_slice(&self, change: Change<EndpointSlice>) {
        let owners = match change {
            Change::Applied(s) => self.state().slices.observe_applied(s),
            Change::Deleted(s) => self.state().slices.observe_deleted(&s),
            Change::Relisted(all) => self.state().slices.observe_relist(all),
        };
        self.queue.add_all(owners);
    }

    fn decide(&self, key: &ObjectKey) -> Work {
        let st = self.state();
        let existing = st.slices.for_owner(key);
        let endpoints = st.endpoints.get(key).filter(|e| should_mirror(e)).cloned();
        // Mirror only for an existing Service without a selector.
        let selectorless = st.services.get(key) == Some(&false);
        match endpoints {
            Some(endpoints) if selectorless => {
                let mirrored = mirror(&endpoints, &existing, MAX_ENDPOINTS_PER_SUBSET);
                Work::Mirror { endpoints, mirrored }
            }
            _ => Work::RemoveAll(existing),
        }
    }

    async fn sync(&self, key: &ObjectKey) -> Result<(), String> {
        let (plan, allow_create) = match self.decide(key) {
            Work::RemoveAll(slices) => {
                (SlicePlan { delete: slices.iter().map(|s| s.as_ref().clone()).collect(), ..Default::default() }, false)
            }
            Work::Mirror { endpoints, mirrored } => {
                if mirrored.invalid > 0 {
                    let message =
                        format!("Skipped {} invalid IP addresses when mirroring to EndpointSlices", mirrored.invalid);
                    self.ctx
                        .recorder
                        .publish(endpoints.as_ref(), EventType::Warning, "InvalidIPAddress", &message)
                        .await;
                }
                if mirrored.skipped > mirrored.invalid {
                    let message = format!(
                        "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                        mirrored.skipped
                    );
                    self.ctx
                        .recorder
                        .publish(endpoints.as_ref(), EventType::Warning, "TooManyAddressesToMirror", &message)
                        .await;
                }
                (mirrored.plan, endpoints.metadata.deletion_timestamp.is_none())
            }
        };
        if plan.is_empty() {
            return Ok(());
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let owner = writes::Owner { kind: "Endpoints", key };
        let metrics = &self.ctx.metrics;
        writes::perform_tracked(&api, owner, plan, allow_create, metrics, METRICS_NAME, |f| f(&mut self.state().slices))
            .await
    }
}

/// The result of planning a mirror.
pub(crate) struct Mirrored {
    pub plan: SlicePlan,
    /// Addresses that are not IPs.
    pub invalid: usize,
    /// Addresses not mirrored (invalid ones, and those beyond the per-subset maximum).
    pub skipped: usize,
}

/// Desired mirrored endpoints of one (address type, port set).
struct Group {
    address_type: AddressType,
    ports: Vec<EndpointPort>,
    endpoints: EndpointSet,
}

fn slice_ports(ports: &[k8s_openapi::api::core::v1::EndpointPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

fn address_to_endpoint(address: &EndpointAddress, ready: bool) -> Option<(AddressType, Endpoint)> {
    let ip = parse_ip(&address.ip)?;
    let endpoint = Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions { ready: Some(ready), ..Default::default() }),
        target_ref: address.target_ref.clone(),
        node_name: address.node_name.clone(),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    };
    Some((AddressType::of(&ip), endpoint))
}

/// The annotations mirrored slices carry: the Endpoints' own, except its trigger time and
/// kubectl's last-applied record.
fn mirrored_annotations(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(ANNOTATION_TRIGGER_TIME);
    annotations.remove(ANNOTATION_LAST_APPLIED);
    annotations
}

/// A mirrored slice of `endpoints` (named `name`, or generated from `<endpoints>-`).
fn new_mirrored_slice(
    endpoints: &Endpoints,
    ports: Vec<EndpointPort>,
    address_type: AddressType,
    name: Option<String>,
) -> EndpointSlice {
    let endpoints_name = endpoints.metadata.name.clone().unwrap_or_default();
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SERVICE_NAME.to_string(), endpoints_name.clone());
    labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
    let annotations = mirrored_annotations(endpoints);
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        name: endpoints_name.clone(),
        uid: endpoints.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| format!("{endpoints_name}-")),
            name,
            namespace: endpoints.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        address_type: address_type.as_str().to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Whether `slice` already holds exactly `desired` and the metadata mirrored from
/// `endpoints`.
fn slice_is_current(slice: &EndpointSlice, desired: &EndpointSet, endpoints: &Endpoints) -> bool {
    let mut matched = 0;
    for endpoint in &slice.endpoints {
        match desired.get(endpoint) {
            Some(wanted) if equal_beyond_key(wanted, endpoint) => matched += 1,
            _ => return false,
        }
    }
    let mut labels = slice.metadata.labels.clone().unwrap_or_default();
    labels.remove(LABEL_MANAGED_BY);
    labels.remove(LABEL_SERVICE_NAME);
    matched == desired.len()
        && labels == endpoints.metadata.labels.clone().unwrap_or_default()
        && slice.metadata.annotations.clone().unwrap_or_default() == mirrored_annotations(endpoints)
}

/// Plans the mirrored slices of `endpoints`, given the mirrored slices that exist.
pub(crate) fn mirror(endpoints: &Endpoints, existing: &[Arc<EndpointSlice>], max_per_subset: usize) -> Mirrored {
    let mut groups: BTreeMap<(AddressType, PortKey), Group> = BTreeMap::new();
    let (mut invalid, mut skipped) = (0, 0);
    for subset in repack(endpoints.subsets.clone().unwrap_or_default()) {
        let ports = slice_ports(subset.ports.as_deref().unwrap_or_default());
        let port_key = PortKey::of(&ports);
        for address_type in [AddressType::IPv4, AddressType::IPv6] {
            groups.entry((address_type, port_key.clone())).or_insert_with(|| Group {
                address_type,
                ports: ports.clone(),
                endpoints: EndpointSet::default(),
            });
        }
        let listed = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false)));
        let mut added = 0;
        let mut total = 0;
        for (address, ready) in listed {
            total += 1;
            if added >= max_per_subset {
                continue;
            }
            match address_to_endpoint(address, ready) {
                Some((address_type, endpoint)) => {
                    if let Some(group) = groups.get_mut(&(address_type, port_key.clone())) {
                        group.endpoints.insert(endpoint);
                        added += 1;
                    }
                }
                None => invalid += 1,
            }
        }
        skipped += total - added;
    }

    let mut existing_by_key: BTreeMap<(String, PortKey), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = (slice.address_type.clone(), PortKey::of(slice.ports.as_deref().unwrap_or_default()));
        existing_by_key.entry(key).or_default().push(slice.as_ref());
    }
    let mut plan = SlicePlan::default();
    for group in groups.into_values() {
        let key = (group.address_type.as_str().to_string(), PortKey::of(&group.ports));
        let slices = existing_by_key.remove(&key).unwrap_or_default();
        let Group { address_type, ports, endpoints: mut desired } = group;
        if desired.is_empty() {
            plan.delete.extend(slices.into_iter().cloned());
            continue;
        }
        // One slice per group: any extra ones go.
        plan.delete.extend(slices.iter().skip(1).map(|s| (*s).clone()));
        if let Some(first) = slices.first() {
            if slice_is_current(first, &desired, endpoints) {
                continue;
            }
        }
        let name = slices.first().and_then(|s| s.metadata.name.clone());
        let mut slice = new_mirrored_slice(endpoints, ports, address_type, name);
        while let Some(endpoint) = desired.pop() {
            slice.endpoints.push(endpoint);
        }
        if slice.metadata.name.is_some() {
            plan.update.push(slice);
        } else {
            plan.create.push(slice);
        }
    }
    for slices in existing_by_key.into_values() {
        plan.delete.extend(slices.into_iter().cloned());
    }
    recycle(&mut plan);
    Mirrored { plan, invalid, skipped }
}

/// Creates paired with deletes of the same address type become updates of those slices.
fn recycle(plan: &mut SlicePlan) {
    let mut i = 0;
    while i < plan.create.len() {
        let address_type = plan.create[i].address_type.clone();
        match plan.delete.iter().position(|d| d.address_type == address_type) {
            Some(j) => {
                let deleted = plan.delete.remove(j);
                let mut slice = plan.create.remove(i);
                slice.metadata.name = deleted.metadata.name;
                plan.update.push(slice);
            }
            None => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(value: serde_json::Value) -> Endpoints {
        let mut base = serde_json::json!({
            "metadata": {"name": "numbers-api", "namespace": "default", "uid": "ep-uid",
                         "labels": {"team": "blue"},
                         "annotations": {ANNOTATION_LAST_APPLIED: "{}", "note": "kept"}},
        });
        if let (Some(base), Some(value)) = (base.as_object_mut(), value.as_object()) {
            for (k, v) in value {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).expect("endpoints")
    }

    /// Performs a plan as the API server would, naming created slices.
    fn apply(existing: &[Arc<EndpointSlice>], plan: SlicePlan) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, Arc<EndpointSlice>> =
            existing.iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone())).collect();
        for (i, mut slice) in plan.create.into_iter().enumerate() {
            let name = format!("{}x{}{}", slice.metadata.generate_name.clone().unwrap_or_default(), by_name.len(), i);
            slice.metadata.name = Some(name.clone());
            by_name.insert(name, Arc::new(slice));
        }
        for slice in plan.update {
            by_name.insert(slice.metadata.name.clone().unwrap_or_default(), Arc::new(slice));
        }
        for slice in plan.delete {
            by_name.remove(&slice.metadata.name.clone().unwrap_or_default());
        }
        by_name.into_values().collect()
    }

    fn seed() -> Endpoints {
        endpoints(serde_json::json!({"subsets": [{"addresses": [{"ip": "192.168.123.234"}], "ports": [{"port": 80}]}]}))
    }

    #[test]
    fn mirrors_the_seed_endpoints() {
        let m = mirror(&seed(), &[], MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (1, 0, 0));
        let slice = &m.plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("numbers-api-"));
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("numbers-api"));
        assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
        let annotations = slice.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["note"]);
        let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Endpoints", "ep-uid", Some(true)));
        assert_eq!(slice.endpoints[0].addresses, ["192.168.123.234"]);
        assert_eq!(slice.endpoints[0].conditions.as_ref().and_then(|c| c.ready), Some(true));
        let port = &slice.ports.clone().unwrap_or_default()[0];
        assert_eq!((port.port, port.protocol.as_deref(), port.name.as_deref()), (Some(80), Some("TCP"), Some("")));
        // Mirrored again, nothing changes.
        let slices = apply(&[], m.plan);
        assert!(mirror(&seed(), &slices, MAX_ENDPOINTS_PER_SUBSET).plan.is_empty());
    }

    #[test]
    fn not_ready_addresses_are_not_ready_and_changes_update_in_place() {
        let slices = apply(&[], mirror(&seed(), &[], MAX_ENDPOINTS_PER_SUBSET).plan);
        let changed = endpoints(serde_json::json!({"subsets": [{
            "addresses": [{"ip": "192.168.123.234"}],
            "notReadyAddresses": [{"ip": "192.168.123.235"}],
            "ports": [{"port": 80}]}]}));
        let m = mirror(&changed, &slices, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (0, 1, 0));
        let slice = &m.plan.update[0];
        assert_eq!(slice.metadata.name, slices[0].metadata.name);
        let ready: BTreeMap<&str, Option<bool>> = slice
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].as_str(), e.conditions.as_ref().and_then(|c| c.ready)))
            .collect();
        assert_eq!(ready, BTreeMap::from([("192.168.123.234", Some(true)), ("192.168.123.235", Some(false))]));
        // A new port set reuses the slice rather than deleting and creating.
        let moved = endpoints(
            serde_json::json!({"subsets": [{"addresses": [{"ip": "192.168.123.234"}], "ports": [{"port": 8080}]}]}),
        );
        let m = mirror(&moved, &slices, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (0, 1, 0));
        // No subsets: the slice goes.
        let m = mirror(&endpoints(serde_json::json!({})), &slices, MAX_ENDPOINTS_PER_SUBSET);
        assert_eq!((m.plan.create.len(), m.plan.update.len(), m.plan.delete.len()), (0, 0, 1));
    }

    #[test]
    fn skips_invalid_and_excess_addresses() {
        let addresses: Vec<serde_json::Value> = (0..5)
            .map(|i| serde_json::json!({"ip": format!("10.0.0.{i}")}))
            .chain([serde_json::json!({"ip": "1.2.3"})])
            .collect();
        let e = endpoints(serde_json::json!({"subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]}));
        let m = mirror(&e, &[], 3);
        assert_eq!(m.invalid, 1);
        assert_eq!(m.skipped, 3);
        assert_eq!(m.plan.create[0].endpoints.len(), 3);
    }

    #[test]
    fn dual_stack_addresses_get_a_slice_per_family() {
        let e = endpoints(serde_json::json!({"subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]}));
        let m = mirror(&e, &[], MAX_ENDPOINTS_PER_SUBSET);
        let types: Vec<&str> = m.plan.create.iter().map(|s| s.address_type.as_str()).collect();
        assert_eq!(types, ["IPv4", "IPv6"]);
    }

    #[test]
    fn skip_mirror_and_leader_election_are_respected() {
        assert!(should_mirror(&seed()));
        let skipped =
            endpoints(serde_json::json!({"metadata": {"name": "kubernetes", "labels": {LABEL_SKIP_MIRROR: "true"}}}));
        assert!(!should_mirror(&skipped));
        let leader =
            endpoints(serde_json::json!({"metadata": {"name": "x", "annotations": {ANNOTATION_LEADER: "{}"}}}));
        assert!(!should_mirror(&leader));
    }
}
