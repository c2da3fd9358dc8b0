//! Background compaction of etcd's history, coordinated between API servers.
//!
//! etcd keeps every revision until someone compacts; upstream that someone is kube-apiserver,
//! which every 5 minutes compacts to the revision it saw 5 minutes earlier. With several API
//! servers on one etcd, each would compact on its own schedule; they coordinate through one
//! etcd key, `compact_rev_key` (the same key and protocol as kube-apiserver, so skiff and
//! kube-apiserver sharing an etcd also coordinate):
//!
//! - the key's etcd `version` (how often it was written) is a logical clock of compaction
//!   rounds; each compactor remembers the last version it saw;
//! - every [`CompactionOptions::interval`] a compactor runs one transaction: *if the version is
//!   still the one I saw, write the key (its value: the revision I am about to compact to);
//!   otherwise read it*. Success means no other compactor ran a round since this one's last
//!   round: it compacts. Failure means another one did: it adopts the new version and skips.
//!
//! So per interval about one compaction happens cluster-wide, by whichever API server has been
//! running longest; when it goes away, the next one's transaction succeeds and it takes over.
//!
//! The revision to compact to is the newest revision this compactor observed at least
//! [`CompactionOptions::retention`] ago (each round's transaction tells the current revision),
//! so watches and paginated lists can resume from anything newer. The first round only records.
//! Compaction is etcd-wide, not limited to skiff's prefix: that is how etcd works.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch as signal;
use tokio::time::MissedTickBehavior;

use super::errors::CallError;
use super::members::Idempotence;
use super::{header_revision, CompactionOptions, Shared};
use crate::{Result, Revision, StoreError};

/// The etcd key compactors coordinate on (not under the store's prefix: compaction is global).
pub const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Starts the compactor; it stops when `shutdown`'s sender is dropped.
pub(crate) fn spawn(shared: Arc<Shared>, opts: CompactionOptions, mut shutdown: signal::Receiver<()>) {
    let mut compactor = Compactor { shared, opts, version: 0, marks: VecDeque::new() };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(compactor.opts.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = compactor.round(Instant::now()).await {
                tracing::warn!(%error, "etcd compaction round failed; trying again next interval");
            }
        }
    });
}

struct Compactor {
    shared: Arc<Shared>,
    opts: CompactionOptions,
    /// The version of [`COMPACT_REV_KEY`] this compactor last saw (0: absent).
    version: i64,
    /// (when, current revision then), oldest first; see [`Compactor::target`].
    marks: VecDeque<(Instant, Revision)>,
}

impl Compactor {
    /// One round: claim it through `compact_rev_key`, and compact if claimed.
    async fn round(&mut self, now: Instant) -> Result<()> {
        let target = self.target(now);
        let claim = Txn::new()
            .when([Compare::version(COMPACT_REV_KEY, CompareOp::Equal, self.version)])
            .and_then([TxnOp::put(COMPACT_REV_KEY, target.to_string(), None)])
            .or_else([TxnOp::get(COMPACT_REV_KEY, None)]);
        let response = self
            .shared
            .members
            .call(Idempotence::Write, |_, mut clients| {
                let claim = claim.clone();
                async move { Ok::<_, CallError>(clients.kv.txn(claim).await?) }
            })
            .await
            .map_err(CallError::into_store_error)?;
        self.marks.push_back((now, header_revision(response.header())?));
        if !response.succeeded() {
            // Another compactor ran a round since our last one: adopt its clock.
            self.version = match response.op_responses().first() {
                Some(TxnOpResponse::Get(read)) => read.kvs().first().map_or(0, |kv| kv.version()),
                _ => return Err(StoreError::Backend("etcd answered the compaction claim oddly".into())),
            };
            return Ok(());
        }
        self.version += 1;
        if target > 0 {
            self.shared.compact(target).await?;
            tracing::info!(revision = target, "etcd history compacted");
        }
        Ok(())
    }

    /// The newest revision seen at least `retention` ago (0 if none); drops the marks that
    /// can no longer be a target.
    fn target(&mut self, now: Instant) -> Revision {
        let old_enough = |at: &Instant| now.saturating_duration_since(*at) >= self.opts.retention;
        while self.marks.get(1).is_some_and(|(at, _)| old_enough(at)) {
            self.marks.pop_front();
        }
        match self.marks.front() {
            Some((at, revision)) if old_enough(at) => *revision,
            _ => 0,
        }
    }
}
