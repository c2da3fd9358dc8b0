//! Watches: history from the log, then live events from the writer's broadcast, without gaps
//! or duplicates.
//!
//! A watcher keeps one number, `delivered`: every revision up to it has been examined (and
//! its matching events handed out). It has two modes:
//!
//! - **catching up**: read the log after `delivered` from a redb snapshot, in chunks, until
//!   a chunk reaches the snapshot's current revision;
//! - **live**: take revisions from the broadcast. A revision `<= delivered` was already read
//!   from the log and is skipped; a revision beyond `delivered + 1`, or a broadcast overflow
//!   (the consumer was slow), switches back to catching up — the log still has it.
//!
//! The receiver is subscribed **before** the first snapshot is taken, and the writer
//! broadcasts a revision only after committing it, so every revision is either in the
//! snapshot or arrives on the broadcast later (or both, hence the skip). A watcher that
//! falls behind the compacted revision ends with [`StoreError::WatchLagged`]; a slow
//! consumer therefore costs log reads, never unbounded memory.
//!
//! When nothing was sent for a whole [`RedbOptions::progress_interval`](super::RedbOptions),
//! the watcher sends [`WatchResponse::Progress`] with `delivered`, which is exact: the
//! broadcast carries every revision, matching the prefix or not.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redb::Database;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::{Interval, MissedTickBehavior};

use super::read::{blocking, LogChunk, Snapshot};
use super::writer::CommittedRevision;
use crate::{Event, Result, Revision, StoreError, WatchResponse, WatchStream};

/// At most this many revisions are read from the log, or taken from the broadcast, per
/// response, so one response stays a bounded amount of memory.
const REVISIONS_PER_RESPONSE: i64 = 1000;

/// Starts a watch; fails right away (not in the stream) if `after` is compacted or in the
/// future.
pub(crate) async fn watch(
    db: Arc<Database>,
    live: broadcast::Receiver<Arc<CommittedRevision>>,
    prefix: String,
    after: Revision,
    progress_interval: Option<Duration>,
) -> Result<WatchStream> {
    // `live` was subscribed by the caller before this first snapshot: see the module docs.
    let first = read_log(db.clone(), prefix.clone(), after).await?;
    let progress = progress_interval.filter(|p| !p.is_zero()).map(|period| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut watcher = Watcher {
        db,
        live,
        prefix,
        delivered: after,
        catching_up: true,
        pending: None,
        progress,
        sent_since_tick: false,
        finished: false,
    };
    watcher.pending = watcher.absorb(first);
    Ok(futures::stream::unfold(watcher, |mut w| async move { w.next().await.map(|item| (item, w)) }).boxed())
}

struct Watcher {
    db: Arc<Database>,
    live: broadcast::Receiver<Arc<CommittedRevision>>,
    prefix: String,
    /// Every revision up to this one has been examined.
    delivered: Revision,
    catching_up: bool,
    /// Events read but not yet handed out.
    pending: Option<Vec<Event>>,
    progress: Option<Interval>,
    sent_since_tick: bool,
    finished: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(events) = self.pending.take() {
                self.sent_since_tick = true;
                return Some(Ok(WatchResponse::Events(events)));
            }
            if self.catching_up {
                match read_log(self.db.clone(), self.prefix.clone(), self.delivered).await {
                    Ok(chunk) => self.pending = self.absorb(chunk),
                    Err(error) => return self.finish(error),
                }
                continue;
            }
            let woke = tokio::select! {
                biased;
                received = self.live.recv() => Wake::Live(received),
                () = tick(&mut self.progress) => Wake::Tick,
            };
            match woke {
                Wake::Live(Ok(revision)) => self.pending = self.take_live(revision),
                Wake::Live(Err(RecvError::Lagged(_))) => self.catching_up = true,
                Wake::Live(Err(RecvError::Closed)) => {
                    // The store shut down.
                    self.finished = true;
                    return None;
                }
                Wake::Tick => {
                    if !std::mem::take(&mut self.sent_since_tick) {
                        return Some(Ok(WatchResponse::Progress { revision: self.delivered }));
                    }
                }
            }
        }
    }

    /// Takes a log chunk; returns its events unless there are none.
    fn absorb(&mut self, chunk: LogChunk) -> Option<Vec<Event>> {
        self.delivered = chunk.through;
        self.catching_up = !chunk.caught_up;
        Some(chunk.events).filter(|events| !events.is_empty())
    }

    /// Takes `first` and whatever else the broadcast already holds (up to a bound); returns
    /// the matching events unless there are none.
    fn take_live(&mut self, first: Arc<CommittedRevision>) -> Option<Vec<Event>> {
        let mut events = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(revision) = next.take() {
            if revision.revision > self.delivered + 1 {
                // Not expected (see module docs), but the log can always fill a gap.
                self.catching_up = true;
                break;
            }
            if revision.revision == self.delivered + 1 {
                self.delivered = revision.revision;
                events.extend(revision.events.iter().filter(|e| e.kv.key.starts_with(&self.prefix)).cloned());
            }
            taken += 1;
            if taken >= REVISIONS_PER_RESPONSE {
                break;
            }
            match self.live.try_recv() {
                Ok(revision) => next = Some(revision),
                Err(TryRecvError::Lagged(_)) => self.catching_up = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => {}
            }
        }
        Some(events).filter(|events| !events.is_empty())
    }

    fn finish(&mut self, error: StoreError) -> Option<Result<WatchResponse>> {
        self.finished = true;
        Some(Err(match error {
            // The history this watcher still needed was compacted while it lagged.
            StoreError::Compacted { .. } => StoreError::WatchLagged,
            other => other,
        }))
    }
}

/// What woke an idle live watcher.
enum Wake {
    Live(Result<Arc<CommittedRevision>, RecvError>),
    Tick,
}

/// The next progress tick; never, if progress notifications are off.
async fn tick(progress: &mut Option<Interval>) {
    match progress {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn read_log(db: Arc<Database>, prefix: String, after: Revision) -> Result<LogChunk> {
    blocking(move || Snapshot::begin(&db)?.log_after(&prefix, after, REVISIONS_PER_RESPONSE)).await
}
