//! Strategic merge patch: a JSON merge patch that knows which lists merge.
//!
//! Rules (upstream's `apimachinery/pkg/util/strategicpatch`, applied server side):
//!
//! - Objects merge key by key; `null` deletes a key; scalars, and values whose type changes,
//!   replace.
//! - Lists without a `merge` directive are replaced by the patch's list.
//! - Lists of objects with a `merge` directive merge by the merge key: a patch element
//!   matching a live element merges into it, others are added; `{"$patch": "delete", <key>:
//!   <value>}` deletes every matching element; an element `{"$patch": "replace"}` makes the
//!   patch's list replace the live one. Lists of scalars with `merge` are sets (union).
//! - `$deleteFromPrimitiveList/<field>: [...]` removes those scalars from `<field>`.
//! - `$setElementOrder/<field>: [...]` (sent by `kubectl apply`) gives the order of the elements
//!   the patch mentions; see [`super::order`] for how live-only elements are placed.
//! - `$retainKeys: [...]` in an object removes the object's live keys not listed (union types:
//!   switching a Deployment strategy from `RollingUpdate` to `Recreate` drops `rollingUpdate`).
//! - `$patch: replace` in an object replaces the object; `$patch: delete` deletes it.
//!
//! No directive survives into the result: values the live object does not have are merged
//! into nothing rather than copied, which drops their nulls and consumes their directives.
//!
//! Where skiff departs from upstream (in each case upstream fails in an unhelpful way or
//! leaves directive keys in the object): `$patch: merge` in an object is accepted as the
//! default it names (upstream: "unknown patch type"); `$patch: delete` in an object removes the
//! key (upstream leaves `{}`; its own documentation says delete); `$patch: replace` objects
//! that are new to the live object are kept (upstream drops them); malformed directives are
//! 400s, not 500s.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::directives::{directives, Directive};
use super::order::{self, check_order_list, missing_merge_key};
use super::{bad_request, describe_type, unprocessable, GroupKind, PatchType};
use crate::status::ApiError;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies a strategic merge patch to `doc`, an object of `kind`, and returns the patched copy.
///
/// `kind` must be one with [`directives`]; others (custom resources) get upstream's 415. The
/// patch must be a JSON object (`null` is taken as an empty patch).
pub fn apply_strategic_merge_patch(doc: &Value, patch: &[u8], kind: &GroupKind) -> Result<Value, ApiError> {
    let Some(directives) = directives(kind.group, kind.kind) else {
        return Err(PatchType::unsupported(&PatchType::WITHOUT_STRATEGIC_MERGE));
    };
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| bad_request(format!("error decoding strategic merge patch: {e}")))?;
    let patch = match patch {
        Value::Object(patch) => patch,
        Value::Null => Map::new(),
        other => {
            return Err(bad_request(format!(
                "a strategic merge patch must be a JSON object, got {}",
                describe_type(&other)
            )))
        }
    };
    let Value::Object(live) = doc else {
        return Err(ApiError::Internal(format!("the object to patch is {}, not an object", describe_type(doc))));
    };
    let merged = Merger::new(&directives).merge_object("", Some(live.clone()), patch)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// What a `$patch` key asks of the object it sits in.
enum ObjectDirective {
    Merge,
    Replace,
    Delete,
}

/// How the list at one path merges.
#[derive(Clone, Copy, Default)]
struct ListRule {
    merges: bool,
    merge_key: Option<&'static str>,
}

/// The merge engine for one kind: its directives by path.
struct Merger {
    rules: HashMap<&'static str, ListRule>,
}

impl Merger {
    fn new(directives: &[Directive]) -> Self {
        let rules = directives
            .iter()
            .map(|directive| (directive.path, ListRule { merges: directive.merges(), merge_key: directive.merge_key }))
            .collect();
        Merger { rules }
    }

    fn list_rule(&self, path: &str) -> ListRule {
        self.rules.get(path).copied().unwrap_or_default()
    }

    /// Merges `patch` into the object `live` (absent when the field is new) at `path`.
    /// `None` means the patch deletes the object.
    fn merge_object(
        &self,
        path: &str,
        live: Option<Map<String, Value>>,
        mut patch: Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        match take_object_directive(path, &mut patch)? {
            ObjectDirective::Delete => Ok(None),
            ObjectDirective::Replace => self.merge_fields(path, Map::new(), patch).map(Some),
            ObjectDirective::Merge => self.merge_fields(path, live.unwrap_or_default(), patch).map(Some),
        }
    }

    /// The body of an object merge, once its own `$patch` is dealt with.
    fn merge_fields(
        &self,
        path: &str,
        mut live: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, ApiError> {
        apply_retain_keys(path, &mut live, &mut patch)?;
        self.apply_element_orders(path, &mut live, &mut patch)?;
        let deletions = take_primitive_deletions(path, &mut patch)?;

        for (key, value) in patch {
            let child = child_path(path, &key);
            let merged = match live.get_mut(&key) {
                Some(slot) => self.merge_value(&child, Some(slot.take()), value)?,
                None => self.merge_value(&child, None, value)?,
            };
            match merged {
                // Inserting over an existing key keeps its place; new keys go last.
                Some(merged) => {
                    live.insert(key, merged);
                }
                None => {
                    live.shift_remove(&key);
                }
            }
        }

        for (field, doomed) in deletions {
            if let Some(Value::Array(elements)) = live.get_mut(&field) {
                let doomed: HashSet<String> = doomed.iter().map(order::canonical).collect();
                elements.retain(|element| !doomed.contains(&order::canonical(element)));
            }
        }
        Ok(live)
    }

    /// Merges one patch value into the live value at `path` (`None` when absent). `None` in
    /// the result deletes the field.
    fn merge_value(&self, path: &str, live: Option<Value>, patch: Value) -> Result<Option<Value>, ApiError> {
        Ok(match (live, patch) {
            (_, Value::Null) => None,
            (Some(Value::Object(live)), Value::Object(patch)) => {
                self.merge_object(path, Some(live), patch)?.map(Value::Object)
            }
            (_, Value::Object(patch)) => self.merge_object(path, None, patch)?.map(Value::Object),
            (Some(Value::Array(live)), Value::Array(patch)) => Some(Value::Array(self.merge_list(path, live, patch)?)),
            (_, Value::Array(patch)) => Some(Value::Array(self.merge_list(path, Vec::new(), patch)?)),
            (_, scalar) => Some(scalar),
        })
    }

    /// Merges the patch's list into the live list at `path` (empty when the field is new).
    fn merge_list(&self, path: &str, live: Vec<Value>, patch: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        let rule = self.list_rule(path);
        let ListPatch { elements, deletions, replace } = split_list_directives(path, patch)?;
        if !rule.merges || replace {
            return self.fresh_elements(path, elements);
        }
        let Some(kind) = element_kind(path, [&live, &elements, &deletions])? else {
            return Ok(live);
        };
        match kind {
            ElementKind::List => Err(unprocessable(format!("{path}: lists of lists are not supported"))),
            ElementKind::Scalar => Ok(merge_set(live, elements)),
            ElementKind::Object => match rule.merge_key {
                Some(key) => self.merge_keyed(path, key, live, elements, deletions),
                None => Err(bad_request(format!("{path}: a list of objects cannot be merged without a merge key"))),
            },
        }
    }

    /// Merges a keyed list of objects: deletions first, then each patch element merges into
    /// the first live element with its key or is added.
    fn merge_keyed(
        &self,
        path: &str,
        key: &str,
        mut live: Vec<Value>,
        elements: Vec<Value>,
        deletions: Vec<Value>,
    ) -> Result<Vec<Value>, ApiError> {
        if !deletions.is_empty() {
            let mut doomed = HashSet::with_capacity(deletions.len());
            for deletion in &deletions {
                let id = order::identity(deletion, Some(key)).ok_or_else(|| missing_merge_key(path, key, deletion))?;
                doomed.insert(order::canonical(id));
            }
            live.retain(|element| {
                order::identity(element, Some(key)).is_none_or(|id| !doomed.contains(&order::canonical(id)))
            });
        }
        let live_order = live.clone();
        let mut positions = order::Positions::of(&live, Some(key));
        for element in &elements {
            let Value::Object(patch) = element else { continue };
            if order::identity(element, Some(key)).is_none() {
                return Err(missing_merge_key(path, key, element));
            }
            match positions.of_element(element).and_then(|at| live.get_mut(at)) {
                Some(slot) => {
                    let current = match slot.take() {
                        Value::Object(current) => current,
                        _ => Map::new(),
                    };
                    *slot = Value::Object(self.merge_fields(path, current, patch.clone())?);
                }
                None => {
                    positions.record(element, live.len());
                    live.push(Value::Object(self.merge_fields(path, Map::new(), patch.clone())?));
                }
            }
        }
        Ok(order::normalize(live, &elements, &live_order, Some(key)))
    }

    /// The elements of a list that replaces the live one, each merged into nothing so that
    /// nulls and directives inside them are consumed.
    fn fresh_elements(&self, path: &str, elements: Vec<Value>) -> Result<Vec<Value>, ApiError> {
        elements
            .into_iter()
            .map(|element| match element {
                Value::Object(object) => self.merge_fields(path, Map::new(), object).map(Value::Object),
                // A list inside a list: no field path names it, so no directive applies.
                Value::Array(inner) => self.merge_list(&format!("{path}[]"), Vec::new(), inner).map(Value::Array),
                scalar => Ok(scalar),
            })
            .collect()
    }

    /// Applies every `$setElementOrder/<field>` of `patch`: merges `<field>` (if the patch has
    /// it) and orders the result. Both keys leave `patch`.
    fn apply_element_orders(
        &self,
        path: &str,
        live: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        let directive_keys: Vec<String> =
            patch.keys().filter(|key| key.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
        for directive_key in directive_keys {
            let Some(order_value) = patch.shift_remove(&directive_key) else { continue };
            let field = directive_field(path, &directive_key, SET_ELEMENT_ORDER)?;
            let Value::Array(order_list) = order_value else {
                return Err(bad_request(format!("{}: {directive_key} must be a list", location(path))));
            };
            let child = child_path(path, field);
            let merge_key = self.list_rule(&child).merge_key;
            let live_list = match live.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::Array(elements)) => Some(elements.clone()),
                Some(other) => {
                    return Err(bad_request(format!(
                        "{child}: {directive_key} orders a list, but the object's value is {}",
                        describe_type(other)
                    )))
                }
            };
            let patch_list = match patch.shift_remove(field) {
                None => None,
                Some(Value::Array(elements)) => Some(elements),
                Some(other) => {
                    return Err(bad_request(format!(
                        "{child}: the patch pairs {directive_key} with {}, not a list",
                        describe_type(&other)
                    )))
                }
            };
            if let Some(patch_list) = &patch_list {
                let plain: Vec<Value> =
                    patch_list.iter().filter(|element| !has_patch_marker(element)).cloned().collect();
                check_order_list(&child, &plain, &order_list, merge_key)?;
            }
            let merged = match (live_list.clone(), patch_list) {
                (None, None) => continue,
                (Some(live_list), None) => live_list,
                (live_list, Some(patch_list)) => self.merge_list(&child, live_list.unwrap_or_default(), patch_list)?,
            };
            let live_order = live_list.unwrap_or_default();
            live.insert(field.to_string(), Value::Array(order::normalize(merged, &order_list, &live_order, merge_key)));
        }
        Ok(())
    }
}

/// Merges a list of scalars as a set: the union, each value once.
fn merge_set(live: Vec<Value>, elements: Vec<Value>) -> Vec<Value> {
    let live_order = live.clone();
    let mut seen = HashSet::with_capacity(live.len() + elements.len());
    let merged: Vec<Value> = live
        .into_iter()
        .chain(elements.iter().cloned())
        .filter(|element| seen.insert(order::canonical(element)))
        .collect();
    order::normalize(merged, &elements, &live_order, None)
}

/// Removes the object's `$patch` key and says what it asks for (merging when absent).
fn take_object_directive(path: &str, patch: &mut Map<String, Value>) -> Result<ObjectDirective, ApiError> {
    let Some(directive) = patch.shift_remove(PATCH) else {
        return Ok(ObjectDirective::Merge);
    };
    match directive.as_str() {
        Some("merge") => Ok(ObjectDirective::Merge),
        Some("replace") => Ok(ObjectDirective::Replace),
        Some("delete") => Ok(ObjectDirective::Delete),
        _ => Err(bad_request(format!(
            "{}: unknown $patch directive {directive}; expected \"replace\", \"delete\" or \"merge\"",
            location(path)
        ))),
    }
}

/// Applies the object's `$retainKeys` list: live keys not named are dropped. Every field the
/// patch sets must be named (upstream: "invalid patch format of retainKeys").
fn apply_retain_keys(
    path: &str,
    live: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(bad_request(format!("{}: $retainKeys must be a list of field names", location(path))));
    };
    let keep: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch.iter() {
        let directive = key.starts_with(DELETE_FROM_PRIMITIVE_LIST) || key.starts_with(SET_ELEMENT_ORDER);
        if !value.is_null() && !directive && !keep.contains(key.as_str()) {
            return Err(bad_request(format!(
                "{}: the patch sets {key:?}, which its $retainKeys list does not name",
                location(path)
            )));
        }
    }
    live.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Removes the `$deleteFromPrimitiveList/<field>` keys from `patch`, returning each field with
/// the values to delete from it.
fn take_primitive_deletions(path: &str, patch: &mut Map<String, Value>) -> Result<Vec<(String, Vec<Value>)>, ApiError> {
    let keys: Vec<String> = patch.keys().filter(|key| key.starts_with(DELETE_FROM_PRIMITIVE_LIST)).cloned().collect();
    let mut deletions = Vec::with_capacity(keys.len());
    for key in keys {
        let field = directive_field(path, &key, DELETE_FROM_PRIMITIVE_LIST)?.to_string();
        match patch.shift_remove(&key) {
            Some(Value::Array(values)) => deletions.push((field, values)),
            _ => return Err(bad_request(format!("{}: {key} must be a list", location(path)))),
        }
    }
    Ok(deletions)
}

/// The `<field>` of a `<prefix>/<field>` directive key.
fn directive_field<'k>(path: &str, key: &'k str, prefix: &str) -> Result<&'k str, ApiError> {
    key.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('/')).filter(|field| !field.is_empty()).ok_or_else(
        || bad_request(format!("{}: invalid directive key {key:?}: expected {prefix}/<field>", location(path))),
    )
}

/// A patch list split into plain elements and `$patch` elements.
struct ListPatch {
    elements: Vec<Value>,
    /// `{"$patch": "delete", <merge key>: <value>}` elements.
    deletions: Vec<Value>,
    /// Whether a `{"$patch": "replace"}` element asks for the whole list to be replaced.
    replace: bool,
}

fn split_list_directives(path: &str, patch: Vec<Value>) -> Result<ListPatch, ApiError> {
    let mut split = ListPatch { elements: Vec::with_capacity(patch.len()), deletions: Vec::new(), replace: false };
    for element in patch {
        let directive = element.as_object().and_then(|object| object.get(PATCH));
        match directive.map(|directive| (directive.as_str(), directive)) {
            None => split.elements.push(element),
            Some((Some("replace"), _)) => split.replace = true,
            Some((Some("delete"), _)) => split.deletions.push(element),
            Some((Some("merge"), _)) => {
                return Err(bad_request(format!(
                    "{path}: $patch: merge cannot be used in a list element; a list merges or not by its field's patch strategy"
                )))
            }
            Some((_, other)) => {
                return Err(bad_request(format!(
                    "{path}: unknown $patch directive {other} in a list element; expected \"replace\" or \"delete\""
                )))
            }
        }
    }
    Ok(split)
}

/// The kinds of list elements a merge tells apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ElementKind {
    Scalar,
    Object,
    List,
}

/// The one kind of element in `lists` (`None` when they are all empty); mixed kinds are a 400.
fn element_kind(path: &str, lists: [&[Value]; 3]) -> Result<Option<ElementKind>, ApiError> {
    let mut found = None;
    for element in lists.into_iter().flatten() {
        let kind = match element {
            Value::Object(_) => ElementKind::Object,
            Value::Array(_) => ElementKind::List,
            _ => ElementKind::Scalar,
        };
        match found {
            None => found = Some(kind),
            Some(seen) if seen != kind => {
                return Err(bad_request(format!(
                    "{path}: list element types are not identical (mixes {seen:?} and {kind:?})"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

fn has_patch_marker(element: &Value) -> bool {
    element.as_object().is_some_and(|object| object.contains_key(PATCH))
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A path for messages: the root has no name of its own.
fn location(path: &str) -> &str {
    if path.is_empty() {
        "the patch root"
    } else {
        path
    }
}
