//! The annotations that tie a Deployment to its ReplicaSets, which `kubectl rollout
//! history` and `kubectl rollout undo` read:
//!
//! - `deployment.kubernetes.io/revision` on each ReplicaSet (and the Deployment): the
//!   rollout sequence number; a ReplicaSet brought back by an undo gets a new number and
//!   keeps its former ones in `deployment.kubernetes.io/revision-history`;
//! - `deployment.kubernetes.io/desired-replicas` / `max-replicas`: the Deployment's size
//!   (and size plus surge) when the ReplicaSet was last scaled — a mismatch marks a
//!   scaling event, and the ratio drives proportional scaling;
//! - every other Deployment annotation (e.g. `kubernetes.io/change-cause`) is copied
//!   onto its new ReplicaSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::replicasets::desired;
use super::strategy::max_surge;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Left by the extensions/v1beta1 rollback API; never copied.
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The revision history annotation is capped at this many characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations that are not copied to ReplicaSets.
fn skip_copy(key: &str) -> bool {
    matches!(key, LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision number; 0 when unset, None when unreadable.
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    annotation(rs, REVISION).map_or(Some(0), |v| v.parse().ok())
}

/// The highest readable revision.
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().filter_map(revision).max().unwrap_or(0).max(0)
}

pub fn desired_replicas(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS)?.parse().ok()
}

pub fn max_replicas(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS)?.parse().ok()
}

fn annotations_mut(rs: &mut ReplicaSet) -> &mut BTreeMap<String, String> {
    rs.metadata.annotations.get_or_insert_with(BTreeMap::new)
}

/// Records the Deployment's size on the ReplicaSet; returns whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let map = annotations_mut(rs);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if map.get(key) != Some(&value) {
            map.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether the size annotations differ from (desired, max).
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Brings the new ReplicaSet's annotations up to date (upstream's
/// `SetNewReplicaSetAnnotations`): copies the Deployment's annotations, raises its
/// revision to `new_revision` when lower (remembering the old number in the history),
/// and, for a ReplicaSet about to be created, records the Deployment's size.
/// Returns whether anything changed.
pub fn set_new_replica_set_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    if let Some(source) = d.metadata.annotations.as_ref() {
        let map = annotations_mut(rs);
        for (key, value) in source.iter().filter(|(k, _)| !skip_copy(k)) {
            if map.get(key) != Some(value) {
                map.insert(key.clone(), value.clone());
                changed = true;
            }
        }
    }
    let old_revision = annotation(rs, REVISION).map(str::to_string);
    let old_number = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(n) => n,
            // An unreadable revision is left alone, as upstream does.
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        annotations_mut(rs).insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old_revision.filter(|o| !o.is_empty()) {
            append_revision_history(annotations_mut(rs), &old);
        }
    }
    if !exists {
        let replicas = desired(d);
        changed |= set_replicas_annotations(rs, replicas, replicas + max_surge(d));
    }
    changed
}

/// Appends `old` to the comma-separated history, dropping the oldest entries if the
/// result would exceed [`MAX_REVISION_HISTORY_CHARS`].
fn append_revision_history(map: &mut BTreeMap<String, String>, old: &str) {
    let history = map.get(REVISION_HISTORY).cloned().unwrap_or_default();
    if history.is_empty() {
        map.insert(REVISION_HISTORY.into(), old.to_string());
        return;
    }
    let mut entries: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + old.len() + 1;
    let mut start = 0;
    while total > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
        total -= entries[start].len() + 1;
        start += 1;
    }
    if total <= MAX_REVISION_HISTORY_CHARS {
        entries.drain(..start);
        entries.push(old);
        map.insert(REVISION_HISTORY.into(), entries.join(","));
    }
}

/// Sets the Deployment's revision annotation; returns whether it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let map = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if map.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    map.insert(REVISION.into(), revision.to_string());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::replicasets::tests::{deployment, rs};

    fn ann<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
        annotation(rs, key)
    }

    #[test]
    fn new_replicaset_gets_revision_size_and_copied_annotations() {
        let mut d = deployment("v1", 3);
        d.metadata.annotations = Some(
            [
                ("kubernetes.io/change-cause".to_string(), "deploy v1".to_string()),
                (LAST_APPLIED.to_string(), "{}".to_string()),
                (REVISION.to_string(), "9".to_string()),
            ]
            .into(),
        );
        let mut new = rs("n", "v1", 1, 0, 0);
        assert!(set_new_replica_set_annotations(&d, &mut new, 1, false));
        assert_eq!(ann(&new, REVISION), Some("1"));
        assert_eq!(ann(&new, "kubernetes.io/change-cause"), Some("deploy v1"));
        assert_eq!(ann(&new, LAST_APPLIED), None);
        assert_eq!(ann(&new, DESIRED_REPLICAS), Some("3"));
        assert_eq!(ann(&new, MAX_REPLICAS), Some("3"), "no rollingUpdate parameters: no surge");
        assert_eq!(ann(&new, REVISION_HISTORY), None);
        assert!(!set_new_replica_set_annotations(&d, &mut new, 1, true), "nothing left to change");
    }

    #[test]
    fn undo_raises_the_revision_and_keeps_history() {
        let d = deployment("v1", 3);
        let mut back = rs("n", "v1", 1, 0, 0);
        annotations_mut(&mut back).insert(REVISION.into(), "1".into());
        assert!(set_new_replica_set_annotations(&d, &mut back, 3, true));
        assert_eq!(ann(&back, REVISION), Some("3"));
        assert_eq!(ann(&back, REVISION_HISTORY), Some("1"));
        assert!(set_new_replica_set_annotations(&d, &mut back, 5, true));
        assert_eq!(ann(&back, REVISION_HISTORY), Some("1,3"));
        // A lower candidate never lowers the revision.
        assert!(!set_new_replica_set_annotations(&d, &mut back, 4, true));
        assert_eq!(ann(&back, REVISION), Some("5"));
        assert_eq!(ann(&back, DESIRED_REPLICAS), None, "existing ReplicaSets are sized by scaling, not here");
    }

    #[test]
    fn history_is_capped() {
        let mut map = BTreeMap::new();
        let long: Vec<String> = (0..600).map(|n| n.to_string()).collect();
        map.insert(REVISION_HISTORY.to_string(), long.join(","));
        append_revision_history(&mut map, "600");
        let history = &map[REVISION_HISTORY];
        assert!(history.len() <= MAX_REVISION_HISTORY_CHARS);
        assert!(history.ends_with(",600"));
        assert!(!history.starts_with("0,"));
    }

    #[test]
    fn revisions_and_deployment_revision() {
        let mut a = rs("a", "v", 1, 0, 0);
        let mut b = rs("b", "v", 1, 0, 0);
        let mut c = rs("c", "v", 1, 0, 0);
        annotations_mut(&mut a).insert(REVISION.into(), "4".into());
        annotations_mut(&mut b).insert(REVISION.into(), "junk".into());
        annotations_mut(&mut c).insert(REVISION.into(), "2".into());
        assert_eq!(revision(&b), None);
        assert_eq!(max_revision([&a, &b, &c]), 4);
        assert_eq!(max_revision([]), 0);
        let mut d = deployment("v", 1);
        assert!(set_deployment_revision(&mut d, "4"));
        assert!(!set_deployment_revision(&mut d, "4"));
        let mut sized = rs("s", "v", 1, 0, 0);
        assert!(replicas_annotations_need_update(&sized, 3, 4));
        set_replicas_annotations(&mut sized, 3, 4);
        assert!(!replicas_annotations_need_update(&sized, 3, 4));
        assert_eq!((desired_replicas(&sized), max_replicas(&sized)), (Some(3), Some(4)));
    }
}
