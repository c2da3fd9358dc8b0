//! OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/<group-version>`).
//!
//! kubectl 1.32 reads them for three things: to learn that the server validates fields
//! itself (a PATCH operation per kind with `x-kubernetes-group-version-kind` and a
//! `fieldValidation` parameter — then it sends `fieldValidation=Strict` and skips its own
//! validation), to compute strategic merge patches for `kubectl apply` (schemas carrying
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`), and for
//! `kubectl explain`. Schemas come from k8s-openapi's JSON schemas (same names as
//! upstream's); patch directives come from [`skiff_api::patch::directives`], the same
//! table the server's strategic merge patch uses.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use skiff_api::registry::{group_versions, ResourceDef, Subresource, RESOURCES};

use crate::http::{self as h, Body, Query};

/// One group-version document with its ETag.
struct Document {
    json: bytes::Bytes,
    etag: String,
}

/// The lazily built documents (built on first request; they never change while running).
pub struct OpenApi {
    docs: OnceLock<BTreeMap<String, Document>>,
}

impl Default for OpenApi {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenApi {
    pub fn new() -> Self {
        OpenApi { docs: OnceLock::new() }
    }

    fn docs(&self) -> &BTreeMap<String, Document> {
        self.docs.get_or_init(build_all)
    }

    pub fn index(&self) -> Response<Body> {
        let mut paths = Map::new();
        for (gv, doc) in self.docs() {
            paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", doc.etag)}));
        }
        h::json(StatusCode::OK, &json!({"paths": paths}))
    }

    pub fn group_version(&self, gv: &str, query: &Query, headers: &HeaderMap) -> Response<Body> {
        let Some(doc) = self.docs().get(gv) else {
            return h::error(&skiff_api::ApiError::NotFound(skiff_api::Subject::default()));
        };
        if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
            let ok = accept.split(',').any(|a| {
                let media = a.split(';').next().unwrap_or("").trim();
                matches!(media, "application/json" | "*/*" | "application/*" | "")
            });
            if !ok {
                return h::error(&skiff_api::ApiError::NotAcceptable("only application/json is served".into()));
            }
        }
        if let Some(hash) = query.value("hash") {
            if hash != doc.etag {
                let mut resp = Response::new(h::full(""));
                *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
                if let Ok(v) = HeaderValue::from_str(&format!("/openapi/v3/{gv}?hash={}", doc.etag)) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                return resp;
            }
        }
        let mut resp = Response::new(h::full(doc.json.clone()));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", doc.etag)) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        if query.value("hash").is_some() {
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
        }
        resp
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn build_all() -> BTreeMap<String, Document> {
    let mut out = BTreeMap::new();
    for (g, v) in group_versions() {
        let doc = build_group_version(g, v);
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        let etag: String = Sha512::digest(&json).iter().map(|b| format!("{b:02X}")).collect();
        out.insert(gv_path(g, v), Document { json: json.into(), etag });
    }
    out
}

/// Collects the JSON schemas of a group-version's kinds (and everything they reference).
fn schemas_for(group: &str, version: &str) -> Map<String, Value> {
    use k8s_openapi::api::networking::v1 as net;
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc};
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    match (group, version) {
        ("", "v1") => {
            gen.subschema_for::<core::Namespace>();
            gen.subschema_for::<core::Service>();
            gen.subschema_for::<core::Endpoints>();
            gen.subschema_for::<core::Pod>();
            gen.subschema_for::<core::Node>();
            gen.subschema_for::<core::Secret>();
            gen.subschema_for::<core::ConfigMap>();
            gen.subschema_for::<core::Event>();
            gen.subschema_for::<core::ServiceAccount>();
        }
        ("discovery.k8s.io", "v1") => {
            gen.subschema_for::<disc::EndpointSlice>();
        }
        ("apps", "v1") => {
            gen.subschema_for::<apps::Deployment>();
            gen.subschema_for::<apps::ReplicaSet>();
            gen.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
        }
        ("networking.k8s.io", "v1") => {
            gen.subschema_for::<net::Ingress>();
            gen.subschema_for::<net::IngressClass>();
        }
        ("coordination.k8s.io", "v1") => {
            gen.subschema_for::<coord::Lease>();
        }
        _ => {}
    }
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    gen.take_definitions(true)
}

fn schema_name(def: &ResourceDef) -> String {
    let group = match def.group {
        "" => "core",
        "discovery.k8s.io" => "discovery",
        "networking.k8s.io" => "networking",
        "coordination.k8s.io" => "coordination",
        other => other,
    };
    format!("io.k8s.api.{group}.{}.{}", def.version, def.kind)
}

fn build_group_version(group: &str, version: &str) -> Value {
    let mut schemas = schemas_for(group, version);
    let mut paths = Map::new();
    for def in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let name = schema_name(def);
        if let Some(schema) = schemas.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": def.group, "version": def.version, "kind": def.kind}]);
        }
        for d in skiff_api::patch::directives(def.group, def.kind).unwrap_or_default() {
            annotate(&mut schemas, &name, d.path, d.strategy, d.merge_key);
        }
        add_paths(&mut paths, def, &name);
    }
    if group == "apps" {
        if let Some(s) = schemas.get_mut("io.k8s.api.autoscaling.v1.Scale") {
            s["x-kubernetes-group-version-kind"] = json!([{"group": "autoscaling", "version": "v1", "kind": "Scale"}]);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}}},
    })
}

/// Follows a dotted property path from a schema through `$ref`s and array items, and puts
/// the patch directive on the last property.
fn annotate(schemas: &mut Map<String, Value>, root: &str, path: &str, strategy: &str, merge_key: Option<&str>) {
    let mut current = root.to_string();
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let Some(prop) = schemas.get(&current).and_then(|s| s.pointer(&format!("/properties/{seg}"))).cloned() else {
            return;
        };
        if i + 1 == segments.len() {
            if let Some(p) = schemas.get_mut(&current).and_then(|s| s.pointer_mut(&format!("/properties/{seg}"))) {
                p["x-kubernetes-patch-strategy"] = json!(strategy);
                if let Some(k) = merge_key {
                    p["x-kubernetes-patch-merge-key"] = json!(k);
                }
            }
            return;
        }
        let Some(next) = ref_target(&prop) else { return };
        current = next;
    }
}

/// The schema name a property refers to (directly, through `allOf`, or as array items).
fn ref_target(prop: &Value) -> Option<String> {
    let r = prop
        .get("$ref")
        .or_else(|| prop.pointer("/items/$ref"))
        .or_else(|| prop.pointer("/allOf/0/$ref"))
        .or_else(|| prop.pointer("/items/allOf/0/$ref"))?
        .as_str()?;
    r.rsplit('/').next().map(str::to_string)
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn add_paths(paths: &mut Map<String, Value>, def: &ResourceDef, schema: &str) {
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let collection = if def.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let schema_ref = json!({"$ref": format!("#/components/schemas/{schema}")});
    let ok = |s: &Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": s}}}});
    let write_params = json!([param("dryRun"), param("fieldManager"), param("fieldValidation")]);
    let patch_body = json!({"content": {
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    }, "required": true});
    let op = |action: &str, params: Value, body: Option<Value>, s: &Value| {
        let mut o = json!({
            "operationId": format!("{action}{}", def.kind),
            "parameters": params,
            "responses": ok(s),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if let Some(b) = body {
            o["requestBody"] = b;
        }
        o
    };
    let json_body = json!({"content": {"*/*": {"schema": schema_ref}}, "required": true});
    paths.insert(
        collection,
        json!({
            "get": op("list", json!([param("labelSelector"), param("fieldSelector"), param("limit"), param("continue"), param("watch")]), None, &json!({"type": "object"})),
            "post": op("post", write_params.clone(), Some(json_body.clone()), &schema_ref),
        }),
    );
    let mut item_ops = json!({
        "get": op("get", json!([]), None, &schema_ref),
        "put": op("put", write_params.clone(), Some(json_body.clone()), &schema_ref),
        "patch": op("patch", json!([param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")]), Some(patch_body.clone()), &schema_ref),
        "delete": op("delete", json!([param("dryRun"), param("gracePeriodSeconds"), param("propagationPolicy")]), None, &json!({"type": "object"})),
    });
    if def.namespaced {
        item_ops["parameters"] = json!([{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                                         {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    }
    paths.insert(item.clone(), item_ops);
    if def.has_subresource(Subresource::Status) {
        paths.insert(format!("{item}/status"), json!({
            "get": op("get", json!([]), None, &schema_ref),
            "put": op("put", write_params.clone(), Some(json_body), &schema_ref),
            "patch": op("patch", json!([param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")]), Some(patch_body), &schema_ref),
        }));
    }
}
