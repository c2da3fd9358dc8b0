//! How every component finds the API: a kube-rs client from a kubeconfig (or the in-cluster
//! configuration), failing over between several API servers when the kubeconfig lists them.
//!
//! A kubeconfig names one `server` per cluster. Where several API servers serve one cluster
//! (`skiff server --etcd-endpoints`, one etcd), the cluster entry may list the others in an
//! extension that kubectl keeps and ignores:
//!
//! ```yaml
//! clusters:
//! - name: skiff
//!   cluster:
//!     server: https://10.0.0.1:6443
//!     certificate-authority-data: …
//!     extensions:
//!     - name: skiff.io/servers
//!       extension:
//!         servers: [https://10.0.0.2:6443, https://10.0.0.3:6443]
//! ```
//!
//! The components then talk to one server at a time and move to the next when it cannot be
//! reached. kube-rs has no server list of its own, so [`Failover`] is a small tower service in
//! front of one kube-rs client per server (each with the kubeconfig's credentials and CA).
//!
//! Servers also find each other: every API server keeps its address in the endpoints of
//! Service `default/kubernetes`, and a component reads them every [`DISCOVERY_PERIOD`] and
//! adds the servers it did not know (as k3s's agents do), so a kubeconfig naming one server
//! is enough to survive its loss once the others are up. Discovered servers come after the
//! listed ones and are never dropped (a dead one is only skipped).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::Endpoints;
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Name of the cluster extension that lists further API servers.
pub const SERVERS_EXTENSION: &str = "skiff.io/servers";

/// How long a connect (TCP and TLS) to one server may take before the next is tried. kube-rs
/// waits 30 s by default, far too long when another server is ready; a reachable server
/// answers well within this even when loaded.
const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the `kubernetes` Service's endpoints are read for API servers not yet known.
pub const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// A kube-rs client from a kubeconfig file or, without one, the in-cluster configuration
/// (how upstream components find the API when they run as pods).
pub async fn from_kubeconfig_or_in_cluster(path: Option<&Path>) -> Result<kube::Client> {
    match path {
        Some(path) => from_kubeconfig(path).await,
        None => {
            let config = kube::Config::incluster()
                .map_err(|e| anyhow::anyhow!("no --kubeconfig and no in-cluster configuration: {e}"))?;
            Ok(kube::Client::try_from(config)?)
        }
    }
}

/// A kube-rs client from a kubeconfig file: its current context's server, and the servers of
/// the [`SERVERS_EXTENSION`] after it, with failover between them.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let extra_servers = extra_servers(&kubeconfig).with_context(|| format!("kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let default_namespace = config.default_namespace.clone();
    let failover = Failover::new(config)?;
    for server in extra_servers {
        let url: http::Uri =
            server.parse().with_context(|| format!("{SERVERS_EXTENSION}: bad server URL {server:?}"))?;
        failover.add(url)?;
    }
    tracing::info!(servers = ?failover.urls(), "API servers (failover in this order)");
    let client = kube::Client::new(failover.clone(), default_namespace);
    tokio::spawn(discover(failover, client.clone()));
    Ok(client)
}

/// Adds the API servers listed in `default/kubernetes`'s endpoints, every [`DISCOVERY_PERIOD`].
async fn discover(failover: Failover, client: kube::Client) {
    let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
    loop {
        match api.get_opt("kubernetes").await {
            Ok(Some(endpoints)) => {
                for url in server_urls(&endpoints) {
                    if failover.knows(&url) {
                        continue;
                    }
                    match failover.add(url.clone()) {
                        Ok(()) => tracing::info!(server = %url, "API server discovered"),
                        Err(e) => tracing::debug!(server = %url, error = %e, "discovered API server unusable"),
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "reading the kubernetes endpoints failed"),
        }
        tokio::time::sleep(DISCOVERY_PERIOD).await;
    }
}

/// `https://<address>:<port>` for every ready address of the `kubernetes` endpoints.
fn server_urls(endpoints: &Endpoints) -> Vec<http::Uri> {
    let mut urls = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let port = subset.ports.iter().flatten().find(|p| p.name.as_deref().is_none_or(|n| n == "https"));
        let Some(port) = port.map(|p| p.port) else { continue };
        for address in subset.addresses.iter().flatten() {
            let host = match address.ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                Ok(v4) => v4.to_string(),
                Err(_) => continue,
            };
            if let Ok(url) = format!("https://{host}:{port}").parse() {
                urls.push(url);
            }
        }
    }
    urls
}

/// The servers the current context's cluster lists in its [`SERVERS_EXTENSION`], in order.
fn extra_servers(kubeconfig: &Kubeconfig) -> Result<Vec<String>> {
    let Some(context_name) = &kubeconfig.current_context else { return Ok(Vec::new()) };
    let Some(context) = kubeconfig.contexts.iter().find(|c| &c.name == context_name).and_then(|c| c.context.as_ref())
    else {
        return Ok(Vec::new());
    };
    let Some(cluster) = kubeconfig.clusters.iter().find(|c| c.name == context.cluster).and_then(|c| c.cluster.as_ref())
    else {
        return Ok(Vec::new());
    };
    let extension = cluster.extensions.iter().flatten().find(|e| e.name == SERVERS_EXTENSION);
    let Some(extension) = extension else { return Ok(Vec::new()) };
    let servers =
        extension.extension.get("servers").and_then(|s| s.as_array()).ok_or_else(|| {
            anyhow::anyhow!("extension {SERVERS_EXTENSION} needs `servers:`, a list of https:// URLs")
        })?;
    servers
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("extension {SERVERS_EXTENSION}: servers must be strings, found {s}"))
        })
        .collect()
}

/// One API server and the kube-rs client (auth, TLS, base URL) that talks to it.
struct Server {
    url: String,
    uri: http::Uri,
    client: kube::Client,
}

/// Whether two server URLs name the same server (scheme, host and port; `https://h` is
/// `https://h:443`).
fn same_server(a: &http::Uri, b: &http::Uri) -> bool {
    let port = |u: &http::Uri| u.port_u16().unwrap_or(if u.scheme_str() == Some("http") { 80 } else { 443 });
    a.scheme_str() == b.scheme_str() && a.host() == b.host() && port(a) == port(b)
}

/// Sends each request to the server that answered last; when it cannot be reached, to the
/// next one in order. Watches move too: a watch stream breaks with its server, and
/// kube-rs's watcher re-lists through this service.
#[derive(Clone)]
pub struct Failover {
    /// Appended to (discovery), never shrunk: indexes stay valid.
    servers: Arc<RwLock<Vec<Arc<Server>>>>,
    /// Index of the server in use: sticky, so a client does not spread its watches over servers.
    current: Arc<AtomicUsize>,
    /// The kubeconfig's settings (credentials, CA), copied for every server.
    template: Arc<kube::Config>,
}

impl Failover {
    /// A failover over the config's own server.
    fn new(mut template: kube::Config) -> Result<Self> {
        template.connect_timeout = Some(FAILOVER_CONNECT_TIMEOUT);
        let own = template.cluster_url.clone();
        let client = kube::Client::try_from(template.clone())?;
        let server = Arc::new(Server { url: own.to_string(), uri: own, client });
        Ok(Failover {
            servers: Arc::new(RwLock::new(vec![server])),
            current: Arc::new(AtomicUsize::new(0)),
            template: Arc::new(template),
        })
    }

    fn list(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Server>>> {
        self.servers.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Vec<Arc<Server>> {
        self.servers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn urls(&self) -> Vec<String> {
        self.snapshot().iter().map(|s| s.url.clone()).collect()
    }

    fn knows(&self, url: &http::Uri) -> bool {
        self.snapshot().iter().any(|s| same_server(&s.uri, url))
    }

    /// Adds a server after the known ones (nothing when it is known already).
    fn add(&self, url: http::Uri) -> Result<()> {
        if self.knows(&url) {
            return Ok(());
        }
        let mut config = (*self.template).clone();
        config.cluster_url = url.clone();
        let client = kube::Client::try_from(config)?;
        let mut servers = self.list();
        if !servers.iter().any(|s| same_server(&s.uri, &url)) {
            servers.push(Arc::new(Server { url: url.to_string(), uri: url, client }));
        }
        Ok(())
    }

    async fn send(self, request: http::Request<Body>) -> Result<http::Response<Body>, kube::Error> {
        let (parts, body) = request.into_parts();
        // Bodies kube-rs builds are in memory (`try_clone` works); a streamed body is sent once.
        let mut body = Some(body);
        let servers = self.snapshot();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for attempt in 0..servers.len() {
            let index = (start + attempt) % servers.len();
            let server = &servers[index];
            let attempt_body = match body.as_ref().and_then(Body::try_clone) {
                Some(clone) => clone,
                None => match body.take() {
                    Some(original) => original,
                    None => break,
                },
            };
            let mut builder =
                http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).version(parts.version);
            if let Some(headers) = builder.headers_mut() {
                headers.extend(parts.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let attempt_request = builder.body(attempt_body).map_err(|e| kube::Error::Service(Box::new(e)))?;
            match server.client.send(attempt_request).await {
                Ok(response) => {
                    if index != start {
                        self.current.store(index, Ordering::Relaxed);
                        tracing::warn!(server = %server.url, "API server failover: now using this server");
                    }
                    return Ok(response);
                }
                Err(error) if may_retry_elsewhere(&parts.method, &error) => {
                    tracing::warn!(server = %server.url, %error, "API server unreachable, trying the next");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| kube::Error::Service("no API server could take the request".into())))
    }
}

/// Whether a failed request may be sent to another server. Reads (and watches) may always be:
/// they change nothing. A write only when it never left this machine (the connection was not
/// established), so a create the first server may have committed is not made twice.
fn may_retry_elsewhere(method: &http::Method, error: &kube::Error) -> bool {
    let transport = matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_));
    if !transport {
        return false;
    }
    let idempotent = matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    idempotent || is_connect_error(error)
}

/// Walks the error's sources for the I/O errors a failed connect produces.
fn is_connect_error(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::TimedOut
            ) {
                return true;
            }
        }
        current = error.source();
    }
    false
}

impl tower_service::Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each server's client queues on its own; this layer holds nothing that can be full.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(extension: &str) -> Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             clusters:\n- name: other\n  cluster:\n    server: https://192.0.2.9:6443\n\
             - name: k\n  cluster:\n    server: https://192.0.2.1:6443\n{extension}users:\n- name: u\n  user: {{token: t}}\n"
        );
        Kubeconfig::from_yaml(&yaml).expect("test kubeconfig parses")
    }

    #[test]
    fn lists_the_current_clusters_extra_servers_in_order() {
        let config = kubeconfig(
            "    extensions:\n    - name: skiff.io/servers\n      extension:\n        servers: [https://192.0.2.2:6443, https://192.0.2.3:6443]\n",
        );
        assert_eq!(extra_servers(&config).unwrap(), ["https://192.0.2.2:6443", "https://192.0.2.3:6443"]);
    }

    #[test]
    fn no_extension_means_one_server() {
        assert!(extra_servers(&kubeconfig("")).unwrap().is_empty());
        let unrelated = "    extensions:\n    - name: example.com/x\n      extension: {a: 1}\n";
        assert!(extra_servers(&kubeconfig(unrelated)).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_extension_is_an_error_that_names_it() {
        let bad = "    extensions:\n    - name: skiff.io/servers\n      extension: {servers: https://192.0.2.2:6443}\n";
        let error = extra_servers(&kubeconfig(bad)).unwrap_err().to_string();
        assert!(error.contains("skiff.io/servers"), "{error}");
        let bad_item = "    extensions:\n    - name: skiff.io/servers\n      extension: {servers: [1]}\n";
        assert!(extra_servers(&kubeconfig(bad_item)).is_err());
    }

    #[test]
    fn discovered_servers_come_from_the_https_port_of_every_address() {
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::2"}, {"ip": "not-an-ip"}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }],
        }))
        .unwrap();
        let urls: Vec<String> = server_urls(&endpoints).iter().map(|u| u.to_string()).collect();
        assert_eq!(urls, ["https://10.0.0.1:6443/", "https://[fd00::2]:6443/"]);
        assert!(server_urls(&Endpoints::default()).is_empty());
    }

    #[test]
    fn same_server_compares_scheme_host_and_port() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(same_server(&uri("https://10.0.0.1"), &uri("https://10.0.0.1:443/")));
        assert!(!same_server(&uri("https://10.0.0.1:6443"), &uri("https://10.0.0.1:6444")));
        assert!(!same_server(&uri("https://10.0.0.1:6443"), &uri("https://10.0.0.2:6443")));
    }

    #[test]
    fn writes_move_to_another_server_only_when_the_connect_failed() {
        let refused = || {
            let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
            kube::Error::Service(Box::new(io))
        };
        let reset = || {
            let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
            kube::Error::Service(Box::new(io))
        };
        assert!(may_retry_elsewhere(&http::Method::POST, &refused()));
        assert!(!may_retry_elsewhere(&http::Method::POST, &reset()));
        assert!(may_retry_elsewhere(&http::Method::GET, &reset()));
        let api_error = kube::Error::Api(Box::new(kube::core::Status::failure("conflict", "Conflict")));
        assert!(!may_retry_elsewhere(&http::Method::GET, &api_error));
    }
}
