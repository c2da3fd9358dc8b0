//! The RollingUpdate strategy (upstream's `rolling.go`): each sync either grows the new
//! ReplicaSet (within `replicas + maxSurge` pods) or shrinks old ones (keeping at least
//! `replicas - maxUnavailable` pods available), never both, and then reports status.
//! The next step happens when the ReplicaSets' statuses change.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::progress::is_complete;
use super::replicasets::{
    available_replicas, by_creation, desired, is_active, spec_replicas, status_is_current, total_available,
    total_spec_replicas,
};
use super::strategy::{max_unavailable, new_rs_new_replicas};
use super::sync::DeploymentSync;

impl DeploymentSync {
    /// One rolling-update step.
    pub(super) async fn rollout_rolling(&mut self, rs_list: &mut Vec<ReplicaSet>) -> anyhow::Result<Option<Duration>> {
        let (new, old) = self.get_all_and_sync_revision(rs_list, true).await?;
        let Some(new) = new else { anyhow::bail!("the new replica set was not created") };
        let all: Vec<ReplicaSet> = old.iter().cloned().chain([new.clone()]).collect();

        if self.reconcile_new_replica_set(&all, &new).await? {
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        let active_old: Vec<ReplicaSet> = old.iter().filter(|rs| is_active(rs)).cloned().collect();
        if self.reconcile_old_replica_sets(&all, active_old, &new).await? {
            return self.sync_rollout_status(&all, Some(&new)).await;
        }
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, Some(&new)).await
    }

    /// Grows (or, if too big, shrinks) the new ReplicaSet; returns whether it changed.
    async fn reconcile_new_replica_set(&mut self, all: &[ReplicaSet], new: &ReplicaSet) -> anyhow::Result<bool> {
        let replicas = desired(&self.d);
        let current = spec_replicas(new);
        if current == replicas {
            return Ok(false);
        }
        let target = if current > replicas {
            replicas
        } else {
            let refs: Vec<&ReplicaSet> = all.iter().collect();
            new_rs_new_replicas(&self.d, &refs, new)
        };
        Ok(self.scale_and_record(new, target).await?.0)
    }

    /// Shrinks old ReplicaSets as far as availability allows: first by their unavailable
    /// pods (removing those costs nothing), then by available ones down to
    /// `replicas - maxUnavailable`. Returns whether anything shrank.
    async fn reconcile_old_replica_sets(
        &mut self,
        all: &[ReplicaSet],
        old: Vec<ReplicaSet>,
        new: &ReplicaSet,
    ) -> anyhow::Result<bool> {
        if total_spec_replicas(&old) == 0 {
            return Ok(false);
        }
        // Stricter than upstream: an old ReplicaSet whose status predates its latest spec
        // may still count pods it is deleting as available; wait for its controller.
        if old.iter().any(|rs| !status_is_current(rs)) {
            return Ok(false);
        }
        let min_available = desired(&self.d) - max_unavailable(&self.d);
        let new_unavailable = spec_replicas(new) - available_replicas(new);
        // Unavailable new pods must not let old available ones go (upstream's example: a
        // crash-looping new template must not eat the old pods).
        let max_scaled_down = total_spec_replicas(all) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let (old, cleaned) = self.cleanup_unhealthy_replicas(old, max_scaled_down).await?;
        let all: Vec<ReplicaSet> = old.iter().cloned().chain([new.clone()]).collect();
        let scaled = self.scale_down_old_for_rolling_update(&all, &old).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Removes old ReplicaSets' unavailable pods (oldest ReplicaSet first), at most
    /// `max_cleanup`; returns the updated ReplicaSets and how many pods went.
    async fn cleanup_unhealthy_replicas(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max_cleanup: i32,
    ) -> anyhow::Result<(Vec<ReplicaSet>, i32)> {
        old.sort_by(by_creation);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let size = spec_replicas(rs);
            let unhealthy = size - available_replicas(rs);
            if size == 0 || unhealthy <= 0 {
                continue;
            }
            let shed = (max_cleanup - total).min(unhealthy);
            let (_, updated) = self.scale_and_record(rs, size - shed).await?;
            *rs = updated;
            total += shed;
        }
        Ok((old, total))
    }

    /// Shrinks old ReplicaSets (oldest first) by as many pods as are available beyond
    /// `replicas - maxUnavailable`; returns how many went.
    async fn scale_down_old_for_rolling_update(
        &mut self,
        all: &[ReplicaSet],
        old: &[ReplicaSet],
    ) -> anyhow::Result<i32> {
        let min_available = desired(&self.d) - max_unavailable(&self.d);
        let available = total_available(all);
        if available <= min_available {
            return Ok(0);
        }
        let mut old = old.to_vec();
        old.sort_by(by_creation);
        let to_remove = available - min_available;
        let mut removed = 0;
        for rs in &old {
            if removed >= to_remove {
                break;
            }
            let size = spec_replicas(rs);
            if size == 0 {
                continue;
            }
            let shed = size.min(to_remove - removed);
            self.scale_and_record(rs, size - shed).await?;
            removed += shed;
        }
        Ok(removed)
    }
}
