//! The `/scale` subresource: an `autoscaling/v1 Scale` view of `.spec.replicas`
//! (what `kubectl scale` reads and patches).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::patch::{self, PatchType};
use skiff_api::ApiError;

use super::read::get_object;
use super::Ctx;
use crate::http::{self as h, Body};
use crate::storage::resource_version;

/// The label selector of a workload as the string form Scale.status.selector uses.
fn selector_string(obj: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = obj.pointer("/spec/selector/matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = obj.pointer("/spec/selector/matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"), "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(obj),
        },
    })
}

pub async fn handle(
    ctx: &Ctx,
    method: Method,
    (content_type, body): (Option<String>, Bytes),
) -> Result<Response<Body>, ApiError> {
    let name = ctx.req.name.clone().unwrap_or_default();
    let (obj, rev) = get_object(ctx, &name).await?;
    let current = scale_of(&obj);
    let desired = match method {
        Method::GET => return Ok(h::json(StatusCode::OK, &current)),
        Method::PUT => skiff_api::object::parse_body(&body, content_type.as_deref())?,
        Method::PATCH => {
            let ct = content_type.unwrap_or_default();
            let scale_kind = patch::GroupKind { group: "autoscaling", kind: "Scale" };
            match PatchType::from_content_type(&ct) {
                Some(PatchType::Json) => patch::apply_json_patch(&current, &body)?,
                Some(PatchType::Merge) => patch::apply_merge_patch(&current, &body)?,
                Some(PatchType::StrategicMerge) => patch::apply_strategic_merge_patch(&current, &body, &scale_kind)?,
                _ => return Err(ApiError::UnsupportedMediaType(format!("unsupported patch type {ct:?} for scale"))),
            }
        }
        _ => return Err(ApiError::MethodNotAllowed(format!("{method} is not supported on scale"))),
    };
    let replicas = desired.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::Invalid(
            skiff_api::Subject { group: "autoscaling".into(), kind: "Scale".into(), resource: "scale".into(), name },
            vec![skiff_api::FieldError::invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
        ));
    }
    let precondition = resource_version(&desired)?;
    let mut new = obj.clone();
    new["spec"]["replicas"] = json!(replicas);
    let written = super::write::write_update(ctx, obj, rev, new, precondition.or(Some(rev))).await?;
    Ok(h::json(StatusCode::OK, &scale_of(&written)))
}
