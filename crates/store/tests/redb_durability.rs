//! Durability and throughput of the redb store.
//!
//! The crash test re-runs this test binary as a child process (selected by an environment
//! variable) that writes in a loop and prints every acknowledged revision; the parent kills it
//! with SIGKILL mid-write, reopens the file and checks that every acknowledged write is there.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open, val};
use skiff_store::{RangeOptions, Store, StoreExt};

/// Set (to the store directory) in the child process of the crash test.
const CHILD_DIR_ENV: &str = "SKIFF_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_writes_survive_kill_9";
/// The parent kills the child after this many acknowledgements.
const ACKS_BEFORE_KILL: usize = 300;

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        return crash_child(dir.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // Read the child's output on a thread, so a silent child fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks: Vec<(String, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let parse = |line: &str| {
        let mut words = line.strip_prefix("ack ")?.split(' ');
        Some((words.next()?.to_owned(), words.next()?.parse::<i64>().ok()?))
    };
    while acks.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => acks.extend(parse(&line)),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging after {} writes: {e}", acks.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements printed before the kill are still in the pipe.
    reader.join().unwrap();
    acks.extend(lines.try_iter().filter_map(|line| parse(&line)));
    let max_acked = acks.iter().map(|(_, rev)| *rev).max().unwrap();
    println!("child acknowledged {} writes, up to revision {max_acked}, before SIGKILL", acks.len());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = open(dir.path());
        for (key, rev) in &acks {
            let (kv, _) = store.get(key).await.unwrap();
            assert_eq!(kv.map(|kv| kv.mod_revision), Some(*rev), "acknowledged {key} lost");
        }
        assert!(store.current_revision().await.unwrap() >= max_acked);
        let next = store.create("/after-crash", val("x")).await.unwrap();
        assert!(next > max_acked, "revision {next} reused (acknowledged up to {max_acked})");
    });
}

/// The child: 8 concurrent writers creating keys until killed (bounded to 60 s regardless).
fn crash_child(dir: std::path::PathBuf) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = open(&dir);
        let stop = Instant::now() + Duration::from_secs(60);
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut i = 0;
                    while Instant::now() < stop {
                        let key = format!("/crash/{w}/{i}");
                        let rev = store.create(&key, val("acknowledged")).await.unwrap();
                        println!("ack {key} {rev}");
                        i += 1;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

/// Group-commit throughput: 10,000 creates of 1 KiB values from 32 concurrent tasks.
/// Run with `cargo test -p skiff-store --release --test redb_durability -- --ignored --nocapture`.
#[ignore = "measurement, not a check; run by hand"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_throughput() {
    const TOTAL: usize = 10_000;
    const TASKS: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let value = val(&"x".repeat(1024));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, value) = (Arc::clone(&store), value.clone());
            tokio::spawn(async move {
                for i in (t..TOTAL).step_by(TASKS) {
                    store.create(&format!("/registry/services/specs/default/svc-{i:05}"), value.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{TOTAL} creates from {TASKS} tasks in {:.2} s: {:.0} creates/s",
        elapsed.as_secs_f64(),
        TOTAL as f64 / elapsed.as_secs_f64()
    );
    let all = store.range("/registry/services/", RangeOptions { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(all.count, TOTAL as u64);
}
