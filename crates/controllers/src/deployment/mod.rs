//! # Deployment controller
//!
//! Rolls a Deployment's pod template out through ReplicaSets, as kube-controller-manager's
//! deployment controller does:
//!
//! - each template revision gets a ReplicaSet `<deployment>-<pod-template-hash>` ([`hash`])
//!   labelled and selected by `pod-template-hash`, numbered by the
//!   `deployment.kubernetes.io/revision` annotation ([`annotations`]) — which is what
//!   `kubectl rollout history` lists and `kubectl rollout undo` copies a template back from;
//! - RollingUpdate ([`rolling`]) moves pods from old to new within maxSurge /
//!   maxUnavailable ([`strategy`]), counting only pods ready for `minReadySeconds`;
//!   Recreate ([`recreate`]) removes all old pods before starting new ones;
//! - `kubectl scale` during a rollout is spread proportionally over the ReplicaSets; a
//!   paused Deployment is only scaled; old ReplicaSets beyond `revisionHistoryLimit` are
//!   deleted once empty;
//! - the status (`replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
//!   `unavailableReplicas`, `observedGeneration`, `collisionCount`) and the Available and
//!   Progressing conditions ([`progress`]) are what `kubectl rollout status` waits on.
//!
//! Events: ScalingReplicaSet ("Scaled up replica set web-5d4f8b7c9 from 0 to 3"),
//! SelectingAll, ReplicaSetCreateError. Metrics: `skiff_syncs_total{controller="deployment"}`,
//! `skiff_sync_duration_seconds`, `skiff_deployment_replicaset_scalings_total{direction}`.

pub mod annotations;
pub mod hash;
pub mod progress;
mod recreate;
pub mod replicasets;
mod rolling;
pub mod strategy;
mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use crate::replicaset::cache::{self, Change};
use crate::replicaset::ownership::{self, controller_of};
use crate::replicaset::queue::{self, Queue};
use crate::Context;

/// Name in logs and metrics.
pub const CONTROLLER_NAME: &str = "deployment";
/// Deployments synced at once (upstream's `--concurrent-deployment-syncs` default).
const WORKERS: u16 = 5;

/// The caches a sync reads.
struct Controller {
    ctx: Arc<Context>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// Runs the Deployment controller until the process ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (queue, receiver) = queue::channel::<Deployment>();
    let deployments = cache::spawn(Api::<Deployment>::all(ctx.client.clone()), "deployments", {
        let queue = queue.clone();
        move |change| match change {
            Change::Added(d) | Change::Updated { new: d, .. } => queue.add(ObjectRef::from_obj(d.as_ref())),
            Change::Deleted(_) => {}
        }
    });
    let replicasets = cache::spawn(Api::<ReplicaSet>::all(ctx.client.clone()), "replicasets", {
        let deployments = deployments.clone();
        let queue = queue.clone();
        move |change| on_replica_set_change(change, &deployments, &queue)
    });
    let pods = cache::spawn(Api::<Pod>::all(ctx.client.clone()), "pods", {
        let deployments = deployments.clone();
        let replicasets = replicasets.clone();
        move |change| {
            // Recreate waits for old pods to be gone: their deletion is the signal.
            if let Change::Deleted(pod) = change {
                if let Some(d) = owning_deployment_of_pod(&pod, &replicasets, &deployments) {
                    if !strategy::is_rolling(&d) {
                        queue.add(ObjectRef::from_obj(d.as_ref()));
                    }
                }
            }
        }
    });
    deployments.wait_until_ready().await?;
    replicasets.wait_until_ready().await?;
    pods.wait_until_ready().await?;
    tracing::info!("deployment controller synced its caches; starting");

    let controller = Arc::new(Controller { ctx: ctx.clone(), replicasets, pods });
    queue::run(CONTROLLER_NAME, ctx.metrics.clone(), deployments, receiver, WORKERS, move |d| {
        sync::sync(controller.clone(), d)
    })
    .await;
    anyhow::bail!("deployment work queue stopped")
}

/// The Deployment a ReplicaSet's controller reference points at (same UID), if cached.
fn owning_deployment(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Option<Arc<Deployment>> {
    let owner = controller_of(&rs.metadata)?;
    if owner.kind != "Deployment" {
        return None;
    }
    let d = deployments.get(&ObjectRef::new(&owner.name).within(rs.metadata.namespace.as_deref()?))?;
    (d.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(d)
}

fn owning_deployment_of_pod(
    pod: &Pod,
    replicasets: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
) -> Option<Arc<Deployment>> {
    let owner = controller_of(&pod.metadata)?;
    let rs = replicasets.get(&ObjectRef::new(&owner.name).within(pod.metadata.namespace.as_deref()?))?;
    if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
        return None;
    }
    owning_deployment(&rs, deployments)
}

/// Deployments of the ReplicaSet's namespace whose (non-empty) selector matches an
/// orphan ReplicaSet's labels: candidates to adopt it.
fn matching_deployments(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<Arc<Deployment>> {
    let namespace = rs.metadata.namespace.as_deref();
    deployments
        .state()
        .into_iter()
        .filter(|d| d.metadata.namespace.as_deref() == namespace)
        .filter(|d| {
            d.spec.as_ref().is_some_and(|s| {
                !ownership::is_empty_selector(&s.selector)
                    && ownership::selector(&s.selector).is_ok_and(|sel| sel.matches(rs.labels()))
            })
        })
        .collect()
}

/// Maps a ReplicaSet change to the Deployments to sync (upstream's addReplicaSet /
/// updateReplicaSet / deleteReplicaSet handlers).
fn on_replica_set_change(change: Change<ReplicaSet>, deployments: &Store<Deployment>, queue: &Queue<Deployment>) {
    let enqueue = |d: &Deployment| queue.add(ObjectRef::from_obj(d));
    match change {
        Change::Added(rs) | Change::Deleted(rs) => match owning_deployment(&rs, deployments) {
            Some(d) => enqueue(&d),
            None if controller_of(&rs.metadata).is_none() => {
                matching_deployments(&rs, deployments).iter().for_each(|d| enqueue(d))
            }
            None => {}
        },
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let old_owner = controller_of(&old.metadata);
            let new_owner = controller_of(&new.metadata);
            if old_owner != new_owner {
                if let Some(d) = owning_deployment(&old, deployments) {
                    enqueue(&d);
                }
            }
            if let Some(d) = owning_deployment(&new, deployments) {
                enqueue(&d);
            } else if new_owner.is_none() && (old.metadata.labels != new.metadata.labels || old_owner != new_owner) {
                matching_deployments(&new, deployments).iter().for_each(|d| enqueue(d));
            }
        }
    }
}
