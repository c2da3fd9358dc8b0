//! Transactions, revisions and ranges of the redb store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{open, open_with, val};
use skiff_store::redb::RedbOptions;
use skiff_store::{Compare, Op, RangeOptions, Store, StoreError, StoreExt};

#[tokio::test]
async fn create_update_and_delete_are_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());

    let r1 = store.create("/a", val("1")).await.unwrap();
    assert_eq!(r1, 1);
    assert_eq!(store.create("/a", val("again")).await, Err(StoreError::CompareFailed { index: 0 }));

    let r2 = store.update("/a", val("2"), r1).await.unwrap();
    assert_eq!(r2, 2);
    assert_eq!(store.update("/a", val("stale"), r1).await, Err(StoreError::CompareFailed { index: 0 }));

    let (kv, rev) = store.get("/a").await.unwrap();
    let kv = kv.unwrap();
    assert_eq!((kv.value_str(), kv.create_revision, kv.mod_revision, rev), ("2", 1, 2, 2));

    assert_eq!(store.delete("/a", r1).await, Err(StoreError::CompareFailed { index: 0 }));
    assert_eq!(store.delete("/a", r2).await.unwrap(), 3);
    assert_eq!(store.get("/a").await.unwrap(), (None, 3));

    // Exists, and ModRevision 0 meaning "absent" (as in etcd).
    let exists = store.txn(vec![Compare::Exists("/a".into())], vec![Op::put("/a", val("x"))]).await;
    assert_eq!(exists, Err(StoreError::CompareFailed { index: 0 }));
    let r4 = store.txn(vec![Compare::ModRevision("/a".into(), 0)], vec![Op::put("/a", val("x"))]).await.unwrap();
    assert_eq!(r4.revision, 4);
    assert_eq!(r4.prev, vec![None]);
    let r5 = store.txn(vec![Compare::Exists("/a".into())], vec![Op::put("/a", val("y"))]).await.unwrap();
    assert_eq!(r5.prev[0].as_ref().map(|kv| kv.value_str().to_owned()), Some("x".to_owned()));
    // Re-created after a delete: a new create_revision.
    assert_eq!(store.get("/a").await.unwrap().0.unwrap().create_revision, 4);
}

#[tokio::test]
async fn multi_key_transactions_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("/b", val("b")).await.unwrap();

    let failed = store
        .txn(
            vec![Compare::Absent("/a".into()), Compare::Absent("/b".into())],
            vec![Op::put("/a", val("a")), Op::put("/b", val("b2"))],
        )
        .await;
    assert_eq!(failed, Err(StoreError::CompareFailed { index: 1 }));
    assert_eq!(store.get("/a").await.unwrap(), (None, 1));
    assert_eq!(store.current_revision().await.unwrap(), 1);

    let ok = store
        .txn(
            vec![Compare::Absent("/a".into()), Compare::ModRevision("/b".into(), 1)],
            vec![Op::put("/a", val("a")), Op::put("/b", val("b2")), Op::delete("/nothing")],
        )
        .await
        .unwrap();
    assert_eq!(ok.revision, 2);
    assert_eq!(ok.prev.len(), 3);
    assert!(ok.prev[0].is_none() && ok.prev[2].is_none());
    assert_eq!(ok.prev[1].as_ref().unwrap().value_str(), "b");
    for key in ["/a", "/b"] {
        assert_eq!(store.get(key).await.unwrap().0.unwrap().mod_revision, 2, "{key}");
    }
}

#[tokio::test]
async fn only_effective_transactions_take_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create("/a", val("1")).await.unwrap();
    let empty = store.txn(vec![Compare::Exists("/a".into())], vec![]).await.unwrap();
    assert_eq!((empty.revision, empty.prev.len()), (1, 0));
    let no_op = store.txn(vec![], vec![Op::delete("/absent")]).await.unwrap();
    assert_eq!((no_op.revision, no_op.prev.clone()), (1, vec![None]));
    assert_eq!(store.current_revision().await.unwrap(), 1);
    assert_eq!(store.create("/b", val("2")).await.unwrap(), 2);
}

#[tokio::test]
async fn revisions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        store.create(&format!("/k/{i}"), val("v")).await.unwrap();
    }
    store.compact(3).await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), 5);
    assert_eq!(store.compacted_revision().await.unwrap(), 3);
    assert_eq!(store.get("/k/4").await.unwrap().0.unwrap().mod_revision, 5);
    assert_eq!(store.create("/k/5", val("v")).await.unwrap(), 6);
}

#[tokio::test]
async fn ranges_paginate_in_lexical_order_with_count_and_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in (0..25).rev() {
        store.create(&format!("/r/{i:02}"), val(&i.to_string())).await.unwrap();
    }
    store.create("/q", val("before")).await.unwrap();
    store.create("/r0", val("not under /r/")).await.unwrap();
    store.create("/s/0", val("after")).await.unwrap();

    let all = store.range("/r/", RangeOptions::default()).await.unwrap();
    assert_eq!((all.kvs.len(), all.count, all.more, all.revision), (25, 25, false, 28));
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<_> = (0..25).map(|i| format!("/r/{i:02}")).collect();
    assert_eq!(keys, expected);

    let mut seen = Vec::new();
    let mut start_after = None;
    let mut counts = Vec::new();
    loop {
        let page = store
            .range("/r/", RangeOptions { start_after: start_after.clone(), limit: 10, revision: 0 })
            .await
            .unwrap();
        counts.push((page.kvs.len(), page.count, page.more));
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(seen, expected);
    assert_eq!(counts, vec![(10, 25, true), (10, 15, true), (5, 5, false)]);

    // A bound before the prefix starts at the prefix; one after it matches nothing.
    let from_a = RangeOptions { start_after: Some("/a".into()), limit: 1, revision: 0 };
    assert_eq!(store.range("/r/", from_a).await.unwrap().kvs[0].key, "/r/00");
    let from_z = RangeOptions { start_after: Some("/z".into()), ..Default::default() };
    assert_eq!(store.range("/r/", from_z).await.unwrap().count, 0);
}

#[tokio::test]
async fn ranges_at_an_old_revision_undo_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a1 = store.create("/o/a", val("a1")).await.unwrap();
    let b1 = store.create("/o/b", val("b1")).await.unwrap();
    store.create("/other", val("x")).await.unwrap();
    let old = store.current_revision().await.unwrap();

    let a2 = store.update("/o/a", val("a2"), a1).await.unwrap();
    store.delete("/o/b", b1).await.unwrap();
    store.create("/o/c", val("c1")).await.unwrap();
    store.update("/o/a", val("a3"), a2).await.unwrap();
    let b = store.create("/o/b", val("b-again")).await.unwrap();

    let at_old = store.range("/o/", RangeOptions { revision: old, ..Default::default() }).await.unwrap();
    let state: Vec<_> = at_old.kvs.iter().map(|kv| (kv.key.as_str(), kv.value_str(), kv.mod_revision)).collect();
    assert_eq!(state, vec![("/o/a", "a1", a1), ("/o/b", "b1", b1)]);
    assert_eq!((at_old.revision, at_old.count, at_old.more), (old, 2, false));

    let page = RangeOptions { start_after: Some("/o/a".into()), limit: 1, revision: old };
    let second = store.range("/o/", page).await.unwrap();
    assert_eq!((second.kvs[0].value_str(), second.count, second.more), ("b1", 1, false));

    let now = store.range("/o/", RangeOptions::default()).await.unwrap();
    let state: Vec<_> = now.kvs.iter().map(|kv| (kv.key.as_str(), kv.value_str())).collect();
    assert_eq!(state, vec![("/o/a", "a3"), ("/o/b", "b-again"), ("/o/c", "c1")]);
    assert_eq!(now.revision, b);

    let future = RangeOptions { revision: b + 1, ..Default::default() };
    assert_eq!(store.range("/o/", future).await, Err(StoreError::FutureRevision { requested: b + 1, current: b }));
    store.compact(old + 1).await.unwrap();
    let compacted = RangeOptions { revision: old, ..Default::default() };
    assert_eq!(store.range("/o/", compacted).await, Err(StoreError::Compacted { requested: old, compacted: old + 1 }));
    assert!(store.range("/o/", RangeOptions { revision: old + 1, ..Default::default() }).await.is_ok());
}

#[tokio::test]
async fn compaction_is_explicit_or_follows_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..10 {
        store.create(&format!("/c/{i}"), val("v")).await.unwrap();
    }
    assert_eq!(store.compact(11).await, Err(StoreError::FutureRevision { requested: 11, current: 10 }));
    store.compact(4).await.unwrap();
    store.compact(2).await.unwrap(); // older than the compacted revision: a no-op
    assert_eq!(store.compacted_revision().await.unwrap(), 4);
    drop(store);

    // Keep 10 revisions and no minimum age (the age is tracked to a second).
    let opts = RedbOptions { history_revisions: 10, history_age: Duration::ZERO, ..Default::default() };
    let store = open_with(dir.path(), opts);
    for i in 10..50 {
        store.create(&format!("/c/{i}"), val("v")).await.unwrap();
    }
    // Everything so far was committed within a second of opening: still too young.
    assert_eq!(store.compacted_revision().await.unwrap(), 4);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rev = store.create("/c/last", val("v")).await.unwrap();
    assert_eq!(rev, 51);
    assert_eq!(store.compacted_revision().await.unwrap(), 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_key_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create("/contended", val(&i.to_string())).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(rev) => {
                winners += 1;
                assert_eq!(rev, 1);
            }
            Err(e) => assert_eq!(e, StoreError::CompareFailed { index: 0 }),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.current_revision().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_each_get_their_own_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(&format!("/many/{i:03}"), val("v")).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap().unwrap());
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
    let all = store.range("/many/", RangeOptions::default()).await.unwrap();
    assert_eq!((all.count, all.revision), (200, 200));
    for kv in &all.kvs {
        let (found, _) = store.get(&kv.key).await.unwrap();
        assert_eq!(found.as_ref(), Some(kv));
    }
}
