//! Namespace lifecycle: empties a Namespace being deleted, then lets the API server remove
//! it (upstream's namespace controller).
//!
//! `kubectl delete namespace x` makes the API server set a deletionTimestamp and phase
//! Terminating, and keep the namespace while `spec.finalizers` holds `kubernetes`. This
//! controller then deletes every object of every namespaced resource the API serves in it
//! (found through discovery), reports progress in the namespace's status conditions like
//! upstream (NamespaceContentRemaining, NamespaceFinalizersRemaining, ...), and once the
//! namespace is empty removes `kubernetes` through the `finalize` subresource — with no
//! finalizer left, the API server deletes the namespace.
//!
//! Pods bound to a node terminate gracefully: they keep existing, with a deletionTimestamp
//! at the end of their grace period, until their node agent confirms they stopped. If one
//! is still there after that time, it is force-deleted (grace period 0), as upstream's pod
//! garbage collector does for terminating pods no agent finishes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;

use crate::context::Context;
use crate::gc::resources::{self, ServedResource};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going away is looked at again.
const POLL: Duration = Duration::from_secs(1);
/// Longest wait for pods that are within their termination grace period.
const MAX_GRACE_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Runs the namespace controller until the process ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(4))
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                if !matches!(e, controller::Error::ObjectNotFound(_)) {
                    tracing::warn!(error = %e, "namespace controller");
                }
            }
        })
        .await;
    Ok(())
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.inc("skiff_controller_sync_errors_total", &[("controller", "namespace")]);
    tracing::debug!(%error, "namespace sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = sync(&ns, &ctx).await;
    let labels = [("controller", "namespace")];
    ctx.metrics.inc("skiff_controller_syncs_total", &labels);
    ctx.metrics.observe("skiff_controller_sync_duration_seconds", &labels, started.elapsed().as_secs_f64());
    result
}

async fn sync(ns: &Namespace, ctx: &Context) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let ours = ns.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if ns.metadata.deletion_timestamp.is_none() || !ours {
        return Ok(Action::await_change());
    }
    let served = resources::discover(&ctx.client).await?;
    let progress = delete_content(ctx, &name, &served).await;
    update_conditions(ctx, ns, &progress).await?;
    if !progress.is_done() {
        return Ok(Action::requeue(progress.next_look()));
    }
    finalize(ctx, &name).await?;
    tracing::info!(namespace = %name, "namespace emptied; finalized");
    Ok(Action::await_change())
}

/// What is left in a namespace after one deletion pass.
#[derive(Debug, Default)]
struct Progress {
    /// Remaining objects per resource (`pods.`, `deployments.apps`).
    remaining: BTreeMap<String, usize>,
    /// Remaining objects per finalizer they carry.
    finalizers: BTreeMap<String, usize>,
    /// Resources whose deletion failed, with why.
    failures: Vec<String>,
    /// Whether only pods within their grace period remain, and the earliest end of one.
    earliest_grace_end: Option<Timestamp>,
    only_graceful_pods: bool,
}

impl Progress {
    fn is_done(&self) -> bool {
        self.remaining.is_empty() && self.failures.is_empty()
    }

    /// When to look again: at the end of the first grace period if only terminating pods
    /// are left, soon otherwise.
    fn next_look(&self) -> Duration {
        match (self.only_graceful_pods && self.failures.is_empty(), self.earliest_grace_end) {
            (true, Some(end)) => {
                let left = end.duration_since(Timestamp::now());
                Duration::try_from(left).unwrap_or(Duration::ZERO).clamp(POLL, MAX_GRACE_WAIT)
            }
            _ => POLL,
        }
    }
}

/// Deletes everything in `namespace` and counts what is left.
async fn delete_content(ctx: &Context, namespace: &str, served: &[ServedResource]) -> Progress {
    let mut progress = Progress { only_graceful_pods: true, ..Default::default() };
    let deletable = served.iter().filter(|r| r.namespaced && r.supports("list") && r.supports("delete"));
    for resource in deletable {
        if let Err(e) = delete_resource(ctx, namespace, resource, &mut progress).await {
            progress.failures.push(format!("{}: {e}", resource.group_resource()));
        }
    }
    progress
}

async fn delete_resource(
    ctx: &Context,
    namespace: &str,
    resource: &ServedResource,
    progress: &mut Progress,
) -> Result<(), kube::Error> {
    let api = resource.api(&ctx.client, Some(namespace));
    let is_pod = resource.resource.group.is_empty() && resource.resource.plural == "pods";
    if resource.supports("deletecollection") {
        api.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    } else {
        for item in api.list_metadata(&ListParams::default()).await?.items {
            if item.metadata.deletion_timestamp.is_none() {
                let name = item.metadata.name.unwrap_or_default();
                ignore_not_found(api.delete(&name, &DeleteParams::default()).await.map(|_| ()))?;
            }
        }
    }
    let now = Timestamp::now();
    for item in api.list_metadata(&ListParams::default()).await?.items {
        let meta = item.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let grace_end = meta.deletion_timestamp.as_ref().map(|t| t.0);
        let finalizers = meta.finalizers.unwrap_or_default();
        if is_pod && finalizers.is_empty() && grace_end.is_some_and(|end| end <= now) {
            // Its grace period is over and no node agent finished it.
            tracing::info!(%namespace, pod = %name, "force-deleting pod whose grace period is over");
            let force = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
            ignore_not_found(api.delete(&name, &force).await.map(|_| ()))?;
            continue;
        }
        *progress.remaining.entry(resource.group_resource()).or_default() += 1;
        for f in &finalizers {
            *progress.finalizers.entry(f.clone()).or_default() += 1;
        }
        match grace_end {
            Some(end) if is_pod && finalizers.is_empty() => {
                progress.earliest_grace_end = Some(progress.earliest_grace_end.map_or(end, |e| e.min(end)));
            }
            _ => progress.only_graceful_pods = false,
        }
    }
    Ok(())
}

fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    }
}

/// The deletion conditions upstream reports on a Terminating namespace, for `progress`.
fn conditions(progress: &Progress) -> Vec<(&'static str, bool, &'static str, String)> {
    let content_failure = if progress.failures.is_empty() {
        (false, "ContentDeleted", "All content successfully deleted, may be waiting on finalization".to_string())
    } else {
        (
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                progress.failures.len(),
                progress.failures.join(", ")
            ),
        )
    };
    let remaining = if progress.remaining.is_empty() {
        (false, "ContentRemoved", "All content successfully removed".to_string())
    } else {
        let parts: Vec<String> =
            progress.remaining.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        (true, "SomeResourcesRemain", format!("Some resources are remaining: {}", parts.join(", ")))
    };
    let finalizers = if progress.finalizers.is_empty() {
        (false, "ContentHasNoFinalizers", "All content-preserving finalizers finished".to_string())
    } else {
        let parts: Vec<String> =
            progress.finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        (
            true,
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", parts.join(", ")),
        )
    };
    vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        ("NamespaceDeletionContentFailure", content_failure.0, content_failure.1, content_failure.2),
        ("NamespaceContentRemaining", remaining.0, remaining.1, remaining.2),
        ("NamespaceFinalizersRemaining", finalizers.0, finalizers.1, finalizers.2),
    ]
}

/// Writes the deletion conditions when they changed (keeping the transition time of the
/// ones whose status did not).
async fn update_conditions(ctx: &Context, ns: &Namespace, progress: &Progress) -> Result<(), kube::Error> {
    let current = ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(Timestamp::now());
    let wanted: Vec<NamespaceCondition> = conditions(progress)
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let status = if status { "True" } else { "False" };
            let previous = current.iter().find(|c| c.type_ == type_);
            let since = previous.filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone());
            NamespaceCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(since.unwrap_or_else(|| now.clone())),
            }
        })
        .collect();
    let same = wanted.len() == current.len()
        && wanted.iter().all(|w| {
            current
                .iter()
                .any(|c| c.type_ == w.type_ && c.status == w.status && c.reason == w.reason && c.message == w.message)
        });
    if same {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let name = ns.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"status": {"phase": "Terminating", "conditions": wanted}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Removes this controller's finalizer through `/finalize`; the API server deletes the
/// namespace when no finalizer is left.
async fn finalize(ctx: &Context, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let Some(mut latest) = api.get_opt(name).await? else { return Ok(()) };
    if let Some(spec) = latest.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|f| f != FINALIZER);
        }
    }
    match api.replace_subresource("finalize", name, &PostParams::default(), &latest).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_describe_what_remains() {
        let mut progress = Progress::default();
        let done = conditions(&progress);
        assert!(done.iter().all(|(_, status, _, _)| !status));
        assert_eq!(done[3].2, "ContentRemoved");
        progress.remaining.insert("pods.".into(), 2);
        progress.remaining.insert("configmaps.".into(), 1);
        progress.finalizers.insert("example.com/hold".into(), 1);
        let left = conditions(&progress);
        assert_eq!(left[3].0, "NamespaceContentRemaining");
        assert!(left[3].1);
        assert_eq!(
            left[3].3,
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
        );
        assert_eq!(
            left[4].3,
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert!(!progress.is_done());
    }

    #[test]
    fn waits_for_grace_periods_but_not_too_long() {
        let mut progress = Progress { only_graceful_pods: true, ..Default::default() };
        progress.remaining.insert("pods.".into(), 1);
        progress.earliest_grace_end = Some(Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(5));
        let wait = progress.next_look();
        assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(5), "{wait:?}");
        progress.earliest_grace_end = Some(Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(500));
        assert_eq!(progress.next_look(), MAX_GRACE_WAIT);
        progress.only_graceful_pods = false;
        assert_eq!(progress.next_look(), POLL);
    }
}
