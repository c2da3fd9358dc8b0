//! # skiff-ingress: the Ingress controller
//!
//! `skiff ingress` serves networking.k8s.io/v1 Ingresses of its IngressClass (default
//! `skiff`, controller `skiff.io/ingress-controller`) with an in-process HTTP/1.1 + HTTP/2
//! proxy that sends traffic straight to ready EndpointSlice addresses.
//!
//! Where to start:
//! - [`compile`]: the pure route-table compiler (class selection, conflicts, precedence,
//!   canaries) — the Ingress semantics live here, with table-driven unit tests.
//! - [`routes`]: the compiled table and request matching (hosts, paths, round robin, and
//!   peak-EWMA with power-of-two choices for `load-balance: ewma`).
//! - [`annotations`]: ingress-nginx annotations read into a per-Ingress policy.
//! - [`proxy`]: one request, from lookup to forwarded response (headers, affinity,
//!   redirects, limits, WebSocket bridge); [`upstream`]: pooled upstream clients.
//! - [`tls`]: certificates by SNI from Secrets; [`server`]: listeners, per-core data-plane
//!   threads, `/metrics`, `/healthz`; [`framing`]: the request-smuggling guard.
//! - [`watch`]: the control loop (kube-rs watches → compile → atomic swap via [`snapshot`],
//!   Ingress status, warning Events).
//!
//! Like ingress-nginx, the controller does not create its IngressClass: the installation
//! does (`skiff up` creates `skiff`, marked default). Without the IngressClass object only
//! Ingresses with the legacy annotation `kubernetes.io/ingress.class: skiff` are served.

pub mod annotations;
pub mod body;
pub mod chunked;
pub mod compile;
pub mod fast;
pub mod framing;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use skiff_core::service_view::ServiceKey;

/// The `spec.controller` value of skiff's IngressClass.
pub const CONTROLLER_NAME: &str = "skiff.io/ingress-controller";

/// `skiff ingress` command-line arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Kubeconfig of the API server to watch; without it, the in-cluster configuration
    /// (when running as a pod).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address and port for plain HTTP.
    #[arg(long, default_value = "0.0.0.0:80")]
    pub http_listen: SocketAddr,
    /// Address and port for HTTPS (TLS terminated here, certificate chosen by SNI).
    #[arg(long, default_value = "0.0.0.0:443")]
    pub https_listen: SocketAddr,
    /// IngressClass served (its `spec.controller` must be `skiff.io/ingress-controller`);
    /// also the value matched against the legacy `kubernetes.io/ingress.class` annotation.
    #[arg(long, default_value = "skiff")]
    pub class: String,
    /// Service (NAMESPACE/NAME) whose addresses are written into every served Ingress's
    /// `status.loadBalancer`.
    #[arg(long)]
    pub publish_service: Option<String>,
    /// `kubernetes.io/tls` Secret (NAMESPACE/NAME) served for unknown SNI names and for
    /// `tls` entries without `secretName`; a self-signed certificate otherwise.
    #[arg(long)]
    pub default_ssl_certificate: Option<String>,
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:10254")]
    pub metrics_listen: SocketAddr,
    /// Seconds a client may take to send a request head (and a TLS handshake) before it is
    /// disconnected.
    #[arg(long, default_value_t = 60)]
    pub client_header_timeout: u64,
    /// Threads serving traffic (each with its own runtime and upstream connection pools);
    /// default `TOKIO_WORKER_THREADS` if set, else one per core.
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

fn parse_ref(flag: &str, value: &str) -> Result<(String, String)> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(anyhow!("--{flag} must be NAMESPACE/NAME, got {value:?}")),
    }
}

struct Synced(Arc<AtomicBool>);

impl server::Health for Synced {
    fn synced(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs the controller until it fails (binding a port, for instance).
pub async fn run(client: kube::Client, args: Args) -> Result<()> {
    let publish_service = args.publish_service.as_deref().map(|v| parse_ref("publish-service", v)).transpose()?;
    let default_certificate =
        args.default_ssl_certificate.as_deref().map(|v| parse_ref("default-ssl-certificate", v)).transpose()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let generated = Arc::new(tls::self_signed_default()?);
    let certs = Arc::new(snapshot::Snapshot::new(tls::CertMap::only_default(generated.clone())));
    let routes = Arc::new(snapshot::Snapshot::new(routes::RouteTable::default()));
    let synced = Arc::new(AtomicBool::new(false));
    let http = server::bind(args.http_listen)?;
    let https = server::bind(args.https_listen)?;
    let metrics_listener = server::bind(args.metrics_listen)?;
    let https_addr = https.local_addr()?;
    tracing::info!(
        http = %http.local_addr()?,
        https = %https_addr,
        metrics = %metrics_listener.local_addr()?,
        class = %args.class,
        "ingress listening"
    );
    let header_timeout = Duration::from_secs(args.client_header_timeout.max(1));
    let threads = args.worker_threads.unwrap_or_else(server::default_threads);
    let (proxy_routes, proxy_metrics, https_port) = (routes.clone(), metrics.clone(), https_addr.port());
    let data_plane = Arc::new(server::DataPlane::start(threads, header_timeout, move || proxy::Proxy {
        routes: proxy_routes.clone(),
        upstreams: upstream::Upstreams::default(),
        metrics: proxy_metrics.clone(),
        https_port,
    })?);
    tracing::info!(threads = data_plane.threads(), "data plane started");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(certs.clone())?));
    let http_config = server::ListenerConfig { tls: None, local_port: http.local_addr()?.port() };
    let https_config = server::ListenerConfig { tls: Some(acceptor), local_port: https_addr.port() };
    tokio::spawn(server::serve_proxy(http, http_config, data_plane.clone()));
    tokio::spawn(server::serve_proxy(https, https_config, data_plane));
    tokio::spawn(server::serve_metrics(metrics_listener, metrics.clone(), Arc::new(Synced(synced.clone()))));
    let controller = watch::Controller {
        client,
        class: compile::ClassConfig { class: args.class, controller: CONTROLLER_NAME.to_owned() },
        publish_service: publish_service.map(|(ns, name)| ServiceKey::new(ns, name)),
        default_certificate,
        generated_certificate: generated,
        routes,
        certs,
        metrics,
        synced,
    };
    controller.run().await;
    Err(anyhow!("all watch streams ended"))
}
