//! Watches the pods bound to this node (`spec.nodeName=<node>`) and keeps one
//! [`worker`](crate::worker) per pod uid. After the first full list, pod directories left
//! from pods that no longer exist are stopped and removed (they were deleted while the
//! agent was down).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{mpsc, watch};

use crate::agent::Agent;
use crate::instance::instances;
use crate::sandbox::signal_group;
use crate::state::{existing_pods, PodDir, PodRecord};
use crate::worker;

struct WorkerHandle {
    updates: watch::Sender<Option<Pod>>,
}

/// Runs until the watch ends (it retries forever).
pub async fn run(agent: Arc<Agent>) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;
    // Taken before any worker runs, so pods accepted later are never mistaken for orphans.
    let on_disk = existing_pods(&agent.data_dir);
    free_unowned_ips(&agent, &on_disk);
    let mut on_disk = Some(on_disk);
    loop {
        tokio::select! {
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
            }
            event = events.next() => {
                let Some(event) = event else { return };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch error; retrying");
                        continue;
                    }
                };
                match event {
                    Event::Init => listing = Some(HashSet::new()),
                    Event::InitApply(pod) | Event::Apply(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(seen) = listing.as_mut() {
                            seen.insert(uid.clone());
                        }
                        dispatch(&agent, &mut workers, &done_tx, uid, Some(pod));
                    }
                    Event::Delete(pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        if let Some(handle) = workers.get(&uid) {
                            handle.updates.send_replace(None);
                        }
                    }
                    Event::InitDone => {
                        let seen = listing.take().unwrap_or_default();
                        // Pods that vanished while the watch was away.
                        for (uid, handle) in &workers {
                            if !seen.contains(uid) {
                                handle.updates.send_replace(None);
                            }
                        }
                        if let Some(on_disk) = on_disk.take() {
                            let agent = agent.clone();
                            tokio::spawn(async move { remove_orphans(&agent, on_disk, &seen).await });
                        }
                    }
                }
            }
        }
    }
}

fn dispatch(
    agent: &Arc<Agent>,
    workers: &mut HashMap<String, WorkerHandle>,
    done: &mpsc::UnboundedSender<String>,
    uid: String,
    pod: Option<Pod>,
) {
    if let Some(handle) = workers.get(&uid) {
        handle.updates.send_replace(pod);
        return;
    }
    let (tx, rx) = watch::channel(pod);
    workers.insert(uid.clone(), WorkerHandle { updates: tx });
    let agent = agent.clone();
    let done = done.clone();
    tokio::spawn(async move {
        worker::run(agent, rx).await;
        let _ = done.send(uid);
    });
}

/// Stops the containers of pod directories whose pods are gone, and tears them down.
async fn remove_orphans(agent: &Agent, on_disk: Vec<(String, Option<PodRecord>)>, live: &HashSet<String>) {
    for (uid, record) in on_disk {
        if live.contains(&uid) {
            continue;
        }
        tracing::info!(%uid, pod = ?record.as_ref().map(|r| format!("{}/{}", r.namespace, r.name)), "removing a pod deleted while the agent was away");
        let dir = PodDir::new(&agent.data_dir, &uid);
        kill_all(&dir).await;
        worker::teardown(agent, &dir, record.as_ref()).await;
    }
}

/// Frees IPs whose owner has no pod directory (the agent died between allocating and
/// recording). Runs before any worker, when no allocation can be in flight.
fn free_unowned_ips(agent: &Agent, on_disk: &[(String, Option<PodRecord>)]) {
    let pods: HashSet<&str> = on_disk.iter().map(|(uid, _)| uid.as_str()).collect();
    for (ip, owner) in agent.ipam.entries().unwrap_or_default() {
        if !pods.contains(owner.as_str()) {
            tracing::info!(%ip, %owner, "freeing an IP without a pod");
            let _ = agent.ipam.release(&owner);
        }
    }
}

/// SIGTERM, then SIGKILL after 2 s, to every live container of a pod directory.
async fn kill_all(dir: &PodDir) {
    let containers = std::fs::read_dir(dir.0.join("containers")).into_iter().flatten().flatten();
    let live: Vec<i32> = containers.filter_map(|c| instances(&c.path()).pop()?.live_pid()).collect();
    for pid in &live {
        signal_group(*pid, libc::SIGTERM);
    }
    for _ in 0..40 {
        if live.iter().all(|pid| crate::instance::start_ticks(*pid).is_none()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in &live {
        signal_group(*pid, libc::SIGKILL);
    }
}
