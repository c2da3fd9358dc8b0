//! Element order of merged lists.
//!
//! A merged list mixes elements the patch mentions with elements only the live object has
//! (added by controllers or other clients). Upstream's rule, kept here so that `kubectl
//! apply` produces the same lists as against a real cluster:
//!
//! 1. elements the patch mentions follow the order the patch gives (its `$setElementOrder`
//!    list if any, else the order of the patch's own list);
//! 2. live-only elements keep their live order;
//! 3. the two sequences are interleaved: a live-only element goes first only while it stood
//!    before the next patch element in the live list; elements new to the list are placed as
//!    soon as their turn in the patch order comes.
//!
//! Elements are identified by their merge key's value in keyed lists of objects and by their
//! whole value in lists of scalars.

use std::collections::HashMap;

use serde_json::Value;

use super::bad_request;
use crate::status::ApiError;

/// What identifies a list element: its merge key's value, or the element itself when the list
/// has no merge key. `None` for an object lacking the merge key: it matches nothing.
pub(super) fn identity<'v>(element: &'v Value, merge_key: Option<&str>) -> Option<&'v Value> {
    match merge_key {
        Some(key) => element.as_object().and_then(|object| object.get(key)),
        None => Some(element),
    }
}

/// A hashable rendering of a value, equal for values equal as JSON: object keys are sorted,
/// everything else is rendered as JSON text.
pub(super) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(elements) => {
            out.push('[');
            for (i, element) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(element, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Where each identity first occurs in a list: the lookups of a merge, without rescanning the
/// list for every element (patches can carry long lists).
pub(super) struct Positions<'k> {
    merge_key: Option<&'k str>,
    first: HashMap<String, usize>,
}

impl<'k> Positions<'k> {
    pub(super) fn of(list: &[Value], merge_key: Option<&'k str>) -> Self {
        let mut positions = Positions { merge_key, first: HashMap::with_capacity(list.len()) };
        for (at, element) in list.iter().enumerate() {
            positions.record(element, at);
        }
        positions
    }

    /// Notes that `element` sits at `at`, unless its identity already occurs earlier.
    pub(super) fn record(&mut self, element: &Value, at: usize) {
        if let Some(id) = identity(element, self.merge_key) {
            self.first.entry(canonical(id)).or_insert(at);
        }
    }

    /// The position of the first element with the same identity as `element`.
    pub(super) fn of_element(&self, element: &Value) -> Option<usize> {
        let id = identity(element, self.merge_key)?;
        self.first.get(&canonical(id)).copied()
    }
}

/// Orders a merged list: elements found in `patch_order` follow it, the others keep their order
/// in `live_order`, interleaved as the module documentation describes.
pub(super) fn normalize(
    merged: Vec<Value>,
    patch_order: &[Value],
    live_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let in_patch = Positions::of(patch_order, merge_key);
    let in_live = Positions::of(live_order, merge_key);
    let mut from_patch = Vec::new();
    let mut live_only = Vec::new();
    for element in merged {
        let live_at = in_live.of_element(&element);
        match in_patch.of_element(&element) {
            Some(patch_at) => from_patch.push((patch_at, live_at, element)),
            None => live_only.push((live_at.unwrap_or(usize::MAX), live_at, element)),
        }
    }
    // Stable sorts: elements with equal positions (duplicates) keep their relative order.
    from_patch.sort_by_key(|(patch_at, _, _)| *patch_at);
    live_only.sort_by_key(|(sort_at, _, _)| *sort_at);

    let mut ordered = Vec::with_capacity(from_patch.len() + live_only.len());
    let mut live_only = live_only.into_iter().peekable();
    let mut from_patch = from_patch.into_iter().peekable();
    loop {
        let take_live = match (live_only.peek(), from_patch.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, live_at, _)), Some((_, patched_at, _))) => match (live_at, patched_at) {
                (Some(live_at), Some(patched_at)) => live_at < patched_at,
                _ => false,
            },
        };
        let next = if take_live { live_only.next() } else { from_patch.next() };
        ordered.extend(next.map(|(_, _, element)| element));
    }
    ordered
}

/// Checks that a `$setElementOrder/<field>` list agrees with the patch's `<field>` list: every
/// element the patch lists (directive elements aside) must appear in the order list, in the
/// same relative order. `field` names the list for the error message.
pub(super) fn check_order_list(
    field: &str,
    patch_elements: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), ApiError> {
    let mut remaining = order.iter();
    for element in patch_elements {
        let Some(id) = identity(element, merge_key) else {
            return Err(missing_merge_key(field, merge_key.unwrap_or_default(), element));
        };
        if !remaining.any(|ordered| identity(ordered, merge_key) == Some(id)) {
            return Err(bad_request(format!(
                "the elements of {field} in the patch ({}) are not in the order of its $setElementOrder/{field} list ({})",
                Value::from(patch_elements.to_vec()),
                Value::from(order.to_vec()),
            )));
        }
    }
    Ok(())
}

/// The 400 for an element of a keyed list that lacks the merge key.
pub(super) fn missing_merge_key(field: &str, merge_key: &str, element: &Value) -> ApiError {
    bad_request(format!("an element of {field} ({element}) does not contain its merge key {merge_key:?}"))
}
