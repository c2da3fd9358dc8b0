//! The control loop: kube-rs watches → state → compiled route table and certificates,
//! swapped in atomically; then Ingress status and warning Events.
//!
//! Five watches (Ingresses, IngressClasses, Services, EndpointSlices, Secrets) feed one
//! task. After each event it drains whatever else is already queued, then recompiles once,
//! so a burst of changes costs one compile. Each watch (re)lists with `Init … InitApply …
//! InitDone`; objects not seen again by `InitDone` are dropped then, so a relist never
//! empties the table in between. Nothing is served from a partial view: the first table is
//! compiled only after every watch has listed once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use rustls::sign::CertifiedKey;
use serde_json::json;
use skiff_core::service_view::{ServiceKey, ServiceType, ServiceView};

use crate::compile::{self, CertSource, ClassConfig, Compiled};
use crate::metrics::Metrics;
use crate::routes::RouteTable;
use crate::snapshot::Snapshot;
use crate::tls::{self, CertMap};

/// What the control loop writes to and how it decides.
pub struct Controller {
    pub client: kube::Client,
    pub class: ClassConfig,
    /// `--publish-service`: its addresses go into every Ingress's status.
    pub publish_service: Option<ServiceKey>,
    /// `--default-ssl-certificate`.
    pub default_certificate: Option<(String, String)>,
    pub generated_certificate: Arc<CertifiedKey>,
    pub routes: Arc<Snapshot<RouteTable>>,
    pub certs: Arc<Snapshot<CertMap>>,
    pub metrics: Arc<Metrics>,
    pub synced: Arc<AtomicBool>,
}

enum Change {
    Ingress(Event<Ingress>),
    Class(Event<IngressClass>),
    Service(Event<DynamicObject>),
    Slice(Event<DynamicObject>),
    Secret(Event<Secret>),
}

type Key = (String, String);

/// Keys seen during a relist of one kind.
#[derive(Default)]
struct Relist {
    pending: Option<HashSet<Key>>,
    synced: bool,
}

/// A parsed TLS Secret, or why it could not be used.
type SecretEntry = Result<Arc<CertifiedKey>, String>;

#[derive(Default)]
struct State {
    ingresses: BTreeMap<Key, Ingress>,
    classes: BTreeMap<Key, IngressClass>,
    view: ServiceView,
    secrets: BTreeMap<Key, SecretEntry>,
    relists: [Relist; 5],
    /// (Ingress uid, message) of warning Events already published.
    warned: HashSet<(String, String)>,
    /// Status addresses last written per Ingress, to write each change once.
    status_written: HashMap<Key, Vec<String>>,
}

const INGRESSES: usize = 0;
const CLASSES: usize = 1;
const SERVICES: usize = 2;
const SLICES: usize = 3;
const SECRETS: usize = 4;

impl Controller {
    /// Runs the watches and keeps the route table current. Returns only if every watch
    /// stream ends (they retry with backoff, so in practice never).
    pub async fn run(self) {
        let client = self.client.clone();
        let config = watcher::Config::default();
        let services = Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<Service>(&()));
        let slices = Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<EndpointSlice>(&()));
        let streams: Vec<std::pin::Pin<Box<dyn Stream<Item = Change> + Send>>> = vec![
            Box::pin(
                logged(watcher::watcher(Api::<Ingress>::all(client.clone()), config.clone()), "ingresses")
                    .map(Change::Ingress),
            ),
            Box::pin(
                logged(watcher::watcher(Api::<IngressClass>::all(client.clone()), config.clone()), "ingressclasses")
                    .map(Change::Class),
            ),
            Box::pin(logged(watcher::watcher(services, config.clone()), "services").map(Change::Service)),
            Box::pin(logged(watcher::watcher(slices, config.clone()), "endpointslices").map(Change::Slice)),
            Box::pin(
                logged(watcher::watcher(Api::<Secret>::all(client.clone()), config), "secrets").map(Change::Secret),
            ),
        ];
        let mut changes = futures::stream::select_all(streams);
        let mut state = State::default();
        while let Some(change) = changes.next().await {
            state.apply(change);
            // Coalesce a burst: everything already queued is applied before one compile.
            while let Some(Some(change)) = changes.next().now_or_never() {
                state.apply(change);
            }
            if state.relists.iter().all(|r| r.synced) {
                self.recompile(&mut state);
            }
        }
    }

    fn recompile(&self, state: &mut State) {
        let started = Instant::now();
        let classes: Vec<IngressClass> = state.classes.values().cloned().collect();
        let metrics = &self.metrics;
        let compiled = compile::compile(state.ingresses.values(), &classes, &state.view, &self.class, &mut |name| {
            metrics.ingress(name)
        });
        let Compiled { table, tls_hosts, ours, warnings } = compiled;
        let routes = table.len();
        self.routes.store(table);
        self.certs.store(self.cert_map(state, &tls_hosts));
        self.metrics.route_updates.fetch_add(1, Ordering::Relaxed);
        self.metrics.cert_swaps.fetch_add(1, Ordering::Relaxed);
        if !self.synced.swap(true, Ordering::Relaxed) {
            tracing::info!(ingresses = ours.len(), routes, "watches synced; serving routes");
        }
        tracing::debug!(
            ingresses = ours.len(),
            routes,
            micros = started.elapsed().as_micros() as u64,
            "route table swapped"
        );
        let live: HashSet<String> = ours.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        self.metrics.retain_ingresses(&live);
        self.publish_warnings(state, warnings);
        self.write_status(state, &ours);
    }

    /// Certificates for the TLS hosts, falling back to the default certificate for missing
    /// or unusable Secrets.
    fn cert_map(&self, state: &State, tls_hosts: &[(String, CertSource)]) -> CertMap {
        let default = self
            .default_certificate
            .as_ref()
            .and_then(|key| state.secrets.get(key))
            .and_then(|entry| entry.as_ref().ok().cloned())
            .unwrap_or_else(|| self.generated_certificate.clone());
        let mut map = CertMap::only_default(default.clone());
        for (host, source) in tls_hosts {
            let cert = match source {
                CertSource::Default => default.clone(),
                CertSource::Secret(ns, name) => match state.secrets.get(&(ns.clone(), name.clone())) {
                    Some(Ok(cert)) => cert.clone(),
                    Some(Err(why)) => {
                        tracing::warn!(secret = %format!("{ns}/{name}"), %why, "unusable TLS Secret; serving the default certificate");
                        default.clone()
                    }
                    None => default.clone(),
                },
            };
            match host.strip_prefix("*.") {
                Some(suffix) => map.wildcard.insert(suffix.to_owned(), cert),
                None => map.exact.insert(host.clone(), cert),
            };
        }
        map
    }

    /// Publishes each new warning once per Ingress as a core/v1 Event.
    fn publish_warnings(&self, state: &mut State, warnings: Vec<compile::Warning>) {
        for warning in warnings {
            let Some(ingress) = state.ingresses.get(&(warning.namespace.clone(), warning.name.clone())) else {
                continue;
            };
            let uid = ingress.metadata.uid.clone().unwrap_or_default();
            if !state.warned.insert((uid.clone(), warning.message.clone())) {
                continue;
            }
            tracing::warn!(ingress = %format!("{}/{}", warning.namespace, warning.name), message = %warning.message, "Ingress warning");
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let event = CoreEvent {
                metadata: ObjectMeta {
                    namespace: Some(warning.namespace.clone()),
                    generate_name: Some(format!("{}.", warning.name)),
                    ..ObjectMeta::default()
                },
                involved_object: ObjectReference {
                    api_version: Some("networking.k8s.io/v1".to_owned()),
                    kind: Some("Ingress".to_owned()),
                    namespace: Some(warning.namespace.clone()),
                    name: Some(warning.name.clone()),
                    uid: Some(uid),
                    ..ObjectReference::default()
                },
                reason: Some("IngressConfiguration".to_owned()),
                message: Some(warning.message),
                type_: Some("Warning".to_owned()),
                source: Some(EventSource { component: Some("skiff-ingress".to_owned()), host: None }),
                reporting_component: Some("skiff.io/ingress-controller".to_owned()),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                count: Some(1),
                ..CoreEvent::default()
            };
            let api = Api::<CoreEvent>::namespaced(self.client.clone(), &warning.namespace);
            tokio::spawn(async move {
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(error = %e, "could not publish Event");
                }
            });
        }
    }

    /// Writes `--publish-service`'s addresses into the status of each of our Ingresses whose
    /// status differs.
    fn write_status(&self, state: &mut State, ours: &[(String, String)]) {
        let Some(publish) = &self.publish_service else { return };
        let addresses = published_addresses(&state.view, publish);
        let ours: HashSet<&Key> = ours.iter().collect();
        state.status_written.retain(|k, _| ours.contains(k));
        for key in ours {
            let Some(ingress) = state.ingresses.get(key) else { continue };
            let current: Vec<String> = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|list| list.iter().filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())).collect())
                .unwrap_or_default();
            if current == addresses || state.status_written.get(key) == Some(&addresses) {
                continue;
            }
            state.status_written.insert(key.clone(), addresses.clone());
            let entries: Vec<serde_json::Value> = addresses
                .iter()
                .map(|a| if a.parse::<std::net::IpAddr>().is_ok() { json!({"ip": a}) } else { json!({"hostname": a}) })
                .collect();
            let patch = json!({"status": {"loadBalancer": {"ingress": entries}}});
            let api = Api::<Ingress>::namespaced(self.client.clone(), &key.0);
            let name = key.1.clone();
            tokio::spawn(async move {
                if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!(ingress = %name, error = %e, "could not write Ingress status");
                }
            });
        }
    }
}

/// The addresses ingress-nginx publishes for a `--publish-service`: LoadBalancer ingress IPs
/// (and external IPs) of a LoadBalancer Service, the external name of an ExternalName one,
/// otherwise external IPs or else the ClusterIP.
fn published_addresses(view: &ServiceView, key: &ServiceKey) -> Vec<String> {
    let Some(service) = view.get_service(key) else { return Vec::new() };
    let ips = |list: &[std::net::IpAddr]| list.iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
    match service.service_type {
        ServiceType::ExternalName => service.external_name.iter().cloned().collect(),
        ServiceType::LoadBalancer => {
            let mut out = ips(&service.load_balancer_ips);
            out.extend(ips(&service.external_ips));
            out
        }
        _ if !service.external_ips.is_empty() => ips(&service.external_ips),
        _ => ips(&service.cluster_ips),
    }
}

impl State {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Ingress(event) => apply_map(&mut self.ingresses, &mut self.relists[INGRESSES], event, Some),
            Change::Class(event) => apply_map(&mut self.classes, &mut self.relists[CLASSES], event, Some),
            Change::Secret(event) => apply_map(&mut self.secrets, &mut self.relists[SECRETS], event, parse_secret),
            Change::Service(event) => self.apply_service(event),
            Change::Slice(event) => self.apply_slice(event),
        }
    }

    fn apply_service(&mut self, event: Event<DynamicObject>) {
        let relist = &mut self.relists[SERVICES];
        match event {
            Event::Init => relist.pending = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let Ok(value) = serde_json::to_value(&obj) else { return };
                if let Ok(key) = self.view.apply_service(&value) {
                    if let Some(seen) = &mut relist.pending {
                        seen.insert((key.namespace, key.name));
                    }
                }
            }
            Event::Delete(obj) => {
                self.view.delete_service(&ServiceKey::new(obj.namespace().unwrap_or_default(), obj.name_any()));
            }
            Event::InitDone => {
                if let Some(seen) = relist.pending.take() {
                    let gone: Vec<ServiceKey> = self
                        .view
                        .service_keys()
                        .filter(|k| !seen.contains(&(k.namespace.clone(), k.name.clone())))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.view.delete_service(&key);
                    }
                }
                relist.synced = true;
            }
        }
    }

    fn apply_slice(&mut self, event: Event<DynamicObject>) {
        let relist = &mut self.relists[SLICES];
        match event {
            Event::Init => relist.pending = Some(HashSet::new()),
            Event::InitApply(obj) | Event::Apply(obj) => {
                let Ok(value) = serde_json::to_value(&obj) else { return };
                if self.view.apply_endpoint_slice(&value).is_ok() {
                    if let Some(seen) = &mut relist.pending {
                        seen.insert((obj.namespace().unwrap_or_default(), obj.name_any()));
                    }
                }
            }
            Event::Delete(obj) => {
                self.view.delete_endpoint_slice(&obj.namespace().unwrap_or_default(), &obj.name_any());
            }
            Event::InitDone => {
                if let Some(seen) = relist.pending.take() {
                    let gone: Vec<Key> = self
                        .view
                        .slice_ids()
                        .map(|(ns, n)| (ns.to_owned(), n.to_owned()))
                        .filter(|id| !seen.contains(id))
                        .collect();
                    for (ns, name) in gone {
                        self.view.delete_endpoint_slice(&ns, &name);
                    }
                }
                relist.synced = true;
            }
        }
    }
}

/// Applies a watch event to a map of converted objects (`convert` returns `None` for objects
/// that are not kept, e.g. non-TLS Secrets).
fn apply_map<K, V>(map: &mut BTreeMap<Key, V>, relist: &mut Relist, event: Event<K>, convert: fn(K) -> Option<V>)
where
    K: kube::Resource,
{
    let key_of =
        |obj: &K| (obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone().unwrap_or_default());
    match event {
        Event::Init => relist.pending = Some(HashSet::new()),
        Event::InitApply(obj) | Event::Apply(obj) => {
            let key = key_of(&obj);
            if let Some(seen) = &mut relist.pending {
                seen.insert(key.clone());
            }
            match convert(obj) {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Event::Delete(obj) => {
            map.remove(&key_of(&obj));
        }
        Event::InitDone => {
            if let Some(seen) = relist.pending.take() {
                map.retain(|k, _| seen.contains(k));
            }
            relist.synced = true;
        }
    }
}

/// Reads a `kubernetes.io/tls` Secret (or any Secret with `tls.crt` and `tls.key`).
fn parse_secret(secret: Secret) -> Option<SecretEntry> {
    let data = secret.data.as_ref();
    let field = |name: &str| data.and_then(|d| d.get(name)).map(|b| b.0.as_slice());
    let is_tls = secret.type_.as_deref() == Some("kubernetes.io/tls");
    match (field("tls.crt"), field("tls.key")) {
        (Some(cert), Some(key)) => {
            Some(tls::certified_key_from_pem(cert, key).map(Arc::new).map_err(|e| format!("{e:#}")))
        }
        _ if is_tls => Some(Err("missing tls.crt or tls.key".to_owned())),
        _ => None,
    }
}

/// Drops (and logs) watch errors; the backoff wrapper retries.
fn logged<K>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    what: &'static str,
) -> impl Stream<Item = Event<K>> + Send
where
    K: Send + 'static + Clone,
{
    stream.default_backoff().filter_map(move |item| {
        std::future::ready(match item {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(watch = what, error = %e, "watch error; retrying");
                None
            }
        })
    })
}
