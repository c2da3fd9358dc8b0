//! The Recreate strategy (upstream's `recreate.go`): scale every old ReplicaSet to zero,
//! wait until none of their pods exists any more (terminating ones included), and only
//! then create and scale up the new ReplicaSet — old and new pods never run together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::progress::is_complete;
use super::replicasets::{desired, is_active, status_replicas};
use super::sync::DeploymentSync;

impl DeploymentSync {
    /// One Recreate step. `pods` are the Deployment's pods by ReplicaSet UID.
    pub(super) async fn rollout_recreate(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        pods: &HashMap<String, Vec<Arc<Pod>>>,
    ) -> anyhow::Result<Option<Duration>> {
        // Not creating the new ReplicaSet yet: nothing may scale up before the old is gone.
        let (mut new, mut old) = self.get_all_and_sync_revision(rs_list, false).await?;
        let mut all: Vec<ReplicaSet> = old.iter().cloned().chain(new.clone()).collect();

        let mut scaled_down = false;
        for rs in old.iter().filter(|rs| is_active(rs)) {
            scaled_down |= self.scale_and_record(rs, 0).await?.0;
        }
        if scaled_down || old_pods_running(new.as_ref(), &old, pods) {
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if new.is_none() {
            (new, old) = self.get_all_and_sync_revision(rs_list, true).await?;
            all = old.iter().cloned().chain(new.clone()).collect();
        }
        if let Some(rs) = new.clone() {
            self.scale_and_record(&rs, desired(&self.d)).await?;
        }
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, new.as_ref()).await
    }
}

/// Whether any pod of an old ReplicaSet still exists and has not finished.
fn old_pods_running(new: Option<&ReplicaSet>, old: &[ReplicaSet], pods: &HashMap<String, Vec<Arc<Pod>>>) -> bool {
    if old.iter().map(status_replicas).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
    pods.iter()
        .filter(|(uid, _)| Some(uid.as_str()) != new_uid)
        .flat_map(|(_, pods)| pods)
        .any(|pod| !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed") | Some("Succeeded")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::replicasets::tests::rs;
    use k8s_openapi::api::core::v1::PodStatus;

    fn pod(phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn waits_for_every_old_pod() {
        let new = rs("new", "v2", 2, 0, 0);
        let old = rs("old", "v1", 1, 0, 0);
        let mut pods = HashMap::new();
        assert!(!old_pods_running(Some(&new), std::slice::from_ref(&old), &pods));
        pods.insert("uid-new".to_string(), vec![pod("Running")]);
        assert!(!old_pods_running(Some(&new), std::slice::from_ref(&old), &pods), "new pods do not count");
        pods.insert("uid-old".to_string(), vec![pod("Succeeded")]);
        assert!(!old_pods_running(Some(&new), std::slice::from_ref(&old), &pods), "finished pods do not count");
        pods.insert("uid-old".to_string(), vec![pod("Running")]);
        assert!(old_pods_running(Some(&new), std::slice::from_ref(&old), &pods));
        let mut counted = old.clone();
        counted.status.as_mut().unwrap().replicas = 1;
        assert!(old_pods_running(Some(&new), &[counted], &HashMap::new()));
    }
}
