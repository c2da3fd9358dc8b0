//! netexec's HTTP endpoints. Paths match exactly, as in Go's `ServeMux`; any other path gets
//! the root answer (`NOW: <time>`), and a path that is not clean (`//echo`, `/a/../echo`) is
//! redirected to its clean form first. Parameters come from the query string (or an url-encoded
//! POST body). Answers and their status codes are upstream's, including its habit of answering a
//! bad parameter with 200 and an explanation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::{dial, shell, ExitRequest, State};
use crate::flags::parse_go_duration;
use crate::http::{error, go_json, ok, text, Form, Handler, Response};

/// The HTTP handler of a netexec server.
pub fn handler(state: Arc<State>) -> Handler {
    started_at(); // the root answer's `m=+…` counts from startup
    Arc::new(move |req, peer| {
        let state = state.clone();
        Box::pin(async move { route(&state, req, peer).await })
    })
}

async fn route(state: &State, mut req: Request<Incoming>, peer: SocketAddr) -> Response {
    if let Some(target) = &state.http_override {
        // Answer as if this were a GET of the override target, ignoring the real URL.
        *req.method_mut() = Method::GET;
        *req.uri_mut() = http::Uri::from(target.clone());
    }
    let path = req.uri().path().to_owned();
    let clean = clean_path(&path);
    if clean != path {
        let location = match req.uri().query() {
            Some(query) => format!("{clean}?{query}"),
            None => clean,
        };
        return redirect_to(StatusCode::MOVED_PERMANENTLY, &location, req.method());
    }
    let method = req.method().clone();
    let headers = req.headers().clone();
    let (_, form) = Form::read(req).await;
    tracing::debug!(%peer, %method, path, "request");
    match path.as_str() {
        "/clientip" => ok(peer.to_string()),
        "/echo" => echo(&form),
        "/header" => header(&form, &headers),
        "/dial" => dial::handle(&form).await,
        "/exit" => exit(state, &form).await,
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        "/hostname" | "/hostName" => ok(state.hostname.clone()),
        "/redirect" => redirect(&form, &method, &path),
        "/shell" => shell(&form).await,
        "/shutdown" => {
            tracing::info!("GET /shutdown");
            let _ = state.exits.send(ExitRequest { code: 0, drain: Duration::ZERO });
            ok("")
        }
        "/upload" => error(StatusCode::NOT_IMPLEMENTED, "skiff's built-in netexec does not accept uploads"),
        _ => ok(format!("NOW: {}", go_now())),
    }
}

/// `/echo?msg=…[&code=…]`: the message, with the given status code.
fn echo(form: &Form) -> Response {
    let message = form.get("msg").to_owned();
    match form.get("code") {
        "" => ok(message),
        code => match parse_status(code) {
            Ok(status) => text(status, message),
            Err(bad) => bad.response(),
        },
    }
}

/// A parameter upstream does not accept, and how it answers that.
enum BadParameter {
    /// Upstream's usual way: 200 and an explanation.
    Explained(String),
    /// Where upstream would fail the request (a status code out of range): 400.
    Rejected(String),
}

impl BadParameter {
    fn response(self) -> Response {
        match self {
            BadParameter::Explained(message) => ok(message),
            BadParameter::Rejected(message) => error(StatusCode::BAD_REQUEST, &message),
        }
    }
}

/// An optional `code` parameter as a status code.
fn parse_status(code: &str) -> Result<StatusCode, BadParameter> {
    let Ok(number) = code.parse::<i64>() else {
        return Err(BadParameter::Explained(format!("argument 'code' must be an integer or empty, got {code:?}\n")));
    };
    u16::try_from(number)
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| BadParameter::Rejected(format!("invalid status code {number}")))
}

/// `/header?key=K`: the request's first `K` header; without `key`, every header as JSON
/// (`{"Accept":["*/*"],…}`, names in Go's canonical form, `Host` left out as Go does).
fn header(form: &Form, headers: &http::HeaderMap) -> Response {
    let key = form.get("key");
    if !key.is_empty() {
        let value = headers.get(key).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return ok(value.unwrap_or_default());
    }
    let mut all: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers.iter().filter(|(name, _)| *name != http::header::HOST) {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        all.entry(canonical_header_name(name.as_str())).or_default().push(value);
    }
    let object: Map<String, Value> = all.into_iter().map(|(k, v)| (k, Value::Array(v))).collect();
    ok(go_json(&Value::Object(object)))
}

/// Go's canonical MIME header name: `x-forwarded-for` → `X-Forwarded-For`.
fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            upper = c == '-';
            out
        })
        .collect()
}

/// `/exit?code=N&timeout=D&wait=D`: after `wait`, exit with N, draining connections for
/// `timeout` (0: exit at once).
async fn exit(state: &State, form: &Form) -> Response {
    let duration = |name: &str| -> Result<Duration, BadParameter> {
        match form.get(name) {
            "" => Ok(Duration::ZERO),
            value => parse_go_duration(value).map_err(|_| {
                BadParameter::Explained(format!(
                    "argument '{name}' must be a valid golang duration or empty, got {value:?}\n"
                ))
            }),
        }
    };
    let (drain, wait) = match (duration("timeout"), duration("wait")) {
        (Ok(drain), Ok(wait)) => (drain, wait),
        (Err(bad), _) | (_, Err(bad)) => return bad.response(),
    };
    let code = match form.get("code") {
        "" => 0,
        text => match text.parse::<i64>() {
            // The kernel keeps the low 8 bits of an exit code.
            Ok(code) => code.rem_euclid(256) as i32,
            Err(_) => return ok(format!("argument 'code' must be an integer [0-127] or empty, got {text:?}\n")),
        },
    };
    tracing::info!(
        "Will begin shutdown in {wait:?}, allowing {drain:?} for connections to close, then will exit with {code}"
    );
    tokio::time::sleep(wait).await;
    let _ = state.exits.send(ExitRequest { code, drain });
    ok("")
}

fn healthz(state: &State) -> Response {
    let status = if state.udp_ready.load(Ordering::SeqCst) { StatusCode::OK } else { StatusCode::PRECONDITION_FAILED };
    text(status, "")
}

fn readyz(state: &State) -> Response {
    if state.terminating.load(Ordering::SeqCst) {
        text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if state.udp_ready.load(Ordering::SeqCst) {
        ok("ok")
    } else {
        text(StatusCode::PRECONDITION_FAILED, "")
    }
}

/// `/redirect?location=L[&code=C]`: a redirect (302 unless `code` says otherwise) to L; a
/// relative L is resolved against the request's directory, like Go's `http.Redirect`.
fn redirect(form: &Form, method: &Method, request_path: &str) -> Response {
    let status = match form.get("code") {
        "" => StatusCode::FOUND,
        code => match parse_status(code) {
            Ok(status) => status,
            Err(bad) => return bad.response(),
        },
    };
    let location = form.get("location");
    let location = if location.contains("://") || location.starts_with('/') {
        location.to_owned()
    } else {
        let directory = &request_path[..request_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{directory}{location}")
    };
    let location = match location.split_once('?') {
        _ if location.contains("://") => location,
        Some((path, query)) => format!("{}?{query}", clean_path(path)),
        None => clean_path(&location),
    };
    redirect_to(status, &location, method)
}

/// A redirect with Go's small HTML body for GET and HEAD.
fn redirect_to(status: StatusCode, location: &str, method: &Method) -> Response {
    let Ok(header) = HeaderValue::from_str(location) else {
        return error(StatusCode::BAD_REQUEST, "invalid redirect location");
    };
    let body = if method == Method::GET || method == Method::HEAD {
        let reason = status.canonical_reason().unwrap_or("");
        format!("<a href=\"{}\">{reason}</a>.\n\n", html_escape(location))
    } else {
        String::new()
    };
    let mut response = text(status, body);
    response.headers_mut().insert(LOCATION, header);
    if method == Method::GET || method == Method::HEAD {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    response
}

/// `/shell?cmd=…` (or `shellCommand=…`): `{"error":…,"output":…}`, each only when non-empty.
async fn shell(form: &Form) -> Response {
    let command = match form.get("shellCommand") {
        "" => form.get("cmd"),
        command => command,
    };
    tracing::info!("GET /shell?cmd={command}");
    let result = shell::run(command.to_owned()).await;
    let mut output = Map::new();
    if let Some(error) = result.error {
        output.insert("error".to_owned(), Value::String(error));
    }
    if !result.output.is_empty() {
        output.insert("output".to_owned(), Value::String(String::from_utf8_lossy(&result.output).into_owned()));
    }
    ok(go_json(&Value::Object(output)))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// Go's `path.Clean` for request paths, keeping a trailing slash: `//a/./b/../c/` → `/a/c/`.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

fn started_at() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// The time the way Go prints `time.Now()`: `2024-05-01 12:00:00.123456789 +0000 UTC m=+3.5`.
fn go_now() -> String {
    let now = chrono::Utc::now();
    let nanos = format!("{:09}", now.timestamp_subsec_nanos());
    let fraction = nanos.trim_end_matches('0');
    let fraction = if fraction.is_empty() { String::new() } else { format!(".{fraction}") };
    let monotonic = started_at().elapsed().as_secs_f64();
    format!("{}{fraction} +0000 UTC m=+{monotonic:.9}", now.format("%Y-%m-%d %H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/echo"), "/echo");
        assert_eq!(clean_path("//echo"), "/echo");
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(clean_path("/../.."), "/");
    }

    #[test]
    fn header_names_in_go_form() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_name("accept"), "Accept");
    }

    #[test]
    fn status_codes() {
        assert_eq!(parse_status("404").ok(), Some(StatusCode::NOT_FOUND));
        assert!(parse_status("abc").is_err());
        assert!(parse_status("99").is_err());
        assert!(parse_status("-5").is_err());
        assert!(parse_status("99999999999999999999").is_err());
    }

    #[test]
    fn now_looks_like_go() {
        let now = go_now();
        assert!(now.contains(" +0000 UTC m=+"), "{now}");
    }
}
