//! The ReplicaSet and Deployment controllers running as `skiff controllers` against
//! `skiff server`, driven and checked with kubectl as a user would.
//!
//! Pods do not run here: as in upstream's controller integration tests, the tests make
//! pods Ready (with a unique pod IP) or not-ready through the status subresource, playing
//! the node agent. Pods have no `nodeName`, so a deleted pod disappears at once.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Controllers, TestServer};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A server and the controllers, with metrics on a free port.
struct Cluster {
    server: TestServer,
    metrics_port: u16,
    _controllers: Controllers,
}

/// Distinct pod IPs across the whole test binary.
static NEXT_IP: AtomicU32 = AtomicU32::new(1);

fn rfc3339_now() -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", k8s_openapi::jiff::Timestamp::now())
        .expect("formatting the time")
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn image_of(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

fn count(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

impl Cluster {
    fn start() -> Cluster {
        let server = TestServer::start();
        let controllers = server.start_controllers(&["--metrics-listen", "127.0.0.1:0"]);
        let metrics_port = controllers.metrics_addr().port();
        Cluster { server, metrics_port, _controllers: controllers }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.server.kubectl_ok(args)
    }

    fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.kubectl(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn eventually<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        self.server.eventually(what, TIMEOUT, check)
    }

    /// Pods matching `selector` that are not terminating.
    fn pods(&self, selector: &str) -> Vec<Value> {
        let list = self.get_json(&["pods", "-l", selector]);
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }

    fn pod_names(&self, selector: &str) -> BTreeSet<String> {
        self.pods(selector).iter().map(name_of).collect()
    }

    /// Plays the node agent: the pod runs, is Ready since now, and has a fresh IP.
    fn mark_ready(&self, pod: &str) {
        let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
        let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339_now()}],
        }});
        self.kubectl(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    }

    /// The pod's readiness check now fails.
    fn mark_not_ready(&self, pod: &str) {
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": rfc3339_now()}],
        }});
        self.kubectl(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    }

    /// Marks every not-ready pod of `selector` ready; returns how many it marked.
    fn mark_all_ready(&self, selector: &str) -> usize {
        let waiting: Vec<String> = self.pods(selector).iter().filter(|p| !is_ready(p)).map(name_of).collect();
        for pod in &waiting {
            // A pod may vanish between listing and patching; that is fine here.
            let _ = self.server.kubectl(&[
                "patch",
                "pod",
                pod,
                "--subresource=status",
                "--type=merge",
                "-p",
                &json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339_now()}]}}).to_string(),
            ]);
        }
        waiting.len()
    }

    /// Owner references of a pod, as (kind, name, controller) triples.
    fn owners(&self, pod: &str) -> Vec<(String, String, bool)> {
        let pod = self.get_json(&["pod", pod]);
        pod["metadata"]["ownerReferences"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .map(|r| {
                        (
                            r["kind"].as_str().unwrap_or_default().to_string(),
                            r["name"].as_str().unwrap_or_default().to_string(),
                            r["controller"] == true,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reasons and messages of the events about `name`.
    fn events_about(&self, name: &str) -> Vec<(String, String)> {
        let events = self.get_json(&["events"]);
        events["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    fn replicasets(&self, selector: &str) -> Vec<Value> {
        self.get_json(&["rs", "-l", selector])["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the Deployment's rollout is complete by its status.
    fn wait_rolled_out(&self, name: &str, replicas: i64) -> Value {
        self.eventually(&format!("deployment {name} to finish rolling out"), || {
            let d = self.get_json(&["deployment", name]);
            let s = &d["status"];
            let done = count(&s["observedGeneration"]) >= count(&d["metadata"]["generation"])
                && count(&s["updatedReplicas"]) == replicas
                && count(&s["replicas"]) == replicas
                && count(&s["availableReplicas"]) == replicas;
            done.then_some(d)
        })
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("metrics response");
        text
    }
}

fn replicaset_manifest(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
        tier: front
      annotations:
        team: blue
    spec:
      containers:
      - name: web
        image: nginx:1.25
"#
    )
}

fn deployment_manifest(name: &str, replicas: u32, strategy: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  strategy:
{strategy}
{extra_spec}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: web
        image: nginx:1.25
"#
    )
}

#[test]
fn replicaset_creates_scales_and_reports_status() {
    let c = Cluster::start();
    c.server.apply(&replicaset_manifest(3));
    let pods = c.eventually("3 pods", || {
        let pods = c.pods("app=web");
        (pods.len() == 3).then_some(pods)
    });
    let rs = c.get_json(&["rs", "web"]);
    for pod in &pods {
        let name = name_of(pod);
        let suffix = name.strip_prefix("web-").unwrap_or_else(|| panic!("{name} is not named after the ReplicaSet"));
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(pod["metadata"]["labels"]["tier"], "front");
        assert_eq!(pod["metadata"]["annotations"]["team"], "blue");
        assert_eq!(image_of(pod), "nginx:1.25");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        assert_eq!(owner["name"], "web");
        assert_eq!(owner["uid"], rs["metadata"]["uid"]);
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
    }
    c.eventually("status with 3 replicas, none ready", || {
        let s = c.get_json(&["rs", "web"])["status"].clone();
        (count(&s["replicas"]) == 3 && count(&s["fullyLabeledReplicas"]) == 3 && count(&s["readyReplicas"]) == 0)
            .then_some(())
    });

    assert_eq!(c.mark_all_ready("app=web"), 3);
    c.eventually("3 ready and available", || {
        let rs = c.get_json(&["rs", "web"]);
        let s = &rs["status"];
        (count(&s["readyReplicas"]) == 3
            && count(&s["availableReplicas"]) == 3
            && s["observedGeneration"] == rs["metadata"]["generation"])
            .then_some(())
    });
    let ready_before: BTreeSet<String> = c.pod_names("app=web");

    // Up to 5: two new, not-ready pods. Back to 3: those two are the ones to go.
    c.kubectl(&["scale", "rs", "web", "--replicas=5"]);
    c.eventually("5 pods", || (c.pods("app=web").len() == 5).then_some(()));
    c.kubectl(&["scale", "rs", "web", "--replicas=3"]);
    let after = c.eventually("3 pods again", || {
        let names = c.pod_names("app=web");
        (names.len() == 3).then_some(names)
    });
    assert_eq!(after, ready_before, "not-ready pods are deleted before ready ones");

    // One of the three turns not-ready; scaling down by one removes exactly that one.
    let sick = after.iter().next().cloned().expect("a pod");
    c.mark_not_ready(&sick);
    c.eventually("the ReplicaSet to see the pod as not ready", || {
        (count(&c.get_json(&["rs", "web"])["status"]["readyReplicas"]) == 2).then_some(())
    });
    c.kubectl(&["scale", "rs", "web", "--replicas=2"]);
    let left = c.eventually("2 pods", || {
        let names = c.pod_names("app=web");
        (names.len() == 2).then_some(names)
    });
    assert!(!left.contains(&sick), "the not-ready pod {sick} should have been deleted first: {left:?}");

    c.kubectl(&["scale", "rs", "web", "--replicas=0"]);
    c.eventually("no pods", || c.pods("app=web").is_empty().then_some(()));
    c.eventually("status replicas 0", || {
        let s = c.get_json(&["rs", "web"])["status"].clone();
        (count(&s["replicas"]) == 0 && count(&s["readyReplicas"]) == 0).then_some(())
    });

    let events = c.events_about("web");
    assert!(events.iter().any(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: web-")), "{events:?}");
    assert!(events.iter().any(|(r, m)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: web-")), "{events:?}");
    let metrics = c.metrics();
    assert!(metrics.contains("skiff_syncs_total{controller=\"replicaset\",result=\"success\"}"), "{metrics}");
    assert!(metrics.contains("skiff_replicaset_pods_created_total 5"), "{metrics}");
}

#[test]
fn deleted_pod_is_replaced_with_a_new_name() {
    let c = Cluster::start();
    c.server.apply(&replicaset_manifest(2));
    let before = c.eventually("2 pods", || {
        let names = c.pod_names("app=web");
        (names.len() == 2).then_some(names)
    });
    let victim = before.iter().next().cloned().expect("a pod");
    c.kubectl(&["delete", "pod", &victim]);
    let after = c.eventually("a replacement pod", || {
        let names = c.pod_names("app=web");
        (names.len() == 2 && !names.contains(&victim)).then_some(names)
    });
    let replacement: Vec<&String> = after.difference(&before).collect();
    assert_eq!(replacement.len(), 1, "{before:?} -> {after:?}");
    assert!(replacement[0].starts_with("web-"));
    assert!(!c.pods("app=web").is_empty());
    // Exactly three pods were ever created: no double creation while the cache caught up.
    let created = |c: &Cluster| c.events_about("web").into_iter().filter(|(r, _)| r == "SuccessfulCreate").count();
    c.eventually("3 creation events", || (created(&c) >= 3).then_some(()));
    assert_eq!(created(&c), 3, "{:?}", c.events_about("web"));
    assert_eq!(c.pods("app=web").len(), 2);
}

#[test]
fn terminating_pods_do_not_count_and_availability_waits_for_min_ready_seconds() {
    let c = Cluster::start();
    // Pods bound to a node terminate gracefully: deleted, they linger with a deletionTimestamp.
    c.server.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n");
    let manifest = replicaset_manifest(2)
        .replace("spec:\n      containers:", "spec:\n      nodeName: n1\n      containers:")
        .replace("  replicas: 2\n", "  replicas: 2\n  minReadySeconds: 3\n");
    c.server.apply(&manifest);
    let first = c.eventually("2 pods", || {
        let names = c.pod_names("app=web");
        (names.len() == 2).then_some(names)
    });
    c.mark_all_ready("app=web");
    // Ready at once, available only after minReadySeconds.
    c.eventually("2 ready, none available yet", || {
        let s = c.get_json(&["rs", "web"])["status"].clone();
        (count(&s["readyReplicas"]) == 2 && count(&s["availableReplicas"]) == 0).then_some(())
    });
    c.eventually("2 available", || {
        (count(&c.get_json(&["rs", "web"])["status"]["availableReplicas"]) == 2).then_some(())
    });

    let victim = first.iter().next().cloned().expect("a pod");
    c.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    c.eventually("a replacement next to the terminating pod", || {
        let live = c.pod_names("app=web");
        (live.len() == 2 && !live.contains(&victim)).then_some(())
    });
    let terminating = c.get_json(&["pod", &victim]);
    assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
    c.eventually("status counting only live pods", || {
        let s = c.get_json(&["rs", "web"])["status"].clone();
        (count(&s["replicas"]) == 2 && count(&s["readyReplicas"]) == 1).then_some(())
    });
}

#[test]
fn adopts_orphans_releases_relabelled_pods_and_leaves_others_alone() {
    let c = Cluster::start();
    let pod = |name: &str, owner: Option<(&str, &str)>| {
        let mut meta = json!({"name": name, "labels": {"app": "web"}});
        if let Some((kind_name, uid)) = owner {
            meta["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": kind_name, "uid": uid, "controller": true}]);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
               "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}})
        .to_string()
    };
    // A pod controlled by something else (a real object, so nothing collects it).
    c.server.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other-owner\n");
    let owner_uid =
        c.get_json(&["configmap", "other-owner"])["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    c.server.apply(&pod("foreign", Some(("other-owner", &owner_uid))));
    c.server.apply(&pod("orphan", None));

    c.server.apply(&replicaset_manifest(2));
    let rs_uid = c.get_json(&["rs", "web"])["metadata"]["uid"].clone();
    c.eventually("the orphan to be adopted", || {
        let orphan = c.get_json(&["pod", "orphan"]);
        let refs = orphan["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        refs.iter()
            .any(|r| r["uid"] == rs_uid && r["controller"] == true && r["blockOwnerDeletion"] == true)
            .then_some(())
    });
    let owned = c.eventually("2 owned pods", || {
        let owned: Vec<String> = c
            .pods("app=web")
            .iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == rs_uid)
            .map(name_of)
            .collect();
        (owned.len() == 2).then_some(owned)
    });
    assert!(owned.contains(&"orphan".to_string()), "{owned:?}");
    assert_eq!(c.owners("foreign"), vec![("ConfigMap".to_string(), "other-owner".to_string(), true)]);
    assert_eq!(c.pods("app=web").len(), 3, "the adopted orphan counts; the foreign pod is ignored");
    assert_eq!(count(&c.get_json(&["rs", "web"])["status"]["replicas"]), 2);

    // Relabelled out of the selector: released, and replaced.
    c.kubectl(&["label", "pod", "orphan", "app=other", "--overwrite"]);
    c.eventually("the relabelled pod to be released", || c.owners("orphan").is_empty().then_some(()));
    c.eventually("a replacement", || {
        let owned = c.pods("app=web").iter().filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == rs_uid).count();
        (owned == 2).then_some(())
    });

    // Back in: adopted again, which makes one too many; one pod goes.
    c.kubectl(&["label", "pod", "orphan", "app=web", "--overwrite"]);
    c.eventually("back to 2 owned pods after re-adoption", || {
        let pods = c.pods("app=web");
        let owned = pods.iter().filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == rs_uid).count();
        let orphans = pods.iter().filter(|p| p["metadata"]["ownerReferences"].is_null()).count();
        (owned == 2 && orphans == 0).then_some(())
    });
    assert_eq!(c.owners("foreign"), vec![("ConfigMap".to_string(), "other-owner".to_string(), true)]);
}

/// Rolls `replicas` pods from nginx:1.25 to nginx:1.26, making new pods ready one at a
/// time, and checks at every step that at most `replicas + surge` pods exist and at least
/// `replicas - unavailable` are ready.
fn check_rolling_update(replicas: u32, max_surge: &str, max_unavailable: &str, surge: usize, unavailable: usize) {
    let c = Cluster::start();
    let strategy = format!(
        "    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: {max_surge}\n      maxUnavailable: {max_unavailable}"
    );
    c.server.apply(&deployment_manifest("web", replicas, &strategy, ""));
    let replicas_n = replicas as usize;
    c.eventually("the first pods", || (c.pods("app=web").len() == replicas_n).then_some(()));
    c.mark_all_ready("app=web");
    c.wait_rolled_out("web", i64::from(replicas));

    c.kubectl(&["set", "image", "deployment/web", "web=nginx:1.26"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut most_pods, mut fewest_ready, mut steps) = (0, usize::MAX, 0);
    loop {
        let pods = c.pods("app=web");
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        most_pods = most_pods.max(pods.len());
        fewest_ready = fewest_ready.min(ready);
        assert!(pods.len() <= replicas_n + surge, "{} pods exist, more than {replicas} + {surge}", pods.len());
        assert!(
            ready + unavailable >= replicas_n,
            "only {ready} pods are ready, fewer than {replicas} - {unavailable}"
        );
        let done = pods.len() == replicas_n && pods.iter().all(|p| image_of(p) == "nginx:1.26" && is_ready(p));
        if done {
            break;
        }
        // The node agent: one new pod becomes ready per step.
        if let Some(next) = pods.iter().find(|p| image_of(p) == "nginx:1.26" && !is_ready(p)) {
            c.mark_ready(&name_of(next));
            steps += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(Instant::now() < deadline, "rollout did not finish; pods: {pods:?}");
    }
    assert_eq!(steps, replicas_n, "every new pod was made ready exactly once");
    assert!(most_pods > replicas_n || unavailable > 0, "the rollout used its surge");
    assert!(fewest_ready + unavailable >= replicas_n);
    let d = c.wait_rolled_out("web", i64::from(replicas));
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
    let rss = c.replicasets("app=web");
    assert_eq!(rss.len(), 2, "{rss:?}");
    let old =
        rss.iter().find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25").expect("old rs");
    assert_eq!(count(&old["spec"]["replicas"]), 0);
}

#[test]
fn rolling_update_stays_within_surge_and_unavailability() {
    // 25% of 4: surge rounds up to 1, unavailable rounds down to 1.
    check_rolling_update(4, "25%", "25%", 1, 1);
}

#[test]
fn rolling_update_without_unavailability_keeps_every_pod_ready() {
    // 50% of 3: surge rounds up to 2; unavailable 0.
    check_rolling_update(3, "50%", "0", 2, 0);
}

#[test]
fn recreate_removes_old_pods_before_starting_new_ones() {
    let c = Cluster::start();
    c.server.apply(&deployment_manifest("web", 3, "    type: Recreate", ""));
    c.eventually("3 pods", || (c.pods("app=web").len() == 3).then_some(()));
    c.mark_all_ready("app=web");
    c.wait_rolled_out("web", 3);
    c.kubectl(&["set", "image", "deployment/web", "web=nginx:1.26"]);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pods = c.pods("app=web");
        let images: BTreeSet<String> = pods.iter().map(image_of).collect();
        assert!(images.len() <= 1, "old and new pods run together: {images:?}");
        if pods.len() == 3 && images.contains("nginx:1.26") {
            break;
        }
        assert!(Instant::now() < deadline, "the new pods did not come: {images:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.mark_all_ready("app=web");
    c.wait_rolled_out("web", 3);
    let events = c.events_about("web");
    let scaled: Vec<&String> = events.iter().filter(|(r, _)| r == "ScalingReplicaSet").map(|(_, m)| m).collect();
    assert!(
        scaled.iter().any(|m| m.starts_with("Scaled down replica set web-") && m.ends_with("from 3 to 0")),
        "{scaled:?}"
    );
    assert!(
        scaled.iter().filter(|m| m.starts_with("Scaled up replica set web-") && m.ends_with("from 0 to 3")).count()
            == 2,
        "{scaled:?}"
    );
}

/// Runs `body` while a background "node agent" keeps every pod of `selector` ready.
fn with_ready_pods<T>(c: &Cluster, selector: &str, body: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                c.mark_all_ready(selector);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let result = body();
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn history(c: &Cluster, name: &str) -> Vec<(String, String)> {
    c.kubectl(&["rollout", "history", &format!("deployment/{name}")])
        .lines()
        .filter(|l| l.chars().next().is_some_and(|ch| ch.is_ascii_digit()))
        .map(|l| {
            let mut parts = l.splitn(2, char::is_whitespace);
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").trim().to_string())
        })
        .collect()
}

#[test]
fn rollout_status_history_undo_and_restart() {
    let c = Cluster::start();
    // `kubectl create` leaves the Deployment without annotations: `rollout undo` then
    // depends on the controller having recorded the revision on it.
    c.kubectl(&["create", "deployment", "web", "--image=nginx:1.1", "--replicas=2"]);
    with_ready_pods(&c, "app=web", || {
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");

        c.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.2"]);
        c.kubectl(&["annotate", "deployment/web", "kubernetes.io/change-cause=bump to 1.2"]);
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        c.eventually("the change cause on revision 2", || {
            let h = history(&c, "web");
            (h == [("1".to_string(), "<none>".to_string()), ("2".to_string(), "bump to 1.2".to_string())]).then_some(())
        });
        let rev1 = c.kubectl(&["rollout", "history", "deployment/web", "--revision=1"]);
        assert!(rev1.contains("nginx:1.1"), "{rev1}");

        let out = c.kubectl(&["rollout", "undo", "deployment/web"]);
        assert!(out.contains("rolled back"), "{out}");
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let d = c.wait_rolled_out("web", 2);
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.1");
        assert!(c.pods("app=web").iter().all(|p| image_of(p) == "nginx:1.1"));
        // The 1.1 ReplicaSet came back as revision 3 and remembers it was revision 1.
        let back = c
            .replicasets("app=web")
            .into_iter()
            .find(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.1")
            .expect("the 1.1 replica set");
        assert_eq!(back["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
        assert_eq!(back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
        c.eventually("history 2, 3", || {
            let revisions: Vec<String> = history(&c, "web").into_iter().map(|(r, _)| r).collect();
            (revisions == ["2", "3"]).then_some(())
        });

        c.kubectl(&["rollout", "restart", "deployment/web"]);
        let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let d = c.wait_rolled_out("web", 2);
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "4");
        let pods = c.pods("app=web");
        assert_eq!(pods.len(), 2);
        assert!(
            pods.iter().all(|p| p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string()),
            "{pods:?}"
        );
        assert_eq!(c.replicasets("app=web").len(), 3);
    });
}

#[test]
fn conditions_follow_availability_and_the_progress_deadline() {
    let c = Cluster::start();
    let extra = "  progressDeadlineSeconds: 3";
    c.server.apply(&deployment_manifest("slow", 2, "    type: RollingUpdate", extra));
    let d = c.eventually("Available=False while no pod is ready", || {
        let d = c.get_json(&["deployment", "slow"]);
        let available = condition(&d, "Available")?;
        (available["status"] == "False" && available["reason"] == "MinimumReplicasUnavailable").then_some(d)
    });
    let progressing = condition(&d, "Progressing").expect("Progressing");
    assert_eq!(progressing["status"], "True");
    assert!(
        ["NewReplicaSetCreated", "ReplicaSetUpdated", "FoundNewReplicaSet"]
            .contains(&progressing["reason"].as_str().unwrap_or("")),
        "{progressing}"
    );

    c.eventually("ProgressDeadlineExceeded", || {
        let d = c.get_json(&["deployment", "slow"]);
        let p = condition(&d, "Progressing")?;
        (p["status"] == "False" && p["reason"] == "ProgressDeadlineExceeded").then_some(())
    });
    let err = c.server.kubectl_err(&["rollout", "status", "deployment/slow", "--timeout=20s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");

    c.mark_all_ready("app=slow");
    let d = c.eventually("Available=True and NewReplicaSetAvailable", || {
        let d = c.get_json(&["deployment", "slow"]);
        let available = condition(&d, "Available")?;
        let progressing = condition(&d, "Progressing")?;
        (available["status"] == "True"
            && available["reason"] == "MinimumReplicasAvailable"
            && progressing["status"] == "True"
            && progressing["reason"] == "NewReplicaSetAvailable")
            .then_some(d)
    });
    let rs = c.replicasets("app=slow").pop().expect("a replica set");
    let rs_name = name_of(&rs);
    assert_eq!(
        condition(&d, "Progressing").unwrap()["message"],
        format!("ReplicaSet \"{rs_name}\" has successfully progressed.")
    );
    assert_eq!(rs["metadata"]["labels"]["pod-template-hash"], rs_name.trim_start_matches("slow-"));
    assert_eq!(rs["spec"]["selector"]["matchLabels"]["pod-template-hash"], rs_name.trim_start_matches("slow-"));
    assert_eq!(rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "2");
    assert_eq!(rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"], "3");
    let out = c.kubectl(&["rollout", "status", "deployment/slow", "--timeout=20s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let events = c.events_about("slow");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "ScalingReplicaSet" && m == &format!("Scaled up replica set {rs_name} from 0 to 2")),
        "{events:?}"
    );
    let s = &d["status"];
    assert_eq!((count(&s["replicas"]), count(&s["readyReplicas"]), count(&s["unavailableReplicas"])), (2, 2, 0));
    let metrics = c.metrics();
    assert!(metrics.contains("skiff_syncs_total{controller=\"deployment\",result=\"success\"}"), "{metrics}");
}

#[test]
fn scaling_pausing_and_revision_history_limit() {
    let c = Cluster::start();
    c.server.apply(&deployment_manifest("web", 2, "    type: RollingUpdate", "  revisionHistoryLimit: 1"));
    with_ready_pods(&c, "app=web", || {
        c.wait_rolled_out("web", 2);
        c.kubectl(&["scale", "deployment", "web", "--replicas=4"]);
        c.wait_rolled_out("web", 4);
        let rss = c.replicasets("app=web");
        assert_eq!(rss.len(), 1);
        assert_eq!(count(&rss[0]["spec"]["replicas"]), 4);
        assert_eq!(rss[0]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "4");

        // Paused: the template change is recorded but not rolled out.
        c.kubectl(&["rollout", "pause", "deployment/web"]);
        c.kubectl(&["set", "image", "deployment/web", "web=nginx:1.26"]);
        c.eventually("the paused condition", || {
            let d = c.get_json(&["deployment", "web"]);
            let p = condition(&d, "Progressing")?;
            (p["reason"] == "DeploymentPaused"
                && count(&d["status"]["observedGeneration"]) == count(&d["metadata"]["generation"]))
            .then_some(())
        });
        assert_eq!(c.replicasets("app=web").len(), 1, "no rollout while paused");
        // Scaling still works while paused.
        c.kubectl(&["scale", "deployment", "web", "--replicas=3"]);
        c.eventually("3 pods while paused", || (c.pods("app=web").len() == 3).then_some(()));
        assert!(c.pods("app=web").iter().all(|p| image_of(p) == "nginx:1.25"));

        c.kubectl(&["rollout", "resume", "deployment/web"]);
        c.wait_rolled_out("web", 3);
        assert!(c.pods("app=web").iter().all(|p| image_of(p) == "nginx:1.26"));

        for image in ["nginx:1.27", "nginx:1.28"] {
            c.kubectl(&["set", "image", "deployment/web", &format!("web={image}")]);
            c.wait_rolled_out("web", 3);
        }
        // One old revision is kept besides the current one.
        let rss = c.eventually("old revisions cleaned up", || {
            let rss = c.replicasets("app=web");
            (rss.len() == 2).then_some(rss)
        });
        let images: BTreeSet<String> = rss
            .iter()
            .map(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(images, BTreeSet::from(["nginx:1.27".to_string(), "nginx:1.28".to_string()]));
    });
}
