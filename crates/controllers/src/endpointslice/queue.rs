//! A work queue of object keys, in the manner of client-go's rate-limited work queue:
//!
//! - a key waiting in the queue is there once, however often it is added, so a burst of
//!   changes to one Service (ten pods turning ready at once) becomes one sync;
//! - a key is never handed to two workers at once; adding it while it is being processed
//!   marks it to be processed again afterwards;
//! - keys can be added after a delay, and failed keys come back with exponential backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::health::Metrics;

/// First retry delay after a failed sync; doubles with every further failure.
const RETRY_BASE: Duration = Duration::from_millis(5);
/// Longest delay between retries.
const RETRY_MAX: Duration = Duration::from_secs(60);

pub struct WorkQueue<K> {
    inner: Mutex<Inner<K>>,
    wakeup: Notify,
}

struct Inner<K> {
    /// Keys ready to be processed, in order.
    ready: VecDeque<K>,
    /// The keys in `ready`.
    queued: HashSet<K>,
    /// Keys to add later, by due time (the counter keeps equal times apart).
    delayed: BTreeMap<(Instant, u64), K>,
    /// Due time of each delayed key (a key is delayed at most once, at its earliest time).
    due: HashMap<K, (Instant, u64)>,
    counter: u64,
    /// Keys a worker is processing now.
    processing: HashSet<K>,
    /// Keys added while being processed: they go back in the queue when done.
    dirty: HashSet<K>,
    /// Consecutive failures per key, for the retry backoff.
    failures: HashMap<K, u32>,
}

impl<K: Clone + Eq + Hash> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            inner: Mutex::new(Inner {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                delayed: BTreeMap::new(),
                due: HashMap::new(),
                counter: 0,
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
            }),
            wakeup: Notify::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Inner<K> {
    fn add(&mut self, key: K) -> bool {
        if self.processing.contains(&key) {
            self.dirty.insert(key);
            return false;
        }
        if !self.queued.insert(key.clone()) {
            return false;
        }
        if let Some(slot) = self.due.remove(&key) {
            self.delayed.remove(&slot);
        }
        self.ready.push_back(key);
        true
    }

    /// Moves the delayed keys that are due into `ready`; returns how many became ready.
    fn promote_due(&mut self, now: Instant) -> usize {
        let mut promoted = 0;
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.due.remove(&key);
            promoted += usize::from(self.add(key));
        }
        promoted
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        // A panic elsewhere cannot leave the queue half-updated in a way that matters:
        // keep going with whatever state it has.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` for processing now.
    pub fn add(&self, key: K) {
        if self.lock().add(key) {
            self.wakeup.notify_one();
        }
    }

    pub fn add_all(&self, keys: impl IntoIterator<Item = K>) {
        let added = {
            let mut inner = self.lock();
            keys.into_iter().filter(|k| inner.add(k.clone())).count()
        };
        for _ in 0..added {
            self.wakeup.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed (unless it is queued sooner anyway).
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let when = Instant::now() + delay;
        let mut inner = self.lock();
        if inner.queued.contains(&key) {
            return;
        }
        if let Some(&(existing, _)) = inner.due.get(&key) {
            if existing <= when {
                return;
            }
            if let Some(slot) = inner.due.remove(&key) {
                inner.delayed.remove(&slot);
            }
        }
        inner.counter += 1;
        let slot = (when, inner.counter);
        inner.delayed.insert(slot, key.clone());
        inner.due.insert(key, slot);
        drop(inner);
        // A sleeping worker may be waiting for a later deadline.
        self.wakeup.notify_one();
    }

    /// Queues `key` again after a failed sync, later with every consecutive failure.
    pub fn retry(&self, key: K) {
        let failures = {
            let mut inner = self.lock();
            let n = inner.failures.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.add_after(key, retry_delay(failures));
    }

    /// Forgets the failure count of `key` after a successful sync.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key to process. The caller must call [`WorkQueue::done`] with
    /// it when finished.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.wakeup.notified();
            let deadline = {
                let mut inner = self.lock();
                inner.promote_due(Instant::now());
                if let Some(key) = inner.ready.pop_front() {
                    inner.queued.remove(&key);
                    inner.processing.insert(key.clone());
                    let more = !inner.ready.is_empty();
                    drop(inner);
                    if more {
                        // Let another idle worker pick up the next key.
                        self.wakeup.notify_one();
                    }
                    return key;
                }
                inner.delayed.first_key_value().map(|((when, _), _)| *when)
            };
            match deadline {
                Some(when) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(when) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` as processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let requeued = {
            let mut inner = self.lock();
            inner.processing.remove(key);
            inner.dirty.remove(key) && inner.add(key.clone())
        };
        if requeued {
            self.wakeup.notify_one();
        }
    }
}

/// A worker: takes keys from `queue` and syncs them, forever. Failed syncs are retried
/// with backoff; every sync is counted (`skiff_syncs_total{controller,result}`) and
/// timed (`skiff_sync_duration_seconds{controller}`).
pub async fn work<K, F, Fut>(queue: &WorkQueue<K>, metrics: &Metrics, controller: &str, sync: F) -> anyhow::Result<()>
where
    K: Clone + Eq + Hash + Display,
    F: Fn(K) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        let key = queue.next().await;
        let started = std::time::Instant::now();
        let result = sync(key.clone()).await;
        metrics.observe("skiff_sync_duration_seconds", &[("controller", controller)], started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                metrics.inc("skiff_syncs_total", &[("controller", controller), ("result", "success")]);
                queue.forget(&key);
            }
            Err(error) => {
                metrics.inc("skiff_syncs_total", &[("controller", controller), ("result", "error")]);
                tracing::info!(controller, %key, %error, "sync failed; retrying");
                queue.retry(key.clone());
            }
        }
        queue.done(&key);
    }
}

fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    RETRY_BASE.saturating_mul(factor).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn duplicates_collapse() {
        let q = WorkQueue::default();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
        q.done(&"a");
        q.done(&"b");
        q.add("c");
        assert_eq!(q.next().await, "c");
    }

    #[tokio::test]
    async fn adding_while_processing_requeues_after_done() {
        let q = WorkQueue::default();
        q.add("a");
        let key = q.next().await;
        q.add("a");
        q.add("b");
        // "a" is being processed: only "b" is available.
        assert_eq!(q.next().await, "b");
        q.done(&key);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test]
    async fn delayed_keys_come_later_unless_added_now() {
        let q = WorkQueue::default();
        q.add_after("late", Duration::from_secs(60));
        q.add_after("soon", Duration::from_millis(10));
        assert_eq!(q.next().await, "soon");
        q.add("late");
        assert_eq!(q.next().await, "late");
        q.done(&"late");
        // The delayed entry was replaced by the immediate add: nothing else comes.
        let waited = tokio::time::timeout(Duration::from_millis(100), q.next()).await;
        assert!(waited.is_err());
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_limit() {
        assert_eq!(retry_delay(1), Duration::from_millis(5));
        assert_eq!(retry_delay(2), Duration::from_millis(10));
        assert_eq!(retry_delay(5), Duration::from_millis(80));
        assert_eq!(retry_delay(40), RETRY_MAX);
    }
}
