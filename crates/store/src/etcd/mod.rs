//! The etcd backend: [`EtcdStore`], a [`Store`] on an etcd v3 cluster, for API servers that
//! share their state (several `skiff server`s, or one that must survive its machine).
//!
//! The store model *is* etcd's, so the mapping is direct:
//!
//! | store                              | etcd                                                  |
//! |------------------------------------|-------------------------------------------------------|
//! | revision / `resourceVersion`       | etcd revision (`mod_revision` of a key)                |
//! | [`Store::txn`]                     | one etcd `Txn`, compares on revisions (`etcd/txn.rs`)  |
//! | [`Store::range`]                   | etcd range with `limit`, `revision`, `count`, `more`   |
//! | [`Store::watch`]`(p, after)`       | etcd watch at `after + 1` with `prev_kv` (`etcd/watch.rs`) |
//! | [`StoreError::Compacted`]          | etcd's `ErrCompacted` / a watch's `compact_revision`   |
//! | automatic compaction               | a background compactor, coordinated between API servers like kube-apiserver's (`etcd/compactor.rs`) |
//!
//! Where to start reading: `etcd/keys.rs` (where keys live: `--etcd-prefix` replaces the
//! leading `/registry`), `etcd/members.rs` (several endpoints, failover, what is retried),
//! `etcd/errors.rs` (which failures are retried and what they become).
//!
//! Semantics match the redb backend (the same behaviour tests run against both), with etcd's
//! revision numbering: a new etcd starts at revision 1 and its first write is revision 2.
//! Known differences, all etcd's rules: a transaction may write a key only once and hold at
//! most `--max-txn-ops` (128) ops; `compacted_revision()` reports 0 rather than 1 after a
//! compaction at revision 1 (both mean "watching from 0 still works").
//!
//! Endpoints are `http://` or `https://`; the latter need [`EtcdOptions::tls`] (the CA that
//! signed the members' certificates and, for etcd's `--client-cert-auth`, a client certificate).

mod compactor;
mod errors;
mod keys;
mod members;
mod txn;
mod watch;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{GetOptions, ResponseHeader};
use tokio::sync::watch as signal;

pub use self::compactor::COMPACT_REV_KEY;
use self::errors::CallError;
use self::keys::{EtcdRange, KeyMapping};
use self::members::{Idempotence, Members};
use crate::{
    Compare, KeyValue, Op, RangeOptions, RangeResult, Result, Revision, Store, StoreError, TxnResult, WatchStream,
};

/// The default `--etcd-prefix`: keys are stored exactly as kube-apiserver stores them.
pub const DEFAULT_PREFIX: &str = keys::REGISTRY;

/// Tuning of an [`EtcdStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// The longest one member may take to answer one request (or to confirm a new watch).
    pub request_timeout: Duration,
    /// The longest a TCP connection to a member may take.
    pub connect_timeout: Duration,
    /// How long a request keeps being retried on other members while none answers healthily
    /// (only requests that may be retried: see `etcd/errors.rs`). Covers a leader election.
    pub retry_for: Duration,
    /// HTTP/2 pings on idle connections, so a silently dead member (network cut, not a
    /// closed socket) is noticed within this interval plus `request_timeout`. `None`: off.
    pub keep_alive_interval: Option<Duration>,
    /// An idle watcher gets [`WatchResponse::Progress`](crate::WatchResponse::Progress): the
    /// first after two intervals without events, then one per interval (see `etcd/watch.rs`
    /// for why two). `None` turns progress off.
    pub progress_interval: Option<Duration>,
    /// The background compactor; `None` leaves compaction to someone else (another API
    /// server, etcd's `--auto-compaction-*`, or explicit [`Store::compact`] calls).
    pub compaction: Option<CompactionOptions>,
    /// Certificates for `https://` endpoints (kube-apiserver's `--etcd-cafile`,
    /// `--etcd-certfile`, `--etcd-keyfile`).
    pub tls: Option<EtcdTls>,
}

/// TLS material for `https://` etcd endpoints, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate(s) the members' serving certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and private key, for members that require client certificates.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Shows which material is present, never the private key.
impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_identity", &self.client_identity.is_some())
            .finish()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(10),
            keep_alive_interval: Some(Duration::from_secs(10)),
            progress_interval: Some(Duration::from_secs(1)),
            compaction: Some(CompactionOptions::default()),
            tls: None,
        }
    }
}

/// The background compactor's schedule (see `etcd/compactor.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// How often a compaction round runs (cluster-wide about one compaction per interval).
    pub interval: Duration,
    /// History younger than this is kept: each compaction goes to the newest revision that
    /// was current at least this long ago.
    pub retention: Duration,
}

impl Default for CompactionOptions {
    /// kube-apiserver's: every 5 minutes, to the revision of 5 minutes ago.
    fn default() -> Self {
        CompactionOptions { interval: Duration::from_secs(5 * 60), retention: Duration::from_secs(5 * 60) }
    }
}

/// A [`Store`] on etcd v3: see the [module docs](self).
///
/// Dropping it ends its watch streams and stops its compactor.
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// Never sent on: dropping it is the signal.
    shutdown: signal::Sender<()>,
}

/// What the store, its watchers and its compactor share.
pub(crate) struct Shared {
    members: Members,
    keys: KeyMapping,
    progress_interval: Option<Duration>,
    /// A lower bound of etcd's compact revision, learned from compactions and watch answers;
    /// where [`Shared::compacted_revision`] starts its search.
    known_compacted: AtomicI64,
}

impl EtcdStore {
    /// Connects to the etcd cluster behind `endpoints` (`http://host:port` or `host:port`,
    /// any members of one cluster; more give failover) and stores keys under `etcd_prefix`
    /// (which replaces the leading `/registry` of every key; [`DEFAULT_PREFIX`] keeps keys
    /// as they are).
    ///
    /// Fails with [`StoreError::Unavailable`] if no member answers within
    /// [`EtcdOptions::retry_for`], and with [`StoreError::Backend`] for an invalid endpoint or
    /// prefix. Must be called within a tokio runtime (the compactor is a task).
    pub async fn connect(endpoints: &[String], etcd_prefix: &str, opts: EtcdOptions) -> Result<Arc<EtcdStore>> {
        let keys = KeyMapping::new(etcd_prefix)?;
        let members = Members::new(endpoints, &opts).await?;
        let shared = Arc::new(Shared {
            members,
            keys,
            progress_interval: opts.progress_interval,
            known_compacted: AtomicI64::new(0),
        });
        let current = shared.current_revision().await.map_err(|error| match error {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("no etcd member of {} answers: {why}", endpoints.join(",")))
            }
            other => other,
        })?;
        let (shutdown, _) = signal::channel(());
        if let Some(compaction) = opts.compaction {
            compactor::spawn(shared.clone(), compaction, shutdown.subscribe());
        }
        tracing::info!(endpoints = %endpoints.join(","), prefix = shared.keys.etcd_prefix(), current, "etcd store connected");
        Ok(Arc::new(EtcdStore { shared, shutdown }))
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)> {
        let etcd_key = self.shared.keys.key(key)?;
        let response = self
            .shared
            .members
            .call(Idempotence::Read, |_, mut clients| {
                let etcd_key = etcd_key.clone();
                async move { Ok(clients.kv.get(etcd_key, None).await?) }
            })
            .await
            .map_err(CallError::into_store_error)?;
        let kv = response.kvs().first().map(|kv| self.shared.keys.key_value(kv)).transpose()?;
        Ok((kv, header_revision(response.header())?))
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let (start, end) = match self.shared.keys.range(prefix, opts.start_after.as_deref()) {
            EtcdRange::Keys { start, end } => (start, end),
            EtcdRange::Empty => {
                let revision = match opts.revision {
                    0 => self.shared.current_revision().await?,
                    revision => self.shared.check_history(revision).await.map(|_| revision)?,
                };
                return Ok(RangeResult { kvs: Vec::new(), revision, more: false, count: 0 });
            }
        };
        let limit = i64::try_from(opts.limit).unwrap_or(i64::MAX);
        let response = self
            .shared
            .members
            .call(Idempotence::Read, |_, mut clients| {
                let (start, end) = (start.clone(), end.clone());
                let options = GetOptions::new().with_range(end).with_limit(limit).with_revision(opts.revision);
                async move { Ok(clients.kv.get(start, Some(options)).await?) }
            })
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Err(self.shared.history_error(error, opts.revision).await),
        };
        let kvs = response.kvs().iter().map(|kv| self.shared.keys.key_value(kv)).collect::<Result<Vec<_>>>()?;
        let revision = match opts.revision {
            0 => header_revision(response.header())?,
            revision => revision,
        };
        let count = u64::try_from(response.count()).unwrap_or(0);
        Ok(RangeResult { kvs, revision, more: response.more(), count })
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult> {
        let request = txn::build(&self.shared.keys, &compares, &ops)?;
        let response = self
            .shared
            .members
            .call(Idempotence::Write, |_, mut clients| {
                let request = request.clone();
                async move { Ok(clients.kv.txn(request).await?) }
            })
            .await
            .map_err(CallError::into_store_error)?;
        txn::outcome(&self.shared.keys, &compares, &response)
    }

    /// If `after` is newer than the current revision this fails with
    /// [`StoreError::FutureRevision`] rather than waiting. `prefix` must be under `/registry`
    /// (or a prefix of it, such as `/`).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::watch(self.shared.clone(), prefix, after, self.shutdown.subscribe()).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.shared.current_revision().await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.shared.compacted_revision().await
    }

    /// Compacting at or below the compacted revision is a no-op; above the current revision it
    /// fails with [`StoreError::FutureRevision`]. Compaction is etcd-wide (every prefix).
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.shared.compact(revision).await
    }
}

impl Shared {
    /// A linearizable count-only read of one key at `revision` (0: latest); returns the
    /// revision etcd answered at.
    async fn read_at(&self, revision: Revision) -> Result<Revision, CallError> {
        let probe = self.keys.etcd_prefix().as_bytes().to_vec();
        let response = self
            .members
            .call(Idempotence::Read, |_, mut clients| {
                let probe = probe.clone();
                let options = GetOptions::new().with_count_only().with_revision(revision);
                async move { Ok(clients.kv.get(probe, Some(options)).await?) }
            })
            .await?;
        header_revision(response.header()).map_err(|e| CallError::Etcd(etcd_client::Error::Internal(e.to_string())))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.read_at(0).await.map_err(CallError::into_store_error)
    }

    /// Fails unless history at `revision` can still be read — the redb backend's bounds,
    /// `compacted <= revision <= current` — and returns the current revision.
    async fn check_history(&self, revision: Revision) -> Result<Revision> {
        // etcd's first revision is 1; "everything after 0" is readable unless compacted past 1.
        match self.read_at(revision.max(1)).await {
            Ok(current) => Ok(current),
            Err(error) => Err(self.history_error(error, revision).await),
        }
    }

    /// The store error for a failed read at `revision`.
    async fn history_error(&self, error: CallError, revision: Revision) -> StoreError {
        if error.is_compacted() {
            match self.compacted_revision().await {
                Ok(compacted) => StoreError::Compacted { requested: revision, compacted },
                Err(other) => other,
            }
        } else if error.is_future_revision() {
            match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested: revision, current },
                Err(other) => other,
            }
        } else {
            error.into_store_error()
        }
    }

    /// etcd's compact revision (reads below it fail). etcd does not report it directly: it
    /// is found by binary search with count-only reads between the last known value and the
    /// current revision (a few dozen tiny requests at most, usually a handful).
    async fn compacted_revision(&self) -> Result<Revision> {
        let current = self.current_revision().await?;
        // Invariant: `high` is readable, everything below `low` is not.
        let (mut low, mut high) = (self.known_compacted.load(Ordering::Acquire).max(1), current.max(1));
        while low < high {
            let middle = low + (high - low) / 2;
            match self.read_at(middle).await {
                Ok(_) => high = middle,
                Err(error) if error.is_compacted() => low = middle + 1,
                Err(error) => return Err(error.into_store_error()),
            }
        }
        // Revision 1 is etcd's empty initial state: compacting at it loses nothing.
        let compacted = if low <= 1 { 0 } else { low };
        self.saw_compaction(compacted);
        Ok(compacted)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let result = self
            .members
            .call(Idempotence::Read, |_, mut clients| async move { Ok(clients.kv.compact(revision, None).await?) })
            .await;
        match result {
            Ok(_) => {
                self.saw_compaction(revision);
                Ok(())
            }
            // At or below the compacted revision: nothing to do.
            Err(error) if error.is_compacted() => Ok(()),
            Err(error) => Err(self.history_error(error, revision).await),
        }
    }

    /// Records that etcd's history was compacted at least up to `revision`.
    fn saw_compaction(&self, revision: Revision) {
        self.known_compacted.fetch_max(revision, Ordering::AcqRel);
    }
}

/// The revision of an etcd response (every response carries one).
fn header_revision(header: Option<&ResponseHeader>) -> Result<Revision> {
    header.map(ResponseHeader::revision).ok_or_else(|| StoreError::Backend("etcd answered without a header".into()))
}
