//! Strategic merge patch cases: live object + patch → expected object (or error code).
//!
//! Element order matters and is compared exactly (upstream's ordering rules, see
//! `patch/order.rs`); key order inside objects is not compared.

use serde_json::{json, Value};

use super::super::{apply_strategic_merge_patch, GroupKind};
use crate::status::ApiError;

const POD: (&str, &str) = ("", "Pod");
const SERVICE: (&str, &str) = ("", "Service");
const DEPLOYMENT: (&str, &str) = ("apps", "Deployment");

fn smp((group, kind): (&str, &str), live: &Value, patch: &Value) -> Result<Value, ApiError> {
    apply_strategic_merge_patch(live, patch.to_string().as_bytes(), &GroupKind { group, kind })
}

struct Case {
    name: &'static str,
    kind: (&'static str, &'static str),
    live: Value,
    patch: Value,
    expected: Value,
}

fn case(name: &'static str, kind: (&'static str, &'static str), live: Value, patch: Value, expected: Value) -> Case {
    Case { name, kind, live, patch, expected }
}

/// A Deployment whose pod template has the given containers.
fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    })
}

fn template_patch(spec: Value) -> Value {
    json!({"spec": {"template": {"spec": spec}}})
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "maps merge and null deletes a key",
            SERVICE,
            json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}}}),
            json!({"metadata": {"labels": {"tier": null, "team": "blue"}}}),
            json!({"metadata": {"name": "web", "labels": {"app": "web", "team": "blue"}}}),
        ),
        case(
            "null for a key the object lacks is ignored",
            SERVICE,
            json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP"}}),
            json!({"metadata": {"annotations": null}, "spec": {"clusterIP": null}}),
            json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP"}}),
        ),
        case(
            "an empty patch changes nothing",
            SERVICE,
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            json!({}),
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
        ),
        case(
            "lists without a directive are replaced (tolerations)",
            POD,
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "c", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        ),
        case(
            "a value whose type changes is replaced",
            SERVICE,
            json!({"spec": {"sessionAffinityConfig": "bogus"}}),
            json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60, "extra": null}}}}),
            json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}),
        ),
        case(
            "Service ports merge by port: matching ports merge, new ports are added",
            SERVICE,
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "https", "port": 443}]}}),
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443},
            ]}}),
        ),
        case(
            "kubectl apply: $setElementOrder with an added port and a deleted port",
            SERVICE,
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443},
            ]}}),
            json!({"spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 8443}],
                "ports": [{"name": "https2", "port": 8443, "targetPort": 8443}, {"$patch": "delete", "port": 443}],
            }}),
            json!({"spec": {"ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                {"name": "https2", "port": 8443, "targetPort": 8443},
            ]}}),
        ),
        case(
            "kubectl apply: deleting a port keeps server-assigned fields of the others",
            SERVICE,
            json!({"spec": {"type": "NodePort", "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "metrics", "port": 9090, "nodePort": 30090},
            ]}}),
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"$patch": "delete", "port": 9090}]}}),
            json!({"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
        ),
        case(
            "without $setElementOrder new elements go before live-only ones (upstream order)",
            DEPLOYMENT,
            deployment(json!([{"name": "nginx", "image": "nginx"}])),
            template_patch(json!({"containers": [{"name": "redis", "image": "redis"}]})),
            deployment(json!([{"name": "redis", "image": "redis"}, {"name": "nginx", "image": "nginx"}])),
        ),
        case(
            "kubectl set image: a container merges in place",
            POD,
            json!({"spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]}}),
            json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}}),
            json!({"spec": {"containers": [{"name": "app", "image": "app:2"}, {"name": "log", "image": "log:1"}]}}),
        ),
        case(
            "$patch: delete removes the matching list element",
            POD,
            json!({"spec": {"containers": [{"name": "app", "image": "a"}, {"name": "sidecar", "image": "s"}]}}),
            json!({"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}),
            json!({"spec": {"containers": [{"name": "app", "image": "a"}]}}),
        ),
        case(
            "a {$patch: replace} element makes the patch's list replace the live one",
            POD,
            json!({"spec": {"containers": [
                {"name": "app", "image": "a", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "s"},
            ]}}),
            json!({"spec": {"containers": [{"name": "app", "image": "b"}, {"$patch": "replace"}]}}),
            json!({"spec": {"containers": [{"name": "app", "image": "b"}]}}),
        ),
        case(
            "$patch: replace in a map replaces it",
            SERVICE,
            json!({"spec": {"selector": {"app": "web", "tier": "front"}, "type": "ClusterIP"}}),
            json!({"spec": {"selector": {"$patch": "replace", "app": "api"}}}),
            json!({"spec": {"selector": {"app": "api"}, "type": "ClusterIP"}}),
        ),
        case(
            "$patch: replace for a map the object lacks keeps the map",
            DEPLOYMENT,
            json!({"spec": {"replicas": 1}}),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
            json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}}),
        ),
        case(
            "$patch: delete in a map deletes it",
            DEPLOYMENT,
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}),
            json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
        ),
        case(
            "$patch: merge in a map is the default merge",
            SERVICE,
            json!({"metadata": {"labels": {"app": "web"}}}),
            json!({"metadata": {"labels": {"$patch": "merge", "team": "blue"}}}),
            json!({"metadata": {"labels": {"app": "web", "team": "blue"}}}),
        ),
        case(
            "finalizers merge as a set",
            SERVICE,
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        ),
        case(
            "$deleteFromPrimitiveList removes every copy and ignores absent values",
            SERVICE,
            json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        case(
            "$deleteFromPrimitiveList on a missing list adds nothing",
            SERVICE,
            json!({"metadata": {"name": "web"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"name": "web"}}),
        ),
        case(
            "$setElementOrder alone reorders a list",
            SERVICE,
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
        ),
        case(
            "kubectl apply on finalizers: add, delete and order, server-added kept",
            SERVICE,
            json!({"metadata": {"finalizers": ["a", "b", "x"]}}),
            json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "c"],
                "finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
            }}),
            json!({"metadata": {"finalizers": ["a", "c", "x"]}}),
        ),
        case(
            "$setElementOrder for a list the object lacks",
            SERVICE,
            json!({"metadata": {"name": "web"}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "b"], "finalizers": ["a", "b"]}}),
            json!({"metadata": {"name": "web", "finalizers": ["a", "b"]}}),
        ),
        case(
            "$setElementOrder places server-only elements by their live neighbours",
            POD,
            json!({"spec": {"containers": [{"name": "app", "env": [
                {"name": "A", "value": "a"},
                {"name": "X", "value": "x"},
                {"name": "B", "value": "b"},
            ]}]}}),
            json!({"spec": {"containers": [{
                "name": "app",
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
                "env": [{"name": "C", "value": "c"}],
            }]}}),
            json!({"spec": {"containers": [{"name": "app", "env": [
                {"name": "A", "value": "a"},
                {"name": "X", "value": "x"},
                {"name": "B", "value": "b"},
                {"name": "C", "value": "c"},
            ]}]}}),
        ),
        case(
            "Deployment strategy switch with $retainKeys drops rollingUpdate",
            DEPLOYMENT,
            deployment(json!([{"name": "app", "image": "a"}])),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            {
                let mut expected = deployment(json!([{"name": "app", "image": "a"}]));
                expected["spec"]["strategy"] = json!({"type": "Recreate"});
                expected
            },
        ),
        case(
            "volumes merge by name and $retainKeys switches the volume source",
            POD,
            json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c1"}}]}}),
            json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/d"}}]}}),
            json!({"spec": {"volumes": [
                {"name": "data", "hostPath": {"path": "/d"}},
                {"name": "cfg", "configMap": {"name": "c1"}},
            ]}}),
        ),
        case(
            "env merges by name inside a Deployment's containers",
            DEPLOYMENT,
            deployment(json!([{"name": "app", "image": "app:1", "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "2"},
            ]}])),
            template_patch(json!({"containers": [{"name": "app", "env": [
                {"name": "B", "value": "3"},
                {"name": "C", "value": "4"},
            ]}]})),
            deployment(json!([{"name": "app", "image": "app:1", "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "3"},
                {"name": "C", "value": "4"},
            ]}])),
        ),
        case(
            "kubectl apply three-way on a Deployment: new image, env deleted, sidecar added",
            DEPLOYMENT,
            deployment(json!([{"name": "app", "image": "app:1", "imagePullPolicy": "IfNotPresent", "env": [
                {"name": "A", "value": "a"},
                {"name": "B", "value": "b"},
            ]}])),
            template_patch(json!({
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [
                    {
                        "name": "app",
                        "image": "app:2",
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"$patch": "delete", "name": "B"}],
                    },
                    {"name": "sidecar", "image": "busybox"},
                ],
            })),
            deployment(json!([
                {"name": "app", "image": "app:2", "imagePullPolicy": "IfNotPresent", "env": [{"name": "A", "value": "a"}]},
                {"name": "sidecar", "image": "busybox"},
            ])),
        ),
        case(
            "elements new to a list are cleaned of nulls and directives",
            POD,
            json!({"spec": {"containers": [{"name": "app", "image": "a"}]}}),
            json!({"spec": {"containers": [{
                "name": "new",
                "image": "x",
                "ports": null,
                "resources": {"limits": null},
                "env": [{"$patch": "delete", "name": "Z"}, {"name": "E", "value": "e"}],
            }]}}),
            json!({"spec": {"containers": [
                {"name": "new", "image": "x", "resources": {}, "env": [{"name": "E", "value": "e"}]},
                {"name": "app", "image": "a"},
            ]}}),
        ),
        case(
            "kubectl rollout restart annotates the pod template",
            DEPLOYMENT,
            deployment(json!([{"name": "app", "image": "a"}])),
            json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z",
            }}}}}),
            {
                let mut expected = deployment(json!([{"name": "app", "image": "a"}]));
                expected["spec"]["template"]["metadata"]["annotations"] =
                    json!({"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"});
                expected
            },
        ),
        case(
            "Deployment status conditions merge by type",
            DEPLOYMENT,
            json!({"status": {"conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ]}}),
            json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}),
            json!({"status": {"conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
            ]}}),
        ),
        case(
            "ownerReferences merge by uid",
            ("apps", "ReplicaSet"),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "Deployment", "name": "a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}, {"uid": "u2", "kind": "Deployment", "name": "b"}]}}),
            json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "Deployment", "name": "a", "controller": true},
                {"uid": "u2", "kind": "Deployment", "name": "b"},
            ]}}),
        ),
        case(
            "Node addresses merge by type, taints are replaced",
            ("", "Node"),
            json!({
                "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]},
            }),
            json!({
                "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]},
            }),
            json!({
                "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}]},
            }),
        ),
        case(
            "ServiceAccount secrets merge by name",
            ("", "ServiceAccount"),
            json!({"secrets": [{"name": "s1"}]}),
            json!({"secrets": [{"name": "s2"}]}),
            json!({"secrets": [{"name": "s2"}, {"name": "s1"}]}),
        ),
        case(
            "kinds without list directives replace their lists (EndpointSlice endpoints)",
            ("discovery.k8s.io", "EndpointSlice"),
            json!({"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}),
            json!({"endpoints": [{"addresses": ["10.0.0.3"]}]}),
            json!({"endpoints": [{"addresses": ["10.0.0.3"]}]}),
        ),
        case(
            "$patch: replace at the root replaces the object",
            ("", "ConfigMap"),
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
            json!({"$patch": "replace", "metadata": {"name": "c"}, "data": {"b": "2"}}),
            json!({"metadata": {"name": "c"}, "data": {"b": "2"}}),
        ),
    ]
}

/// Whether any object key anywhere in `value` is a patch directive.
fn has_directive_key(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, value)| key.starts_with('$') || has_directive_key(value)),
        Value::Array(elements) => elements.iter().any(has_directive_key),
        _ => false,
    }
}

#[test]
fn strategic_merge_patch_cases() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for case in cases {
        let patched = smp(case.kind, &case.live, &case.patch)
            .unwrap_or_else(|error| panic!("{}: unexpected error {error:?}", case.name));
        assert_eq!(patched, case.expected, "{}", case.name);
        assert!(!has_directive_key(&patched), "{}: a directive survived: {patched}", case.name);
    }
}

#[test]
fn kubectl_apply_patch_is_idempotent() {
    let live = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}});
    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 80}, {"port": 8443}],
        "ports": [{"name": "https2", "port": 8443}, {"$patch": "delete", "port": 443}],
    }});
    let once = smp(SERVICE, &live, &patch).expect("applies");
    let twice = smp(SERVICE, &once, &patch).expect("applies again");
    assert_eq!(once, twice);
}

#[test]
fn patched_objects_keep_their_key_order() {
    let live =
        json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2", "c": "3"}}, "spec": {"type": "ClusterIP"}});
    let patched =
        smp(SERVICE, &live, &json!({"metadata": {"labels": {"a": null, "b": "x", "d": "4"}}})).expect("applies");
    let labels: Vec<&str> =
        patched["metadata"]["labels"].as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(labels, ["b", "c", "d"]);
    let top: Vec<&str> = patched.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(top, ["metadata", "spec"]);
}

#[test]
fn null_and_raw_bodies() {
    let live = json!({"metadata": {"name": "web"}});
    let kind = GroupKind { group: "", kind: "Service" };
    assert_eq!(apply_strategic_merge_patch(&live, b"null", &kind).ok(), Some(live.clone()));
    for body in [&b"{"[..], b"[]", b"\"x\"", b"7", b""] {
        let error = apply_strategic_merge_patch(&live, body, &kind).expect_err("malformed");
        assert_eq!(error.code(), 400, "{}", String::from_utf8_lossy(body));
    }
}

/// Name, kind, live object, patch, expected status code.
type ErrorCase<'a> = (&'static str, (&'static str, &'static str), &'a Value, Value, u16);

#[test]
fn strategic_merge_errors() {
    let ports = json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]}});
    let finalizers = json!({"metadata": {"finalizers": ["a"]}});
    let empty = json!({});
    let cases: Vec<ErrorCase> = vec![
        ("merge key missing", SERVICE, &ports, json!({"spec": {"ports": [{"name": "x"}]}}), 400),
        ("delete without merge key", SERVICE, &ports, json!({"spec": {"ports": [{"$patch": "delete"}]}}), 400),
        ("unknown $patch in a map", SERVICE, &ports, json!({"metadata": {"labels": {"$patch": "frobnicate"}}}), 400),
        (
            "unknown $patch in a list element",
            SERVICE,
            &ports,
            json!({"spec": {"ports": [{"$patch": "x", "port": 80}]}}),
            400,
        ),
        ("$patch: merge in a list element", SERVICE, &ports, json!({"spec": {"ports": [{"$patch": "merge"}]}}), 400),
        (
            "$setElementOrder disagrees with the patch list",
            SERVICE,
            &ports,
            json!({"spec": {
                "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                "ports": [{"port": 443, "name": "y"}, {"port": 80, "name": "x"}],
            }}),
            400,
        ),
        (
            "$setElementOrder is not a list",
            SERVICE,
            &ports,
            json!({"spec": {"$setElementOrder/ports": {"port": 80}}}),
            400,
        ),
        (
            "$setElementOrder without a field",
            SERVICE,
            &ports,
            json!({"spec": {"$setElementOrder": [{"port": 80}]}}),
            400,
        ),
        (
            "$setElementOrder paired with a non-list",
            SERVICE,
            &ports,
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": null}}),
            400,
        ),
        ("$retainKeys is not a list", DEPLOYMENT, &ports, json!({"spec": {"$retainKeys": "type"}}), 400),
        ("field missing from $retainKeys", DEPLOYMENT, &ports, json!({"spec": {"$retainKeys": ["a"], "b": 1}}), 400),
        (
            "$deleteFromPrimitiveList is not a list",
            SERVICE,
            &finalizers,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            400,
        ),
        (
            "$deleteFromPrimitiveList without a field",
            SERVICE,
            &finalizers,
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            400,
        ),
        ("lists of lists", SERVICE, &empty, json!({"metadata": {"finalizers": [["b"]]}}), 422),
        ("mixed element types", SERVICE, &finalizers, json!({"metadata": {"finalizers": [{"b": 1}]}}), 400),
        ("objects in a keyless merge list", SERVICE, &empty, json!({"metadata": {"finalizers": [{"b": 1}]}}), 400),
        ("kind without directives", ("example.com", "Widget"), &ports, json!({"spec": {}}), 415),
    ];
    for (name, kind, live, patch, code) in cases {
        let error = smp(kind, live, &patch).expect_err(name);
        assert_eq!(error.code(), code, "{name}: {error:?}");
    }
}

#[test]
fn error_messages_name_the_field() {
    let live = json!({"spec": {"ports": [{"name": "a", "port": 80}]}});
    let error = smp(SERVICE, &live, &json!({"spec": {"ports": [{"name": "x"}]}})).expect_err("no merge key");
    assert_eq!(error.message(), "an element of spec.ports ({\"name\":\"x\"}) does not contain its merge key \"port\"");
    let error = smp(SERVICE, &live, &json!({"metadata": {"finalizers": [["b"]]}})).expect_err("list of lists");
    assert!(error.message().contains("metadata.finalizers: lists of lists are not supported"), "{}", error.message());
}

#[test]
fn long_lists_merge_in_reasonable_time() {
    // Lookups are hashed, not rescans: 20000 elements on each side stay well under a second.
    let live_names: Vec<Value> = (0..20_000).map(|i| json!(format!("live-{i}"))).collect();
    let patch_names: Vec<Value> = (0..20_000).map(|i| json!(format!("new-{i}"))).collect();
    let order: Vec<Value> = live_names.iter().chain(&patch_names).cloned().collect();
    let live = json!({"metadata": {"finalizers": live_names}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": order, "finalizers": patch_names}});
    let started = std::time::Instant::now();
    let patched = smp(SERVICE, &live, &patch).expect("applies");
    assert_eq!(patched["metadata"]["finalizers"], json!(order));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}
