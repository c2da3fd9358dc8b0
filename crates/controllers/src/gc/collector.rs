//! What the garbage collector does with one queued object, decided on live data.
//!
//! - An object being deleted in **orphan** mode: remove its ownerReference from every
//!   dependent, then remove its `orphan` finalizer.
//! - An object being deleted in **foreground** mode: once no dependent with
//!   `blockOwnerDeletion` is left, remove its `foregroundDeletion` finalizer (the API server
//!   then deletes it); until then make sure the blocking dependents are being deleted.
//! - Any other object with owners: look every owner up. An owner that is missing, or whose
//!   uid differs (it was re-created), is *dangling*; one being deleted in foreground is
//!   *waiting*; the rest are *solid*. With a solid owner the object stays and loses its
//!   dangling and waiting references; otherwise it is deleted — in foreground when a waiting
//!   owner needs it gone and it has dependents of its own, else in the mode its own
//!   finalizers ask for (background by default).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::DynamicObject;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use serde_json::json;

use super::graph::{Graph, Node, Owner, Uid, FOREGROUND, ORPHAN};
use super::queue::WorkQueue;
use super::resources::{ResourceIndex, ServedResource};
use crate::context::Context;

/// The garbage collector's shared state: the graph the watches maintain, the queue of uids
/// to process, and what it needs to act.
pub struct Collector {
    pub ctx: Arc<Context>,
    pub resources: ResourceIndex,
    pub graph: Mutex<Graph>,
    pub queue: Arc<WorkQueue<Uid>>,
    /// Objects already warned about (OwnerRefInvalidNamespace), to warn once.
    warned: Mutex<HashSet<Uid>>,
}

/// How an ownerReference resolves against the live owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Missing, or a different object (uid mismatch) now has its name.
    Dangling,
    /// Being deleted in foreground: waits for this dependent to go.
    Waiting,
}

impl Collector {
    pub fn new(ctx: Arc<Context>, resources: ResourceIndex) -> Self {
        Collector {
            ctx,
            resources,
            graph: Mutex::new(Graph::default()),
            queue: Arc::new(WorkQueue::default()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The graph, locked; never held across an await.
    pub fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Processes one queued uid.
    pub async fn sync(&self, uid: &str) -> Result<()> {
        let Some(node) = self.graph().get(uid).cloned() else { return Ok(()) };
        if node.deleting {
            if node.orphaning() {
                self.orphan_dependents(&node).await?;
                self.remove_finalizer(&node, ORPHAN).await?;
            }
            if node.deleting_dependents() {
                self.process_deleting_dependents(&node).await?;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        self.attempt_to_delete(&node).await
    }

    fn resource(&self, node: &Node) -> Result<&ServedResource> {
        self.resources.get(node.resource).ok_or_else(|| anyhow!("unknown resource index {}", node.resource))
    }

    /// The live metadata of `node`'s object, None if it is gone or is another object now.
    async fn live(&self, node: &Node) -> Result<Option<PartialObjectMeta<DynamicObject>>> {
        let api = self.resource(node)?.api(&self.ctx.client, node.namespace.as_deref());
        let live = api.get_metadata_opt(&node.name).await?;
        Ok(live.filter(|l| l.metadata.uid.as_deref() == Some(node.uid.as_str())))
    }

    async fn attempt_to_delete(&self, node: &Node) -> Result<()> {
        let Some(live) = self.live(node).await? else { return Ok(()) };
        if live.metadata.deletion_timestamp.is_some() {
            // Being deleted already: the watch brings the final state.
            return Ok(());
        }
        let owners = owners_of(&live.metadata);
        if owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &owners {
            match self.owner_state(node, owner).await? {
                Some(OwnerState::Solid) => solid.push(owner.uid.clone()),
                Some(OwnerState::Dangling) => dangling.push(owner.uid.clone()),
                Some(OwnerState::Waiting) => waiting.push(owner.uid.clone()),
                // A reference that can never resolve: never collect the object.
                None => return Ok(()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            dangling.extend(waiting);
            tracing::debug!(object = %node.name, refs = ?dangling, "removing references to missing owners");
            return self.remove_owner_references(node, &dangling).await;
        }
        let policy = if !waiting.is_empty() && self.graph().has_dependents(&node.uid) {
            PropagationPolicy::Foreground
        } else {
            let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == ORPHAN) {
                PropagationPolicy::Orphan
            } else if finalizers.iter().any(|f| f == FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        self.delete(node, policy).await
    }

    /// Resolves one ownerReference of `node`; None when it can never resolve (a
    /// cluster-scoped object naming a namespaced owner kind).
    async fn owner_state(&self, node: &Node, owner: &Owner) -> Result<Option<OwnerState>> {
        let Some(resource) = self.resources.by_kind(&owner.api_version, &owner.kind) else {
            // Upstream keeps retrying such objects: the kind may be served later.
            return Err(anyhow!("ownerReference to {} {} which the API does not serve", owner.api_version, owner.kind));
        };
        if resource.namespaced && node.namespace.is_none() {
            self.warn_invalid_namespace(node, owner).await;
            return Ok(None);
        }
        let api = resource.api(&self.ctx.client, node.namespace.as_deref());
        let live = api.get_metadata_opt(&owner.name).await?;
        let Some(live) = live.filter(|l| l.metadata.uid.as_deref() == Some(owner.uid.as_str())) else {
            if resource.namespaced && self.lives_in_another_namespace(node, &owner.uid) {
                self.warn_invalid_namespace(node, owner).await;
            }
            return Ok(Some(OwnerState::Dangling));
        };
        let waiting = live.metadata.deletion_timestamp.is_some()
            && live.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
        Ok(Some(if waiting { OwnerState::Waiting } else { OwnerState::Solid }))
    }

    fn lives_in_another_namespace(&self, node: &Node, owner_uid: &str) -> bool {
        self.graph().get(owner_uid).is_some_and(|o| o.namespace != node.namespace)
    }

    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> Result<()> {
        let api = self.resource(node)?.api(&self.ctx.client, node.namespace.as_deref());
        let params = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions { uid: Some(node.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        tracing::info!(resource = %self.resource(node)?.group_resource(), namespace = ?node.namespace,
            name = %node.name, ?policy, "deleting object whose owners are gone");
        match api.delete(&node.name, &params).await {
            Ok(_) => {
                self.ctx.metrics.inc("skiff_gc_deletions_total", &[]);
                Ok(())
            }
            // Gone, or a different object by now (uid precondition failed).
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the ownerReferences to `owner_uids` from `node`'s object.
    async fn remove_owner_references(&self, node: &Node, owner_uids: &[Uid]) -> Result<()> {
        let Some(live) = self.live(node).await? else { return Ok(()) };
        let refs = live.metadata.owner_references.clone().unwrap_or_default();
        let kept: Vec<OwnerReference> = refs.iter().filter(|r| !owner_uids.contains(&r.uid)).cloned().collect();
        if kept.len() == refs.len() {
            return Ok(());
        }
        let kept = if kept.is_empty() { serde_json::Value::Null } else { json!(kept) };
        let patch = json!({"metadata": {"ownerReferences": kept, "resourceVersion": live.metadata.resource_version}});
        self.patch(node, patch).await
    }

    /// Removes `finalizer` from `node`'s object (the API server deletes an object being
    /// deleted once its last finalizer is gone).
    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<()> {
        let Some(live) = self.live(node).await? else { return Ok(()) };
        let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let kept = if kept.is_empty() { serde_json::Value::Null } else { json!(kept) };
        tracing::info!(name = %node.name, namespace = ?node.namespace, finalizer, "removing finalizer");
        let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": live.metadata.resource_version}});
        self.patch(node, patch).await
    }

    /// A JSON merge patch carrying the resourceVersion it was computed from: a conflict
    /// fails it, and the queue retries on fresh data.
    async fn patch(&self, node: &Node, patch: serde_json::Value) -> Result<()> {
        let api = self.resource(node)?.api(&self.ctx.client, node.namespace.as_deref());
        match api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn orphan_dependents(&self, owner: &Node) -> Result<()> {
        let dependents = self.graph().dependents(&owner.uid);
        let owner_uid = [owner.uid.clone()];
        let results =
            futures::future::join_all(dependents.iter().map(|d| self.remove_owner_references(d, &owner_uid))).await;
        let failures: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("orphaning the dependents of {} failed: {}", owner.name, failures.join("; ")))
        }
    }

    async fn process_deleting_dependents(&self, owner: &Node) -> Result<()> {
        let blocking = self.graph().blocking_dependents(&owner.uid);
        if blocking.is_empty() {
            return self.remove_finalizer(owner, FOREGROUND).await;
        }
        for dependent in blocking.into_iter().filter(|d| !d.deleting_dependents()) {
            self.queue.add(dependent.uid);
        }
        Ok(())
    }

    /// Records the OwnerRefInvalidNamespace warning upstream gives a dependent whose
    /// namespaced owner is not in its namespace (or which is cluster-scoped).
    async fn warn_invalid_namespace(&self, node: &Node, owner: &Owner) {
        let first = self.warned.lock().map(|mut w| w.insert(node.uid.clone())).unwrap_or(false);
        if !first {
            return;
        }
        let Ok(resource) = self.resource(node) else { return };
        let namespace = node.namespace.clone().unwrap_or_default();
        let message = format!(
            "ownerRef [{}/{}, namespace: {namespace}, name: {}, uid: {}] does not exist in namespace {namespace:?}",
            owner.api_version, owner.kind, owner.name, owner.uid
        );
        let reference = ObjectReference {
            api_version: Some(resource.resource.api_version.clone()),
            kind: Some(resource.resource.kind.clone()),
            name: Some(node.name.clone()),
            namespace: node.namespace.clone(),
            uid: Some(node.uid.clone()),
            ..Default::default()
        };
        record_warning(&self.ctx.client, reference, "OwnerRefInvalidNamespace", &message).await;
    }
}

/// The ownerReferences of live metadata as graph owners.
fn owners_of(meta: &ObjectMeta) -> Vec<Owner> {
    Node::from_meta(0, meta).map(|n| n.owners).unwrap_or_default()
}

/// Writes a Warning core/v1 Event about any object (the shared recorder takes typed objects
/// only, and the collector works on dynamic ones).
async fn record_warning(client: &kube::Client, reference: ObjectReference, reason: &str, message: &str) {
    let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{stamp:x}", reference.name.clone().unwrap_or_default())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: reference,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource { component: Some("garbage-collector-controller".into()), host: None }),
        reporting_component: Some("garbage-collector-controller".into()),
        ..Default::default()
    };
    let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), &namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(error = %e, reason, "recording an event failed");
    }
}
