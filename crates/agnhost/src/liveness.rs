//! `agnhost liveness`: an HTTP server on port 8080 that is healthy for 10 seconds and then
//! unhealthy, for liveness-probe tests: `/healthz` answers 200 `ok` during the first 10 s after
//! start and 500 `error: <seconds>` afterwards; `/started` tells how long ago it started;
//! `/redirect?loc=L` redirects (302) to L. Other paths are 404. `--port` (skiff's own flag)
//! moves it off 8080.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use http::header::{HeaderValue, LOCATION};
use http::StatusCode;

use crate::flags::{self, Flag, Kind};
use crate::http::{error, text, Form, Handler};
use crate::net::{BindHost, Signals};

const DEFAULT_PORT: i64 = 8080;
const HEALTHY_FOR: Duration = Duration::from_secs(10);
const FLAGS: &[Flag] = &[Flag { name: "port", kind: Kind::Value, help: "Port number (skiff only). (default 8080)" }];

pub async fn run(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let parsed = flags::parse(FLAGS, argv).map_err(|e| anyhow!(e))?;
    if parsed.help {
        outln!(
            "Usage: agnhost liveness\n\nServes /healthz: 200 for 10 s, then 500.\n\nFlags:\n{}",
            flags::usage(FLAGS)
        );
        return Ok(0);
    }
    let port = parsed.int("port", DEFAULT_PORT).map_err(|e| anyhow!(e))?;
    let port = u16::try_from(port).map_err(|_| anyhow!("--port={port}: not a port number"))?;
    let mut signals = Signals::install()?;
    let listener = bind.tcp(port, "liveness HTTP server")?;
    tracing::info!("liveness serving on {}", listener.local_addr().context("listener address")?);
    tokio::spawn(crate::http::serve(listener, handler(Instant::now()), std::future::pending()));
    signals.next().await;
    Ok(0)
}

fn handler(started: Instant) -> Handler {
    Arc::new(move |req, _peer| {
        let age = started.elapsed();
        let response = match req.uri().path() {
            "/started" => text(StatusCode::OK, go_duration(age)),
            "/healthz" if age > HEALTHY_FOR => {
                text(StatusCode::INTERNAL_SERVER_ERROR, format!("error: {}", age.as_secs_f64()))
            }
            "/healthz" => text(StatusCode::OK, "ok"),
            "/redirect" => {
                let form = Form::from_query(req.uri().query());
                match HeaderValue::from_str(form.get("loc")) {
                    Ok(location) => {
                        let mut response = text(StatusCode::FOUND, "");
                        response.headers_mut().insert(LOCATION, location);
                        response
                    }
                    Err(_) => error(StatusCode::BAD_REQUEST, &format!("invalid redirect: {:?}", form.get("loc"))),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "404 page not found"),
        };
        Box::pin(std::future::ready(response))
    })
}

/// A duration the way Go prints one (`1.5s`, `250ms`).
fn go_duration(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        format!("{}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_secs_f64() * 1000.0)
    }
}
