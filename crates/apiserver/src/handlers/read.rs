//! get and list.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use http::{header, Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::RangeOptions;

use super::Ctx;
use crate::filter::Filter;
use crate::http::{self as h, negotiate, Body, Representation};
use crate::storage::{decode, parse_rv, store_error};

/// Reads one object or answers NotFound.
pub async fn get_object(ctx: &Ctx, name: &str) -> Result<(Value, i64), ApiError> {
    let key = ctx.req.def.key(ctx.req.namespace.as_deref(), name);
    let (kv, _) = ctx.server.store.get(&key).await.map_err(store_error)?;
    let kv = kv.ok_or_else(|| ApiError::NotFound(ctx.req.def.subject(name)))?;
    Ok((decode(&kv)?, kv.mod_revision))
}

/// Rejects an unsupported `includeObject` value up front (400, upstream's message).
pub fn check_include_object(ctx: &Ctx) -> Result<(), ApiError> {
    skiff_api::printers::IncludeObject::parse(ctx.query.get("includeObject").unwrap_or(""))
        .map(|_| ())
        .map_err(ApiError::BadRequest)
}

pub async fn get(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    check_include_object(ctx)?;
    let name = ctx.req.name.as_deref().unwrap_or("");
    let representation = negotiate(accept(ctx))?;
    let (obj, _) = get_object(ctx, name).await?;
    Ok(render_one(ctx, representation, obj))
}

/// Renders a single object in the negotiated representation.
pub fn render_one(ctx: &Ctx, representation: Representation, obj: Value) -> Response<Body> {
    match representation {
        Representation::Object => h::json(StatusCode::OK, &obj),
        Representation::Metadata => h::json(StatusCode::OK, &partial_metadata(&obj)),
        Representation::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
            h::json(StatusCode::OK, &table(ctx, vec![obj], json!({"resourceVersion": rv})))
        }
    }
}

pub fn accept(ctx: &Ctx) -> Option<&str> {
    ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// `PartialObjectMetadata` of an object (metadata-only clients).
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A `meta.k8s.io/v1 Table` of objects, honouring `includeObject`.
pub fn table(ctx: &Ctx, objects: Vec<Value>, list_meta: Value) -> Value {
    let def = ctx.req.def;
    let include = skiff_api::printers::IncludeObject::parse(ctx.query.get("includeObject").unwrap_or(""))
        .unwrap_or(skiff_api::printers::IncludeObject::Metadata);
    let t = skiff_api::printers::table(def.group, def.kind, &objects, chrono::Utc::now());
    let mut v = t.to_json(&objects, include);
    v["metadata"] = list_meta;
    v
}

/// Where a paginated list continues: the revision it reads at and the last key returned.
struct ContinueToken {
    rv: i64,
    start: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        B64.encode(json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": self.start}).to_string())
    }
    fn decode(s: &str) -> Result<ContinueToken, ApiError> {
        let bad = || {
            ApiError::BadRequest(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
            )
        };
        let raw = B64.decode(s).map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
        let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.to_string();
        Ok(ContinueToken { rv, start })
    }
}

/// The objects of a list and the list metadata.
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

/// Reads the objects a list request selects (used by list and deletecollection).
pub async fn list_objects(ctx: &Ctx, filter: &Filter) -> Result<ListResult, ApiError> {
    let def = ctx.req.def;
    let prefix = def.namespace_prefix(ctx.req.namespace.as_deref());
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0).map(|l| l as u64);
    let rv_param = ctx.query.value("resourceVersion");
    let (mut revision, mut start_after) = match ctx.query.value("continue") {
        Some(token) => {
            if rv_param.is_some_and(|rv| rv != "0") {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let t = ContinueToken::decode(token)?;
            (t.rv, Some(t.start))
        }
        None => match (rv_param, limit, ctx.query.value("resourceVersionMatch")) {
            // With a limit, an explicit resourceVersion means "exactly this snapshot".
            (Some(rv), Some(_), None | Some("Exact")) if rv != "0" => (parse_rv(rv)?, None),
            (Some(rv), None, Some("Exact")) if rv != "0" => (parse_rv(rv)?, None),
            (Some(rv), _, _) => {
                parse_rv(rv)?;
                (0, None)
            }
            _ => (0, None),
        },
    };
    let mut items = Vec::new();
    let page = limit.map(|l| l.max(64)).unwrap_or(0);
    loop {
        let opts = RangeOptions { start_after: start_after.clone(), limit: page, revision };
        let res = ctx.server.store.range(&prefix, opts).await.map_err(store_error)?;
        revision = res.revision;
        let mut last_key = None;
        for kv in &res.kvs {
            last_key = Some(kv.key.clone());
            // Namespaced prefixes of one namespace never catch another namespace's keys
            // because every prefix ends in '/'.
            let obj = decode(kv)?;
            if filter.matches(&obj) {
                items.push(obj);
                if limit.is_some_and(|l| items.len() as u64 >= l) {
                    let more = res.more || kv.key != res.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
                    let continue_token = more.then(|| ContinueToken { rv: revision, start: kv.key.clone() }.encode());
                    return Ok(ListResult { items, revision, continue_token });
                }
            }
        }
        if !res.more {
            return Ok(ListResult { items, revision, continue_token: None });
        }
        start_after = last_key;
    }
}

pub async fn list(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let representation = negotiate(accept(ctx))?;
    check_include_object(ctx)?;
    let filter = Filter::from_query(def, &ctx.query)?;
    let result = list_objects(ctx, &filter).await?;
    let mut meta = json!({"resourceVersion": result.revision.to_string()});
    if let Some(c) = &result.continue_token {
        meta["continue"] = json!(c);
    }
    let body = match representation {
        Representation::Table => table(ctx, result.items, meta),
        Representation::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": result.items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Representation::Object => json!({
            "kind": def.list_kind(),
            "apiVersion": def.api_version(),
            "metadata": meta,
            "items": result.items,
        }),
    };
    Ok(h::json(StatusCode::OK, &body))
}
