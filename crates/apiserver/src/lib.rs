//! # skiff-apiserver: a Kubernetes-compatible API server
//!
//! The real kubectl, client-go, the Python client and kube-rs talk to it unchanged.
//! Start at [`run`]; a request travels [`server`] (TLS, HTTP/1.1 and HTTP/2) →
//! [`handlers`] (authentication, routing by [`request`], one module per verb family) →
//! [`skiff_api`] (what the API means: validation, defaults, patches, Services) →
//! [`skiff_store`] (where objects live).
//!
//! - [`discovery`] and [`openapi`]: what kubectl learns about the API before it acts
//! - [`services`]: ClusterIP/NodePort claims in store transactions
//! - [`bootstrap`]: system namespaces, `default/kubernetes`, default ServiceAccounts
//! - [`endpoint_leases`]: every live API server's address in the `kubernetes` endpoints
//! - [`pki`] and [`auth`]: the cluster CA, certificates, kubeconfig, tokens

// ApiError carries the Status details (subject, field causes); it is only built on the
// error path, so its size (≈128 bytes) costs nothing on the hot path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod discovery;
pub mod endpoint_leases;
pub mod filter;
pub mod handlers;
pub mod http;
pub mod openapi;
pub mod pki;
pub mod request;
pub mod server;
pub mod services;
pub mod state;
pub mod storage;

use std::sync::Arc;

use anyhow::{Context, Result};
pub use config::ServerConfig;
pub use state::ApiServer;

/// Opens the store under `config.data_dir`, bootstraps the cluster objects and serves
/// HTTPS until SIGTERM or SIGINT. `on_ready` is called once the server answers requests.
///
/// On SIGTERM/SIGINT the server takes its address out of the `kubernetes` endpoints (see
/// [`endpoint_leases::remove`]) and returns `Ok`.
pub async fn run(mut config: ServerConfig, on_ready: impl FnOnce(&ApiServer)) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store: Arc<dyn skiff_store::Store> = if config.etcd_endpoints.is_empty() {
        skiff_store::redb::RedbStore::open(&config.data_dir.join("store.redb"), Default::default())
            .with_context(|| "opening the store")?
    } else {
        let options = skiff_store::etcd::EtcdOptions { tls: config.etcd_tls()?, ..Default::default() };
        skiff_store::etcd::EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix, options)
            .await
            .with_context(|| format!("connecting to etcd at {}", config.etcd_endpoints.join(",")))?
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    // With port 0 the kernel picks a free port; the kubeconfig must name the real one.
    config.listen = listener.local_addr()?;
    pki::share_through_store(store.as_ref(), &config.data_dir)
        .await
        .context("sharing the cluster CA through the store")?;
    let server = ApiServer::new(store, config)?;
    tokio::spawn(server.allocations.clone().run(server.store.clone()));
    bootstrap::bootstrap(&server).await.context("bootstrapping cluster objects")?;
    endpoint_leases::reconcile(&server).await.context("publishing this server in the kubernetes endpoints")?;
    tokio::spawn(bootstrap::service_accounts(server.clone()));
    tokio::spawn(bootstrap::reconcile(server.clone()));
    let (stop_leases, leases_stopped) = tokio::sync::watch::channel(());
    let leases = tokio::spawn(endpoint_leases::run(server.clone(), leases_stopped));
    server.set_ready();
    on_ready(&server);
    let terminated = shutdown_signal()?;
    tokio::select! {
        served = server::serve(server.clone(), listener) => served,
        signal = terminated => {
            tracing::info!(signal, "shutting down: removing this server from the kubernetes endpoints");
            drop(stop_leases);
            let _ = leases.await;
            endpoint_leases::remove(&server).await.context("removing this server from the kubernetes endpoints")
        }
    }
}

/// Resolves with the signal's name on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Kept for callers that hold the server in an `Arc` already.
pub type SharedServer = Arc<ApiServer>;
