//! # PATCH: the four patch formats of the Kubernetes API
//!
//! A PATCH request names its format in `Content-Type` ([`PatchType::from_content_type`]):
//!
//! - **JSON patch** (RFC 6902, [`apply_json_patch`]): a list of `add`/`remove`/`replace`/`move`/
//!   `copy`/`test` operations (`kubectl patch --type json`, the Python client given a list).
//! - **JSON merge patch** (RFC 7386, [`apply_merge_patch`]): a partial object; maps merge,
//!   `null` deletes, lists are replaced (`kubectl scale`, `kubectl patch --type merge`).
//! - **Strategic merge patch** ([`apply_strategic_merge_patch`]): a merge patch that knows, per
//!   field, which lists merge by a key (containers by `name`, Service ports by `port`) and
//!   understands `$patch`, `$setElementOrder`, `$deleteFromPrimitiveList` and `$retainKeys`
//!   directives. This is what `kubectl apply` (client side), `kubectl patch` by default,
//!   `kubectl rollout restart` and the Python client given a dict send. The per-kind field
//!   knowledge is the [`directives`] table, which the OpenAPI generator also publishes as
//!   `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`.
//! - **Apply patch** (server-side apply, `application/apply-patch+yaml`): only recognised here;
//!   applying it needs field managers and lives with the API server.
//!
//! ## Errors (as upstream's `endpoints/handlers/patch.go` answers)
//!
//! - A body that is not a well-formed patch of its format → 400 `BadRequest`.
//! - A well-formed JSON patch that cannot be applied to this object (a `test` that fails, a
//!   path that does not exist) → 422 `Invalid`. Upstream's body for that case carries only the
//!   generic "the server rejected our request due to an error in our request"; skiff keeps the
//!   code and reason but says what failed, as a single `patch` field cause. The error's
//!   [`Subject`] is left empty (the patch functions do not know the object's name); the caller
//!   names the object with [`for_target`].
//! - A strategic merge patch whose directives do not fit the object (lists of lists) → 422, as
//!   upstream; other malformed strategic merge patches (an unknown `$patch` value, a missing
//!   merge key, a `$setElementOrder` list that disagrees with the patch) → 400. Upstream lets
//!   those escape as untyped errors, which its handler turns into 500s; a client error is the
//!   honest answer.
//! - More than 10000 JSON patch operations → 413, as upstream.
//! - A strategic merge patch for a kind without patch directives (custom resources) → 415, as
//!   upstream.
//!
//! No function here panics on any input.

mod directives;
mod json;
mod order;
mod smp;

#[cfg(test)]
mod tests;

use crate::status::{ApiError, FieldError, FieldErrorType, Subject};

pub use directives::{directives, Directive};
pub use json::{apply_json_patch, apply_merge_patch, MAX_JSON_PATCH_OPERATIONS};
pub use smp::apply_strategic_merge_patch;

/// The API group and kind of the object being patched, which selects its [`directives`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupKind<'a> {
    /// `""` for the core group, else e.g. `apps`.
    pub group: &'a str,
    pub kind: &'a str,
}

/// The patch formats the API server accepts, named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// Every patch type, in the order upstream lists them in its 415 message for built-in kinds.
    pub const ALL: [PatchType; 4] = [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply];

    /// The patch types a kind without strategic merge directives (custom resources) accepts.
    pub const WITHOUT_STRATEGIC_MERGE: [PatchType; 3] = [PatchType::Json, PatchType::Merge, PatchType::Apply];

    /// The patch type of a `Content-Type` header value. Parameters such as `; charset=utf-8`
    /// are ignored, as upstream strips everything after `;`; the media type is compared
    /// without regard to case or surrounding blanks (media types are case-insensitive).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        PatchType::ALL.into_iter().find(|patch_type| patch_type.content_type().eq_ignore_ascii_case(media_type))
    }

    /// The media type clients send for this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }

    /// The 415 answer for a PATCH whose `Content-Type` is not one of `accepted`, worded as
    /// upstream's (`kubectl` and controller-runtime match on the reason, people on the text).
    pub fn unsupported(accepted: &[PatchType]) -> ApiError {
        let list: Vec<&str> = accepted.iter().map(|patch_type| patch_type.content_type()).collect();
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            list.join(", ")
        ))
    }
}

/// Names the patched object in a patch error: the 422 errors built here carry an empty
/// [`Subject`] because the patch functions only see documents; every other error is returned
/// unchanged.
pub fn for_target(error: ApiError, target: &Subject) -> ApiError {
    match error {
        ApiError::Invalid(subject, causes) if subject == Subject::default() => {
            ApiError::Invalid(target.clone(), causes)
        }
        other => other,
    }
}

/// A body that is not a well-formed patch (400).
fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// A well-formed patch that cannot be applied to this object (422 `Invalid`, one cause on the
/// field `patch`, no subject yet; see [`for_target`]).
fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::Invalid(Subject::default(), vec![FieldError::new(FieldErrorType::Invalid, "patch", None, message)])
}

/// A JSON value's type in words, for error messages.
fn describe_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
