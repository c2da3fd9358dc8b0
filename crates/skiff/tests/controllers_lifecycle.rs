//! `skiff controllers` against `skiff server`: garbage collection, namespace deletion, node
//! heartbeat loss, LoadBalancer IPs and node pod CIDRs, checked with kubectl as a user would.
//! Dependents, nodes, leases and pod statuses are made by hand, as upstream's controller
//! integration tests do.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// Generous: the machine may be busy with other test binaries.
const WAIT: Duration = Duration::from_secs(45);

/// Creates objects from a JSON value (an object or a List).
fn create(s: &TestServer, obj: &Value) {
    let out = s.kubectl_stdin(&["create", "-f", "-"], &obj.to_string());
    assert!(out.status.success(), "kubectl create failed: {}\n{}", String::from_utf8_lossy(&out.stderr), obj);
}

/// `kubectl get <what> -o json`, None if it does not exist.
fn get(s: &TestServer, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = s.kubectl(&args);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("NotFound") || err.contains("not found"), "kubectl {args:?}: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("kubectl printed JSON"))
}

fn uid(s: &TestServer, what: &[&str]) -> String {
    let obj = get(s, what).unwrap_or_else(|| panic!("{what:?} exists"));
    obj["metadata"]["uid"].as_str().expect("uid").to_string()
}

fn gone(s: &TestServer, what: &[&str]) -> bool {
    get(s, what).is_none()
}

fn config_map(name: &str, namespace: &str, owners: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners}})
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": block})
}

fn pod(name: &str, namespace: &str, node: Option<&str>, owners: Vec<Value>) -> Value {
    let mut spec = json!({"containers": [{"name": "app", "image": "nginx:1.27"}], "terminationGracePeriodSeconds": 2});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners}, "spec": spec})
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn has_finalizer(obj: &Value, name: &str) -> bool {
    obj["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|f| f == name))
}

fn events(s: &TestServer, namespace: &str) -> Vec<Value> {
    get(s, &["events", "-n", namespace]).and_then(|l| l["items"].as_array().cloned()).unwrap_or_default()
}

fn has_event(s: &TestServer, namespace: &str, reason: &str, about: &str) -> bool {
    events(s, namespace).iter().any(|e| e["reason"] == reason && e["involvedObject"]["name"] == about)
}

#[test]
fn gc_background_deletes_dependents_whose_owners_are_gone() {
    let s = TestServer::start();
    let _c = s.start_controllers(&[]);
    create(&s, &config_map("owner", "default", vec![]));
    create(&s, &config_map("keeper", "default", vec![]));
    let owner_uid = uid(&s, &["cm", "owner"]);
    let keeper_uid = uid(&s, &["cm", "keeper"]);
    let owned = || vec![owner("v1", "ConfigMap", "owner", &owner_uid, false)];
    create(&s, &config_map("dep-cm", "default", owned()));
    create(&s, &pod("dep-pod", "default", None, owned()));
    let both = vec![
        owner("v1", "ConfigMap", "owner", &owner_uid, false),
        owner("v1", "ConfigMap", "keeper", &keeper_uid, false),
    ];
    create(&s, &config_map("dep-shared", "default", both));
    // Names a live owner, but with another uid: that owner is gone, so this goes at once.
    let stale = "4b1d4b1d-0000-4000-8000-000000000000";
    create(&s, &config_map("dep-stale", "default", vec![owner("v1", "ConfigMap", "keeper", stale, false)]));
    s.eventually("the dependent with a stale owner uid is collected", WAIT, || {
        gone(&s, &["cm", "dep-stale"]).then_some(())
    });
    assert!(get(&s, &["cm", "dep-cm"]).is_some(), "dependents of a live owner stay");

    s.kubectl_ok(&["delete", "cm", "owner"]);
    s.eventually("dependents of the deleted owner are collected", WAIT, || {
        (gone(&s, &["cm", "dep-cm"]) && gone(&s, &["pod", "dep-pod"])).then_some(())
    });
    s.eventually("a dependent with another live owner only loses the reference", WAIT, || {
        let shared = get(&s, &["cm", "dep-shared"]).expect("dep-shared stays");
        (owner_uids(&shared) == [keeper_uid.clone()]).then_some(())
    });

    // A Deployment owner (another API group) works the same.
    create(
        &s,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}),
    );
    let web_uid = uid(&s, &["deployment", "web"]);
    create(&s, &config_map("web-config", "default", vec![owner("apps/v1", "Deployment", "web", &web_uid, true)]));
    s.kubectl_ok(&["delete", "deployment", "web", "--cascade=background"]);
    s.eventually("the Deployment's dependent is collected", WAIT, || gone(&s, &["cm", "web-config"]).then_some(()));

    // A namespaced owner must live in its dependent's namespace: one elsewhere counts as
    // missing, with a warning.
    s.kubectl_ok(&["create", "namespace", "elsewhere"]);
    create(&s, &config_map("cross", "elsewhere", vec![owner("v1", "ConfigMap", "keeper", &keeper_uid, false)]));
    s.eventually("the cross-namespace dependent is collected", WAIT, || {
        gone(&s, &["cm", "cross", "-n", "elsewhere"]).then_some(())
    });
    s.eventually("an OwnerRefInvalidNamespace warning", WAIT, || {
        has_event(&s, "elsewhere", "OwnerRefInvalidNamespace", "cross").then_some(())
    });
    assert!(get(&s, &["cm", "keeper"]).is_some());
}

#[test]
fn gc_foreground_deletes_dependents_before_the_owner() {
    let s = TestServer::start();
    let _c = s.start_controllers(&[]);
    create(&s, &config_map("fg-owner", "default", vec![]));
    let owner_uid = uid(&s, &["cm", "fg-owner"]);
    create(&s, &config_map("fg-mid", "default", vec![owner("v1", "ConfigMap", "fg-owner", &owner_uid, true)]));
    let mid_uid = uid(&s, &["cm", "fg-mid"]);
    let mut leaf = config_map("fg-leaf", "default", vec![owner("v1", "ConfigMap", "fg-mid", &mid_uid, true)]);
    leaf["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&s, &leaf);
    create(&s, &config_map("fg-loose", "default", vec![owner("v1", "ConfigMap", "fg-owner", &owner_uid, false)]));

    s.kubectl_ok(&["delete", "cm", "fg-owner", "--cascade=foreground", "--wait=false"]);
    let owner_obj = get(&s, &["cm", "fg-owner"]).expect("the owner waits for its dependents");
    assert!(has_finalizer(&owner_obj, "foregroundDeletion"), "{owner_obj}");
    s.eventually("the non-blocking dependent is deleted", WAIT, || gone(&s, &["cm", "fg-loose"]).then_some(()));
    s.eventually("the blocking chain is being deleted in foreground", WAIT, || {
        let leaf = get(&s, &["cm", "fg-leaf"])?;
        let mid = get(&s, &["cm", "fg-mid"])?;
        let leaf_deleting = leaf["metadata"]["deletionTimestamp"].is_string();
        let mid_foreground =
            mid["metadata"]["deletionTimestamp"].is_string() && has_finalizer(&mid, "foregroundDeletion");
        (leaf_deleting && mid_foreground).then_some(())
    });
    // The leaf's own finalizer holds the whole chain.
    let owner_obj = get(&s, &["cm", "fg-owner"]).expect("held by its blocking dependents");
    assert!(owner_obj["metadata"]["deletionTimestamp"].is_string());

    s.kubectl_ok(&["patch", "cm", "fg-leaf", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    s.eventually("the chain and then the owner are gone", WAIT, || {
        (gone(&s, &["cm", "fg-leaf"]) && gone(&s, &["cm", "fg-mid"]) && gone(&s, &["cm", "fg-owner"])).then_some(())
    });
}

#[test]
fn gc_orphan_frees_dependents_then_deletes_the_owner() {
    let s = TestServer::start();
    let _c = s.start_controllers(&[]);
    create(&s, &config_map("or-owner", "default", vec![]));
    create(&s, &config_map("or-keeper", "default", vec![]));
    let owner_uid = uid(&s, &["cm", "or-owner"]);
    let keeper_uid = uid(&s, &["cm", "or-keeper"]);
    create(&s, &config_map("or-cm", "default", vec![owner("v1", "ConfigMap", "or-owner", &owner_uid, true)]));
    create(&s, &pod("or-pod", "default", None, vec![owner("v1", "ConfigMap", "or-owner", &owner_uid, false)]));
    let both = vec![
        owner("v1", "ConfigMap", "or-owner", &owner_uid, false),
        owner("v1", "ConfigMap", "or-keeper", &keeper_uid, false),
    ];
    create(&s, &config_map("or-shared", "default", both));

    // kubectl waits until the owner is gone.
    s.kubectl_ok(&["delete", "cm", "or-owner", "--cascade=orphan", "--timeout=60s"]);
    assert!(gone(&s, &["cm", "or-owner"]));
    let freed = get(&s, &["cm", "or-cm"]).expect("orphaned dependents stay");
    assert!(owner_uids(&freed).is_empty(), "{freed}");
    let freed_pod = get(&s, &["pod", "or-pod"]).expect("orphaned dependents stay");
    assert!(owner_uids(&freed_pod).is_empty(), "{freed_pod}");
    let shared = get(&s, &["cm", "or-shared"]).expect("orphaned dependents stay");
    assert_eq!(owner_uids(&shared), [keeper_uid]);
}

#[test]
fn namespace_deletion_removes_content_then_the_namespace() {
    let s = TestServer::start();
    let _c = s.start_controllers(&[]);
    s.kubectl_ok(&["create", "namespace", "doomed"]);
    s.kubectl_ok(&["create", "configmap", "plain", "-n", "doomed", "--from-literal=a=b"]);
    s.kubectl_ok(&["create", "secret", "generic", "creds", "-n", "doomed", "--from-literal=a=b"]);
    s.kubectl_ok(&["create", "service", "clusterip", "svc", "-n", "doomed", "--tcp=80:8080"]);
    s.kubectl_ok(&["create", "deployment", "web", "-n", "doomed", "--image=nginx:1.27", "--replicas=0"]);
    create(&s, &pod("floating", "doomed", None, vec![]));
    // Bound to a node with no agent: it lingers until its grace period is over.
    create(&s, &pod("bound", "doomed", Some("node-without-agent"), vec![]));
    let mut held = config_map("held", "doomed", vec![]);
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&s, &held);

    s.kubectl_ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let ns = get(&s, &["namespace", "doomed"]).expect("terminating");
    assert_eq!(ns["status"]["phase"], "Terminating");
    let refused = s.kubectl_err(&["create", "configmap", "late", "-n", "doomed"]);
    assert!(refused.contains("being terminated"), "{refused}");

    s.eventually("only the held ConfigMap remains, as the conditions say", WAIT, || {
        let ns = get(&s, &["namespace", "doomed"])?;
        let condition = |t: &str| ns["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == t).cloned();
        let remaining = condition("NamespaceContentRemaining")?;
        let finalizers = condition("NamespaceFinalizersRemaining")?;
        let ok = remaining["status"] == "True"
            && remaining["message"] == "Some resources are remaining: configmaps. has 1 resource instances"
            && finalizers["message"]
                == "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances";
        ok.then_some(())
    });
    let left = s.kubectl_ok(&["get", "all,configmaps,secrets", "-n", "doomed", "-o", "name"]);
    assert_eq!(left.trim(), "configmap/held", "{left}");

    s.kubectl_ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "doomed",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    s.eventually("the namespace is gone", WAIT, || gone(&s, &["namespace", "doomed"]).then_some(()));

    // `kubectl delete namespace` waits until it is gone.
    s.kubectl_ok(&["create", "namespace", "quick"]);
    s.kubectl_ok(&["create", "configmap", "c", "-n", "quick"]);
    s.kubectl_ok(&["delete", "namespace", "quick", "--timeout=60s"]);
    assert!(gone(&s, &["namespace", "quick"]));
}

#[test]
fn namespace_finalize_subresource_changes_only_spec_finalizers() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "fin"]);
    let mut ns = get(&s, &["namespace", "fin"]).expect("created");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));

    // The main resource cannot drop them...
    ns["spec"]["finalizers"] = json!([]);
    let reply = s.http("PUT", "/api/v1/namespaces/fin").json(&ns).send();
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_eq!(reply.json()["spec"]["finalizers"], json!(["kubernetes"]));

    // ...the finalize subresource can, and touches nothing else.
    let mut ns = get(&s, &["namespace", "fin"]).expect("exists");
    ns["spec"]["finalizers"] = json!([]);
    ns["metadata"]["labels"]["extra"] = json!("ignored");
    let reply = s.http("PUT", "/api/v1/namespaces/fin/finalize").json(&ns).send();
    assert_eq!(reply.code, 200, "{}", reply.body);
    let ns = get(&s, &["namespace", "fin"]).expect("not being deleted: it stays");
    assert!(ns["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty()), "{ns}");
    assert!(ns["metadata"]["labels"].get("extra").is_none(), "{ns}");

    // Without finalizers, deleting the namespace removes it at once (no controller runs here).
    s.kubectl_ok(&["delete", "namespace", "fin", "--timeout=30s"]);
    assert!(gone(&s, &["namespace", "fin"]));

    // On a namespace being deleted, emptying spec.finalizers deletes it.
    s.kubectl_ok(&["create", "namespace", "fin2"]);
    s.kubectl_ok(&["delete", "namespace", "fin2", "--wait=false"]);
    let mut ns = get(&s, &["namespace", "fin2"]).expect("held by its finalizer");
    ns["spec"]["finalizers"] = json!([]);
    let reply = s.http("PUT", "/api/v1/namespaces/fin2/finalize").json(&ns).send();
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert!(gone(&s, &["namespace", "fin2"]));
    // Only Namespaces have it. Sent without a body: the server answers an unknown
    // subresource before reading one, which curl over HTTP/2 may report as a reset stream.
    let reply = s.http("PUT", "/api/v1/namespaces/default/services/kubernetes/finalize").send();
    assert_eq!(reply.code, 404, "{}", reply.body);
}

/// `2026-01-02T03:04:05Z`, a metav1.Time.
fn time_now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2026-01-02T03:04:05.123456Z`, a metav1.MicroTime.
fn micro_time_now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn renew_lease(s: &TestServer, node: &str) {
    let patch = json!({"spec": {"renewTime": micro_time_now()}}).to_string();
    s.kubectl_ok(&["patch", "lease", node, "-n", "kube-node-lease", "--type=merge", "-p", &patch]);
}

fn condition_status(obj: &Value, kind: &str) -> Option<String> {
    let conditions = obj["status"]["conditions"].as_array()?;
    conditions.iter().find(|c| c["type"] == kind).and_then(|c| c["status"].as_str()).map(str::to_string)
}

fn set_pod_ready(s: &TestServer, name: &str) {
    let patch = json!({"status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
        "conditions": [{"type": "Ready", "status": "True"}]}})
    .to_string();
    s.kubectl_ok(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &patch]);
}

#[test]
fn node_heartbeat_loss_marks_node_and_pods_not_ready() {
    let s = TestServer::start();
    let _c = s.start_controllers(&["--node-monitor-grace-period", "3s"]);
    create(&s, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "hb-1"}}));
    let now = time_now();
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
    .to_string();
    s.kubectl_ok(&["patch", "node", "hb-1", "--subresource=status", "--type=merge", "-p", &status]);
    create(
        &s,
        &json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "hb-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "hb-1", "leaseDurationSeconds": 40, "renewTime": micro_time_now()}}),
    );
    create(&s, &pod("on-hb-1", "default", Some("hb-1"), vec![]));
    set_pod_ready(&s, "on-hb-1");

    // Nobody renews the Lease: after the grace period the node is Unknown, its pods not ready.
    s.eventually("the node is marked Ready=Unknown", WAIT, || {
        let node = get(&s, &["node", "hb-1"])?;
        let ready = node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        (ready["status"] == "Unknown" && ready["reason"] == "NodeStatusUnknown").then_some(())
    });
    s.eventually("its pod is marked not ready", WAIT, || {
        let pod = get(&s, &["pod", "on-hb-1"])?;
        (condition_status(&pod, "Ready").as_deref() == Some("False")).then_some(())
    });
    let node = get(&s, &["node", "hb-1"]).expect("node");
    let taints = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    assert!(
        taints.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"),
        "{node}"
    );
    s.eventually("a NodeNotReady event", WAIT, || has_event(&s, "default", "NodeNotReady", "hb-1").then_some(()));

    // The agent comes back: it renews its Lease again.
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let stop = stop.clone();
        let target_kubeconfig = s.kubeconfig.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let patch = json!({"spec": {"renewTime": micro_time_now()}}).to_string();
                let _ = std::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&target_kubeconfig)
                    .args(["patch", "lease", "hb-1", "-n", "kube-node-lease", "--type=merge", "-p", &patch])
                    .output();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    renew_lease(&s, "hb-1");
    s.eventually("the node is Ready again, without the taint", WAIT, || {
        let node = get(&s, &["node", "hb-1"])?;
        let untainted = node["spec"]["taints"]
            .as_array()
            .is_none_or(|t| t.iter().all(|t| t["key"] != "node.kubernetes.io/unreachable"));
        (condition_status(&node, "Ready").as_deref() == Some("True") && untainted).then_some(())
    });
    // Pod readiness is the agent's to report again.
    set_pod_ready(&s, "on-hb-1");
    let pod = get(&s, &["pod", "on-hb-1"]).expect("pod");
    assert_eq!(condition_status(&pod, "Ready").as_deref(), Some("True"));
    stop.store(true, Ordering::Relaxed);
    renewer.join().expect("renewer thread");
}

fn lb_ip(s: &TestServer, name: &str) -> Option<String> {
    let svc = get(s, &["svc", name])?;
    let ingress = svc["status"]["loadBalancer"]["ingress"].as_array()?;
    assert!(ingress.len() <= 1, "{svc}");
    let first = ingress.first()?;
    assert_eq!(first["ipMode"], "VIP", "{svc}");
    first["ip"].as_str().map(str::to_string)
}

fn load_balancer(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["type"] = json!("LoadBalancer");
    spec["ports"] = json!([{"port": 80, "targetPort": 8080}]);
    spec["selector"] = json!({"app": name});
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[test]
fn load_balancer_ips_are_distinct_stable_and_released() {
    let s = TestServer::start();
    let pool = ["--lb-pool", "172.30.255.1-172.30.255.3"];
    let controllers = s.start_controllers(&pool);
    // Asks for the middle address; the others take what is left.
    create(&s, &load_balancer("wants-2", json!({"loadBalancerIP": "172.30.255.2"})));
    s.eventually("the requested address", WAIT, || (lb_ip(&s, "wants-2")? == "172.30.255.2").then_some(()));
    create(&s, &load_balancer("a", json!({})));
    create(&s, &load_balancer("b", json!({})));
    create(&s, &load_balancer("other-class", json!({"loadBalancerClass": "example.com/lb"})));
    let a = s.eventually("an address for a", WAIT, || lb_ip(&s, "a"));
    let b = s.eventually("an address for b", WAIT, || lb_ip(&s, "b"));
    let mut all = vec![a.clone(), b.clone(), "172.30.255.2".to_string()];
    all.sort();
    assert_eq!(all, ["172.30.255.1", "172.30.255.2", "172.30.255.3"]);
    let shown = s.kubectl_ok(&["get", "svc", "a", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
    assert_eq!(shown, a);
    s.eventually("an IPAllocated event", WAIT, || has_event(&s, "default", "IPAllocated", "a").then_some(()));

    // The pool is full: a new Service stays pending with a warning; a taken address too.
    create(&s, &load_balancer("c", json!({})));
    create(&s, &load_balancer("wants-a", json!({"loadBalancerIP": a})));
    s.eventually("IPAllocationFailed warnings", WAIT, || {
        (has_event(&s, "default", "IPAllocationFailed", "c")
            && has_event(&s, "default", "IPAllocationFailed", "wants-a"))
        .then_some(())
    });
    assert_eq!(lb_ip(&s, "c"), None);
    assert_eq!(lb_ip(&s, "wants-a"), None);
    assert_eq!(lb_ip(&s, "other-class"), None, "a Service with another class is left alone");
    s.kubectl_ok(&["delete", "svc", "c"]);

    // A restarted controller keeps every assignment.
    drop(controllers);
    let _controllers = s.start_controllers(&pool);
    create(&s, &load_balancer("probe", json!({"loadBalancerIP": "172.30.255.9"})));
    s.eventually("the restarted controller is at work", WAIT, || {
        has_event(&s, "default", "IPAllocationFailed", "probe").then_some(())
    });
    assert_eq!(lb_ip(&s, "a"), Some(a.clone()));
    assert_eq!(lb_ip(&s, "b"), Some(b.clone()));
    assert_eq!(lb_ip(&s, "wants-2").as_deref(), Some("172.30.255.2"));

    // Deleting a frees its address for the Service that asked for it.
    s.kubectl_ok(&["delete", "svc", "a"]);
    s.eventually("wants-a gets the freed address", WAIT, || (lb_ip(&s, "wants-a")? == a).then_some(()));

    // b stops being a LoadBalancer: its status is cleared and a new Service gets its address.
    s.kubectl_ok(&["patch", "svc", "b", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    s.eventually("b's address is released", WAIT, || lb_ip(&s, "b").is_none().then_some(()));
    create(&s, &load_balancer("d", json!({})));
    s.eventually("d gets b's address", WAIT, || (lb_ip(&s, "d")? == b).then_some(()));
}

fn pod_cidr(s: &TestServer, node: &str) -> Option<String> {
    let node = get(s, &["node", node])?;
    let single = node["spec"]["podCIDR"].as_str()?.to_string();
    assert_eq!(node["spec"]["podCIDRs"], json!([single]), "{node}");
    Some(single)
}

#[test]
fn nodes_get_distinct_pod_cidrs() {
    let s = TestServer::start();
    // Room for exactly three /24s, one of which a node already claims.
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "preset"},
            "spec": {"podCIDR": "10.250.0.0/24", "podCIDRs": ["10.250.0.0/24"]}}),
    );
    let _c = s.start_controllers(&["--cluster-cidr", "10.250.0.0/23"]);
    create(&s, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let n1 = s.eventually("a pod CIDR for n1", WAIT, || pod_cidr(&s, "n1"));
    assert_eq!(n1, "10.250.1.0/24", "the preset node's subnet is in use");
    // The cluster CIDR is full now.
    create(&s, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}));
    s.eventually("CIDRNotAvailable for n2", WAIT, || has_event(&s, "default", "CIDRNotAvailable", "n2").then_some(()));
    assert_eq!(pod_cidr(&s, "n2"), None);
    assert_eq!(pod_cidr(&s, "preset").as_deref(), Some("10.250.0.0/24"));

    // Deleting a node releases its subnet.
    s.kubectl_ok(&["delete", "node", "preset"]);
    let n2 = s.eventually("n2 gets the released subnet", WAIT, || pod_cidr(&s, "n2"));
    assert_eq!(n2, "10.250.0.0/24");
}

#[test]
fn node_pod_cidrs_come_from_the_default_cluster_cidr() {
    let s = TestServer::start();
    let _c = s.start_controllers(&[]);
    let names = ["w1", "w2", "w3", "w4"];
    for name in names {
        create(&s, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}));
    }
    let mut cidrs: Vec<String> = names.iter().map(|n| s.eventually("a pod CIDR", WAIT, || pod_cidr(&s, n))).collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
}
