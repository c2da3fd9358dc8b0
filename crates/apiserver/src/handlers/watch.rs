//! Watch streams: newline-delimited JSON `{"type": ..., "object": ...}` events.
//!
//! A watch without a resourceVersion (or with "0") first sends the current state as
//! ADDED events; with one, it sends every change after it. Changes come from the store's
//! watch, filtered by label and field selectors with upstream's transitions: an object
//! entering a selector is ADDED, leaving it DELETED. Bookmarks carry the store's progress.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::{EventKind, RangeOptions, StoreError, WatchResponse};
use tokio::sync::mpsc;

use super::read::{accept, partial_metadata};
use super::Ctx;
use crate::filter::Filter;
use crate::http::{negotiate, Body, Representation};
use crate::storage::{decode, parse_rv, set_resource_version, store_error};

/// How often idle watchers get a bookmark (when they asked for bookmarks).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// Everything a watch task needs, owned (it outlives the request handler).
struct WatchSpec {
    def: &'static skiff_api::registry::ResourceDef,
    prefix: String,
    filter: Filter,
    name: Option<String>,
    representation: Representation,
    bookmarks: bool,
    include_object: Option<String>,
}

pub async fn watch(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let def = ctx.req.def;
    let representation = negotiate(accept(ctx))?;
    super::read::check_include_object(ctx)?;
    let filter = Filter::from_query(def, &ctx.query)?;
    let store = ctx.server.store.clone();
    let spec = WatchSpec {
        def,
        prefix: def.namespace_prefix(ctx.req.namespace.as_deref()),
        filter,
        name: ctx.req.name.clone(),
        representation,
        bookmarks: ctx.query.flag("allowWatchBookmarks"),
        include_object: ctx.query.get("includeObject").map(str::to_string),
    };
    let send_initial = ctx.query.flag("sendInitialEvents");
    let rv = ctx.query.value("resourceVersion").map(str::to_string);
    if let Some(m) = ctx.query.value("resourceVersionMatch") {
        if m != "NotOlderThan" || !send_initial {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch {m:?} is only supported with sendInitialEvents=true and the value NotOlderThan"
            )));
        }
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Upstream picks a random timeout between 30 and 60 minutes to spread reconnects.
        _ => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    // Decide the start before answering, so a bad resourceVersion is a proper error.
    let start = match rv.as_deref() {
        Some(rv) if rv != "0" && !send_initial => Start::After(parse_rv(rv)?),
        _ => Start::Initial,
    };

    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    tokio::spawn(async move {
        let work = run(store, spec, start, send_initial, tx.clone());
        tokio::select! {
            _ = work => {}
            _ = tokio::time::sleep(timeout) => {}
            _ = tx.closed() => {}
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

enum Start {
    /// Send the current state first.
    Initial,
    After(i64),
}

/// Serializes one event line. The first Table event carries the column definitions.
struct Encoder {
    def: &'static skiff_api::registry::ResourceDef,
    representation: Representation,
    include_object: Option<String>,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: Value) -> Bytes {
        let object = match self.representation {
            Representation::Object => obj,
            Representation::Metadata => partial_metadata(&obj),
            Representation::Table => {
                let include = skiff_api::printers::IncludeObject::parse(self.include_object.as_deref().unwrap_or(""))
                    .unwrap_or(skiff_api::printers::IncludeObject::Metadata);
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
                let objects = vec![obj];
                let t = skiff_api::printers::table(self.def.group, self.def.kind, &objects, chrono::Utc::now());
                let mut v = t.to_json(&objects, include);
                if self.sent_columns {
                    v["columnDefinitions"] = json!([]);
                }
                self.sent_columns = true;
                v["metadata"] = json!({"resourceVersion": rv});
                v
            }
        };
        let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        let mut bytes = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

fn error_line(err: &ApiError) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": "ERROR", "object": err.to_status()})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn matches(spec: &WatchSpec, obj: &Value) -> bool {
    let name_ok = spec.name.as_deref().is_none_or(|n| skiff_api::object::object_name(obj) == n);
    name_ok && spec.filter.matches(obj)
}

async fn run(
    store: std::sync::Arc<dyn skiff_store::Store>,
    spec: WatchSpec,
    start: Start,
    send_initial: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let mut enc = Encoder {
        def: spec.def,
        representation: spec.representation,
        include_object: spec.include_object.clone(),
        sent_columns: false,
    };
    let after = match start {
        Start::After(rv) => rv,
        Start::Initial => {
            let list = match store.range(&spec.prefix, RangeOptions::default()).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(error_line(&store_error(e))).await;
                    return;
                }
            };
            for kv in &list.kvs {
                let Ok(obj) = decode(kv) else { continue };
                if matches(&spec, &obj) && tx.send(enc.line("ADDED", obj)).await.is_err() {
                    return;
                }
            }
            if send_initial && spec.bookmarks && tx.send(enc.bookmark(list.revision, true)).await.is_err() {
                return;
            }
            list.revision
        }
    };
    let mut stream = match store.watch(&spec.prefix, after).await {
        Ok(s) => s,
        Err(e) => {
            let err = match e {
                StoreError::Compacted { requested, compacted } => {
                    ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
                }
                other => store_error(other),
            };
            let _ = tx.send(error_line(&err)).await;
            return;
        }
    };
    let mut last_bookmark = std::time::Instant::now();
    while let Some(item) = stream.next().await {
        let resp = match item {
            Ok(r) => r,
            Err(StoreError::WatchLagged) => {
                // The client must relist; upstream signals this with 410 too.
                let _ = tx.send(error_line(&ApiError::Expired("watch fell behind; please relist".into()))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(error_line(&store_error(e))).await;
                return;
            }
        };
        match resp {
            WatchResponse::Progress { revision } => {
                if spec.bookmarks && last_bookmark.elapsed() >= BOOKMARK_INTERVAL {
                    last_bookmark = std::time::Instant::now();
                    if tx.send(enc.bookmark(revision, false)).await.is_err() {
                        return;
                    }
                }
            }
            WatchResponse::Events(events) => {
                for ev in events {
                    if let Some((kind, obj)) = translate(&spec, ev) {
                        if tx.send(enc.line(kind, obj)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Turns a store event into the API event this watcher sees, if any.
fn translate(spec: &WatchSpec, ev: skiff_store::Event) -> Option<(&'static str, Value)> {
    let rev = ev.kv.mod_revision;
    let prev = ev.prev.as_ref().and_then(|p| decode(p).ok());
    let prev_matches = prev.as_ref().is_some_and(|p| matches(spec, p));
    match ev.kind {
        EventKind::Delete => {
            let mut obj = prev?;
            if !prev_matches {
                return None;
            }
            set_resource_version(&mut obj, rev);
            Some(("DELETED", obj))
        }
        EventKind::Put => {
            let obj = decode(&ev.kv).ok()?;
            let now_matches = matches(spec, &obj);
            match (prev_matches, now_matches) {
                (true, true) => Some(("MODIFIED", obj)),
                (false, true) => Some(("ADDED", obj)),
                (true, false) => {
                    let mut old = prev?;
                    set_resource_version(&mut old, rev);
                    Some(("DELETED", old))
                }
                (false, false) => None,
            }
        }
    }
}
