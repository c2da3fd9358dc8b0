//! Helpers shared by the redb store tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::redb::{RedbOptions, RedbStore};
use skiff_store::{Event, Result, Revision, WatchResponse, WatchStream};

pub fn open(dir: &Path) -> Arc<RedbStore> {
    open_with(dir, RedbOptions::default())
}

pub fn open_with(dir: &Path, opts: RedbOptions) -> Arc<RedbStore> {
    RedbStore::open(&dir.join("store.redb"), opts).expect("open store")
}

pub fn val(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// The next stream item, failing the test instead of hanging.
pub async fn next_item(stream: &mut WatchStream) -> Option<Result<WatchResponse>> {
    tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("watch stream stalled")
}

/// Reads events (skipping progress notifications) until one at `until` or later arrives.
pub async fn events_until(stream: &mut WatchStream, until: Revision) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    while events.last().is_none_or(|e| e.kv.mod_revision < until) {
        match next_item(stream).await {
            Some(Ok(WatchResponse::Events(batch))) => events.extend(batch),
            Some(Ok(WatchResponse::Progress { .. })) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    events
}
