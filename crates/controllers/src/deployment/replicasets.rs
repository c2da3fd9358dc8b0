//! Reading a Deployment's ReplicaSets: which one is "new" (runs the current template),
//! their sizes and counts, and the orders upstream sorts them in.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::hash::equal_ignore_hash;

/// `spec.replicas` of a ReplicaSet (the API defaults it to 1).
pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a Deployment (the API defaults it to 1).
pub fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Whether the ReplicaSet controller has seen the ReplicaSet's latest spec, so its status
/// describes the pods that spec asks for.
pub fn status_is_current(rs: &ReplicaSet) -> bool {
    rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0) >= rs.metadata.generation.unwrap_or(0)
}

/// A ReplicaSet that should have pods.
pub fn is_active(rs: &ReplicaSet) -> bool {
    spec_replicas(rs) > 0
}

/// Oldest first; equal creation times (they have second precision) by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match created(a).cmp(&created(b)) {
        Ordering::Equal => a.metadata.name.cmp(&b.metadata.name),
        order => order,
    }
}

/// Largest first; equal sizes oldest first (the order to scale down in).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(a, b))
}

/// Largest first; equal sizes newest first (the order to scale up in).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(b, a))
}

/// The ReplicaSet running the Deployment's current template: the oldest one if several do.
pub fn find_new<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = &d.spec.as_ref()?.template;
    let mut matching: Vec<&ReplicaSet> = rss
        .iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template)))
        .collect();
    matching.sort_by(|a, b| by_creation(a, b));
    matching.first().copied()
}

/// Every ReplicaSet but the new one.
pub fn find_old(d: &Deployment, rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new(d, rss).and_then(|rs| rs.metadata.uid.clone());
    rss.iter().filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid).cloned().collect()
}

pub fn total_spec_replicas<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(spec_replicas).sum()
}

pub fn total_available<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(available_replicas).sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    pub fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    /// A ReplicaSet named `name` running `image`, created at `created` (seconds), with
    /// `spec` replicas of which `available` are available.
    pub fn rs(name: &str, image: &str, created: i64, spec: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(spec), template: Some(template(image)), ..Default::default() }),
            status: Some(ReplicaSetStatus {
                replicas: spec,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    pub fn deployment(image: &str, replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta { name: Some("web".into()), uid: Some("d-uid".into()), ..Default::default() },
            spec: Some(DeploymentSpec { replicas: Some(replicas), template: template(image), ..Default::default() }),
            status: None,
        }
    }

    fn names(rss: &[ReplicaSet]) -> Vec<&str> {
        rss.iter().map(|r| r.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn new_replicaset_is_the_oldest_with_the_current_template() {
        let d = deployment("v2", 3);
        let rss = vec![rs("c", "v2", 30, 1, 0), rs("a", "v1", 10, 2, 2), rs("b", "v2", 20, 0, 0)];
        assert_eq!(find_new(&d, &rss).and_then(|r| r.metadata.name.as_deref()), Some("b"));
        assert_eq!(names(&find_old(&d, &rss)), ["c", "a"]);
        assert!(find_new(&deployment("v3", 3), &rss).is_none());
        assert_eq!(find_old(&deployment("v3", 3), &rss).len(), 3);
    }

    #[test]
    fn sort_orders() {
        let mut rss = vec![rs("x", "v", 10, 2, 0), rs("y", "v", 20, 2, 0), rs("z", "v", 5, 5, 0)];
        rss.sort_by(by_size_newer);
        assert_eq!(names(&rss), ["z", "y", "x"]);
        rss.sort_by(by_size_older);
        assert_eq!(names(&rss), ["z", "x", "y"]);
        rss.sort_by(by_creation);
        assert_eq!(names(&rss), ["z", "x", "y"]);
    }
}
