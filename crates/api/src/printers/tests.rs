//! One representative object (or a few) per kind, with the cells upstream prints for it.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T12:00:00Z").unwrap().with_timezone(&Utc)
}

/// Created ten minutes before [`now`].
const CREATED: &str = "2024-01-01T11:50:00Z";

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": CREATED, "uid": "u-1", "resourceVersion": "7"})
}

fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
    let table = table(group, kind, std::slice::from_ref(&object), now());
    assert_eq!(table.rows.len(), 1);
    let row = table.rows.into_iter().next().unwrap();
    assert_eq!(row.cells.len(), table.column_definitions.len(), "{kind}: one cell per column");
    row.cells
}

fn columns(group: &str, kind: &str) -> Vec<(String, i32)> {
    table(group, kind, &[], now()).column_definitions.into_iter().map(|c| (c.name, c.priority)).collect()
}

fn names(columns: &[(String, i32)]) -> Vec<&str> {
    columns.iter().map(|(name, _)| name.as_str()).collect()
}

fn wide(columns: &[(String, i32)]) -> Vec<&str> {
    columns.iter().filter(|(_, p)| *p == 1).map(|(name, _)| name.as_str()).collect()
}

#[test]
fn column_sets_match_upstream() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("", "Service", &["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"], &["Selector"]),
        ("", "Endpoints", &["Name", "Endpoints", "Age"], &[]),
        ("discovery.k8s.io", "EndpointSlice", &["Name", "AddressType", "Ports", "Endpoints", "Age"], &[]),
        (
            "",
            "Pod",
            &["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"],
            &["IP", "Node", "Nominated Node", "Readiness Gates"],
        ),
        (
            "apps",
            "Deployment",
            &["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
            &["Containers", "Images", "Selector"],
        ),
        (
            "apps",
            "ReplicaSet",
            &["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"],
            &["Containers", "Images", "Selector"],
        ),
        ("networking.k8s.io", "Ingress", &["Name", "Class", "Hosts", "Address", "Ports", "Age"], &[]),
        ("networking.k8s.io", "IngressClass", &["Name", "Controller", "Parameters", "Age"], &[]),
        (
            "",
            "Node",
            &[
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
            &["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"],
        ),
        ("", "Namespace", &["Name", "Status", "Age"], &[]),
        ("", "Secret", &["Name", "Type", "Data", "Age"], &[]),
        ("", "ConfigMap", &["Name", "Data", "Age"], &[]),
        ("", "ServiceAccount", &["Name", "Secrets", "Age"], &[]),
        ("coordination.k8s.io", "Lease", &["Name", "Holder", "Age"], &[]),
        (
            "",
            "Event",
            &["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"],
            &["Subobject", "Source", "First Seen", "Count", "Name"],
        ),
        ("apps", "StatefulSet", &["Name", "Created At"], &[]),
        ("example.com", "Widget", &["Name", "Created At"], &[]),
    ];
    for (group, kind, all, wide_ones) in cases {
        let cols = columns(group, kind);
        assert_eq!(names(&cols), *all, "{kind}");
        assert_eq!(wide(&cols), *wide_ones, "{kind}");
    }
    let pod = table("", "Pod", &[], now());
    let name = &pod.column_definitions[0];
    assert_eq!((name.type_.as_str(), name.format.as_str()), ("string", "name"));
    assert!(name.description.starts_with("Name must be unique within a namespace."));
    assert_eq!(pod.column_definitions[3].type_, "string", "Restarts is a string column");
    let rs = table("apps", "ReplicaSet", &[], now());
    assert_eq!(rs.column_definitions[1].type_, "integer");
    let generic = table("", "Widget", &[], now());
    assert_eq!(generic.column_definitions[1].type_, "date");
}

#[test]
fn services() {
    let cluster_ip = json!({
        "metadata": meta("web"),
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                 "selector": {"tier": "front", "app": "web"}},
    });
    assert_eq!(
        cells("", "Service", cluster_ip),
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80/TCP,53/UDP"),
            json!("10m"),
            json!("app=web,tier=front")
        ]
    );
    let node_port = json!({
        "metadata": meta("np"),
        "spec": {"type": "NodePort", "clusterIP": "10.96.1.2", "externalIPs": ["1.1.1.1", "2.2.2.2"],
                 "ports": [{"port": 8080, "nodePort": 30080, "protocol": "TCP"}]},
    });
    let c = cells("", "Service", node_port);
    assert_eq!(
        (&c[2], &c[3], &c[4], &c[6]),
        (&json!("10.96.1.2"), &json!("1.1.1.1,2.2.2.2"), &json!("8080:30080/TCP"), &json!("<none>"))
    );
    let pending = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}});
    assert_eq!(cells("", "Service", pending)[3], json!("<pending>"));
    let lb = json!({
        "metadata": meta("lb"),
        "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.5"], "externalIPs": ["9.9.9.9"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}, {"ip": "203.0.113.10"}]}},
    });
    let c = cells("", "Service", lb);
    assert_eq!((&c[3], &c[4]), (&json!("203.0.113.10,203.0.113.20,9.9.9.9"), &json!("<none>")));
    let lb_only = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer"},
                         "status": {"loadBalancer": {"ingress": [{"hostname": "a-very-long-name.elb.example.com"}]}}});
    let c = cells("", "Service", lb_only);
    assert_eq!((&c[2], &c[3]), (&json!("<none>"), &json!("a-very-long-name.elb.example.com")));
    let external_name =
        json!({"metadata": meta("db"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let c = cells("", "Service", external_name);
    assert_eq!(
        (&c[1], &c[2], &c[3], &c[4]),
        (&json!("ExternalName"), &json!("<none>"), &json!("db.example.com"), &json!("<none>"))
    );
    let headless =
        json!({"metadata": meta("h"), "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}});
    assert_eq!(cells("", "Service", headless)[2], json!("None"));
    let untyped = json!({"metadata": meta("x"), "spec": {}});
    assert_eq!(cells("", "Service", untyped)[3], json!("<unknown>"));
}

#[test]
fn endpoints() {
    let five = json!({
        "metadata": meta("web"),
        "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.0.1.1"}, {"ip": "10.0.1.2"}, {"ip": "10.0.1.3"}], "ports": [{"port": 8080}]},
        ],
    });
    assert_eq!(
        cells("", "Endpoints", five),
        vec![json!("web"), json!("10.0.0.1:80,10.0.0.2:80,10.0.1.1:8080 + 2 more..."), json!("10m")]
    );
    let none = json!({"metadata": meta("empty")});
    assert_eq!(cells("", "Endpoints", none)[1], json!("<none>"));
    let not_ready = json!({"metadata": meta("nr"), "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", not_ready)[1], json!(""));
    let headless = json!({"metadata": meta("h"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}]});
    assert_eq!(cells("", "Endpoints", headless)[1], json!("10.0.0.1,fd00::1"));
    let v6 = json!({"metadata": meta("v6"), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}]});
    assert_eq!(cells("", "Endpoints", v6)[1], json!("[fd00::1]:80,[fd00::1]:443"));
}

#[test]
fn endpoint_slices() {
    let slice = json!({
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics"}, {}, {"port": 9090}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.2"]},
        ],
    });
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", slice),
        vec![
            json!("web-abc12"),
            json!("IPv4"),
            json!("80,metrics,* + 1 more..."),
            json!("10.0.0.1,10.0.0.2"),
            json!("10m")
        ]
    );
    let empty = json!({"metadata": meta("e"), "addressType": "IPv6"});
    assert_eq!(cells("discovery.k8s.io", "EndpointSlice", empty)[2..4], [json!("<unset>"), json!("<unset>")]);
}

fn running_pod() -> Value {
    json!({
        "metadata": meta("web-1"),
        "spec": {"nodeName": "node-1", "containers": [{"name": "app"}, {"name": "sidecar"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {"startedAt": "2024-01-01T11:56:00Z"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}}},
                {"name": "sidecar", "ready": true, "restartCount": 3, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:57:00Z"}}},
            ],
        },
    })
}

#[test]
fn pods() {
    assert_eq!(
        cells("", "Pod", running_pod()),
        vec![
            json!("web-1"),
            json!("2/2"),
            json!("Running"),
            json!("5 (3m ago)"),
            json!("10m"),
            json!("10.244.1.5"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>"),
        ]
    );

    let pending =
        json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "Pod", pending),
        vec![
            json!("p"),
            json!("0/1"),
            json!("Pending"),
            json!("0"),
            json!("10m"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

/// STATUS for a range of container situations.
#[test]
fn pod_status_reasons() {
    let pod = |status: Value, extra_spec: Value, deletion: bool| {
        let mut spec = json!({"containers": [{"name": "app"}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            spec.extend(extra.clone());
        }
        let mut metadata = meta("p");
        if deletion {
            metadata["deletionTimestamp"] = json!("2024-01-01T11:59:00Z");
        }
        json!({"metadata": metadata, "spec": spec, "status": status})
    };
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "waiting",
            pod(
                json!({"phase": "Pending", "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                json!({}),
                false,
            ),
            "ContainerCreating",
            "0/1",
        ),
        (
            "crash loop",
            pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                json!({}),
                false,
            ),
            "CrashLoopBackOff",
            "0/1",
        ),
        (
            "completed",
            pod(
                json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                json!({}),
                false,
            ),
            "Completed",
            "0/1",
        ),
        (
            "exit code",
            pod(
                json!({"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 3}}}]}),
                json!({}),
                false,
            ),
            "ExitCode:3",
            "0/1",
        ),
        (
            "signal",
            pod(
                json!({"phase": "Failed", "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                json!({}),
                false,
            ),
            "Signal:9",
            "0/1",
        ),
        ("pod reason", pod(json!({"phase": "Failed", "reason": "Evicted"}), json!({}), false), "Evicted", "0/1"),
        (
            "scheduling gated",
            pod(
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                json!({}),
                false,
            ),
            "SchedulingGated",
            "0/1",
        ),
        (
            "terminating",
            pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
                json!({}),
                true,
            ),
            "Terminating",
            "1/1",
        ),
        ("deleted but finished", pod(json!({"phase": "Succeeded"}), json!({}), true), "Succeeded", "0/1"),
        ("node lost", pod(json!({"phase": "Running", "reason": "NodeLost"}), json!({}), true), "Unknown", "0/1"),
        (
            "init waiting",
            pod(
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-a", "state": {"terminated": {"exitCode": 0}}},
                    {"name": "init-b", "state": {"waiting": {"reason": "PodInitializing"}}},
                ]}),
                json!({"initContainers": [{"name": "init-a"}, {"name": "init-b"}]}),
                false,
            ),
            "Init:1/2",
            "0/1",
        ),
        (
            "init crash",
            pod(
                json!({"phase": "Pending", "initContainerStatuses": [{"name": "init-a", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                json!({"initContainers": [{"name": "init-a"}]}),
                false,
            ),
            "Init:CrashLoopBackOff",
            "0/1",
        ),
        (
            "init failed",
            pod(
                json!({"phase": "Pending", "initContainerStatuses": [{"name": "init-a", "state": {"terminated": {"exitCode": 2}}}]}),
                json!({"initContainers": [{"name": "init-a"}]}),
                false,
            ),
            "Init:ExitCode:2",
            "0/1",
        ),
        (
            "init failed with reason",
            pod(
                json!({"phase": "Pending", "initContainerStatuses": [{"name": "init-a", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
                json!({"initContainers": [{"name": "init-a"}]}),
                false,
            ),
            "Init:Error",
            "0/1",
        ),
        (
            "sidecar running",
            pod(
                json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                       "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "state": {"running": {}}}],
                       "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
                json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}]}),
                false,
            ),
            "Running",
            "2/2",
        ),
        (
            "one completed one running, not ready",
            pod(
                json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": true, "state": {"running": {}}},
                    {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                ]}),
                json!({"containers": [{"name": "app"}, {"name": "job"}]}),
                false,
            ),
            "NotReady",
            "1/2",
        ),
        (
            "one completed one running, ready",
            pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                    {"name": "app", "ready": true, "state": {"running": {}}},
                    {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                ]}),
                json!({"containers": [{"name": "app"}, {"name": "job"}]}),
                false,
            ),
            "Running",
            "1/2",
        ),
    ];
    for (label, object, status, ready) in cases {
        let c = cells("", "Pod", object);
        assert_eq!((c[2].as_str().unwrap(), c[1].as_str().unwrap()), (status, ready), "{label}");
    }
}

#[test]
fn pod_restarts_and_gates() {
    // Restarts of failed init containers count while the pod initializes.
    let initializing = json!({
        "metadata": meta("p"),
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}],
                 "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]},
        "status": {"phase": "Pending",
                   "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}],
                   "initContainerStatuses": [{"name": "init", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                              "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:59:30Z"}}}]},
    });
    let c = cells("", "Pod", initializing);
    assert_eq!(c[3], json!("3 (30s ago)"));
    assert_eq!(c[8], json!("1/2"));
    // Restarts without a recorded termination time have no "ago".
    let no_time = json!({"metadata": meta("p"), "spec": {"containers": [{"name": "app"}]},
                         "status": {"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 1, "ready": true, "state": {"running": {}}}]}});
    assert_eq!(cells("", "Pod", no_time)[3], json!("1"));
    // IP falls back to status.podIP; nominated node is shown.
    let nominated = json!({"metadata": meta("p"), "spec": {}, "status": {"phase": "Pending", "podIP": "10.0.0.9", "nominatedNodeName": "node-2"}});
    let c = cells("", "Pod", nominated);
    assert_eq!((&c[5], &c[7]), (&json!("10.0.0.9"), &json!("node-2")));
}

#[test]
fn pod_row_conditions() {
    let done = json!({"metadata": meta("p"), "spec": {}, "status": {"phase": "Succeeded"}});
    let t = table("", "Pod", std::slice::from_ref(&done), now());
    assert_eq!(t.rows[0].conditions[0].reason, "Succeeded");
    let rendered = t.to_json(std::slice::from_ref(&done), IncludeObject::None);
    assert_eq!(
        rendered["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );
    let failed = json!({"metadata": meta("p"), "spec": {}, "status": {"phase": "Failed"}});
    assert_eq!(table("", "Pod", &[failed], now()).rows[0].conditions[0].message, "The pod failed.");
    assert!(table("", "Pod", &[running_pod()], now()).rows[0].conditions.is_empty());
}

fn template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
}

#[test]
fn deployments() {
    let deployment = json!({
        "metadata": meta("web"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                 "template": template(json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]))},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "Deployment", deployment),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("10m"),
            json!("nginx,log"),
            json!("nginx:1.25,busybox"),
            json!("app=web,tier in (a,b)")
        ]
    );
    let fresh = json!({"metadata": meta("new"), "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template(json!([]))}});
    let c = cells("apps", "Deployment", fresh);
    assert_eq!((&c[1], &c[2], &c[3]), (&json!("0/1"), &json!(0), &json!(0)));
    let bad = json!({"metadata": meta("bad"), "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
    assert_eq!(cells("apps", "Deployment", bad)[7], json!("<invalid>"));
}

#[test]
fn replica_sets() {
    let rs = json!({
        "metadata": meta("web-5d4f"),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                 "template": template(json!([{"name": "nginx", "image": "nginx"}]))},
        "status": {"replicas": 2, "readyReplicas": 1},
    });
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        vec![
            json!("web-5d4f"),
            json!(2),
            json!(2),
            json!(1),
            json!("10m"),
            json!("nginx"),
            json!("nginx"),
            json!("app=web,pod-template-hash=5d4f")
        ]
    );
    let empty = json!({"metadata": meta("e"), "spec": {"replicas": 0, "selector": {}}});
    let c = cells("apps", "ReplicaSet", empty);
    assert_eq!((&c[1], &c[7]), (&json!(0), &json!("<none>")));
    let bad =
        json!({"metadata": meta("b"), "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
    assert_eq!(cells("apps", "ReplicaSet", bad)[7], json!("<error>"));
}

#[test]
fn ingresses() {
    let ingress = json!({
        "metadata": meta("web"),
        "spec": {"ingressClassName": "nginx",
                 "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
                 "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.10"}]}},
    });
    assert_eq!(
        cells("networking.k8s.io", "Ingress", ingress),
        vec![
            json!("web"),
            json!("nginx"),
            json!("a.example.com,b.example.com"),
            json!("172.30.0.10"),
            json!("80, 443"),
            json!("10m")
        ]
    );
    let bare = json!({"metadata": meta("catch-all"), "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", bare),
        vec![json!("catch-all"), json!("<none>"), json!("*"), json!(""), json!("80"), json!("10m")]
    );
    let many = json!({"metadata": meta("many"), "spec": {"rules": [
        {"host": "a"}, {}, {"host": "c"}, {"host": "d"}, {"host": "e"}, {"host": "f"}
    ]}});
    // The host-less rule takes no slot in the list but counts in "+ N more".
    assert_eq!(cells("networking.k8s.io", "Ingress", many)[2], json!("a,c,d + 3 more..."));
}

#[test]
fn ingress_classes() {
    let class = json!({
        "metadata": {"name": "nginx", "creationTimestamp": CREATED},
        "spec": {"controller": "k8s.io/ingress-nginx",
                 "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}},
    });
    assert_eq!(
        cells("networking.k8s.io", "IngressClass", class),
        vec![
            json!("nginx"),
            json!("k8s.io/ingress-nginx"),
            json!("IngressParameters.k8s.example.com/external-lb"),
            json!("10m")
        ]
    );
    let core_params = json!({"metadata": {"name": "c"}, "spec": {"controller": "x", "parameters": {"kind": "ConfigMap", "name": "cfg"}}});
    assert_eq!(cells("networking.k8s.io", "IngressClass", core_params)[2], json!("ConfigMap/cfg"));
    let plain = json!({"metadata": {"name": "p"}, "spec": {"controller": "x"}});
    let c = cells("networking.k8s.io", "IngressClass", plain);
    assert_eq!((&c[2], &c[3]), (&json!("<none>"), &json!("<unknown>")));
}

#[test]
fn nodes() {
    let node = json!({
        "metadata": {"name": "node-1", "creationTimestamp": "2023-12-30T09:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "", "kubernetes.io/role": "worker", "kubernetes.io/hostname": "node-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "172.30.0.2"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": ""},
        },
    });
    assert_eq!(
        cells("", "Node", node),
        vec![
            json!("node-1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,worker"),
            json!("2d3h"),
            json!("v1.33.0"),
            json!("172.30.0.2"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0"),
            json!("<unknown>"),
        ]
    );
    let not_ready =
        json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let c = cells("", "Node", not_ready);
    assert_eq!((&c[1], &c[2]), (&json!("NotReady"), &json!("<none>")));
    let fresh = json!({"metadata": {"name": "n"}});
    assert_eq!(cells("", "Node", fresh)[1], json!("Unknown"));
}

#[test]
fn small_kinds() {
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": CREATED}, "status": {"phase": "Active"}});
    assert_eq!(cells("", "Namespace", ns), vec![json!("kube-system"), json!("Active"), json!("10m")]);
    let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(cells("", "Secret", secret), vec![json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("10m")]);
    let config_map = json!({"metadata": meta("cfg"), "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(cells("", "ConfigMap", config_map), vec![json!("cfg"), json!(2), json!("10m")]);
    let empty_config_map = json!({"metadata": meta("empty")});
    assert_eq!(cells("", "ConfigMap", empty_config_map)[1], json!(0));
    let account = json!({"metadata": meta("default"), "secrets": [{"name": "default-token"}]});
    assert_eq!(cells("", "ServiceAccount", account), vec![json!("default"), json!(1), json!("10m")]);
    let lease = json!({"metadata": meta("kube-controller-manager"), "spec": {"holderIdentity": "node-1_abc"}});
    assert_eq!(
        cells("coordination.k8s.io", "Lease", lease),
        vec![json!("kube-controller-manager"), json!("node-1_abc"), json!("10m")]
    );
    let free_lease = json!({"metadata": meta("free"), "spec": {}});
    assert_eq!(cells("coordination.k8s.io", "Lease", free_lease)[1], json!(""));
}

#[test]
fn events() {
    let event = json!({
        "metadata": meta("web-1.17a"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-01-01T11:00:00Z",
        "lastTimestamp": "2024-01-01T11:58:00Z",
        "count": 12,
        "type": "Warning",
    });
    assert_eq!(
        cells("", "Event", event),
        vec![
            json!("2m"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting failed container"),
            json!("60m"),
            json!(12),
            json!("web-1.17a"),
        ]
    );
    // A new-style event: eventTime, a series, reporting controller, no count.
    let series = json!({
        "metadata": meta("e2"),
        "involvedObject": {"kind": "Node"},
        "eventTime": "2024-01-01T11:30:00.000000Z",
        "series": {"count": 4, "lastObservedTime": "2024-01-01T11:59:00.000000Z"},
        "reportingComponent": "skiff-controllers",
        "reportingInstance": "controllers-1",
        "type": "Normal",
        "reason": "Sync",
        "message": "ok",
    });
    let c = cells("", "Event", series);
    assert_eq!(
        (&c[0], &c[3], &c[5], &c[7], &c[8]),
        (&json!("60s"), &json!("node"), &json!("skiff-controllers, controllers-1"), &json!("30m"), &json!(4))
    );
    // A singleton without timestamps counts once and is of unknown age.
    let bare = json!({"metadata": meta("e3"), "involvedObject": {"kind": "Service", "name": "web"}, "message": "m"});
    let c = cells("", "Event", bare);
    assert_eq!(
        (&c[0], &c[3], &c[7], &c[8]),
        (&json!("<unknown>"), &json!("service/web"), &json!("<unknown>"), &json!(1))
    );
    // events.k8s.io/v1 names the same fields differently.
    let v1 = json!({
        "metadata": meta("e4"),
        "regarding": {"kind": "Deployment", "name": "web"},
        "note": "Scaled up replica set web-5d4f to 3",
        "reason": "ScalingReplicaSet",
        "type": "Normal",
        "reportingController": "deployment-controller",
        "deprecatedFirstTimestamp": "2024-01-01T11:40:00Z",
        "deprecatedLastTimestamp": "2024-01-01T11:45:00Z",
        "deprecatedCount": 2,
    });
    let c = cells("events.k8s.io", "Event", v1);
    assert_eq!(
        c[..9],
        [
            json!("15m"),
            json!("Normal"),
            json!("ScalingReplicaSet"),
            json!("deployment/web"),
            json!(""),
            json!("deployment-controller"),
            json!("Scaled up replica set web-5d4f to 3"),
            json!("20m"),
            json!(2),
        ]
    );
}

#[test]
fn generic_kinds() {
    let object = json!({"metadata": {"name": "web", "creationTimestamp": "2024-01-01T11:50:00+02:00"}});
    assert_eq!(cells("apps", "StatefulSet", object), vec![json!("web"), json!("2024-01-01T09:50:00Z")]);
    let unborn = json!({"metadata": {"name": "x"}});
    assert_eq!(cells("example.com", "Widget", unborn), vec![json!("x"), json!("0001-01-01T00:00:00Z")]);
}

#[test]
fn table_json() {
    let services = vec![
        json!({"kind": "Service", "apiVersion": "v1", "metadata": meta("a"), "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}}),
        json!({"kind": "Service", "apiVersion": "v1", "metadata": meta("b"), "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.2"}}),
    ];
    let t = table("", "Service", &services, now());

    let with_metadata = t.to_json(&services, IncludeObject::Metadata);
    assert_eq!(with_metadata["kind"], "Table");
    assert_eq!(with_metadata["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(with_metadata["metadata"], json!({}));
    assert_eq!(with_metadata["columnDefinitions"].as_array().unwrap().len(), 7);
    assert_eq!(
        with_metadata["columnDefinitions"][6],
        json!({"name": "Selector", "type": "string", "format": "", "priority": 1,
               "description": "Route service traffic to pods with label keys and values matching this selector."})
    );
    assert_eq!(with_metadata["columnDefinitions"][0]["format"], "name");
    let rows = with_metadata["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["cells"][0], "b");
    assert_eq!(
        rows[1]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("b")})
    );
    assert!(rows[0].get("conditions").is_none());

    let with_object = t.to_json(&services, IncludeObject::Object);
    assert_eq!(with_object["rows"][0]["object"], services[0]);

    let without = t.to_json(&services, IncludeObject::None);
    assert!(without["rows"][0].get("object").is_none());
    assert_eq!(without["rows"][0]["cells"][2], "10.96.0.1");

    let empty = table("", "Service", &[], now()).to_json(&[], IncludeObject::Metadata);
    assert_eq!(empty["rows"], json!([]));
}

#[test]
fn include_object_parameter() {
    assert_eq!(IncludeObject::parse(""), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("Metadata"), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse("Object"), Ok(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("None"), Ok(IncludeObject::None));
    assert_eq!(
        IncludeObject::parse("All"),
        Err("includeObject: Unsupported value: \"All\": supported values: \"Metadata\", \"None\", \"Object\""
            .to_string())
    );
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn field_values() {
    let pod = json!({
        "metadata": {"name": "web-1", "namespace": "prod"},
        "spec": {"restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default", "hostNetwork": true},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
    });
    let ok = |group: &str, kind: &str, obj: &Value, field: &str| field_value(group, kind, obj, field).unwrap();
    let cases: &[(&str, Option<&str>)] = &[
        ("metadata.name", Some("web-1")),
        ("metadata.namespace", Some("prod")),
        ("spec.nodeName", None),
        ("spec.host", None),
        ("spec.restartPolicy", Some("Always")),
        ("spec.schedulerName", Some("default-scheduler")),
        ("spec.serviceAccountName", Some("default")),
        ("spec.hostNetwork", Some("true")),
        ("status.phase", Some("Running")),
        ("status.podIP", Some("10.0.0.1")),
        ("status.nominatedNodeName", None),
    ];
    for (field, want) in cases {
        assert_eq!(ok("", "Pod", &pod, field).as_deref(), *want, "{field}");
    }
    let scheduled = json!({"spec": {"nodeName": "node-1"}});
    assert_eq!(ok("", "Pod", &scheduled, "spec.host").as_deref(), Some("node-1"));
    assert_eq!(ok("", "Pod", &scheduled, "spec.hostNetwork").as_deref(), Some("false"));
    assert_eq!(
        field_value("", "Pod", &pod, "spec.containers"),
        Err("field label not supported: spec.containers".to_string())
    );

    let event = json!({
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "u-1", "apiVersion": "v1", "resourceVersion": "9", "fieldPath": "spec.containers{app}"},
        "reason": "Started", "type": "Normal", "reportingComponent": "kubelet",
    });
    let cases: &[(&str, &str)] = &[
        ("involvedObject.kind", "Pod"),
        ("involvedObject.namespace", "default"),
        ("involvedObject.name", "web-1"),
        ("involvedObject.uid", "u-1"),
        ("involvedObject.apiVersion", "v1"),
        ("involvedObject.resourceVersion", "9"),
        ("involvedObject.fieldPath", "spec.containers{app}"),
        ("reason", "Started"),
        ("reportingComponent", "kubelet"),
        ("source", "kubelet"),
        ("type", "Normal"),
        ("metadata.name", "e"),
    ];
    for (field, want) in cases {
        assert_eq!(ok("", "Event", &event, field).as_deref(), Some(*want), "{field}");
    }
    let sourced = json!({"source": {"component": "scheduler"}, "reportingComponent": "other"});
    assert_eq!(ok("", "Event", &sourced, "source").as_deref(), Some("scheduler"));
    assert!(field_value("", "Event", &event, "message").is_err());

    assert_eq!(ok("", "Secret", &json!({"type": "Opaque"}), "type").as_deref(), Some("Opaque"));
    let svc = json!({"spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP"}});
    assert_eq!(ok("", "Service", &svc, "spec.clusterIP").as_deref(), Some("10.96.0.1"));
    assert_eq!(ok("", "Service", &svc, "spec.type").as_deref(), Some("ClusterIP"));
    assert_eq!(
        field_value("", "Service", &svc, "spec.ports"),
        Err("field label not supported: spec.ports".to_string())
    );
    assert_eq!(
        ok("", "Node", &json!({"spec": {"unschedulable": true}}), "spec.unschedulable").as_deref(),
        Some("true")
    );
    assert_eq!(ok("", "Node", &json!({}), "spec.unschedulable").as_deref(), Some("false"));
    assert_eq!(
        field_value("", "Node", &json!({}), "metadata.namespace"),
        Err("field label not supported: metadata.namespace".to_string())
    );
    assert_eq!(
        ok("", "Namespace", &json!({"status": {"phase": "Terminating"}}), "status.phase").as_deref(),
        Some("Terminating")
    );
    assert!(field_value("", "Namespace", &json!({}), "metadata.namespace").is_err());
    assert_eq!(ok("apps", "ReplicaSet", &json!({"status": {"replicas": 3}}), "status.replicas").as_deref(), Some("3"));
    assert_eq!(ok("apps", "ReplicaSet", &json!({}), "status.replicas").as_deref(), Some("0"));

    // Kinds without their own fields: only metadata, with upstream's generic message.
    let deployment = json!({"metadata": {"name": "web", "namespace": "prod"}});
    assert_eq!(ok("apps", "Deployment", &deployment, "metadata.name").as_deref(), Some("web"));
    assert_eq!(
        ok("networking.k8s.io", "IngressClass", &json!({"metadata": {"name": "c"}}), "metadata.namespace"),
        None
    );
    assert_eq!(
        field_value("networking.k8s.io", "Ingress", &deployment, "foo.bar"),
        Err("\"foo.bar\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".to_string())
    );
}
