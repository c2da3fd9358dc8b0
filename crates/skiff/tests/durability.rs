//! Crash safety of the embedded store: `kill -9` the server in the middle of a burst of
//! creates, restart it on the same data directory, and check that
//! - every create that was acknowledged (201) is there, unchanged;
//! - resourceVersions continue upward (a new write is newer than anything acknowledged);
//! - ClusterIPs handed out before the crash are still owned (no double allocation);
//! - a watch resumes from an acknowledged resourceVersion (no 410) and replays history.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{HttpTarget, TestServer};

const NS: &str = "burst";
const WRITERS: usize = 4;

/// One acknowledged create.
#[derive(Debug, Clone)]
struct Ack {
    kind: &'static str,
    name: String,
    rv: u64,
    uid: String,
    cluster_ip: Option<String>,
}

fn rv_of(object: &Value) -> u64 {
    let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    rv.parse().unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not a revision: {object}"))
}

/// Writer `id` creates objects as fast as it can until `stop`; half the writers create
/// ConfigMaps, half Services (which also allocate a ClusterIP). Failed requests (the server is
/// gone) are simply not acknowledged.
fn write_burst(target: &HttpTarget, id: usize, stop: &AtomicBool, acks: &Mutex<Vec<Ack>>) {
    let kind = if id.is_multiple_of(2) { "configmaps" } else { "services" };
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let name = format!("w{id}-{i}");
        let body = if kind == "configmaps" {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}})
        } else {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
        };
        let Ok(reply) = target.request("POST", &format!("/api/v1/namespaces/{NS}/{kind}")).json(&body).try_send()
        else {
            continue;
        };
        if reply.code != 201 {
            continue;
        }
        let object = reply.json();
        let ack = Ack {
            kind,
            name,
            rv: rv_of(&object),
            uid: object["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
            cluster_ip: object["spec"]["clusterIP"].as_str().map(str::to_owned),
        };
        acks.lock().expect("acks lock").push(ack);
    }
}

fn list(s: &TestServer, kind: &str) -> (u64, BTreeMap<String, Value>) {
    let list = s.get_json(&format!("/api/v1/namespaces/{NS}/{kind}"));
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let by_name = items.into_iter().map(|o| (o["metadata"]["name"].as_str().unwrap_or_default().to_owned(), o));
    (rv_of(&list), by_name.collect())
}

#[test]
fn acknowledged_creates_survive_kill_9_and_watches_resume() {
    let mut s = TestServer::start();
    let created = s.http("POST", "/api/v1/namespaces").json(&json!({"metadata": {"name": NS}})).send();
    assert_eq!(created.code, 201, "{}", created.body);
    let start_rv = list(&s, "configmaps").0;

    // The burst, killed after ~1.5 s (and at least a few dozen acknowledgements).
    let target = s.target();
    let stop = AtomicBool::new(false);
    let acks = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for id in 0..WRITERS {
            let (target, stop, acks) = (&target, &stop, &acks);
            scope.spawn(move || write_burst(target, id, stop, acks));
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(15);
        while started.elapsed() < Duration::from_millis(1500) || acks.lock().expect("acks lock").len() < 40 {
            assert!(Instant::now() < deadline, "the burst got too few creates acknowledged");
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill9();
        stop.store(true, Ordering::Relaxed);
    });
    let acks = acks.into_inner().expect("acks lock");
    let max_ack = acks.iter().map(|a| a.rv).max().expect("at least one ack");

    s.spawn();

    // Every acknowledged object is there, unchanged.
    let (_, configmaps) = list(&s, "configmaps");
    let (_, services) = list(&s, "services");
    let mut missing = Vec::new();
    for ack in &acks {
        let stored = if ack.kind == "configmaps" { configmaps.get(&ack.name) } else { services.get(&ack.name) };
        match stored {
            None => missing.push(format!("{}/{}", ack.kind, ack.name)),
            Some(object) => {
                assert_eq!(rv_of(object), ack.rv, "{}/{} changed across the crash", ack.kind, ack.name);
                assert_eq!(object["metadata"]["uid"], ack.uid.as_str(), "{}", ack.name);
                if let Some(ip) = &ack.cluster_ip {
                    assert_eq!(object["spec"]["clusterIP"], ip.as_str(), "{} lost its ClusterIP", ack.name);
                }
            }
        }
    }
    assert!(missing.is_empty(), "{} of {} acknowledged creates lost: {missing:?}", missing.len(), acks.len());
    eprintln!(
        "{} creates acknowledged before the kill (newest at {max_ack}); {} objects after the restart",
        acks.len(),
        configmaps.len() + services.len()
    );

    // No ClusterIP is owned twice, and a new Service does not get one of them.
    let mut ips = BTreeSet::new();
    for svc in services.values() {
        let ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP").to_owned();
        assert!(ips.insert(ip.clone()), "ClusterIP {ip} allocated twice");
    }
    let fresh = s
        .http("POST", &format!("/api/v1/namespaces/{NS}/services"))
        .json(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "after-restart"},
                      "spec": {"ports": [{"port": 80}]}}))
        .send();
    assert_eq!(fresh.code, 201, "{}", fresh.body);
    let fresh = fresh.json();
    let fresh_ip = fresh["spec"]["clusterIP"].as_str().expect("clusterIP");
    assert!(!ips.contains(fresh_ip), "ClusterIP {fresh_ip} handed out again after the restart");

    // resourceVersions continue upward.
    assert!(rv_of(&fresh) > max_ack, "new resourceVersion {} is not above acknowledged {max_ack}", rv_of(&fresh));
    let everything_rv =
        configmaps.values().chain(services.values()).map(rv_of).max().expect("objects after the restart");
    assert!(rv_of(&fresh) > everything_rv);

    // A watch from the newest acknowledged resourceVersion resumes (no 410) and sees new writes.
    let mut watch = s.target().stream(&format!(
        "/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={max_ack}&allowWatchBookmarks=true"
    ));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-restart"}});
    let created = s.http("POST", &format!("/api/v1/namespaces/{NS}/configmaps")).json(&cm).send();
    assert_eq!(created.code, 201, "{}", created.body);
    let line = watch.wait_for(Duration::from_secs(15), |l| l.contains("\"after-restart\"") || l.contains("ERROR"));
    let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {line}"));
    assert_eq!(event["type"], "ADDED", "{line}");
    for earlier in watch.seen() {
        assert!(!earlier.contains("\"ERROR\""), "watch from {max_ack} failed: {earlier}");
    }

    // History survived too: a watch from before the burst replays every acknowledged
    // ConfigMap create, in resourceVersion order.
    let acked_configmaps: BTreeMap<u64, &str> =
        acks.iter().filter(|a| a.kind == "configmaps").map(|a| (a.rv, a.name.as_str())).collect();
    let mut replay =
        s.target().stream(&format!("/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={start_rv}"));
    replay.wait_for(Duration::from_secs(15), |l| l.contains("\"after-restart\"") || l.contains("\"ERROR\""));
    let mut replayed = Vec::new();
    for line in replay.seen() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(event["type"], "ADDED", "{line}");
        replayed.push((rv_of(&event["object"]), event["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned()));
    }
    assert!(replayed.windows(2).all(|w| w[0].0 < w[1].0), "replay out of order: {replayed:?}");
    let replayed: BTreeMap<u64, String> = replayed.into_iter().collect();
    for (rv, name) in &acked_configmaps {
        assert_eq!(replayed.get(rv).map(String::as_str), Some(*name), "acknowledged create at {rv} not replayed");
    }
}
