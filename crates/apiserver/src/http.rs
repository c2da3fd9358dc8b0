//! HTTP plumbing: the response body type, JSON/Status responses, query parameters and
//! content negotiation.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::Value;
use skiff_api::ApiError;

/// Every response body: a full buffer or a stream (watch, logs).
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response with the given status code.
pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The `Status` response for an error.
pub fn error(err: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &err.to_status())
}

/// A plain-text response (health checks).
pub fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Adds a `Warning: 299 - "..."` header, the way the API reports deprecations and
/// `fieldValidation=Warn` findings (kubectl prints them as `Warning: ...`).
pub fn add_warning(resp: &mut Response<Body>, message: &str) {
    let escaped = message.replace('\\', "\\\\").replace('"', "\\\"");
    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
        resp.headers_mut().append(header::WARNING, v);
    }
}

/// Decoded query parameters (last value wins, as in Go's `url.Values.Get`).
#[derive(Debug, Default, Clone)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        if let Some(q) = query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(map)
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// A non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
    /// Go's `strconv.ParseBool`-style truthiness for flags like `watch=true` / `watch=1`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "t" | "T" | "TRUE" | "True"))
    }
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?} is not an integer"))),
        }
    }
}

/// What representation the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The objects themselves.
    Object,
    /// `as=Table` (kubectl get).
    Table,
    /// `as=PartialObjectMetadata[List]` (metadata-only watchers).
    Metadata,
}

/// Picks the representation from the Accept header: the first acceptable entry wins, as
/// clients list preferences in order.
pub fn negotiate(accept: Option<&str>) -> Result<Representation, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Representation::Object) };
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let json_like = matches!(
            media,
            "application/json" | "*/*" | "application/*" | "application/yaml" | "application/json;stream=watch"
        );
        if !json_like {
            continue;
        }
        match param("as") {
            None => return Ok(Representation::Object),
            Some("Table") if matches!(param("v"), Some("v1") | Some("v1beta1")) => return Ok(Representation::Table),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => return Ok(Representation::Metadata),
            Some(_) => continue,
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "only the following media types are accepted: application/json, application/yaml (requested {accept:?})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_kubectl_sends() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)).unwrap(), Representation::Table);
        assert_eq!(negotiate(Some("application/json")).unwrap(), Representation::Object);
        assert_eq!(negotiate(None).unwrap(), Representation::Object);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Representation::Object
        );
        assert!(negotiate(Some("application/vnd.kubernetes.protobuf")).is_err());
        assert_eq!(
            negotiate(Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")).unwrap(),
            Representation::Metadata
        );
    }
}
