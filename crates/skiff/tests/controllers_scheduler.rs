//! The scheduler in `skiff controllers` and the API server's `pods/binding`: pods spread over
//! Ready nodes, nodeSelector and taints are honoured, a pod no node fits stays Pending with
//! the reason, and a pod is bound only once. Nodes are made by hand (no agents here).

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(45);

fn ready_node(s: &TestServer, name: &str, labels: Value, taints: Value) {
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}});
    s.apply(&node.to_string());
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    s.kubectl_ok(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
}

fn pods(s: &TestServer, selector: &str) -> Vec<Value> {
    let text = s.kubectl_ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: Value = serde_json::from_str(&text).expect("JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

#[test]
fn pods_spread_over_ready_nodes_and_respect_selectors_and_taints() {
    let s = TestServer::start();
    ready_node(&s, "n1", json!({"disk": "ssd"}), json!([]));
    ready_node(&s, "n2", json!({}), json!([]));
    ready_node(&s, "tainted", json!({}), json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]));
    // A node that is not Ready gets nothing.
    s.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "down"}}).to_string());
    let _controllers = s.start_controllers(&[]);

    s.kubectl_ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]);
    let placed = s.eventually("4 web pods bound", WAIT, || {
        let pods = pods(&s, "app=web");
        let nodes: Vec<String> = pods.iter().filter_map(node_of).map(str::to_string).collect();
        (pods.len() == 4 && nodes.len() == 4).then_some(nodes)
    });
    let on = |n: &str| placed.iter().filter(|p| p.as_str() == n).count();
    assert_eq!((on("n1"), on("n2"), on("tainted"), on("down")), (2, 2, 0, 0), "placement {placed:?}");
    let bound = &pods(&s, "app=web")[0];
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
    assert!(scheduled, "PodScheduled=True after binding: {bound}");

    // nodeSelector and a toleration.
    let selected = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ssd", "labels": {"t": "sel"}},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "nginx"}]}});
    let tolerant = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db", "labels": {"t": "tol"}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": "tainted"},
                 "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                 "containers": [{"name": "c", "image": "nginx"}]}});
    // kubernetes.io/hostname is set by agents; give the tainted node the label by hand.
    s.kubectl_ok(&["label", "node", "tainted", "kubernetes.io/hostname=tainted"]);
    s.apply(&selected.to_string());
    s.apply(&tolerant.to_string());
    let ssd = s.eventually("ssd pod bound", WAIT, || pods(&s, "t=sel").first().and_then(node_of).map(str::to_string));
    assert_eq!(ssd, "n1");
    let db = s.eventually("db pod bound", WAIT, || pods(&s, "t=tol").first().and_then(node_of).map(str::to_string));
    assert_eq!(db, "tainted");

    // Nothing fits: Pending with the reason, then bound once a node fits.
    let picky = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky", "labels": {"t": "picky"}},
        "spec": {"nodeSelector": {"gpu": "yes"}, "containers": [{"name": "c", "image": "nginx"}]}});
    s.apply(&picky.to_string());
    let message = s.eventually("picky pod marked Unschedulable", WAIT, || {
        let pod = pods(&s, "t=picky").into_iter().next()?;
        let conditions = pod["status"]["conditions"].as_array()?.clone();
        let c = conditions.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?;
        assert_eq!(c["reason"], "Unschedulable");
        c["message"].as_str().map(str::to_string)
    });
    assert!(message.starts_with("0/4 nodes are available:"), "{message}");
    assert!(message.contains("node(s) didn't match Pod's node affinity/selector"), "{message}");
    let events = s.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=picky", "-o", "json"]);
    assert!(events.contains("FailedScheduling"), "{events}");
    s.kubectl_ok(&["label", "node", "n2", "gpu=yes"]);
    let picked = s.eventually("picky pod bound after the label", WAIT, || {
        pods(&s, "t=picky").first().and_then(node_of).map(str::to_string)
    });
    assert_eq!(picked, "n2");
}

#[test]
fn binding_is_validated_and_happens_once() {
    let s = TestServer::start();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    s.apply(&pod.to_string());
    let path = "/api/v1/namespaces/default/pods/p/binding";
    let binding = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };

    let wrong_name = s.http("POST", path).json(&binding("other", "n1")).send();
    assert_eq!(wrong_name.code, 400, "{}", wrong_name.body);
    let no_node = s.http("POST", path).json(&binding("p", "")).send();
    assert_eq!(no_node.code, 422, "{}", no_node.body);
    assert_eq!(no_node.json()["details"]["causes"][0]["field"], "target.name");

    let ok = s.http("POST", path).json(&binding("p", "n1")).send();
    assert_eq!(ok.code, 201, "{}", ok.body);
    assert_eq!(ok.json()["status"], "Success");
    let node = s.kubectl_ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "n1");

    let again = s.http("POST", path).json(&binding("p", "n2")).send();
    assert_eq!(again.code, 409, "{}", again.body);
    assert_eq!(
        again.json()["message"],
        "Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"n1\""
    );
    let missing = s.http("POST", "/api/v1/namespaces/default/pods/nope/binding").json(&binding("nope", "n1")).send();
    assert_eq!(missing.code, 404, "{}", missing.body);
}
