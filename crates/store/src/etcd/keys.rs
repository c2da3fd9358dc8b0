//! Where skiff's keys live in etcd: the `--etcd-prefix` mapping and prefix ranges.
//!
//! Every key the API server stores starts with `/registry` (kube-apiserver's layout). In etcd
//! that leading `/registry` is **replaced** by the configured etcd prefix: with the default
//! prefix `/registry` the keys are stored unchanged (as kube-apiserver stores them), with
//! `--etcd-prefix /skiff-a` the Service `/registry/services/specs/default/web` is stored at
//! `/skiff-a/services/specs/default/web`. Two clusters can thus share one etcd under two
//! prefixes. The mapping swaps one common prefix for another, so it keeps the lexical order
//! of keys, which is what ranges and pagination rely on.
//!
//! Keys outside `/registry` cannot be stored (they are rejected with
//! [`StoreError::Backend`]); a range or watch prefix that is a prefix *of* `/registry` (such as
//! `/`) covers every key of the store.

use bytes::Bytes;

use crate::{KeyValue, Result, StoreError};

/// The root of every store key (kube-apiserver's default etcd prefix).
pub(crate) const REGISTRY: &str = "/registry";

/// Translates between store keys and etcd keys; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyMapping {
    /// Replaces [`REGISTRY`]; starts with `/`, never ends with `/`.
    etcd_prefix: String,
}

/// The etcd keys a store range covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EtcdRange {
    /// Keys in `[start, end)`, etcd's `key`/`range_end`.
    Keys { start: Vec<u8>, end: Vec<u8> },
    /// No store key can match.
    Empty,
}

impl KeyMapping {
    /// Accepts `/registry`, `/skiff`, `/a/b`... A trailing `/` is dropped (`/skiff/` is
    /// `/skiff`); the prefix must start with `/` and name at least one path segment.
    pub fn new(etcd_prefix: &str) -> Result<KeyMapping> {
        let trimmed = etcd_prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(StoreError::Backend(format!(
                "invalid etcd prefix {etcd_prefix:?}: it must start with '/' and name a path, e.g. /registry"
            )));
        }
        Ok(KeyMapping { etcd_prefix: trimmed.to_owned() })
    }

    /// The configured etcd prefix (normalized).
    pub fn etcd_prefix(&self) -> &str {
        &self.etcd_prefix
    }

    /// The etcd key of a store key.
    pub fn key(&self, key: &str) -> Result<Vec<u8>> {
        let rest = key.strip_prefix(REGISTRY).ok_or_else(|| {
            StoreError::Backend(format!("key {key:?} is outside {REGISTRY}: the etcd store only holds {REGISTRY}/..."))
        })?;
        Ok([self.etcd_prefix.as_bytes(), rest.as_bytes()].concat())
    }

    /// The store key of an etcd key read under our prefix.
    pub fn store_key(&self, etcd_key: &[u8]) -> Result<String> {
        let rest = etcd_key.strip_prefix(self.etcd_prefix.as_bytes()).ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd returned key {:?} outside the prefix {}",
                String::from_utf8_lossy(etcd_key),
                self.etcd_prefix
            ))
        })?;
        let rest = std::str::from_utf8(rest).map_err(|_| {
            StoreError::Backend(format!("etcd key {:?} is not UTF-8", String::from_utf8_lossy(etcd_key)))
        })?;
        Ok(format!("{REGISTRY}{rest}"))
    }

    /// A store key-value from an etcd one.
    pub fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.store_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// The etcd keys matching the store `prefix` and, if given, strictly greater than the
    /// store key `start_after` (the same rules as the redb backend: a bound before the prefix
    /// starts at the prefix, one past every matching key matches nothing).
    pub fn range(&self, prefix: &str, start_after: Option<&str>) -> EtcdRange {
        let etcd_prefix = if let Some(rest) = prefix.strip_prefix(REGISTRY) {
            [self.etcd_prefix.as_bytes(), rest.as_bytes()].concat()
        } else if REGISTRY.starts_with(prefix) {
            // `/`, `/reg`...: every store key matches.
            self.etcd_prefix.as_bytes().to_vec()
        } else {
            return EtcdRange::Empty;
        };
        let end = prefix_end(&etcd_prefix);
        let start = match start_after {
            Some(after) if after >= prefix => {
                if !after.starts_with(prefix) {
                    // Greater than every key with this prefix.
                    return EtcdRange::Empty;
                }
                match after.strip_prefix(REGISTRY) {
                    // The smallest etcd key greater than `after`'s.
                    Some(rest) => [self.etcd_prefix.as_bytes(), rest.as_bytes(), b"\0"].concat(),
                    // `after` is under a prefix of /registry but not under /registry itself:
                    // every store key sorts after it, or every one before it.
                    None if after < REGISTRY => etcd_prefix,
                    None => return EtcdRange::Empty,
                }
            }
            _ => etcd_prefix,
        };
        EtcdRange::Keys { start, end }
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: "every key from `key` on" is spelled "\0" in etcd.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(start: &str, end: &str) -> EtcdRange {
        EtcdRange::Keys { start: start.as_bytes().to_vec(), end: end.as_bytes().to_vec() }
    }

    #[test]
    fn the_prefix_replaces_registry() {
        let default = KeyMapping::new("/registry").unwrap();
        assert_eq!(default.key("/registry/services/a").unwrap(), b"/registry/services/a");
        let custom = KeyMapping::new("/skiff-a/").unwrap();
        assert_eq!(custom.etcd_prefix(), "/skiff-a");
        assert_eq!(custom.key("/registry/services/a").unwrap(), b"/skiff-a/services/a");
        assert_eq!(custom.store_key(b"/skiff-a/services/a").unwrap(), "/registry/services/a");
        assert!(custom.key("/elsewhere").is_err());
        assert!(custom.store_key(b"/other/x").is_err());
        assert!(custom.store_key(b"/skiff-a/\xff").is_err());
        for bad in ["", "/", "registry", "//"] {
            assert!(KeyMapping::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges_follow_the_store_rules() {
        let m = KeyMapping::new("/s").unwrap();
        assert_eq!(m.range("/registry/svc/", None), keys("/s/svc/", "/s/svc0"));
        assert_eq!(m.range("/", None), keys("/s", "/t"));
        assert_eq!(m.range("/other/", None), EtcdRange::Empty);
        assert_eq!(m.range("/registry/svc/", Some("/registry/svc/b")), keys("/s/svc/b\0", "/s/svc0"));
        assert_eq!(m.range("/registry/svc/", Some("/a")), keys("/s/svc/", "/s/svc0"));
        assert_eq!(m.range("/registry/svc/", Some("/z")), EtcdRange::Empty);
        assert_eq!(m.range("/", Some("/a")), keys("/s", "/t"));
        assert_eq!(m.range("/", Some("/z")), EtcdRange::Empty);
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
