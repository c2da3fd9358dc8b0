//! Watch delivery latency: `watchers` watch streams on the benchmark namespace, each on its
//! own connection (as separate components would have), then `events` creates spaced
//! `interval` apart, all from one writer. For every (watcher, create) pair two latencies are
//! recorded, bracketing the real one (commit to delivery), which the client cannot see:
//!
//! - after ack: from the create's 201 to the watcher reading the event. A lower bound; an
//!   event that arrives before the 201 counts 0 (`before_ack` says how often).
//! - from send: from just before the create was sent. An upper bound: it includes the
//!   create's own latency (validation, allocation, the fsync of the store).
//!
//! Before the timed creates, one warm-up create must reach every watcher, so each stream is
//! known to be live and no watcher start-up cost ends up in the numbers.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{creates::service_body, SERVICES_PATH};
use crate::client::{ApiEndpoint, Connection};
use crate::stats::LatencySummary;

/// Name of the create that proves every stream is live.
const WARMUP_NAME: &str = "bench-watch-warmup";
/// Prefix of the timed creates; the suffix is the create's index.
const TIMED_PREFIX: &str = "bench-watch-";
/// How long the warm-up event may take to reach every watcher.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last create, how long watchers may take to receive what is still missing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for each single request of this scenario.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct WatchResult {
    pub watchers: usize,
    /// Timed creates sent, and how many of them were answered 201.
    pub events: usize,
    pub created: usize,
    pub interval_ms: u64,
    /// (watcher, event) pairs received, and those expected but never received.
    pub delivered: usize,
    pub missing: usize,
    /// Watchers whose stream failed (an ERROR event or a broken connection).
    pub failed_watchers: usize,
    /// Receive time minus the time the create's 201 arrived (0 if the event came first).
    pub after_ack: LatencySummary,
    /// Deliveries that arrived before the writer had the create's 201.
    pub before_ack: usize,
    /// Receive time minus the time just before the create was sent.
    pub from_send: LatencySummary,
    /// The timed creates themselves, as the single writer saw them.
    pub create_latency: LatencySummary,
}

/// One line of a watch stream, reduced to what the benchmark needs.
#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    metadata: EventMeta,
}

#[derive(Deserialize, Default)]
struct EventMeta {
    #[serde(default)]
    name: String,
}

/// What one watcher received: for each timed create, when its event arrived.
struct WatcherLog {
    received: Vec<Option<Instant>>,
    error: Option<String>,
}

pub async fn run(endpoint: &ApiEndpoint, watchers: usize, events: usize, interval: Duration) -> Result<WatchResult> {
    run_across(endpoint, endpoint, watchers, events, interval).await
}

/// [`run`] with the creates sent to `writer` and the watches opened on `watched`: with two
/// API servers on one etcd, the latency of a write through one reaching watchers of the other.
pub async fn run_across(
    writer_endpoint: &ApiEndpoint,
    endpoint: &ApiEndpoint,
    watchers: usize,
    events: usize,
    interval: Duration,
) -> Result<WatchResult> {
    let mut writer = writer_endpoint.connect().await?;
    let start_rv = current_resource_version(&mut writer).await?;

    // Open every stream before anything is written: each has its response headers.
    let watch_path = format!("{SERVICES_PATH}?watch=true&resourceVersion={start_rv}");
    let (warm_tx, mut warm_rx) = mpsc::channel::<()>(watchers.max(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let mut conn = endpoint.connect().await.with_context(|| format!("connecting watcher {w}"))?;
        let response = conn.send(Method::GET, &watch_path, None).await.with_context(|| format!("watcher {w}"))?;
        if response.status() != StatusCode::OK {
            bail!("watcher {w}: the watch was answered {}", response.status());
        }
        readers.push(tokio::spawn(read_events(response.into_body(), events, warm_tx.clone(), stop_rx.clone())));
    }
    drop(warm_tx);

    create(&mut writer, WARMUP_NAME).await.context("the warm-up create")?;
    let warmed = tokio::time::timeout(WARMUP_TIMEOUT, async {
        let mut n = 0;
        while n < watchers && warm_rx.recv().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .unwrap_or(0);
    if warmed < watchers {
        bail!("only {warmed} of {watchers} watchers received the warm-up event within {WARMUP_TIMEOUT:?}");
    }

    // The timed creates: one writer, one create per tick.
    let mut sent_at = Vec::with_capacity(events);
    let mut acked_at: Vec<Option<Instant>> = Vec::with_capacity(events);
    let mut create_latencies = Vec::with_capacity(events);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..events {
        ticks.tick().await;
        let name = format!("{TIMED_PREFIX}{i:05}");
        let sent = Instant::now();
        let ok = create(&mut writer, &name)
            .await
            .map_err(|e| tracing::warn!(error = %format!("{e:#}"), "timed create"))
            .is_ok();
        let acked = Instant::now();
        sent_at.push(sent);
        acked_at.push(ok.then_some(acked));
        if ok {
            create_latencies.push(acked - sent);
        }
    }

    // Readers stop by themselves once they have every event; the rest after DRAIN_TIMEOUT.
    tokio::spawn(async move {
        tokio::time::sleep(DRAIN_TIMEOUT).await;
        let _ = stop_tx.send(true);
    });
    let mut from_send = Vec::with_capacity(watchers * events);
    let mut after_ack = Vec::with_capacity(watchers * events);
    let (mut missing, mut failed_watchers, mut before_ack) = (0, 0, 0);
    for reader in readers {
        let log = reader.await.context("a watcher task failed")?;
        if let Some(e) = &log.error {
            failed_watchers += 1;
            tracing::warn!(error = %e, "watcher failed");
        }
        for (i, acked) in acked_at.iter().enumerate() {
            let Some(acked) = acked else { continue };
            match log.received.get(i).copied().flatten() {
                Some(received) => {
                    from_send.push(received.saturating_duration_since(sent_at[i]));
                    after_ack.push(received.saturating_duration_since(*acked));
                    before_ack += usize::from(received < *acked);
                }
                None => missing += 1,
            }
        }
    }
    Ok(WatchResult {
        watchers,
        events,
        created: create_latencies.len(),
        interval_ms: interval.as_millis() as u64,
        delivered: from_send.len(),
        missing,
        failed_watchers,
        after_ack: LatencySummary::from_samples(&mut after_ack),
        before_ack,
        from_send: LatencySummary::from_samples(&mut from_send),
        create_latency: LatencySummary::from_samples(&mut create_latencies),
    })
}

/// The collection's current resourceVersion, from a one-item list.
async fn current_resource_version(conn: &mut Connection) -> Result<String> {
    let (status, body) =
        tokio::time::timeout(REQUEST_TIMEOUT, conn.call(Method::GET, &format!("{SERVICES_PATH}?limit=1"), None))
            .await
            .context("listing Services timed out")??;
    if status != StatusCode::OK {
        bail!("listing Services: {status}: {}", String::from_utf8_lossy(&body));
    }
    let list: serde_json::Value = serde_json::from_slice(&body).context("parsing the Service list")?;
    list.pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("the Service list has no metadata.resourceVersion")
}

async fn create(conn: &mut Connection, name: &str) -> Result<()> {
    let (status, body) =
        tokio::time::timeout(REQUEST_TIMEOUT, conn.call(Method::POST, SERVICES_PATH, Some(service_body(name))))
            .await
            .with_context(|| format!("creating {name} timed out"))??;
    if status != StatusCode::CREATED {
        bail!("creating {name}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Reads one watch stream until it has all `events` timed events, it fails, or `stop`.
/// Each line is stamped with the time its last bytes were read, before any parsing.
async fn read_events(
    mut body: Incoming,
    events: usize,
    warmed: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> WatcherLog {
    let mut log = WatcherLog { received: vec![None; events], error: None };
    let mut remaining = events;
    let mut pending: Vec<u8> = Vec::new();
    while remaining > 0 {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => return log,
        };
        let now = Instant::now();
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers carry no events
            },
            Some(Err(e)) => {
                log.error = Some(format!("reading the watch stream: {e}"));
                return log;
            }
            None => {
                log.error = Some("the server ended the watch".into());
                return log;
            }
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: WatchEvent = match serde_json::from_slice(&line) {
                Ok(e) => e,
                Err(e) => {
                    log.error = Some(format!("unparsable watch event: {e}"));
                    return log;
                }
            };
            match event.kind.as_str() {
                "ADDED" if event.object.metadata.name == WARMUP_NAME => {
                    let _ = warmed.send(()).await;
                }
                "ADDED" => {
                    let index =
                        event.object.metadata.name.strip_prefix(TIMED_PREFIX).and_then(|n| n.parse::<usize>().ok());
                    if let Some(slot) = index.and_then(|i| log.received.get_mut(i)) {
                        if slot.is_none() {
                            *slot = Some(now);
                            remaining -= 1;
                        }
                    }
                }
                "ERROR" => {
                    log.error = Some(format!("ERROR event: {}", String::from_utf8_lossy(&line)));
                    return log;
                }
                _ => {}
            }
        }
    }
    log
}
