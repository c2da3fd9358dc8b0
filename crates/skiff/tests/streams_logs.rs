//! `kubectl logs` through the API server to a node's kubelet API: tail, timestamps, previous,
//! container choice, follow until the log ends, and the API server's validation.

mod common;
mod streams_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use streams_support::Cluster;

fn cluster() -> Cluster {
    let c = Cluster::start();
    c.pod("p", &["main"], Some("node-1"), &[]);
    c.pod("multi", &["a", "b"], Some("node-1"), &[]);
    let rt = &c.kubelet.runtime;
    for line in ["one", "two", "three"] {
        rt.log("default", "p", "main", line);
    }
    rt.log("default", "multi", "a", "from a");
    rt.log("default", "multi", "b", "from b");
    rt.set_previous("default", "p", "main", &["before the restart"]);
    c
}

#[test]
fn logs_with_options() {
    let c = cluster();
    let k = |args: &[&str]| c.server.kubectl_ok(args);
    assert_eq!(k(&["logs", "p"]), "one\ntwo\nthree\n");
    assert_eq!(k(&["logs", "p", "--tail=2"]), "two\nthree\n");
    assert_eq!(k(&["logs", "p", "--limit-bytes=6"]), "one\ntw");
    assert_eq!(k(&["logs", "p", "--previous"]), "before the restart\n");
    assert_eq!(k(&["logs", "p", "--since=1h"]), "one\ntwo\nthree\n");
    assert_eq!(k(&["logs", "multi", "-c", "b"]), "from b\n");
    assert_eq!(k(&["logs", "pod/multi", "--container=a"]), "from a\n");

    let stamped = k(&["logs", "p", "--timestamps", "--tail=1"]);
    let (stamp, line) = stamped.trim_end().split_once(' ').expect("a timestamp and the line");
    assert_eq!(line, "three");
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp:?}");

    let stderr = c.server.kubectl_err(&["logs", "multi", "-c", "b", "--previous"]);
    assert!(stderr.contains("previous terminated container \"b\" in pod \"multi\" not found"), "{stderr}");
}

#[test]
fn followed_logs_stream_until_the_log_ends() {
    let c = cluster();
    let mut child = c
        .server
        .kubectl_cmd()
        .args(["logs", "-f", "p"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a log line").expect("reading kubectl");
    assert_eq!([next(), next(), next()], ["one", "two", "three"]);
    // A line written while kubectl follows arrives without reconnecting.
    c.kubelet.runtime.log("default", "p", "main", "four");
    assert_eq!(next(), "four");
    c.kubelet.runtime.end_log("default", "p", "main");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "kubectl logs -f did not end with the log");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

#[test]
fn log_requests_are_validated_by_the_api_server() {
    let c = cluster();
    c.pod("unbound", &["main"], None, &[]);
    let log = |pod: &str, query: &str| {
        c.server.http("GET", &format!("/api/v1/namespaces/default/pods/{pod}/log{query}")).send()
    };

    let reply = log("p", "?tailLines=-1");
    assert_eq!(reply.code, 422, "{}", reply.body);
    assert_eq!(
        reply.json()["message"],
        "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(reply.json()["details"]["kind"], "PodLogOptions");
    assert_eq!(log("p", "?limitBytes=0").code, 422);
    assert_eq!(log("p", "?sinceSeconds=0").code, 422);
    assert_eq!(log("p", "?sinceSeconds=10&sinceTime=2024-01-01T00:00:00Z").code, 422);
    let reply = log("p", "?tailLines=abc");
    assert_eq!(reply.code, 400);
    assert_eq!(reply.json()["message"], "strconv.ParseInt: parsing \"abc\": invalid syntax");

    let reply = log("multi", "");
    assert_eq!(reply.code, 400);
    assert_eq!(reply.json()["message"], "a container name must be specified for pod multi, choose one of: [a b]");
    let reply = log("multi", "?container=zz");
    assert_eq!((reply.code, reply.json()["message"].as_str()), (400, Some("container zz is not valid for pod multi")));
    assert_eq!(log("nosuch", "").code, 404);

    // A pod without a node has an empty log, as upstream answers.
    let reply = log("unbound", "");
    assert_eq!((reply.code, reply.body.as_str()), (200, ""));
    // The plain GET the kubelet answers, with the query re-encoded for it.
    let reply = log("p", "?tailLines=1&limitBytes=3");
    assert_eq!((reply.code, reply.body.as_str()), (200, "thr"));
}
