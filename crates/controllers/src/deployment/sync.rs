//! One sync of one Deployment (upstream's `syncDeployment` and `sync.go`): claim its
//! ReplicaSets, keep the new ReplicaSet's revision and annotations current, handle
//! pauses and scaling events, then take a rollout step ([`super::rolling`],
//! [`super::recreate`]) and write the status.
//!
//! The sync works on a private copy of the Deployment ([`DeploymentSync::d`]) that is
//! replaced by the API's answer after every status write, so successive writes in one
//! sync do not conflict with each other.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::annotations::{self, max_revision, set_deployment_revision, set_new_replica_set_annotations};
use super::hash::{equal_ignore_hash, template_hash, POD_TEMPLATE_HASH};
use super::progress::{self, condition, get_condition, has_progress_deadline, set_condition};
use super::replicasets::{self, by_creation, desired, find_new, find_old, is_active, spec_replicas, status_replicas};
use super::strategy::{self, active_or_latest, is_saturated, max_surge, new_rs_new_replicas, proportion};
use super::Controller;
use crate::events::EventType;
use crate::replicaset::ownership::{self, controller_of};

/// The state of one Deployment sync.
pub(super) struct DeploymentSync {
    pub ctl: Arc<Controller>,
    /// The Deployment as this sync last wrote or read it.
    pub d: Deployment,
    pub rs_api: Api<ReplicaSet>,
    pub d_api: Api<Deployment>,
}

/// Syncs one Deployment; returns when it must be looked at again (its progress deadline).
pub(super) async fn sync(ctl: Arc<Controller>, d: Arc<Deployment>) -> anyhow::Result<Option<Duration>> {
    let namespace = d.namespace().unwrap_or_default();
    let mut run = DeploymentSync {
        rs_api: Api::namespaced(ctl.ctx.client.clone(), &namespace),
        d_api: Api::namespaced(ctl.ctx.client.clone(), &namespace),
        ctl,
        d: (*d).clone(),
    };
    run.sync().await.with_context(|| format!("syncing deployment {namespace}/{}", d.name_any()))
}

impl DeploymentSync {
    async fn sync(&mut self) -> anyhow::Result<Option<Duration>> {
        let Some(spec) = self.d.spec.clone() else { return Ok(None) };
        if ownership::is_empty_selector(&spec.selector) {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
            let observed = self.d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if observed < self.d.metadata.generation.unwrap_or(0) {
                self.d.status.get_or_insert_with(Default::default).observed_generation = self.d.metadata.generation;
                self.write_status().await?;
            }
            return Ok(None);
        }
        let mut rs_list = self.claim_replica_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            self.sync_status_only(&mut rs_list).await?;
            return Ok(None);
        }
        self.check_paused_conditions().await?;
        if spec.paused == Some(true) {
            self.sync_scaling(&mut rs_list).await?;
            return Ok(None);
        }
        if self.is_scaling_event(&mut rs_list).await? {
            self.sync_scaling(&mut rs_list).await?;
            return Ok(None);
        }
        let strategy =
            spec.strategy.as_ref().and_then(|s| s.type_.clone()).unwrap_or_else(|| strategy::ROLLING_UPDATE.into());
        match strategy.as_str() {
            strategy::ROLLING_UPDATE => self.rollout_rolling(&mut rs_list).await,
            strategy::RECREATE => {
                let pods = self.pods_by_replica_set(&rs_list);
                self.rollout_recreate(&mut rs_list, &pods).await
            }
            other => anyhow::bail!("unexpected deployment strategy type: {other}"),
        }
    }

    pub(super) async fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.ctl.ctx.recorder.publish(&self.d, kind, reason, message).await;
    }

    /// Writes `self.d.status` (and the revision annotation) through the status subresource
    /// and keeps the API's answer.
    pub(super) async fn write_status(&mut self) -> anyhow::Result<()> {
        let name = self.d.name_any();
        self.d = self
            .d_api
            .replace_status(&name, &PostParams::default(), &self.d)
            .await
            .with_context(|| format!("updating status of deployment {name}"))?;
        Ok(())
    }

    /// The ReplicaSets this Deployment owns, after adopting and releasing by selector.
    async fn claim_replica_sets(&self) -> anyhow::Result<Vec<ReplicaSet>> {
        let Some(spec) = self.d.spec.as_ref() else { return Ok(Vec::new()) };
        let selector = ownership::selector(&spec.selector)?;
        let namespace = self.d.metadata.namespace.as_deref();
        let candidates: Vec<Arc<ReplicaSet>> = self
            .ctl
            .replicasets
            .state()
            .into_iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == namespace)
            .collect();
        let claimed = ownership::claim(&self.d, &self.d_api, &self.rs_api, &selector, candidates).await?;
        Ok(claimed.into_iter().map(|rs| (*rs).clone()).collect())
    }

    /// Pods of the Deployment's ReplicaSets, by ReplicaSet UID, terminating ones included.
    fn pods_by_replica_set(&self, rs_list: &[ReplicaSet]) -> HashMap<String, Vec<Arc<Pod>>> {
        let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        let Some(selector) = self.d.spec.as_ref().and_then(|s| ownership::selector(&s.selector).ok()) else {
            return map;
        };
        let uids: Vec<&str> = rs_list.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
        let namespace = self.d.metadata.namespace.as_deref();
        for pod in self.ctl.pods.state() {
            if pod.metadata.namespace.as_deref() != namespace || !selector.matches(pod.labels()) {
                continue;
            }
            if let Some(owner) = controller_of(&pod.metadata).filter(|r| uids.contains(&r.uid.as_str())) {
                map.entry(owner.uid.clone()).or_default().push(pod.clone());
            }
        }
        map
    }

    /// Adds the "paused" / "resumed" Progressing condition, so time spent paused does not
    /// count against the progress deadline.
    async fn check_paused_conditions(&mut self) -> anyhow::Result<()> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let reason = get_condition(self.d.status.as_ref(), progress::PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(progress::PROGRESS_DEADLINE_EXCEEDED) {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let paused_recorded = reason.as_deref() == Some(progress::DEPLOYMENT_PAUSED);
        let (new_reason, message) = match (paused, paused_recorded) {
            (true, false) => (progress::DEPLOYMENT_PAUSED, "Deployment is paused"),
            (false, true) => (progress::DEPLOYMENT_RESUMED, "Deployment is resumed"),
            _ => return Ok(()),
        };
        let status = self.d.status.get_or_insert_with(Default::default);
        set_condition(
            status,
            condition(progress::PROGRESSING, "Unknown", new_reason, message.into(), Timestamp::now()),
        );
        self.write_status().await
    }

    /// The new ReplicaSet (created if `create` and missing) and all old ones, with the
    /// new one's revision and annotations and the Deployment's revision brought up to date.
    pub(super) async fn get_all_and_sync_revision(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> anyhow::Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let old = find_old(&self.d, rs_list);
        let new = self.get_new_replica_set(rs_list, &old, create).await?;
        Ok((new, old))
    }

    async fn get_new_replica_set(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> anyhow::Result<Option<ReplicaSet>> {
        let new_revision = max_revision(old) + 1;
        if let Some(existing) = find_new(&self.d, rs_list).cloned() {
            return self.sync_existing_new_replica_set(rs_list, existing, new_revision).await.map(Some);
        }
        if !create {
            return Ok(None);
        }
        self.create_new_replica_set(rs_list, old, new_revision).await.map(Some)
    }

    async fn sync_existing_new_replica_set(
        &mut self,
        rs_list: &mut [ReplicaSet],
        existing: ReplicaSet,
        new_revision: i64,
    ) -> anyhow::Result<ReplicaSet> {
        let mut copy = existing.clone();
        let annotations_changed = set_new_replica_set_annotations(&self.d, &mut copy, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let min_ready_changed = copy.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0) != min_ready;
        if annotations_changed || min_ready_changed {
            let name = copy.name_any();
            let patch = json!({
                "metadata": {"resourceVersion": copy.metadata.resource_version, "annotations": copy.metadata.annotations},
                "spec": {"minReadySeconds": min_ready},
            });
            let updated = self
                .rs_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("updating annotations of replica set {name}"))?;
            replace(rs_list, &updated);
            return Ok(updated);
        }
        let revision = copy.annotations().get(annotations::REVISION).cloned().unwrap_or_default();
        let mut needs_update = set_deployment_revision(&mut self.d, &revision);
        if has_progress_deadline(&self.d) && get_condition(self.d.status.as_ref(), progress::PROGRESSING).is_none() {
            let message = format!("Found new replica set {:?}", copy.name_any());
            let status = self.d.status.get_or_insert_with(Default::default);
            set_condition(
                status,
                condition(progress::PROGRESSING, "True", progress::FOUND_NEW_REPLICA_SET, message, Timestamp::now()),
            );
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        Ok(copy)
    }

    /// Creates the ReplicaSet for the current template, named `<deployment>-<hash>`.
    async fn create_new_replica_set(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        old: &[ReplicaSet],
        new_revision: i64,
    ) -> anyhow::Result<ReplicaSet> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(Default::default);
        let mut labels = template_meta.labels.clone().unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        template_meta.labels = Some(labels.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![ownership::controller_ref(&self.d)]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&new_rs]).collect();
        let replicas = new_rs_new_replicas(&self.d, &all, &new_rs);
        if let Some(s) = new_rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        set_new_replica_set_annotations(&self.d, &mut new_rs, new_revision, false);

        let (created, already_existed) = match self.rs_api.create(&PostParams::default(), &new_rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                (self.resolve_name_clash(&name, anyhow::Error::new(kube::Error::Api(status))).await?, true)
            }
            Err(e) => {
                let detail = match &e {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                let message = format!("Failed to create new replica set {name:?}: {detail}");
                if has_progress_deadline(&self.d) {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    set_condition(
                        status,
                        condition(
                            progress::PROGRESSING,
                            "False",
                            progress::FAILED_RS_CREATE,
                            message.clone(),
                            Timestamp::now(),
                        ),
                    );
                    // The creation error is the one to report.
                    let _ = self.write_status().await;
                }
                self.event(EventType::Warning, progress::FAILED_RS_CREATE, &message).await;
                return Err(anyhow::Error::new(e).context(format!("creating replica set {name}")));
            }
        };
        if !already_existed && replicas > 0 {
            self.ctl.ctx.metrics.inc("skiff_deployment_replicaset_scalings_total", &[("direction", "up")]);
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                &format!("Scaled up replica set {name} from 0 to {replicas}"),
            )
            .await;
        }
        let mut needs_update = set_deployment_revision(&mut self.d, &new_revision.to_string());
        if !already_existed && has_progress_deadline(&self.d) {
            let status = self.d.status.get_or_insert_with(Default::default);
            let message = format!("Created new replica set {name:?}");
            set_condition(
                status,
                condition(progress::PROGRESSING, "True", progress::NEW_REPLICA_SET_CREATED, message, Timestamp::now()),
            );
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        if !rs_list.iter().any(|rs| rs.metadata.uid == created.metadata.uid) {
            rs_list.push(created.clone());
        }
        Ok(created)
    }

    /// The ReplicaSet name is taken: either it is ours with the current template (our
    /// cache had not seen it yet), or another template hashed to the same name — then
    /// `status.collisionCount` goes up so the next attempt picks a different name.
    async fn resolve_name_clash(&mut self, name: &str, error: anyhow::Error) -> anyhow::Result<ReplicaSet> {
        let namespace = self.d.namespace().unwrap_or_default();
        let existing = match self.ctl.replicasets.get(&ObjectRef::new(name).within(&namespace)) {
            Some(rs) => (*rs).clone(),
            None => self.rs_api.get(name).await.with_context(|| format!("reading replica set {name}"))?,
        };
        let ours = controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
        let same_template = match (self.d.spec.as_ref(), existing.spec.as_ref().and_then(|s| s.template.as_ref())) {
            (Some(spec), Some(template)) => equal_ignore_hash(&spec.template, template),
            _ => false,
        };
        if ours && same_template {
            return Ok(existing);
        }
        let status = self.d.status.get_or_insert_with(Default::default);
        let collisions = status.collision_count.unwrap_or(0) + 1;
        status.collision_count = Some(collisions);
        if let Err(e) = self.write_status().await {
            tracing::debug!(error = %format!("{e:#}"), "recording a hash collision failed");
        }
        Err(error.context(format!("hash collision on replica set {name}; collisionCount is now {collisions}")))
    }

    /// Whether some active ReplicaSet was sized for a different `spec.replicas`.
    async fn is_scaling_event(&mut self, rs_list: &mut Vec<ReplicaSet>) -> anyhow::Result<bool> {
        let (new, old) = self.get_all_and_sync_revision(rs_list, false).await?;
        let replicas = desired(&self.d);
        Ok(old
            .iter()
            .chain(new.as_ref())
            .filter(|rs| is_active(rs))
            .any(|rs| annotations::desired_replicas(rs).is_some_and(|d| d != replicas)))
    }

    /// Scaling and paused Deployments: resize without rolling out (upstream's `sync`).
    async fn sync_scaling(&mut self, rs_list: &mut Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (new, old) = self.get_all_and_sync_revision(rs_list, false).await?;
        self.scale(new.as_ref(), &old).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    async fn sync_status_only(&mut self, rs_list: &mut Vec<ReplicaSet>) -> anyhow::Result<()> {
        let (new, old) = self.get_all_and_sync_revision(rs_list, false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    async fn sync_deployment_status(&mut self, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> anyhow::Result<()> {
        let status = progress::calculate_status(all, new, &self.d, Timestamp::now());
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// Writes the rollout status; when nothing changed, returns when to check the
    /// progress deadline again.
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> anyhow::Result<Option<Duration>> {
        let now = Timestamp::now();
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        let status = progress::rollout_status(&refs, new, &self.d, now);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(progress::recheck_after(&self.d, &status, now));
        }
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(None)
    }

    /// Brings the ReplicaSets to the Deployment's size (upstream's `scale`): the only
    /// active one takes it all; a saturated new one leaves the old ones nothing; otherwise
    /// a rolling Deployment spreads the difference proportionally, the remainder going to
    /// the largest ReplicaSet.
    async fn scale(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> anyhow::Result<()> {
        let replicas = desired(&self.d);
        if let Some(target) = active_or_latest(new, old) {
            if spec_replicas(target) != replicas {
                let target = target.clone();
                self.scale_and_record(&target, replicas).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new) {
            for rs in old.iter().filter(|rs| is_active(rs)) {
                self.scale_and_record(rs, 0).await?;
            }
            return Ok(());
        }
        if !strategy::is_rolling(&self.d) {
            return Ok(());
        }
        let mut all: Vec<ReplicaSet> = old.iter().chain(new).filter(|rs| is_active(rs)).cloned().collect();
        let allowed = if replicas > 0 { replicas + max_surge(&self.d) } else { 0 };
        let to_add = allowed - replicasets::total_spec_replicas(&all);
        let direction = match to_add.cmp(&0) {
            Ordering::Greater => {
                all.sort_by(replicasets::by_size_newer);
                "up"
            }
            Ordering::Less => {
                all.sort_by(replicasets::by_size_older);
                "down"
            }
            Ordering::Equal => "",
        };
        let mut added = 0;
        let mut sizes = Vec::with_capacity(all.len());
        for rs in &all {
            let share = if to_add != 0 { proportion(rs, &self.d, to_add, added) } else { 0 };
            added += share;
            sizes.push(spec_replicas(rs) + share);
        }
        for (i, rs) in all.iter().enumerate() {
            let mut size = sizes[i];
            if i == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_replica_set(rs, size, direction).await?;
        }
        Ok(())
    }

    /// Resizes `rs` if needed; returns whether it was resized, and its latest version.
    pub(super) async fn scale_and_record(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> anyhow::Result<(bool, ReplicaSet)> {
        if spec_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let direction = if spec_replicas(rs) < new_scale { "up" } else { "down" };
        self.scale_replica_set(rs, new_scale, direction).await
    }

    /// Sets `spec.replicas` and the size annotations (a conditional merge patch); records
    /// a ScalingReplicaSet event when the size changed.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
        direction: &str,
    ) -> anyhow::Result<(bool, ReplicaSet)> {
        let replicas = desired(&self.d);
        let max = replicas + max_surge(&self.d);
        let resize = spec_replicas(rs) != new_scale;
        if !resize && !annotations::replicas_annotations_need_update(rs, replicas, max) {
            return Ok((false, rs.clone()));
        }
        let name = rs.name_any();
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.metadata.resource_version,
                "annotations": {
                    annotations::DESIRED_REPLICAS: replicas.to_string(),
                    annotations::MAX_REPLICAS: max.to_string(),
                },
            },
            "spec": {"replicas": new_scale},
        });
        let updated = self
            .rs_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("scaling replica set {name} to {new_scale}"))?;
        if resize {
            self.ctl.ctx.metrics.inc("skiff_deployment_replicaset_scalings_total", &[("direction", direction)]);
            let message = format!("Scaled {direction} replica set {name} from {} to {new_scale}", spec_replicas(rs));
            self.event(EventType::Normal, "ScalingReplicaSet", &message).await;
        }
        Ok((resize, updated))
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit`, only those with no
    /// pods left whose status is current.
    pub(super) async fn cleanup(&mut self, old: &[ReplicaSet]) -> anyhow::Result<()> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).filter(|l| *l != i32::MAX) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess as usize) {
            if status_replicas(rs) != 0 || spec_replicas(rs) != 0 || !replicasets::status_is_current(rs) {
                continue;
            }
            let name = rs.name_any();
            tracing::debug!(deployment = %self.d.name_any(), replicaset = %name, "deleting old revision");
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(anyhow::Error::new(e).context(format!("deleting old replica set {name}"))),
            }
        }
        Ok(())
    }
}

/// Lowest revision first, equal revisions by creation time; unreadable revisions last
/// (upstream compares those by creation time only, which is not a total order).
fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let key = |rs: &ReplicaSet| annotations::revision(rs).map_or((1, 0), |r| (0, r));
    key(a).cmp(&key(b)).then_with(|| by_creation(a, b))
}

/// Puts `updated` in place of the ReplicaSet with the same UID.
fn replace(rs_list: &mut [ReplicaSet], updated: &ReplicaSet) {
    if let Some(slot) = rs_list.iter_mut().find(|rs| rs.metadata.uid == updated.metadata.uid) {
        *slot = updated.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::replicasets::tests::rs;

    #[test]
    fn revisions_sort_numerically_then_by_age() {
        let mut a = rs("a", "v", 3, 0, 0);
        let mut b = rs("b", "v", 1, 0, 0);
        let mut c = rs("c", "v", 2, 0, 0);
        a.metadata.annotations = Some([(annotations::REVISION.to_string(), "10".to_string())].into());
        b.metadata.annotations = Some([(annotations::REVISION.to_string(), "9".to_string())].into());
        c.metadata.annotations = Some([(annotations::REVISION.to_string(), "x".to_string())].into());
        let mut list = [&a, &b, &c];
        list.sort_by(|x, y| by_revision(x, y));
        let names: Vec<&str> = list.iter().map(|r| r.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        c.metadata.annotations = None;
        let mut list = [&a, &b, &c];
        list.sort_by(|x, y| by_revision(x, y));
        let names: Vec<&str> = list.iter().map(|r| r.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["c", "b", "a"], "no revision reads as 0");
    }
}
