//! The embedded backend: [`RedbStore`], a [`Store`] on one [redb](https://docs.rs/redb) file.
//!
//! Where to start reading:
//!
//! - `redb/tables.rs`: what is stored — the current key-values, an append-only event **log** (one
//!   entry per revision) and the current/compacted revisions.
//! - `redb/writer.rs`: how writes happen — one thread, **group commit**: every request queued
//!   while the previous batch was being fsynced goes into the next redb transaction, each
//!   store transaction still gets its own compares, its own revision and its own answer, and
//!   the batch costs one fsync. That is how an fsync-per-acknowledged-write store reaches
//!   thousands of writes per second on a disk that does a few hundred fsyncs.
//! - `redb/watch.rs`: how watches resume from any retained revision and then follow live writes.
//! - `redb/read.rs`: point reads and ranges. A range at an old revision starts from the current
//!   state and **undoes** the logged events after that revision; that is why every logged
//!   event carries the key's previous value and revisions (and it is also what watchers need
//!   to report the old object on a delete or a selector change).
//! - `redb/retention.rs`: how much history is kept (automatic compaction).
//! - `redb/codec.rs`: the byte layout of stored records.
//!
//! Guarantees: revisions are global, strictly increasing, persisted and never reused after a
//! restart; a transaction is acknowledged only after its batch was committed with
//! [`redb::Durability::Immediate`]; redb work never runs on a tokio worker thread (reads use
//! `spawn_blocking`, writes the writer thread).

mod codec;
mod read;
mod retention;
mod tables;
mod watch;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::Database;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::read::{blocking, Snapshot};
use self::retention::Retention;
use self::tables::{meta_revision, COMPACTED_REVISION, CURRENT_REVISION, KV, LOG, META};
use self::writer::{EventSender, Revisions, WriteRequest, Writer};
use crate::{
    Compare, KeyValue, Op, RangeOptions, RangeResult, Result, Revision, Store, StoreError, TxnResult, WatchStream,
};

/// How many write requests may wait for the writer before callers are slowed down.
const WRITE_QUEUE: usize = 4096;

/// Tuning of a [`RedbStore`]. The defaults suit a local cluster with about 10,000 objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// Keep at least this many revisions of history for watches and old-revision reads.
    pub history_revisions: u64,
    /// Keep at least the history of this long ago. An event is compacted away only when both
    /// limits allow it (whichever keeps more wins); see `redb/retention.rs`.
    pub history_age: Duration,
    /// redb's page cache in bytes. redb defaults to 1 GiB, far over skiff's memory budget.
    pub cache_size: usize,
    /// An idle watcher gets [`WatchResponse::Progress`](crate::WatchResponse::Progress) this
    /// often (the API server turns it into bookmarks). `None` turns progress off.
    pub progress_interval: Option<Duration>,
    /// Revisions buffered for live watchers. A watcher that falls further behind re-reads the
    /// log instead (it does not fail unless the history it needs was compacted).
    pub watch_buffer: usize,
    /// At most this many write requests share one commit.
    pub max_batch: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            history_revisions: 20_000,
            history_age: Duration::from_secs(5 * 60),
            cache_size: 64 * 1024 * 1024,
            progress_interval: Some(Duration::from_secs(1)),
            watch_buffer: 1024,
            max_batch: 512,
        }
    }
}

/// The embedded [`Store`]: see the [module docs](self).
///
/// Dropping the last handle stops the writer thread (after it finished its batch) and closes
/// the file once no watch stream is left; reopening the same file in-process requires that.
pub struct RedbStore {
    db: Arc<Database>,
    revisions: Arc<Revisions>,
    /// `None` only while dropping.
    requests: Option<mpsc::Sender<WriteRequest>>,
    events: EventSender,
    writer: Option<JoinHandle<()>>,
    progress_interval: Option<Duration>,
}

impl RedbStore {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    ///
    /// This is a **blocking** call (it may repair the file after a crash): call it at startup,
    /// or from `spawn_blocking`. It does not need a tokio runtime.
    pub fn open(path: &Path, opts: RedbOptions) -> Result<Arc<RedbStore>> {
        let db = Arc::new(redb::Builder::new().set_cache_size(opts.cache_size).create(path)?);
        let (current, compacted) = initialize(&db)?;
        let revisions = Arc::new(Revisions::new(current, compacted));
        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let (requests, queue) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            db: db.clone(),
            requests: queue,
            events: events.clone(),
            revisions: revisions.clone(),
            retention: Retention::new(opts.history_revisions, opts.history_age, Instant::now(), current, compacted),
            max_batch: opts.max_batch.max(1),
            current,
            compacted,
        }
        .spawn()
        .map_err(|e| StoreError::Backend(format!("cannot start the store writer thread: {e}")))?;
        tracing::info!(path = %path.display(), current, compacted, "redb store opened");
        Ok(Arc::new(RedbStore {
            db,
            revisions,
            requests: Some(requests),
            events,
            writer: Some(writer),
            progress_interval: opts.progress_interval,
        }))
    }

    async fn write<T>(&self, request: WriteRequest, reply: oneshot::Receiver<Result<T>>) -> Result<T> {
        let stopped = || StoreError::Unavailable("the redb store writer has stopped".into());
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        requests.send(request).await.map_err(|_| stopped())?;
        reply.await.map_err(|_| stopped())?
    }
}

/// Creates the tables of a new database and reads the persisted revisions.
fn initialize(db: &Database) -> Result<(Revision, Revision)> {
    let txn = db.begin_write()?;
    let revisions = {
        txn.open_table(KV)?;
        txn.open_table(LOG)?;
        let meta = txn.open_table(META)?;
        (meta_revision(&meta, CURRENT_REVISION)?, meta_revision(&meta, COMPACTED_REVISION)?)
    };
    txn.commit()?;
    Ok(revisions)
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered what it holds.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("redb store writer thread panicked");
            }
        }
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision)> {
        let (db, key) = (self.db.clone(), key.to_owned());
        blocking(move || {
            let snapshot = Snapshot::begin(&db)?;
            Ok((snapshot.get(&key)?, snapshot.current))
        })
        .await
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let (db, prefix) = (self.db.clone(), prefix.to_owned());
        blocking(move || Snapshot::begin(&db)?.range(&prefix, &opts)).await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnResult> {
        let (reply, answer) = oneshot::channel();
        self.write(WriteRequest::Txn { compares, ops, reply }, answer).await
    }

    /// If `after` is newer than the current revision this fails with
    /// [`StoreError::FutureRevision`] rather than waiting.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before the first log read; see the `watch` module.
        let live = self.events.subscribe();
        watch::watch(self.db.clone(), live, prefix.to_owned(), after, self.progress_interval).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.revisions.current())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.revisions.compacted())
    }

    /// Compacting at or below the compacted revision is a no-op; above the current revision it
    /// fails with [`StoreError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.write(WriteRequest::Compact { revision, reply }, answer).await
    }
}

/// redb's errors all mean "the storage backend failed".
macro_rules! backend_errors {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Backend(format!("redb: {error}"))
            }
        }
    )*};
}

backend_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);
