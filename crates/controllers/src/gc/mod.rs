//! The garbage collector: deletes objects whose owners are gone, and carries out the
//! foreground and orphan deletions the API server only marks (upstream's
//! garbagecollector controller).
//!
//! `metadata.ownerReferences` make an object a *dependent* of its owners. When an owner is
//! deleted, `propagationPolicy` decides what happens to its dependents:
//! - **Background** (kubectl's default): the owner goes at once; the collector then deletes
//!   every dependent whose owners are all gone.
//! - **Foreground**: the API server keeps the owner with a deletionTimestamp and the
//!   `foregroundDeletion` finalizer; the collector deletes the dependents and removes the
//!   finalizer once no dependent with `blockOwnerDeletion=true` is left.
//! - **Orphan**: the API server keeps the owner with the `orphan` finalizer; the collector
//!   removes the owner from its dependents' ownerReferences, then removes the finalizer.
//!
//! How: one metadata-only watch per deletable resource the API serves (from discovery;
//! Events excluded, as upstream does) feeds a [`graph::Graph`] of owners and dependents.
//! The graph says which objects need a look; workers take them from a [`queue::WorkQueue`]
//! and decide on live data ([`collector`]). A namespaced owner must be in its dependent's
//! namespace: a reference to another namespace counts as a missing owner (with an
//! `OwnerRefInvalidNamespace` warning).

pub mod collector;
pub mod graph;
pub mod queue;
pub mod resources;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};

use crate::context::Context;
use collector::Collector;
use graph::{Node, Uid};
use resources::{ResourceIndex, ServedResource};

/// How many objects are processed at the same time.
const WORKERS: usize = 4;

/// Resources whose objects the collector does not track (upstream ignores Events: they
/// are many, short-lived and never owners).
fn ignored(r: &ServedResource) -> bool {
    r.resource.plural == "events" && (r.resource.group.is_empty() || r.resource.group == "events.k8s.io")
}

fn watchable(r: &ServedResource) -> bool {
    ["list", "watch", "delete"].iter().all(|v| r.supports(v)) && !ignored(r)
}

/// Runs the garbage collector until the process ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let resources = discover_with_retry(&ctx.client).await;
    let collector = Arc::new(Collector::new(ctx.clone(), ResourceIndex::new(resources)));
    for _ in 0..WORKERS {
        tokio::spawn(work(collector.clone()));
    }
    build_graph(collector).await
}

async fn discover_with_retry(client: &kube::Client) -> Vec<ServedResource> {
    let mut delay = Duration::from_millis(200);
    loop {
        match resources::discover(client).await {
            Ok(r) => return r,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// One worker: takes uids from the queue and processes them.
async fn work(collector: Arc<Collector>) {
    loop {
        let uid = collector.queue.next().await;
        let started = Instant::now();
        let result = collector.sync(&uid).await;
        let labels = [("controller", "garbagecollector")];
        collector.ctx.metrics.inc("skiff_controller_syncs_total", &labels);
        collector.ctx.metrics.observe(
            "skiff_controller_sync_duration_seconds",
            &labels,
            started.elapsed().as_secs_f64(),
        );
        match result {
            Ok(()) => collector.queue.forget(&uid),
            Err(e) => {
                collector.ctx.metrics.inc("skiff_controller_sync_errors_total", &labels);
                tracing::warn!(%uid, error = %e, "garbage collector: processing failed; will retry");
                collector.queue.retry_later(uid.clone());
            }
        }
        collector.queue.done(&uid);
    }
}

/// Watches every deletable resource and keeps the graph up to date; queues the objects
/// each change concerns once every watch has listed.
async fn build_graph(collector: Arc<Collector>) -> Result<()> {
    let watched: Vec<usize> =
        collector.resources.iter().enumerate().filter(|(_, r)| watchable(r)).map(|(i, _)| i).collect();
    tracing::info!(
        resources = ?watched.iter().filter_map(|i| collector.resources.get(*i)).map(|r| r.group_resource()).collect::<Vec<_>>(),
        "garbage collector: watching"
    );
    let streams = watched.iter().filter_map(|&index| {
        let resource = collector.resources.get(index)?;
        let api = resource.metadata_api_all(&collector.ctx.client);
        Some(watcher(api, watcher::Config::default()).default_backoff().map_ok(move |e| (index, e)).boxed())
    });
    let mut events = futures::stream::select_all(streams);
    let mut listing: HashMap<usize, HashSet<Uid>> = HashMap::new();
    let mut listed: HashSet<usize> = HashSet::new();
    let mut synced = watched.is_empty();
    while let Some(event) = events.next().await {
        let (index, event) = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: watch failed; retrying");
                continue;
            }
        };
        let work = apply_event(&collector, index, event, &mut listing, &mut listed);
        if !synced && listed.len() == watched.len() {
            synced = true;
            let pending = collector.graph().needing_attention();
            tracing::info!(objects = collector.graph().len(), pending = pending.len(), "garbage collector: synced");
            for uid in pending {
                collector.queue.add(uid);
            }
        } else if synced {
            for uid in work {
                collector.queue.add(uid);
            }
        }
    }
    Ok(())
}

/// Applies one watch event to the graph; returns the uids it concerns.
fn apply_event(
    collector: &Collector,
    index: usize,
    event: watcher::Event<PartialObjectMeta<DynamicObject>>,
    listing: &mut HashMap<usize, HashSet<Uid>>,
    listed: &mut HashSet<usize>,
) -> Vec<Uid> {
    let mut graph = collector.graph();
    match event {
        watcher::Event::Init => {
            listing.insert(index, HashSet::new());
            Vec::new()
        }
        watcher::Event::InitApply(obj) => {
            let Some(node) = Node::from_meta(index, &obj.metadata) else { return Vec::new() };
            listing.entry(index).or_default().insert(node.uid.clone());
            graph.upsert(node)
        }
        watcher::Event::InitDone => {
            // Objects the new list no longer has were deleted while the watch was down.
            let seen = listing.remove(&index).unwrap_or_default();
            let mut work = Vec::new();
            for uid in graph.uids_of_resource(index) {
                if !seen.contains(&uid) {
                    work.extend(graph.remove(&uid));
                }
            }
            listed.insert(index);
            work
        }
        watcher::Event::Apply(obj) => match Node::from_meta(index, &obj.metadata) {
            Some(node) => graph.upsert(node),
            None => Vec::new(),
        },
        watcher::Event::Delete(obj) => match obj.metadata.uid.as_deref() {
            Some(uid) => graph.remove(uid),
            None => Vec::new(),
        },
    }
}
