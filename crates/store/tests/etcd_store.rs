//! The etcd store against a real etcd (Debian's `etcd-server`, v3.4+), started on loopback
//! ports with a temporary data directory per test: the redb behaviour tests ported (revisions
//! are offset — a new etcd is at revision 1, its first write is 2), plus failover, several
//! stores on one etcd, the key prefix and the compactor.
//!
//! These tests need the `etcd` binary (`SKIFF_ETCD_BIN`, default `etcd` on the PATH); without
//! it they fail, they do not skip.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/ports.rs"]
mod ports;

use bytes::Bytes;
use futures::StreamExt;
use ports::free_ports;
use skiff_store::etcd::{CompactionOptions, EtcdOptions, EtcdStore, COMPACT_REV_KEY, DEFAULT_PREFIX};
use skiff_store::{
    Compare, Event, EventKind, Op, RangeOptions, Result, Revision, Store, StoreError, StoreExt, WatchResponse,
    WatchStream,
};

// ---------------------------------------------------------------------------------------------
// A real etcd, killed when dropped (also when a test panics).

/// One etcd member process.
struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    child: Option<Child>,
    log: PathBuf,
}

/// An etcd cluster of one or more members on loopback ports, with its data in a temporary
/// directory (in /dev/shm when there is one: etcd fsyncs every write).
struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

fn etcd_binary() -> String {
    std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| "etcd".to_owned())
}

impl Etcd {
    async fn single() -> Etcd {
        Etcd::cluster(1).await
    }

    /// Starts `size` members forming one new cluster and waits until every one serves
    /// linearizable reads (so a leader was elected).
    async fn cluster(size: usize) -> Etcd {
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::Builder::new().prefix("skiff-etcd-test").tempdir_in("/dev/shm"),
            false => tempfile::Builder::new().prefix("skiff-etcd-test").tempdir(),
        }
        .expect("temporary directory");
        let ports = free_ports(2 * size);
        let mut members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", ports[2 * i]),
                peer_url: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                child: None,
                log: dir.path().join(format!("m{i}.log")),
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let token = format!("skiff-test-{}", ports[0]);
        for member in &mut members {
            let log = File::create(&member.log).expect("etcd log file");
            let spawned = Command::new(etcd_binary())
                .args(["--name", &member.name])
                .arg("--data-dir")
                .arg(dir.path().join(&member.name))
                .args(["--listen-client-urls", &member.client_url, "--advertise-client-urls", &member.client_url])
                .args(["--listen-peer-urls", &member.peer_url, "--initial-advertise-peer-urls", &member.peer_url])
                .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("etcd log file"))
                .stderr(log)
                .spawn();
            match spawned {
                Ok(child) => member.child = Some(child),
                Err(error) => panic!(
                    "cannot start etcd ({}): {error}. These tests need a real etcd v3 server: install Debian's \
                     etcd-server (apt-get install etcd-server) or point SKIFF_ETCD_BIN at an etcd binary.",
                    etcd_binary()
                ),
            }
        }
        let etcd = Etcd { members, _dir: dir };
        for i in 0..size {
            etcd.wait_ready(i).await;
        }
        etcd
    }

    async fn wait_ready(&self, i: usize) {
        let member = &self.members[i];
        let deadline = Instant::now() + Duration::from_secs(20);
        let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(200));
        loop {
            let ready = async {
                let mut client =
                    etcd_client::Client::connect([member.client_url.as_str()], Some(options.clone())).await?;
                client.get("ready", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ready).await {
                return;
            }
            assert!(Instant::now() < deadline, "etcd {} did not become ready:\n{}", member.name, self.log(i));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self, i: usize) -> String {
        let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn url(&self, i: usize) -> String {
        self.members[i].client_url.clone()
    }

    fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill().expect("kill etcd");
            child.wait().expect("reap etcd");
        }
    }

    /// The index of the raft leader.
    async fn leader(&self) -> usize {
        let mut client = etcd_client::Client::connect([self.url(0)], None).await.expect("etcd client");
        let status = client.status().await.expect("etcd status");
        for i in 0..self.members.len() {
            let mut member = etcd_client::Client::connect([self.url(i)], None).await.expect("etcd client");
            let own = member.status().await.expect("etcd status");
            if own.header().map(|h| h.member_id()) == Some(status.leader()) {
                return i;
            }
        }
        panic!("no member is the leader {}", status.leader());
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn test_options() -> EtcdOptions {
    EtcdOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        retry_for: Duration::from_secs(8),
        progress_interval: Some(Duration::from_millis(100)),
        compaction: None,
        ..Default::default()
    }
}

async fn connect(endpoints: Vec<String>) -> Arc<EtcdStore> {
    EtcdStore::connect(&endpoints, DEFAULT_PREFIX, test_options()).await.expect("connect to etcd")
}

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// The registry key of a short name.
fn k(name: &str) -> String {
    format!("/registry/{name}")
}

/// The next stream item, failing the test instead of hanging.
async fn next_item(stream: &mut WatchStream) -> Option<Result<WatchResponse>> {
    tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("watch stream stalled")
}

/// Reads events (skipping progress notifications) until one at `until` or later arrives.
async fn events_until(stream: &mut WatchStream, until: Revision) -> Vec<Event> {
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

// ---------------------------------------------------------------------------------------------
// Transactions, revisions and ranges (ported from redb_store.rs).

#[tokio::test]
async fn create_update_and_delete_are_compare_and_swap() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let base = store.current_revision().await.unwrap();

    let r1 = store.create(&k("a"), val("1")).await.unwrap();
    assert_eq!(r1, base + 1);
    assert_eq!(store.create(&k("a"), val("again")).await, Err(StoreError::CompareFailed { index: 0 }));

    let r2 = store.update(&k("a"), val("2"), r1).await.unwrap();
    assert_eq!(r2, r1 + 1);
    assert_eq!(store.update(&k("a"), val("stale"), r1).await, Err(StoreError::CompareFailed { index: 0 }));

    let (kv, rev) = store.get(&k("a")).await.unwrap();
    let kv = kv.unwrap();
    assert_eq!(
        (kv.key.as_str(), kv.value_str(), kv.create_revision, kv.mod_revision, rev),
        (k("a").as_str(), "2", r1, r2, r2)
    );

    assert_eq!(store.delete(&k("a"), r1).await, Err(StoreError::CompareFailed { index: 0 }));
    let r3 = store.delete(&k("a"), r2).await.unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(store.get(&k("a")).await.unwrap(), (None, r3));

    // Exists, and ModRevision 0 meaning "absent".
    let exists = store.txn(vec![Compare::Exists(k("a"))], vec![Op::put(k("a"), val("x"))]).await;
    assert_eq!(exists, Err(StoreError::CompareFailed { index: 0 }));
    let r4 = store.txn(vec![Compare::ModRevision(k("a"), 0)], vec![Op::put(k("a"), val("x"))]).await.unwrap();
    assert_eq!((r4.revision, r4.prev.clone()), (r3 + 1, vec![None]));
    let r5 = store.txn(vec![Compare::Exists(k("a"))], vec![Op::put(k("a"), val("y"))]).await.unwrap();
    assert_eq!(r5.prev[0].as_ref().map(|kv| kv.value_str().to_owned()), Some("x".to_owned()));
    // Re-created after a delete: a new create_revision.
    assert_eq!(store.get(&k("a")).await.unwrap().0.unwrap().create_revision, r4.revision);
    // Keys outside /registry are refused, not silently stored elsewhere.
    assert!(matches!(store.create("/elsewhere", val("x")).await, Err(StoreError::Backend(_))));
}

#[tokio::test]
async fn multi_key_transactions_are_all_or_nothing() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let rb = store.create(&k("b"), val("b")).await.unwrap();

    let failed = store
        .txn(
            vec![Compare::Absent(k("a")), Compare::Absent(k("b"))],
            vec![Op::put(k("a"), val("a")), Op::put(k("b"), val("b2"))],
        )
        .await;
    assert_eq!(failed, Err(StoreError::CompareFailed { index: 1 }));
    assert_eq!(store.get(&k("a")).await.unwrap(), (None, rb));
    let stale = store.txn(vec![Compare::ModRevision(k("b"), rb + 7)], vec![Op::delete(k("b"))]).await;
    assert_eq!(stale, Err(StoreError::CompareFailed { index: 0 }));
    assert_eq!(store.current_revision().await.unwrap(), rb);

    let ok = store
        .txn(
            vec![Compare::Absent(k("a")), Compare::ModRevision(k("b"), rb)],
            vec![Op::put(k("a"), val("a")), Op::put(k("b"), val("b2")), Op::delete(k("nothing"))],
        )
        .await
        .unwrap();
    assert_eq!(ok.revision, rb + 1);
    assert_eq!(ok.prev.len(), 3);
    assert!(ok.prev[0].is_none() && ok.prev[2].is_none());
    assert_eq!(ok.prev[1].as_ref().unwrap().value_str(), "b");
    for key in [k("a"), k("b")] {
        assert_eq!(store.get(&key).await.unwrap().0.unwrap().mod_revision, rb + 1, "{key}");
    }
}

#[tokio::test]
async fn only_effective_transactions_take_a_revision() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let r1 = store.create(&k("a"), val("1")).await.unwrap();
    let empty = store.txn(vec![Compare::Exists(k("a"))], vec![]).await.unwrap();
    assert_eq!((empty.revision, empty.prev.len()), (r1, 0));
    let no_op = store.txn(vec![], vec![Op::delete(k("absent"))]).await.unwrap();
    assert_eq!((no_op.revision, no_op.prev.clone()), (r1, vec![None]));
    assert_eq!(store.current_revision().await.unwrap(), r1);
    assert_eq!(store.create(&k("b"), val("2")).await.unwrap(), r1 + 1);
}

#[tokio::test]
async fn ranges_paginate_in_lexical_order_with_count_and_more() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    for i in (0..25).rev() {
        store.create(&k(&format!("r/{i:02}")), val(&i.to_string())).await.unwrap();
    }
    store.create(&k("q"), val("before")).await.unwrap();
    store.create(&k("r0"), val("not under r/")).await.unwrap();
    let last = store.create(&k("s/0"), val("after")).await.unwrap();

    let prefix = k("r/");
    let all = store.range(&prefix, RangeOptions::default()).await.unwrap();
    assert_eq!((all.kvs.len(), all.count, all.more, all.revision), (25, 25, false, last));
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<_> = (0..25).map(|i| k(&format!("r/{i:02}"))).collect();
    assert_eq!(keys, expected);

    let mut seen = Vec::new();
    let mut start_after = None;
    let mut counts = Vec::new();
    loop {
        let page = store
            .range(&prefix, RangeOptions { start_after: start_after.clone(), limit: 10, revision: 0 })
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
    assert_eq!(store.range(&prefix, from_a).await.unwrap().kvs[0].key, k("r/00"));
    let from_z = RangeOptions { start_after: Some("/z".into()), ..Default::default() };
    assert_eq!(store.range(&prefix, from_z).await.unwrap().count, 0);
    // "/" covers the whole store.
    assert_eq!(store.range("/", RangeOptions::default()).await.unwrap().count, 28);
}

#[tokio::test]
async fn ranges_at_an_old_revision_see_the_old_state() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let a1 = store.create(&k("o/a"), val("a1")).await.unwrap();
    let b1 = store.create(&k("o/b"), val("b1")).await.unwrap();
    store.create(&k("other"), val("x")).await.unwrap();
    let old = store.current_revision().await.unwrap();

    let a2 = store.update(&k("o/a"), val("a2"), a1).await.unwrap();
    store.delete(&k("o/b"), b1).await.unwrap();
    store.create(&k("o/c"), val("c1")).await.unwrap();
    store.update(&k("o/a"), val("a3"), a2).await.unwrap();
    let b = store.create(&k("o/b"), val("b-again")).await.unwrap();

    let prefix = k("o/");
    let at_old = store.range(&prefix, RangeOptions { revision: old, ..Default::default() }).await.unwrap();
    let state: Vec<_> =
        at_old.kvs.iter().map(|kv| (kv.key.clone(), kv.value_str().to_owned(), kv.mod_revision)).collect();
    assert_eq!(state, vec![(k("o/a"), "a1".into(), a1), (k("o/b"), "b1".into(), b1)]);
    assert_eq!((at_old.revision, at_old.count, at_old.more), (old, 2, false));

    let page = RangeOptions { start_after: Some(k("o/a")), limit: 1, revision: old };
    let second = store.range(&prefix, page).await.unwrap();
    assert_eq!((second.kvs[0].value_str(), second.count, second.more), ("b1", 1, false));

    let now = store.range(&prefix, RangeOptions::default()).await.unwrap();
    let state: Vec<_> = now.kvs.iter().map(|kv| (kv.key.clone(), kv.value_str().to_owned())).collect();
    assert_eq!(state, vec![(k("o/a"), "a3".into()), (k("o/b"), "b-again".into()), (k("o/c"), "c1".into())]);
    assert_eq!(now.revision, b);

    let future = RangeOptions { revision: b + 1, ..Default::default() };
    assert_eq!(store.range(&prefix, future).await, Err(StoreError::FutureRevision { requested: b + 1, current: b }));
    store.compact(old + 1).await.unwrap();
    let compacted = RangeOptions { revision: old, ..Default::default() };
    assert_eq!(
        store.range(&prefix, compacted).await,
        Err(StoreError::Compacted { requested: old, compacted: old + 1 })
    );
    assert!(store.range(&prefix, RangeOptions { revision: old + 1, ..Default::default() }).await.is_ok());
}

#[tokio::test]
async fn compaction_is_explicit_and_idempotent() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    for i in 0..10 {
        store.create(&k(&format!("c/{i}")), val("v")).await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    assert_eq!(store.compact(current + 1).await, Err(StoreError::FutureRevision { requested: current + 1, current }));
    store.compact(5).await.unwrap();
    store.compact(3).await.unwrap(); // older than the compacted revision: a no-op
    assert_eq!(store.compacted_revision().await.unwrap(), 5);
    // Another store on the same etcd finds the compacted revision without having compacted.
    let other = connect(etcd.urls()).await;
    assert_eq!(other.compacted_revision().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_key_have_exactly_one_winner() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let base = store.current_revision().await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create(&k("contended"), val(&i.to_string())).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(rev) => {
                winners += 1;
                assert_eq!(rev, base + 1);
            }
            Err(e) => assert_eq!(e, StoreError::CompareFailed { index: 0 }),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.current_revision().await.unwrap(), base + 1);
}

// ---------------------------------------------------------------------------------------------
// Watches (ported from redb_watch.rs).

#[tokio::test]
async fn delete_and_update_events_carry_the_previous_state() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let r1 = store.create(&k("svc/a"), val("v1")).await.unwrap();
    let r2 = store.update(&k("svc/a"), val("v2"), r1).await.unwrap();
    store.create(&k("pods/x"), val("elsewhere")).await.unwrap();
    let r4 = store.delete(&k("svc/a"), r2).await.unwrap();

    let mut watch = store.watch(&k("svc/"), 0).await.unwrap();
    let events = events_until(&mut watch, r4).await;
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind.clone(),
                e.kv.key.clone(),
                e.kv.value_str().to_owned(),
                e.kv.mod_revision,
                e.prev.as_ref().map(|p| p.value_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, k("svc/a"), "v1".into(), r1, None),
            (EventKind::Put, k("svc/a"), "v2".into(), r2, Some("v1".into())),
            (EventKind::Delete, k("svc/a"), "".into(), r4, Some("v2".into())),
        ]
    );
    let deleted_prev = events[2].prev.as_ref().unwrap();
    assert_eq!((deleted_prev.create_revision, deleted_prev.mod_revision), (r1, r2));
}

#[tokio::test]
async fn watch_continues_live_after_the_replay() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let r1 = store.create(&k("w/1"), val("1")).await.unwrap();
    let mut watch = store.watch(&k("w/"), 0).await.unwrap();
    let r2 = store.create(&k("w/2"), val("2")).await.unwrap();
    store.create(&k("x/3"), val("other prefix")).await.unwrap();
    let r4 = store.create(&k("w/4"), val("4")).await.unwrap();
    let events = events_until(&mut watch, r4).await;
    let keys: Vec<_> = events.iter().map(|e| (e.kv.key.clone(), e.kv.mod_revision)).collect();
    assert_eq!(keys, vec![(k("w/1"), r1), (k("w/2"), r2), (k("w/4"), r4)]);
}

/// 4 writers × 100 transactions while watchers start from the beginning (mid-stream) and from
/// a later revision, one of them slow. Each sees every revision after its start exactly once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_revision_once_in_order_under_concurrent_writes() {
    const WRITERS: usize = 4;
    const TXNS: usize = 100;
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let base = store.current_revision().await.unwrap();
    let total = base + (WRITERS * TXNS) as i64;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revision = 0;
                for i in 0..TXNS {
                    let key = k(&format!("load/{w}"));
                    // Alternate create/update/delete on one key per writer.
                    revision = match i % 3 {
                        0 => store.create(&key, val(&i.to_string())).await.unwrap(),
                        1 => store.update(&key, val(&i.to_string()), revision).await.unwrap(),
                        _ => store.delete(&key, revision).await.unwrap(),
                    };
                }
            })
        })
        .collect();

    while store.current_revision().await.unwrap() < base + (WRITERS * TXNS / 4) as i64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let from_start = store.watch(&k("load/"), base).await.unwrap();
    let middle = store.current_revision().await.unwrap();
    let from_middle = store.watch(&k("load/"), middle).await.unwrap();
    let slow = store.watch(&k("load/"), base).await.unwrap();

    let check = |mut stream: WatchStream, after: i64, slow: bool| {
        tokio::spawn(async move {
            let mut expected = after + 1;
            while expected <= total {
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
    let checks = [check(from_start, base, false), check(from_middle, middle, false), check(slow, base, true)];
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(store.current_revision().await.unwrap(), total);
    for check in checks {
        check.await.unwrap();
    }
}

#[tokio::test]
async fn watching_compacted_or_future_history_fails() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    let base = store.current_revision().await.unwrap();
    for i in 0..6 {
        store.create(&k(&format!("k/{i}")), val("v")).await.unwrap();
    }
    let (compacted, current) = (base + 4, base + 6);
    store.compact(compacted).await.unwrap();
    let prefix = k("k/");
    assert_eq!(
        store.watch(&prefix, compacted - 1).await.err(),
        Some(StoreError::Compacted { requested: compacted - 1, compacted })
    );
    assert_eq!(store.watch(&prefix, 0).await.err(), Some(StoreError::Compacted { requested: 0, compacted }));
    assert_eq!(
        store.watch(&prefix, current + 1).await.err(),
        Some(StoreError::FutureRevision { requested: current + 1, current })
    );

    let mut from_compacted = store.watch(&prefix, compacted).await.unwrap();
    let events = events_until(&mut from_compacted, current).await;
    assert_eq!(events.iter().map(|e| e.kv.mod_revision).collect::<Vec<_>>(), vec![current - 1, current]);
}

#[tokio::test]
async fn idle_watchers_get_progress_with_the_current_revision() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    store.create(&k("a"), val("1")).await.unwrap();
    let mut watch = store.watch(&k("b/"), 0).await.unwrap();
    let r2 = store.create(&k("c"), val("2")).await.unwrap();
    // No event matches "b/", but progress reports that r2 was covered.
    loop {
        match next_item(&mut watch).await {
            Some(Ok(WatchResponse::Progress { revision })) if revision == r2 => break,
            Some(Ok(WatchResponse::Progress { revision })) => assert!(revision < r2),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn watch_streams_end_when_the_store_is_dropped() {
    let etcd = Etcd::single().await;
    let store = connect(etcd.urls()).await;
    store.create(&k("a"), val("1")).await.unwrap();
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

// ---------------------------------------------------------------------------------------------
// Several stores, prefixes, endpoints.

#[tokio::test]
async fn two_stores_on_one_etcd_see_each_others_writes_through_watch() {
    let etcd = Etcd::single().await;
    let one = connect(etcd.urls()).await;
    let two = connect(etcd.urls()).await;
    let start = two.current_revision().await.unwrap();
    let mut through_two = two.watch(&k("services/"), start).await.unwrap();
    let mut through_one = one.watch(&k("services/"), start).await.unwrap();

    let created = one.create(&k("services/default/web"), val("v1")).await.unwrap();
    let updated = two.update(&k("services/default/web"), val("v2"), created).await.unwrap();
    // A stale write through the other store loses.
    assert_eq!(
        one.update(&k("services/default/web"), val("late"), created).await,
        Err(StoreError::CompareFailed { index: 0 })
    );
    for stream in [&mut through_one, &mut through_two] {
        let events = events_until(stream, updated).await;
        let seen: Vec<_> = events.iter().map(|e| (e.kv.value_str().to_owned(), e.kv.mod_revision)).collect();
        assert_eq!(seen, vec![("v1".to_owned(), created), ("v2".to_owned(), updated)]);
    }
    assert_eq!(one.get(&k("services/default/web")).await.unwrap().0.unwrap().value_str(), "v2");
}

#[tokio::test]
async fn the_etcd_prefix_replaces_registry() {
    let etcd = Etcd::single().await;
    let plain = connect(etcd.urls()).await;
    let prefixed = EtcdStore::connect(&etcd.urls(), "/skiff-b/", test_options()).await.unwrap();
    let rev = prefixed.create(&k("services/x"), val("b")).await.unwrap();

    // Stored at /skiff-b/services/x, invisible under /registry.
    let mut raw = etcd_client::Client::connect([etcd.url(0)], None).await.unwrap();
    let stored = raw.get("/skiff-b/services/x", None).await.unwrap();
    assert_eq!(stored.kvs().first().map(|kv| kv.value().to_vec()), Some(b"b".to_vec()));
    assert_eq!(plain.get(&k("services/x")).await.unwrap().0, None);
    assert_eq!(plain.range("/", RangeOptions::default()).await.unwrap().count, 0);

    // Read back through the prefixed store with the /registry key.
    let page = prefixed.range(&k("services/"), RangeOptions::default()).await.unwrap();
    assert_eq!(
        page.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect::<Vec<_>>(),
        vec![(k("services/x"), rev)]
    );
    let mut watch = prefixed.watch("/", 0).await.unwrap();
    assert_eq!(events_until(&mut watch, rev).await[0].kv.key, k("services/x"));
    assert!(EtcdStore::connect(&etcd.urls(), "registry", test_options()).await.is_err());
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_skipped() {
    let etcd = Etcd::single().await;
    let dead = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let store = connect(vec![dead.clone(), etcd.url(0)]).await;
    let r1 = store.create(&k("a"), val("1")).await.unwrap();
    let mut watch = store.watch(&k("a"), r1 - 1).await.unwrap();
    assert_eq!(events_until(&mut watch, r1).await.len(), 1);
    assert_eq!(store.range("/", RangeOptions::default()).await.unwrap().count, 1);

    // A TLS endpoint without a CA to verify it is refused with a clear message.
    match EtcdStore::connect(&["https://127.0.0.1:2379".to_owned()], DEFAULT_PREFIX, test_options()).await {
        Err(StoreError::Backend(why)) => assert!(why.contains("--etcd-cafile"), "{why}"),
        other => panic!("expected Backend, got {:?}", other.err()),
    }
    // With no live endpoint at all, connecting fails (quickly) as unavailable.
    let opts = EtcdOptions { retry_for: Duration::from_millis(300), ..test_options() };
    match EtcdStore::connect(&[dead], DEFAULT_PREFIX, opts).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn compactors_of_several_stores_compact_old_history_together() {
    let etcd = Etcd::single().await;
    let compaction = CompactionOptions { interval: Duration::from_millis(100), retention: Duration::from_millis(300) };
    let opts = EtcdOptions { compaction: Some(compaction), ..test_options() };
    let one = EtcdStore::connect(&etcd.urls(), DEFAULT_PREFIX, opts.clone()).await.unwrap();
    let two = EtcdStore::connect(&etcd.urls(), DEFAULT_PREFIX, opts).await.unwrap();
    let written = one.create(&k("x"), val("1")).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while two.compacted_revision().await.unwrap() < written {
        assert!(Instant::now() < deadline, "history was not compacted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The compactors coordinate through compact_rev_key: written once per claimed round.
    let mut raw = etcd_client::Client::connect([etcd.url(0)], None).await.unwrap();
    let claim = raw.get(COMPACT_REV_KEY, None).await.unwrap();
    let claim = &claim.kvs()[0];
    let claimed: i64 = claim.value_str().unwrap().parse().unwrap();
    assert!(claim.version() >= 2 && claimed >= written, "claim {claimed} (version {})", claim.version());
}

// ---------------------------------------------------------------------------------------------
// Failover in a 3-member cluster.

/// The leader — also the member both stores use first — is killed while 4 writers create keys
/// and a watcher follows. Writes in flight at the kill may fail (as Unavailable, never
/// otherwise); every acknowledged write is there afterwards, the writers carry on through the
/// other members, and the watcher resumes on another member without a gap or a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_leader() {
    const WRITERS: usize = 4;
    const CREATES: usize = 60;
    let mut etcd = Etcd::cluster(3).await;
    let leader = etcd.leader().await;
    let mut endpoints = etcd.urls();
    endpoints.rotate_left(leader); // the leader first: both stores are pinned to it
    let store = connect(endpoints.clone()).await;
    let watching = connect(endpoints).await;
    let base = store.current_revision().await.unwrap();
    let mut watch = watching.watch(&k("ack/"), base).await.unwrap();

    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, acked_so_far) = (Arc::clone(&store), Arc::clone(&acked_so_far));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..CREATES {
                    let key = k(&format!("ack/{w}/{i:03}"));
                    let outcome = store.create(&key, val("v")).await;
                    if outcome.is_ok() {
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes.push((key, outcome));
                }
                outcomes
            })
        })
        .collect();
    while acked_so_far.load(Ordering::Relaxed) < WRITERS * CREATES / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    etcd.kill(leader);

    let mut acked = Vec::new();
    let mut failed = 0;
    for writer in writers {
        let outcomes = writer.await.unwrap();
        assert!(outcomes.last().unwrap().1.is_ok(), "the writer did not recover: {:?}", outcomes.last());
        for (key, outcome) in outcomes {
            match outcome {
                Ok(revision) => acked.push((key, revision)),
                Err(StoreError::Unavailable(_)) => failed += 1,
                Err(other) => panic!("{key}: unexpected {other:?}"),
            }
        }
    }
    // Per writer: the write in flight on the killed leader, and the one sent to a follower
    // that still believed in that leader until the new one was elected (it times out).
    assert!(failed <= WRITERS * 4, "{failed} writes failed: more than those caught by the kill");

    // Every acknowledged write is stored, at its revision (read through a surviving member).
    let survivor = connect(vec![etcd.url((leader + 1) % 3)]).await;
    let stored = survivor.range(&k("ack/"), RangeOptions::default()).await.unwrap();
    let stored: std::collections::HashMap<_, _> =
        stored.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect();
    for (key, revision) in &acked {
        assert_eq!(stored.get(key), Some(revision), "acknowledged write {key} lost");
    }

    // The watcher saw every acknowledged write once, in revision order.
    let last = acked.iter().map(|(_, revision)| *revision).max().unwrap();
    let events = events_until(&mut watch, last).await;
    let revisions: Vec<_> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "watch out of order or duplicated: {revisions:?}");
    let watched: std::collections::HashSet<_> = events.iter().map(|e| e.kv.key.clone()).collect();
    for (key, _) in &acked {
        assert!(watched.contains(key), "the watch missed {key}");
    }
}

/// A member that is down from the start costs nothing; a watcher whose member dies while the
/// history it still needs is compacted ends with WatchLagged (it must relist), as in redb.
#[tokio::test]
async fn a_dead_member_is_skipped_and_a_watcher_cut_off_past_compaction_lags() {
    let mut etcd = Etcd::cluster(3).await;
    let watching = connect(etcd.urls()).await; // pinned to member 0
    let r1 = watching.create(&k("lag/1"), val("1")).await.unwrap();
    let mut watch = watching.watch(&k("lag/"), r1).await.unwrap();

    etcd.kill(0);
    let store = connect(etcd.urls()).await; // member 0 first, and dead
    let r2 = store.create(&k("lag/2"), val("2")).await.unwrap();
    let r3 = store.create(&k("lag/3"), val("3")).await.unwrap();
    assert_eq!(store.get(&k("lag/2")).await.unwrap().0.unwrap().mod_revision, r2);
    assert_eq!(store.range(&k("lag/"), RangeOptions::default()).await.unwrap().count, 3);
    store.compact(r3).await.unwrap();

    // The watcher had seen nothing after r1; resuming at r1 + 1 is no longer possible.
    loop {
        match next_item(&mut watch).await {
            Some(Ok(WatchResponse::Progress { .. })) => {}
            Some(Err(StoreError::WatchLagged)) => break,
            other => panic!("expected WatchLagged, got {other:?}"),
        }
    }
    assert_eq!(next_item(&mut watch).await, None);
}
