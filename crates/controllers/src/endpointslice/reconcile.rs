//! The EndpointSlice reconciler: given a Service's desired endpoints and the slices that
//! exist for it, decide which slices to create, update and delete — with as few writes as
//! possible. It follows upstream's algorithm step by step:
//!
//! 1. Walk the existing slices: drop endpoints that are no longer desired, refresh those
//!    whose conditions, node or zone changed. A slice left empty is deleted; a slice whose
//!    content or labels changed is updated; the others stay untouched.
//! 2. Put the remaining new endpoints into slices that are being updated anyway, fullest
//!    first (filling them costs no extra write).
//! 3. If endpoints remain, fit them into the one untouched slice that ends up closest to
//!    full, or else create new slices. Slices are never rebalanced.
//! 4. A Service with no endpoints keeps exactly one empty "placeholder" slice.
//! 5. Creates that coincide with deletes become updates of the slices to delete.
//!
//! Everything here is pure: [`plan_slices`] returns a [`SlicePlan`], the controller
//! performs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::desired::DesiredGroup;
use super::endpoint::{equal_beyond_key, AddressType, EndpointSet, PortKey};
use super::model::ServiceView;
use super::{ANNOTATION_TRIGGER_TIME, CONTROLLER_NAME, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default)]
pub struct SlicePlan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl SlicePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    /// Sets the `endpoints.kubernetes.io/last-change-trigger-time` annotation on every
    /// slice about to be written, or removes it when there is no trigger time.
    pub fn set_trigger_time(&mut self, value: Option<&str>) {
        for slice in self.create.iter_mut().chain(self.update.iter_mut()) {
            let mut annotations = slice.metadata.annotations.take().unwrap_or_default();
            match value {
                Some(v) => annotations.insert(ANNOTATION_TRIGGER_TIME.to_string(), v.to_string()),
                None => annotations.remove(ANNOTATION_TRIGGER_TIME),
            };
            slice.metadata.annotations = Some(annotations).filter(|a| !a.is_empty());
        }
    }

    fn extend(&mut self, other: SlicePlan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }
}

/// Plans the writes for `service`, whose desired endpoints are `desired` (by address
/// type, then by port set) and whose current slices (managed by this controller) are
/// `existing`.
pub fn plan_slices(
    service: &ServiceView,
    desired: BTreeMap<AddressType, BTreeMap<PortKey, DesiredGroup>>,
    existing: &[Arc<EndpointSlice>],
    max_per_slice: usize,
) -> SlicePlan {
    let max_per_slice = max_per_slice.max(1);
    let mut by_type: BTreeMap<AddressType, Vec<&EndpointSlice>> = BTreeMap::new();
    let mut unsupported = Vec::new();
    for slice in existing {
        match AddressType::parse(&slice.address_type).filter(|t| desired.contains_key(t)) {
            Some(t) => by_type.entry(t).or_default().push(slice.as_ref()),
            None => unsupported.push(slice.as_ref().clone()),
        }
    }
    let mut plan = SlicePlan::default();
    for (address_type, groups) in desired {
        let existing = by_type.remove(&address_type).unwrap_or_default();
        plan.extend(plan_address_type(service, address_type, groups, &existing, max_per_slice));
    }
    // Slices of an address type the Service no longer has go last, and are not reused.
    plan.delete.extend(unsupported);
    plan
}

fn plan_address_type(
    service: &ServiceView,
    address_type: AddressType,
    groups: BTreeMap<PortKey, DesiredGroup>,
    existing: &[&EndpointSlice],
    max_per_slice: usize,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut existing_by_ports: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            existing_by_ports.entry(PortKey::of(slice.ports.as_deref().unwrap_or_default())).or_default().push(slice);
        } else {
            // Left over from an older Service of the same name.
            plan.delete.push((*slice).clone());
        }
    }
    let desired_keys: BTreeSet<PortKey> = groups.keys().cloned().collect();
    for (key, group) in groups {
        let slices = existing_by_ports.get(&key).cloned().unwrap_or_default();
        plan.extend(plan_port_group(service, address_type, &slices, group, max_per_slice));
    }
    for (key, slices) in existing_by_ports {
        if !desired_keys.contains(&key) {
            plan.delete.extend(slices.into_iter().cloned());
        }
    }
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(service, address_type, Vec::new());
        if plan.delete.len() == 1 && same_placeholder(&plan.delete[0], &placeholder) {
            // The placeholder that exists is the one we want: keep it.
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }
    recycle_deleted_slices(service, &mut plan);
    plan
}

/// Steps 1–3 for the slices of one port set.
fn plan_port_group(
    service: &ServiceView,
    address_type: AddressType,
    existing: &[&EndpointSlice],
    group: DesiredGroup,
    max_per_slice: usize,
) -> SlicePlan {
    let DesiredGroup { ports, endpoints: mut desired } = group;
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged = BTreeSet::new();
    let mut to_update = BTreeSet::new();
    let mut to_delete = BTreeSet::new();

    // 1. Keep what is still desired, refreshing endpoints whose attributes changed.
    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut endpoint_changed = false;
        for endpoint in &slice.endpoints {
            if let Some(wanted) = desired.take(endpoint) {
                endpoint_changed |= !equal_beyond_key(&wanted, endpoint);
                kept.push(wanted);
            }
        }
        let (labels, labels_changed) = slice_labels(slice, service);
        let mut copy = (*slice).clone();
        if endpoint_changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
            } else {
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels);
                to_update.insert(name.clone());
            }
        } else if labels_changed {
            copy.metadata.labels = Some(labels);
            to_update.insert(name.clone());
        } else {
            unchanged.insert(name.clone());
        }
        slices.insert(name, copy);
    }

    // 2. Fill the slices that are written anyway, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(slices.get(*n).map_or(0, |s| s.endpoints.len())));
        for name in names {
            if let Some(slice) = slices.get_mut(name) {
                fill(slice, &mut desired, max_per_slice);
            }
        }
    }

    // 3. Fit the rest into one untouched slice if possible, else into new slices.
    let mut plan = SlicePlan::default();
    while !desired.is_empty() {
        let target = if desired.len() < max_per_slice && !unchanged.is_empty() {
            slice_to_fill(unchanged.iter().filter_map(|n| slices.get(n)), desired.len(), max_per_slice)
        } else {
            None
        };
        match target.and_then(|name| slices.get_mut(&name).map(|s| (name, s))) {
            Some((name, slice)) => {
                fill(slice, &mut desired, max_per_slice);
                unchanged.remove(&name);
                to_update.insert(name);
            }
            None => {
                let mut slice = new_slice(service, address_type, ports.clone());
                fill(&mut slice, &mut desired, max_per_slice);
                plan.create.push(slice);
            }
        }
    }
    plan.update = to_update.iter().filter_map(|n| slices.remove(n)).collect();
    plan.delete = to_delete.iter().filter_map(|n| slices.remove(n)).collect();
    plan
}

fn fill(slice: &mut EndpointSlice, desired: &mut EndpointSet, max_per_slice: usize) {
    while slice.endpoints.len() < max_per_slice {
        match desired.pop() {
            Some(endpoint) => slice.endpoints.push(endpoint),
            None => break,
        }
    }
}

/// The slice that ends up closest to full when `count` endpoints are added, if any has
/// room for all of them.
fn slice_to_fill<'a>(
    candidates: impl Iterator<Item = &'a EndpointSlice>,
    count: usize,
    max_per_slice: usize,
) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for slice in candidates {
        let Some(room) = max_per_slice.checked_sub(count + slice.endpoints.len()) else { continue };
        if best.as_ref().is_none_or(|(best_room, _)| room < *best_room) {
            best = Some((room, slice.metadata.name.clone().unwrap_or_default()));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(_, name)| name)
}

/// Step 5: a slice about to be deleted becomes the home of a slice about to be created
/// (same address type, owned by this Service), so a delete + create pair is one update.
fn recycle_deleted_slices(service: &ServiceView, plan: &mut SlicePlan) {
    let mut i = 0;
    while i < plan.delete.len() {
        let Some(last) = plan.create.last() else { break };
        let reusable = plan.delete[i].address_type == last.address_type && owned_by(&plan.delete[i], service);
        if reusable {
            if let Some(mut slice) = plan.create.pop() {
                slice.metadata.name = plan.delete[i].metadata.name.clone();
                plan.update.push(slice);
            }
            plan.delete.remove(i);
        } else {
            i += 1;
        }
    }
}

/// A new, empty slice for `service` (its name is generated by the API server from
/// `<service>-`).
pub fn new_slice(service: &ServiceView, address_type: AddressType, ports: Vec<EndpointPort>) -> EndpointSlice {
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", service.name)),
            namespace: Some(service.namespace.clone()),
            owner_references: Some(vec![owner_reference(service)]),
            ..Default::default()
        },
        address_type: address_type.as_str().to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    };
    slice.metadata.labels = Some(slice_labels(&slice, service).0);
    slice
}

/// The controller reference from a slice to its Service.
pub fn owner_reference(service: &ServiceView) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.name.clone(),
        uid: service.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, service: &ServiceView) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == service.uid && o.kind == "Service" && o.api_version == "v1")
}

fn is_reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

/// The labels a slice of `service` should carry — the Service's own labels plus the
/// reserved ones (service name, managed-by, headless) — and whether the slice's
/// non-reserved labels differ from the Service's.
pub fn slice_labels(slice: &EndpointSlice, service: &ServiceView) -> (BTreeMap<String, String>, bool) {
    let current: BTreeMap<&String, &String> =
        slice.metadata.labels.iter().flatten().filter(|(k, _)| !is_reserved_label(k)).collect();
    let mut labels: BTreeMap<String, String> =
        service.labels.iter().filter(|(k, _)| !is_reserved_label(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let changed = current.len() != labels.len() || current.iter().any(|(k, v)| labels.get(*k) != Some(*v));
    if !service.has_cluster_ip() {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.to_string(), service.name.clone());
    labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
    (labels, changed)
}

/// Whether an existing empty slice is exactly the placeholder that would be created.
fn same_placeholder(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    existing.metadata.namespace == placeholder.metadata.namespace
        && existing.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && existing.metadata.owner_references.clone().unwrap_or_default()
            == placeholder.metadata.owner_references.clone().unwrap_or_default()
        && existing.address_type == placeholder.address_type
        && existing.endpoints.is_empty()
        && existing.ports.as_deref().unwrap_or_default().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::desired::{desired_endpoints, NodeZones};
    use crate::endpointslice::model::PodView;
    use crate::endpointslice::testing::{pod, service};

    fn nodes() -> NodeZones {
        [("n1".to_string(), None)].into()
    }

    fn plan_for(svc: &ServiceView, pods: &[PodView], existing: &[Arc<EndpointSlice>], max: usize) -> SlicePlan {
        let refs: Vec<&PodView> = pods.iter().collect();
        plan_slices(svc, desired_endpoints(svc, &refs, &nodes()).groups, existing, max)
    }

    /// Performs a plan the way the API server would, naming created slices.
    fn apply(existing: &[Arc<EndpointSlice>], plan: SlicePlan) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, Arc<EndpointSlice>> =
            existing.iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), s.clone())).collect();
        for (i, mut slice) in plan.create.into_iter().enumerate() {
            let name = format!("{}{}{}", slice.metadata.generate_name.clone().unwrap_or_default(), by_name.len(), i);
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

    fn pods(n: usize) -> Vec<PodView> {
        (0..n).map(|i| pod(&format!("p{i}"), &format!("10.244.{}.{}", i / 250, i % 250 + 1), true)).collect()
    }

    fn ready(slices: &[Arc<EndpointSlice>], pod: &str) -> Option<bool> {
        slices.iter().flat_map(|s| s.endpoints.iter()).find_map(|e| {
            let is_pod = e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(pod);
            is_pod.then(|| e.conditions.as_ref().and_then(|c| c.ready)).flatten()
        })
    }

    #[test]
    fn creates_one_slice_with_labels_and_owner() {
        let svc = service(serde_json::json!({}));
        let plan = plan_for(&svc, &pods(3), &[], MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 0));
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints.len(), 3);
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));
        assert_eq!(labels.get("team").map(String::as_str), Some("blue"), "Service labels are copied");
        assert!(!labels.contains_key(LABEL_HEADLESS));
        let owner = &slice.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", "svc-uid"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        let port = &slice.ports.clone().unwrap_or_default()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(8080)));
    }

    #[test]
    fn nothing_to_do_when_slices_match() {
        let svc = service(serde_json::json!({}));
        let slices = apply(&[], plan_for(&svc, &pods(5), &[], MAX_ENDPOINTS_PER_SLICE));
        let plan = plan_for(&svc, &pods(5), &slices, MAX_ENDPOINTS_PER_SLICE);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn readiness_flip_updates_the_slice_in_place() {
        let svc = service(serde_json::json!({}));
        let mut current = pods(5);
        let slices = apply(&[], plan_for(&svc, &current, &[], MAX_ENDPOINTS_PER_SLICE));
        current[2].ready = false;
        let plan = plan_for(&svc, &current, &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].metadata.name, slices[0].metadata.name);
        let slices = apply(&slices, plan);
        assert_eq!(ready(&slices, "p2"), Some(false));
        assert_eq!(ready(&slices, "p1"), Some(true));
    }

    #[test]
    fn splits_at_the_maximum_and_fills_without_rebalancing() {
        let svc = service(serde_json::json!({}));
        let all = pods(250);
        let slices = apply(&[], plan_for(&svc, &all, &[], MAX_ENDPOINTS_PER_SLICE));
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100, 100]);
        // Removing pods of one slice touches that slice only: nothing is rebalanced.
        let full = slices.iter().find(|s| s.endpoints.len() == 100).expect("a full slice");
        let removed: BTreeSet<String> =
            full.endpoints.iter().take(10).filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone())).collect();
        let fewer: Vec<PodView> = all.iter().filter(|p| !removed.contains(&p.name)).cloned().collect();
        let plan = plan_for(&svc, &fewer, &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].metadata.name, full.metadata.name);
        assert_eq!(plan.update[0].endpoints.len(), 90);
        // A few new pods go into the slice that is closest to full with room for them.
        let mut more = all.clone();
        more.extend((0..5).map(|i| pod(&format!("new{i}"), &format!("10.245.0.{}", i + 1), true)));
        let plan = plan_for(&svc, &more, &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].endpoints.len(), 55);
    }

    #[test]
    fn empty_service_keeps_one_placeholder() {
        let svc = service(serde_json::json!({}));
        let plan = plan_for(&svc, &[], &[], MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty());
        assert_eq!(plan.create[0].ports.as_deref().map(<[_]>::len), Some(0));
        let slices = apply(&[], plan);
        assert!(plan_for(&svc, &[], &slices, MAX_ENDPOINTS_PER_SLICE).is_empty());
        // Gaining a pod reuses the placeholder's name instead of create + delete.
        let plan = plan_for(&svc, &pods(1), &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].metadata.name, slices[0].metadata.name);
        let slices = apply(&slices, plan);
        // Losing it again turns the slice back into the placeholder, still in place.
        let plan = plan_for(&svc, &[], &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert!(plan.update[0].endpoints.is_empty());
    }

    #[test]
    fn label_changes_on_the_service_update_slices() {
        let svc = service(serde_json::json!({}));
        let slices = apply(&[], plan_for(&svc, &pods(2), &[], MAX_ENDPOINTS_PER_SLICE));
        let mut relabelled = svc.clone();
        relabelled.labels.insert("tier".into(), "front".into());
        let plan = plan_for(&relabelled, &pods(2), &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(plan.update.len(), 1);
        let labels = plan.update[0].metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    }

    #[test]
    fn port_changes_move_endpoints_between_slices_without_storms() {
        let svc = service(serde_json::json!({}));
        let slices = apply(&[], plan_for(&svc, &pods(3), &[], MAX_ENDPOINTS_PER_SLICE));
        let moved = service(serde_json::json!({"ports": [{"name": "http", "port": 80, "targetPort": 9000}]}));
        let plan = plan_for(&moved, &pods(3), &slices, MAX_ENDPOINTS_PER_SLICE);
        // The old slice is reused for the new port set: one update, no create/delete pair.
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
        assert_eq!(plan.update[0].ports.clone().unwrap_or_default()[0].port, Some(9000));
    }

    #[test]
    fn slices_of_an_older_service_with_the_same_name_are_replaced() {
        let svc = service(serde_json::json!({}));
        let slices = apply(&[], plan_for(&svc, &pods(2), &[], MAX_ENDPOINTS_PER_SLICE));
        let mut recreated = svc.clone();
        recreated.uid = "new-uid".into();
        let plan = plan_for(&recreated, &pods(2), &slices, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (1, 0, 1));
    }

    #[test]
    fn headless_services_get_the_headless_label() {
        let svc = service(serde_json::json!({"clusterIP": "None"}));
        let plan = plan_for(&svc, &pods(1), &[], MAX_ENDPOINTS_PER_SLICE);
        let labels = plan.create[0].metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    }

    #[test]
    fn trigger_time_is_set_and_cleared() {
        let svc = service(serde_json::json!({}));
        let mut plan = plan_for(&svc, &pods(1), &[], MAX_ENDPOINTS_PER_SLICE);
        plan.set_trigger_time(Some("2024-01-02T03:04:05Z"));
        let annotations = plan.create[0].metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANNOTATION_TRIGGER_TIME).map(String::as_str), Some("2024-01-02T03:04:05Z"));
        plan.set_trigger_time(None);
        assert_eq!(plan.create[0].metadata.annotations, None);
    }
}
