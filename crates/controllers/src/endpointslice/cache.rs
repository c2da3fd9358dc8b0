//! Write-through caches of the objects the controllers write (EndpointSlices, Endpoints).
//!
//! A controller decides what to write by comparing what should be with what its watch
//! cache says is. Right after a write, the watch may not have delivered it yet; a sync
//! in that window would compare against the old object and write again (or create a
//! duplicate slice). So every successful write goes into the cache at once, and watch
//! events older than it are ignored until the watch catches up. That is what upstream's
//! "endpoint slice tracker" guards against too; here it also saves the wait.
//!
//! Watch events also tell whether someone else changed an object: the controller then
//! syncs its owner again, to repair the change.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Resource;

use super::model::ObjectKey;
use super::reconcile::SlicePlan;
use super::LABEL_SERVICE_NAME;

/// What a watch event meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing new (a repeat, or the echo of this controller's own write).
    Known,
    /// Someone else changed or deleted the object.
    External,
}

enum Pending {
    /// We wrote this resourceVersion; older events are stale.
    Written(u64),
    /// We deleted the object; events other than its deletion are stale.
    Deleted,
}

/// Objects by namespace and name, kept current by a watch and by this controller's writes.
pub struct ObjectCache<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    pending: HashMap<ObjectKey, Pending>,
}

impl<K> Default for ObjectCache<K> {
    fn default() -> Self {
        ObjectCache { objects: HashMap::new(), pending: HashMap::new() }
    }
}

/// The resourceVersion as a number. It is opaque by contract, but every server (etcd,
/// skiff's stores) uses a revision counter; when it is not a number, ordering is simply
/// not checked.
fn revision<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref().and_then(|v| v.parse().ok())
}

impl<K: Resource> ObjectCache<K> {
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<K>> {
        self.objects.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<K>> {
        self.objects.values()
    }

    /// A watch reported `obj` as added or modified.
    pub fn observe_applied(&mut self, obj: K) -> Seen {
        let key = ObjectKey::of(&obj);
        let rv = revision(&obj);
        match self.pending.get(&key) {
            Some(Pending::Deleted) => return Seen::Known,
            Some(Pending::Written(written)) => match rv {
                Some(rv) if rv < *written => return Seen::Known,
                Some(rv) if rv == *written => {
                    self.pending.remove(&key);
                    self.objects.insert(key, Arc::new(obj));
                    return Seen::Known;
                }
                _ => {
                    self.pending.remove(&key);
                }
            },
            None => {
                let current = self.objects.get(&key).and_then(|o| revision(o.as_ref()));
                if rv.is_some() && current == rv {
                    return Seen::Known;
                }
            }
        }
        self.objects.insert(key, Arc::new(obj));
        Seen::External
    }

    /// A watch reported the deletion of `key`.
    pub fn observe_deleted(&mut self, key: &ObjectKey) -> Seen {
        let ours = matches!(self.pending.remove(key), Some(Pending::Deleted));
        let existed = self.objects.remove(key).is_some();
        if ours || !existed {
            Seen::Known
        } else {
            Seen::External
        }
    }

    /// A watch (re)listed everything. Returns the keys whose object appeared, changed or
    /// disappeared compared with the cache.
    pub fn observe_relist(&mut self, objects: Vec<K>) -> Vec<ObjectKey> {
        let mut fresh: HashMap<ObjectKey, Arc<K>> = HashMap::with_capacity(objects.len());
        for obj in objects {
            fresh.insert(ObjectKey::of(&obj), Arc::new(obj));
        }
        let mut changed: Vec<ObjectKey> = fresh
            .iter()
            .filter(|(k, o)| {
                let old = self.objects.get(*k).map(|old| old.meta().resource_version.clone());
                old != Some(o.meta().resource_version.clone())
            })
            .map(|(k, _)| k.clone())
            .collect();
        changed.extend(self.objects.keys().filter(|k| !fresh.contains_key(*k)).cloned());
        self.objects = fresh;
        self.pending.clear();
        changed
    }

    /// This controller created or updated `obj` (the API server's answer).
    pub fn wrote(&mut self, obj: K) {
        let key = ObjectKey::of(&obj);
        let rv = revision(&obj);
        let current = self.objects.get(&key).and_then(|o| revision(o.as_ref()));
        if let (Some(rv), Some(current)) = (rv, current) {
            if current >= rv {
                // The watch was faster than the response: the cache is already current.
                return;
            }
        }
        if let Some(rv) = rv {
            self.pending.insert(key.clone(), Pending::Written(rv));
        }
        self.objects.insert(key, Arc::new(obj));
    }

    /// This controller deleted `key` (or found it already gone).
    pub fn deleted(&mut self, key: &ObjectKey) {
        // If the watch already delivered the deletion, there is nothing to wait for.
        if self.objects.remove(key).is_some() {
            self.pending.insert(key.clone(), Pending::Deleted);
        }
    }
}

/// The service-name label of a slice: the Service (or Endpoints) it belongs to.
pub fn slice_owner(slice: &EndpointSlice) -> Option<ObjectKey> {
    let name = slice.metadata.labels.as_ref()?.get(LABEL_SERVICE_NAME)?;
    Some(ObjectKey::new(slice.metadata.namespace.clone().unwrap_or_default(), name.clone()))
}

/// The EndpointSlices one controller manages, grouped by the Service they belong to.
#[derive(Default)]
pub struct SliceIndex {
    cache: ObjectCache<EndpointSlice>,
    by_owner: HashMap<ObjectKey, BTreeSet<ObjectKey>>,
    owner_of: HashMap<ObjectKey, ObjectKey>,
    /// Writes in progress, by owner. The watch often delivers a write before the API's
    /// response does; an event matching a write in progress is its echo, not someone
    /// else's change, and needs no repair.
    writing: HashMap<ObjectKey, InFlight>,
}

#[derive(Default)]
struct InFlight {
    stored: Vec<EndpointSlice>,
    deleted: BTreeSet<ObjectKey>,
}

/// Whether `event` is what `sent` will look like once stored (the API server adds only
/// metadata: name, uid, resourceVersion, timestamps).
fn is_stored_form(sent: &EndpointSlice, event: &EndpointSlice) -> bool {
    let same_object = match &sent.metadata.name {
        Some(name) => event.metadata.name.as_ref() == Some(name),
        None => event.metadata.generate_name == sent.metadata.generate_name,
    };
    same_object
        && sent.address_type == event.address_type
        && sent.endpoints == event.endpoints
        && sent.ports.as_deref().unwrap_or_default() == event.ports.as_deref().unwrap_or_default()
        && sent.metadata.labels.clone().unwrap_or_default() == event.metadata.labels.clone().unwrap_or_default()
}

impl SliceIndex {
    /// The slices of `owner` that are not being deleted.
    pub fn for_owner(&self, owner: &ObjectKey) -> Vec<Arc<EndpointSlice>> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|k| self.cache.get(k))
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect()
    }

    /// Every owner that has slices.
    pub fn owners(&self) -> impl Iterator<Item = &ObjectKey> {
        self.by_owner.keys()
    }

    /// Re-files `key` under its current owner; returns the owners before and after.
    fn reindex(&mut self, key: &ObjectKey) -> Vec<ObjectKey> {
        let before = self.owner_of.remove(key);
        if let Some(owner) = &before {
            if let Some(set) = self.by_owner.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
        let after = self.cache.get(key).and_then(|s| slice_owner(s));
        if let Some(owner) = &after {
            self.by_owner.entry(owner.clone()).or_default().insert(key.clone());
            self.owner_of.insert(key.clone(), owner.clone());
        }
        let mut owners: Vec<ObjectKey> = before.into_iter().chain(after).collect();
        owners.dedup();
        owners
    }

    /// Records the writes `plan` is about to make for `owner` (see [`SliceIndex::writing`]).
    pub fn begin_writes(&mut self, owner: &ObjectKey, plan: &SlicePlan) {
        let in_flight = self.writing.entry(owner.clone()).or_default();
        in_flight.stored.extend(plan.create.iter().chain(&plan.update).cloned());
        in_flight.deleted.extend(plan.delete.iter().map(ObjectKey::of));
    }

    /// The writes for `owner` are over (their results were recorded, or they failed).
    pub fn end_writes(&mut self, owner: &ObjectKey) {
        self.writing.remove(owner);
    }

    fn is_echo(&self, slice: &EndpointSlice) -> bool {
        let Some(in_flight) = slice_owner(slice).and_then(|o| self.writing.get(&o)) else { return false };
        in_flight.stored.iter().any(|sent| is_stored_form(sent, slice))
    }

    /// A watch reported `slice` added or modified. Returns the owners to sync again when
    /// someone else made the change.
    pub fn observe_applied(&mut self, slice: EndpointSlice) -> Vec<ObjectKey> {
        let key = ObjectKey::of(&slice);
        let echo = self.is_echo(&slice);
        let seen = self.cache.observe_applied(slice);
        let owners = self.reindex(&key);
        if seen == Seen::External && !echo {
            owners
        } else {
            Vec::new()
        }
    }

    pub fn observe_deleted(&mut self, slice: &EndpointSlice) -> Vec<ObjectKey> {
        let key = ObjectKey::of(slice);
        let echo = slice_owner(slice).and_then(|o| self.writing.get(&o)).is_some_and(|w| w.deleted.contains(&key));
        let seen = self.cache.observe_deleted(&key);
        let owners = self.reindex(&key);
        if seen == Seen::External && !echo {
            let owners: BTreeSet<ObjectKey> = owners.into_iter().chain(slice_owner(slice)).collect();
            owners.into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// A watch (re)listed every slice; returns the owners whose slices changed.
    pub fn observe_relist(&mut self, slices: Vec<EndpointSlice>) -> Vec<ObjectKey> {
        let changed = self.cache.observe_relist(slices);
        let mut owners = BTreeSet::new();
        for key in changed {
            owners.extend(self.reindex(&key));
        }
        owners.into_iter().collect()
    }

    pub fn wrote(&mut self, slice: EndpointSlice) {
        let key = ObjectKey::of(&slice);
        self.cache.wrote(slice);
        self.reindex(&key);
    }

    pub fn deleted(&mut self, key: &ObjectKey) {
        self.cache.deleted(key);
        self.reindex(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, owner: &str, rv: u64) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string(),
                         "labels": {LABEL_SERVICE_NAME: owner}},
            "addressType": "IPv4", "endpoints": []
        }))
        .expect("slice")
    }

    fn web() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    #[test]
    fn own_writes_are_not_external_and_stale_events_are_ignored() {
        let mut index = SliceIndex::default();
        assert_eq!(index.observe_applied(slice("web-1", "web", 5)), vec![web()]);
        index.wrote(slice("web-1", "web", 9));
        // An event from before our write arrives late: ignored, the cache keeps rv 9.
        assert!(index.observe_applied(slice("web-1", "web", 7)).is_empty());
        assert_eq!(index.for_owner(&web())[0].metadata.resource_version.as_deref(), Some("9"));
        // The echo of our write.
        assert!(index.observe_applied(slice("web-1", "web", 9)).is_empty());
        // Someone else edits the slice afterwards.
        assert_eq!(index.observe_applied(slice("web-1", "web", 12)), vec![web()]);
    }

    #[test]
    fn echoes_of_writes_in_progress_are_recognised() {
        let mut index = SliceIndex::default();
        index.observe_applied(slice("web-1", "web", 5));
        let mut updated = slice("web-1", "web", 5);
        updated.metadata.resource_version = None;
        updated.endpoints.push(Default::default());
        let mut created = slice("x", "web", 0);
        created.metadata.name = None;
        created.metadata.generate_name = Some("web-".into());
        created.metadata.resource_version = None;
        let plan = SlicePlan {
            create: vec![created.clone()],
            update: vec![updated.clone()],
            delete: vec![slice("web-9", "web", 3)],
        };
        index.observe_applied(slice("web-9", "web", 3));
        index.begin_writes(&web(), &plan);
        // The watch delivers our writes before the API answers.
        updated.metadata.resource_version = Some("10".into());
        assert!(index.observe_applied(updated).is_empty());
        created.metadata.name = Some("web-abcde".into());
        created.metadata.resource_version = Some("11".into());
        assert!(index.observe_applied(created.clone()).is_empty());
        assert!(index.observe_deleted(&slice("web-9", "web", 3)).is_empty());
        // Something else entirely is still a change to repair.
        assert_eq!(index.observe_applied(slice("web-7", "web", 12)), vec![web()]);
        index.end_writes(&web());
        created.metadata.resource_version = Some("13".into());
        created.endpoints.push(Default::default());
        assert_eq!(index.observe_applied(created), vec![web()]);
    }

    #[test]
    fn deletions_by_us_and_by_others() {
        let mut index = SliceIndex::default();
        index.observe_applied(slice("web-1", "web", 5));
        index.observe_applied(slice("web-2", "web", 6));
        index.deleted(&ObjectKey::new("default", "web-1"));
        assert_eq!(index.for_owner(&web()).len(), 1);
        assert!(index.observe_applied(slice("web-1", "web", 5)).is_empty(), "stale event after our delete");
        assert_eq!(index.for_owner(&web()).len(), 1);
        assert!(index.observe_deleted(&slice("web-1", "web", 5)).is_empty());
        assert_eq!(index.observe_deleted(&slice("web-2", "web", 6)), vec![web()]);
        assert!(index.for_owner(&web()).is_empty());
    }

    #[test]
    fn relabelled_slices_move_between_owners() {
        let mut index = SliceIndex::default();
        index.observe_applied(slice("x", "web", 1));
        let owners = index.observe_applied(slice("x", "api", 2));
        assert_eq!(owners, vec![web(), ObjectKey::new("default", "api")]);
        assert!(index.for_owner(&web()).is_empty());
        assert_eq!(index.for_owner(&ObjectKey::new("default", "api")).len(), 1);
    }

    #[test]
    fn relist_reports_changed_owners() {
        let mut index = SliceIndex::default();
        index.observe_applied(slice("a", "web", 1));
        index.observe_applied(slice("b", "api", 1));
        let owners = index.observe_relist(vec![slice("a", "web", 1), slice("c", "db", 3)]);
        assert_eq!(owners, vec![ObjectKey::new("default", "api"), ObjectKey::new("default", "db")]);
        assert!(index.for_owner(&ObjectKey::new("default", "api")).is_empty());
    }
}
