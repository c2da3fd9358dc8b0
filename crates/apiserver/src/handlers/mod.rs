//! Request handling: authentication, routing, and one module per verb family.
//!
//! - [`read`]: get and list (with selectors, pagination and Table output)
//! - [`write`]: create, update, patch, delete, deletecollection
//! - [`watch`]: watch streams
//! - [`scale`]: the `/scale` subresource
//! - [`binding`]: a Pod's `/binding` subresource (how a scheduler assigns a node)
//! - [`token_request`]: a ServiceAccount's `/token` subresource (tokens for pods)
//! - [`pod_streams`]: a Pod's `/log`, `/exec`, `/attach`, `/portforward`, proxied to its node's agent

pub mod binding;
pub mod pod_streams;
pub mod read;
pub mod scale;
pub mod token_request;
pub mod watch;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use skiff_api::ApiError;

use crate::auth::Identity;
use crate::http::{self as h, Body, Query};
use crate::request::{route, ResourceRequest, Route};
use crate::state::ApiServer;

/// Largest accepted request body (kube-apiserver's limit for JSON bodies).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// One request, after authentication, as the verb handlers see it.
pub struct Ctx {
    pub server: Arc<ApiServer>,
    pub req: ResourceRequest,
    pub query: Query,
    pub method: Method,
    pub headers: http::HeaderMap,
    pub identity: Identity,
}

/// Entry point for every HTTP request.
pub async fn handle(server: Arc<ApiServer>, req: Request<Incoming>, tls_identity: Option<Identity>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = handle_inner(server, req, tls_identity).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Reads and discards a request body we answer without using (bounded by
/// [`MAX_BODY_BYTES`]). Answering an HTTP/2 request before its body arrived makes the
/// server reset the stream, which some clients (curl) report as a transport error instead
/// of showing our Status.
async fn drain(req: Request<Incoming>) {
    let _ = Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await;
}

async fn handle_inner(
    server: Arc<ApiServer>,
    req: Request<Incoming>,
    tls_identity: Option<Identity>,
) -> Response<Body> {
    let route = match route(req.uri().path()) {
        Ok(r) => r,
        Err(e) => {
            drain(req).await;
            return h::error(&e);
        }
    };
    // Health and version are public, as upstream's system:public-info-viewer allows.
    match &route {
        Route::Version => return h::json(StatusCode::OK, &version()),
        Route::Health(kind) => return health(&server, kind),
        _ => {}
    }
    let identity = match tls_identity.or_else(|| bearer_identity(&server, &req)) {
        Some(id) => id,
        None => {
            drain(req).await;
            return h::error(&ApiError::Unauthorized);
        }
    };
    let query = Query::parse(req.uri().query());
    match route {
        Route::Version | Route::Health(_) => unreachable_public(),
        Route::CoreGroup | Route::Groups | Route::Group(_) | Route::GroupVersion(..) => {
            crate::discovery::serve(&route, req.headers())
        }
        Route::OpenApiV3Index => server.openapi.index(),
        Route::OpenApiV3(gv) => server.openapi.group_version(&gv, &query, req.headers()),
        Route::NotFound => {
            drain(req).await;
            h::error(&ApiError::NotFound(skiff_api::Subject::default()))
        }
        Route::Resource(rr) => {
            if !rr.scope_matches() {
                drain(req).await;
                return h::error(&ApiError::NotFound(rr.def.subject(rr.name.as_deref().unwrap_or(""))));
            }
            let method = req.method().clone();
            let headers = req.headers().clone();
            let ctx = Ctx { server, req: rr, query, method: method.clone(), headers, identity };
            let mut resp = match dispatch(&ctx, method, req).await {
                Ok(r) => r,
                Err(e) => h::error(&e),
            };
            if ctx.req.def.kind == "Endpoints" {
                h::add_warning(
                    &mut resp,
                    "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice",
                );
            }
            resp
        }
    }
}

/// Public routes were answered before authentication.
fn unreachable_public() -> Response<Body> {
    h::error(&ApiError::Internal("public route reached the authenticated path".into()))
}

async fn dispatch(ctx: &Ctx, method: Method, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let is_watch = ctx.req.watch_path || ctx.query.flag("watch");
    let sub = ctx.req.subresource.as_deref();
    match (sub, ctx.req.name.is_some(), &method) {
        (Some("scale"), true, _) => scale::handle(ctx, method, read_body(req).await?).await,
        (Some("binding"), true, &Method::POST) if ctx.req.def.kind == "Pod" => {
            binding::create(ctx, read_body(req).await?).await
        }
        (Some("token"), true, &Method::POST) if ctx.req.def.kind == "ServiceAccount" => {
            token_request::create(ctx, read_body(req).await?).await
        }
        (Some("finalize"), true, &Method::PUT) if ctx.req.def.kind == "Namespace" => {
            write::update(ctx, read_body(req).await?).await
        }
        (Some(s), true, _) if ctx.req.def.kind == "Pod" && pod_streams::SUBRESOURCES.contains(&s) => {
            pod_streams::handle(ctx, method, req).await
        }
        (Some(s), _, _) if s != "status" => {
            Err(ApiError::NotFound(ctx.req.def.subject(ctx.req.name.as_deref().unwrap_or(""))))
        }
        (Some(_), false, _) => Err(ApiError::NotFound(ctx.req.def.subject(""))),
        (_, false, &Method::GET) if is_watch => watch::watch(ctx).await,
        (_, true, &Method::GET) if is_watch => watch::watch(ctx).await,
        (_, false, &Method::GET) => read::list(ctx).await,
        (_, true, &Method::GET) => read::get(ctx).await,
        (None, false, &Method::POST) => write::create(ctx, read_body(req).await?).await,
        (_, true, &Method::PUT) => write::update(ctx, read_body(req).await?).await,
        (_, true, &Method::PATCH) => write::patch(ctx, read_body(req).await?).await,
        (None, true, &Method::DELETE) => write::delete(ctx, read_body(req).await?).await,
        (None, false, &Method::DELETE) => write::delete_collection(ctx, read_body(req).await?).await,
        _ => {
            drain(req).await;
            Err(ApiError::MethodNotAllowed(format!(
                "{method} is not supported on resources of kind {:?}",
                ctx.req.def.kind
            )))
        }
    }
}

/// Reads the request body, refusing more than [`MAX_BODY_BYTES`].
async fn read_body(req: Request<Incoming>) -> Result<(Option<String>, Bytes), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > MAX_BODY_BYTES {
            return Err(too_large());
        }
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            ApiError::BadRequest(format!("reading the request body: {e}"))
        }
    })?;
    Ok((content_type, body.to_bytes()))
}

fn too_large() -> ApiError {
    ApiError::RequestEntityTooLarge("limit is 3145728".into())
}

fn bearer_identity(server: &ApiServer, req: &Request<Incoming>) -> Option<Identity> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    server.tokens.authenticate(token)
}

fn version() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn health(server: &ApiServer, kind: &str) -> Response<Body> {
    if kind == "readyz" && !server.is_ready() {
        return h::text(StatusCode::SERVICE_UNAVAILABLE, "[-]bootstrap failed: not finished\nreadyz check failed\n");
    }
    h::text(StatusCode::OK, "ok")
}
