//! The backend-independent vocabulary of the store: keys, values, revisions, transactions,
//! watch events and errors.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A store revision. Revision 0 means "no revision" (a key that does not exist).
pub type Revision = i64;

/// One stored key with its value and revisions (etcd's `mvccpb.KeyValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last modification; this is the object's `resourceVersion`.
    pub mod_revision: Revision,
}

/// A condition a transaction checks before it writes (etcd's `Compare` on `MOD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key must not exist.
    Absent(String),
    /// The key must exist with exactly this modification revision.
    ModRevision(String, Revision),
    /// The key must exist (any revision).
    Exists(String),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Bytes,
    },
    /// Deleting a key that does not exist is a no-op (as in etcd).
    Delete {
        key: String,
    },
}

/// The result of a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// The revision the transaction was committed at. Every key it wrote has this
    /// `mod_revision`. A transaction with no ops does not advance the revision.
    pub revision: Revision,
    /// For every op, in order: the key as it was before the transaction (None if absent).
    pub prev: Vec<Option<KeyValue>>,
}

/// A page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Keys in lexical order.
    pub kvs: Vec<KeyValue>,
    /// The store revision the read was served at (a list's `resourceVersion`).
    pub revision: Revision,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// Number of keys matching the range in total (including those not returned; with
    /// `start_after`, only keys after it match, as in a paginated etcd range).
    pub count: u64,
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. Events of one transaction share a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For Put: the new key-value. For Delete: key with empty value, `mod_revision` = the
    /// deletion revision.
    pub kv: KeyValue,
    /// The key-value before this change, if it existed (needed to tell a watcher that an
    /// object left its label selector, and to send the last state on DELETED).
    pub prev: Option<KeyValue>,
}

/// A watch stream item: a batch of events (in revision order), or a progress notification
/// telling the watcher that everything up to `revision` was delivered (used for bookmarks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchResponse {
    Events(Vec<Event>),
    Progress { revision: Revision },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A [`Compare`] of a transaction did not hold. `index` says which one.
    #[error("transaction precondition {index} failed")]
    CompareFailed { index: usize },
    /// The requested revision was compacted away; `compacted` is the oldest revision still
    /// available minus one (kube-apiserver reports it in "too old resource version").
    #[error("required revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// A revision in the future was requested.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision { requested: Revision, current: Revision },
    /// The watcher fell too far behind and was dropped; it must restart from its last revision.
    #[error("watch fell behind and was cancelled")]
    WatchLagged,
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("store is unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options for [`Store::range`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Return only keys strictly greater than this one (exclusive), instead of starting at
    /// the prefix: pass the last key of the previous page (pagination).
    pub start_after: Option<String>,
    /// At most this many keys (0 = no limit).
    pub limit: u64,
    /// Read at this revision instead of the latest one (0 = latest). Backends that keep
    /// no MVCC history may answer at the latest revision when nothing under the prefix
    /// changed since, and must otherwise fail with [`StoreError::Compacted`].
    pub revision: Revision,
}

/// A stream of watch responses. It ends only when the store shuts down or the watcher lagged
/// (then the last item is `Err(WatchLagged)`).
pub type WatchStream = BoxStream<'static, Result<WatchResponse>>;

/// The storage backend of an API server. See the crate docs for the model.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the latest revision. Returns the key (if any) and the current revision.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)>;

    /// Reads all keys starting with `prefix`, in lexical order.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult>;

    /// Checks every compare; if all hold, applies every op atomically at one new revision.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult>;

    /// Watches every key starting with `prefix`, delivering every change with a revision
    /// greater than `after` (so `after = list revision` continues a list without gaps).
    /// Fails with [`StoreError::Compacted`] if `after` is older than the retained history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The latest committed revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision a watch can still start after (`after >= compacted_revision()`).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Discards history at or below `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

impl KeyValue {
    /// Convenience for tests and callers that build values from strings.
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).unwrap_or("")
    }
}

/// Helpers to write transactions tersely.
impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Op {
        Op::Put { key: key.into(), value: value.into() }
    }
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// Convenience calls built on [`Store::txn`], the shapes kube-apiserver uses against etcd.
#[async_trait]
pub trait StoreExt: Store {
    /// Creates `key`; fails with `CompareFailed` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let r = self.txn(vec![Compare::Absent(key.into())], vec![Op::put(key, value)]).await?;
        Ok(r.revision)
    }
    /// Replaces `key` if its revision is still `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let r = self.txn(vec![Compare::ModRevision(key.into(), expected)], vec![Op::put(key, value)]).await?;
        Ok(r.revision)
    }
    /// Deletes `key` if its revision is still `expected`; returns the deletion revision.
    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        let r = self.txn(vec![Compare::ModRevision(key.into(), expected)], vec![Op::delete(key)]).await?;
        Ok(r.revision)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
