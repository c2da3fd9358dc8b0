//! The endpoint controllers (EndpointSlices, Endpoints, mirroring) running as
//! `skiff controllers` against `skiff server`, checked with kubectl as a user would.
//!
//! Pods do not run here: as in upstream's controller integration tests, each test creates
//! Pods bound to a Node object and sets their status (IP, readiness) through the status
//! subresource, then waits for the controllers to publish the result.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::{Controllers, TestServer};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(20);
const NUMBERS_API_SELECTORLESS: &str = include_str!("fixtures/seed003/numbers_api_selectorless.yaml");
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
const MIRROR_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";

/// A server, a node `n1` in zone `zone-a`, and the controllers (metrics on a free port).
struct Cluster {
    server: TestServer,
    metrics_port: u16,
    _controllers: Controllers,
}

impl Cluster {
    fn start() -> Cluster {
        let server = TestServer::start();
        server.apply(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    topology.kubernetes.io/zone: zone-a\n",
        );
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

    /// A Service `name` selecting `app=<app>` with the given extra spec fields.
    fn service(&self, name: &str, app: &str, spec: Value) {
        let mut spec_value =
            json!({"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
        if let (Some(base), Some(extra)) = (spec_value.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let svc = json!({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": name, "labels": {"team": "blue"}}, "spec": spec_value});
        self.server.apply(&svc.to_string());
    }

    /// A pod labelled `app=<app>` on `node`, whose container port `http` is `port`.
    fn pod(&self, name: &str, app: &str, node: &str, port: u16, spec: Value) {
        let mut spec_value = json!({
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                            "ports": [{"name": "http", "containerPort": port}]}]
        });
        if let (Some(base), Some(extra)) = (spec_value.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
                         "spec": spec_value});
        self.server.apply(&pod.to_string());
    }

    /// Sets a pod's IP and Ready condition through the status subresource.
    fn set_status(&self, pod: &str, ip: &str, ready: bool) {
        let status = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        self.kubectl(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    }

    /// The EndpointSlices labelled for Service `name`.
    fn slices(&self, name: &str) -> Vec<Value> {
        let selector = format!("kubernetes.io/service-name={name}");
        let list = self.get_json(&["endpointslices", "-l", &selector]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The slices of Service `name` managed by `controller`.
    fn managed_slices(&self, name: &str, controller: &str) -> Vec<Value> {
        self.slices(name).into_iter().filter(|s| s["metadata"]["labels"][MANAGED_BY] == controller).collect()
    }

    /// The ENDPOINTS column of `kubectl get endpoints <name>`, or None if it does not exist.
    fn endpoints_column(&self, name: &str) -> Option<String> {
        let out = self.server.kubectl(&["get", "endpoints", name, "--no-headers"]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace().nth(1).map(str::to_owned)
    }

    /// Waits until `check` holds, returning its value.
    fn eventually<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        self.server.eventually(what, TIMEOUT, check)
    }

    /// The controllers' Prometheus text.
    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics endpoint");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("metrics response");
        text
    }

    /// Total writes counted by `metric` for `controller`.
    fn writes(&self, metric: &str, controller: &str) -> u64 {
        let wanted = format!("{metric}{{controller=\"{controller}\",");
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(&wanted))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
            .sum()
    }

    fn wait_for_metrics(&self) {
        self.eventually("the metrics endpoint", || {
            std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok().map(|_| ())
        });
    }
}

/// (ready, serving, terminating) of every endpoint in `slices`, by pod name.
fn conditions(slices: &[Value]) -> BTreeMap<String, (Value, Value, Value)> {
    slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            let pod = e["targetRef"]["name"].as_str().unwrap_or_default().to_owned();
            (pod, (c["ready"].clone(), c["serving"].clone(), c["terminating"].clone()))
        })
        .collect()
}

fn endpoint_of<'a>(slices: &'a [Value], pod: &str) -> Option<&'a Value> {
    slices.iter().flat_map(|s| s["endpoints"].as_array().into_iter().flatten()).find(|e| e["targetRef"]["name"] == pod)
}

fn state(ready: bool, serving: bool, terminating: bool) -> (Value, Value, Value) {
    (json!(ready), json!(serving), json!(terminating))
}

#[test]
fn readiness_flips_move_addresses_between_ready_and_not_ready() {
    let c = Cluster::start();
    c.service("web", "web", json!({}));
    c.pod("a", "web", "n1", 8080, json!({}));
    c.pod("b", "web", "n1", 8080, json!({}));
    c.set_status("a", "10.244.1.5", true);
    c.set_status("b", "10.244.1.6", false);

    c.eventually("a ready, b not ready in the Endpoints", || {
        (c.endpoints_column("web").as_deref() == Some("10.244.1.5:8080")).then_some(())
    });
    let endpoints = c.get_json(&["endpoints", "web"]);
    assert_eq!(endpoints["subsets"][0]["notReadyAddresses"][0]["ip"], "10.244.1.6", "{endpoints}");
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["nodeName"], "n1");
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["targetRef"]["name"], "a");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["name"], "http");
    assert_eq!(endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true");
    assert_eq!(endpoints["metadata"]["labels"]["team"], "blue");

    let slices = c.eventually("one slice with both pods", || {
        let slices = c.slices("web");
        (conditions(&slices).len() == 2).then_some(slices)
    });
    assert_eq!(slices.len(), 1, "{slices:?}");
    let slice = &slices[0];
    let name = slice["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    assert!(name.starts_with("web-") && name.len() > 4, "generated name: {name}");
    assert_eq!(slice["metadata"]["labels"][MANAGED_BY], SLICE_CONTROLLER);
    assert_eq!(slice["metadata"]["labels"]["team"], "blue", "Service labels are copied");
    assert_eq!(slice["addressType"], "IPv4");
    let service = c.get_json(&["service", "web"]);
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!((&owner["kind"], &owner["name"]), (&json!("Service"), &json!("web")));
    assert_eq!(owner["uid"], service["metadata"]["uid"]);
    assert_eq!((&owner["controller"], &owner["blockOwnerDeletion"]), (&json!(true), &json!(true)));
    assert_eq!(slice["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]));
    let a = endpoint_of(&slices, "a").expect("endpoint a");
    assert_eq!(a["addresses"], json!(["10.244.1.5"]));
    assert_eq!((&a["nodeName"], &a["zone"]), (&json!("n1"), &json!("zone-a")));
    assert_eq!(a["targetRef"]["kind"], "Pod");
    assert_eq!(a["targetRef"]["namespace"], "default");
    assert!(a["targetRef"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(conditions(&slices)["a"], state(true, true, false));
    assert_eq!(conditions(&slices)["b"], state(false, false, false));

    c.set_status("b", "10.244.1.6", true);
    c.eventually("both ready in the Endpoints", || {
        (c.endpoints_column("web").as_deref() == Some("10.244.1.5:8080,10.244.1.6:8080")).then_some(())
    });
    let slices = c.eventually("b ready in the slice", || {
        let slices = c.slices("web");
        (conditions(&slices).get("b") == Some(&state(true, true, false))).then_some(slices)
    });
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0]["metadata"]["name"], name.as_str(), "the slice is updated in place");

    c.set_status("a", "10.244.1.5", false);
    c.eventually("a not ready", || (c.endpoints_column("web").as_deref() == Some("10.244.1.6:8080")).then_some(()));
    c.eventually("a not ready in the slice", || {
        (conditions(&c.slices("web")).get("a") == Some(&state(false, false, false))).then_some(())
    });
    let out = c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web"]);
    assert!(out.contains(&name) && out.contains("IPv4") && out.contains("8080"), "{out}");
}

#[test]
fn named_target_port_resolves_per_pod() {
    let c = Cluster::start();
    c.service("web", "web", json!({"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
    c.pod("a", "web", "n1", 8080, json!({}));
    c.pod("b", "web", "n1", 9090, json!({}));
    c.set_status("a", "10.244.2.5", true);
    c.set_status("b", "10.244.2.6", true);
    let slices = c.eventually("two slices, one per resolved port", || {
        let slices = c.slices("web");
        (slices.len() == 2 && conditions(&slices).len() == 2).then_some(slices)
    });
    let mut by_port: Vec<(i64, String)> = slices
        .iter()
        .map(|s| {
            let port = s["ports"][0]["port"].as_i64().unwrap_or_default();
            assert_eq!(s["ports"][0]["name"], "http");
            assert_eq!(s["endpoints"].as_array().map(Vec::len), Some(1), "{s}");
            (port, s["endpoints"][0]["targetRef"]["name"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    by_port.sort();
    assert_eq!(by_port, [(8080, "a".to_owned()), (9090, "b".to_owned())]);
    let column = c.eventually("both addresses in the Endpoints", || {
        c.endpoints_column("web").filter(|col| col.contains("10.244.2.5:8080") && col.contains("10.244.2.6:9090"))
    });
    assert_eq!(column.split(',').count(), 2);
    let endpoints = c.get_json(&["endpoints", "web"]);
    assert_eq!(endpoints["subsets"].as_array().map(Vec::len), Some(2), "repacked by port: {endpoints}");
}

#[test]
fn publish_not_ready_addresses_publishes_everything_as_ready() {
    let c = Cluster::start();
    c.service("web", "web", json!({"publishNotReadyAddresses": true}));
    c.pod("a", "web", "n1", 8080, json!({}));
    c.set_status("a", "10.244.3.5", false);
    c.eventually("the not-ready pod listed as ready", || {
        (c.endpoints_column("web").as_deref() == Some("10.244.3.5:8080")).then_some(())
    });
    let slices = c.eventually("the pod in the slice", || {
        let slices = c.slices("web");
        (!conditions(&slices).is_empty()).then_some(slices)
    });
    assert_eq!(conditions(&slices)["a"], state(true, false, false));
}

#[test]
fn hostname_is_published_for_pods_whose_subdomain_is_the_service() {
    let c = Cluster::start();
    c.service("web", "web", json!({"clusterIP": "None"}));
    c.pod("a", "web", "n1", 8080, json!({"hostname": "web-0", "subdomain": "web"}));
    c.pod("b", "web", "n1", 8080, json!({"hostname": "web-1", "subdomain": "other"}));
    c.set_status("a", "10.244.4.5", true);
    c.set_status("b", "10.244.4.6", true);
    let slices = c.eventually("both pods in the slice", || {
        let slices = c.slices("web");
        (conditions(&slices).len() == 2).then_some(slices)
    });
    assert_eq!(endpoint_of(&slices, "a").map(|e| e["hostname"].clone()), Some(json!("web-0")));
    assert_eq!(endpoint_of(&slices, "b").map(|e| e["hostname"].clone()), Some(Value::Null));
    assert_eq!(slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    let endpoints = c.eventually("the Endpoints", || {
        let e = c.get_json(&["endpoints", "web"]);
        (e["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(2)).then_some(e)
    });
    let hostnames: BTreeMap<String, Value> = endpoints["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (a["targetRef"]["name"].as_str().unwrap_or_default().to_owned(), a["hostname"].clone()))
        .collect();
    assert_eq!(hostnames["a"], "web-0");
    assert_eq!(hostnames["b"], Value::Null);
}

#[test]
fn terminating_pods_stay_serving_but_not_ready() {
    let c = Cluster::start();
    c.service("web", "web", json!({}));
    c.pod("a", "web", "n1", 8080, json!({"terminationGracePeriodSeconds": 600}));
    c.set_status("a", "10.244.5.5", true);
    c.eventually("a ready", || (c.endpoints_column("web").as_deref() == Some("10.244.5.5:8080")).then_some(()));
    // Bound to a node, the pod stays (with a deletionTimestamp) until its node agent stops it.
    c.kubectl(&["delete", "pod", "a", "--wait=false"]);
    c.eventually("a terminating in the slice", || {
        (conditions(&c.slices("web")).get("a") == Some(&state(false, true, true))).then_some(())
    });
    c.eventually("a gone from the Endpoints", || {
        (c.endpoints_column("web").as_deref() == Some("<none>")).then_some(())
    });
    let pod = c.get_json(&["pod", "a"]);
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
}

#[test]
fn pods_on_unknown_nodes_wait_for_their_node() {
    let c = Cluster::start();
    c.service("web", "web", json!({}));
    c.pod("a", "web", "n2", 8080, json!({}));
    c.set_status("a", "10.244.6.5", true);
    c.eventually("a FailedToUpdateEndpointSlices event", || {
        let events = c.get_json(&["events"]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["reason"] == "FailedToUpdateEndpointSlices"
                    && e["involvedObject"]["name"] == "web"
                    && e["type"] == "Warning"
                    && e["message"].as_str().is_some_and(|m| m.contains("Node n2 Not Found"))
            })
            .map(|_| ())
    });
    assert!(conditions(&c.slices("web")).is_empty());
    c.server.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n");
    let slices = c.eventually("a published once n2 exists", || {
        let slices = c.slices("web");
        (!conditions(&slices).is_empty()).then_some(slices)
    });
    let a = endpoint_of(&slices, "a").expect("endpoint a");
    assert_eq!(a["nodeName"], "n2");
    assert_eq!(a["zone"], Value::Null, "n2 has no zone label");
}

#[test]
fn selectorless_service_endpoints_are_mirrored_and_hand_written_slices_left_alone() {
    let c = Cluster::start();
    c.server.apply(NUMBERS_API_SELECTORLESS);
    let manual = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "numbers-api-manual", "labels": {"kubernetes.io/service-name": "numbers-api"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["192.168.123.240"]}], "ports": [{"port": 80}]});
    c.server.apply(&manual.to_string());
    let manual_rv = c.get_json(&["endpointslice", "numbers-api-manual"])["metadata"]["resourceVersion"].clone();

    let mirrored = c.eventually("a mirrored slice", || c.managed_slices("numbers-api", MIRROR_CONTROLLER).pop());
    let name = mirrored["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    assert!(name.starts_with("numbers-api-") && name != "numbers-api-manual", "{name}");
    let endpoints = c.get_json(&["endpoints", "numbers-api"]);
    let owner = &mirrored["metadata"]["ownerReferences"][0];
    assert_eq!((&owner["kind"], &owner["name"]), (&json!("Endpoints"), &json!("numbers-api")));
    assert_eq!(owner["uid"], endpoints["metadata"]["uid"]);
    assert_eq!(mirrored["metadata"]["labels"]["kubernetes.io/service-name"], "numbers-api");
    assert_eq!(mirrored["endpoints"][0]["addresses"], json!(["192.168.123.234"]));
    assert_eq!(mirrored["endpoints"][0]["conditions"]["ready"], true);
    assert_eq!(mirrored["ports"][0]["port"], 80);
    // The Endpoints controller leaves a selector-less Service's Endpoints alone.
    assert_eq!(endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], Value::Null);
    assert_eq!(
        endpoints["subsets"],
        json!([{"addresses": [{"ip": "192.168.123.234"}], "ports": [{"port": 80, "protocol": "TCP"}]}])
    );
    // The API server's own `kubernetes` Endpoints (skip-mirror) has only its hand-made slice.
    let kubernetes = c.slices("kubernetes");
    assert_eq!(kubernetes.len(), 1, "{kubernetes:?}");
    assert_eq!(kubernetes[0]["metadata"]["name"], "kubernetes");

    // Not-ready addresses are mirrored as not ready, in the same slice.
    let changed = json!({"subsets": [{"addresses": [{"ip": "192.168.123.234"}],
        "notReadyAddresses": [{"ip": "192.168.123.235"}], "ports": [{"port": 80}]}]});
    c.kubectl(&["patch", "endpoints", "numbers-api", "--type=merge", "-p", &changed.to_string()]);
    let mirrored = c.eventually("the not-ready address mirrored", || {
        c.managed_slices("numbers-api", MIRROR_CONTROLLER)
            .pop()
            .filter(|s| s["endpoints"].as_array().map(Vec::len) == Some(2))
    });
    assert_eq!(mirrored["metadata"]["name"], name.as_str());
    let ready: BTreeMap<String, Value> = mirrored["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["addresses"][0].as_str().unwrap_or_default().to_owned(), e["conditions"]["ready"].clone()))
        .collect();
    assert_eq!(ready["192.168.123.234"], true);
    assert_eq!(ready["192.168.123.235"], false);

    // Gaining a selector hands the Service to the EndpointSlice controller.
    c.kubectl(&["patch", "service", "numbers-api", "--type=merge", "-p", r#"{"spec":{"selector":{"app":"numbers"}}}"#]);
    c.eventually("mirrored slices removed", || {
        c.managed_slices("numbers-api", MIRROR_CONTROLLER).is_empty().then_some(())
    });
    c.eventually("the EndpointSlice controller's placeholder", || {
        (!c.managed_slices("numbers-api", SLICE_CONTROLLER).is_empty()).then_some(())
    });
    let manual_now = c.get_json(&["endpointslice", "numbers-api-manual"]);
    assert_eq!(manual_now["metadata"]["resourceVersion"], manual_rv, "the hand-written slice is never written");
}

#[test]
fn deleting_the_owner_removes_slices_and_endpoints() {
    let c = Cluster::start();
    c.service("web", "web", json!({}));
    c.pod("a", "web", "n1", 8080, json!({}));
    c.set_status("a", "10.244.7.5", true);
    c.eventually("a published", || (c.endpoints_column("web").as_deref() == Some("10.244.7.5:8080")).then_some(()));
    c.eventually("a in the slice", || (!conditions(&c.slices("web")).is_empty()).then_some(()));
    c.kubectl(&["delete", "service", "web"]);
    c.eventually("slices removed", || c.managed_slices("web", SLICE_CONTROLLER).is_empty().then_some(()));
    c.eventually("Endpoints removed", || c.endpoints_column("web").is_none().then_some(()));

    // A Service that loses its selector loses the controller's slices too.
    c.service("api", "api", json!({}));
    c.eventually("api's placeholder slice", || (!c.managed_slices("api", SLICE_CONTROLLER).is_empty()).then_some(()));
    c.kubectl(&["patch", "service", "api", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/selector"}]"#]);
    c.eventually("api's slices removed", || c.managed_slices("api", SLICE_CONTROLLER).is_empty().then_some(()));

    // Mirrored slices go with their Endpoints.
    c.server.apply(NUMBERS_API_SELECTORLESS);
    c.eventually("a mirrored slice", || (!c.managed_slices("numbers-api", MIRROR_CONTROLLER).is_empty()).then_some(()));
    c.kubectl(&["delete", "endpoints", "numbers-api"]);
    c.eventually("mirrored slice removed", || {
        c.managed_slices("numbers-api", MIRROR_CONTROLLER).is_empty().then_some(())
    });
}

#[test]
fn nothing_is_written_when_nothing_changed() {
    let c = Cluster::start();
    c.wait_for_metrics();
    c.service("web", "web", json!({}));
    c.service("other", "other", json!({}));
    c.pod("a", "web", "n1", 8080, json!({}));
    c.pod("b", "web", "n1", 8080, json!({}));
    c.pod("o", "other", "n1", 8080, json!({}));
    c.set_status("a", "10.244.8.5", true);
    c.set_status("b", "10.244.8.6", false);
    c.set_status("o", "10.244.8.7", false);
    c.eventually("web settled", || {
        let states = conditions(&c.slices("web"));
        let settled =
            states.get("a") == Some(&state(true, true, false)) && states.get("b") == Some(&state(false, false, false));
        (settled && c.endpoints_column("web").as_deref() == Some("10.244.8.5:8080")).then_some(())
    });
    c.eventually("other settled", || (conditions(&c.slices("other")).len() == 1).then_some(()));
    let slice_rv = |name: &str| c.slices(name)[0]["metadata"]["resourceVersion"].clone();
    let endpoints_rv = || c.get_json(&["endpoints", "web"])["metadata"]["resourceVersion"].clone();
    let (web_slice, web_endpoints) = (slice_rv("web"), endpoints_rv());
    let slice_writes = c.writes("skiff_endpointslice_writes_total", "endpointslice");
    let endpoints_writes = c.writes("skiff_endpoints_writes_total", "endpoints");

    // A label no selector looks at, then a change elsewhere to know the first was seen.
    c.kubectl(&["label", "pod", "a", "unrelated=yes"]);
    c.set_status("o", "10.244.8.7", true);
    c.eventually("other's pod ready", || {
        (conditions(&c.slices("other")).get("o") == Some(&state(true, true, false))
            && c.endpoints_column("other").as_deref() == Some("10.244.8.7:8080"))
        .then_some(())
    });
    assert_eq!(slice_rv("web"), web_slice, "web's slice was not written");
    assert_eq!(endpoints_rv(), web_endpoints, "web's Endpoints was not written");
    assert_eq!(c.writes("skiff_endpointslice_writes_total", "endpointslice"), slice_writes + 1, "one slice write");
    assert_eq!(c.writes("skiff_endpoints_writes_total", "endpoints"), endpoints_writes + 1, "one Endpoints write");

    // A readiness flip is one write of each kind, in place.
    c.set_status("b", "10.244.8.6", true);
    c.eventually("b ready", || {
        (conditions(&c.slices("web")).get("b") == Some(&state(true, true, false))).then_some(())
    });
    c.eventually("one more write of each", || {
        (c.writes("skiff_endpoints_writes_total", "endpoints") == endpoints_writes + 2).then_some(())
    });
    assert_eq!(c.writes("skiff_endpointslice_writes_total", "endpointslice"), slice_writes + 2);
}
