//! Reads against one redb snapshot: point reads, ranges (latest or historical) and log
//! chunks for watches. Everything here is blocking; [`RedbStore`](super::RedbStore) runs it
//! on tokio's blocking pool.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{Database, ReadTransaction, ReadableDatabase};

use super::codec;
use super::tables::{meta_revision, COMPACTED_REVISION, CURRENT_REVISION, KV, LOG, META};
use crate::{Event, KeyValue, RangeOptions, RangeResult, Result, Revision, StoreError};

/// A consistent read view: the data and the revisions it was committed at.
pub(crate) struct Snapshot {
    txn: ReadTransaction,
    pub current: Revision,
    pub compacted: Revision,
}

impl Snapshot {
    pub fn begin(db: &Database) -> Result<Snapshot> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let current = meta_revision(&meta, CURRENT_REVISION)?;
        let compacted = meta_revision(&meta, COMPACTED_REVISION)?;
        Ok(Snapshot { txn, current, compacted })
    }

    /// Fails unless history at `revision` is still available: `compacted <= revision <= current`.
    fn check_history(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(StoreError::Compacted { requested: revision, compacted: self.compacted });
        }
        if revision > self.current {
            return Err(StoreError::FutureRevision { requested: revision, current: self.current });
        }
        Ok(())
    }

    /// The latest state of `key`.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let kv = self.txn.open_table(KV)?;
        let found = kv.get(key)?;
        found.map(|guard| codec::decode_current(key, guard.value())).transpose()
    }

    /// Keys under `prefix` (after `opts.start_after`), as of `opts.revision` (0 = latest).
    pub fn range(&self, prefix: &str, opts: &RangeOptions) -> Result<RangeResult> {
        let revision = if opts.revision == 0 { self.current } else { opts.revision };
        self.check_history(revision)?;
        let lower = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let in_range = |key: &str| {
            key.starts_with(prefix)
                && match lower {
                    Bound::Excluded(after) => key > after,
                    _ => true,
                }
        };
        // Keys changed after `revision`, mapped to their state at `revision`. Empty for a
        // latest read.
        let undone = self.states_before(revision, &in_range)?;

        let mut page = Page::new(opts.limit);
        let mut undone = undone.into_iter().peekable();
        let kv = self.txn.open_table(KV)?;
        for entry in kv.range::<&str>((lower, Bound::Unbounded))? {
            let (key_guard, value_guard) = entry?;
            let key = key_guard.value();
            if !key.starts_with(prefix) {
                break;
            }
            // Keys that existed at `revision` but were deleted since sort in between.
            while let Some((_, state)) = undone.next_if(|(k, _)| k.as_str() < key) {
                page.offer_state(state);
            }
            match undone.next_if(|(k, _)| k.as_str() == key) {
                Some((_, state)) => page.offer_state(state),
                None => page.offer(|| codec::decode_current(key, value_guard.value()))?,
            }
        }
        for (_, state) in undone {
            page.offer_state(state);
        }
        Ok(page.finish(revision))
    }

    /// For every key (selected by `wanted`) written after `revision`: its state at `revision`,
    /// which is the `prev` of the first event after `revision` (None = it did not exist).
    fn states_before(
        &self,
        revision: Revision,
        wanted: &impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Option<KeyValue>>> {
        let mut states = BTreeMap::new();
        if revision >= self.current {
            return Ok(states);
        }
        let log = self.txn.open_table(LOG)?;
        for entry in log.range(revision + 1..=self.current)? {
            let (rev, events) = entry?;
            for event in codec::decode_events(rev.value(), events.value(), wanted)? {
                states.entry(event.kv.key).or_insert(event.prev);
            }
        }
        Ok(states)
    }

    /// Events with a revision in `(after, after + max_revisions]` (capped at the current
    /// revision) whose key starts with `prefix`.
    pub fn log_after(&self, prefix: &str, after: Revision, max_revisions: i64) -> Result<LogChunk> {
        self.check_history(after)?;
        let through = self.current.min(after.saturating_add(max_revisions.max(1)));
        let mut events = Vec::new();
        if through > after {
            let log = self.txn.open_table(LOG)?;
            for entry in log.range(after + 1..=through)? {
                let (rev, bytes) = entry?;
                events.extend(codec::decode_events(rev.value(), bytes.value(), |k| k.starts_with(prefix))?);
            }
        }
        Ok(LogChunk { events, through, caught_up: through == self.current })
    }
}

/// A piece of history read for a watch.
pub(crate) struct LogChunk {
    /// Matching events, in revision order.
    pub events: Vec<Event>,
    /// Every revision up to and including this one was read.
    pub through: Revision,
    /// `through` was the snapshot's current revision.
    pub caught_up: bool,
}

/// Collects a range result: counts every matching key, keeps the first `limit`.
struct Page {
    limit: usize,
    kvs: Vec<KeyValue>,
    count: u64,
}

impl Page {
    fn new(limit: u64) -> Page {
        Page { limit: usize::try_from(limit).unwrap_or(usize::MAX), kvs: Vec::new(), count: 0 }
    }

    fn wants_more(&self) -> bool {
        self.limit == 0 || self.kvs.len() < self.limit
    }

    /// Counts a key, decoding it only if it makes the page.
    fn offer(&mut self, decode: impl FnOnce() -> Result<KeyValue>) -> Result<()> {
        self.count += 1;
        if self.wants_more() {
            self.kvs.push(decode()?);
        }
        Ok(())
    }

    fn offer_state(&mut self, state: Option<KeyValue>) {
        if let Some(kv) = state {
            self.count += 1;
            if self.wants_more() {
                self.kvs.push(kv);
            }
        }
    }

    fn finish(self, revision: Revision) -> RangeResult {
        let more = self.count > self.kvs.len() as u64;
        RangeResult { kvs: self.kvs, revision, more, count: self.count }
    }
}

/// Runs a blocking read on tokio's blocking pool, so redb's I/O never stalls the runtime.
pub(crate) async fn blocking<T: Send + 'static>(read: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(read).await.map_err(|e| StoreError::Backend(format!("store read task failed: {e}")))?
}
