//! # The EndpointSlice controller
//!
//! For every Service with a selector, keeps `discovery.k8s.io/v1` EndpointSlices listing
//! the selected pods that have an IP, as upstream's controller does: at most 100
//! endpoints per slice, one set of slices per address type and per set of resolved ports,
//! each slice labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` and owned by
//! the Service. Services without a selector get nothing from here (their slices come from
//! [`crate::mirroring`] or from users); slices this controller made are removed when their
//! Service goes away or loses its selector.
//!
//! How a change flows through:
//!
//! 1. [`watch`] follows Services, Pods, Nodes and this controller's own slices; each
//!    change updates the in-memory state ([`membership`] for who selects whom, [`cache`]
//!    for slices) and names the Services it affects.
//! 2. Those go into a [`queue`] that coalesces repeats and never runs one Service twice
//!    at once; a few workers take Services from it.
//! 3. A sync turns the Service's pods into desired endpoints ([`desired`], built from the
//!    pieces in [`endpoint`]), plans the fewest slice writes that reach them
//!    ([`reconcile`]) and performs the plan ([`writes`]). Nothing is written when the
//!    slices already match.
//!
//! The pieces are shared with the Endpoints controller ([`crate::endpoints`]) and the
//! mirroring controller ([`crate::mirroring`]).

pub(crate) mod cache;
pub(crate) mod desired;
pub(crate) mod endpoint;
pub(crate) mod membership;
pub(crate) mod model;
pub(crate) mod queue;
pub(crate) mod reconcile;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod trigger_time;
pub(crate) mod watch;
pub(crate) mod writes;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;

use crate::events::EventType;
use crate::Context;
use cache::SliceIndex;
use desired::{desired_endpoints, NodeZones};
use membership::Membership;
use model::{ObjectKey, PodView, ServiceView};
use queue::WorkQueue;
use reconcile::{plan_slices, SlicePlan, MAX_ENDPOINTS_PER_SLICE};
use trigger_time::{format_time, TriggerTimes};
use watch::{Change, Tasks};

/// The `managed-by` value of the slices this controller owns.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Label on slices (and Endpoints) of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label telling the mirroring controller to leave an Endpoints object alone.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Annotation with the time of the earliest change a write reflects.
pub const ANNOTATION_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Node label carrying the node's zone.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// The `controller` label of this controller's metrics.
const METRICS_NAME: &str = "endpointslice";
/// Services synced in parallel (upstream's default is 5).
const WORKERS: usize = 4;
/// When someone else changes one of our slices, its Service is synced after this delay,
/// so a burst of edits is repaired once (upstream's `endpointSliceChangeMinSyncDelay`).
const SLICE_CHANGE_DELAY: Duration = Duration::from_secs(1);

/// Everything the controller knows, updated by the watches.
#[derive(Default)]
struct State {
    membership: Membership,
    nodes: NodeZones,
    slices: SliceIndex,
    trigger_times: TriggerTimes,
}

/// What a sync has to do, decided under the state lock and done outside it.
enum Work {
    /// The Service is gone, has no selector or is an ExternalName: remove our slices.
    RemoveAll(Vec<Arc<EndpointSlice>>),
    Reconcile {
        service: Box<ServiceView>,
        plan: SlicePlan,
        problems: Vec<String>,
    },
}

struct Controller {
    ctx: Arc<Context>,
    state: Mutex<State>,
    queue: WorkQueue<ObjectKey>,
}

/// Runs the EndpointSlice controller until a watch ends for good.
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
    tasks.watch(Api::<Node>::all(client.clone()), watcher::Config::default(), node_zone, move |ch| c.on_node(ch));
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

/// A Node's name and zone label: all this controller keeps of it.
fn node_zone(node: Node) -> (String, Option<String>) {
    let zone = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ZONE)).cloned();
    (node.metadata.name.unwrap_or_default(), zone)
}

impl Controller {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panicking holder (every update is a single
        // map operation), so keep using it.
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

    /// Nodes matter for a pod's zone and for whether its endpoint is published at all
    /// (pods on unknown nodes are left out); Services with pods on a node that appeared,
    /// vanished or changed zone are synced again.
    fn on_node(&self, change: Change<(String, Option<String>)>) {
        let mut st = self.state();
        let mut changed = BTreeSet::new();
        match change {
            Change::Applied((name, zone)) => {
                if st.nodes.get(&name) != Some(&zone) {
                    st.nodes.insert(name.clone(), zone);
                    changed.insert(name);
                }
            }
            Change::Deleted((name, _)) => {
                if st.nodes.remove(&name).is_some() {
                    changed.insert(name);
                }
            }
            Change::Relisted(all) => {
                let fresh: NodeZones = all.into_iter().collect();
                changed.extend(fresh.iter().filter(|(k, v)| st.nodes.get(*k) != Some(*v)).map(|(k, _)| k.clone()));
                changed.extend(st.nodes.keys().filter(|k| !fresh.contains_key(*k)).cloned());
                st.nodes = fresh;
            }
        }
        if changed.is_empty() {
            return;
        }
        let keys = st.membership.services_with_pods_on(&changed);
        drop(st);
        self.queue.add_all(keys);
    }

    fn on_slice(&self, change: Change<EndpointSlice>) {
        match change {
            Change::Applied(s) => {
                let owners = self.state().slices.observe_applied(s);
                for owner in owners {
                    self.queue.add_after(owner, SLICE_CHANGE_DELAY);
                }
            }
            Change::Deleted(s) => {
                let owners = self.state().slices.observe_deleted(&s);
                for owner in owners {
                    self.queue.add_after(owner, SLICE_CHANGE_DELAY);
                }
            }
            Change::Relisted(all) => {
                let owners = self.state().slices.observe_relist(all);
                self.queue.add_all(owners);
            }
        }
    }

    /// Decides, under the lock, what a sync of `key` must do.
    fn decide(&self, key: &ObjectKey) -> Work {
        let mut st = self.state();
        let st = &mut *st;
        let service = st.membership.service(key).filter(|s| s.selector.is_some() && !s.external_name).cloned();
        let Some(service) = service else {
            st.trigger_times.forget(key);
            return Work::RemoveAll(st.slices.for_owner(key));
        };
        let pods = st.membership.pods_of(&service);
        let desired = desired_endpoints(&service, &pods, &st.nodes);
        let trigger =
            st.trigger_times.compute(key, service.created, pods.iter().map(|p| (p.name.as_str(), p.ready_transition)));
        let existing = st.slices.for_owner(key);
        let mut plan = plan_slices(&service, desired.groups, &existing, MAX_ENDPOINTS_PER_SLICE);
        plan.set_trigger_time(trigger.map(format_time).as_deref());
        Work::Reconcile { service: Box::new(service), plan, problems: desired.problems }
    }

    async fn sync(&self, key: &ObjectKey) -> Result<(), String> {
        match self.decide(key) {
            Work::RemoveAll(slices) => {
                if slices.is_empty() {
                    return Ok(());
                }
                let plan =
                    SlicePlan { delete: slices.iter().map(|s| s.as_ref().clone()).collect(), ..Default::default() };
                self.perform(key, plan, false).await
            }
            Work::Reconcile { service, plan, mut problems } => {
                if !plan.is_empty() {
                    if let Err(e) = self.perform(key, plan, !service.deleting).await {
                        problems.push(e);
                    }
                }
                if problems.is_empty() {
                    return Ok(());
                }
                let error = if problems.len() == 1 { problems.remove(0) } else { format!("[{}]", problems.join(", ")) };
                let message = format!("Error updating Endpoint Slices for Service {key}: {error}");
                let reference = service.reference_object();
                self.ctx
                    .recorder
                    .publish(&reference, EventType::Warning, "FailedToUpdateEndpointSlices", &message)
                    .await;
                Err(error)
            }
        }
    }

    async fn perform(&self, key: &ObjectKey, plan: SlicePlan, allow_create: bool) -> Result<(), String> {
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let owner = writes::Owner { kind: "Service", key };
        let metrics = &self.ctx.metrics;
        writes::perform_tracked(&api, owner, plan, allow_create, metrics, METRICS_NAME, |f| f(&mut self.state().slices))
            .await
    }
}
