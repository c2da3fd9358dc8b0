//! A ReplicaSet's status, computed from the pods it owns (upstream's `calculateStatus`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::pods;

/// The condition type reporting failed pod creations or deletions.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why scaling failed, for the ReplicaFailure condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// `t` as the API stores times: whole seconds. Conditions built with it compare equal
/// to what a later read returns.
pub fn api_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The status for `rs` owning `owned` (active pods only). Counts of zero are left out,
/// as upstream's `omitempty` fields are.
pub fn calculate(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<&ScaleFailure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let template_labels =
        spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.is_none_or(|want| want.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)))
        })
        .count();
    let ready = owned.iter().filter(|p| pods::is_ready(p)).count();
    let available = owned.iter().filter(|p| pods::is_available(p, min_ready, now)).count();

    let previous = rs.status.as_ref();
    let mut conditions: Vec<ReplicaSetCondition> = previous.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(f) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(api_time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }

    let nonzero = |n: usize| (n > 0).then_some(n as i32);
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

/// Whether two statuses say the same (so no write is needed).
pub fn same(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.observed_generation.unwrap_or(0) == b.observed_generation.unwrap_or(0)
        && a.conditions.as_deref().unwrap_or_default() == b.conditions.as_deref().unwrap_or_default()
}

/// The soonest a ready pod of `owned` becomes available, for a timed resync.
pub fn next_availability(owned: &[Arc<Pod>], min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    owned.iter().filter_map(|p| pods::available_in(p, min_ready_seconds, now)).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn pod(ready_at: Option<i64>, pod_labels: &[(&str, &str)]) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { labels: Some(labels(pod_labels)), ..Default::default() },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_at.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: ready_at.map(|t| Time(Timestamp::from_second(t).unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn rs(min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { generation: Some(4), ..Default::default() },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn counts_labels_readiness_and_availability() {
        let now = Timestamp::from_second(1_000).unwrap();
        let owned = vec![
            pod(Some(100), &[("app", "web"), ("tier", "fe")]),
            pod(Some(995), &[("app", "web"), ("tier", "fe")]),
            pod(None, &[("app", "web")]),
        ];
        let status = calculate(&rs(10), &owned, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(next_availability(&owned, 10, now), Some(Duration::from_millis(5001)));
        let empty = calculate(&rs(0), &[], None, now);
        assert_eq!((empty.replicas, empty.ready_replicas, empty.available_replicas), (0, None, None));
    }

    #[test]
    fn failure_condition_is_added_once_and_cleared() {
        let now = Timestamp::from_second(1_000).unwrap();
        let failure = ScaleFailure { reason: "FailedCreate", message: "quota".into() };
        let mut set = rs(0);
        let status = calculate(&set, &[], Some(&failure), now);
        let conditions = status.conditions.clone().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
        set.status = Some(status);
        let again = calculate(&set, &[], Some(&ScaleFailure { reason: "FailedCreate", message: "other".into() }), now);
        assert_eq!(again.conditions.as_ref().unwrap().len(), 1);
        assert_eq!(again.conditions.as_ref().unwrap()[0].message.as_deref(), Some("quota"));
        let cleared = calculate(&set, &[], None, now);
        assert!(cleared.conditions.is_none());
        assert!(!same(&again, &cleared));
    }
}
