//! The `pod-template-hash`: names a Deployment's ReplicaSets (`<deployment>-<hash>`) and
//! labels their pods, so each revision of the pod template gets its own ReplicaSet.
//!
//! Upstream hashes the Go struct dump of the template with FNV-32a; skiff hashes a
//! canonical JSON form (keys sorted, empty values dropped) with the same FNV-32a, mixes in
//! `status.collisionCount` the same way, and renders it with the same alphabet. The value
//! is stable for an unchanged template and changes when the template changes; it is not
//! bit-for-bit upstream's.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Map, Value};

/// The label (and selector key) carrying the hash.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Characters that cannot form words, as upstream's `rand.SafeEncodeString` uses.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of `template` for a Deployment whose `status.collisionCount` is `collisions`.
pub fn template_hash(template: &PodTemplateSpec, collisions: Option<i32>) -> String {
    let mut hash = Fnv32a::new();
    hash.write(canonical(&normalized(template)).as_bytes());
    if let Some(count) = collisions {
        hash.write(&(count as u32).to_le_bytes());
    }
    safe_encode(&hash.0.to_string())
}

/// Whether two templates are the same apart from the hash label (upstream's
/// `EqualIgnoreHash`; like its semantic equality, an empty map or list equals a missing one).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// The template as JSON without the hash label and without null or empty values.
fn normalized(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune(&mut value);
    value
}

/// Removes nulls, empty objects and empty lists, recursively. Returns whether `value`
/// itself is now empty.
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, v| !prune(v));
            map.is_empty()
        }
        Value::Array(items) => {
            // List elements keep their position: an empty element still counts.
            items.iter_mut().for_each(|v| {
                prune(v);
            });
            items.is_empty()
        }
        _ => false,
    }
}

/// JSON text with object keys sorted, so equal values always hash alike.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for key in keys {
                    out.insert(key.clone(), sorted(&map[key]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// 32-bit FNV-1a.
struct Fnv32a(u32);

impl Fnv32a {
    fn new() -> Self {
        Fnv32a(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u32::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

fn safe_encode(text: &str) -> String {
    text.bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        let mut h = Fnv32a::new();
        h.write(b"");
        assert_eq!(h.0, 0x811c9dc5);
        let mut h = Fnv32a::new();
        h.write(b"a");
        assert_eq!(h.0, 0xe40c292c);
        let mut h = Fnv32a::new();
        h.write(b"foobar");
        assert_eq!(h.0, 0xbf9cf968);
    }

    #[test]
    fn safe_encoding_uses_upstream_alphabet() {
        // '0' is byte 48, 48 % 27 = 21 -> '4'; '9' is 57, 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
    }

    #[test]
    fn hash_is_stable_and_tracks_changes() {
        let a = template_hash(&template("nginx:1.1"), None);
        assert_eq!(a, template_hash(&template("nginx:1.1"), None));
        assert!(!a.is_empty() && a.len() <= 10);
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_ne!(a, template_hash(&template("nginx:1.2"), None));
        assert_ne!(a, template_hash(&template("nginx:1.1"), Some(1)));
        assert_ne!(template_hash(&template("nginx:1.1"), Some(1)), template_hash(&template("nginx:1.1"), Some(2)));
    }

    #[test]
    fn equality_ignores_the_hash_label_and_empty_values() {
        let plain = template("nginx:1.1");
        let mut labelled = plain.clone();
        if let Some(labels) = labelled.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.insert(POD_TEMPLATE_HASH.into(), "abc".into());
        }
        labelled.metadata.as_mut().unwrap().annotations = Some(Default::default());
        assert!(equal_ignore_hash(&plain, &labelled));
        assert_eq!(template_hash(&plain, None), template_hash(&labelled, None));
        assert!(!equal_ignore_hash(&plain, &template("nginx:1.2")));
        let mut annotated = plain.clone();
        annotated.metadata.as_mut().unwrap().annotations =
            Some([("kubectl.kubernetes.io/restartedAt".to_string(), "now".to_string())].into());
        assert!(!equal_ignore_hash(&plain, &annotated));
    }
}
