//! Controller references: which controller owns an object, and adopting or releasing
//! objects by label selector (upstream's `ControllerRefManager`), shared by the
//! ReplicaSet controller (owning pods) and the Deployment controller (owning ReplicaSets).
//!
//! Rules, as upstream: an object owned by another controller is never touched; an owned
//! object that no longer matches the selector is released (its ownerReference removed)
//! unless the owner is being deleted; an orphan that matches is adopted unless either
//! side is being deleted, and only after a fresh read confirms the owner still exists
//! (the cache may be stale). Writes are merge patches carrying the resourceVersion the
//! decision was based on, so a concurrent change makes them fail instead of clobbering.

use std::fmt::Debug;
use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skiff_core::labels::{selector_from_api_value, Selector};

/// A workload's `spec.selector` as a matchable [`Selector`] (an empty one selects
/// everything, as upstream's `LabelSelectorAsSelector`).
pub fn selector(selector: &LabelSelector) -> anyhow::Result<Selector> {
    let value = serde_json::to_value(selector)?;
    Ok(selector_from_api_value(Some(&value))?)
}

/// Whether a selector has neither matchLabels nor matchExpressions.
pub fn is_empty_selector(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// The ownerReference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_deref()?.iter().find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with UID `owner_uid`.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// The reference a controller puts on what it owns: `controller` and
/// `blockOwnerDeletion` set, so foreground deletion waits for the dependents.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What to do with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected: it counts.
    Keep,
    /// Ours but no longer selected: remove our ownerReference.
    Release,
    /// An orphan that is selected: add our ownerReference.
    Adopt,
    /// Someone else's, or not ours and not selected, or not to be touched now.
    Ignore,
}

/// Decides the fate of `object` for an owner with UID `owner_uid`.
pub fn decide(owner_uid: &str, owner_deleting: bool, object: &ObjectMeta, selected: bool) -> Claim {
    match controller_of(object) {
        Some(r) if r.uid == owner_uid => {
            if selected {
                Claim::Keep
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if selected && !owner_deleting && object.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The merge patch adding `owner` as controller, conditional on `object`'s version.
pub fn adopt_patch(object: &ObjectMeta, owner: &OwnerReference) -> Value {
    let mut refs: Vec<OwnerReference> =
        object.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != owner.uid).collect();
    refs.push(owner.clone());
    json!({"metadata": {"resourceVersion": object.resource_version, "ownerReferences": refs}})
}

/// The merge patch removing the reference to `owner_uid`, conditional on `object`'s version.
pub fn release_patch(object: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<OwnerReference> =
        object.owner_references.clone().unwrap_or_default().into_iter().filter(|r| r.uid != owner_uid).collect();
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    json!({"metadata": {"resourceVersion": object.resource_version, "ownerReferences": refs}})
}

/// Claims `candidates` for `owner`: returns the objects it owns after adopting matching
/// orphans and releasing owned objects that no longer match. Objects that vanish while
/// being claimed are skipped; any other failure is returned after the rest were handled.
pub async fn claim<Owner, K>(
    owner: &Owner,
    owner_api: &Api<Owner>,
    api: &Api<K>,
    selector: &Selector,
    candidates: Vec<Arc<K>>,
) -> anyhow::Result<Vec<Arc<K>>>
where
    Owner: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    let owner_deleting = owner.meta().deletion_timestamp.is_some();
    let reference = controller_ref(owner);
    let mut owner_confirmed = false;
    let mut claimed = Vec::with_capacity(candidates.len());
    let mut first_error = None;
    for object in candidates {
        let selected = selector.matches(object.labels());
        let decision = decide(&owner_uid, owner_deleting, object.meta(), selected);
        let result = match decision {
            Claim::Keep => {
                claimed.push(object);
                continue;
            }
            Claim::Ignore => continue,
            Claim::Release => {
                let patch = release_patch(object.meta(), &owner_uid);
                patch_ignoring_gone(api, &object.name_any(), &patch).await.map(|_| ())
            }
            Claim::Adopt => {
                if !owner_confirmed {
                    if let Err(e) = confirm_owner(owner, owner_api).await {
                        first_error.get_or_insert(e);
                        continue;
                    }
                    owner_confirmed = true;
                }
                let patch = adopt_patch(object.meta(), &reference);
                match patch_ignoring_gone(api, &object.name_any(), &patch).await {
                    Ok(Some(adopted)) => {
                        claimed.push(Arc::new(adopted));
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            let what = if decision == Claim::Adopt { "adopting" } else { "releasing" };
            first_error.get_or_insert(e.context(format!("{what} {} {}", K::kind(&()), object.name_any())));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// A fresh read of the owner: adoption must not act on a cached owner that is gone or
/// being deleted (upstream's `RecheckDeletionTimestamp`).
async fn confirm_owner<Owner>(owner: &Owner, owner_api: &Api<Owner>) -> anyhow::Result<()>
where
    Owner: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let name = owner.name_any();
    let fresh = owner_api.get(&name).await.with_context(|| format!("re-reading {} {name}", Owner::kind(&())))?;
    if fresh.meta().uid != owner.meta().uid {
        anyhow::bail!(
            "original {} {name} is gone: got uid {:?}, wanted {:?}",
            Owner::kind(&()),
            fresh.meta().uid,
            owner.meta().uid
        );
    }
    if fresh.meta().deletion_timestamp.is_some() {
        anyhow::bail!("{} {name} has just been deleted", Owner::kind(&()));
    }
    Ok(())
}

/// Applies a merge patch; an object that is gone (404) or rejects the change as invalid
/// because it is being deleted (422) is not an error (upstream ignores both).
async fn patch_ignoring_gone<K>(api: &Api<K>, name: &str, patch: &Value) -> anyhow::Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_invalid() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            resource_version: Some("7".into()),
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "x".into(),
                    uid: uid.into(),
                    controller: Some(controller),
                    block_owner_deletion: None,
                }]
            }),
            deletion_timestamp: deleting.then_some({
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
            }),
            ..Default::default()
        }
    }

    #[test]
    fn decisions_follow_upstream_rules() {
        assert_eq!(decide("me", false, &meta(Some(("me", true)), false), true), Claim::Keep);
        assert_eq!(decide("me", false, &meta(Some(("me", true)), false), false), Claim::Release);
        assert_eq!(decide("me", true, &meta(Some(("me", true)), false), false), Claim::Ignore);
        assert_eq!(decide("me", false, &meta(Some(("other", true)), false), true), Claim::Ignore);
        assert_eq!(decide("me", false, &meta(None, false), true), Claim::Adopt);
        assert_eq!(decide("me", false, &meta(None, false), false), Claim::Ignore);
        assert_eq!(decide("me", true, &meta(None, false), true), Claim::Ignore);
        assert_eq!(decide("me", false, &meta(None, true), true), Claim::Ignore);
        // A non-controller reference does not make an object owned.
        assert_eq!(decide("me", false, &meta(Some(("other", false)), false), true), Claim::Adopt);
    }

    #[test]
    fn patches_keep_other_references_and_lock_the_version() {
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: "me".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let adopt = adopt_patch(&meta(Some(("other", false)), false), &owner);
        assert_eq!(adopt["metadata"]["resourceVersion"], "7");
        let refs = adopt["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1]["uid"], "me");
        assert_eq!(refs[1]["controller"], true);
        assert_eq!(refs[1]["blockOwnerDeletion"], true);

        let release = release_patch(&meta(Some(("me", true)), false), "me");
        assert_eq!(release["metadata"]["ownerReferences"], Value::Null);
        assert_eq!(release["metadata"]["resourceVersion"], "7");
    }
}
