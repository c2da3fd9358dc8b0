//! A table of bad requests. Each is sent raw (curl, so nothing is fixed up client-side) and must
//! be answered with kube-apiserver's status code, `Status.reason`, and for `Invalid` the field
//! in `details.causes[]`; afterwards the store must be exactly as before (same objects at the
//! same resourceVersions) and any nodePort / ClusterIP the request named must still be free.
//!
//! All cases share one server; each runs in its own namespace `case-N`. Expectations follow
//! upstream (apimachinery `errors.go`, the core validation and the Service allocators; see
//! /work/shared/reference/apiserver.md), not skiff's current answers.

mod common;

use serde_json::{json, Value};

use common::{HttpReply, HttpRequest, TestServer};

/// How the body of a request is obtained.
enum Body {
    None,
    Json(Value),
    /// Raw bytes with the given content type.
    Raw(&'static str, Vec<u8>),
    /// GET `path` (relative to the namespace), apply `edit`, send as JSON.
    FromLive(&'static str, fn(&mut Value)),
}

/// One row of the table.
struct Case {
    name: &'static str,
    /// Objects created in the case's namespace before the request.
    setup: Vec<Value>,
    method: &'static str,
    /// Path of the request; `{ns}` is replaced by the case's namespace.
    path: String,
    body: Body,
    anonymous: bool,
    /// HTTP/1.1 instead of HTTP/2 (curl cannot read an early 413 on an HTTP/2 stream).
    http1: bool,
    code: u16,
    /// `Status.reason`; empty for a success.
    reason: &'static str,
    /// For `Invalid`: a `details.causes[]` entry with this field (and cause reason, if set).
    field: Option<(&'static str, Option<&'static str>)>,
    /// A substring of `Status.message`.
    message: Option<&'static str>,
    /// A substring of the `Warning` response header.
    warning: Option<&'static str>,
    /// nodePorts / ClusterIPs named by the request: a fresh Service must still get them.
    still_free: Option<(Option<u16>, Option<&'static str>)>,
    /// The request is meant to write (fieldValidation=Warn): skip the unchanged-store check.
    writes: bool,
}

impl Case {
    fn new(name: &'static str, method: &'static str, path: &str, body: Body) -> Case {
        Case {
            name,
            setup: Vec::new(),
            method,
            path: path.to_owned(),
            body,
            anonymous: false,
            http1: false,
            code: 0,
            reason: "",
            field: None,
            message: None,
            warning: None,
            still_free: None,
            writes: false,
        }
    }

    fn post_service(name: &'static str, spec: Value) -> Case {
        Case::new(name, "POST", SERVICES, Body::Json(service("bad", spec)))
    }

    fn setup(mut self, objects: Vec<Value>) -> Case {
        self.setup = objects;
        self
    }

    fn expect(mut self, code: u16, reason: &'static str) -> Case {
        self.code = code;
        self.reason = reason;
        self
    }

    fn field(mut self, field: &'static str, cause: &'static str) -> Case {
        self.field = Some((field, Some(cause)));
        self
    }

    fn message(mut self, message: &'static str) -> Case {
        self.message = Some(message);
        self
    }

    fn still_free(mut self, node_port: Option<u16>, cluster_ip: Option<&'static str>) -> Case {
        self.still_free = Some((node_port, cluster_ip));
        self
    }
}

const SERVICES: &str = "/api/v1/namespaces/{ns}/services";
const CONFIGMAPS: &str = "/api/v1/namespaces/{ns}/configmaps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/{ns}/deployments";

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// A plain valid Service called `existing`, present in cases that act on an object.
fn existing() -> Value {
    service("existing", json!({"ports": [{"port": 80}]}))
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }
    })
}

fn cases() -> Vec<Case> {
    let ports80 = json!({"ports": [{"port": 80}]});
    let long_name = "a".repeat(64);
    vec![
        // --- names ---
        Case::new("uppercase name", "POST", SERVICES, Body::Json(service("Bad", ports80.clone())))
            .expect(422, "Invalid")
            .field("metadata.name", "FieldValueInvalid")
            .message("a DNS-1035 label must consist of lower case alphanumeric characters"),
        Case::new("name longer than 63 characters", "POST", SERVICES, Body::Json(service(&long_name, ports80.clone())))
            .expect(422, "Invalid")
            .field("metadata.name", "FieldValueInvalid")
            .message("must be no more than 63 characters"),
        Case::new("name with a leading dash", "POST", SERVICES, Body::Json(service("-web", ports80.clone())))
            .expect(422, "Invalid")
            .field("metadata.name", "FieldValueInvalid"),
        Case::new(
            "configmap name with an underscore",
            "POST",
            CONFIGMAPS,
            Body::Json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad_name"}})),
        )
        .expect(422, "Invalid")
        .field("metadata.name", "FieldValueInvalid")
        .message("a lowercase RFC 1123 subdomain must consist of"),
        // --- ports and nodePorts ---
        Case::post_service(
            "duplicate nodePort in one service",
            json!({"type": "NodePort", "ports": [
                {"name": "a", "port": 80, "nodePort": 30100}, {"name": "b", "port": 81, "nodePort": 30100}]}),
        )
        .expect(422, "Invalid")
        .field("spec.ports[1].nodePort", "FieldValueDuplicate")
        .still_free(Some(30100), None),
        Case::post_service("nodePort out of range", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8888}]}))
            .expect(422, "Invalid")
            .field("spec.ports[0].nodePort", "FieldValueInvalid")
            .message("provided port is not in the valid range. The range of valid ports is 30000-32767"),
        Case::post_service(
            "nodePort already allocated",
            json!({"type": "NodePort", "clusterIP": "10.96.200.7", "ports": [{"port": 80, "nodePort": 30080}]}),
        )
        .setup(vec![service("owner", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))])
        .expect(422, "Invalid")
        .field("spec.ports[0].nodePort", "FieldValueInvalid")
        .message("provided port is already allocated")
        .still_free(None, Some("10.96.200.7")),
        Case::post_service(
            "nodePort on a ClusterIP service",
            json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30103}]}),
        )
        .expect(422, "Invalid")
        .field("spec.ports[0].nodePort", "FieldValueForbidden")
        .still_free(Some(30103), None),
        Case::post_service(
            "two unnamed ports",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30101}, {"port": 81}]}),
        )
        .expect(422, "Invalid")
        .field("spec.ports[0].name", "FieldValueRequired")
        .still_free(Some(30101), None),
        Case::post_service("duplicate port names", json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}))
            .expect(422, "Invalid")
            .field("spec.ports[1].name", "FieldValueDuplicate"),
        Case::post_service(
            "unsupported protocol",
            json!({"type": "NodePort", "clusterIP": "10.96.200.2",
                   "ports": [{"port": 80, "nodePort": 30102, "protocol": "ICMP"}]}),
        )
        .expect(422, "Invalid")
        .field("spec.ports[0].protocol", "FieldValueNotSupported")
        .still_free(Some(30102), Some("10.96.200.2")),
        Case::post_service("port 0", json!({"ports": [{"port": 0}]}))
            .expect(422, "Invalid")
            .field("spec.ports[0].port", "FieldValueInvalid")
            .message("must be between 1 and 65535, inclusive"),
        Case::post_service("unsupported service type", json!({"type": "Foo", "ports": [{"port": 80}]}))
            .expect(422, "Invalid")
            .field("spec.type", "FieldValueNotSupported"),
        // --- ClusterIPs ---
        Case::post_service("clusterIP already allocated", json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}))
            .expect(422, "Invalid")
            .field("spec.clusterIPs", "FieldValueInvalid")
            .message("provided IP is already allocated"),
        Case::post_service("clusterIP outside the service CIDR", json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}))
            .expect(422, "Invalid")
            .field("spec.clusterIPs", "FieldValueInvalid")
            .message("is not in the valid range. The range of valid IPs is 10.96.0.0/16"),
        Case::new(
            "clusterIP change on update",
            "PUT",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::FromLive("services/existing", |svc| {
                svc["spec"]["clusterIP"] = json!("10.96.200.3");
                svc["spec"]["clusterIPs"] = json!(["10.96.200.3"]);
            }),
        )
        .setup(vec![existing()])
        .expect(422, "Invalid")
        .field("spec.clusterIPs[0]", "FieldValueInvalid")
        .message("may not change once set")
        .still_free(None, Some("10.96.200.3")),
        // --- decoding ---
        Case::new(
            "unknown field with fieldValidation=Strict",
            "POST",
            "/api/v1/namespaces/{ns}/services?fieldValidation=Strict",
            Body::Json(service("strict", json!({"bogus": 1, "ports": [{"port": 80}]}))),
        )
        .expect(400, "BadRequest")
        .message("strict decoding error: unknown field \"spec.bogus\""),
        Case::new(
            "duplicate field with fieldValidation=Strict",
            "POST",
            "/api/v1/namespaces/{ns}/services?fieldValidation=Strict",
            Body::Raw(
                "application/json",
                br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"dup"},"spec":{"ports":[{"port":80}],"ports":[{"port":81}]}}"#
                    .to_vec(),
            ),
        )
        .expect(400, "BadRequest")
        .message("strict decoding error: duplicate field \"spec.ports\""),
        Case {
            warning: Some(r#"unknown field \"spec.bogus\""#),
            writes: true,
            ..Case::new(
                "unknown field with fieldValidation=Warn",
                "POST",
                "/api/v1/namespaces/{ns}/services?fieldValidation=Warn",
                Body::Json(service("warned", json!({"bogus": 1, "ports": [{"port": 80}]}))),
            )
            .expect(201, "")
        },
        Case::new(
            "wrong kind for the URL",
            "POST",
            SERVICES,
            Body::Json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "wrong-kind"}})),
        )
        .expect(400, "BadRequest"),
        Case::new(
            "wrong apiVersion",
            "POST",
            SERVICES,
            Body::Json(json!({"apiVersion": "apps/v1", "kind": "Service", "metadata": {"name": "wrong-version"},
                              "spec": {"ports": [{"port": 80}]}})),
        )
        .expect(400, "BadRequest"),
        Case::new(
            "malformed JSON",
            "POST",
            SERVICES,
            Body::Raw("application/json", br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"#.to_vec()),
        )
        .expect(400, "BadRequest"),
        Case {
            http1: true,
            ..Case::new(
                "10 MiB body",
                "POST",
                CONFIGMAPS,
                Body::Json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                                  "data": {"blob": "x".repeat(10 << 20)}})),
            )
            .expect(413, "RequestEntityTooLarge")
            .message("limit is 3145728")
        },
        Case::new(
            "namespace in the body differs from the URL",
            "POST",
            SERVICES,
            Body::Json(json!({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "elsewhere", "namespace": "default"}, "spec": ports80})),
        )
        .expect(400, "BadRequest")
        .message("the namespace of the provided object does not match the namespace sent on the request"),
        // --- existence and concurrency ---
        Case::new("create an existing name", "POST", SERVICES, Body::Json(existing()))
            .setup(vec![existing()])
            .expect(409, "AlreadyExists")
            .message("services \"existing\" already exists"),
        Case::new("get a missing object", "GET", "/api/v1/namespaces/{ns}/services/missing", Body::None)
            .expect(404, "NotFound")
            .message("services \"missing\" not found"),
        Case::new(
            "create in a missing namespace",
            "POST",
            "/api/v1/namespaces/nowhere/services",
            Body::Json(service("lost", json!({"ports": [{"port": 80}]}))),
        )
        .expect(404, "NotFound")
        .message("namespaces \"nowhere\" not found"),
        Case::new("unknown resource", "GET", "/api/v1/namespaces/{ns}/widgets", Body::None).expect(404, "NotFound"),
        Case::new(
            "stale resourceVersion on PUT",
            "PUT",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::FromLive("services/existing", |svc| {
                svc["metadata"]["resourceVersion"] = json!("1");
                svc["metadata"]["labels"] = json!({"lost": "update"});
            }),
        )
        .setup(vec![existing()])
        .expect(409, "Conflict")
        .message("Operation cannot be fulfilled on services \"existing\": the object has been modified"),
        Case::new(
            "delete with a mismatched uid precondition",
            "DELETE",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::Json(json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}})),
        )
        .setup(vec![existing()])
        .expect(409, "Conflict")
        .message("Precondition failed: UID in precondition: not-the-uid"),
        // --- patches ---
        Case::new(
            "unsupported patch content type",
            "PATCH",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::Raw("text/plain", b"{}".to_vec()),
        )
        .setup(vec![existing()])
        .expect(415, "UnsupportedMediaType"),
        Case::new(
            "server-side apply",
            "PATCH",
            "/api/v1/namespaces/{ns}/services/existing?fieldManager=test",
            Body::Raw(
                "application/apply-patch+yaml",
                b"apiVersion: v1\nkind: Service\nmetadata:\n  name: existing\n  labels: {applied: yes}\n".to_vec(),
            ),
        )
        .setup(vec![existing()])
        .expect(415, "UnsupportedMediaType"),
        Case::new(
            "failed json-patch test operation",
            "PATCH",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::Raw(
                "application/json-patch+json",
                br#"[{"op":"test","path":"/spec/type","value":"NodePort"},{"op":"add","path":"/metadata/labels","value":{"patched":"yes"}}]"#.to_vec(),
            ),
        )
        .setup(vec![existing()])
        .expect(422, "Invalid"),
        Case::new(
            "json-patch that is not a list",
            "PATCH",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::Raw("application/json-patch+json", br#"{"op":"add","path":"/metadata/labels","value":{}}"#.to_vec()),
        )
        .setup(vec![existing()])
        .expect(400, "BadRequest"),
        Case::new(
            "merge patch renaming the object",
            "PATCH",
            "/api/v1/namespaces/{ns}/services/existing",
            Body::Raw("application/merge-patch+json", br#"{"metadata":{"name":"renamed"}}"#.to_vec()),
        )
        .setup(vec![existing()])
        .expect(400, "BadRequest")
        .message("does not match the name on the URL"),
        Case::new(
            "negative replicas on scale",
            "PATCH",
            "/apis/apps/v1/namespaces/{ns}/deployments/web/scale",
            Body::Raw("application/merge-patch+json", br#"{"spec":{"replicas":-1}}"#.to_vec()),
        )
        .setup(vec![deployment("web")])
        .expect(422, "Invalid")
        .field("spec.replicas", "FieldValueInvalid")
        .message("must be greater than or equal to 0"),
        // --- query parameters ---
        Case::new("malformed label selector", "GET", "/api/v1/namespaces/{ns}/services?labelSelector=app%20in%20(", Body::None)
            .expect(400, "BadRequest"),
        Case::new("unsupported field selector", "GET", "/api/v1/namespaces/{ns}/services?fieldSelector=spec.bogus%3Dx", Body::None)
            .expect(400, "BadRequest")
            .message("spec.bogus"),
        Case::new(
            "invalid dryRun value",
            "POST",
            "/api/v1/namespaces/{ns}/services?dryRun=Yes",
            Body::Json(service("dry", json!({"ports": [{"port": 80}]}))),
        )
        .expect(422, "Invalid")
        .field("dryRun", "FieldValueNotSupported"),
        Case::new("garbage continue token", "GET", "/api/v1/namespaces/{ns}/services?limit=1&continue=garbage", Body::None)
            .expect(400, "BadRequest"),
        // --- authentication ---
        Case {
            anonymous: true,
            ..Case::new("anonymous request", "POST", SERVICES, Body::Json(service("anon", json!({"ports": [{"port": 80}]}))))
                .expect(401, "Unauthorized")
        },
    ]
}

/// What "the store is unchanged" compares: every object the case could have touched, with
/// its resourceVersion (deployments by generation and replicas, as controllers may update
/// their status).
fn fingerprint(s: &TestServer, ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    let namespaces = s.get_json("/api/v1/namespaces");
    let services = s.get_json(&format!("/api/v1/namespaces/{ns}/services"));
    let configmaps = s.get_json(&format!("/api/v1/namespaces/{ns}/configmaps"));
    for (kind, list) in [("namespace", &namespaces), ("service", &services), ("configmap", &configmaps)] {
        for item in list["items"].as_array().into_iter().flatten() {
            let meta = &item["metadata"];
            out.push(format!("{kind} {} {} rv={}", meta["name"], meta["uid"], meta["resourceVersion"]));
        }
    }
    let deployments = s.get_json(&DEPLOYMENTS.replace("{ns}", ns));
    for item in deployments["items"].as_array().into_iter().flatten() {
        let meta = &item["metadata"];
        out.push(format!(
            "deployment {} {} generation={} replicas={}",
            meta["name"], meta["uid"], meta["generation"], item["spec"]["replicas"]
        ));
    }
    out.sort();
    out
}

fn collection_path(object: &Value, ns: &str) -> String {
    match object["kind"].as_str() {
        Some("Deployment") => DEPLOYMENTS.replace("{ns}", ns),
        Some("ConfigMap") => CONFIGMAPS.replace("{ns}", ns),
        _ => SERVICES.replace("{ns}", ns),
    }
}

fn create(s: &TestServer, ns: &str, object: &Value) {
    let reply = s.http("POST", &collection_path(object, ns)).json(object).send();
    assert_eq!(reply.code, 201, "setup create failed: {}", reply.body);
}

fn request(s: &TestServer, case: &Case, ns: &str) -> HttpRequest {
    let req = s.http(case.method, &case.path.replace("{ns}", ns));
    let req = match &case.body {
        Body::None => req,
        Body::Json(body) => req.json(body),
        Body::Raw(content_type, bytes) => req.body(content_type, bytes.clone()),
        Body::FromLive(path, edit) => {
            let mut live = s.get_json(&format!("/api/v1/namespaces/{ns}/{path}"));
            edit(&mut live);
            req.json(&live)
        }
    };
    let req = if case.anonymous { req.anonymous() } else { req };
    if case.http1 {
        req.http1()
    } else {
        req
    }
}

/// Everything wrong with the reply to `case`, as readable lines (empty when it matches).
fn check_reply(case: &Case, reply: &HttpReply) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.code != case.code {
        problems.push(format!("HTTP {} instead of {}", reply.code, case.code));
    }
    if let Some(warning) = case.warning {
        if !reply.header("warning").is_some_and(|w| w.starts_with("299 ") && w.contains(warning)) {
            problems.push(format!("no `Warning: 299 ... {warning}` header: {:?}", reply.header("warning")));
        }
    }
    if case.reason.is_empty() {
        return problems;
    }
    let Ok(status) = serde_json::from_str::<Value>(&reply.body) else {
        problems.push("body is not a JSON Status".to_owned());
        return problems;
    };
    let expected = [("kind", json!("Status")), ("apiVersion", json!("v1")), ("status", json!("Failure"))];
    for (key, want) in expected {
        if status[key] != want {
            problems.push(format!("{key} is {} instead of {want}", status[key]));
        }
    }
    if status["code"] != case.code {
        problems.push(format!("Status.code is {} instead of {}", status["code"], case.code));
    }
    if status["reason"] != case.reason {
        problems.push(format!("reason is {} instead of {:?}", status["reason"], case.reason));
    }
    if let Some(message) = case.message {
        if !status["message"].as_str().is_some_and(|m| m.contains(message)) {
            problems.push(format!("message lacks {message:?}"));
        }
    }
    if let Some((field, cause_reason)) = case.field {
        let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
        let found = causes.iter().any(|c| c["field"] == field && cause_reason.is_none_or(|r| c["reason"] == r));
        if !found {
            problems.push(format!("no details.causes[] entry for field {field:?} with reason {cause_reason:?}"));
        }
    }
    problems
}

/// Creates (then deletes) a Service that takes the nodePort / ClusterIP the bad request named:
/// it fails if the rejected request leaked an allocation.
fn check_still_free(s: &TestServer, ns: &str, node_port: Option<u16>, cluster_ip: Option<&str>) -> Option<String> {
    let mut spec = json!({"type": "NodePort", "ports": [{"port": 80}]});
    if let Some(port) = node_port {
        spec["ports"][0]["nodePort"] = json!(port);
    }
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    let path = SERVICES.replace("{ns}", ns);
    let reply = s.http("POST", &path).json(&service("probe", spec)).send();
    if reply.code != 201 {
        return Some(format!("{node_port:?}/{cluster_ip:?} not free afterwards: {}", reply.body));
    }
    let deleted = s.http("DELETE", &format!("{path}/probe")).send();
    assert_eq!(deleted.code, 200, "deleting the probe: {}", deleted.body);
    None
}

/// Runs one case in namespace `ns`; returns what went wrong.
fn run_case(s: &TestServer, case: &Case, ns: &str) -> Vec<String> {
    let created = s.http("POST", "/api/v1/namespaces").json(&json!({"metadata": {"name": ns}})).send();
    assert_eq!(created.code, 201, "creating namespace {ns}: {}", created.body);
    for object in &case.setup {
        create(s, ns, object);
    }
    let before = fingerprint(s, ns);
    let reply = request(s, case, ns).send();
    let mut problems = check_reply(case, &reply);
    if !problems.is_empty() {
        problems.push(format!("reply: HTTP {} {}", reply.code, truncated(&reply.body)));
    }
    if !case.writes {
        let after = fingerprint(s, ns);
        if after != before {
            problems.push(format!("the store changed:\n  before {before:?}\n  after  {after:?}"));
        }
    }
    if let Some((node_port, cluster_ip)) = case.still_free {
        problems.extend(check_still_free(s, ns, node_port, cluster_ip));
    }
    problems
}

fn truncated(body: &str) -> String {
    body.chars().take(600).collect()
}

#[test]
fn every_bad_input_is_rejected_and_changes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 25, "the table must keep at least 25 cases");
    let s = TestServer::start();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let problems = run_case(&s, case, &format!("case-{i}"));
        if !problems.is_empty() {
            failures.push(format!("[{}]\n    {}", case.name, problems.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// The Warn case wrote the object: the unknown field must have been dropped.
#[test]
fn warned_unknown_field_is_dropped() {
    let s = TestServer::start();
    let cases = cases();
    let case = cases.iter().find(|c| c.name == "unknown field with fieldValidation=Warn").expect("warn case");
    let problems = run_case(&s, case, "warn");
    assert!(problems.is_empty(), "{problems:?}");
    let svc = s.get_json("/api/v1/namespaces/warn/services/warned");
    assert!(svc["spec"].get("bogus").is_none(), "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
}

/// A 10 MiB object through kubectl (HTTP/2) gets the same 413.
#[test]
fn ten_mib_object_via_kubectl_is_too_large() {
    let s = TestServer::start();
    let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                          "data": {"blob": "x".repeat(10 << 20)}});
    let file = s.data_dir().join("huge.json");
    std::fs::write(&file, manifest.to_string()).expect("writing manifest");
    let file = file.to_str().expect("utf-8 path");
    let err = s.kubectl_err(&["create", "-f", file]);
    assert!(err.contains("Error from server (RequestEntityTooLarge)"), "{err}");
    let err = s.kubectl_err(&["get", "configmap", "huge"]);
    assert!(err.contains("configmaps \"huge\" not found"), "{err}");
}
