//! create, update, patch, delete and deletecollection.
//!
//! Every write ends in one store transaction: a compare-and-swap on the object's key plus,
//! for Services, the claims and releases of ClusterIPs and NodePorts
//! ([`crate::services`]), so concurrent API servers never hand out the same address.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_api::object::{self, FieldValidation};
use skiff_api::patch::PatchType;
use skiff_api::strategy::{self, WriteTarget};
use skiff_api::{ApiError, FieldError};
use skiff_store::{Compare, Op, StoreError};

use super::read::get_object;
use super::Ctx;
use crate::http::{self as h, Body};
use crate::services;
use crate::storage::{encode, resource_version, set_resource_version, store_error};

/// How many times a write re-plans after losing a race it can recover from.
const MAX_ATTEMPTS: usize = 8;

/// `?dryRun=All` or nothing. Anything else is invalid in the verb's options object
/// (`options` = `CreateOptions`, `UpdateOptions`, `PatchOptions` or `DeleteOptions`), as
/// upstream answers: 422 `CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value`.
fn dry_run(ctx: &Ctx, options: &str) -> Result<bool, ApiError> {
    match ctx.query.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::Invalid(
            skiff_api::Subject { group: "meta.k8s.io".into(), kind: options.into(), ..Default::default() },
            vec![FieldError::new(
                skiff_api::FieldErrorType::NotSupported,
                "dryRun",
                Some(format!("[]string{{{other:?}}}")),
                "supported values: \"All\"",
            )],
        )),
    }
}

/// Decodes a body into a normalized object of the URL's resource and applies
/// `fieldValidation`. Returns the object and the warnings to send.
fn decode_body(ctx: &Ctx, content_type: Option<&str>, body: &[u8]) -> Result<(Value, Vec<String>), ApiError> {
    let mut obj = object::parse_body(body, content_type)?;
    object::check_type_meta(ctx.req.def, &mut obj)?;
    let duplicates = if is_json(content_type) { object::duplicate_fields(body) } else { Vec::new() };
    normalize_checked(ctx, &obj, &duplicates, None)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| ct.starts_with("application/json") || ct.contains("patch+json"))
}

/// Normalizes an object and applies `fieldValidation` to what normalization dropped.
/// For patches (`patch` = the raw patch) upstream reports Strict failures as an Invalid
/// `patch` field rather than a BadRequest.
fn normalize_checked(
    ctx: &Ctx,
    obj: &Value,
    duplicates: &[String],
    patch: Option<&[u8]>,
) -> Result<(Value, Vec<String>), ApiError> {
    let validation = FieldValidation::parse(ctx.query.get("fieldValidation"))?;
    let (normalized, unknown) = object::normalize(ctx.req.def, obj)?;
    let findings = object::field_findings(&unknown, duplicates);
    let warnings = match validation {
        FieldValidation::Strict if !findings.is_empty() => {
            return Err(match patch {
                None => object::strict_error(&findings),
                Some(raw) => ApiError::Invalid(
                    skiff_api::Subject::default(),
                    vec![FieldError::invalid(
                        "patch",
                        String::from_utf8_lossy(raw).into_owned(),
                        format!("strict decoding error: {}", findings.join(", ")),
                    )],
                ),
            })
        }
        FieldValidation::Warn => findings,
        _ => Vec::new(),
    };
    Ok((normalized, warnings))
}

fn respond(code: StatusCode, obj: &Value, warnings: &[String]) -> Response<Body> {
    let mut resp = h::json(code, obj);
    for w in warnings {
        h::add_warning(&mut resp, w);
    }
    resp
}

fn invalid(ctx: &Ctx, name: &str, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(ctx.req.def.subject(name), errs))
    }
}

/// Checks that the namespace of a namespaced write exists and is not being deleted.
async fn check_namespace(ctx: &Ctx) -> Result<(), ApiError> {
    let Some(ns) = ctx.req.namespace.as_deref().filter(|_| ctx.req.def.namespaced) else { return Ok(()) };
    let key = format!("/registry/namespaces/{ns}");
    let (kv, _) = ctx.server.store.get(&key).await.map_err(store_error)?;
    let subject = skiff_api::Subject {
        resource: "namespaces".into(),
        kind: "Namespace".into(),
        name: ns.into(),
        ..Default::default()
    };
    let kv = kv.ok_or(ApiError::NotFound(subject))?;
    let nsobj: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    if nsobj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::Forbidden(format!(
            "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.req.def.plural, ""
        )));
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let dry = dry_run(ctx, "CreateOptions")?;
    let (mut obj, warnings) = decode_body(ctx, content_type.as_deref(), &body)?;
    object::prepare_create_metadata(def, &mut obj, ctx.req.namespace.as_deref())?;
    let generated = obj.pointer("/metadata/generateName").is_some_and(|g| g.as_str().is_some_and(|s| !s.is_empty()))
        && !body_has_name(&body, content_type.as_deref());
    strategy::prepare_for_create(def, &mut obj);
    let name = object::object_name(&obj).to_string();
    let mut errs = skiff_api::validation::validate_metadata(def, &obj);
    errs.extend(strategy::validate_create(def, &obj));
    invalid(ctx, &name, errs)?;
    check_namespace(ctx).await?;

    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut candidate = obj.clone();
        if generated && attempt > 1 {
            // Upstream retries a colliding generated name (KEP-4420).
            let prefix = candidate.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or("").to_string();
            let prefix: String = prefix.chars().take(58).collect();
            object::metadata_mut(&mut candidate)
                .insert("name".into(), json!(format!("{prefix}{}", object::random_suffix())));
        }
        let name = object::object_name(&candidate).to_string();
        let extra = services::plan(ctx, None, &mut candidate).await?;
        if dry {
            return Ok(respond(StatusCode::CREATED, &candidate, &warnings));
        }
        let key = def.key(ctx.req.namespace.as_deref(), &name);
        let mut compares = vec![Compare::Absent(key.clone())];
        let mut ops = vec![Op::put(key, encode(&candidate))];
        compares.extend(extra.compares.iter().cloned());
        ops.extend(extra.ops.iter().cloned());
        match ctx.server.store.txn(compares, ops).await {
            Ok(r) => {
                set_resource_version(&mut candidate, r.revision);
                return Ok(respond(StatusCode::CREATED, &candidate, &warnings));
            }
            Err(StoreError::CompareFailed { index: 0 }) => {
                if generated && attempt < 8 {
                    continue;
                }
                return Err(ApiError::AlreadyExists(def.subject(&name)));
            }
            Err(StoreError::CompareFailed { index }) => {
                let err = extra.lost_claim(index - 1);
                if attempt >= MAX_ATTEMPTS || err.is_some() {
                    return Err(err
                        .map(|e| ApiError::Invalid(def.subject(&name), vec![e]))
                        .unwrap_or_else(|| ApiError::Internal("allocation kept conflicting; try again".into())));
                }
            }
            Err(e) => return Err(store_error(e)),
        }
    }
}

/// Whether the raw body set metadata.name itself (so generateName was not used).
fn body_has_name(body: &[u8], content_type: Option<&str>) -> bool {
    object::parse_body(body, content_type)
        .ok()
        .and_then(|v| v.pointer("/metadata/name").and_then(Value::as_str).map(|s| !s.is_empty()))
        .unwrap_or(false)
}

fn target(ctx: &Ctx) -> WriteTarget {
    match ctx.req.subresource.as_deref() {
        Some("status") => WriteTarget::Status,
        Some("finalize") => WriteTarget::Finalize,
        Some("binding") => WriteTarget::Binding,
        _ => WriteTarget::Main,
    }
}

pub async fn update(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let url_name = ctx.req.name.clone().unwrap_or_default();
    let (obj, warnings) = decode_body(ctx, content_type.as_deref(), &body)?;
    let body_name = object::object_name(&obj);
    if body_name != url_name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    check_body_namespace(ctx, &obj)?;
    let precondition = resource_version(&obj)?;
    let (code, written) = match get_object(ctx, &url_name).await {
        Ok((old, old_rev)) => (StatusCode::OK, write_update(ctx, old, old_rev, obj, precondition).await?),
        Err(ApiError::NotFound(_)) if allow_create_on_update(def.kind) && target(ctx) == WriteTarget::Main => {
            let mut created = obj;
            object::metadata_mut(&mut created).remove("resourceVersion");
            let bytes = Bytes::from(serde_json::to_vec(&created).unwrap_or_default());
            let resp = create(ctx, (Some("application/json".into()), bytes)).await?;
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    Ok(respond(code, &written, &warnings))
}

/// Kinds whose PUT creates a missing object (upstream's AllowCreateOnUpdate).
fn allow_create_on_update(kind: &str) -> bool {
    matches!(kind, "Endpoints" | "Event" | "Lease")
}

fn check_body_namespace(ctx: &Ctx, obj: &Value) -> Result<(), ApiError> {
    let ns = object::object_namespace(obj);
    if ctx.req.def.namespaced && !ns.is_empty() && Some(ns) != ctx.req.namespace.as_deref() {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    Ok(())
}

/// Applies an update to a stored object: the shared tail of PUT, PATCH and `/scale`.
///
/// `precondition` is the resourceVersion the client based its change on; None means an
/// unconditional update. Returns the written object, or the stored one when nothing changed.
pub async fn write_update(
    ctx: &Ctx,
    old: Value,
    old_rev: i64,
    new: Value,
    precondition: Option<i64>,
) -> Result<Value, ApiError> {
    let def = ctx.req.def;
    let dry = dry_run(ctx, if ctx.method == http::Method::PATCH { "PatchOptions" } else { "UpdateOptions" })?;
    if precondition.is_some_and(|rv| rv != old_rev) {
        return Err(ApiError::Conflict(def.subject(object::object_name(&old))));
    }
    let name = object::object_name(&old).to_string();
    let mut new = new;
    object::preserve_immutable_metadata(&old, &mut new);
    strategy::prepare_for_update(def, target(ctx), &old, &mut new);
    let mut errs = skiff_api::validation::validate_metadata(def, &new);
    errs.extend(strategy::validate_update(def, &old, &new));
    invalid(ctx, &name, errs)?;
    object::bump_generation(def, &old, &mut new);
    set_resource_version(&mut new, old_rev);

    let key = def.key(ctx.req.namespace.as_deref(), &name);
    for attempt in 1..=MAX_ATTEMPTS {
        let mut candidate = new.clone();
        let extra = services::plan(ctx, Some(&old), &mut candidate).await?;
        if object::same_content(&old, &candidate) && extra.is_empty() {
            return Ok(old);
        }
        if finalized(def.kind, &candidate) {
            return delete_now(ctx, &key, old_rev, &old, dry).await;
        }
        if dry {
            return Ok(candidate);
        }
        let mut compares = vec![Compare::ModRevision(key.clone(), old_rev)];
        let mut ops = vec![Op::put(key.clone(), encode(&candidate))];
        compares.extend(extra.compares.iter().cloned());
        ops.extend(extra.ops.iter().cloned());
        match ctx.server.store.txn(compares, ops).await {
            Ok(r) => {
                set_resource_version(&mut candidate, r.revision);
                return Ok(candidate);
            }
            Err(StoreError::CompareFailed { index: 0 }) => return Err(ApiError::Conflict(def.subject(&name))),
            Err(StoreError::CompareFailed { index }) => {
                if let Some(e) = extra.lost_claim(index - 1) {
                    return Err(ApiError::Invalid(def.subject(&name), vec![e]));
                }
                if attempt == MAX_ATTEMPTS {
                    return Err(ApiError::Internal("allocation kept conflicting; try again".into()));
                }
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::Internal("allocation kept conflicting; try again".into()))
}

/// An object marked for deletion whose last finalizer is gone (and whose grace period is
/// over) is removed by the write that removed the finalizer. A Namespace also waits for its
/// `spec.finalizers` (emptied through `/finalize` by the namespace controller).
fn finalized(kind: &str, obj: &Value) -> bool {
    let empty = |pointer: &str| obj.pointer(pointer).and_then(Value::as_array).is_none_or(|f| f.is_empty());
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    let grace_over = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0;
    let spec_finalized = kind != "Namespace" || empty("/spec/finalizers");
    deleting && empty("/metadata/finalizers") && spec_finalized && grace_over
}

pub async fn patch(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let name = ctx.req.name.clone().unwrap_or_default();
    let ct = content_type.unwrap_or_default();
    let patch_type = PatchType::from_content_type(&ct).ok_or_else(|| PatchType::unsupported(&PatchType::ALL))?;
    if patch_type == PatchType::Apply {
        return Err(ApiError::UnsupportedMediaType(
            "server-side apply (application/apply-patch+yaml) is not supported by skiff yet; use client-side kubectl apply".into(),
        ));
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let (old, old_rev) = get_object(ctx, &name).await?;
        let kind = skiff_api::patch::GroupKind { group: def.group, kind: def.kind };
        let patched = match patch_type {
            PatchType::Json => skiff_api::patch::apply_json_patch(&old, &body),
            PatchType::Merge => skiff_api::patch::apply_merge_patch(&old, &body),
            PatchType::StrategicMerge | PatchType::Apply => {
                skiff_api::patch::apply_strategic_merge_patch(&old, &body, &kind)
            }
        };
        let mut patched = patched.map_err(|e| skiff_api::patch::for_target(e, &def.subject(&name)))?;
        object::check_type_meta(def, &mut patched)?;
        if object::object_name(&patched) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::object_name(&patched)
            )));
        }
        let duplicates = if is_json(Some(&ct)) { object::duplicate_fields(&body) } else { Vec::new() };
        let (normalized, warnings) = normalize_checked(ctx, &patched, &duplicates, Some(&body))?;
        // A patch that sets resourceVersion asks for optimistic locking; otherwise we retry
        // on our own conflicts, as upstream does for patches.
        let precondition = resource_version(&normalized)?.filter(|rv| *rv != old_rev);
        match write_update(ctx, old, old_rev, normalized, precondition.or(Some(old_rev))).await {
            Ok(written) => return Ok(respond(StatusCode::OK, &written, &warnings)),
            Err(ApiError::Conflict(_)) if precondition.is_none() && attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict(def.subject(&name)))
}

/// Options of a DELETE, from the body (`DeleteOptions`) and the query.
struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
}

fn delete_options(ctx: &Ctx, content_type: Option<&str>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let opts: Value =
        if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { object::parse_body(body, content_type)? };
    let mut propagation = opts.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
    if let Some(p) = ctx.query.value("propagationPolicy") {
        propagation = Some(p.to_string());
    }
    let orphan = opts
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| ctx.query.get("orphanDependents").map(|v| v == "true"));
    if orphan == Some(true) && propagation.is_none() {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::Invalid(
                skiff_api::Subject { kind: "DeleteOptions".into(), ..Default::default() },
                vec![FieldError::not_supported(
                    "propagationPolicy",
                    p.as_str(),
                    &["Foreground", "Background", "Orphan"],
                )],
            ));
        }
    }
    let grace_period = match ctx.query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => opts.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    Ok(DeleteOptions {
        grace_period,
        propagation,
        precondition_uid: opts.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
        precondition_rv: opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string),
    })
}

pub async fn delete(ctx: &Ctx, (content_type, body): (Option<String>, Bytes)) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, content_type.as_deref(), &body)?;
    let name = ctx.req.name.clone().unwrap_or_default();
    let (code, obj) = delete_one(ctx, &name, &opts).await?;
    Ok(h::json(code, &obj))
}

/// Deletes (or marks for deletion) one object; returns what DELETE answers.
async fn delete_one(ctx: &Ctx, name: &str, opts: &DeleteOptions) -> Result<(StatusCode, Value), ApiError> {
    let def = ctx.req.def;
    let dry = dry_run(ctx, "DeleteOptions")?;
    for _ in 0..MAX_ATTEMPTS {
        let (old, old_rev) = get_object(ctx, name).await?;
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if let Some(want) = &opts.precondition_uid {
            if want != uid {
                return Err(ApiError::ConflictMessage(
                    def.subject(name),
                    format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                ));
            }
        }
        if let Some(want) = &opts.precondition_rv {
            if *want != old_rev.to_string() {
                return Err(ApiError::ConflictMessage(
                    def.subject(name),
                    format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {old_rev}"),
                ));
            }
        }
        let mut marked = old.clone();
        let needs_mark = mark_for_deletion(def.kind, &mut marked, opts);
        let key = def.key(ctx.req.namespace.as_deref(), name);
        if !needs_mark {
            let deleted = delete_now(ctx, &key, old_rev, &old, dry).await;
            match deleted {
                Err(ApiError::Conflict(_)) => continue,
                Err(e) => return Err(e),
                Ok(obj) => return Ok((StatusCode::OK, deleted_response(def, obj))),
            }
        }
        if object::same_content(&old, &marked) {
            return Ok((StatusCode::OK, old));
        }
        if dry {
            return Ok((StatusCode::OK, marked));
        }
        match ctx
            .server
            .store
            .txn(vec![Compare::ModRevision(key.clone(), old_rev)], vec![Op::put(key, encode(&marked))])
            .await
        {
            Ok(r) => {
                set_resource_version(&mut marked, r.revision);
                // 202 Accepted: the object still exists and will go away later.
                return Ok((StatusCode::ACCEPTED, marked));
            }
            Err(StoreError::CompareFailed { .. }) => continue,
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::Conflict(def.subject(name)))
}

/// Upstream returns the object itself for some kinds and a Status for the rest.
fn deleted_response(def: &skiff_api::registry::ResourceDef, obj: Value) -> Value {
    if matches!(def.kind, "Service" | "Pod" | "Namespace") {
        return obj;
    }
    let mut details = json!({"name": object::object_name(&obj), "kind": def.plural,
        "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(json!(""))});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// Sets deletionTimestamp and the finalizers a delete needs; returns whether the object
/// must stay (finalizers, graceful pod termination, namespace cleanup) instead of going now.
fn mark_for_deletion(kind: &str, obj: &mut Value, opts: &DeleteOptions) -> bool {
    let mut finalizers: Vec<String> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    match opts.propagation.as_deref() {
        Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
            finalizers.push("foregroundDeletion".into())
        }
        Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
        _ => {}
    }
    let already = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
    // Pods bound to a node terminate gracefully: the node agent stops the containers and
    // then deletes the pod with grace period 0.
    let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    let pod_grace =
        if kind == "Pod" && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            let spec_grace = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
            let grace = opts.grace_period.unwrap_or(spec_grace).max(0);
            // A repeated delete may only shorten the grace period.
            Some(current_grace.map_or(grace, |c| c.min(grace)))
        } else {
            None
        };
    let namespace_cleanup =
        kind == "Namespace" && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let keep = !finalizers.is_empty() || pod_grace.is_some_and(|g| g > 0) || namespace_cleanup;
    if !keep {
        return false;
    }
    let meta = object::metadata_mut(obj);
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    let grace = pod_grace.unwrap_or(0);
    // A repeated delete of a terminating pod moves its deadline only when it shortens the
    // grace period, so deleting again never postpones the end.
    let shortened = pod_grace.is_some_and(|g| current_grace.is_none_or(|c| g < c));
    if !already || shortened {
        let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
        meta.insert("deletionTimestamp".into(), json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if kind == "Namespace" {
        obj["status"] = json!({"phase": "Terminating"});
    }
    true
}

/// Removes an object (CAS on its revision) together with what it had allocated.
async fn delete_now(ctx: &Ctx, key: &str, rev: i64, old: &Value, dry: bool) -> Result<Value, ApiError> {
    let name = object::object_name(old);
    if dry {
        return Ok(old.clone());
    }
    let mut ops = vec![Op::delete(key)];
    ops.extend(services::release_ops(ctx, old));
    match ctx.server.store.txn(vec![Compare::ModRevision(key.into(), rev)], ops).await {
        Ok(_) => Ok(old.clone()),
        Err(StoreError::CompareFailed { .. }) => Err(ApiError::Conflict(ctx.req.def.subject(name))),
        Err(e) => Err(store_error(e)),
    }
}

pub async fn delete_collection(
    ctx: &Ctx,
    (content_type, body): (Option<String>, Bytes),
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, content_type.as_deref(), &body)?;
    let filter = crate::filter::Filter::from_query(ctx.req.def, &ctx.query)?;
    let listed = super::read::list_objects(ctx, &filter).await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let name = object::object_name(&obj).to_string();
        let ns = object::object_namespace(&obj).to_string();
        let sub_ctx = Ctx {
            server: ctx.server.clone(),
            req: crate::request::ResourceRequest {
                namespace: if ctx.req.def.namespaced { Some(ns) } else { None },
                name: Some(name.clone()),
                ..ctx.req.clone()
            },
            query: ctx.query.clone(),
            method: ctx.method.clone(),
            headers: ctx.headers.clone(),
            identity: ctx.identity.clone(),
        };
        match delete_one(&sub_ctx, &name, &opts).await {
            Ok((_, obj)) => deleted.push(obj),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let def = ctx.req.def;
    Ok(h::json(
        StatusCode::OK,
        &json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {}, "items": deleted}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_wait_for_their_spec_finalizers() {
        let mut ns = json!({"metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(!finalized("Namespace", &ns));
        ns["spec"]["finalizers"] = json!([]);
        assert!(finalized("Namespace", &ns));
        ns["metadata"]["finalizers"] = json!(["orphan"]);
        assert!(!finalized("Namespace", &ns));
        let cm = json!({"metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": []}});
        assert!(finalized("ConfigMap", &cm));
    }

    #[test]
    fn deleting_a_terminating_pod_again_keeps_its_deadline() {
        let opts = |grace| DeleteOptions {
            grace_period: grace,
            propagation: None,
            precondition_uid: None,
            precondition_rv: None,
        };
        let mut pod =
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        assert!(mark_for_deletion("Pod", &mut pod, &opts(None)));
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        assert!(mark_for_deletion("Pod", &mut pod, &opts(None)));
        assert_eq!(pod["metadata"]["deletionTimestamp"], "2026-01-01T00:00:30Z");
        assert!(mark_for_deletion("Pod", &mut pod, &opts(Some(5))));
        assert_ne!(pod["metadata"]["deletionTimestamp"], "2026-01-01T00:00:30Z");
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 5);
        assert!(!mark_for_deletion("Pod", &mut pod, &opts(Some(0))));
    }
}
