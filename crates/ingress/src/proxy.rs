//! The request path: route lookup, annotation checks, endpoint choice, forwarding.
//!
//! The policy checks ([`Proxy::decide`]) and the response decoration ([`Forward::decorate`])
//! serve both paths: the HTTP/1.1 fast path ([`crate::fast`]) and hyper's, below.
//!
//! On hyper's path, request framing is hyper's, with one addition: a request with both Content-Length and
//! Transfer-Encoding (found by [`crate::framing`]) is answered 400, and hyper closes the
//! connection after it (RFC 9112 §6.1), so bytes smuggled after its body are never read as a
//! request.
//!
//! Order of checks for a request (ingress-nginx's order where it has one): route (or built-in 404) → source allow-list (403) → permanent/temporal redirect →
//! HTTPS redirect (308) → CORS preflight → body size (413) → canary → affinity or round
//! robin → forward (a failed connect of a bodiless idempotent request moves to the next
//! endpoint) → response headers (affinity cookie, CORS) → WebSocket bridge on 101.

use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;

use crate::annotations::{Affinity, BackendProtocol, Cors};
use crate::body::{Guarded, ProxyBody};
use crate::framing::FramingReport;
use crate::metrics::Metrics;
use crate::routes::{normalize_host, Backend, Canary, Route, RouteTable};
use crate::snapshot::Snapshot;
use crate::upstream::{self, UpstreamResponse, Upstreams};

/// How many endpoints a request with a failed connect tries in total.
pub(crate) const CONNECT_ATTEMPTS: usize = 3;

/// The connection a request arrived on, with the forwarded-header values that are the same
/// for all its requests (computed once per connection, not per request).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The port the client connected to (`X-Forwarded-Port`).
    pub local_port: u16,
    pub tls: bool,
    /// The client IP as a header value (`X-Forwarded-For`, `X-Real-IP`).
    pub(crate) remote_ip_value: HeaderValue,
    /// `local_port` as a header value.
    pub(crate) local_port_value: HeaderValue,
    /// Request heads with both Content-Length and Transfer-Encoding, found by the
    /// connection's [`crate::framing::Scanned`] reader.
    pub framing: Arc<FramingReport>,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, local_port: u16, tls: bool) -> ConnInfo {
        let remote_ip_value =
            HeaderValue::from_str(&remote.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnInfo {
            remote,
            local_port,
            tls,
            remote_ip_value,
            local_port_value: HeaderValue::from(local_port),
            framing: Arc::default(),
        }
    }
}

/// Everything the request path needs. Each data-plane thread has its own (with its own
/// upstream pools); routes and metrics are shared.
pub struct Proxy {
    pub routes: Arc<Snapshot<RouteTable>>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    /// Port for `https://` redirects (omitted from the URL when 443).
    pub https_port: u16,
}

/// Read access to a request's headers, whichever parser produced them (hyper's `HeaderMap`
/// or the fast path's parsed head), so the policy checks exist once.
pub trait HeaderView {
    /// The values of header `name` (given in lowercase), in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of header `name` (lowercase).
    fn first<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.values(name).next()
    }

    /// The first value of header `name` given in any case (names from annotations).
    fn first_ignore_case<'a>(&'a self, name: &'a str) -> Option<&'a [u8]>;
}

impl HeaderView for HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    fn first_ignore_case<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        // HeaderMap lookups by &str lowercase the name themselves.
        self.get(name).map(HeaderValue::as_bytes)
    }
}

/// What the policy checks decided for a routed request.
pub enum Decision {
    /// Answered here: 403, a redirect, a CORS preflight, 413 or 503.
    Local(Response<ProxyBody>),
    /// Goes to an endpoint.
    Forward(Forward),
}

/// Where a request goes, and what its response gets on the way back.
pub struct Forward {
    /// The canary backend was chosen.
    pub canary: bool,
    /// The first endpoint to try.
    pub endpoint: SocketAddr,
    /// The affinity cookie must be (re)set on the response.
    pub new_cookie: bool,
    /// The request's Origin, for CORS response headers.
    pub origin: Option<HeaderValue>,
}

impl Forward {
    /// The backend chosen for the request.
    pub fn backend<'r>(&self, route: &'r Route) -> &'r Backend {
        backend_for(route, self.canary)
    }

    /// Adds the affinity cookie (naming `served_by`, the endpoint that answered) and the
    /// CORS headers to a response.
    pub fn decorate(&self, route: &Route, served_by: SocketAddr, headers: &mut HeaderMap) {
        let policy = &*route.policy;
        if self.new_cookie {
            if let Some(affinity) = &policy.affinity {
                if let Ok(value) = HeaderValue::from_str(&set_cookie(affinity, served_by, &route.path)) {
                    headers.append(header::SET_COOKIE, value);
                }
            }
        }
        if let Some(cors) = &policy.cors {
            add_cors(headers, cors, self.origin.as_ref(), false);
        }
    }

    /// Whether [`Forward::decorate`] adds anything (the fast path skips building a map).
    pub fn decorates(&self, route: &Route) -> bool {
        (self.new_cookie && route.policy.affinity.is_some()) || route.policy.cors.is_some()
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static PROXY: HeaderName = HeaderName::from_static("proxy");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

impl Proxy {
    /// Answers one request; never fails (errors become 4xx/5xx responses).
    pub async fn handle(&self, conn: &ConnInfo, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        if conn.framing.next_request_conflicts() {
            // Content-Length with Transfer-Encoding: a request-smuggling attempt. hyper closes
            // the connection after this response.
            self.metrics.unrouted.record(400);
            let mut resp = local(StatusCode::BAD_REQUEST, "400 Bad Request\n");
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
        let routes = self.routes.load();
        let host_value = request_host(&req);
        let host_raw = host_value.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
        let host = normalize_host(host_raw);
        let Some(route) = routes.find(&host, req.uri().path()) else {
            self.metrics.unrouted.record(404);
            return Ok(local(StatusCode::NOT_FOUND, "default backend - 404\n"));
        };
        let response = self.handle_routed(conn, req, route, host_value.as_ref(), &host).await;
        route.counters.record(response.status().as_u16());
        Ok(response)
    }

    /// The policy checks of a routed request, up to the endpoint choice: a local answer
    /// (403, redirects, CORS preflight, 413, 503) or where to forward it. Shared by the hyper
    /// path below and the HTTP/1.1 fast path ([`crate::fast`]). `target` is the request's
    /// path and query.
    pub(crate) fn decide(
        &self,
        conn: &ConnInfo,
        route: &Route,
        host: &str,
        method: &str,
        target: &str,
        headers: &impl HeaderView,
    ) -> Decision {
        let policy = &*route.policy;
        if let Some(allowed) = &policy.allow_sources {
            if !allowed.iter().any(|c| c.contains(conn.remote.ip())) {
                return Decision::Local(local(StatusCode::FORBIDDEN, "403 Forbidden\n"));
            }
        }
        if let Some((code, location)) = &policy.redirect {
            return Decision::Local(redirect(*code, location));
        }
        if !conn.tls && (policy.force_ssl_redirect || (route.tls && policy.ssl_redirect)) {
            let port = if self.https_port == 443 { String::new() } else { format!(":{}", self.https_port) };
            return Decision::Local(redirect(308, &format!("https://{host}{port}{target}")));
        }
        let origin = match &policy.cors {
            Some(_) => headers.first(header::ORIGIN.as_str()).and_then(|o| HeaderValue::from_bytes(o).ok()),
            None => None,
        };
        if let Some(cors) = &policy.cors {
            if method == Method::OPTIONS.as_str() {
                let mut resp = Response::new(ProxyBody::Empty);
                *resp.status_mut() = StatusCode::NO_CONTENT;
                add_cors(resp.headers_mut(), cors, origin.as_ref(), true);
                return Decision::Local(resp);
            }
        }
        let too_large = declared_length(headers).zip(policy.body_limit).is_some_and(|(len, limit)| len > limit);
        if too_large {
            return Decision::Local(local(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large\n"));
        }
        let canary = use_canary_backend(route, headers);
        let backend = backend_for(route, canary);
        let balanced = || if policy.ewma { backend.pick_ewma() } else { backend.pick() };
        let (endpoint, new_cookie) = match &policy.affinity {
            Some(affinity) => match sticky_endpoint(backend, affinity, headers) {
                Some(ep) => (Some(ep), false),
                None => (balanced(), true),
            },
            None => (balanced(), false),
        };
        match endpoint {
            Some(endpoint) => Decision::Forward(Forward { canary, endpoint, new_cookie, origin }),
            None => Decision::Local(local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n")),
        }
    }

    async fn handle_routed(
        &self,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        route: &Route,
        host_value: Option<&HeaderValue>,
        host: &str,
    ) -> Response<ProxyBody> {
        let policy = &*route.policy;
        let request_target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let decision = self.decide(conn, route, host, req.method().as_str(), request_target, req.headers());
        let forward = match decision {
            Decision::Local(resp) => return resp,
            Decision::Forward(forward) => forward,
        };
        let backend = forward.backend(route);
        let endpoint = forward.endpoint;
        let upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let rewritten = route.upstream_path(req.uri().path());
        let (mut parts, body) = req.into_parts();
        // Raised by the body guard when a chunked upload passes proxy-body-size (→ 413).
        let overflow = (!body.is_end_stream() && policy.body_limit.is_some()).then(|| Arc::new(AtomicBool::new(false)));
        // Only bodiless idempotent requests move to another endpoint after a failed connect.
        // Plain-HTTP requests come back unsent from a failed connect; for the other protocols
        // the head is copied up front (only when there is another endpoint to try).
        let retryable = body.is_end_stream() && is_idempotent(parts.method.as_str()) && backend.endpoints.len() > 1;
        let keep_copy = retryable && route.protocol != BackendProtocol::Http;
        let body = if body.is_end_stream() {
            ProxyBody::Empty
        } else {
            let guarded = Guarded::new(body, Some(policy.send_timeout));
            ProxyBody::Stream(match (policy.body_limit, &overflow) {
                (Some(limit), Some(flag)) => guarded.with_limit(limit, flag.clone()),
                _ => guarded,
            })
        };
        let Some(path_and_query) = upstream_path_and_query(&parts.uri, rewritten) else {
            return local(StatusCode::BAD_REQUEST, "400 Bad Request\n");
        };
        forward_headers(&mut parts.headers, conn, host_value, upgrade.is_some());
        let version = match route.protocol {
            BackendProtocol::Grpc | BackendProtocol::Grpcs => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        let started = Instant::now();
        if policy.ewma {
            backend.start(endpoint);
        }
        let copy = keep_copy.then(|| (parts.method.clone(), parts.headers.clone()));
        parts.version = version;
        // hyper's per-request extensions of the client side do not travel upstream.
        parts.extensions.clear();
        let mut upstream_req = Request::from_parts(parts, body);
        // proxy-read-timeout bounds the wait for the response head. The connect has its own
        // (shorter by default) limit.
        let deadline = policy.read_timeout;
        let mut target = endpoint;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            // Plain HTTP/1.1 upstreams take the origin-form path; hyper-util's client needs
            // the endpoint in the URI.
            let uri = if route.protocol == BackendProtocol::Http {
                Some(Uri::from(path_and_query.clone()))
            } else {
                upstream::absolute_uri(route.protocol, target, path_and_query.as_str())
            };
            let Some(uri) = uri else {
                return local(StatusCode::BAD_REQUEST, "400 Bad Request\n");
            };
            *upstream_req.uri_mut() = uri;
            let sent = self.upstreams.send(route.protocol, target, upstream_req, policy.connect_timeout);
            match tokio::time::timeout(deadline, sent).await {
                Ok(Err(mut e)) if e.is_connect() && retryable && attempt < CONNECT_ATTEMPTS => {
                    let unsent = e.take_request().or_else(|| {
                        let (method, headers) = copy.as_ref()?;
                        let mut again = Request::new(ProxyBody::Empty);
                        *again.method_mut() = method.clone();
                        *again.version_mut() = version;
                        *again.headers_mut() = headers.clone();
                        Some(again)
                    });
                    match (unsent, backend.after(endpoint, attempt)) {
                        (Some(unsent), Some(next)) => {
                            tracing::debug!(failed = %target, next = %next, error = %e, "connect failed; retrying");
                            self.metrics.connect_retries.fetch_add(1, Ordering::Relaxed);
                            target = next;
                            upstream_req = unsent;
                        }
                        _ => break Ok(Err(e)),
                    }
                }
                other => break other,
            }
        };
        if policy.ewma {
            // A failure (often an instant "connection refused") is charged as slow as the
            // connect timeout, so EWMA steers away from failing endpoints.
            let elapsed = match &result {
                Ok(Ok(_)) => started.elapsed(),
                _ => policy.connect_timeout,
            };
            backend.finish(endpoint, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        }
        let UpstreamResponse { response: mut resp, lease } = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                self.metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
                if overflow.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                    return local(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large\n");
                }
                tracing::debug!(backend = %backend.name, endpoint = %target, error = %e, "upstream request failed");
                return local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
            }
            Err(_) => {
                self.metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
                return local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n");
            }
        };
        self.metrics.observe_upstream(started.elapsed().as_secs_f64());
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            if let Some(client_side) = upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(bridge(client_side, upstream_side));
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, switching);
        forward.decorate(route, target, &mut parts.headers);
        let body = if switching {
            ProxyBody::Empty
        } else {
            ProxyBody::Stream(Guarded::new(body, Some(policy.read_timeout)).with_lease(lease))
        };
        Response::from_parts(parts, body)
    }
}

/// The path and query sent upstream: the rewritten path (with the original query), or the
/// request's own, shared rather than copied.
fn upstream_path_and_query(uri: &Uri, rewritten: Option<String>) -> Option<PathAndQuery> {
    match (rewritten, uri.query()) {
        (Some(path), Some(query)) => PathAndQuery::try_from(format!("{path}?{query}")).ok(),
        (Some(path), None) => PathAndQuery::try_from(path).ok(),
        (None, _) => Some(uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))),
    }
}

/// The Host the client asked for: the Host header, or the `:authority` of an HTTP/2 request.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(host) = req.headers().get(header::HOST) {
        return Some(host.clone());
    }
    req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

pub(crate) fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn redirect(code: u16, location: &str) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let mut resp = local(status, "redirect\n");
    match HeaderValue::from_str(location) {
        Ok(value) => {
            resp.headers_mut().insert(header::LOCATION, value);
            resp
        }
        Err(_) => local(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
}

fn declared_length(headers: &impl HeaderView) -> Option<u64> {
    std::str::from_utf8(headers.first(header::CONTENT_LENGTH.as_str())?).ok()?.trim().parse().ok()
}

/// Methods a request may be sent again with (RFC 9110 §9.2.2), for retries after a failed
/// connect or a dead pooled connection.
pub(crate) fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The value of cookie `name` in the request, if sent.
fn cookie<'a>(headers: &'a impl HeaderView, name: &str) -> Option<&'a str> {
    headers
        .values(header::COOKIE.as_str())
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The route's canary backend when `canary`, else its main one.
fn backend_for(route: &Route, canary: bool) -> &Backend {
    match &route.canary {
        Some(c) if canary => &c.backend,
        _ => &route.backend,
    }
}

/// Whether the canary backend takes this request (header, then cookie, then weight).
fn use_canary_backend(route: &Route, headers: &impl HeaderView) -> bool {
    match &route.canary {
        Some(canary) if !canary.backend.endpoints.is_empty() => use_canary(canary, headers),
        _ => false,
    }
}

fn use_canary(canary: &Canary, headers: &impl HeaderView) -> bool {
    let rules = &canary.rules;
    let by_header = rules.by_header.as_deref().and_then(|h| headers.first_ignore_case(h));
    if let Some(value) = by_header.and_then(|v| std::str::from_utf8(v).ok()) {
        if let Some(wanted) = &rules.header_value {
            if value == wanted {
                return true;
            }
        } else if let Some(pattern) = &canary.header_pattern {
            if pattern.is_match(value) {
                return true;
            }
        } else if value == "always" {
            return true;
        } else if value == "never" {
            return false;
        }
    }
    if let Some(value) = rules.by_cookie.as_ref().and_then(|name| cookie(headers, name)) {
        match value {
            "always" => return true,
            "never" => return false,
            _ => {}
        }
    }
    rules.weight > 0 && rand::random_range(0..rules.weight_total.max(1)) < rules.weight
}

/// The endpoint an affinity cookie names, if it is still an endpoint of `backend`.
fn sticky_endpoint(backend: &Backend, affinity: &Affinity, headers: &impl HeaderView) -> Option<SocketAddr> {
    let token = cookie(headers, &affinity.cookie_name)?;
    backend.endpoints.iter().copied().find(|ep| endpoint_token(*ep) == token)
}

/// The affinity cookie value naming an endpoint: a stable hash of its address, so sessions
/// survive route-table swaps and controller restarts without shared state.
fn endpoint_token(endpoint: SocketAddr) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    endpoint.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn set_cookie(affinity: &Affinity, endpoint: SocketAddr, route_path: &str) -> String {
    let path = affinity.path.as_deref().unwrap_or(route_path);
    let mut cookie = format!("{}={}; Path={path}", affinity.cookie_name, endpoint_token(endpoint));
    if let Some(domain) = &affinity.domain {
        cookie.push_str(&format!("; Domain={domain}"));
    }
    // `session-cookie-expires` comes from the user: out-of-range values are skipped, not a panic.
    let expires_at = affinity
        .expires
        .and_then(|secs| i64::try_from(secs).ok())
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| chrono::Utc::now().checked_add_signed(d));
    if let Some(at) = expires_at {
        cookie.push_str(&format!("; Expires={}", at.format("%a, %d %b %Y %H:%M:%S GMT")));
    }
    if let Some(max_age) = affinity.max_age {
        cookie.push_str(&format!("; Max-Age={max_age}"));
    }
    if affinity.secure {
        cookie.push_str("; Secure");
    }
    cookie.push_str("; HttpOnly");
    if let Some(samesite) = &affinity.samesite {
        cookie.push_str(&format!("; SameSite={samesite}"));
    }
    cookie
}

/// Rewrites request headers for the upstream as ingress-nginx does (incoming
/// `X-Forwarded-*` are not trusted: they are replaced, the old XFF kept as
/// `X-Original-Forwarded-For`).
pub(crate) fn forward_headers(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<&HeaderValue>, upgrade: bool) {
    let upgrade_value = if upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    strip_hop_by_hop(headers, false);
    // Room for the headers added below at once, instead of growing the map several times.
    headers.reserve(9);
    if let Some(value) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
    if let Some(host) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(original) = headers.insert(X_FORWARDED_FOR.clone(), conn.remote_ip_value.clone()) {
        headers.insert(X_ORIGINAL_FORWARDED_FOR.clone(), original);
    }
    headers.insert(X_REAL_IP.clone(), conn.remote_ip_value.clone());
    headers.insert(X_FORWARDED_PORT.clone(), conn.local_port_value.clone());
    let scheme = HeaderValue::from_static(if conn.tls { "https" } else { "http" });
    headers.insert(X_FORWARDED_PROTO.clone(), scheme.clone());
    headers.insert(X_SCHEME.clone(), scheme);
    if let header::Entry::Vacant(entry) = headers.entry(&X_REQUEST_ID) {
        entry.insert(request_id());
    }
}

/// A new request ID: 16 random bytes in lowercase hex, like ingress-nginx's `$req_id`.
pub(crate) fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random: u128 = rand::random();
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = HEX[((random >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Connection-scoped headers (and `Proxy`, for httpoxy), as bits of a presence mask.
const HOP_CONNECTION: u8 = 1;
const HOP_UPGRADE: u8 = 1 << 1;
pub(crate) const HOP_TRANSFER_ENCODING: u8 = 1 << 2;
const HOP_TRAILER: u8 = 1 << 3;
pub(crate) const HOP_TE: u8 = 1 << 4;
const HOP_KEEP_ALIVE: u8 = 1 << 5;
const HOP_PROXY_CONNECTION: u8 = 1 << 6;
const HOP_PROXY: u8 = 1 << 7;

/// The hop-by-hop bit of a header name given in any case; 0 for end-to-end headers. Used on
/// hyper's header names and on the raw names of the fast path.
pub(crate) fn hop_bit_of(name: &[u8]) -> u8 {
    const NAMES: [(&[u8], u8); 8] = [
        (b"connection", HOP_CONNECTION),
        (b"upgrade", HOP_UPGRADE),
        (b"transfer-encoding", HOP_TRANSFER_ENCODING),
        (b"trailer", HOP_TRAILER),
        (b"te", HOP_TE),
        (b"keep-alive", HOP_KEEP_ALIVE),
        (b"proxy-connection", HOP_PROXY_CONNECTION),
        (b"proxy", HOP_PROXY),
    ];
    // Most names have none of these lengths: rejected without a comparison.
    if !matches!(name.len(), 2 | 5 | 7 | 10 | 16 | 17) {
        return 0;
    }
    NAMES.iter().find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name)).map_or(0, |(_, bit)| *bit)
}

fn hop_bit(name: &HeaderName) -> u8 {
    hop_bit_of(name.as_str().as_bytes())
}

/// Removes connection-scoped headers (and those the Connection header names), and `Proxy`
/// (httpoxy). `TE: trailers` survives (gRPC needs it); on a 101 response Upgrade/Connection
/// are kept.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which are present; only those are looked up again.
    let present = headers.keys().fold(0u8, |mask, name| mask | hop_bit(name));
    if present == 0 {
        return;
    }
    if !keep_upgrade && present & HOP_CONNECTION != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual tokens name nothing that could be present besides what goes anyway.
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let always = [
        (HOP_PROXY, &PROXY),
        (HOP_KEEP_ALIVE, &KEEP_ALIVE),
        (HOP_PROXY_CONNECTION, &PROXY_CONNECTION),
        (HOP_TRANSFER_ENCODING, &header::TRANSFER_ENCODING),
        (HOP_TRAILER, &header::TRAILER),
    ];
    let upgrade_pair = [(HOP_CONNECTION, &header::CONNECTION), (HOP_UPGRADE, &header::UPGRADE)];
    let removed = always.iter().chain(if keep_upgrade { &[][..] } else { &upgrade_pair[..] });
    for (bit, name) in removed {
        if present & bit != 0 {
            headers.remove(*name);
        }
    }
    if present & HOP_TE != 0 && headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}

fn add_cors(headers: &mut HeaderMap, cors: &Cors, origin: Option<&HeaderValue>, preflight: bool) {
    let allowed_origin = match origin.and_then(|o| o.to_str().ok()) {
        _ if cors.origins.iter().any(|o| o == "*") => Some("*".to_owned()),
        Some(o) if cors.origins.iter().any(|allowed| origin_allowed(allowed, o)) => Some(o.to_owned()),
        _ => None,
    };
    let Some(allowed_origin) = allowed_origin.and_then(|o| HeaderValue::from_str(&o).ok()) else { return };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed_origin);
    if cors.credentials {
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Some(expose) = cors.expose_headers.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
    }
    if preflight {
        if let Ok(v) = HeaderValue::from_str(&cors.methods) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cors.headers) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
}

/// `https://*.example.com` allows any subdomain of example.com with that scheme.
fn origin_allowed(allowed: &str, origin: &str) -> bool {
    if allowed == origin {
        return true;
    }
    match (allowed.split_once("://*."), origin.split_once("://")) {
        (Some((scheme, suffix)), Some((o_scheme, o_host))) => {
            scheme == o_scheme && o_host.len() > suffix.len() + 1 && o_host.ends_with(&format!(".{suffix}"))
        }
        _ => false,
    }
}

/// Copies bytes both ways between an upgraded client connection and the upstream one
/// (WebSocket). It owns both ends, so it outlives any route-table swap.
async fn bridge(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::debug!(client_ok = c.is_ok(), upstream_ok = u.is_ok(), "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; INGRESSCOOKIE=abc; b=2"));
        assert_eq!(cookie(&h, "INGRESSCOOKIE"), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let ep: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(endpoint_token(ep), endpoint_token(ep));
        assert_ne!(endpoint_token(ep), endpoint_token("10.0.0.2:80".parse().expect("addr")));
    }

    #[test]
    fn forwarded_headers_replace_untrusted_ones() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.2.3.4"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert(PROXY.clone(), HeaderValue::from_static("http://evil"));
        let conn = ConnInfo::new("10.1.1.1:5555".parse().expect("addr"), 80, false);
        forward_headers(&mut h, &conn, Some(&HeaderValue::from_static("myhost:80")), false);
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.1.1");
        assert_eq!(h[&X_ORIGINAL_FORWARDED_FOR], "1.2.3.4");
        assert_eq!(h[&X_REAL_IP], "10.1.1.1");
        assert_eq!(h[&X_FORWARDED_PORT], "80");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "myhost:80");
        assert_eq!(h[header::HOST], "myhost:80");
        assert_eq!(h[&X_REQUEST_ID].len(), 32);
        assert!(!h.contains_key("x-secret") && !h.contains_key(header::CONNECTION) && !h.contains_key(&PROXY));
    }

    #[test]
    fn hop_by_hop_headers_go_except_te_trailers_and_upgrades() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(KEEP_ALIVE.clone(), HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["te", "content-length"]);
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key(header::TE));
        // A 101 keeps what the upgrade needs.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut h, true);
        assert!(h.contains_key(header::CONNECTION) && h.contains_key(header::UPGRADE));
        assert!(!h.contains_key(header::TRANSFER_ENCODING));
    }

    #[test]
    fn request_ids_are_32_hex_digits() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert!(a.to_str().is_ok_and(|s| s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())), "{a:?}");
    }

    #[test]
    fn set_cookie_attributes_and_huge_expiry() {
        let affinity = Affinity {
            cookie_name: "route".into(),
            path: None,
            domain: None,
            max_age: Some(60),
            expires: Some(u64::MAX),
            samesite: Some("Strict".into()),
            secure: true,
            persistent: false,
        };
        let ep: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        let cookie = set_cookie(&affinity, ep, "/app");
        assert_eq!(
            cookie,
            format!("route={}; Path=/app; Max-Age=60; Secure; HttpOnly; SameSite=Strict", endpoint_token(ep))
        );
        let with_expiry = set_cookie(&Affinity { expires: Some(3600), ..affinity }, ep, "/");
        assert!(with_expiry.contains("; Expires="), "{with_expiry}");
    }

    #[test]
    fn cors_origins() {
        assert!(origin_allowed("https://*.example.com", "https://a.example.com"));
        assert!(!origin_allowed("https://*.example.com", "https://example.com"));
        assert!(!origin_allowed("https://*.example.com", "http://a.example.com"));
    }
}
