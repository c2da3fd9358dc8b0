//! A static web server, shared by the nginx and httpd stand-ins: built-in pages (the image's
//! default site) or the files under a root directory, the image's `Server` header and error
//! pages, validators (`Last-Modified`, `ETag`), GET and HEAD only (405 otherwise), and one access
//! log line per request on stdout in the combined log format. It stops on SIGTERM, SIGINT or
//! SIGQUIT (nginx's stop signal), exiting 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT_RANGES, CONTENT_TYPE, ETAG, LAST_MODIFIED, SERVER};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::signal::unix::{signal, SignalKind};

use crate::http::{Handler, Response};
use crate::net::{BindHost, Signals};

/// What distinguishes one web server image from another.
pub struct Site {
    /// For logs: `nginx`, `httpd`.
    pub name: &'static str,
    /// The `Server` header.
    pub server_header: &'static str,
    /// The default site: path → HTML page.
    pub pages: &'static [(&'static str, &'static str)],
    /// The body of an error answer.
    pub error_page: fn(StatusCode) -> String,
}

/// What the server answers from.
enum Content {
    /// The site's built-in pages.
    Default,
    /// Files under this directory.
    Root(PathBuf),
}

struct Server {
    site: &'static Site,
    content: Content,
    /// `Last-Modified` of the built-in pages: when the server started.
    started: SystemTime,
}

/// Serves `site` on `port` (or the files under `root`) until a stop signal; returns the exit code.
/// What a static server's command line asks for.
pub enum Invocation {
    Serve {
        port: u16,
        root: Option<PathBuf>,
    },
    /// The program answered a flag itself (`-v`, `-t`) and exits with this code.
    Exit(i32),
}

/// Parses the flags every static server shares (`--port N`, `--root DIR`, `--flag=value`
/// form too) and hands any other flag to `own`, with a function that fetches the flag's
/// value. `own` returns Some(code) to stop with that exit code, None to go on, or an error
/// for a flag the program does not know.
pub fn parse_args(
    argv: &[String],
    mut own: impl FnMut(&str, &mut dyn FnMut() -> anyhow::Result<String>) -> anyhow::Result<Option<i32>>,
) -> anyhow::Result<Invocation> {
    let mut port: u16 = 80;
    let mut root = None;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next().cloned()).ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag {
            "--port" => port = value()?.parse().map_err(|_| anyhow::anyhow!("--port: not a port number"))?,
            "--root" => root = Some(PathBuf::from(value()?)),
            other => {
                if let Some(code) = own(other, &mut value)? {
                    return Ok(Invocation::Exit(code));
                }
            }
        }
    }
    Ok(Invocation::Serve { port, root })
}

pub async fn run(site: &'static Site, port: u16, root: Option<PathBuf>, bind: BindHost) -> anyhow::Result<i32> {
    let content = match root {
        None => Content::Default,
        Some(dir) => Content::Root(dir.canonicalize().with_context(|| format!("--root {}", dir.display()))?),
    };
    let mut signals = Signals::install()?;
    let mut quit = signal(SignalKind::quit()).context("installing a SIGQUIT handler")?;
    let listener = bind.tcp(port, site.name)?;
    tracing::info!("{} serving on {}", site.name, listener.local_addr().context("listener address")?);
    let server = Arc::new(Server { site, content, started: SystemTime::now() });
    tokio::spawn(crate::http::serve(listener, handler(server), std::future::pending()));
    tokio::select! {
        _ = signals.next() => {}
        _ = quit.recv() => {}
    }
    Ok(0)
}

fn handler(server: Arc<Server>) -> Handler {
    Arc::new(move |req, peer| {
        let server = server.clone();
        Box::pin(async move {
            let response = server.answer(&req).await;
            access_log(&req, peer, &response);
            response
        })
    })
}

impl Server {
    async fn answer(&self, req: &Request<Incoming>) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return self.error(StatusCode::METHOD_NOT_ALLOWED);
        }
        let Some(path) = percent_decode(req.uri().path()) else {
            return self.error(StatusCode::BAD_REQUEST);
        };
        match &self.content {
            Content::Default => match self.site.pages.iter().find(|(p, _)| *p == path) {
                Some((_, html)) => self.page(Bytes::from_static(html.as_bytes()), "text/html", self.started),
                None => self.error(StatusCode::NOT_FOUND),
            },
            Content::Root(root) => self.serve_file(root, &path).await,
        }
    }

    /// A file under `root` (`index.html` for a directory); 404 for anything missing or outside.
    async fn serve_file(&self, root: &Path, path: &str) -> Response {
        let relative = Path::new(path.trim_start_matches('/'));
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) || path.contains('\0') {
            return self.error(StatusCode::NOT_FOUND);
        }
        let mut file = root.join(relative);
        if file.is_dir() {
            file.push("index.html");
        }
        // Symbolic links may point anywhere; only what resolves inside the root is served.
        let inside = file.canonicalize().ok().filter(|resolved| resolved.starts_with(root));
        let Some(file) = inside else { return self.error(StatusCode::NOT_FOUND) };
        match tokio::fs::read(&file).await {
            Ok(body) => {
                let modified = std::fs::metadata(&file).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                self.page(body.into(), content_type(&file), modified)
            }
            Err(_) => self.error(StatusCode::FORBIDDEN),
        }
    }

    /// A 200 answer with the validators web servers send for static files.
    fn page(&self, body: Bytes, content_type: &'static str, modified: SystemTime) -> Response {
        let seconds = modified.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let etag = format!("\"{seconds:x}-{:x}\"", body.len());
        let mut response = self.with_server_header(http::Response::new(Full::new(body)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) = HeaderValue::from_str(&httpdate(modified)) {
            headers.insert(LAST_MODIFIED, value);
        }
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(ETAG, value);
        }
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        response
    }

    /// The site's error page for `status`.
    fn error(&self, status: StatusCode) -> Response {
        let body = (self.site.error_page)(status);
        let mut response = self.with_server_header(http::Response::new(Full::new(Bytes::from(body))));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        response
    }

    fn with_server_header(&self, mut response: Response) -> Response {
        response.headers_mut().insert(SERVER, HeaderValue::from_static(self.site.server_header));
        response
    }
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "txt" => "text/plain",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// An HTTP date: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `%XX` escapes decoded; `None` for a broken escape or a path that is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One line per request on stdout, in the `combined` log format.
fn access_log(req: &Request<Incoming>, peer: SocketAddr, response: &Response) {
    let header = |name: http::header::HeaderName| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned()
    };
    let length = hyper::body::Body::size_hint(response.body()).exact().unwrap_or_default();
    let line = format!(
        "{} - - [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\"\n",
        peer.ip(),
        chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000"),
        req.method(),
        req.uri(),
        req.version(),
        response.status().as_u16(),
        length,
        header(http::header::REFERER),
        header(http::header::USER_AGENT),
    );
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%2e%2e/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(httpdate(SystemTime::UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
