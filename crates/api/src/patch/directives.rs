//! Strategic merge patch directives of every kind the API serves.
//!
//! Upstream keeps this knowledge in Go struct tags (`patchStrategy:"merge"
//! patchMergeKey:"name"` in `k8s.io/api/*/types.go` and `metav1.ObjectMeta`); skiff has no
//! such structs, so the tags are written out here by field path. Only fields that carry a tag
//! are listed: every other map merges key by key and every other list is replaced whole.
//! The same table feeds the OpenAPI documents (`x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`), which is where `kubectl apply` learns how to build the
//! patches that come back here.
//!
//! Paths are dotted JSON field names from the object root; list elements are transparent, so
//! the `env` list of every container of a Deployment is `spec.template.spec.containers.env`.
//! Subtrees shared by several kinds (object metadata, pod specs) are written once as macros
//! that take the path they are mounted at.

/// How one field is patched, as upstream's `patchStrategy` / `patchMergeKey` tags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Directive {
    /// Dotted JSON path from the object root, list elements transparent (`spec.ports`).
    pub path: &'static str,
    /// The tag's value: `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: &'static str,
    /// For lists of objects that merge: the field identifying an element (`name`, `port`).
    /// `None` for lists of scalars (merged as sets) and for `retainKeys` maps.
    pub merge_key: Option<&'static str>,
}

impl Directive {
    /// Whether the list at this path merges with the live list instead of replacing it.
    pub fn merges(&self) -> bool {
        self.strategy.split(',').any(|strategy| strategy == "merge")
    }

    /// Whether clients send `$retainKeys` for this field (union types such as a Deployment's
    /// `spec.strategy` or a pod volume's source). The server honours `$retainKeys` wherever
    /// it appears; the flag matters to clients building patches.
    pub fn retains_keys(&self) -> bool {
        self.strategy.split(',').any(|strategy| strategy == "retainKeys")
    }
}

macro_rules! directive {
    ($path:expr, $strategy:literal) => {
        Directive { path: $path, strategy: $strategy, merge_key: None }
    };
    ($path:expr, $strategy:literal, $merge_key:literal) => {
        Directive { path: $path, strategy: $strategy, merge_key: Some($merge_key) }
    };
}

/// `metav1.ObjectMeta`, mounted at `$at` (`metadata.`).
macro_rules! object_meta {
    ($at:literal) => {
        [directive!(concat!($at, "finalizers"), "merge"), directive!(concat!($at, "ownerReferences"), "merge", "uid")]
    };
}

/// `core/v1 Container` (and `EphemeralContainerCommon`, which has the same tags).
/// Mounted at the list `$list` of the pod spec at `$at`.
macro_rules! container {
    ($at:literal, $list:literal) => {
        [
            directive!(concat!($at, $list, ".ports"), "merge", "containerPort"),
            directive!(concat!($at, $list, ".env"), "merge", "name"),
            directive!(concat!($at, $list, ".volumeMounts"), "merge", "mountPath"),
            directive!(concat!($at, $list, ".volumeDevices"), "merge", "devicePath"),
        ]
    };
}

/// `core/v1 PodSpec`, mounted at `$at` (`spec.` in a Pod, `spec.template.spec.` in workloads).
/// Tolerations, affinity terms and the like carry no tag: they are replaced whole.
macro_rules! pod_spec {
    ($at:literal) => {
        [
            &[
                directive!(concat!($at, "volumes"), "merge,retainKeys", "name"),
                directive!(concat!($at, "initContainers"), "merge", "name"),
                directive!(concat!($at, "containers"), "merge", "name"),
                directive!(concat!($at, "ephemeralContainers"), "merge", "name"),
                directive!(concat!($at, "imagePullSecrets"), "merge", "name"),
                directive!(concat!($at, "hostAliases"), "merge", "ip"),
                directive!(concat!($at, "topologySpreadConstraints"), "merge", "topologyKey"),
                directive!(concat!($at, "schedulingGates"), "merge", "name"),
                directive!(concat!($at, "resourceClaims"), "merge,retainKeys", "name"),
            ][..],
            &container!($at, "initContainers")[..],
            &container!($at, "containers")[..],
            &container!($at, "ephemeralContainers")[..],
        ]
        .concat()
    };
}

/// `core/v1 PodStatus`, mounted at `status.`. The container status lists themselves are
/// replaced whole; their elements' tags are listed for the OpenAPI documents.
macro_rules! pod_status {
    ($at:literal) => {
        [
            directive!(concat!($at, "conditions"), "merge", "type"),
            directive!(concat!($at, "hostIPs"), "merge", "ip"),
            directive!(concat!($at, "podIPs"), "merge", "ip"),
            directive!(concat!($at, "resourceClaimStatuses"), "merge,retainKeys", "name"),
            directive!(concat!($at, "initContainerStatuses.volumeMounts"), "merge", "mountPath"),
            directive!(concat!($at, "initContainerStatuses.allocatedResourcesStatus"), "merge", "name"),
            directive!(concat!($at, "containerStatuses.volumeMounts"), "merge", "mountPath"),
            directive!(concat!($at, "containerStatuses.allocatedResourcesStatus"), "merge", "name"),
            directive!(concat!($at, "ephemeralContainerStatuses.volumeMounts"), "merge", "mountPath"),
            directive!(concat!($at, "ephemeralContainerStatuses.allocatedResourcesStatus"), "merge", "name"),
        ]
    };
}

/// The patch directives of a served kind, or `None` when the kind is not one this API serves
/// with strategic merge patch support (upstream answers such patches with 415).
///
/// Every kind gets the object metadata directives (`metadata.finalizers` as a set,
/// `metadata.ownerReferences` by `uid`); `autoscaling/v1 Scale` has nothing more.
pub fn directives(group: &str, kind: &str) -> Option<Vec<Directive>> {
    let metadata = object_meta!("metadata.");
    let specific: Vec<Directive> = match (group, kind) {
        ("", "Namespace") => vec![directive!("status.conditions", "merge", "type")],
        ("", "Service") => {
            vec![directive!("spec.ports", "merge", "port"), directive!("status.conditions", "merge", "type")]
        }
        ("", "Pod") => [pod_spec!("spec."), pod_status!("status.").to_vec()].concat(),
        ("", "Node") => vec![
            directive!("spec.podCIDRs", "merge"),
            directive!("status.conditions", "merge", "type"),
            directive!("status.addresses", "merge", "type"),
        ],
        ("", "ServiceAccount") => vec![directive!("secrets", "merge", "name")],
        ("", "Endpoints" | "Secret" | "ConfigMap" | "Event")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("networking.k8s.io", "Ingress" | "IngressClass")
        | ("coordination.k8s.io", "Lease")
        | ("autoscaling", "Scale") => Vec::new(),
        ("apps", "Deployment") => [
            &object_meta!("spec.template.metadata.")[..],
            &pod_spec!("spec.template.spec.")[..],
            &[directive!("spec.strategy", "retainKeys"), directive!("status.conditions", "merge", "type")][..],
        ]
        .concat(),
        ("apps", "ReplicaSet") => [
            &object_meta!("spec.template.metadata.")[..],
            &pod_spec!("spec.template.spec.")[..],
            &[directive!("status.conditions", "merge", "type")][..],
        ]
        .concat(),
        _ => return None,
    };
    Some([&metadata[..], &specific[..]].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVED: &[(&str, &str)] = &[
        ("", "Namespace"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "Pod"),
        ("", "Node"),
        ("", "Secret"),
        ("", "ConfigMap"),
        ("", "Event"),
        ("", "ServiceAccount"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("coordination.k8s.io", "Lease"),
        ("autoscaling", "Scale"),
    ];

    fn find(group: &str, kind: &str, path: &str) -> Option<Directive> {
        directives(group, kind).and_then(|all| all.into_iter().find(|d| d.path == path))
    }

    #[test]
    fn every_served_kind_has_metadata_directives_and_well_formed_entries() {
        for (group, kind) in SERVED {
            let all = directives(group, kind).unwrap_or_else(|| panic!("{group}/{kind} has no directives"));
            assert!(all.iter().any(|d| d.path == "metadata.finalizers" && d.merges() && d.merge_key.is_none()));
            assert!(all.iter().any(|d| d.path == "metadata.ownerReferences" && d.merge_key == Some("uid")));
            let mut paths: Vec<&str> = all.iter().map(|d| d.path).collect();
            paths.sort_unstable();
            paths.dedup();
            assert_eq!(paths.len(), all.len(), "{group}/{kind} lists a path twice");
            for d in &all {
                assert!(
                    matches!(d.strategy, "merge" | "retainKeys" | "merge,retainKeys"),
                    "{group}/{kind} {}: {}",
                    d.path,
                    d.strategy
                );
                assert!(!d.path.starts_with('.') && !d.path.ends_with('.') && !d.path.contains(".."));
            }
        }
    }

    #[test]
    fn unknown_kinds_have_no_directives() {
        assert_eq!(directives("example.com", "Widget"), None);
        assert_eq!(directives("", "Deployment"), None);
        assert_eq!(directives("apps", "Service"), None);
    }

    #[test]
    fn upstream_merge_keys() {
        let cases = [
            ("", "Service", "spec.ports", "merge", Some("port")),
            ("", "Pod", "spec.containers", "merge", Some("name")),
            ("", "Pod", "spec.containers.env", "merge", Some("name")),
            ("", "Pod", "spec.containers.ports", "merge", Some("containerPort")),
            ("", "Pod", "spec.initContainers.volumeMounts", "merge", Some("mountPath")),
            ("", "Pod", "spec.ephemeralContainers.volumeDevices", "merge", Some("devicePath")),
            ("", "Pod", "spec.volumes", "merge,retainKeys", Some("name")),
            ("", "Pod", "spec.imagePullSecrets", "merge", Some("name")),
            ("", "Pod", "spec.hostAliases", "merge", Some("ip")),
            ("", "Pod", "status.conditions", "merge", Some("type")),
            ("", "Pod", "status.podIPs", "merge", Some("ip")),
            ("", "Node", "status.addresses", "merge", Some("type")),
            ("", "Node", "spec.podCIDRs", "merge", None),
            ("", "ServiceAccount", "secrets", "merge", Some("name")),
            ("apps", "Deployment", "spec.template.spec.containers.env", "merge", Some("name")),
            ("apps", "Deployment", "spec.template.metadata.finalizers", "merge", None),
            ("apps", "Deployment", "spec.strategy", "retainKeys", None),
            ("apps", "Deployment", "status.conditions", "merge", Some("type")),
            ("apps", "ReplicaSet", "spec.template.spec.volumes", "merge,retainKeys", Some("name")),
            ("apps", "ReplicaSet", "status.conditions", "merge", Some("type")),
        ];
        for (group, kind, path, strategy, merge_key) in cases {
            let found = find(group, kind, path).unwrap_or_else(|| panic!("{group}/{kind} lacks {path}"));
            assert_eq!((found.strategy, found.merge_key), (strategy, merge_key), "{group}/{kind} {path}");
        }
    }

    #[test]
    fn atomic_lists_carry_no_directive() {
        // Tagless upstream: replaced whole by a strategic merge patch.
        assert_eq!(find("", "Pod", "spec.tolerations"), None);
        assert_eq!(find("", "Node", "spec.taints"), None);
        assert_eq!(find("", "Pod", "status.containerStatuses"), None);
        assert_eq!(find("", "Service", "status.loadBalancer.ingress"), None);
        assert_eq!(find("apps", "ReplicaSet", "spec.strategy"), None);
        assert_eq!(directives("autoscaling", "Scale").map(|all| all.len()), Some(2));
    }

    #[test]
    fn strategy_flags() {
        let volumes = directive!("spec.volumes", "merge,retainKeys", "name");
        assert!(volumes.merges() && volumes.retains_keys());
        let strategy = directive!("spec.strategy", "retainKeys");
        assert!(!strategy.merges() && strategy.retains_keys());
    }
}
