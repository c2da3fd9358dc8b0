//! # skiff-store: where the cluster's objects live
//!
//! The API server never talks to a database directly; it talks to a [`Store`], a trait shaped
//! after etcd v3 because etcd is the most demanding backend we must support:
//!
//! - one global, strictly increasing **revision** counts every write; an object's
//!   `resourceVersion` is the revision of its last modification ([`KeyValue::mod_revision`]);
//! - writes are **compare-and-swap** on an object's revision ([`Compare`]), grouped in
//!   all-or-nothing transactions ([`Store::txn`]) — that is how two API servers on one store
//!   can never hand out the same ClusterIP;
//! - reads are **ranges over a key prefix** ([`Store::range`]);
//! - **watches** start from any revision still in the bounded history and deliver every
//!   change after it, in order ([`Store::watch`]); older revisions are **compacted** and
//!   asking for them fails with [`StoreError::Compacted`] (the API's `410 Expired`).
//!
//! Nothing here assumes one process: every invariant is enforced by the backend, not by a
//! lock in the caller.
//!
//! Backends: [`redb::RedbStore`] (embedded, the default; every acknowledged write is fsynced) and
//! [`etcd::EtcdStore`] (an etcd v3 cluster, shared by several API servers).
//!
//! Keys follow kube-apiserver's `/registry` layout, e.g. `/registry/services/specs/default/kubernetes`.

pub mod etcd;
pub mod redb;
mod types;

pub use types::*;
