//! Watches of the redb store: replay, live delivery, ordering, errors and progress.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{events_until, next_item, open, open_with, val};
use skiff_store::redb::RedbOptions;
use skiff_store::{EventKind, Store, StoreError, StoreExt, WatchResponse};

#[tokio::test]
async fn delete_and_update_events_carry_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let r1 = store.create("/svc/a", val("v1")).await.unwrap();
    let r2 = store.update("/svc/a", val("v2"), r1).await.unwrap();
    store.create("/pods/x", val("elsewhere")).await.unwrap();
    let r4 = store.delete("/svc/a", r2).await.unwrap();

    let mut watch = store.watch("/svc/", 0).await.unwrap();
    let events = events_until(&mut watch, r4).await;
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind.clone(),
                e.kv.value_str().to_owned(),
                e.kv.mod_revision,
                e.prev.as_ref().map(|p| p.value_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, "v1".into(), 1, None),
            (EventKind::Put, "v2".into(), 2, Some("v1".into())),
            (EventKind::Delete, "".into(), 4, Some("v2".into())),
        ]
    );
    let deleted_prev = events[2].prev.as_ref().unwrap();
    assert_eq!((deleted_prev.create_revision, deleted_prev.mod_revision), (1, 2));
}

#[tokio::test]
async fn watch_continues_live_after_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("/w/1", val("1")).await.unwrap();
    let mut watch = store.watch("/w/", 0).await.unwrap();
    let rev = store.create("/w/2", val("2")).await.unwrap();
    store.create("/x/3", val("other prefix")).await.unwrap();
    let rev4 = store.create("/w/4", val("4")).await.unwrap();
    let events = events_until(&mut watch, rev4).await;
    let keys: Vec<_> = events.iter().map(|e| (e.kv.key.as_str(), e.kv.mod_revision)).collect();
    assert_eq!(keys, vec![("/w/1", 1), ("/w/2", rev), ("/w/4", rev4)]);
}

/// 4 writers × 500 transactions while watchers start from revision 0 (mid-stream) and from a
/// later revision; a deliberately slow watcher with a tiny broadcast buffer must recover from
/// the log. Each sees every revision after its start exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_revision_once_in_order_under_concurrent_writes() {
    const WRITERS: usize = 4;
    const TXNS: usize = 500;
    const TOTAL: i64 = (WRITERS * TXNS) as i64;
    let dir = tempfile::tempdir().unwrap();
    let opts = RedbOptions { watch_buffer: 8, ..Default::default() };
    let store = open_with(dir.path(), opts);

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revision = 0;
                for i in 0..TXNS {
                    let key = format!("/load/{w}");
                    // Alternate create/update/delete on a few keys per writer.
                    revision = match i % 3 {
                        0 => store.create(&key, val(&i.to_string())).await.unwrap(),
                        1 => store.update(&key, val(&i.to_string()), revision).await.unwrap(),
                        _ => store.delete(&key, revision).await.unwrap(),
                    };
                }
            })
        })
        .collect();

    // Start watchers while the writers are running.
    while store.current_revision().await.unwrap() < TOTAL / 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let from_zero = store.watch("/load/", 0).await.unwrap();
    let middle = store.current_revision().await.unwrap();
    let from_middle = store.watch("/load/", middle).await.unwrap();
    let slow = store.watch("/load/", 0).await.unwrap();

    let check = |mut stream: skiff_store::WatchStream, after: i64, slow: bool| {
        tokio::spawn(async move {
            let mut expected = after + 1;
            while expected <= TOTAL {
                match next_item(&mut stream).await {
                    Some(Ok(WatchResponse::Events(events))) => {
                        for event in events {
                            assert_eq!(event.kv.mod_revision, expected, "gap or duplicate");
                            expected += 1;
                        }
                    }
                    Some(Ok(WatchResponse::Progress { revision })) => assert!(revision < expected),
                    other => panic!("watch ended early at {expected}: {other:?}"),
                }
                if slow {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let checks = [check(from_zero, 0, false), check(from_middle, middle, false), check(slow, 0, true)];
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(store.current_revision().await.unwrap(), TOTAL);
    for check in checks {
        check.await.unwrap();
    }
}

#[tokio::test]
async fn watching_compacted_or_future_history_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..6 {
        store.create(&format!("/k/{i}"), val("v")).await.unwrap();
    }
    store.compact(4).await.unwrap();
    assert_eq!(store.watch("/k/", 3).await.err(), Some(StoreError::Compacted { requested: 3, compacted: 4 }));
    assert_eq!(store.watch("/k/", 7).await.err(), Some(StoreError::FutureRevision { requested: 7, current: 6 }));

    let mut from_compacted = store.watch("/k/", 4).await.unwrap();
    let events = events_until(&mut from_compacted, 6).await;
    assert_eq!(events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(), vec![5, 6]);
}

#[tokio::test]
async fn a_watcher_behind_the_compacted_history_is_told_it_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RedbOptions { watch_buffer: 2, ..Default::default() };
    let store = open_with(dir.path(), opts);
    let mut watch = store.watch("/", 0).await.unwrap();
    for i in 0..20 {
        store.create(&format!("/k/{i}"), val("v")).await.unwrap();
    }
    store.compact(10).await.unwrap();
    // The broadcast overflowed and the log no longer reaches back to revision 1.
    assert_eq!(next_item(&mut watch).await, Some(Err(StoreError::WatchLagged)));
    assert_eq!(next_item(&mut watch).await, None);
}

#[tokio::test]
async fn idle_watchers_get_progress_with_the_current_revision() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RedbOptions { progress_interval: Some(Duration::from_millis(100)), ..Default::default() };
    let store = open_with(dir.path(), opts);
    store.create("/a", val("1")).await.unwrap();
    let mut watch = store.watch("/b/", 0).await.unwrap();
    store.create("/c", val("2")).await.unwrap();
    // No event matches "/b/", but progress reports that revision 2 was covered.
    loop {
        match next_item(&mut watch).await {
            Some(Ok(WatchResponse::Progress { revision: 2 })) => break,
            Some(Ok(WatchResponse::Progress { revision })) => assert!(revision < 2),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn watch_streams_end_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("/a", val("1")).await.unwrap();
    let mut watch = store.watch("/", 0).await.unwrap();
    assert!(matches!(next_item(&mut watch).await, Some(Ok(WatchResponse::Events(_)))));
    drop(store);
    loop {
        match next_item(&mut watch).await {
            None => break,
            Some(Ok(WatchResponse::Progress { .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
