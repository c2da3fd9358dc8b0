//! The work queue of the workload controllers: cache callbacks put object keys on a
//! channel; kube-runtime's `applier` deduplicates them, never runs two syncs of the same
//! object at once, and runs a sync again when it asks to be requeued.
//!
//! A failed sync is retried with exponential backoff per object (50 ms doubling up to
//! 30 s), as client-go's rate-limited work queue does; most failures are optimistic-lock
//! conflicts against a cache that had not caught up, which the next attempt resolves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use tokio::sync::mpsc;

use crate::health::Metrics;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The sending side of a work queue: `add` asks for a sync of one object.
pub struct Queue<K: Resource<DynamicType = ()>> {
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue { tx: self.tx.clone() }
    }
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    pub fn add(&self, key: ObjectRef<K>) {
        // The receiver lives as long as the controller; a send error means it is shutting down.
        let _ = self.tx.send(key);
    }
}

/// The receiving side, consumed by [`run`].
pub struct Receiver<K: Resource<DynamicType = ()>>(mpsc::UnboundedReceiver<ObjectRef<K>>);

pub fn channel<K: Resource<DynamicType = ()>>() -> (Queue<K>, Receiver<K>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Queue { tx }, Receiver(rx))
}

/// A failed sync; the message carries the whole error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SyncError(anyhow::Error);

/// Whether an error is an optimistic-lock conflict (HTTP 409 Conflict), the expected
/// outcome of acting on a cache that lags behind the API.
pub fn is_conflict(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| match cause.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => status.is_conflict() && !status.is_already_exists(),
        _ => false,
    })
}

/// Runs `sync` for every key put on the queue, `workers` at a time, until the process
/// ends. `sync` returns how soon it wants to run again (None: only on the next change).
/// Metrics: `skiff_syncs_total{controller,result}` and `skiff_sync_duration_seconds{controller}`.
pub async fn run<K, F, Fut>(
    controller_name: &'static str,
    metrics: Arc<Metrics>,
    store: Store<K>,
    receiver: Receiver<K>,
    workers: u16,
    sync: F,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(Arc<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Option<Duration>>> + Send + 'static,
{
    let failures: Arc<Mutex<HashMap<ObjectRef<K>, u32>>> = Arc::default();
    let sync = Arc::new(sync);
    let reconcile = {
        let failures = failures.clone();
        let metrics = metrics.clone();
        move |obj: Arc<K>, _: Arc<()>| {
            let failures = failures.clone();
            let metrics = metrics.clone();
            let sync = sync.clone();
            async move {
                let key = ObjectRef::from_obj(obj.as_ref());
                let started = Instant::now();
                let result = sync(obj).await;
                let elapsed = started.elapsed().as_secs_f64();
                metrics.observe("skiff_sync_duration_seconds", &[("controller", controller_name)], elapsed);
                match result {
                    Ok(requeue) => {
                        metrics.inc("skiff_syncs_total", &[("controller", controller_name), ("result", "success")]);
                        if let Ok(mut f) = failures.lock() {
                            f.remove(&key);
                        }
                        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
                    }
                    Err(e) => {
                        let result = if is_conflict(&e) { "conflict" } else { "error" };
                        metrics.inc("skiff_syncs_total", &[("controller", controller_name), ("result", result)]);
                        if result == "conflict" {
                            tracing::debug!(controller = controller_name, object = %key, error = %format!("{e:#}"), "sync conflicted; retrying");
                        } else {
                            tracing::warn!(controller = controller_name, object = %key, error = %format!("{e:#}"), "sync failed; retrying");
                        }
                        Err(SyncError(e))
                    }
                }
            }
            .boxed()
        }
    };
    let error_policy = move |obj: Arc<K>, _: &SyncError, _: Arc<()>| {
        let key = ObjectRef::from_obj(obj.as_ref());
        let attempts = failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        Action::requeue(retry_delay(attempts))
    };
    let queue = futures::stream::unfold(receiver.0, |mut rx| async move {
        rx.recv().await.map(|key| (Ok::<_, Infallible>(key), rx))
    });
    let config = controller::Config::default().concurrency(workers);
    controller::applier(reconcile, error_policy, Arc::new(()), store, queue, config)
        .for_each(|result| async move {
            if let Err(controller::Error::RunnerError(e)) = result {
                tracing::error!(controller = controller_name, error = %e, "work queue failed");
            }
        })
        .await;
}

/// How long to wait before the `attempts`-th retry of a failing sync.
fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(50));
        assert_eq!(retry_delay(2), Duration::from_millis(100));
        assert_eq!(retry_delay(5), Duration::from_millis(800));
        assert_eq!(retry_delay(40), MAX_RETRY);
    }

    #[test]
    fn conflicts_are_recognised_through_context() {
        let status = kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
        let err = anyhow::Error::new(kube::Error::Api(status.boxed())).context("scaling replica set web-1");
        assert!(is_conflict(&err));
        let other = anyhow::anyhow!("connection refused");
        assert!(!is_conflict(&other));
    }
}
