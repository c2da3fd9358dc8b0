//! Every resource the API serves, in one table.
//!
//! A [`ResourceDef`] says where a resource lives in the URL space (group, version, plural,
//! scope), how discovery describes it (kind, short names, categories, subresources), where
//! it is stored (`/registry/<key_prefix>/...`, kube-apiserver's etcd layout) and how to
//! decode it into its k8s-openapi type ([`ResourceDef::normalize`]), which is how unknown
//! fields are found and how objects round-trip without losing known ones.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// A subresource the API serves for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: writes change only `.status`; writes to the main resource ignore `.status`.
    Status,
    /// `/scale`: an `autoscaling/v1 Scale` view of `.spec.replicas`.
    Scale,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
        }
    }
}

/// Normalizes a JSON object through the resource's typed representation.
pub type NormalizeFn = fn(&Value) -> Result<Value, DecodeError>;

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceDef {
    /// API group, "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL name: `services`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub subresources: &'static [Subresource],
    /// Storage key prefix under `/registry/`, e.g. `services/specs` (upstream's layout).
    pub key_prefix: &'static str,
    /// Decode into the k8s-openapi type and encode again: drops unknown fields, keeps the
    /// known ones, fails on wrong types.
    pub normalize: NormalizeFn,
    /// Whether `.spec`-style changes bump `metadata.generation` (every resource with a
    /// spec/status split does; ConfigMaps and Secrets do not have a generation upstream).
    pub has_generation: bool,
}

/// Why an object could not be decoded into its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Dotted path of the offending field (`spec.ports[0].port`), empty at the root.
    pub path: String,
    pub message: String,
    /// The field is required and missing (serde's "missing field").
    pub missing_field: Option<String>,
}

fn roundtrip<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, DecodeError> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing required field as "missing field `name`".
        let missing_field =
            inner.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).map(str::to_string);
        DecodeError { path: if path == "." { String::new() } else { path }, message: inner, missing_field }
    })?;
    serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
        missing_field: None,
    })
}

macro_rules! def {
    ($ty:ty, group: $g:expr, version: $v:expr, kind: $k:expr, plural: $p:expr, singular: $s:expr,
     short: [$($short:expr),*], categories: [$($cat:expr),*], namespaced: $ns:expr,
     sub: [$($sub:expr),*], key: $key:expr, generation: $gen:expr) => {
        ResourceDef {
            group: $g, version: $v, kind: $k, plural: $p, singular: $s,
            short_names: &[$($short),*], categories: &[$($cat),*], namespaced: $ns,
            subresources: &[$($sub),*], key_prefix: $key, normalize: roundtrip::<$ty>,
            has_generation: $gen,
        }
    };
}

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc};
use Subresource::{Scale, Status};

/// The resources skiff serves, in discovery order.
pub static RESOURCES: &[ResourceDef] = &[
    def!(core::Namespace, group: "", version: "v1", kind: "Namespace", plural: "namespaces", singular: "namespace",
         short: ["ns"], categories: [], namespaced: false, sub: [Status], key: "namespaces", generation: false),
    def!(core::Service, group: "", version: "v1", kind: "Service", plural: "services", singular: "service",
         short: ["svc"], categories: ["all"], namespaced: true, sub: [Status], key: "services/specs", generation: false),
    def!(core::Endpoints, group: "", version: "v1", kind: "Endpoints", plural: "endpoints", singular: "endpoints",
         short: ["ep"], categories: [], namespaced: true, sub: [], key: "services/endpoints", generation: false),
    def!(core::Pod, group: "", version: "v1", kind: "Pod", plural: "pods", singular: "pod",
         short: ["po"], categories: ["all"], namespaced: true, sub: [Status], key: "pods", generation: true),
    def!(core::Node, group: "", version: "v1", kind: "Node", plural: "nodes", singular: "node",
         short: ["no"], categories: [], namespaced: false, sub: [Status], key: "minions", generation: false),
    def!(core::Secret, group: "", version: "v1", kind: "Secret", plural: "secrets", singular: "secret",
         short: [], categories: [], namespaced: true, sub: [], key: "secrets", generation: false),
    def!(core::ConfigMap, group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", singular: "configmap",
         short: ["cm"], categories: [], namespaced: true, sub: [], key: "configmaps", generation: false),
    def!(core::Event, group: "", version: "v1", kind: "Event", plural: "events", singular: "event",
         short: ["ev"], categories: [], namespaced: true, sub: [], key: "events", generation: false),
    def!(core::ServiceAccount, group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts",
         singular: "serviceaccount", short: ["sa"], categories: [], namespaced: true, sub: [],
         key: "serviceaccounts", generation: false),
    def!(disc::EndpointSlice, group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice",
         plural: "endpointslices", singular: "endpointslice", short: [], categories: [], namespaced: true, sub: [],
         key: "endpointslices", generation: true),
    def!(apps::Deployment, group: "apps", version: "v1", kind: "Deployment", plural: "deployments",
         singular: "deployment", short: ["deploy"], categories: ["all"], namespaced: true, sub: [Status, Scale],
         key: "deployments", generation: true),
    def!(apps::ReplicaSet, group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets",
         singular: "replicaset", short: ["rs"], categories: ["all"], namespaced: true, sub: [Status, Scale],
         key: "replicasets", generation: true),
    def!(net::Ingress, group: "networking.k8s.io", version: "v1", kind: "Ingress", plural: "ingresses",
         singular: "ingress", short: ["ing"], categories: [], namespaced: true, sub: [Status], key: "ingress",
         generation: true),
    def!(net::IngressClass, group: "networking.k8s.io", version: "v1", kind: "IngressClass",
         plural: "ingressclasses", singular: "ingressclass", short: [], categories: [], namespaced: false, sub: [],
         key: "ingressclasses", generation: true),
    def!(coord::Lease, group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases",
         singular: "lease", short: [], categories: [], namespaced: true, sub: [], key: "leases", generation: false),
];

impl ResourceDef {
    /// `v1` or `apps/v1`, the `apiVersion` of this resource's objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The status subresource exists, so the main resource's writes ignore `.status`.
    pub fn has_status(&self) -> bool {
        self.has_subresource(Subresource::Status)
    }

    /// The store prefix holding every object of this resource (all namespaces).
    pub fn store_prefix(&self) -> String {
        format!("/registry/{}/", self.key_prefix)
    }

    /// The store prefix for one namespace (or the whole resource when cluster-scoped).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/", self.key_prefix, ns),
            _ => self.store_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/{}", self.key_prefix, ns, name),
            _ => format!("/registry/{}/{}", self.key_prefix, name),
        }
    }

    /// Identifies an object of this resource in error messages.
    pub fn subject(&self, name: &str) -> crate::Subject {
        crate::Subject {
            group: self.group.to_string(),
            resource: self.plural.to_string(),
            kind: self.kind.to_string(),
            name: name.to_string(),
        }
    }
}

/// Finds a resource by group, version and URL plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by group and kind.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The group versions served, in discovery order, without duplicates (`("", "v1")` first).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_upstream_layout() {
        let svc = lookup("", "v1", "services").unwrap();
        assert_eq!(svc.key(Some("default"), "kubernetes"), "/registry/services/specs/default/kubernetes");
        let node = lookup("", "v1", "nodes").unwrap();
        assert_eq!(node.key(None, "n1"), "/registry/minions/n1");
    }

    #[test]
    fn normalize_drops_unknown_and_keeps_known_fields() {
        let svc = lookup("", "v1", "services").unwrap();
        let input = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "bogus": 1},
                           "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "a"}}});
        let out = (svc.normalize)(&input).unwrap();
        assert_eq!(out["spec"]["ports"][0]["targetPort"], "http");
        assert!(out["metadata"].get("bogus").is_none());
    }

    #[test]
    fn every_resource_normalizes_a_minimal_object() {
        for r in RESOURCES {
            let obj = json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
            assert!((r.normalize)(&obj).is_ok(), "{} failed", r.kind);
        }
    }
}
