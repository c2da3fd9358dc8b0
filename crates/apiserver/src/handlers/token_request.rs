//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`: the TokenRequest API the
//! node agent uses to give pods their ServiceAccount token, as kube-apiserver's. Tokens
//! carry audiences, an expiry and the pod they are bound to.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::{ApiError, FieldError};

use super::read::get_object;
use super::Ctx;
use crate::auth::TokenClaims;
use crate::http::{self as h, Body};

/// Upstream's bounds on `spec.expirationSeconds`: at least 10 minutes, at most 2^32 s.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
/// Upstream's default when the request names none: one hour.
const DEFAULT_EXPIRATION: i64 = 3600;

pub async fn create(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let name = ctx.req.name.clone().unwrap_or_default();
    let namespace = ctx.req.namespace.clone().unwrap_or_default();
    let request = skiff_api::object::parse_body(&body, content_type.as_deref())?;
    let expiration = request.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(DEFAULT_EXPIRATION);
    let audiences: Vec<String> = request
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let mut errs = Vec::new();
    if expiration < MIN_EXPIRATION {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        ));
    } else if expiration > MAX_EXPIRATION {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = request.pointer("/spec/boundObjectRef").filter(|v| v.is_object());
    let bound_kind = bound.and_then(|b| b.get("kind")).and_then(Value::as_str).unwrap_or("");
    if bound.is_some() && !matches!(bound_kind, "Pod" | "Secret" | "Node") {
        errs.push(FieldError::not_supported("spec.boundObjectRef.kind", bound_kind, &["Node", "Pod", "Secret"]));
    }
    if !errs.is_empty() {
        let subject = skiff_api::Subject {
            group: "authentication.k8s.io".into(),
            kind: "TokenRequest".into(),
            resource: "tokenrequests".into(),
            name,
        };
        return Err(ApiError::Invalid(subject, errs));
    }
    // The ServiceAccount must exist (404 otherwise, like upstream).
    let (account, _) = get_object(ctx, &name).await?;
    let uid = account.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let pod = match bound_kind {
        "Pod" => {
            let pod_name = bound.and_then(|b| b.get("name")).and_then(Value::as_str).unwrap_or("");
            let pod_uid = bound.and_then(|b| b.get("uid")).and_then(Value::as_str).unwrap_or("");
            Some((pod_name, pod_uid))
        }
        _ => None,
    };
    let expires = chrono::Utc::now() + chrono::Duration::seconds(expiration);
    let token = ctx.server.tokens.issue(&TokenClaims {
        namespace: &namespace,
        name: &name,
        uid,
        audiences: &audiences,
        expires_at: Some(expires.timestamp()),
        pod,
    });
    let mut answer = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": request.get("spec").cloned().unwrap_or(json!({})),
        "status": {
            "token": token,
            "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    });
    answer["spec"]["expirationSeconds"] = json!(expiration);
    if audiences.is_empty() {
        answer["spec"]["audiences"] = json!([crate::auth::DEFAULT_AUDIENCE]);
    }
    Ok(h::json(StatusCode::CREATED, &answer))
}
