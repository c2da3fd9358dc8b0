//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log as a plain-text stream.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::query::Query;
use crate::runtime::{LogOptions, PodRef, PodRuntime};
use crate::server::{runtime_error, text, Body};

/// Reads kubelet's log query parameters.
pub fn parse_options(query: &Query) -> Result<LogOptions, String> {
    let since_time = match query.get("sinceTime").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|_| format!("invalid value for sinceTime: {v:?}"))?
                .with_timezone(&chrono::Utc),
        ),
    };
    let options = LogOptions {
        follow: query.flag("follow"),
        previous: query.flag("previous"),
        timestamps: query.flag("timestamps"),
        tail_lines: query.number("tailLines")?,
        since_seconds: query.number("sinceSeconds")?,
        since_time,
        limit_bytes: query.number("limitBytes")?,
    };
    if options.limit_bytes == Some(0) {
        return Err("limitBytes must be greater than 0".into());
    }
    if options.since_seconds == Some(0) {
        return Err("sinceSeconds must be greater than 0".into());
    }
    if options.since_seconds.is_some() && options.since_time.is_some() {
        return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
    }
    Ok(options)
}

pub async fn serve(runtime: Arc<dyn PodRuntime>, pod: PodRef, container: String, query: &Query) -> Response<Body> {
    let options = match parse_options(query) {
        Ok(o) => o,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let follow = options.follow;
    let limit = options.limit_bytes;
    let stream = match runtime.logs(&pod, &container, options).await {
        Ok(s) => s,
        Err(e) => return runtime_error(&e),
    };
    // A read error ends the body: the status line is long gone, so there is no better signal.
    let chunks = stream
        .take_while(|chunk| {
            if let Err(e) = chunk {
                tracing::debug!(error = %e, "log stream failed");
            }
            futures::future::ready(chunk.is_ok())
        })
        .filter_map(|chunk| futures::future::ready(chunk.ok()));
    let frames = limit_bytes(chunks, limit).map(|b| Ok(Frame::data(b)));
    let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if follow {
        // Followed logs are long-lived: tell intermediaries not to buffer them.
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    resp
}

/// Enforces `limitBytes` whatever the runtime did: the body ends as soon as the limit is
/// used up (which also ends a followed log).
fn limit_bytes(
    chunks: impl futures::Stream<Item = Bytes> + Send + Unpin + 'static,
    limit: Option<u64>,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold((chunks, limit), |(mut chunks, left)| async move {
        if left == Some(0) {
            return None;
        }
        let mut chunk = chunks.next().await?;
        let left = left.map(|n| {
            if chunk.len() as u64 > n {
                chunk.truncate(n as usize);
            }
            n - chunk.len() as u64
        });
        Some((chunk, (chunks, left)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates_options() {
        let q = Query::parse(Some("follow=true&tailLines=5&timestamps=1&sinceTime=2024-01-02T03:04:05Z"));
        let o = parse_options(&q).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert!(o.since_time.is_some());
        for bad in ["tailLines=-1", "limitBytes=0", "sinceSeconds=0", "sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z"] {
            assert!(parse_options(&Query::parse(Some(bad))).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_byte_limit_cuts_and_ends_the_body() {
        let chunks = || futures::stream::iter([&b"abc"[..], b"defg", b"hij"].map(Bytes::from_static));
        let cut: Vec<Bytes> = limit_bytes(chunks(), Some(5)).collect().await;
        assert_eq!(cut, [Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        // A stream that never ends still ends once the limit is used up.
        let endless = chunks().chain(futures::stream::pending());
        let cut: Vec<Bytes> = limit_bytes(endless, Some(10)).collect().await;
        assert_eq!(cut.concat(), b"abcdefghij");
        assert_eq!(limit_bytes(chunks(), None).collect::<Vec<_>>().await.len(), 3);
    }
}
