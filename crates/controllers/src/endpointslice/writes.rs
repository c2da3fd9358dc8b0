//! Performing a [`SlicePlan`] against the API: creates, then updates, then deletes, each
//! result handed back so the caller's cache reflects it at once (see [`super::cache`]).

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::Api;

use super::cache::SliceIndex;
use super::model::ObjectKey;
use super::reconcile::SlicePlan;
use crate::health::Metrics;

/// Counter of EndpointSlice writes, labelled by controller and operation.
pub const WRITES_METRIC: &str = "skiff_endpointslice_writes_total";

/// The outcome of one successful write.
pub enum Written {
    /// The slice as the API server stored it (created or updated).
    Stored(Box<EndpointSlice>),
    /// The slice is gone (deleted now, or already).
    Removed(ObjectKey),
}

/// Whether the API refused a create because the namespace is being deleted: creates will
/// keep failing, so the sync gives up quietly, as upstream does.
fn namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

/// The object a set of slices belongs to (a Service, or an Endpoints being mirrored).
pub struct Owner<'a> {
    /// Its kind, for error messages ("Service", "Endpoints").
    pub kind: &'static str,
    pub key: &'a ObjectKey,
}

/// Performs `plan` for `owner` with the controller's slice cache (`index`) kept in step: the
/// writes are registered before they start (so their watch echoes are recognised), each
/// result is recorded as it comes, and the registration ends with the last write.
///
/// `with_index` runs a closure on the cache under the controller's lock (never held across
/// an await).
pub async fn perform_tracked(
    api: &Api<EndpointSlice>,
    owner: Owner<'_>,
    plan: SlicePlan,
    allow_create: bool,
    metrics: &Metrics,
    controller: &str,
    with_index: impl Fn(&mut dyn FnMut(&mut SliceIndex)),
) -> Result<(), String> {
    let description = format!("{} {}", owner.kind, owner.key);
    with_index(&mut |index| index.begin_writes(owner.key, &plan));
    let result = perform(api, plan, allow_create, &description, metrics, controller, |written| {
        let mut written = Some(written);
        with_index(&mut |index| match written.take() {
            Some(Written::Stored(slice)) => index.wrote(*slice),
            Some(Written::Removed(slice)) => index.deleted(&slice),
            None => {}
        })
    })
    .await;
    with_index(&mut |index| index.end_writes(owner.key));
    result
}

/// Performs `plan` in `api`'s namespace for `owner` (e.g. "Service default/web", used in
/// error messages). Creates are skipped when `allow_create` is false (the owner is being
/// deleted). Stops at the first failure and returns its message.
async fn perform(
    api: &Api<EndpointSlice>,
    plan: SlicePlan,
    allow_create: bool,
    owner: &str,
    metrics: &Metrics,
    controller: &str,
    mut record: impl FnMut(Written),
) -> Result<(), String> {
    let count = |operation: &str| metrics.inc(WRITES_METRIC, &[("controller", controller), ("operation", operation)]);
    if allow_create {
        for slice in plan.create {
            match api.create(&PostParams::default(), &slice).await {
                Ok(created) => {
                    count("create");
                    record(Written::Stored(Box::new(created)));
                }
                Err(e) if namespace_terminating(&e) => return Ok(()),
                Err(e) => return Err(format!("failed to create EndpointSlice for {owner}: {e}")),
            }
        }
    }
    for slice in plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), &slice).await {
            Ok(updated) => {
                count("update");
                record(Written::Stored(Box::new(updated)));
            }
            Err(e) => return Err(format!("failed to update {name} EndpointSlice for {owner}: {e}")),
        }
    }
    for slice in plan.delete {
        let key = ObjectKey::of(&slice);
        match api.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => {
                count("delete");
                record(Written::Removed(key));
            }
            Err(kube::Error::Api(status)) if status.is_not_found() => record(Written::Removed(key)),
            Err(e) => return Err(format!("failed to delete {} EndpointSlice for {owner}: {e}", key.name)),
        }
    }
    Ok(())
}
