//! The writer thread: group commit.
//!
//! redb allows one write transaction at a time and every acknowledged write must be fsynced.
//! One fsync per API write would cap throughput at the disk's fsync rate (a few hundred per
//! second on typical VMs). Instead one thread owns all writes:
//!
//! 1. it blocks until a request arrives, then takes every other request already queued
//!    (up to [`RedbOptions::max_batch`](super::RedbOptions::max_batch));
//! 2. inside **one** redb write transaction it evaluates each request in arrival order: a
//!    store transaction's compares see the writes of the requests before it in the batch (they
//!    share the redb transaction), a failed compare fails only that request, and each
//!    successful, non-empty transaction gets its own revision and log entry;
//! 3. it commits once with [`Durability::Immediate`] (one fsync for the whole batch);
//! 4. only then it publishes the new revisions (to [`Revisions`] and the watch broadcast) and
//!    answers every caller. If the commit fails, every caller of the batch gets the error and
//!    nothing is published.
//!
//! So each caller observes exactly what a serial, fsync-per-write store would have done,
//! while the fsync cost is shared by everyone who arrived during the previous commit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::codec;
use super::retention::Retention;
use super::tables::{COMPACTED_REVISION, CURRENT_REVISION, KV, LOG, META};
use crate::{Compare, Event, EventKind, KeyValue, Op, Result, Revision, StoreError, TxnResult};

/// One request to the writer thread.
pub(crate) enum WriteRequest {
    Txn { compares: Vec<Compare>, ops: Vec<Op>, reply: oneshot::Sender<Result<TxnResult>> },
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
}

/// The events of one committed revision, as broadcast to live watchers.
#[derive(Debug)]
pub(crate) struct CommittedRevision {
    pub revision: Revision,
    pub events: Vec<Event>,
}

pub(crate) type EventSender = broadcast::Sender<Arc<CommittedRevision>>;

/// The latest committed and compacted revisions, readable without touching redb.
#[derive(Debug)]
pub(crate) struct Revisions {
    current: AtomicI64,
    compacted: AtomicI64,
}

impl Revisions {
    pub fn new(current: Revision, compacted: Revision) -> Self {
        Revisions { current: AtomicI64::new(current), compacted: AtomicI64::new(compacted) }
    }
    pub fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }
    pub fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }
    fn publish(&self, current: Revision, compacted: Revision) {
        self.current.store(current, Ordering::Release);
        self.compacted.store(compacted, Ordering::Release);
    }
}

/// Owns the write side of the database; see the module docs.
pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub requests: mpsc::Receiver<WriteRequest>,
    pub events: EventSender,
    pub revisions: Arc<Revisions>,
    pub retention: Retention,
    pub max_batch: usize,
    /// Committed state (authoritative; `revisions` mirrors it for readers).
    pub current: Revision,
    pub compacted: Revision,
}

/// What one batch did, before its commit is acknowledged.
struct Applied {
    outcomes: Vec<Result<TxnResult>>,
    committed: Vec<CommittedRevision>,
    current: Revision,
    compacted: Revision,
}

impl Writer {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("skiff-store-writer".into()).spawn(move || self.run())
    }

    /// Serves batches until every request sender is gone.
    fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let now = Instant::now();
        match self.apply(&batch, now) {
            Ok(applied) => {
                if applied.current != self.current {
                    self.retention.committed(now, applied.current);
                }
                self.current = applied.current;
                self.compacted = applied.compacted;
                self.revisions.publish(applied.current, applied.compacted);
                for revision in applied.committed {
                    // No receivers (no watchers) is not an error.
                    let _ = self.events.send(Arc::new(revision));
                }
                for (request, outcome) in batch.into_iter().zip(applied.outcomes) {
                    answer(request, outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "redb store: write batch failed");
                for request in batch {
                    answer(request, Err(error.clone()));
                }
            }
        }
    }

    /// Evaluates the batch in one redb write transaction and commits it durably.
    fn apply(&mut self, batch: &[WriteRequest], now: Instant) -> Result<Applied> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut committed = Vec::new();
        let mut current = self.current;
        let mut compacted = self.compacted;
        {
            let mut kv = txn.open_table(KV)?;
            let mut log = txn.open_table(LOG)?;
            for request in batch {
                match request {
                    WriteRequest::Txn { compares, ops, .. } => {
                        if let Some(index) = failed_compare(&kv, compares)? {
                            outcomes.push(Err(StoreError::CompareFailed { index }));
                            continue;
                        }
                        let (prev, events) = apply_ops(&mut kv, ops, current + 1)?;
                        // Deleting only absent keys changes nothing and takes no revision.
                        if !events.is_empty() {
                            current += 1;
                            log.insert(current, codec::encode_events(&events).as_slice())?;
                            committed.push(CommittedRevision { revision: current, events });
                        }
                        outcomes.push(Ok(TxnResult { revision: current, prev }));
                    }
                    WriteRequest::Compact { revision, .. } => {
                        if *revision > current {
                            outcomes.push(Err(StoreError::FutureRevision { requested: *revision, current }));
                            continue;
                        }
                        compacted = compact_log(&mut log, compacted, *revision)?;
                        outcomes.push(Ok(TxnResult { revision: compacted, prev: Vec::new() }));
                    }
                }
            }
            compacted = compact_log(&mut log, compacted, self.retention.compactable(now, current))?;
        }
        if current == self.current && compacted == self.compacted {
            // Only failed compares and no-ops: nothing to make durable.
            txn.abort()?;
        } else {
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(CURRENT_REVISION, current)?;
                meta.insert(COMPACTED_REVISION, compacted)?;
            }
            txn.commit()?;
        }
        Ok(Applied { outcomes, committed, current, compacted })
    }
}

fn answer(request: WriteRequest, outcome: Result<TxnResult>) {
    // A caller that went away (cancelled request) is not an error: its write still happened.
    match request {
        WriteRequest::Txn { reply, .. } => {
            let _ = reply.send(outcome);
        }
        WriteRequest::Compact { reply, .. } => {
            let _ = reply.send(outcome.map(|_| ()));
        }
    }
}

/// The index of the first compare that does not hold, if any. A missing key has
/// `mod_revision` 0 (as in etcd), so `ModRevision(key, 0)` holds exactly when `key` is absent.
fn failed_compare(kv: &impl ReadableTable<&'static str, &'static [u8]>, compares: &[Compare]) -> Result<Option<usize>> {
    for (index, compare) in compares.iter().enumerate() {
        let holds = match compare {
            Compare::Absent(key) => kv.get(key.as_str())?.is_none(),
            Compare::Exists(key) => kv.get(key.as_str())?.is_some(),
            Compare::ModRevision(key, expected) => {
                let actual = match kv.get(key.as_str())? {
                    Some(guard) => codec::current_mod_revision(guard.value())?,
                    None => 0,
                };
                actual == *expected
            }
        };
        if !holds {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Applies `ops` in order at `revision`. Returns each op's previous state (the state just
/// before that op, so a key written twice in one transaction reports the first write to the
/// second op) and the resulting events.
fn apply_ops(
    kv: &mut Table<'_, &'static str, &'static [u8]>,
    ops: &[Op],
    revision: Revision,
) -> Result<(Vec<Option<KeyValue>>, Vec<Event>)> {
    let mut prevs = Vec::with_capacity(ops.len());
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                let prev = match kv.get(key.as_str())? {
                    Some(guard) => Some(codec::decode_current(key, guard.value())?),
                    None => None,
                };
                let create_revision = prev.as_ref().map_or(revision, |p| p.create_revision);
                kv.insert(key.as_str(), codec::encode_current(create_revision, revision, value).as_slice())?;
                let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision, mod_revision: revision };
                events.push(Event { kind: EventKind::Put, kv, prev: prev.clone() });
                prevs.push(prev);
            }
            Op::Delete { key } => {
                let prev = match kv.remove(key.as_str())? {
                    Some(guard) => Some(codec::decode_current(key, guard.value())?),
                    None => None,
                };
                if let Some(prev) = &prev {
                    let kv = KeyValue {
                        key: key.clone(),
                        value: Default::default(),
                        create_revision: 0,
                        mod_revision: revision,
                    };
                    events.push(Event { kind: EventKind::Delete, kv, prev: Some(prev.clone()) });
                }
                prevs.push(prev);
            }
        }
    }
    Ok((prevs, events))
}

/// Deletes log entries in `(compacted, target]`; returns the new compacted revision.
fn compact_log(log: &mut Table<'_, i64, &'static [u8]>, compacted: Revision, target: Revision) -> Result<Revision> {
    if target <= compacted {
        return Ok(compacted);
    }
    log.retain_in(compacted + 1..=target, |_, _| false)?;
    Ok(target)
}
