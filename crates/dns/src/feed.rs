//! Keeping the answer table in step with the API objects.
//!
//! [`ZoneFeeder`] owns the [`ServiceView`] and turns each Service, EndpointSlice or
//! Namespace change into a [`Zone::replace`] of the affected Services' contributions. The
//! old contribution is recomputed from the view before the change (the functions in
//! [`crate::records`] are deterministic), so the table stores each record only once.
//!
//! The feeder has no I/O; [`crate::watch`] drives it from kube-rs watches, tests drive it
//! with JSON.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use skiff_core::service_view::{EndpointSlice, ServiceKey, ServiceView, ViewError};

use crate::answer::Answerer;
use crate::records::{namespace_records, service_records, zone_records, RecordConfig};
use crate::zone::Contribution;

/// The view of the cluster, and the namespaces seen, kept in step with the table.
pub struct ZoneFeeder {
    answerer: Arc<Answerer>,
    config: RecordConfig,
    view: ServiceView,
    namespaces: HashSet<String>,
}

impl ZoneFeeder {
    /// A feeder for `answerer`'s table; inserts the zone's own records.
    pub fn new(answerer: Arc<Answerer>) -> ZoneFeeder {
        let config = answerer.config.records.clone();
        let zone_contribution = zone_records(&config);
        answerer.zone.write().unwrap_or_else(|e| e.into_inner()).replace(&Contribution::default(), &zone_contribution);
        ZoneFeeder { answerer, config, view: ServiceView::default(), namespaces: HashSet::new() }
    }

    /// The joined Services and EndpointSlices.
    pub fn view(&self) -> &ServiceView {
        &self.view
    }

    /// Marks the table complete: names in the zone are answered from now on.
    pub fn mark_synced(&self) {
        self.answerer.set_synced();
    }

    pub fn is_synced(&self) -> bool {
        self.answerer.is_synced()
    }

    /// Namespaces known from the Namespace watch.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    fn contribution(&self, key: &ServiceKey) -> Contribution {
        self.view.service(key).map(|entry| service_records(&self.config, &entry)).unwrap_or_default()
    }

    /// Recomputes `keys` around `change` (a mutation of the view) and updates the table.
    fn update<T>(&mut self, keys: &[ServiceKey], change: impl FnOnce(&mut ServiceView) -> T) -> T {
        let before: Vec<Contribution> = keys.iter().map(|k| self.contribution(k)).collect();
        let result = change(&mut self.view);
        let after: Vec<Contribution> = keys.iter().map(|k| self.contribution(k)).collect();
        let mut zone = self.answerer.zone.write().unwrap_or_else(|e| e.into_inner());
        for (old, new) in before.iter().zip(&after) {
            zone.replace(old, new);
        }
        result
    }

    /// A Service was added or changed.
    pub fn apply_service(&mut self, obj: &Value) -> Result<ServiceKey, ViewError> {
        let key = skiff_core::service_view::Service::from_json(obj)?.key;
        self.update(std::slice::from_ref(&key), |view| view.apply_service(obj))
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, key: &ServiceKey) {
        self.update(std::slice::from_ref(key), |view| view.delete_service(key));
    }

    /// An EndpointSlice was added or changed. Returns the Services it affected.
    pub fn apply_endpoint_slice(&mut self, obj: &Value) -> Result<Vec<ServiceKey>, ViewError> {
        let slice = EndpointSlice::from_json(obj)?;
        let mut keys: Vec<ServiceKey> = slice.service.iter().cloned().collect();
        if let Some(old) = self.view.endpoint_slice(&slice.namespace, &slice.name).and_then(|s| s.service.clone()) {
            if !keys.contains(&old) {
                keys.push(old);
            }
        }
        self.update(&keys, |view| view.apply_endpoint_slice(obj))
    }

    /// An EndpointSlice was deleted.
    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) {
        let keys: Vec<ServiceKey> =
            self.view.endpoint_slice(namespace, name).and_then(|s| s.service.clone()).into_iter().collect();
        self.update(&keys, |view| view.delete_endpoint_slice(namespace, name));
    }

    /// A Namespace exists: its `svc` and `pod` subdomains answer NODATA.
    pub fn apply_namespace(&mut self, name: &str) {
        if !self.namespaces.insert(name.to_owned()) {
            return;
        }
        let records = namespace_records(&self.config, name);
        self.answerer.zone.write().unwrap_or_else(|e| e.into_inner()).replace(&Contribution::default(), &records);
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, name: &str) {
        if !self.namespaces.remove(name) {
            return;
        }
        let records = namespace_records(&self.config, name);
        self.answerer.zone.write().unwrap_or_else(|e| e.into_inner()).replace(&records, &Contribution::default());
    }
}
