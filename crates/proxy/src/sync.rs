//! The sync loop: one thread that waits for changes, asks the tracker what changed, has the
//! data plane write it, then cleans UDP conntrack entries and updates health checks and
//! metrics.
//!
//! Unlike kube-proxy there is no `minSyncPeriod`: a sync starts as soon as a change is
//! queued, and changes that arrive during a sync are batched into the next one. After a
//! failure the next sync is full, retried with a growing delay (up to 30 s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use skiff_core::service_view::ServiceKey;

use crate::backend::{Dataplane, Update};
use crate::conntrack;
use crate::healthcheck::HealthChecks;
use crate::metrics::{Metrics, SyncFacts};
use crate::model::{NoEndpoints, ServiceState};
use crate::tracker::ChangeTracker;

/// State shared by the watch task (writer) and the sync thread (reader).
pub struct Shared {
    pub tracker: Mutex<ChangeTracker>,
    /// Set once every watch has listed once; no sync happens before.
    pub synced: AtomicBool,
    pub metrics: Metrics,
    wake: Condvar,
    woken: Mutex<bool>,
}

impl Shared {
    pub fn new(tracker: ChangeTracker, metrics: Metrics) -> Shared {
        Shared {
            tracker: Mutex::new(tracker),
            synced: AtomicBool::new(false),
            metrics,
            wake: Condvar::new(),
            woken: Mutex::new(false),
        }
    }

    pub fn tracker(&self) -> std::sync::MutexGuard<'_, ChangeTracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the sync thread (after events were applied to the tracker).
    pub fn notify(&self) {
        self.metrics.queued();
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) =
            self.wake.wait_timeout_while(guard, timeout, |woken| !*woken).unwrap_or_else(|p| p.into_inner());
        *guard = false;
    }
}

/// Periodic full resync, as kube-proxy's `syncPeriod` (repairs anything changed behind
/// the proxy's back).
const RESYNC_PERIOD: Duration = Duration::from_secs(3600);

/// Runs syncs until `stop` is set. `health` may be `None` (benchmarks).
pub fn run(
    shared: Arc<Shared>,
    mut dataplane: Box<dyn Dataplane>,
    mut health: Option<HealthChecks>,
    stop: Arc<AtomicBool>,
) {
    let mut current: HashMap<ServiceKey, ServiceState> = HashMap::new();
    let mut retry_delay = Duration::from_secs(1);
    let mut failed = false;
    let mut last_full = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let wait = if failed { retry_delay } else { Duration::from_secs(1) };
        let ready = shared.synced.load(Ordering::Acquire);
        let pending = ready && shared.tracker().has_changes();
        if !pending && !failed {
            shared.wait(wait);
            if last_full.elapsed() > RESYNC_PERIOD && ready {
                shared.tracker().force_full();
            }
            continue;
        }
        if failed {
            std::thread::sleep(retry_delay);
            shared.tracker().force_full();
        }
        let started = Instant::now();
        let (changes, old_states) = {
            let mut tracker = shared.tracker();
            let changes = tracker.take_changes();
            let desired = tracker.desired();
            let mut old_states = Vec::with_capacity(changes.changed.len());
            for key in &changes.changed {
                let new = desired.get(key).cloned();
                let old = match new {
                    Some(state) => current.insert(key.clone(), state),
                    None => current.remove(key),
                };
                old_states.push((key.clone(), old));
            }
            (changes, old_states)
        };
        let update = Update { full: changes.full, desired: &current, changed: &changes.changed };
        match dataplane.sync(&update) {
            Ok(()) => {
                let duration = started.elapsed();
                failed = false;
                retry_delay = Duration::from_secs(1);
                if changes.full {
                    last_full = Instant::now();
                }
                let now = chrono::Utc::now();
                for at in &changes.triggers {
                    let lag = now.signed_duration_since(*at);
                    shared.metrics.observe_programming(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
                }
                shared.metrics.synced(&facts(&current, changes.full, duration, changes.changed.len()));
                tracing::debug!(
                    full = changes.full,
                    changed = changes.changed.len(),
                    ms = duration.as_secs_f64() * 1e3,
                    "synced proxy rules"
                );
                let deletions: Vec<conntrack::Deletion> = old_states
                    .iter()
                    .flat_map(|(key, old)| conntrack::stale_entries(old.as_ref(), current.get(key)))
                    .collect();
                conntrack::delete(&deletions);
                if let Some(health) = &mut health {
                    health.update(&current);
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "syncing proxy rules failed; retrying with a full sync");
                shared.metrics.sync_failed();
                failed = true;
                retry_delay = (retry_delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn facts(current: &HashMap<ServiceKey, ServiceState>, full: bool, duration: Duration, changed: usize) -> SyncFacts {
    let mut f = SyncFacts {
        full,
        duration,
        changed_services: changed,
        services: 0,
        endpoints: 0,
        no_local_internal: 0,
        no_local_external: 0,
    };
    for port in current.values().flat_map(|s| &s.ports) {
        f.services += 1;
        f.endpoints += port.internal.backends.len();
        if port.internal.backends.is_empty() && port.internal.when_empty == NoEndpoints::Drop {
            f.no_local_internal += 1;
        }
        if port.has_external() && port.external.backends.is_empty() && port.external.when_empty == NoEndpoints::Drop {
            f.no_local_external += 1;
        }
    }
    f
}
