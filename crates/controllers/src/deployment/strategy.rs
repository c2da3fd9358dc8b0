//! The numbers a rollout is bounded by: maxSurge / maxUnavailable resolved against
//! `spec.replicas` (percentages: surge rounds up, unavailable rounds down; both zero
//! means one may be unavailable), how far the new ReplicaSet may grow, and how a scaling
//! event mid-rollout is spread proportionally over the ReplicaSets.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::annotations;
use super::replicasets::{desired, is_active, spec_replicas, status_replicas};

pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const RECREATE: &str = "Recreate";

/// Whether the Deployment rolls (the API defaults the strategy to RollingUpdate).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or(ROLLING_UPDATE)
        == ROLLING_UPDATE
}

/// An int, or a percentage of `total` rounded up or down (upstream's
/// `GetScaledValueFromIntOrPercent`). Anything else is an error.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent = s.strip_suffix('%').ok_or_else(|| format!("invalid value {s:?}: not a percentage"))?;
            let percent: i64 = percent.parse().map_err(|e| format!("invalid value {s:?}: {e}"))?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| format!("invalid value {s:?}: out of range"))
        }
    }
}

/// (maxSurge, maxUnavailable) for `replicas` (upstream's `ResolveFenceposts`). Missing
/// values count as 0; values the API should have rejected count as 0 too.
pub fn fenceposts(d: &Deployment, replicas: i32) -> (i32, i32) {
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let resolve = |v: Option<&IntOrString>, up: bool| v.map_or(Ok(0), |v| scaled_value(v, replicas, up)).unwrap_or(0);
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
    let mut unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
    if surge == 0 && unavailable == 0 {
        // Rounding may zero both; one pod must be allowed to go or nothing can move.
        unavailable = 1;
    }
    (surge, unavailable)
}

/// How many pods above `spec.replicas` a rolling update may run.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d, desired(d)).0
}

/// How many of `spec.replicas` may be unavailable during a rolling update.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = desired(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d, replicas).1.min(replicas)
}

/// The size the new ReplicaSet may grow to now (upstream's `NewRSNewReplicas`): a rolling
/// update fills up to `replicas + maxSurge` pods, Recreate goes straight to `replicas`.
///
/// Stricter than upstream, an old ReplicaSet counts with `max(spec, status.replicas)`:
/// pods it was just told to shed still exist until its controller deletes them, and
/// counting them keeps the real number of pods within the surge.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return desired(d);
    }
    let replicas = desired(d);
    let surge = fenceposts(d, replicas).0;
    let current: i32 = all.iter().map(|rs| spec_replicas(rs).max(status_replicas(rs))).sum();
    let max_total = replicas + surge;
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let room = (max_total - current).min(replicas - spec_replicas(new_rs));
    spec_replicas(new_rs) + room.max(0)
}

/// Whether the new ReplicaSet has taken over completely: sized for the Deployment, says
/// so in its desired-replicas annotation, and all its pods are available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let replicas = desired(d);
    annotations::desired_replicas(rs) == Some(replicas)
        && spec_replicas(rs) == replicas
        && super::replicasets::available_replicas(rs) == replicas
}

/// The only active ReplicaSet, or the newest one when none is active; None when several
/// are active (then scaling is proportional).
pub fn active_or_latest<'a>(new_rs: Option<&'a ReplicaSet>, old: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut old_sorted: Vec<&ReplicaSet> = old.iter().collect();
    old_sorted.sort_by(|a, b| super::replicasets::by_creation(b, a));
    let active: Vec<&ReplicaSet> = old_sorted.iter().copied().chain(new_rs).filter(|rs| is_active(rs)).collect();
    match active.len() {
        0 => new_rs.or_else(|| old_sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// How many replicas `rs` gains (or loses, negative) when `to_add` replicas are spread
/// over the active ReplicaSets and `added` were handed out already (upstream's
/// `GetProportion`): its share is its size over the size the Deployment had when it was
/// last annotated (`max-replicas`), never more than what is left to hand out.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let replicas = desired(d);
    if replicas == 0 {
        return -spec_replicas(rs);
    }
    let deployment_replicas = replicas + max_surge(d);
    let annotated =
        annotations::max_replicas(rs).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let new_size = f64::from(spec_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    new_size.round() as i32 - spec_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::replicasets::tests::{deployment, rs};
    use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};

    fn with_strategy(mut d: Deployment, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        if let Some(spec) = d.spec.as_mut() {
            spec.strategy = Some(DeploymentStrategy {
                type_: Some(ROLLING_UPDATE.into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            });
        }
        d
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_like_upstream() {
        assert_eq!(scaled_value(&pct("25%"), 10, true), Ok(3));
        assert_eq!(scaled_value(&pct("25%"), 10, false), Ok(2));
        assert_eq!(scaled_value(&pct("25%"), 4, true), Ok(1));
        assert_eq!(scaled_value(&pct("0%"), 4, true), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(2), 4, true), Ok(2));
        assert!(scaled_value(&pct("abc"), 4, true).is_err());
        assert!(scaled_value(&pct("3"), 4, true).is_err());
    }

    #[test]
    fn fenceposts_never_both_zero() {
        let d = with_strategy(deployment("v", 3), pct("25%"), pct("25%"));
        assert_eq!(fenceposts(&d, 3), (1, 0));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
        let d = with_strategy(deployment("v", 2), pct("0%"), pct("1%"));
        assert_eq!(fenceposts(&d, 2), (0, 1));
        let d = with_strategy(deployment("v", 2), IntOrString::Int(1), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 2, "capped at replicas");
    }

    #[test]
    fn new_replicaset_grows_within_the_surge() {
        let d = with_strategy(deployment("v2", 4), IntOrString::Int(1), IntOrString::Int(1));
        let old = rs("old", "v1", 1, 4, 4);
        let new = rs("new", "v2", 2, 0, 0);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let old = rs("old", "v1", 1, 2, 2);
        let new = rs("new", "v2", 2, 2, 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 3);
        // An old ReplicaSet told to shrink still runs its pods: no room yet.
        let mut shrinking = rs("old", "v1", 1, 2, 2);
        shrinking.status.as_mut().unwrap().replicas = 3;
        assert_eq!(new_rs_new_replicas(&d, &[&shrinking, &new], &new), 2);
        let mut recreate = deployment("v2", 4);
        recreate.spec.as_mut().unwrap().strategy =
            Some(DeploymentStrategy { type_: Some(RECREATE.into()), rolling_update: None });
        assert_eq!(new_rs_new_replicas(&recreate, &[&new], &new), 4);
    }

    #[test]
    fn active_or_latest_picks_the_single_active_one() {
        let a = rs("a", "v1", 1, 0, 0);
        let b = rs("b", "v1", 2, 0, 0);
        let new = rs("n", "v2", 3, 3, 3);
        assert_eq!(active_or_latest(Some(&new), &[a.clone(), b.clone()]).unwrap().metadata.name.as_deref(), Some("n"));
        assert_eq!(active_or_latest(None, &[a.clone(), b.clone()]).unwrap().metadata.name.as_deref(), Some("b"));
        let active_old = rs("c", "v1", 1, 1, 1);
        assert!(active_or_latest(Some(&new), &[active_old]).is_none());
    }

    #[test]
    fn proportions_follow_the_annotated_size() {
        // Deployment was 10 (+3 surge = 13); scaled to 20 (+5 surge = 25).
        let mut d = with_strategy(deployment("v2", 20), pct("25%"), pct("25%"));
        d.status = Some(Default::default());
        let mut old = rs("old", "v1", 1, 8, 8);
        annotations::set_replicas_annotations(&mut old, 10, 13);
        // 8 * 25 / 13 = 15.38 -> 15: gains 7.
        assert_eq!(proportion(&old, &d, 12, 0), 7);
        assert_eq!(proportion(&old, &d, 12, 10), 2, "capped by what is left");
        assert_eq!(proportion(&old, &d, 0, 0), 0);
        let mut zero = deployment("v2", 0);
        zero.status = Some(Default::default());
        assert_eq!(proportion(&old, &zero, -8, 0), -8);
    }

    #[test]
    fn saturation_needs_size_annotation_and_availability() {
        let d = deployment("v2", 3);
        let mut new = rs("n", "v2", 1, 3, 3);
        assert!(!is_saturated(&d, Some(&new)));
        annotations::set_replicas_annotations(&mut new, 3, 4);
        assert!(is_saturated(&d, Some(&new)));
        new.status.as_mut().unwrap().available_replicas = Some(2);
        assert!(!is_saturated(&d, Some(&new)));
        assert!(!is_saturated(&d, None));
    }
}
