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
//! - [`pki`] and [`auth`]: the cluster CA, certificates, kubeconfig, tokens

// ApiError carries the Status details (subject, field causes); it is only built on the
// error path, so its size (≈128 bytes) costs nothing on the hot path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod discovery;
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
/// HTTPS until the process ends. `on_ready` is called once the server answers requests.
pub async fn run(mut config: ServerConfig, on_ready: impl FnOnce(&ApiServer)) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store: Arc<dyn skiff_store::Store> = if config.etcd_endpoints.is_empty() {
        skiff_store::redb::RedbStore::open(&config.data_dir.join("store.redb"), Default::default())
            .with_context(|| "opening the store")?
    } else {
        skiff_store::etcd::EtcdStore::connect(&config.etcd_endpoints, &config.etcd_prefix, Default::default())
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
    tokio::spawn(bootstrap::service_accounts(server.clone()));
    tokio::spawn(bootstrap::reconcile(server.clone()));
    server.set_ready();
    on_ready(&server);
    server::serve(server, listener).await
}

/// Kept for callers that hold the server in an `Arc` already.
pub type SharedServer = Arc<ApiServer>;
