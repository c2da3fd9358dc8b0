//! Which pods each Service selects, kept current as Pods and Services change.
//!
//! With a thousand Services in a namespace, matching every pod event against every
//! selector would dominate the controller's time. Instead both sides are indexed by
//! label: pods by each of their `key=value` labels, Services by the first `key=value`
//! pair of their selector. A pod event then only looks at the Services whose first
//! selector pair the pod carries, and a Service sync only at the pods carrying it; the
//! full selector is checked on those few candidates.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::{ObjectKey, PodView, ServiceView};
use super::watch::Change;

/// namespace → label key → label value → object names.
#[derive(Default)]
struct LabelIndex(HashMap<String, HashMap<String, HashMap<String, BTreeSet<String>>>>);

impl LabelIndex {
    fn insert(&mut self, namespace: &str, key: &str, value: &str, name: &str) {
        self.0
            .entry(namespace.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_default()
            .insert(name.to_string());
    }

    fn remove(&mut self, namespace: &str, key: &str, value: &str, name: &str) {
        let Some(keys) = self.0.get_mut(namespace) else { return };
        let Some(values) = keys.get_mut(key) else { return };
        let Some(names) = values.get_mut(value) else { return };
        names.remove(name);
        if names.is_empty() {
            values.remove(value);
            if values.is_empty() {
                keys.remove(key);
                if keys.is_empty() {
                    self.0.remove(namespace);
                }
            }
        }
    }

    fn get(&self, namespace: &str, key: &str, value: &str) -> impl Iterator<Item = &String> {
        self.0.get(namespace).and_then(|k| k.get(key)).and_then(|v| v.get(value)).into_iter().flatten()
    }
}

/// Services, Pods, and who selects whom.
#[derive(Default)]
pub struct Membership {
    services: HashMap<ObjectKey, ServiceView>,
    pods: HashMap<ObjectKey, PodView>,
    pods_by_label: LabelIndex,
    services_by_label: LabelIndex,
}

/// The pair a Service is filed under: the first of its selector.
fn index_pair(service: &ServiceView) -> Option<(&String, &String)> {
    service.selector.as_ref().and_then(|s| s.iter().next())
}

impl Membership {
    /// Applies one Service watch change; returns the Services to sync. Shared by the
    /// EndpointSlice and Endpoints controllers, which follow Services the same way.
    pub fn apply_service_change(&mut self, change: Change<ServiceView>) -> BTreeSet<ObjectKey> {
        match change {
            Change::Applied(view) => self.upsert_service(view),
            Change::Deleted(view) => self.remove_service(&view.key()),
            Change::Relisted(views) => self.replace_services(views),
        }
    }

    /// Applies one Pod watch change; returns the Services whose endpoints may have changed.
    pub fn apply_pod_change(&mut self, change: Change<PodView>) -> BTreeSet<ObjectKey> {
        match change {
            Change::Applied(view) => self.upsert_pod(view),
            Change::Deleted(view) => self.remove_pod(&view.key()),
            Change::Relisted(views) => self.replace_pods(views),
        }
    }

    pub fn service(&self, key: &ObjectKey) -> Option<&ServiceView> {
        self.services.get(key)
    }

    #[cfg(test)]
    pub fn pod(&self, key: &ObjectKey) -> Option<&PodView> {
        self.pods.get(key)
    }

    /// The pods `service` selects (none without a selector).
    pub fn pods_of(&self, service: &ServiceView) -> Vec<&PodView> {
        let Some((key, value)) = index_pair(service) else { return Vec::new() };
        self.pods_by_label
            .get(&service.namespace, key, value)
            .filter_map(|name| self.pods.get(&ObjectKey::new(&service.namespace, name)))
            .filter(|pod| service.selects(pod))
            .collect()
    }

    /// The Services in `namespace` whose selector matches `labels`.
    pub fn services_selecting(&self, namespace: &str, labels: &BTreeMap<String, String>) -> BTreeSet<ObjectKey> {
        let mut found = BTreeSet::new();
        for (key, value) in labels {
            for name in self.services_by_label.get(namespace, key, value) {
                let service_key = ObjectKey::new(namespace, name);
                let selects =
                    self.services.get(&service_key).and_then(|s| s.matcher.as_ref()).is_some_and(|m| m.matches(labels));
                if selects {
                    found.insert(service_key);
                }
            }
        }
        found
    }

    /// The Services that select any pod on one of `nodes`.
    pub fn services_with_pods_on(&self, nodes: &BTreeSet<String>) -> BTreeSet<ObjectKey> {
        self.pods
            .values()
            .filter(|p| nodes.contains(&p.node_name))
            .flat_map(|p| self.services_selecting(&p.namespace, &p.labels))
            .collect()
    }

    /// Adds or replaces a pod; returns the Services whose endpoints may have changed.
    pub fn upsert_pod(&mut self, pod: PodView) -> BTreeSet<ObjectKey> {
        let key = pod.key();
        let old = self.remove_pod_entry(&key);
        let affected = match &old {
            None => self.services_selecting(&pod.namespace, &pod.labels),
            Some(old) => self.services_for_pod_change(old, &pod),
        };
        for (k, v) in &pod.labels {
            self.pods_by_label.insert(&pod.namespace, k, v, &pod.name);
        }
        self.pods.insert(key, pod);
        affected
    }

    /// Removes a pod; returns the Services that selected it.
    pub fn remove_pod(&mut self, key: &ObjectKey) -> BTreeSet<ObjectKey> {
        match self.remove_pod_entry(key) {
            Some(old) => self.services_selecting(&old.namespace, &old.labels),
            None => BTreeSet::new(),
        }
    }

    /// Replaces every pod (after a relist); returns the Services affected by differences.
    pub fn replace_pods(&mut self, pods: Vec<PodView>) -> BTreeSet<ObjectKey> {
        let mut affected = BTreeSet::new();
        let fresh: BTreeSet<ObjectKey> = pods.iter().map(PodView::key).collect();
        let gone: Vec<ObjectKey> = self.pods.keys().filter(|k| !fresh.contains(*k)).cloned().collect();
        for key in gone {
            affected.extend(self.remove_pod(&key));
        }
        for pod in pods {
            affected.extend(self.upsert_pod(pod));
        }
        affected
    }

    /// Which Services to sync when a pod changed from `old` to `new`, as upstream decides:
    /// if only labels changed, the Services that gained or lost the pod; if the pod
    /// itself changed too, every Service that selected it before or selects it now.
    fn services_for_pod_change(&self, old: &PodView, new: &PodView) -> BTreeSet<ObjectKey> {
        let pod_changed = old.endpoint_fields_differ(new);
        let labels_changed = old.labels != new.labels;
        match (pod_changed, labels_changed) {
            (false, false) => BTreeSet::new(),
            (true, false) => self.services_selecting(&new.namespace, &new.labels),
            (pod_changed, true) => {
                let before = self.services_selecting(&old.namespace, &old.labels);
                let after = self.services_selecting(&new.namespace, &new.labels);
                if pod_changed {
                    before.union(&after).cloned().collect()
                } else {
                    before.symmetric_difference(&after).cloned().collect()
                }
            }
        }
    }

    fn remove_pod_entry(&mut self, key: &ObjectKey) -> Option<PodView> {
        let old = self.pods.remove(key)?;
        for (k, v) in &old.labels {
            self.pods_by_label.remove(&old.namespace, k, v, &old.name);
        }
        Some(old)
    }

    /// Adds or replaces a Service; returns it (a Service change always means a sync).
    pub fn upsert_service(&mut self, service: ServiceView) -> BTreeSet<ObjectKey> {
        let key = service.key();
        self.remove_service_entry(&key);
        if let Some((k, v)) = index_pair(&service) {
            self.services_by_label.insert(&service.namespace, k, v, &service.name);
        }
        self.services.insert(key.clone(), service);
        BTreeSet::from([key])
    }

    pub fn remove_service(&mut self, key: &ObjectKey) -> BTreeSet<ObjectKey> {
        self.remove_service_entry(key);
        BTreeSet::from([key.clone()])
    }

    /// Replaces every Service (after a relist); returns all Services, old and new.
    pub fn replace_services(&mut self, services: Vec<ServiceView>) -> BTreeSet<ObjectKey> {
        let mut affected: BTreeSet<ObjectKey> = self.services.keys().cloned().collect();
        self.services.clear();
        self.services_by_label = LabelIndex::default();
        for service in services {
            affected.extend(self.upsert_service(service));
        }
        affected
    }

    fn remove_service_entry(&mut self, key: &ObjectKey) {
        if let Some(old) = self.services.remove(key) {
            if let Some((k, v)) = index_pair(&old) {
                self.services_by_label.remove(&old.namespace, k, v, &old.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::testing::{pod, service};

    fn web() -> ObjectKey {
        ObjectKey::new("default", "web")
    }

    fn with_labels(mut p: PodView, labels: &[(&str, &str)]) -> PodView {
        p.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        p
    }

    #[test]
    fn finds_pods_and_services_through_the_index() {
        let mut m = Membership::default();
        m.upsert_service(service(serde_json::json!({"selector": {"app": "web", "tier": "front"}})));
        let a = with_labels(pod("a", "10.0.0.1", true), &[("app", "web"), ("tier", "front")]);
        let b = with_labels(pod("b", "10.0.0.2", true), &[("app", "web")]);
        assert_eq!(m.upsert_pod(a), BTreeSet::from([web()]));
        assert!(m.upsert_pod(b).is_empty());
        let svc = m.service(&web()).cloned().expect("service");
        let names: Vec<&str> = m.pods_of(&svc).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn unrelated_label_changes_affect_no_service() {
        let mut m = Membership::default();
        m.upsert_service(service(serde_json::json!({})));
        let a = pod("a", "10.0.0.1", true);
        m.upsert_pod(a.clone());
        let mut relabelled = a.clone();
        relabelled.labels.insert("extra".into(), "1".into());
        assert!(m.upsert_pod(relabelled.clone()).is_empty());
        // Leaving the selector is a change for the Service.
        let left = with_labels(relabelled.clone(), &[("app", "other")]);
        assert_eq!(m.upsert_pod(left), BTreeSet::from([web()]));
        // A readiness flip is, too.
        let mut flipped = a.clone();
        flipped.ready = false;
        assert_eq!(m.upsert_pod(flipped), BTreeSet::from([web()]));
        // A metadata-only change is not.
        let mut same = m.pod(&ObjectKey::new("default", "a")).cloned().expect("pod");
        same.ready_transition = Some(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        assert!(m.upsert_pod(same).is_empty());
    }

    #[test]
    fn removals_and_relists() {
        let mut m = Membership::default();
        m.upsert_service(service(serde_json::json!({})));
        m.upsert_pod(pod("a", "10.0.0.1", true));
        m.upsert_pod(pod("b", "10.0.0.2", true));
        assert_eq!(m.remove_pod(&ObjectKey::new("default", "a")), BTreeSet::from([web()]));
        assert_eq!(m.replace_pods(vec![pod("c", "10.0.0.3", true)]), BTreeSet::from([web()]));
        let svc = m.service(&web()).cloned().expect("service");
        assert_eq!(m.pods_of(&svc).len(), 1);
        assert_eq!(m.services_with_pods_on(&BTreeSet::from(["n1".to_string()])), BTreeSet::from([web()]));
        m.remove_service(&web());
        assert!(m.services_selecting("default", &pod("x", "1.1.1.1", true).labels).is_empty());
    }

    #[test]
    fn selector_changes_are_reindexed() {
        let mut m = Membership::default();
        m.upsert_service(service(serde_json::json!({})));
        m.upsert_pod(with_labels(pod("a", "10.0.0.1", true), &[("app", "api")]));
        m.upsert_service(service(serde_json::json!({"selector": {"app": "api"}})));
        let svc = m.service(&web()).cloned().expect("service");
        assert_eq!(m.pods_of(&svc).len(), 1);
        m.upsert_service(service(serde_json::json!({"selector": null})));
        let svc = m.service(&web()).cloned().expect("service");
        assert!(m.pods_of(&svc).is_empty());
    }
}
