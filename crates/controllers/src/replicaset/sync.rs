//! One sync of one ReplicaSet (upstream's `syncReplicaSet`): claim pods, create or
//! delete pods to match `spec.replicas` (unless earlier requests are still outstanding),
//! then write the status.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::ownership::{self, controller_of};
use super::pods::{self, pod_key};
use super::status::{self, ScaleFailure};
use super::{Controller, BURST_REPLICAS};
use crate::events::EventType;

/// Syncs `rs`; returns when it wants to be synced again (a pod becoming available after
/// `minReadySeconds`), if ever.
pub(super) async fn sync(ctl: Arc<Controller>, rs: Arc<ReplicaSet>) -> anyhow::Result<Option<Duration>> {
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{namespace}/{name}");
    let Some(spec) = rs.spec.as_ref() else { return Ok(None) };
    let selector = match ownership::selector(&spec.selector) {
        Ok(s) => s,
        Err(e) => {
            // Invalid selectors are rejected by the API; one that slips through cannot be acted on.
            tracing::warn!(replicaset = %key, error = %format!("{e:#}"), "invalid selector; not syncing");
            return Ok(None);
        }
    };
    let settled = ctl.expectations.satisfied(&key);
    let needs_scaling = settled && rs.metadata.deletion_timestamp.is_none();

    let candidates: Vec<Arc<Pod>> = ctl
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()) && pods::is_active(p))
        .collect();
    let pods_api: Api<Pod> = Api::namespaced(ctl.ctx.client.clone(), &namespace);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctl.ctx.client.clone(), &namespace);
    let owned = ownership::claim(rs.as_ref(), &rs_api, &pods_api, &selector, candidates).await?;

    let mut failure = None;
    let mut scale_error = None;
    if needs_scaling {
        if let Err((reason, e)) = manage_replicas(&ctl, &rs, &key, &owned, &pods_api).await {
            failure = Some(ScaleFailure { reason, message: format!("{e:#}") });
            scale_error = Some(e);
        }
    }

    // Pods we already asked to delete are on their way out even if the cache still shows them.
    let going = ctl.expectations.pending_deletions(&key);
    let counted: Vec<Arc<Pod>> = owned.into_iter().filter(|p| !going.contains(&pod_key(p))).collect();
    let now = Timestamp::now();
    let mut new_status = status::calculate(&rs, &counted, failure.as_ref(), now);
    if !settled {
        // This sync could not act on the spec yet: the status must not claim to reflect
        // it (the Deployment controller trusts a status whose observedGeneration is current).
        new_status.observed_generation = rs.status.as_ref().and_then(|s| s.observed_generation);
    }
    write_status(&rs_api, &rs, new_status).await.with_context(|| format!("updating status of replica set {key}"))?;
    if let Some(e) = scale_error {
        return Err(e);
    }
    Ok(status::next_availability(&counted, spec.min_ready_seconds.unwrap_or(0), now))
}

/// Creates or deletes pods so `owned` matches `spec.replicas`, at most
/// [`BURST_REPLICAS`] per sync. The error names the ReplicaFailure reason.
async fn manage_replicas(
    ctl: &Controller,
    rs: &ReplicaSet,
    key: &str,
    owned: &[Arc<Pod>],
    api: &Api<Pod>,
) -> Result<(), (&'static str, anyhow::Error)> {
    let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    if owned.len() < desired {
        let missing = (desired - owned.len()).min(BURST_REPLICAS);
        ctl.expectations.expect_creations(key, missing);
        let pod = pod_from_template(rs);
        let (created, error) = slow_start_batch(missing, || create_pod(ctl, rs, api, &pod)).await;
        if created < missing {
            // These will never show up in the cache: stop waiting for them.
            ctl.expectations.creations_observed(key, missing - created);
        }
        return error.map_or(Ok(()), |e| Err(("FailedCreate", e)));
    }
    if owned.len() > desired {
        let excess = (owned.len() - desired).min(BURST_REPLICAS);
        let mut victims = owned.to_vec();
        if excess < victims.len() {
            pods::sort_for_deletion(&mut victims, &related_pods(ctl, rs), Timestamp::now());
        }
        victims.truncate(excess);
        ctl.expectations.expect_deletions(key, victims.iter().map(|p| pod_key(p)));
        let results = join_all(victims.iter().map(|p| delete_pod(ctl, rs, key, api, p))).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(("FailedDelete", e));
        }
    }
    Ok(())
}

/// Runs `count` calls of `op` in batches of 1, 2, 4, … and stops at the first batch with
/// a failure, so a ReplicaSet that cannot create pods (quota, bad template) does not
/// flood the API (upstream's `slowStartBatch`). Returns the successes and the first error.
async fn slow_start_batch<F, Fut>(count: usize, mut op: F) -> (usize, Option<anyhow::Error>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let mut remaining = count;
    let mut batch = remaining.min(1);
    let mut successes = 0;
    while batch > 0 {
        let results = join_all((0..batch).map(|_| op())).await;
        successes += results.iter().filter(|r| matches!(r, Ok(true))).count();
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return (successes, Some(e));
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// The pod a ReplicaSet creates: the template's labels, annotations, finalizers and
/// spec, a generated name `<rs>-<5 random>` and a controller reference to the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![ownership::controller_ref(rs)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates one pod; Ok(false) when the namespace is being deleted (nothing to report).
async fn create_pod(ctl: &Controller, rs: &ReplicaSet, api: &Api<Pod>, pod: &Pod) -> anyhow::Result<bool> {
    match api.create(&PostParams::default(), pod).await {
        Ok(created) => {
            let name = created.name_any();
            tracing::debug!(replicaset = %rs.name_any(), pod = %name, "created pod");
            ctl.ctx.metrics.inc("skiff_replicaset_pods_created_total", &[]);
            ctl.ctx.recorder.publish(rs, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {name}")).await;
            Ok(true)
        }
        Err(kube::Error::Api(status)) if namespace_terminating(&status) => Ok(false),
        Err(e) => {
            let message = match &e {
                kube::Error::Api(status) => status.message.clone(),
                other => other.to_string(),
            };
            ctl.ctx
                .recorder
                .publish(rs, EventType::Warning, "FailedCreate", &format!("Error creating: {message}"))
                .await;
            Err(anyhow::Error::new(e).context(format!("creating a pod for replica set {}", rs.name_any())))
        }
    }
}

/// Whether the API refused a creation because the namespace is being deleted: every
/// later creation fails too, and there is nothing to report (upstream ignores it).
fn namespace_terminating(status: &kube::core::Status) -> bool {
    let by_cause = status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    by_cause || status.message.contains("because it is being terminated")
}

/// Deletes one pod; a pod that is already gone is not an error.
async fn delete_pod(ctl: &Controller, rs: &ReplicaSet, key: &str, api: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let name = pod.name_any();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::debug!(replicaset = %key, pod = %name, "deleted pod");
            ctl.ctx.metrics.inc("skiff_replicaset_pods_deleted_total", &[]);
            ctl.ctx.recorder.publish(rs, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}")).await;
            Ok(())
        }
        Err(e) => {
            // No watch event will come for a deletion that did not happen.
            ctl.expectations.deletion_observed(key, &pod_key(pod));
            match e {
                kube::Error::Api(status) if status.is_not_found() => Ok(()),
                e => {
                    let message = match &e {
                        kube::Error::Api(status) => status.message.clone(),
                        other => other.to_string(),
                    };
                    ctl.ctx
                        .recorder
                        .publish(rs, EventType::Warning, "FailedDelete", &format!("Error deleting: {message}"))
                        .await;
                    Err(anyhow::Error::new(e).context(format!("deleting pod {name}")))
                }
            }
        }
    }
}

/// Pods of every ReplicaSet with the same controller as `rs` (the other revisions of a
/// Deployment): scale-down prefers nodes crowded with them.
fn related_pods(ctl: &Controller, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
    let Some(owner) = controller_of(&rs.metadata) else { return Vec::new() };
    let namespace = rs.metadata.namespace.as_deref();
    let selectors: Vec<_> = ctl
        .replicasets
        .state()
        .into_iter()
        .filter(|other| {
            other.metadata.namespace.as_deref() == namespace
                && controller_of(&other.metadata).is_some_and(|r| r.uid == owner.uid)
        })
        .filter_map(|other| other.spec.as_ref().and_then(|s| ownership::selector(&s.selector).ok()))
        .collect();
    ctl.pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == namespace)
        .filter(|p| selectors.iter().any(|s| s.matches(p.labels())))
        .collect()
}

/// Writes `new_status` unless it says what the cached one says. On a conflict the
/// ReplicaSet is read again and the write retried once, as upstream does.
async fn write_status(api: &Api<ReplicaSet>, rs: &ReplicaSet, new_status: ReplicaSetStatus) -> anyhow::Result<()> {
    if status::same(&rs.status.clone().unwrap_or_default(), &new_status) && rs.status.is_some() {
        return Ok(());
    }
    let name = rs.name_any();
    let mut updated = rs.clone();
    updated.status = Some(new_status.clone());
    match api.replace_status(&name, &PostParams::default(), &updated).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_conflict() => {
            let mut fresh = api.get_status(&name).await?;
            fresh.status = Some(new_status);
            api.replace_status(&name, &PostParams::default(), &fresh).await?;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pods_copy_the_template_and_point_at_their_owner() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("prod".into()),
                uid: Some("rs-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "web".to_string())].into()),
                        annotations: Some([("note".to_string(), "x".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "c".into(),
                            image: Some("nginx".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let pod = pod_from_template(&rs);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
        assert_eq!(pod.metadata.annotations.unwrap()["note"], "x");
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("ReplicaSet", "web-abc", "rs-uid"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some("nginx"));
    }

    #[tokio::test]
    async fn slow_start_grows_batches_and_stops_at_the_first_failure() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        })
        .await;
        assert_eq!((ok, err.is_none(), calls.load(Ordering::SeqCst)), (10, true, 10));

        // Batches 1, 2, 4: the fourth call (first of the third batch) fails, so the
        // third batch still runs in full and nothing after it does.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(20, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 3 {
                    anyhow::bail!("quota exceeded")
                }
                Ok(true)
            }
        })
        .await;
        assert_eq!((ok, err.is_some(), calls.load(Ordering::SeqCst)), (6, true, 7));
    }
}
