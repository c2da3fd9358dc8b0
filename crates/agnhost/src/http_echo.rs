//! `skiff builtin http-echo`: stands in for `hashicorp/http-echo`, the one-line server of many
//! Ingress guides (kind's among them): every request gets `-text` plus a newline (status
//! `-status-code`, default 200), except `/health`, which answers `{"status":"ok"}`. It listens
//! on `-listen` (default `:5678`). The text may also come from the `ECHO_TEXT` environment
//! variable. Flags take Go's forms (`-text=foo`, `-text foo`, `--text=foo`).

use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use crate::flags::{self, Flag, Kind};
use crate::http::{text, Handler};
use crate::net::{BindHost, Signals};

const FLAGS: &[Flag] = &[
    Flag { name: "text", kind: Kind::Value, help: "text to put on the webpage" },
    Flag { name: "listen", kind: Kind::Value, help: "address and port to listen (default \":5678\")" },
    Flag { name: "status-code", kind: Kind::Value, help: "HTTP status code to return (default 200)" },
    Flag { name: "version", kind: Kind::Bool, help: "display version information" },
];

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        out!("Usage: http-echo [flags]\n\nFlags:\n{}", flags::usage(FLAGS));
        return Ok(0);
    }
    if parsed.bool("version", false) {
        outln!("http-echo (built into skiff)");
        return Ok(0);
    }
    let echo = match parsed.get("text") {
        Some(text) => text.to_owned(),
        None => std::env::var("ECHO_TEXT").ok().filter(|t| !t.is_empty()).context("Missing -text option!")?,
    };
    let status = parsed.int("status-code", 200).map_err(|e| anyhow!(e))?;
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| anyhow!("-status-code={status}: not an HTTP status code"))?;
    let listen = parsed.string("listen", ":5678");
    let Some((host, port)) = listen.rsplit_once(':') else { bail!("-listen={listen:?}: expected [host]:port") };
    let port: u16 = port.parse().map_err(|_| anyhow!("-listen={listen:?}: not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let bind = match (bind.0, host) {
        (Some(_), _) | (None, "") => bind,
        (None, host) => BindHost(Some(host.parse().map_err(|_| anyhow!("-listen={listen:?}: not an IP address"))?)),
    };
    let mut signals = Signals::install()?;
    let listener = bind.tcp(port, "http-echo")?;
    tracing::info!("http-echo serving on {}", listener.local_addr().context("listener address")?);
    tokio::spawn(crate::http::serve(listener, handler(format!("{echo}\n"), status), std::future::pending()));
    signals.next().await;
    Ok(0)
}

fn handler(echo: String, status: StatusCode) -> Handler {
    let echo: Arc<str> = echo.into();
    Arc::new(move |req, _peer| {
        let response = if req.uri().path() == "/health" {
            let mut response = text(StatusCode::OK, "{\"status\":\"ok\"}\n");
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        } else {
            text(status, echo.to_string())
        };
        Box::pin(std::future::ready(response))
    })
}
