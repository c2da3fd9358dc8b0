//! The API server's shared state and its startup.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use skiff_api::service::ServiceConfig;
use skiff_store::Store;

use crate::auth::TokenAuthenticator;
use crate::config::ServerConfig;
use crate::pki::Pki;

/// Everything request handlers share.
pub struct ApiServer {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    pub services: ServiceConfig,
    pub pki: Pki,
    pub tokens: TokenAuthenticator,
    pub openapi: crate::openapi::OpenApi,
    pub allocations: Arc<crate::services::AllocationCache>,
    ready: AtomicBool,
}

impl ApiServer {
    /// Prepares the server on an opened store: PKI, tokens, admin kubeconfig.
    pub fn new(store: Arc<dyn Store>, config: ServerConfig) -> Result<Arc<ApiServer>> {
        let services =
            ServiceConfig::parse(&config.service_cidr, &config.node_port_range).map_err(|e| anyhow::anyhow!("{e}"))?;
        let advertised = config.advertised();
        let mut hosts: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            services.kubernetes_ip().to_string(),
            advertised.to_string(),
        ];
        if !config.listen.ip().is_unspecified() {
            hosts.push(config.listen.ip().to_string());
        }
        hosts.extend(config.tls_sans.iter().cloned());
        hosts.sort();
        hosts.dedup();
        let pki = Pki::load_or_create(&config.data_dir, &hosts)?;
        let token_path = pki.dir.join("admin.token");
        let admin_token = match std::fs::read_to_string(&token_path) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                let bytes: [u8; 24] = rand::random();
                let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                crate::pki::write_private(&token_path, t.as_bytes())?;
                t
            }
        };
        let tokens = TokenAuthenticator::new(admin_token, &pki.token_signing_key);
        let server_url = format!("https://{}", std::net::SocketAddr::new(advertised, config.listen.port()));
        let kubeconfig = pki.admin_kubeconfig(&server_url, &config.cluster_name);
        crate::pki::write_private(&config.data_dir.join("kubeconfig"), kubeconfig.as_bytes())
            .context("writing the admin kubeconfig")?;
        Ok(Arc::new(ApiServer {
            store,
            config,
            services,
            pki,
            tokens,
            openapi: crate::openapi::OpenApi::new(),
            allocations: Arc::new(crate::services::AllocationCache::default()),
            ready: AtomicBool::new(false),
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}
