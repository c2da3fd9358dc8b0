//! The change tracker: Service, EndpointSlice and Node events in, "which Services need
//! reprogramming, and what should they look like" out. No I/O.
//!
//! Events go into the shared [`ServiceView`] (the Service ⋈ EndpointSlice join); each event
//! marks the Services it touched dirty. [`ChangeTracker::take_changes`] recomputes the
//! [`ServiceState`] of the dirty Services only, and reports those whose state really
//! changed, so an EndpointSlice update that changes nothing the data plane sees (a new
//! resourceVersion, a zone) costs no kernel write.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde_json::Value;
use skiff_core::service_view::{ServiceKey, ServiceView, ViewError};

use crate::model::{service_state, NodeContext, ServiceState};

/// A Service with this label belongs to another proxy (kube-proxy ignores it).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// A Service with this label is headless for proxies (kube-proxy ignores it).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// What [`ChangeTracker::take_changes`] returns.
#[derive(Debug, Default)]
pub struct Changes {
    /// Everything must be rewritten (first sync, node change).
    pub full: bool,
    /// Services whose desired state changed (or that went away).
    pub changed: Vec<ServiceKey>,
    /// When the oldest EndpointSlice change in this batch was triggered (for
    /// `network_programming_duration_seconds`), per changed Service.
    pub triggers: Vec<chrono::DateTime<chrono::Utc>>,
    /// When the first event of this batch arrived.
    pub first_event: Option<Instant>,
}

/// Builds and keeps the desired state from watch events.
pub struct ChangeTracker {
    view: ServiceView,
    node: NodeContext,
    desired: HashMap<ServiceKey, ServiceState>,
    dirty: BTreeSet<ServiceKey>,
    needs_full: bool,
    triggers: HashMap<ServiceKey, chrono::DateTime<chrono::Utc>>,
    first_event: Option<Instant>,
}

impl ChangeTracker {
    pub fn new(node: NodeContext) -> ChangeTracker {
        ChangeTracker {
            view: ServiceView::default(),
            node,
            desired: HashMap::new(),
            dirty: BTreeSet::new(),
            needs_full: true,
            triggers: HashMap::new(),
            first_event: None,
        }
    }

    fn touch(&mut self, key: ServiceKey) {
        self.first_event.get_or_insert_with(Instant::now);
        self.dirty.insert(key);
    }

    /// Adds or replaces a Service. A Service labelled for another proxy, or as headless,
    /// is treated as absent.
    pub fn apply_service(&mut self, obj: &Value) -> Result<ServiceKey, ViewError> {
        let labels = obj.pointer("/metadata/labels");
        let ignored = labels.and_then(|l| l.get(SERVICE_PROXY_NAME_LABEL)).is_some()
            || labels.and_then(|l| l.get(HEADLESS_LABEL)).is_some();
        if ignored {
            let key = skiff_core::service_view::Service::from_json(obj)?.key;
            self.view.delete_service(&key);
            self.touch(key.clone());
            return Ok(key);
        }
        let key = self.view.apply_service(obj)?;
        self.touch(key.clone());
        Ok(key)
    }

    pub fn delete_service(&mut self, key: &ServiceKey) {
        self.view.delete_service(key);
        self.touch(key.clone());
    }

    /// Adds or replaces an EndpointSlice; `trigger` is its last-change-trigger-time.
    pub fn apply_endpoint_slice(
        &mut self,
        obj: &Value,
        trigger: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ViewError> {
        for key in self.view.apply_endpoint_slice(obj)? {
            if let Some(at) = trigger {
                let slot = self.triggers.entry(key.clone()).or_insert(at);
                *slot = (*slot).min(at);
            }
            self.touch(key);
        }
        Ok(())
    }

    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) {
        for key in self.view.delete_endpoint_slice(namespace, name) {
            self.touch(key);
        }
    }

    /// Every Service key known, and every slice id (for relist bookkeeping).
    pub fn view(&self) -> &ServiceView {
        &self.view
    }

    /// Requests a full rewrite at the next sync (after an error, or a node change).
    pub fn force_full(&mut self) {
        self.needs_full = true;
        self.first_event.get_or_insert_with(Instant::now);
    }

    /// Whether a sync has anything to do.
    pub fn has_changes(&self) -> bool {
        self.needs_full || !self.dirty.is_empty()
    }

    /// Recomputes dirty Services and returns what changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changed = Vec::new();
        let mut triggers = Vec::new();
        for key in dirty {
            let new = self.view.service(&key).and_then(|entry| service_state(&entry, &self.node));
            let old = self.desired.get(&key);
            if old == new.as_ref() {
                self.triggers.remove(&key);
                continue;
            }
            match new {
                Some(state) => self.desired.insert(key.clone(), state),
                None => self.desired.remove(&key),
            };
            if let Some(at) = self.triggers.remove(&key) {
                triggers.push(at);
            }
            changed.push(key);
        }
        let full = std::mem::take(&mut self.needs_full);
        Changes { full, changed, triggers, first_event: self.first_event.take() }
    }

    /// The desired state of every Service the proxy programs.
    pub fn desired(&self) -> &HashMap<ServiceKey, ServiceState> {
        &self.desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tracker() -> ChangeTracker {
        ChangeTracker::new(NodeContext { node_name: "node-1".into() })
    }

    fn svc(labels: Value) -> Value {
        json!({"metadata": {"namespace": "ns", "name": "a", "labels": labels},
               "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "p", "port": 80}]}})
    }

    fn slice(ip: &str) -> Value {
        json!({"metadata": {"namespace": "ns", "name": "a-1", "labels": {"kubernetes.io/service-name": "a"}},
               "addressType": "IPv4", "ports": [{"name": "p", "port": 8080}],
               "endpoints": [{"addresses": [ip]}]})
    }

    #[test]
    fn reports_only_real_changes() {
        let mut t = tracker();
        t.apply_service(&svc(json!({}))).unwrap();
        let c = t.take_changes();
        assert!(c.full);
        assert_eq!(c.changed, vec![ServiceKey::new("ns", "a")]);
        t.apply_endpoint_slice(&slice("10.244.1.9"), None).unwrap();
        assert_eq!(t.take_changes().changed.len(), 1);
        t.apply_endpoint_slice(&slice("10.244.1.9"), None).unwrap();
        let c = t.take_changes();
        assert!(!c.full && c.changed.is_empty(), "same endpoints, nothing to write");
        assert!(!t.has_changes());
    }

    #[test]
    fn proxy_name_and_headless_labels_hide_a_service() {
        let mut t = tracker();
        t.apply_service(&svc(json!({}))).unwrap();
        t.take_changes();
        t.apply_service(&svc(json!({SERVICE_PROXY_NAME_LABEL: "other"}))).unwrap();
        let c = t.take_changes();
        assert_eq!(c.changed.len(), 1);
        assert!(t.desired().is_empty());
        t.apply_service(&svc(json!({}))).unwrap();
        t.take_changes();
        assert_eq!(t.desired().len(), 1);
        t.apply_service(&svc(json!({HEADLESS_LABEL: ""}))).unwrap();
        t.take_changes();
        assert!(t.desired().is_empty());
    }

    #[test]
    fn deletes_are_changes() {
        let mut t = tracker();
        t.apply_service(&svc(json!({}))).unwrap();
        t.take_changes();
        t.delete_service(&ServiceKey::new("ns", "a"));
        assert_eq!(t.take_changes().changed, vec![ServiceKey::new("ns", "a")]);
        assert!(t.desired().is_empty());
    }
}
