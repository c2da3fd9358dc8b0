//! The dependency graph: every watched object's identity, owners and deletion state, and
//! for every owner uid the objects that name it.
//!
//! The graph is fed by watch events and only tells which objects need a look
//! ([`Graph::upsert`] and [`Graph::remove`] return their uids); the decisions are taken by
//! [`super::collector`] against the live objects, because the graph may lag behind.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub type Uid = String;

/// Finalizer the API server adds on `propagationPolicy=Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer the API server adds on `propagationPolicy=Orphan`.
pub const ORPHAN: &str = "orphan";

/// One entry of an object's `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub block_owner_deletion: bool,
}

/// What the graph knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Index of the object's resource in the collector's resource list.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Uid,
    pub owners: Vec<Owner>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    /// Builds a node from object metadata; None without a uid or name.
    pub fn from_meta(resource: usize, meta: &ObjectMeta) -> Option<Node> {
        let owners = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| Owner {
                uid: r.uid.clone(),
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                block_owner_deletion: r.block_owner_deletion.unwrap_or(false),
            })
            .collect();
        Some(Node {
            resource,
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone().filter(|n| !n.is_empty())?,
            uid: meta.uid.clone().filter(|u| !u.is_empty())?,
            owners,
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has_finalizer(&self, name: &str) -> bool {
        self.finalizers.iter().any(|f| f == name)
    }

    /// Deleted with `propagationPolicy=Foreground`: waits for its dependents to go.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Deleted with `propagationPolicy=Orphan`: its dependents must be freed first.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// Whether this object's reference to `owner` blocks the owner's foreground deletion.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners.iter().any(|o| o.uid == owner && o.block_owner_deletion)
    }
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    /// Owner uid → uids of the objects whose ownerReferences name it (the owner itself
    /// may be unknown: it may not exist, or not be observed yet).
    dependents: HashMap<Uid, BTreeSet<Uid>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The observed objects whose ownerReferences name `owner`.
    pub fn dependents(&self, owner: &str) -> Vec<Node> {
        self.dependents.get(owner).into_iter().flatten().filter_map(|uid| self.nodes.get(uid)).cloned().collect()
    }

    pub fn has_dependents(&self, owner: &str) -> bool {
        self.dependents.get(owner).is_some_and(|d| d.iter().any(|uid| self.nodes.contains_key(uid)))
    }

    /// The dependents of `owner` that hold its foreground deletion (`blockOwnerDeletion`).
    pub fn blocking_dependents(&self, owner: &str) -> Vec<Node> {
        self.dependents(owner).into_iter().filter(|d| d.blocks(owner)).collect()
    }

    /// The uids of the objects of one resource (to find deletions missed during a re-list).
    pub fn uids_of_resource(&self, resource: usize) -> Vec<Uid> {
        self.nodes.values().filter(|n| n.resource == resource).map(|n| n.uid.clone()).collect()
    }

    /// Everything that may need work, for the first pass once every watch has listed:
    /// objects whose owners are unknown or deleting in foreground, and owners being
    /// deleted in foreground or orphan mode.
    pub fn needing_attention(&self) -> Vec<Uid> {
        self.nodes
            .values()
            .filter(|n| n.deleting_dependents() || n.orphaning() || self.needs_owner_check(n))
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Whether some owner of `node` is unknown (maybe gone), not the object the reference
    /// names (another name, or a namespaced object of another namespace), or deleting in
    /// foreground: then `node` may have to go.
    fn needs_owner_check(&self, node: &Node) -> bool {
        node.owners.iter().any(|o| match self.nodes.get(&o.uid) {
            None => true,
            Some(owner) => {
                let elsewhere = owner.namespace.is_some() && owner.namespace != node.namespace;
                owner.name != o.name || elsewhere || owner.deleting_dependents()
            }
        })
    }

    /// Records an added or changed object; returns the uids that need processing.
    pub fn upsert(&mut self, node: Node) -> Vec<Uid> {
        let uid = node.uid.clone();
        let old = self.nodes.insert(uid.clone(), node.clone());
        let mut work = Vec::new();
        let owners_changed = old.as_ref().is_none_or(|o| o.owners != node.owners);
        if owners_changed {
            if let Some(old) = &old {
                for owner in &old.owners {
                    self.unlink(&owner.uid, &uid);
                }
            }
            for owner in &node.owners {
                self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            }
            // Owners waiting on their dependents see a dependent come, go or stop blocking.
            let touched = old.iter().flat_map(|o| o.owners.iter()).chain(node.owners.iter());
            for owner in touched {
                if self.nodes.get(&owner.uid).is_some_and(|o| o.deleting_dependents() || o.orphaning()) {
                    work.push(owner.uid.clone());
                }
            }
            if self.needs_owner_check(&node) {
                work.push(uid.clone());
            }
        }
        let was = |f: fn(&Node) -> bool| old.as_ref().is_some_and(f);
        if node.deleting_dependents() && !was(Node::deleting_dependents) {
            work.push(uid.clone());
            work.extend(self.dependents(&uid).into_iter().map(|d| d.uid));
        }
        if node.orphaning() && !was(Node::orphaning) {
            work.push(uid);
        }
        dedup(work)
    }

    /// Records a deleted object; returns the uids that need processing: its dependents
    /// (their owner is gone) and its owners that wait for their dependents.
    pub fn remove(&mut self, uid: &str) -> Vec<Uid> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for owner in &node.owners {
            self.unlink(&owner.uid, uid);
            if self.nodes.get(&owner.uid).is_some_and(|o| o.deleting_dependents() || o.orphaning()) {
                work.push(owner.uid.clone());
            }
        }
        work.extend(self.dependents(uid).into_iter().map(|d| d.uid));
        dedup(work)
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

fn dedup(mut uids: Vec<Uid>) -> Vec<Uid> {
    let mut seen = std::collections::HashSet::new();
    uids.retain(|u| seen.insert(u.clone()));
    uids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            resource: 0,
            namespace: Some("default".into()),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|(o, block)| Owner {
                    uid: (*o).into(),
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: format!("n-{o}"),
                    block_owner_deletion: *block,
                })
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers.push(finalizer.into());
        n
    }

    #[test]
    fn dependents_of_unknown_owners_need_a_look() {
        let mut g = Graph::default();
        assert_eq!(g.upsert(node("child", &[("owner", false)])), vec!["child"]);
        // Once the owner is known, an unchanged child needs nothing.
        assert!(g.upsert(node("owner", &[])).is_empty());
        assert!(g.upsert(node("child", &[("owner", false)])).is_empty());
        assert!(g.needing_attention().is_empty());
        // The owner goes: its dependents are processed.
        assert_eq!(g.remove("owner"), vec!["child"]);
        assert_eq!(g.needing_attention(), vec!["child"]);
    }

    #[test]
    fn foreground_deletion_processes_owner_and_dependents() {
        let mut g = Graph::default();
        g.upsert(node("owner", &[]));
        g.upsert(node("a", &[("owner", true)]));
        g.upsert(node("b", &[("owner", false)]));
        let mut work = g.upsert(deleting(node("owner", &[]), FOREGROUND));
        work.sort();
        assert_eq!(work, vec!["a", "b", "owner"]);
        assert_eq!(g.blocking_dependents("owner").iter().map(|n| n.uid.as_str()).collect::<Vec<_>>(), vec!["a"]);
        // A blocking dependent going away wakes the owner up.
        assert_eq!(g.remove("a"), vec!["owner"]);
        assert!(g.blocking_dependents("owner").is_empty());
        assert!(g.has_dependents("owner"));
        // So does a dependent that stops naming the owner.
        assert_eq!(g.upsert(node("b", &[])), vec!["owner"]);
        assert!(!g.has_dependents("owner"));
    }

    #[test]
    fn orphaning_owner_is_processed_once() {
        let mut g = Graph::default();
        g.upsert(node("owner", &[]));
        g.upsert(node("a", &[("owner", false)]));
        assert_eq!(g.upsert(deleting(node("owner", &[]), ORPHAN)), vec!["owner"]);
        assert!(g.upsert(deleting(node("owner", &[]), ORPHAN)).is_empty());
        assert_eq!(g.needing_attention(), vec!["owner"]);
    }

    #[test]
    fn references_to_other_namespaces_need_a_look() {
        let mut g = Graph::default();
        g.upsert(node("owner", &[]));
        let mut elsewhere = node("child", &[("owner", false)]);
        elsewhere.namespace = Some("other".into());
        assert_eq!(g.upsert(elsewhere), vec!["child"]);
        let mut renamed = node("child2", &[("owner", false)]);
        renamed.owners[0].name = "not-the-owner".into();
        assert_eq!(g.upsert(renamed), vec!["child2"]);
        let mut cluster_owner = node("cluster", &[]);
        cluster_owner.namespace = None;
        g.upsert(cluster_owner);
        assert!(g.upsert(node("child3", &[("cluster", false)])).is_empty());
    }

    #[test]
    fn builds_nodes_from_metadata() {
        let meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "x", "namespace": "ns", "uid": "u1", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": ["orphan"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u0",
                "blockOwnerDeletion": true}]
        }))
        .unwrap();
        let n = Node::from_meta(3, &meta).unwrap();
        assert!(n.orphaning() && !n.deleting_dependents() && n.blocks("u0"));
        assert_eq!((n.resource, n.namespace.as_deref()), (3, Some("ns")));
        assert!(Node::from_meta(0, &ObjectMeta { name: Some("x".into()), ..Default::default() }).is_none());
    }
}
