//! Store watches on etcd watches, resumed on another member when their member fails.
//!
//! A store watch is one etcd watch (its own gRPC stream) over the prefix's key range, started
//! at `after + 1` with `prev_kv`, so etcd itself replays the history and then follows live
//! writes, in revision order, all events of one revision in one response. The watcher keeps
//! one number, `delivered`: the revision of the last event handed out (or `after`). When the
//! stream breaks — member killed, connection lost, member without a leader — the watcher opens
//! a new etcd watch at `delivered + 1` (through [`Members`](super::members::Members), so on
//! the next healthy member) and drops any event at or below `delivered`: no gap, no duplicate.
//!
//! Errors, as in the redb backend: `watch()` itself fails with `Compacted`/`FutureRevision`
//! when `after` is outside the history; a stream whose history was compacted while it was
//! behind (etcd answers with a `compact_revision`) ends with [`StoreError::WatchLagged`]; a
//! stream that cannot reach any member for [`EtcdOptions::retry_for`](super::EtcdOptions)
//! ends with [`StoreError::Unavailable`]. Streams also end when the store is dropped.
//!
//! **Progress.** When a whole `progress_interval` passed without events, the watcher asks
//! etcd for progress (a `WatchProgressRequest`); etcd answers with its current revision. Before
//! etcd 3.4.25/3.5.8 that answer could overtake events still queued in the server
//! (etcd-io/etcd#15220), so the answer is held back for one more interval and reported as
//! [`WatchResponse::Progress`] only if no event arrived meanwhile; a stale answer is dropped.
//! The first progress thus comes two intervals into an idle period, then one per interval.

use std::sync::Arc;

use etcd_client::{EventType, WatchOptions, WatchResponse as EtcdWatchResponse, WatchStream as EtcdWatchStream};
use futures::StreamExt;
use tokio::sync::watch as signal;
use tokio::time::{Interval, MissedTickBehavior};

use super::errors::CallError;
use super::keys::EtcdRange;
use super::members::Idempotence;
use super::Shared;
use crate::{Event, EventKind, Result, Revision, StoreError, WatchResponse, WatchStream};

/// Starts a store watch of `prefix` after revision `after`; see the module docs.
pub(crate) async fn watch(
    shared: Arc<Shared>,
    prefix: &str,
    after: Revision,
    shutdown: signal::Receiver<()>,
) -> Result<WatchStream> {
    let EtcdRange::Keys { start, end } = shared.keys.range(prefix, None) else {
        return Err(StoreError::Backend(format!(
            "cannot watch {prefix:?}: every key of the etcd store is under {}",
            super::keys::REGISTRY
        )));
    };
    shared.check_history(after).await?;
    let progress = shared.progress_interval.filter(|p| !p.is_zero()).map(|period| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut watcher = Watcher {
        shared,
        start,
        end,
        delivered: after,
        reported: after,
        stream: None,
        shutdown,
        progress,
        sent_since_tick: false,
        held_progress: None,
        finished: false,
    };
    let stream = watcher.open().await.map_err(|e| match e {
        // A compaction that raced with the history check above.
        OpenError::Compacted(compacted) => StoreError::Compacted { requested: after, compacted },
        OpenError::Failed(error) => error,
    })?;
    watcher.stream = Some(stream);
    Ok(futures::stream::unfold(watcher, |mut w| async move { w.next().await.map(|item| (item, w)) }).boxed())
}

/// An open etcd watch and the member it runs on.
struct Opened {
    member: usize,
    stream: EtcdWatchStream,
}

enum OpenError {
    /// etcd compacted the revisions the watch would start at; it reports its compact revision.
    Compacted(Revision),
    Failed(StoreError),
}

struct Watcher {
    shared: Arc<Shared>,
    /// The etcd key range `[start, end)`.
    start: Vec<u8>,
    end: Vec<u8>,
    /// Revision of the last event handed out (or the watch's `after`).
    delivered: Revision,
    /// The highest revision reported so far (events or progress); progress never goes below it.
    reported: Revision,
    /// `None` after its member failed, until reopened.
    stream: Option<Opened>,
    /// Closed when the store is dropped.
    shutdown: signal::Receiver<()>,
    progress: Option<Interval>,
    sent_since_tick: bool,
    /// etcd's answer to the last progress request, not yet reported (see the module docs).
    held_progress: Option<Revision>,
    finished: bool,
}

/// What woke the watcher up.
enum Wake {
    Message(Result<Option<EtcdWatchResponse>, etcd_client::Error>),
    Tick,
    Shutdown,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            if self.finished {
                return None;
            }
            let Some(opened) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(opened) => self.stream = Some(opened),
                    Err(OpenError::Compacted(_)) => return self.finish(StoreError::WatchLagged),
                    Err(OpenError::Failed(error)) => return self.finish(error),
                }
                continue;
            };
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Wake::Shutdown,
                message = opened.stream.message() => Wake::Message(message),
                () = tick(&mut self.progress) => Wake::Tick,
            };
            match wake {
                Wake::Shutdown => {
                    self.finished = true;
                    return None;
                }
                Wake::Message(Ok(Some(response))) => {
                    if let Some(item) = self.on_response(response) {
                        return Some(item);
                    }
                }
                Wake::Message(Ok(None)) => self.lost_stream(&"etcd closed the watch stream"),
                Wake::Message(Err(error)) => self.lost_stream(&CallError::Etcd(error)),
                Wake::Tick => {
                    if let Some(item) = self.on_tick().await {
                        return Some(item);
                    }
                }
            }
        }
    }

    /// Opens an etcd watch at `delivered + 1` on a healthy member and waits until etcd
    /// confirms it.
    async fn open(&self) -> Result<Opened, OpenError> {
        let from = self.delivered + 1;
        let result = self
            .shared
            .members
            .call(Idempotence::Read, |member, mut clients| {
                let (start, end) = (self.start.clone(), self.end.clone());
                async move {
                    let options = WatchOptions::new().with_range(end).with_start_revision(from).with_prev_key();
                    let mut stream = clients.watch.watch(start, Some(options)).await?;
                    loop {
                        match stream.message().await? {
                            Some(response) if response.compact_revision() != 0 => {
                                return Ok(Err(response.compact_revision()));
                            }
                            Some(response) if response.canceled() => {
                                return Err(CallError::WatchCanceled(response.cancel_reason().to_owned()));
                            }
                            Some(response) if response.created() => return Ok(Ok(Opened { member, stream })),
                            // Nothing else precedes the confirmation; skip it if it does.
                            Some(_) => {}
                            None => {
                                let closed = "the watch stream closed before etcd confirmed it";
                                return Err(CallError::Etcd(etcd_client::Error::WatchError(closed.into())));
                            }
                        }
                    }
                }
            })
            .await;
        match result {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(compacted)) => {
                self.shared.saw_compaction(compacted);
                Err(OpenError::Compacted(compacted))
            }
            Err(error) => Err(OpenError::Failed(error.into_store_error())),
        }
    }

    /// Handles one etcd response; returns what to hand out, if anything.
    fn on_response(&mut self, response: EtcdWatchResponse) -> Option<Result<WatchResponse>> {
        if response.compact_revision() != 0 {
            // The history this watcher still needed was compacted while it was behind.
            self.shared.saw_compaction(response.compact_revision());
            return self.finish(StoreError::WatchLagged);
        }
        if response.canceled() {
            let error = CallError::WatchCanceled(response.cancel_reason().to_owned());
            if error.retry() == super::errors::Retry::Never {
                return self.finish(error.into_store_error());
            }
            self.lost_stream(&error);
            return None;
        }
        if response.created() {
            return None;
        }
        if response.events().is_empty() {
            // The answer to a progress request.
            if let Some(header) = response.header() {
                self.held_progress = Some(header.revision());
            }
            return None;
        }
        match self.events(&response) {
            Ok(events) if events.is_empty() => None,
            Ok(events) => {
                self.sent_since_tick = true;
                self.held_progress = None;
                Some(Ok(WatchResponse::Events(events)))
            }
            Err(error) => self.finish(error),
        }
    }

    /// The response's events not delivered yet, converted; advances `delivered`.
    fn events(&mut self, response: &EtcdWatchResponse) -> Result<Vec<Event>> {
        let keys = &self.shared.keys;
        let mut events = Vec::with_capacity(response.events().len());
        let mut last = self.delivered;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.mod_revision() <= self.delivered {
                continue; // already handed out before a reconnect
            }
            last = last.max(kv.mod_revision());
            let kind = match event.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => EventKind::Delete,
            };
            let prev = event.prev_kv().map(|prev| keys.key_value(prev)).transpose()?;
            events.push(Event { kind, kv: keys.key_value(kv)?, prev });
        }
        self.delivered = last;
        self.reported = self.reported.max(last);
        Ok(events)
    }

    /// Every `progress_interval`: report the held progress answer if the watch stayed idle,
    /// and ask for a new one.
    async fn on_tick(&mut self) -> Option<Result<WatchResponse>> {
        let idle = !std::mem::take(&mut self.sent_since_tick);
        let held = self.held_progress.take();
        if !idle {
            return None;
        }
        if let Some(opened) = self.stream.as_mut() {
            // A failed send means the stream broke; reading it will tell.
            let _ = opened.stream.request_progress().await;
        }
        let revision = held.filter(|revision| *revision >= self.reported)?;
        self.reported = revision;
        Some(Ok(WatchResponse::Progress { revision }))
    }

    /// The stream broke: forget it (the next poll reopens it elsewhere) and move the member
    /// pin away from its member.
    fn lost_stream(&mut self, why: &dyn std::fmt::Display) {
        if let Some(opened) = self.stream.take() {
            tracing::info!(delivered = self.delivered, %why, "etcd watch stream lost; resuming");
            self.shared.members.demote(opened.member, why);
        }
        self.held_progress = None;
    }

    fn finish(&mut self, error: StoreError) -> Option<Result<WatchResponse>> {
        self.finished = true;
        self.stream = None;
        Some(Err(error))
    }
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
