//! `POST /api/v1/namespaces/{ns}/pods/{name}/binding`: assigns a pod to a node, as
//! kube-apiserver's binding REST does. The scheduler uses it instead of an update so that a
//! pod is bound at most once: binding a pod that already has a node, or one being deleted,
//! is a Conflict.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::{ApiError, FieldError};

use super::read::get_object;
use super::Ctx;
use crate::http::{self as h, Body};

pub async fn create(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let name = ctx.req.name.clone().unwrap_or_default();
    let binding = skiff_api::object::parse_body(&body, content_type.as_deref())?;
    let binding_name = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if binding_name != name {
        return Err(ApiError::BadRequest("name in URL does not match name in Binding object".into()));
    }
    let target_kind = binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or("");
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
    let mut errs = Vec::new();
    if !target_kind.is_empty() && target_kind != "Node" {
        errs.push(FieldError::not_supported("target.kind", target_kind, &["Node", "<empty>"]));
    }
    if node.is_empty() {
        errs.push(FieldError::required("target.name", ""));
    }
    if !errs.is_empty() {
        let subject =
            skiff_api::Subject { group: "".into(), kind: "Binding".into(), resource: "bindings".into(), name };
        return Err(ApiError::Invalid(subject, errs));
    }

    let (pod, rev) = get_object(ctx, &name).await?;
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let message = format!("pod {name} is being deleted, cannot be assigned to a host");
        return Err(ApiError::ConflictMessage(def.subject(&name), message));
    }
    let current = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    if !current.is_empty() {
        let message = format!("pod {name} is already assigned to node {current:?}");
        return Err(ApiError::ConflictMessage(def.subject(&name), message));
    }

    let mut bound = pod.clone();
    bound["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding.pointer("/metadata/annotations").and_then(Value::as_object) {
        let meta = &mut bound["metadata"];
        if !meta.get("annotations").is_some_and(Value::is_object) {
            meta["annotations"] = json!({});
        }
        for (key, value) in annotations {
            meta["annotations"][key] = value.clone();
        }
    }
    set_scheduled_condition(&mut bound);
    // Conditional on the revision read above: a concurrent binding loses with a Conflict.
    super::write::write_update(ctx, pod, rev, bound, Some(rev)).await?;
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201,
    });
    Ok(h::json(StatusCode::CREATED, &status))
}

/// Sets PodScheduled=True, keeping the transition time when it was already true.
fn set_scheduled_condition(pod: &mut Value) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return };
    let now = skiff_api::object::now_timestamp();
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => {
            *c = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now})
        }
        None => conditions.push(json!({
            "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now,
        })),
    }
}
