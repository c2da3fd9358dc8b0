//! Tests of the patch formats: content types and JSON/merge patches here, strategic merge
//! patches (a table of cases) in [`smp`].

mod smp;

use serde_json::{json, Value};

use super::*;

fn status_code(result: Result<Value, ApiError>) -> u16 {
    match result {
        Ok(value) => panic!("expected an error, got {value}"),
        Err(error) => error.code(),
    }
}

fn error_message(result: Result<Value, ApiError>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value}"),
        Err(error) => error.message(),
    }
}

#[test]
fn content_types() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        ("application/strategic-merge-patch+json", Some(PatchType::StrategicMerge)),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        ("application/strategic-merge-patch+json; charset=utf-8", Some(PatchType::StrategicMerge)),
        ("application/merge-patch+json;charset=UTF-8", Some(PatchType::Merge)),
        ("Application/JSON-Patch+JSON", Some(PatchType::Json)),
        (" application/apply-patch+yaml ", Some(PatchType::Apply)),
        ("application/json", None),
        ("application/yaml", None),
        ("application/apply-patch+cbor", None),
        ("", None),
        (";", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(PatchType::from_content_type(content_type), expected, "{content_type:?}");
    }
    for patch_type in PatchType::ALL {
        assert_eq!(PatchType::from_content_type(patch_type.content_type()), Some(patch_type));
    }
}

#[test]
fn unsupported_media_type_lists_accepted_types_like_upstream() {
    let error = PatchType::unsupported(&PatchType::WITHOUT_STRATEGIC_MERGE);
    assert_eq!(error.code(), 415);
    assert_eq!(error.reason(), "UnsupportedMediaType");
    assert_eq!(
        error.message(),
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "web"}},
    })
}

fn json_patch(patch: Value) -> Result<Value, ApiError> {
    apply_json_patch(&service(), patch.to_string().as_bytes())
}

#[test]
fn json_patch_operations() {
    let patched = json_patch(json!([
        {"op": "test", "path": "/metadata/name", "value": "web"},
        {"op": "add", "path": "/spec/ports/-", "value": {"name": "https", "port": 443}},
        {"op": "replace", "path": "/spec/selector/app", "value": "api"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/role"},
        {"op": "copy", "from": "/spec/selector", "path": "/metadata/annotations"},
    ]))
    .expect("patch applies");
    assert_eq!(patched["spec"]["ports"][1], json!({"name": "https", "port": 443}));
    assert_eq!(patched["spec"]["selector"], json!({"app": "api"}));
    assert_eq!(patched["metadata"]["labels"], json!({"role": "web"}));
    assert_eq!(patched["metadata"]["annotations"], json!({"app": "api"}));
}

#[test]
fn json_patch_that_cannot_apply_is_unprocessable() {
    let failed_test = json_patch(json!([
        {"op": "replace", "path": "/spec/selector/app", "value": "api"},
        {"op": "test", "path": "/metadata/name", "value": "other"},
    ]));
    assert_eq!(status_code(failed_test.clone()), 422);
    assert_eq!(
        error_message(failed_test),
        " \"\" is invalid: patch: Invalid value: JSON patch operation 1 (test) failed: the value at \"/metadata/name\" does not match"
    );
    let missing = json_patch(json!([{"op": "remove", "path": "/spec/affinity"}]));
    assert!(error_message(missing.clone())
        .contains("operation 0 (remove) failed: the path \"/spec/affinity\" does not exist"));
    assert_eq!(status_code(missing), 422);
    assert_eq!(status_code(json_patch(json!([{"op": "replace", "path": "/spec/nothing", "value": 1}]))), 422);
    assert_eq!(status_code(json_patch(json!([{"op": "add", "path": "/spec/ports/7", "value": {}}]))), 422);
    let bad_from = json_patch(json!([{"op": "move", "from": "/nope", "path": "/spec/x"}]));
    assert!(error_message(bad_from).contains("its \"from\" path does not exist"));
}

#[test]
fn json_patch_unprocessable_error_can_name_its_target() {
    let error = json_patch(json!([{"op": "test", "path": "/spec/x", "value": 1}])).expect_err("test fails");
    let subject =
        Subject { group: String::new(), resource: "services".into(), kind: "Service".into(), name: "web".into() };
    let named = for_target(error, &subject);
    assert!(named
        .message()
        .starts_with("Service \"web\" is invalid: patch: Invalid value: JSON patch operation 0 (test)"));
    assert_eq!(named.to_status()["details"]["causes"][0]["field"], "patch");
    let other = for_target(ApiError::BadRequest("x".into()), &subject);
    assert_eq!(other, ApiError::BadRequest("x".into()));
}

#[test]
fn malformed_json_patches_are_bad_requests() {
    let cases: [&[u8]; 6] = [
        b"not json",
        br#"{"op": "add", "path": "/a", "value": 1}"#,
        br#"[{"op": "frobnicate", "path": "/a"}]"#,
        br#"[{"op": "add", "value": 1}]"#,
        br#"[{"op": "add", "path": "no-leading-slash", "value": 1}]"#,
        br#"[42]"#,
    ];
    for body in cases {
        let result = apply_json_patch(&service(), body);
        assert_eq!(status_code(result), 400, "{}", String::from_utf8_lossy(body));
    }
    let message = error_message(apply_json_patch(&service(), br#"{"op": "add"}"#));
    assert_eq!(message, "a JSON patch must be a list of operations, got an object");
}

#[test]
fn json_patch_operation_limit_is_upstreams() {
    let operation = json!({"op": "test", "path": "/kind", "value": "Service"});
    let within: Vec<Value> = vec![operation.clone(); MAX_JSON_PATCH_OPERATIONS];
    assert!(json_patch(Value::from(within)).is_ok());
    let over: Vec<Value> = vec![operation; MAX_JSON_PATCH_OPERATIONS + 1];
    let result = json_patch(Value::from(over));
    assert_eq!(error_message(result.clone()), "The allowed maximum operations in a JSON patch is 10000, got 10001");
    assert_eq!(status_code(result), 413);
}

fn merge_patch(patch: Value) -> Result<Value, ApiError> {
    apply_merge_patch(&service(), patch.to_string().as_bytes())
}

#[test]
fn merge_patch_merges_maps_deletes_nulls_and_replaces_lists() {
    let patched = merge_patch(json!({
        "metadata": {"labels": {"tier": null, "team": "blue"}, "annotations": {"a": "1", "gone": null}},
        "spec": {"ports": [{"port": 8080}], "selector": null, "type": "NodePort"},
        "status": null,
    }))
    .expect("patch applies");
    assert_eq!(patched["metadata"]["labels"], json!({"app": "web", "team": "blue"}));
    assert_eq!(patched["metadata"]["annotations"], json!({"a": "1"}));
    assert_eq!(patched["spec"], json!({"ports": [{"port": 8080}], "type": "NodePort"}));
    assert!(patched.get("status").is_none());
}

#[test]
fn merge_patch_keeps_key_order() {
    let patched = merge_patch(json!({"metadata": {"labels": {"app": null, "zone": "a"}}})).expect("applies");
    let keys: Vec<&String> = patched["metadata"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["name", "namespace", "labels"]);
    let labels: Vec<&String> =
        patched["metadata"]["labels"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(labels, ["tier", "zone"]);
}

#[test]
fn kubectl_scale_merge_patch() {
    let scale =
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
    let patched = apply_merge_patch(&scale, br#"{"spec":{"replicas":3}}"#).expect("applies");
    assert_eq!(patched["spec"]["replicas"], 3);
}

#[test]
fn malformed_merge_patches_are_bad_requests() {
    for body in [&b"{"[..], b"null", b"[]", b"\"text\"", b"3"] {
        assert_eq!(status_code(apply_merge_patch(&service(), body)), 400, "{}", String::from_utf8_lossy(body));
    }
}
