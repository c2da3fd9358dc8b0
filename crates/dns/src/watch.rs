//! The kube-rs watches that feed the table: Services, EndpointSlices and Namespaces
//! (metadata only). No Pod watch: pod addresses come from EndpointSlice `targetRef`s.
//!
//! Each watch (re)lists with `Init … InitApply … InitDone`; objects not seen again by
//! `InitDone` are deleted then, so a relist never empties the table in between. The
//! answerer is marked synced once all three watches have listed once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use skiff_core::service_view::ServiceKey;

use crate::feed::ZoneFeeder;
use crate::metrics::Metrics;

/// Annotation the EndpointSlice controller sets to the time of the change that caused the
/// slice's last update; programming latency is measured from it.
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

enum Change {
    Service(Event<DynamicObject>),
    Slice(Event<DynamicObject>),
    Namespace(Event<PartialObjectMeta<Namespace>>),
}

/// Which watch an event came from, for relist bookkeeping.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Service,
    Slice,
    Namespace,
}

/// Keys seen during a relist, per kind.
#[derive(Default)]
struct Relist {
    services: Option<HashSet<ServiceKey>>,
    slices: Option<HashSet<(String, String)>>,
    namespaces: Option<HashSet<String>>,
    synced: HashSet<Kind>,
}

/// Watches the API through `client` and keeps `feeder`'s table current. Runs until the
/// watch streams end (they retry with backoff, so in practice forever).
pub async fn run(client: kube::Client, mut feeder: ZoneFeeder, metrics: Arc<Metrics>) {
    let services: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Service>(&()));
    let slices: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<EndpointSlice>(&()));
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(client);
    let config = watcher::Config::default();
    let streams: Vec<std::pin::Pin<Box<dyn Stream<Item = Change> + Send>>> = vec![
        Box::pin(logged(watcher::watcher(services, config.clone()).default_backoff(), "services").map(Change::Service)),
        Box::pin(
            logged(watcher::watcher(slices, config.clone()).default_backoff(), "endpointslices").map(Change::Slice),
        ),
        Box::pin(logged(watcher::watcher(namespaces, config).default_backoff(), "namespaces").map(Change::Namespace)),
    ];
    let mut changes = futures::stream::select_all(streams);
    let mut relist = Relist::default();
    while let Some(change) = changes.next().await {
        let received = Instant::now();
        let applied = match change {
            Change::Service(event) => on_service(&mut feeder, &mut relist, event),
            Change::Slice(event) => on_slice(&mut feeder, &mut relist, event, &metrics),
            Change::Namespace(event) => on_namespace(&mut feeder, &mut relist, event),
        };
        if applied {
            metrics.observe_watch_apply(received.elapsed().as_secs_f64());
        }
        if relist.synced.len() == 3 && !feeder.is_synced() {
            feeder.mark_synced();
            tracing::info!(services = feeder.view().len(), "DNS watches synced; answering the cluster zone");
        }
    }
}

/// Drops (and logs) watch errors; the backoff wrapper retries.
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

fn to_json(obj: &DynamicObject) -> Option<serde_json::Value> {
    serde_json::to_value(obj).ok()
}

/// Returns whether the event changed live state (for the apply-latency metric).
fn on_service(feeder: &mut ZoneFeeder, relist: &mut Relist, event: Event<DynamicObject>) -> bool {
    match event {
        Event::Init => relist.services = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let Some(value) = to_json(&obj) else { return false };
            match feeder.apply_service(&value) {
                Ok(key) => {
                    if let Some(seen) = &mut relist.services {
                        seen.insert(key);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "ignoring Service"),
            }
            return true;
        }
        Event::Delete(obj) => {
            feeder.delete_service(&ServiceKey::new(obj.namespace().unwrap_or_default(), obj.name_any()));
            return true;
        }
        Event::InitDone => {
            if let Some(seen) = relist.services.take() {
                let gone: Vec<ServiceKey> =
                    feeder.view().service_keys().filter(|k| !seen.contains(*k)).cloned().collect();
                for key in gone {
                    feeder.delete_service(&key);
                }
            }
            relist.synced.insert(Kind::Service);
        }
    }
    false
}

fn on_slice(feeder: &mut ZoneFeeder, relist: &mut Relist, event: Event<DynamicObject>, metrics: &Metrics) -> bool {
    match event {
        Event::Init => relist.slices = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let Some(value) = to_json(&obj) else { return false };
            let id = (obj.namespace().unwrap_or_default(), obj.name_any());
            if let Err(e) = feeder.apply_endpoint_slice(&value) {
                tracing::debug!(error = %e, "ignoring EndpointSlice");
            }
            if let Some(seen) = &mut relist.slices {
                seen.insert(id);
            } else if let Some(trigger) = obj.annotations().get(TRIGGER_TIME_ANNOTATION) {
                if let Ok(at) = chrono::DateTime::parse_from_rfc3339(trigger) {
                    let lag = chrono::Utc::now().signed_duration_since(at);
                    metrics.observe_programming(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
                }
            }
            return true;
        }
        Event::Delete(obj) => {
            feeder.delete_endpoint_slice(&obj.namespace().unwrap_or_default(), &obj.name_any());
            return true;
        }
        Event::InitDone => {
            if let Some(seen) = relist.slices.take() {
                let gone: Vec<(String, String)> = feeder
                    .view()
                    .slice_ids()
                    .filter(|(ns, n)| !seen.contains(&((*ns).to_owned(), (*n).to_owned())))
                    .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
                    .collect();
                for (ns, name) in gone {
                    feeder.delete_endpoint_slice(&ns, &name);
                }
            }
            relist.synced.insert(Kind::Slice);
        }
    }
    false
}

fn on_namespace(feeder: &mut ZoneFeeder, relist: &mut Relist, event: Event<PartialObjectMeta<Namespace>>) -> bool {
    match event {
        Event::Init => relist.namespaces = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let name = obj.name_any();
            feeder.apply_namespace(&name);
            if let Some(seen) = &mut relist.namespaces {
                seen.insert(name);
            }
            return true;
        }
        Event::Delete(obj) => {
            feeder.delete_namespace(&obj.name_any());
            return true;
        }
        Event::InitDone => {
            if let Some(seen) = relist.namespaces.take() {
                let gone: Vec<String> = feeder.namespaces().filter(|n| !seen.contains(*n)).map(str::to_owned).collect();
                for name in gone {
                    feeder.delete_namespace(&name);
                }
            }
            relist.synced.insert(Kind::Namespace);
        }
    }
    false
}
