//! # ReplicaSet controller
//!
//! Keeps `spec.replicas` pods running for every ReplicaSet, as kube-controller-manager's
//! replicaset controller does:
//!
//! - pods are created from `spec.template` with a generated name `<rs>-<5 random>` and a
//!   controller ownerReference; surplus pods are deleted, the least useful first
//!   ([`pods::sort_for_deletion`]); terminating and finished pods do not count;
//! - orphan pods matching the selector are adopted, owned pods that stop matching are
//!   released, pods of other controllers are never touched ([`ownership`]);
//! - [`expectations`] stop a sync from creating or deleting again before the cache has
//!   seen the previous round;
//! - the status (`replicas`, `fullyLabeledReplicas`, `readyReplicas`,
//!   `availableReplicas` after `minReadySeconds`, `observedGeneration`, the
//!   ReplicaFailure condition) is written through the status subresource ([`status`]);
//!   pods already asked to go are not counted, and `observedGeneration` only advances
//!   once a sync could act on that generation, so the Deployment controller can trust it.
//!
//! Events: SuccessfulCreate / SuccessfulDelete / FailedCreate / FailedDelete on the
//! ReplicaSet. Metrics: `skiff_syncs_total{controller="replicaset"}`,
//! `skiff_sync_duration_seconds`, `skiff_replicaset_pods_{created,deleted}_total`.
//!
//! [`cache`], [`queue`] and [`ownership`] are shared with the Deployment controller.

pub mod cache;
pub mod expectations;
pub mod ownership;
pub mod pods;
pub mod queue;
pub mod status;
mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::Context;
use cache::Change;
use expectations::Expectations;
use ownership::controller_of;
use queue::Queue;

pub use sync::pod_from_template;

/// Name in logs, metrics and events.
pub const CONTROLLER_NAME: &str = "replicaset";
/// Most pods created or deleted in one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// ReplicaSets synced at once (upstream's `--concurrent-replicaset-syncs` default).
const WORKERS: u16 = 5;

/// What a sync reads and updates besides the API.
struct Controller {
    ctx: Arc<Context>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
}

/// Runs the ReplicaSet controller until the process ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (queue, receiver) = queue::channel::<ReplicaSet>();
    let expectations = Arc::new(Expectations::default());

    let replicasets = cache::spawn(Api::<ReplicaSet>::all(ctx.client.clone()), "replicasets", {
        let queue = queue.clone();
        let expectations = expectations.clone();
        move |change| match change {
            Change::Added(rs) | Change::Updated { new: rs, .. } => queue.add(ObjectRef::from_obj(rs.as_ref())),
            Change::Deleted(rs) => expectations.forget(&rs_key(&rs)),
        }
    });
    let pods = cache::spawn(Api::<Pod>::all(ctx.client.clone()), "pods", {
        let replicasets = replicasets.clone();
        let expectations = expectations.clone();
        move |change| on_pod_change(change, &replicasets, &expectations, &queue)
    });
    replicasets.wait_until_ready().await?;
    pods.wait_until_ready().await?;
    tracing::info!("replicaset controller synced its caches; starting");

    let controller = Arc::new(Controller { ctx: ctx.clone(), replicasets: replicasets.clone(), pods, expectations });
    queue::run(CONTROLLER_NAME, ctx.metrics.clone(), replicasets, receiver, WORKERS, move |rs| {
        sync::sync(controller.clone(), rs)
    })
    .await;
    anyhow::bail!("replicaset work queue stopped")
}

fn rs_key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

/// The ReplicaSet the pod's controller reference points at, if it is in the cache with
/// the same UID (a reference to a deleted-and-recreated namesake does not count).
fn owning_replicaset(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Option<Arc<ReplicaSet>> {
    let owner = controller_of(&pod.metadata)?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let rs = replicasets.get(&ObjectRef::new(&owner.name).within(pod.metadata.namespace.as_deref()?))?;
    (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(rs)
}

/// ReplicaSets of the pod's namespace whose (non-empty) selector matches an orphan pod.
fn matching_replicasets(pod: &Pod, replicasets: &Store<ReplicaSet>) -> Vec<Arc<ReplicaSet>> {
    let namespace = pod.metadata.namespace.as_deref();
    replicasets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == namespace)
        .filter(|rs| {
            rs.spec.as_ref().is_some_and(|s| {
                !ownership::is_empty_selector(&s.selector)
                    && ownership::selector(&s.selector).is_ok_and(|sel| sel.matches(pod.labels()))
            })
        })
        .collect()
}

/// Maps a pod change to the ReplicaSets to sync and ticks off expectations (upstream's
/// addPod / updatePod / deletePod handlers).
fn on_pod_change(
    change: Change<Pod>,
    replicasets: &Store<ReplicaSet>,
    expectations: &Expectations,
    queue: &Queue<ReplicaSet>,
) {
    let enqueue = |rs: &ReplicaSet| queue.add(ObjectRef::from_obj(rs));
    let deleted = |pod: &Pod| {
        if let Some(rs) = owning_replicaset(pod, replicasets) {
            expectations.deletion_observed(&rs_key(&rs), &pods::pod_key(pod));
            enqueue(&rs);
        }
    };
    match change {
        Change::Added(pod) => {
            if pod.metadata.deletion_timestamp.is_some() {
                // A pod that is already terminating when first seen counts as deleted.
                deleted(&pod);
            } else if let Some(rs) = owning_replicaset(&pod, replicasets) {
                expectations.creations_observed(&rs_key(&rs), 1);
                enqueue(&rs);
            } else if controller_of(&pod.metadata).is_none() {
                matching_replicasets(&pod, replicasets).iter().for_each(|rs| enqueue(rs));
            }
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let labels_changed = old.metadata.labels != new.metadata.labels;
            if new.metadata.deletion_timestamp.is_some() {
                deleted(&new);
                if labels_changed {
                    deleted(&old);
                }
                return;
            }
            let old_owner = controller_of(&old.metadata);
            let new_owner = controller_of(&new.metadata);
            if old_owner != new_owner {
                if let Some(rs) = owning_replicaset(&old, replicasets) {
                    enqueue(&rs);
                }
            }
            if let Some(rs) = owning_replicaset(&new, replicasets) {
                enqueue(&rs);
            } else if new_owner.is_none() && (labels_changed || old_owner != new_owner) {
                matching_replicasets(&new, replicasets).iter().for_each(|rs| enqueue(rs));
            }
        }
        Change::Deleted(pod) => deleted(&pod),
    }
}
