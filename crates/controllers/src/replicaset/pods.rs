//! Facts about pods the workload controllers act on: active, ready, available, and
//! which pods to delete first when scaling down.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Annotation by which users rank pods for scale-down (lower cost goes first).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// `namespace/name`, the key expectations use.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Counts towards a ReplicaSet: not finished (Succeeded/Failed) and not terminating.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The time the pod's Ready condition last became True, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`): with a minimum,
/// a Ready condition without a transition time never counts as available.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since.as_millisecond() + i64::from(min_ready_seconds) * 1000 < now.as_millisecond(),
    }
}

/// For a ready pod that is not yet available: how long until it is.
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = ready_since(pod)??;
    let at = since.as_millisecond() + i64::from(min_ready_seconds) * 1000;
    let remaining = at - now.as_millisecond();
    // Availability needs `now` strictly after `at`, hence the extra millisecond.
    (remaining >= 0).then(|| Duration::from_millis(remaining.unsigned_abs() + 1))
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

fn node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Orders pods so the ones to delete first come first, after upstream's
/// `ActivePodsWithRanks`. Rules, in turn until one decides:
/// 1. not on a node before on a node; 2. Pending, then Unknown, then Running;
/// 3. not ready before ready; 4. lower `pod-deletion-cost` first;
/// 5. more related pods on the same node first; 6. ready for less time first;
/// 7. more container restarts first; 8. newer before older; 9. UID.
///
/// Times (6, 8) are compared in log2 buckets of their age, so pods of about the same
/// age are equivalent and the UID spreads deletions across them instead of always
/// taking the very newest (upstream's `LogarithmicScaleDown`). Unlike upstream, which
/// decides equal-bucket times by UID at once, the rules stay a strict sequence so the
/// order is total.
pub fn sort_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node(pod)).or_default() += 1;
    }
    pods.sort_by_cached_key(|pod| {
        let colocated = on_node.get(node(pod)).copied().unwrap_or(0);
        let ready = ready_since(pod);
        (
            !node(pod).is_empty(),
            phase_rank(pod),
            ready.is_some(),
            deletion_cost(pod),
            Reverse(colocated),
            ready.map(|since| age_bucket(since, now)),
            Reverse(max_restarts(pod)),
            age_bucket(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
            pod.metadata.uid.clone(),
        )
    });
}

/// Where a time sorts for deletion: unknown first, then by log2 of its age in
/// nanoseconds (younger first).
fn age_bucket(t: Option<Timestamp>, now: Timestamp) -> (bool, i64) {
    match t {
        None => (false, 0),
        Some(t) => {
            let age_ns = now.as_nanosecond() - t.as_nanosecond();
            let bucket = if age_ns > 0 { (age_ns as f64).log2().floor() as i64 } else { -1 };
            (true, bucket)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.to_string()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_at.is_some() { "True" } else { "False" }.into(),
                    last_transition_time: ready_at.map(|t| Time(ts(t))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn availability_needs_min_ready_seconds() {
        let p = pod("a", "n1", "Running", Some(1000), 900);
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, ts(1000)));
        assert!(!is_available(&p, 10, ts(1005)));
        assert!(!is_available(&p, 10, ts(1010)));
        assert!(is_available(&p, 10, ts(1011)));
        assert_eq!(available_in(&p, 10, ts(1005)), Some(Duration::from_millis(5001)));
        assert_eq!(available_in(&p, 10, ts(1011)), None);
        let not_ready = pod("b", "n1", "Running", None, 900);
        assert!(!is_available(&not_ready, 0, ts(1000)));
    }

    #[test]
    fn activity_excludes_finished_and_terminating_pods() {
        assert!(is_active(&pod("a", "", "Pending", None, 1)));
        assert!(!is_active(&pod("a", "", "Succeeded", None, 1)));
        assert!(!is_active(&pod("a", "", "Failed", None, 1)));
        let mut terminating = (*pod("a", "", "Running", None, 1)).clone();
        terminating.metadata.deletion_timestamp = Some(Time(ts(5)));
        assert!(!is_active(&terminating));
    }

    #[test]
    fn deletion_order_follows_upstream_priorities() {
        let now = ts(100_000);
        let mut pods = vec![
            pod("ready-old", "n1", "Running", Some(1_000), 500),
            pod("running-not-ready", "n1", "Running", None, 99_000),
            pod("unassigned", "", "Pending", None, 500),
            pod("pending", "n1", "Pending", None, 500),
            pod("unknown", "n1", "Unknown", None, 500),
            pod("ready-new", "n1", "Running", Some(99_990), 99_000),
        ];
        sort_for_deletion(&mut pods, &[], now);
        assert_eq!(names(&pods), ["unassigned", "pending", "unknown", "running-not-ready", "ready-new", "ready-old"]);
    }

    #[test]
    fn deletion_cost_and_colocation_break_ties() {
        let now = ts(100_000);
        let mut cheap = (*pod("cheap", "n1", "Running", Some(1_000), 500)).clone();
        cheap.metadata.annotations = Some([(DELETION_COST_ANNOTATION.to_string(), "-5".to_string())].into());
        let mut pods = vec![pod("lonely", "n2", "Running", Some(1_000), 500), Arc::new(cheap)];
        sort_for_deletion(&mut pods, &[], now);
        assert_eq!(names(&pods), ["cheap", "lonely"]);

        let crowded = pod("crowded", "n1", "Running", Some(1_000), 500);
        let lonely = pod("lonely", "n2", "Running", Some(1_000), 500);
        let neighbour = pod("neighbour", "n1", "Running", Some(1_000), 500);
        let mut pods = vec![lonely.clone(), crowded.clone()];
        sort_for_deletion(&mut pods, &[lonely, crowded, neighbour], now);
        assert_eq!(names(&pods), ["crowded", "lonely"]);
    }

    #[test]
    fn similar_ages_fall_back_to_uid() {
        // Ages 1000 s and 1001 s share a log2 bucket; the UID decides.
        let now = ts(100_000);
        let mut pods = vec![pod("b", "n1", "Running", Some(99_000), 1), pod("a", "n1", "Running", Some(98_999), 1)];
        sort_for_deletion(&mut pods, &[], now);
        assert_eq!(names(&pods), ["a", "b"]);
    }
}
