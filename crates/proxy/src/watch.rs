//! The kube-rs watches that feed the change tracker: Services, EndpointSlices and this
//! proxy's own Node.
//!
//! Each watch (re)lists with `Init … InitApply … InitDone`; objects not seen again by
//! `InitDone` are deleted then, so a relist never empties the tracker in between. The sync
//! loop starts once Services and EndpointSlices have listed once (kube-proxy waits for the
//! same informers), so the first sync is complete. A change of the Node's labels forces a
//! full sync, as in kube-proxy.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use skiff_core::service_view::ServiceKey;

use crate::sync::Shared;

/// Annotation the EndpointSlice controller sets to the time of the change behind the
/// slice's last update; programming latency is measured from it.
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

enum Change {
    Service(Event<DynamicObject>),
    Slice(Event<DynamicObject>),
    Node(Event<PartialObjectMeta<Node>>),
}

#[derive(Default)]
struct Relist {
    services: Option<HashSet<ServiceKey>>,
    slices: Option<HashSet<(String, String)>>,
    services_synced: bool,
    slices_synced: bool,
    node_labels: Option<BTreeMap<String, String>>,
}

/// Watches the API and keeps `shared`'s tracker current. Runs until the streams end (they
/// retry with backoff, so in practice forever).
pub async fn run(client: kube::Client, node_name: String, shared: Arc<Shared>) {
    let services: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Service>(&()));
    let slices: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<EndpointSlice>(&()));
    let nodes: Api<PartialObjectMeta<Node>> = Api::all(client);
    let config = watcher::Config::default();
    let node_config = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let streams: Vec<std::pin::Pin<Box<dyn Stream<Item = Change> + Send>>> = vec![
        Box::pin(logged(watcher::watcher(services, config.clone()).default_backoff(), "services").map(Change::Service)),
        Box::pin(logged(watcher::watcher(slices, config).default_backoff(), "endpointslices").map(Change::Slice)),
        Box::pin(logged(watcher::watcher(nodes, node_config).default_backoff(), "node").map(Change::Node)),
    ];
    let mut changes = futures::stream::select_all(streams);
    let mut relist = Relist::default();
    while let Some(change) = changes.next().await {
        let notify = match change {
            Change::Service(event) => on_service(&shared, &mut relist, event),
            Change::Slice(event) => on_slice(&shared, &mut relist, event),
            Change::Node(event) => on_node(&shared, &mut relist, event),
        };
        if relist.services_synced && relist.slices_synced && !shared.synced.load(Ordering::Acquire) {
            shared.synced.store(true, Ordering::Release);
            tracing::info!(services = shared.tracker().view().len(), "proxy watches synced; programming");
            shared.notify();
        } else if notify {
            shared.notify();
        }
    }
}

fn logged<K>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    what: &'static str,
) -> impl Stream<Item = Event<K>> + Send
where
    K: Send + 'static,
{
    stream.filter_map(move |item| {
        std::future::ready(match item {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(watch = what, error = %e, "watch error; retrying");
                None
            }
        })
    })
}

/// Returns whether the sync loop should be woken.
fn on_service(shared: &Shared, relist: &mut Relist, event: Event<DynamicObject>) -> bool {
    match event {
        Event::Init => relist.services = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let Ok(value) = serde_json::to_value(&obj) else { return false };
            match shared.tracker().apply_service(&value) {
                Ok(key) => {
                    if let Some(seen) = &mut relist.services {
                        seen.insert(key);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "ignoring Service"),
            }
            return relist.services.is_none();
        }
        Event::Delete(obj) => {
            shared.tracker().delete_service(&ServiceKey::new(obj.namespace().unwrap_or_default(), obj.name_any()));
            return true;
        }
        Event::InitDone => {
            if let Some(seen) = relist.services.take() {
                let mut tracker = shared.tracker();
                let gone: Vec<ServiceKey> =
                    tracker.view().service_keys().filter(|k| !seen.contains(*k)).cloned().collect();
                for key in gone {
                    tracker.delete_service(&key);
                }
            }
            relist.services_synced = true;
            return true;
        }
    }
    false
}

fn on_slice(shared: &Shared, relist: &mut Relist, event: Event<DynamicObject>) -> bool {
    match event {
        Event::Init => relist.slices = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let Ok(value) = serde_json::to_value(&obj) else { return false };
            let id = (obj.namespace().unwrap_or_default(), obj.name_any());
            let trigger = obj
                .annotations()
                .get(TRIGGER_TIME_ANNOTATION)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let live = relist.slices.is_none();
            if let Err(e) = shared.tracker().apply_endpoint_slice(&value, if live { trigger } else { None }) {
                tracing::debug!(error = %e, "ignoring EndpointSlice");
            }
            if let Some(seen) = &mut relist.slices {
                seen.insert(id);
            }
            return live;
        }
        Event::Delete(obj) => {
            shared.tracker().delete_endpoint_slice(&obj.namespace().unwrap_or_default(), &obj.name_any());
            return true;
        }
        Event::InitDone => {
            if let Some(seen) = relist.slices.take() {
                let mut tracker = shared.tracker();
                let gone: Vec<(String, String)> = tracker
                    .view()
                    .slice_ids()
                    .filter(|(ns, n)| !seen.contains(&((*ns).to_owned(), (*n).to_owned())))
                    .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
                    .collect();
                for (ns, name) in gone {
                    tracker.delete_endpoint_slice(&ns, &name);
                }
            }
            relist.slices_synced = true;
            return true;
        }
    }
    false
}

fn on_node(shared: &Shared, relist: &mut Relist, event: Event<PartialObjectMeta<Node>>) -> bool {
    let (Event::InitApply(node) | Event::Apply(node)) = event else { return false };
    let labels = node.labels().clone();
    let changed = relist.node_labels.as_ref().is_some_and(|old| *old != labels);
    relist.node_labels = Some(labels);
    if changed {
        tracing::info!("node labels changed; full resync");
        shared.tracker().force_full();
    }
    changed
}
