//! # skiff-controllers: turning desired state into objects
//!
//! `skiff controllers --kubeconfig K` runs every controller of this crate as one process,
//! as a client of any Kubernetes API (skiff's or a real one), through kube-rs watches.
//! Several replicas may run: [`leader`] elects one through a `coordination.k8s.io` Lease
//! and only the leader acts.
//!
//! Start at [`run`]. Shared plumbing: [`context`] (the client, the config, the event
//! recorder), [`events`] (core/v1 Events that `kubectl describe` shows), [`health`]
//! (`/healthz`, `/metrics`).

// Controllers (each exposes `pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()>`):
// [controller modules]
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod gc;
pub mod loadbalancer;
pub mod mirroring;
pub mod namespace;
pub mod node_lifecycle;
pub mod nodeipam;
pub mod replicaset;
pub mod scheduler;

pub mod context;
pub mod events;
pub mod health;
pub mod leader;

use std::sync::Arc;

use anyhow::{Context as _, Result};
pub use context::{Context, ControllerConfig};

/// Runs the controllers until the process ends or leadership is lost.
pub async fn run(client: kube::Client, config: ControllerConfig) -> Result<()> {
    let ctx = Arc::new(Context::new(client, config));
    if let Some(addr) = ctx.config.metrics_listen {
        let listener = health::bind(addr).await.with_context(|| format!("metrics listener on {addr}"))?;
        tokio::spawn(health::serve(listener, ctx.metrics.clone()));
    }
    let lost = leader::acquire(ctx.clone()).await?;
    tracing::info!(identity = %ctx.config.identity, "became leader; starting controllers");
    let controllers = start_all(ctx.clone());
    tokio::select! {
        r = controllers => r,
        _ = lost => anyhow::bail!("lost leadership; exiting so another replica can take over"),
    }
}

/// Starts every controller; returns when one of them fails.
async fn start_all(ctx: Arc<Context>) -> Result<()> {
    let mut set: tokio::task::JoinSet<Result<()>> = tokio::task::JoinSet::new();
    // [controller spawns] e.g. set.spawn(endpointslice::run(ctx.clone()));
    set.spawn(endpointslice::run(ctx.clone()));
    set.spawn(endpoints::run(ctx.clone()));
    set.spawn(mirroring::run(ctx.clone()));
    set.spawn(replicaset::run(ctx.clone()));
    set.spawn(deployment::run(ctx.clone()));
    set.spawn(gc::run(ctx.clone()));
    set.spawn(namespace::run(ctx.clone()));
    set.spawn(node_lifecycle::run(ctx.clone()));
    set.spawn(loadbalancer::run(ctx.clone()));
    set.spawn(nodeipam::run(ctx.clone()));
    set.spawn(scheduler::run(ctx.clone()));
    let _ = &ctx;
    while let Some(res) = set.join_next().await {
        res??;
    }
    Ok(())
}
