//! Compiler tests: the Ingress API's matching rules as tables of request → backend.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{json, Value};
use skiff_core::service_view::ServiceView;

use super::*;
use crate::metrics::IngressCounters;

fn config() -> ClassConfig {
    ClassConfig { class: "skiff".into(), controller: "skiff.io/ingress-controller".into() }
}

fn class(name: &str, controller: &str, default: bool) -> IngressClass {
    let mut c = json!({"metadata": {"name": name}, "spec": {"controller": controller}});
    if default {
        c["metadata"]["annotations"] = json!({DEFAULT_CLASS_ANNOTATION: "true"});
    }
    serde_json::from_value(c).expect("class")
}

fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name, "creationTimestamp": created, "uid": name},
        "spec": spec,
    }))
    .expect("ingress")
}

fn with_annotations(mut ing: Ingress, pairs: &[(&str, &str)]) -> Ingress {
    ing.metadata.annotations = Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    ing
}

fn backend(service: &str) -> Value {
    json!({"service": {"name": service, "port": {"number": 80}}})
}

fn path(p: &str, kind: &str, service: &str) -> Value {
    json!({"path": p, "pathType": kind, "backend": backend(service)})
}

fn rule(host: Option<&str>, paths: Vec<Value>) -> Value {
    let mut r = json!({"http": {"paths": paths}});
    if let Some(h) = host {
        r["host"] = json!(h);
    }
    r
}

/// A view where Service `name` has one endpoint whose last octet identifies it.
fn view(services: &[&str]) -> ServiceView {
    let mut v = ServiceView::default();
    for (i, name) in services.iter().enumerate() {
        v.apply_service(&json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }))
        .expect("service");
        v.apply_endpoint_slice(&json!({
            "metadata": {"namespace": "default", "name": format!("{name}-x"),
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [format!("10.244.0.{}", i + 1)]}]
        }))
        .expect("slice");
    }
    v
}

fn build(ingresses: &[Ingress], classes: &[IngressClass], view: &ServiceView) -> Compiled {
    compile(ingresses, classes, view, &config(), &mut |_| Arc::new(IngressCounters::default()))
}

fn ours_default() -> Vec<IngressClass> {
    vec![class("skiff", "skiff.io/ingress-controller", true)]
}

/// The Service a request reaches, or "404".
fn target(c: &Compiled, names: &[&str], host: &str, path: &str) -> String {
    match c.table.find(&crate::routes::normalize_host(host), path) {
        None => "404".into(),
        Some(route) => {
            let ep = route.backend.endpoints.first().map(|e| e.ip().to_string()).unwrap_or_default();
            let octet: usize = ep.rsplit('.').next().and_then(|o| o.parse().ok()).unwrap_or(0);
            names.get(octet.wrapping_sub(1)).map(|s| s.to_string()).unwrap_or_else(|| format!("? {ep}"))
        }
    }
}

/// ingress.md §1f setup A (path rules) and the extra KW table rows.
#[test]
fn path_rules_checklist() {
    let names = [
        "foo-exact",
        "foo-prefix",
        "aaa-slash-bbb-prefix",
        "aaa-prefix",
        "aaa-slash-bbb-slash-prefix",
        "foo-slash-exact",
        "root",
        "aaa-bb",
    ];
    let v = view(&names);
    let ing = ingress(
        "path-rules",
        "2024-01-01T00:00:00Z",
        json!({"rules": [
            rule(Some("exact-path-rules"), vec![path("/foo", "Exact", "foo-exact")]),
            rule(Some("prefix-path-rules"), vec![
                path("/foo", "Prefix", "foo-prefix"),
                path("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix"),
                path("/aaa", "Prefix", "aaa-prefix"),
            ]),
            rule(Some("mixed-path-rules"), vec![path("/foo", "Prefix", "foo-prefix"), path("/foo", "Exact", "foo-exact")]),
            rule(Some("trailing-slash-path-rules"), vec![
                path("/aaa/bbb/", "Prefix", "aaa-slash-bbb-slash-prefix"),
                path("/foo/", "Exact", "foo-slash-exact"),
            ]),
            rule(Some("kw-table"), vec![path("/", "Prefix", "root"), path("/aaa", "Prefix", "aaa-prefix"), path("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix")]),
            rule(Some("kw-bb"), vec![path("/aaa/bb", "Prefix", "aaa-bb")]),
        ]}),
    );
    let c = build(&[ing], &ours_default(), &v);
    let rows = [
        ("exact-path-rules", "/foo", "foo-exact"),
        ("exact-path-rules", "/foo/", "404"),
        ("exact-path-rules", "/FOO", "404"),
        ("exact-path-rules", "/bar", "404"),
        ("prefix-path-rules", "/foo", "foo-prefix"),
        ("prefix-path-rules", "/foo/", "foo-prefix"),
        ("prefix-path-rules", "/FOO", "404"),
        ("prefix-path-rules", "/aaaccc", "404"),
        ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),
        ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"),
        ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"),
        ("mixed-path-rules", "/foo", "foo-exact"),
        ("mixed-path-rules", "/foo/x", "foo-prefix"),
        ("trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-slash-prefix"),
        ("trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
        ("trailing-slash-path-rules", "/foo", "404"),
        ("trailing-slash-path-rules", "/foo/", "foo-slash-exact"),
        ("kw-table", "/anything", "root"),
        ("kw-table", "/aaa/ccc", "aaa-prefix"),
        ("kw-table", "/aaa/bbb", "aaa-slash-bbb-prefix"),
        ("kw-table", "/ccc", "root"),
        ("kw-bb", "/aaa/bbb", "404"),
        ("Exact-Path-Rules:8080", "/foo", "foo-exact"),
    ];
    for (host, p, want) in rows {
        assert_eq!(target(&c, &names, host, p), want, "{host}{p}");
    }
}

/// ingress.md §1f setup B (host rules) plus default backend and host-less rules.
#[test]
fn host_rules_and_default_backend() {
    let names = ["wildcard-foo-com", "foo-bar-com", "catch-all", "echo"];
    let v = view(&names);
    let hosts = ingress(
        "hosts",
        "2024-01-01T00:00:00Z",
        json!({
            "rules": [
                rule(Some("*.foo.com"), vec![path("/", "Prefix", "wildcard-foo-com")]),
                {"host": "foo.bar.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "foo-bar-com", "port": {"name": "http"}}}}
                ]}},
            ],
            "tls": [{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}],
        }),
    );
    let c = build(std::slice::from_ref(&hosts), &ours_default(), &v);
    for (host, want) in [
        ("foo.bar.com", "foo-bar-com"),
        ("subdomain.bar.com", "404"),
        ("bar.foo.com", "wildcard-foo-com"),
        ("baz.bar.foo.com", "404"),
        ("foo.com", "404"),
    ] {
        assert_eq!(target(&c, &names, host, "/"), want, "{host}");
    }
    assert_eq!(
        c.tls_hosts,
        vec![("foo.bar.com".to_owned(), CertSource::Secret("default".into(), "conformance-tls".into()))]
    );
    assert!(c.table.find("foo.bar.com", "/").expect("route").tls);

    let default_only = ingress("default-only", "2024-01-02T00:00:00Z", json!({"defaultBackend": backend("echo")}));
    let catch_all = ingress(
        "catch-all",
        "2024-01-03T00:00:00Z",
        json!({"rules": [rule(None, vec![path("/x", "Prefix", "catch-all")])]}),
    );
    let c = build(&[hosts, default_only, catch_all], &ours_default(), &v);
    assert_eq!(target(&c, &names, "", "/any"), "echo");
    assert_eq!(target(&c, &names, "unknown.example", "/x/y"), "catch-all");
    assert_eq!(target(&c, &names, "unknown.example", "/y"), "echo");
    // A known host without a matching path does not fall through to other hosts' rules.
    assert_eq!(target(&c, &names, "foo.bar.com", "/"), "foo-bar-com");
}

#[test]
fn class_selection() {
    let v = view(&["svc"]);
    let spec = |host: &str| json!({"rules": [rule(Some(host), vec![path("/", "Prefix", "svc")])]});
    let by_field = ingress("by-field", "2024-01-01T00:00:00Z", {
        let mut s = spec("field");
        s["ingressClassName"] = json!("skiff");
        s
    });
    let other_field = ingress("other", "2024-01-01T00:00:00Z", {
        let mut s = spec("other");
        s["ingressClassName"] = json!("some-invalid-class-name");
        s
    });
    let classless = ingress("classless", "2024-01-01T00:00:00Z", spec("classless"));
    let legacy = with_annotations(
        ingress("legacy", "2024-01-01T00:00:00Z", spec("legacy")),
        &[(LEGACY_CLASS_ANNOTATION, "skiff")],
    );
    let legacy_other = with_annotations(
        ingress("legacy-other", "2024-01-01T00:00:00Z", {
            let mut s = spec("legacy-other");
            s["ingressClassName"] = json!("skiff");
            s
        }),
        &[(LEGACY_CLASS_ANNOTATION, "nginx")],
    );
    let all = [by_field, other_field, classless, legacy, legacy_other];
    let served = |classes: &[IngressClass]| {
        let c = build(&all, classes, &v);
        let mut names: Vec<String> = c.ours.into_iter().map(|(_, n)| n).collect();
        names.sort();
        names
    };
    assert_eq!(served(&ours_default()), ["by-field", "classless", "legacy"]);
    assert_eq!(served(&[class("skiff", "skiff.io/ingress-controller", false)]), ["by-field", "legacy"]);
    assert_eq!(served(&[class("skiff", "k8s.io/ingress-nginx", true)]), ["legacy"]);
    assert_eq!(served(&[]), ["legacy"]);
}

#[test]
fn oldest_ingress_wins_conflicts() {
    let v = view(&["old", "new"]);
    let newer = ingress(
        "a-newer",
        "2024-06-01T00:00:00Z",
        json!({"rules": [rule(Some("h"), vec![path("/p", "Prefix", "new")])], "defaultBackend": backend("new")}),
    );
    let older = ingress(
        "z-older",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(Some("h"), vec![path("/p", "Prefix", "old")])], "defaultBackend": backend("old")}),
    );
    let c = build(&[newer, older], &ours_default(), &v);
    assert_eq!(target(&c, &["old", "new"], "h", "/p"), "old");
    assert_eq!(target(&c, &["old", "new"], "elsewhere", "/"), "old");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].name, "a-newer");
}

#[test]
fn regex_mode_and_rewrite() {
    let v = view(&["svc", "other"]);
    let rewrite = with_annotations(
        ingress(
            "rw",
            "2024-01-01T00:00:00Z",
            json!({"rules": [rule(Some("r"), vec![path("/something(/|$)(.*)", "ImplementationSpecific", "svc")])]}),
        ),
        &[("nginx.ingress.kubernetes.io/rewrite-target", "/$2")],
    );
    // Another Ingress on the same host: its plain path becomes a case-insensitive regex.
    let sibling = ingress(
        "sib",
        "2024-01-02T00:00:00Z",
        json!({"rules": [rule(Some("r"), vec![path("/U[A-Z]", "Prefix", "other")])]}),
    );
    let c = build(&[rewrite, sibling], &ours_default(), &v);
    let names = ["svc", "other"];
    assert_eq!(target(&c, &names, "r", "/something/new"), "svc");
    let route = c.table.find("r", "/something/new").expect("route");
    assert_eq!(route.upstream_path("/something/new").as_deref(), Some("/new"));
    assert_eq!(route.upstream_path("/something").as_deref(), Some("/"));
    assert_eq!(target(&c, &names, "r", "/uuid"), "other");
    assert_eq!(target(&c, &names, "r", "/nothing"), "404");
}

#[test]
fn canary_attaches_to_main_route() {
    let v = view(&["main", "canary"]);
    let main =
        ingress("main", "2024-01-01T00:00:00Z", json!({"rules": [rule(Some("c"), vec![path("/", "Prefix", "main")])]}));
    let canary = with_annotations(
        ingress(
            "canary",
            "2024-01-02T00:00:00Z",
            json!({"rules": [rule(Some("c"), vec![path("/", "Prefix", "canary")]), rule(Some("nomain"), vec![path("/", "Prefix", "canary")])]}),
        ),
        &[("nginx.ingress.kubernetes.io/canary", "true"), ("nginx.ingress.kubernetes.io/canary-by-header", "x-canary")],
    );
    let c = build(&[main, canary], &ours_default(), &v);
    let route = c.table.find("c", "/").expect("route");
    let canary = route.canary.as_ref().expect("canary attached");
    assert_eq!(canary.backend.endpoints[0].ip().to_string(), "10.244.0.2");
    assert_eq!(canary.rules.by_header.as_deref(), Some("x-canary"));
    assert_eq!(target(&c, &["main", "canary"], "nomain", "/"), "404");
    assert!(c.warnings.iter().any(|w| w.message.contains("no main Ingress")));
}

#[test]
fn backends_resolve_ports_and_missing_services() {
    let v = view(&["svc"]);
    let ing = ingress(
        "ports",
        "2024-01-01T00:00:00Z",
        json!({"rules": [rule(Some("p"), vec![
            json!({"path": "/num", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}),
            json!({"path": "/name", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"name": "http"}}}}),
            json!({"path": "/badport", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 81}}}}),
            json!({"path": "/missing", "pathType": "Prefix", "backend": {"service": {"name": "nope", "port": {"number": 80}}}}),
        ])]}),
    );
    let c = build(&[ing], &ours_default(), &v);
    let eps = |p: &str| {
        c.table.find("p", p).expect("route").backend.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(eps("/num"), ["10.244.0.1:8080"]);
    assert_eq!(eps("/name"), ["10.244.0.1:8080"]);
    assert!(eps("/badport").is_empty());
    assert!(eps("/missing").is_empty());
}
