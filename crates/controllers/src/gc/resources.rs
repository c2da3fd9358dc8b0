//! Which resources the API serves, from discovery: the garbage collector watches every
//! deletable one, and the namespace controller empties every namespaced one.

use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiResource, Discovery, Scope};

/// One served resource (its preferred version) and the verbs it supports.
#[derive(Debug, Clone)]
pub struct ServedResource {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ServedResource {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `pods` or `deployments.apps`, how upstream names resources in messages.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }

    /// An API handle on this resource in `namespace` (ignored for cluster-scoped resources).
    pub fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }

    /// A metadata-only API handle on this resource across all namespaces (for watches).
    pub fn metadata_api_all(&self, client: &kube::Client) -> Api<PartialObjectMeta<DynamicObject>> {
        Api::all_with(client.clone(), &self.resource)
    }
}

/// Every resource the API serves, in the version it prefers (subresources excluded).
pub async fn discover(client: &kube::Client) -> kube::Result<Vec<ServedResource>> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            out.push(ServedResource {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
                verbs: caps.operations.clone(),
            });
        }
    }
    Ok(out)
}

/// The served resources by group and kind, to resolve ownerReferences (`apiVersion`, `kind`).
#[derive(Debug, Default)]
pub struct ResourceIndex {
    resources: Vec<ServedResource>,
}

impl ResourceIndex {
    pub fn new(resources: Vec<ServedResource>) -> Self {
        ResourceIndex { resources }
    }

    pub fn get(&self, index: usize) -> Option<&ServedResource> {
        self.resources.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ServedResource> {
        self.resources.iter()
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The resource an ownerReference's `apiVersion` and `kind` name. Objects of a kind are
    /// the same whatever version they are read in, so another served version of the group
    /// resolves too.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ServedResource> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.resources.iter().find(|r| r.resource.group == group && r.resource.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ServedResource {
        let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        ServedResource {
            resource: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced,
            verbs: vec!["list".into(), "delete".into()],
        }
    }

    #[test]
    fn resolves_owner_kinds_by_group() {
        let index = ResourceIndex::new(vec![
            served("", "v1", "ConfigMap", "configmaps", true),
            served("apps", "v1", "Deployment", "deployments", true),
            served("", "v1", "Namespace", "namespaces", false),
        ]);
        assert_eq!(index.by_kind("apps/v1", "Deployment").map(|r| r.resource.plural.as_str()), Some("deployments"));
        assert_eq!(
            index.by_kind("apps/v1beta2", "Deployment").map(|r| r.group_resource()),
            Some("deployments.apps".into())
        );
        assert_eq!(index.by_kind("v1", "ConfigMap").map(|r| r.group_resource()), Some("configmaps.".into()));
        assert!(index.by_kind("v1", "Deployment").is_none());
        assert!(index.by_kind("example.com/v1", "Widget").is_none());
        assert!(index.by_kind("v1", "ConfigMap").is_some_and(|r| r.supports("delete") && !r.supports("watch")));
    }
}
