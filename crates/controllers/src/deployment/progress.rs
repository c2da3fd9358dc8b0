//! A Deployment's status and conditions (upstream's `calculateStatus` and
//! `syncRolloutStatus`):
//!
//! - counts are summed over its ReplicaSets' statuses; `updatedReplicas` are the new
//!   ReplicaSet's;
//! - `Available` is True (MinimumReplicasAvailable) while at least
//!   `replicas - maxUnavailable` pods are available, else False (MinimumReplicasUnavailable);
//! - `Progressing` follows the rollout: NewReplicaSetCreated / FoundNewReplicaSet when the
//!   new ReplicaSet appears, ReplicaSetUpdated whenever pods move, NewReplicaSetAvailable
//!   when it is complete, and False / ProgressDeadlineExceeded when nothing moved for
//!   `progressDeadlineSeconds`; DeploymentPaused / DeploymentResumed around pauses;
//! - a ReplicaSet's ReplicaFailure condition is surfaced on the Deployment.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;

use super::replicasets::{available_replicas, desired, ready_replicas, spec_replicas, status_replicas};
use super::strategy::max_unavailable;
use crate::replicaset::status::{api_time, REPLICA_FAILURE};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";

pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
pub const DEPLOYMENT_PAUSED: &str = "DeploymentPaused";
pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";

/// A condition observed at `now`.
pub fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    }
}

pub fn get_condition<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, as upstream's `SetDeploymentCondition`: no change when status and
/// reason are the same; the transition time is kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Whether `progressDeadlineSeconds` applies (unset or MaxInt32 means "never").
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|s| s != i32::MAX)
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The counts and the Available condition for the Deployment owning `all` (the new
/// ReplicaSet, if any, among them). Zero counts are left out, as upstream's are.
pub fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
    let total_spec: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let previous = d.status.as_ref();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(all.iter().map(|rs| status_replicas(rs)).sum()),
        updated_replicas: nonzero(new_rs.map_or(0, status_replicas)),
        ready_replicas: nonzero(all.iter().map(|rs| ready_replicas(rs)).sum()),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero((total_spec - available).max(0)),
        collision_count: previous.and_then(|s| s.collision_count),
        conditions: previous.and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let available_condition = if available >= desired(d) - max_unavailable(d) {
        condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability.".into(), now)
    } else {
        condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, available_condition);
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// All desired pods are updated and available, no old pods remain, and the latest spec
/// was observed.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = desired(d);
    count(status.updated_replicas) == replicas
        && count(status.replicas) == replicas
        && count(status.available_replicas) == replicas
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Pods moved since the Deployment's recorded status: more updated, fewer old, more
/// ready or more available.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// When the Progressing condition last moved plus the deadline: the moment the rollout
/// counts as stuck, unless it already completed or timed out.
fn deadline(d: &Deployment, status: &DeploymentStatus) -> Option<Timestamp> {
    if !has_progress_deadline(d) {
        return None;
    }
    let progressing = get_condition(Some(status), PROGRESSING)?;
    match progressing.reason.as_deref() {
        Some(NEW_REPLICA_SET_AVAILABLE) | Some(PROGRESS_DEADLINE_EXCEEDED) => None,
        _ => {
            let seconds = i64::from(d.spec.as_ref()?.progress_deadline_seconds?);
            let from = progressing.last_update_time.as_ref()?.0;
            Timestamp::from_second(from.as_second() + seconds).ok()
        }
    }
}

/// Whether the rollout has made no progress for `progressDeadlineSeconds`.
pub fn is_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let reason = get_condition(Some(status), PROGRESSING).and_then(|c| c.reason.as_deref());
    if reason == Some(PROGRESS_DEADLINE_EXCEEDED) {
        return true;
    }
    deadline(d, status).is_some_and(|at| at < now)
}

/// The status after this sync's rollout step (upstream's `syncRolloutStatus`, without
/// the write).
pub fn rollout_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(all, new_rs, d, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(d.status.as_ref(), PROGRESSING);
    let already_complete = count(status.replicas) == count(status.updated_replicas)
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_REPLICA_SET_AVAILABLE));
    let name = d.metadata.name.clone().unwrap_or_default();
    let subject = match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(rs) => format!("ReplicaSet {rs:?}"),
        None => format!("Deployment {name:?}"),
    };
    if has_progress_deadline(d) && !already_complete {
        if is_complete(d, &status) {
            let message = format!("{subject} has successfully progressed.");
            set_condition(&mut status, condition(PROGRESSING, "True", NEW_REPLICA_SET_AVAILABLE, message, now));
        } else if is_progressing(d, &status) {
            // Unlike other conditions, every sign of progress refreshes lastUpdateTime.
            let mut progressing =
                condition(PROGRESSING, "True", REPLICA_SET_UPDATED, format!("{subject} is progressing."), now);
            if let Some(current) = current {
                if current.status == "True" {
                    progressing.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, progressing);
        } else if is_timed_out(d, &status, now) {
            let message = format!("{subject} has timed out progressing.");
            set_condition(&mut status, condition(PROGRESSING, "False", PROGRESS_DEADLINE_EXCEEDED, message, now));
        }
    }
    match replica_failure(all, new_rs) {
        Some(failure) => set_condition(&mut status, failure),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// The new ReplicaSet's ReplicaFailure condition, else any other's, as a Deployment condition.
fn replica_failure(all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failure_of = |rs: &ReplicaSet| {
        rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE).map(|c| {
            DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            }
        })
    };
    new_rs.and_then(failure_of).or_else(|| all.iter().find_map(|rs| failure_of(rs)))
}

/// For a rollout that is neither complete nor timed out: how long until its deadline
/// passes, so the sync that declares ProgressDeadlineExceeded happens on time.
pub fn recheck_after(d: &Deployment, new_status: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    get_condition(d.status.as_ref(), PROGRESSING)?;
    if is_complete(d, new_status) {
        return None;
    }
    let at = deadline(d, d.status.as_ref()?)?;
    let remaining_ms = (at.as_millisecond() - now.as_millisecond()).max(0);
    // One second past the deadline: timing out needs `now` strictly after it.
    Some(Duration::from_millis(remaining_ms.unsigned_abs()) + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::replicasets::tests::{deployment, rs};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn with_deadline(mut d: Deployment, secs: i32) -> Deployment {
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(secs);
        d.metadata.generation = Some(2);
        d
    }

    fn reason<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a str> {
        get_condition(Some(status), type_).and_then(|c| c.reason.as_deref())
    }

    #[test]
    fn status_sums_replicasets_and_reports_availability() {
        let d = with_deadline(deployment("v2", 4), 600);
        let old = rs("old", "v1", 1, 2, 2);
        let new = rs("new", "v2", 2, 2, 1);
        let status = calculate_status(&[&old, &new], Some(&new), &d, at(100));
        assert_eq!(status.replicas, Some(4));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(2));
        // 4 replicas, no rollingUpdate parameters: maxUnavailable resolves to 1.
        assert_eq!(reason(&status, AVAILABLE), Some(MINIMUM_REPLICAS_AVAILABLE));
        let worse = rs("new", "v2", 2, 2, 0);
        let status = calculate_status(&[&old, &worse], Some(&worse), &d, at(100));
        assert_eq!(reason(&status, AVAILABLE), Some(MINIMUM_REPLICAS_UNAVAILABLE));
    }

    #[test]
    fn progressing_moves_through_the_rollout() {
        let mut d = with_deadline(deployment("v2", 2), 10);
        d.status = Some(DeploymentStatus {
            conditions: Some(vec![condition(PROGRESSING, "True", NEW_REPLICA_SET_CREATED, "created".into(), at(100))]),
            ..Default::default()
        });
        let new = rs("new", "v2", 2, 2, 1);
        let status = rollout_status(&[&new], Some(&new), &d, at(105));
        assert_eq!(reason(&status, PROGRESSING), Some(REPLICA_SET_UPDATED));
        let progressing = get_condition(Some(&status), PROGRESSING).unwrap();
        assert_eq!(progressing.last_update_time.as_ref().unwrap().0, at(105));
        assert_eq!(progressing.last_transition_time.as_ref().unwrap().0, at(100));

        // No movement past the deadline: timed out.
        d.status = Some(status.clone());
        assert_eq!(recheck_after(&d, &status, at(106)), Some(Duration::from_secs(10)));
        let stuck = rollout_status(&[&new], Some(&new), &d, at(116));
        assert_eq!(reason(&stuck, PROGRESSING), Some(PROGRESS_DEADLINE_EXCEEDED));
        assert_eq!(get_condition(Some(&stuck), PROGRESSING).unwrap().status, "False");

        // Everything available: complete.
        let done = rs("new", "v2", 2, 2, 2);
        let status = rollout_status(&[&done], Some(&done), &d, at(107));
        assert_eq!(reason(&status, PROGRESSING), Some(NEW_REPLICA_SET_AVAILABLE));
        assert!(is_complete(&d, &status));
        assert_eq!(recheck_after(&d, &status, at(107)), None);
    }

    #[test]
    fn no_deadline_means_no_progressing_condition() {
        let mut d = deployment("v2", 1);
        d.status = Some(DeploymentStatus {
            conditions: Some(vec![condition(PROGRESSING, "True", REPLICA_SET_UPDATED, "x".into(), at(1))]),
            ..Default::default()
        });
        let new = rs("new", "v2", 2, 1, 1);
        let status = rollout_status(&[&new], Some(&new), &d, at(5));
        assert!(get_condition(Some(&status), PROGRESSING).is_none());
        assert!(!is_timed_out(&d, &status, at(1_000_000)));
    }

    #[test]
    fn set_condition_keeps_transition_time_for_same_status() {
        let mut status = DeploymentStatus::default();
        set_condition(&mut status, condition(PROGRESSING, "True", NEW_REPLICA_SET_CREATED, "a".into(), at(1)));
        set_condition(&mut status, condition(PROGRESSING, "True", NEW_REPLICA_SET_CREATED, "b".into(), at(2)));
        assert_eq!(get_condition(Some(&status), PROGRESSING).unwrap().message.as_deref(), Some("a"));
        set_condition(&mut status, condition(PROGRESSING, "True", NEW_REPLICA_SET_AVAILABLE, "c".into(), at(3)));
        let c = get_condition(Some(&status), PROGRESSING).unwrap();
        assert_eq!(
            (c.last_transition_time.as_ref().unwrap().0, c.last_update_time.as_ref().unwrap().0),
            (at(1), at(3))
        );
        set_condition(&mut status, condition(PROGRESSING, "False", PROGRESS_DEADLINE_EXCEEDED, "d".into(), at(4)));
        assert_eq!(get_condition(Some(&status), PROGRESSING).unwrap().last_transition_time.as_ref().unwrap().0, at(4));
    }
}
