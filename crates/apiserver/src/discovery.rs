//! API discovery: the legacy documents (`/api`, `/apis`, `/api/v1`, ...) and the
//! aggregated `apidiscovery.k8s.io/v2` form that kubectl 1.32 asks for first.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::registry::{group_versions, ResourceDef, Subresource, RESOURCES};

use crate::http::{self as h, Body};
use crate::request::Route;

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const SUB_VERBS: [&str; 3] = ["get", "patch", "update"];

/// Which aggregated discovery version the client accepts, if any (v2 preferred).
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

pub fn serve(route: &Route, headers: &HeaderMap) -> Response<Body> {
    match route {
        Route::CoreGroup => match aggregated_version(headers) {
            Some(v) => aggregated(v, true),
            None => h::json(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
            ),
        },
        Route::Groups => match aggregated_version(headers) {
            Some(v) => aggregated(v, false),
            None => h::json(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups()})),
        },
        Route::Group(g) => match groups().into_iter().find(|x| x["name"] == g.as_str()) {
            Some(mut group) => {
                group["kind"] = json!("APIGroup");
                group["apiVersion"] = json!("v1");
                h::json(StatusCode::OK, &group)
            }
            None => not_found(),
        },
        Route::GroupVersion(g, v) => {
            let resources: Vec<&ResourceDef> = RESOURCES.iter().filter(|r| r.group == g && r.version == v).collect();
            if resources.is_empty() {
                return not_found();
            }
            let gv = if g.is_empty() { v.clone() } else { format!("{g}/{v}") };
            let mut list = Vec::new();
            for r in resources {
                list.push(json!({
                    "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": VERBS, "shortNames": r.short_names, "categories": r.categories,
                }));
                for sub in subresources(r) {
                    let mut entry = json!({"name": format!("{}/{}", r.plural, sub.name), "singularName": "",
                        "namespaced": r.namespaced, "kind": sub.kind, "verbs": sub.verbs});
                    if sub.group != r.group || sub.version != r.version {
                        entry["group"] = json!(sub.group);
                        entry["version"] = json!(sub.version);
                    }
                    list.push(entry);
                }
            }
            h::json(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
            )
        }
        _ => not_found(),
    }
}

fn not_found() -> Response<Body> {
    h::error(&skiff_api::ApiError::NotFound(skiff_api::Subject::default()))
}

/// A subresource as discovery describes it.
struct SubresourceDoc {
    name: &'static str,
    /// What it answers with.
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
}

/// Every subresource of `r`: the stored views (`status`, `scale`) and the actions served by
/// their own handlers (pod streams, binding, token requests), with upstream's kinds and verbs.
fn subresources(r: &ResourceDef) -> Vec<SubresourceDoc> {
    let mut docs: Vec<SubresourceDoc> = r
        .subresources
        .iter()
        .map(|sub| match sub {
            Subresource::Status => {
                SubresourceDoc { name: "status", group: r.group, version: r.version, kind: r.kind, verbs: &SUB_VERBS }
            }
            Subresource::Scale => {
                SubresourceDoc { name: "scale", group: "autoscaling", version: "v1", kind: "Scale", verbs: &SUB_VERBS }
            }
        })
        .collect();
    let action = |name, kind, verbs| SubresourceDoc { name, group: "", version: "v1", kind, verbs };
    match (r.group, r.kind) {
        ("", "Pod") => docs.extend([
            action("attach", "PodAttachOptions", &["create", "get"][..]),
            action("binding", "Binding", &["create"][..]),
            action("exec", "PodExecOptions", &["create", "get"][..]),
            action("log", "Pod", &["get"][..]),
            action("portforward", "PodPortForwardOptions", &["create", "get"][..]),
        ]),
        ("", "ServiceAccount") => {
            docs.push(SubresourceDoc {
                name: "token",
                group: "authentication.k8s.io",
                version: "v1",
                kind: "TokenRequest",
                verbs: &["create"],
            });
        }
        _ => {}
    }
    docs.sort_by_key(|d| d.name);
    docs
}

/// The named groups for the legacy `/apis` document.
fn groups() -> Vec<Value> {
    group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect()
}

fn aggregated(version: &str, core: bool) -> Response<Body> {
    let mut items = Vec::new();
    for (g, v) in group_versions() {
        if g.is_empty() != core {
            continue;
        }
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|r| r.group == g && r.version == v)
            .map(|r| {
                let subs: Vec<Value> = subresources(r)
                    .iter()
                    .map(|s| {
                        json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                               "verbs": s.verbs})
                    })
                    .collect();
                let mut res = json!({
                    "resource": r.plural,
                    "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": r.singular,
                    "verbs": VERBS,
                });
                if !r.short_names.is_empty() {
                    res["shortNames"] = json!(r.short_names);
                }
                if !r.categories.is_empty() {
                    res["categories"] = json!(r.categories);
                }
                if !subs.is_empty() {
                    res["subresources"] = json!(subs);
                }
                res
            })
            .collect();
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null},
            "versions": [{"version": v, "resources": resources, "freshness": "Current"}]}));
    }
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items});
    let mut resp = h::json(StatusCode::OK, &body);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}
