//! The route-table compiler: Ingresses + IngressClasses + the Service view → [`RouteTable`].
//!
//! Pure (no I/O), so every matching rule of the Ingress API is unit-tested here. Rules:
//! - Class: the legacy annotation `kubernetes.io/ingress.class` wins over
//!   `spec.ingressClassName`; a class name counts when its IngressClass names our controller;
//!   class-less Ingresses are ours when our IngressClass is marked default. Others are
//!   ignored entirely (no routes, no status).
//! - Conflicts: Ingresses are applied oldest first (creationTimestamp, then namespace/name);
//!   the same host + path + pathType, the same TLS host, and the global default backend all
//!   go to the oldest Ingress.
//! - Paths of a host are ordered longest first, Exact before Prefix before
//!   ImplementationSpecific at equal length; the first match wins. If any Ingress of a host
//!   sets `use-regex` or `rewrite-target`, every non-Exact path of that host becomes a
//!   case-insensitive regex anchored at the start (ingress-nginx's behaviour).
//! - Canary Ingresses add no routes: each of their paths attaches to the main route with the
//!   same host and path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use regex::Regex;
use skiff_core::service_view::{ServiceKey, ServiceView};

use crate::annotations::{self, Policy};
use crate::metrics::IngressCounters;
use crate::routes::{Backend, Canary, HostRoutes, IngressName, PathMatcher, PathRoute, Route, RouteTable};

/// The legacy class annotation.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation that makes an IngressClass the cluster default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Which Ingresses are ours.
#[derive(Clone, Debug)]
pub struct ClassConfig {
    /// Our IngressClass name (`--class`).
    pub class: String,
    /// Our `spec.controller` value.
    pub controller: String,
}

/// Where the certificate for a TLS host comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// A `kubernetes.io/tls` Secret (namespace, name).
    Secret(String, String),
    /// The default certificate (a `tls` entry without `secretName`).
    Default,
}

/// A message for the Ingress it concerns (published as a warning Event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// The compiler's output.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RouteTable,
    /// TLS host (lowercase, may be `*.foo.com`) → certificate, oldest Ingress first.
    pub tls_hosts: Vec<(String, CertSource)>,
    /// (namespace, name) of every Ingress of our class.
    pub ours: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
}

/// Whether `ingress` belongs to our class.
pub fn is_ours(ingress: &Ingress, classes: &[IngressClass], config: &ClassConfig) -> bool {
    if let Some(legacy) = ingress.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION)) {
        return legacy == &config.class;
    }
    let ours =
        |class: &IngressClass| class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(&config.controller);
    match ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()) {
        Some(name) => classes.iter().any(|c| c.metadata.name.as_deref() == Some(name) && ours(c)),
        None => classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(config.class.as_str())
                && ours(c)
                && c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).map(String::as_str)
                    == Some("true")
        }),
    }
}

/// A route before canaries are attached and matchers are built.
struct Draft {
    path: String,
    path_type: PathType,
    route: Route,
    canary: Option<Canary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

#[derive(Default)]
struct HostDraft {
    paths: Vec<Draft>,
    regex: bool,
    fallback: Option<Arc<Route>>,
}

/// Compiles the route table. `counters` hands out the (long-lived) metrics of an Ingress.
pub fn compile<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    classes: &[IngressClass],
    services: &ServiceView,
    config: &ClassConfig,
    counters: &mut dyn FnMut(&str) -> Arc<IngressCounters>,
) -> Compiled {
    let mut ours: Vec<&Ingress> = ingresses.into_iter().filter(|i| is_ours(i, classes, config)).collect();
    ours.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, &a.metadata.namespace, &a.metadata.name).cmp(&(
            &b.metadata.creation_timestamp,
            &b.metadata.namespace,
            &b.metadata.name,
        ))
    });
    let mut out = Compiled::default();
    let mut backends = BackendCache { services, cache: HashMap::new() };
    let mut hosts: BTreeMap<String, HostDraft> = BTreeMap::new();
    let mut seen_paths: HashSet<(String, String, PathType)> = HashSet::new();
    let mut seen_tls: HashSet<String> = HashSet::new();
    let mut canaries = Vec::new();
    for ingress in &ours {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let name = ingress.metadata.name.clone().unwrap_or_default();
        out.ours.push((namespace.clone(), name.clone()));
        let (policy, problems) = annotations::parse(&ingress.metadata.annotations.clone().unwrap_or_default());
        let mut warn =
            |message: String| out.warnings.push(Warning { namespace: namespace.clone(), name: name.clone(), message });
        problems.into_iter().for_each(&mut warn);
        if policy.canary.is_some() {
            canaries.push((*ingress, Arc::new(policy)));
            continue;
        }
        let policy = Arc::new(policy);
        let ingress_name: IngressName = format!("{namespace}/{name}").into();
        let counters = counters(&ingress_name);
        let spec = ingress.spec.clone().unwrap_or_default();
        let tls_hosts: HashSet<String> =
            spec.tls.iter().flatten().flat_map(|t| t.hosts.iter().flatten()).map(|h| h.to_ascii_lowercase()).collect();
        for tls in spec.tls.iter().flatten() {
            let source = match tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
                Some(secret) => CertSource::Secret(namespace.clone(), secret.to_owned()),
                None => CertSource::Default,
            };
            for host in tls.hosts.iter().flatten() {
                let host = host.to_ascii_lowercase();
                if seen_tls.insert(host.clone()) {
                    out.tls_hosts.push((host, source.clone()));
                }
            }
        }
        let make_route = |backend: &IngressBackend,
                          host: &str,
                          path: &str,
                          backends: &mut BackendCache,
                          warn: &mut dyn FnMut(String)| {
            let backend = backends.resolve(&namespace, backend, warn);
            let rewrite = policy
                .rewrite_target
                .as_ref()
                .and_then(|target| Regex::new(&format!("(?i)^{path}")).ok().map(|re| (re, target.clone())));
            Route {
                ingress: ingress_name.clone(),
                counters: counters.clone(),
                backend,
                canary: None,
                policy: policy.clone(),
                protocol: policy.backend_protocol,
                tls: tls_hosts.contains(host),
                path: path.to_owned(),
                rewrite,
            }
        };
        let default_route =
            spec.default_backend.as_ref().map(|b| Arc::new(make_route(b, "", "/", &mut backends, &mut warn)));
        if out.table.default_backend.is_none() {
            out.table.default_backend.clone_from(&default_route);
        }
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref().unwrap_or_default().to_ascii_lowercase();
            let draft_host = hosts.entry(host.clone()).or_default();
            draft_host.regex |= policy.use_regex || policy.rewrite_target.is_some();
            if draft_host.fallback.is_none() && !host.is_empty() {
                draft_host.fallback.clone_from(&default_route);
            }
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let text = path.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".to_owned());
                let path_type = match path.path_type.as_str() {
                    "Exact" => PathType::Exact,
                    "Prefix" => PathType::Prefix,
                    _ => PathType::ImplementationSpecific,
                };
                if !seen_paths.insert((host.clone(), text.clone(), path_type)) {
                    warn(format!(
                        "host {host:?} path {text} ({path_type:?}) is already defined by an older Ingress; ignored"
                    ));
                    continue;
                }
                let route = make_route(&path.backend, &host, &text, &mut backends, &mut warn);
                hosts.entry(host.clone()).or_default().paths.push(Draft { path: text, path_type, route, canary: None });
            }
        }
    }
    attach_canaries(&canaries, &mut hosts, &mut backends, &mut out.warnings);
    for (host, draft) in hosts {
        let routes = build_host(draft, &mut out.warnings);
        if host.is_empty() {
            out.table.any_host = routes;
        } else if let Some(suffix) = host.strip_prefix("*.") {
            out.table.wildcard.insert(suffix.to_owned(), routes);
        } else {
            out.table.exact.insert(host, routes);
        }
    }
    out
}

/// Attaches each canary Ingress's paths to the main routes with the same host and path.
fn attach_canaries(
    canaries: &[(&Ingress, Arc<Policy>)],
    hosts: &mut BTreeMap<String, HostDraft>,
    backends: &mut BackendCache,
    warnings: &mut Vec<Warning>,
) {
    for (ingress, policy) in canaries {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let name = ingress.metadata.name.clone().unwrap_or_default();
        let mut warn =
            |message: String| warnings.push(Warning { namespace: namespace.clone(), name: name.clone(), message });
        let Some(rules) = policy.canary.clone() else { continue };
        for rule in ingress.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.as_deref().unwrap_or_default().to_ascii_lowercase();
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                let text = path.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".to_owned());
                let main = hosts
                    .get_mut(&host)
                    .and_then(|h| h.paths.iter_mut().find(|d| d.path == text && d.canary.is_none()));
                let Some(main) = main else {
                    warn(format!("canary host {host:?} path {text} has no main Ingress; ignored"));
                    continue;
                };
                let header_pattern = rules.header_pattern.as_deref().and_then(|p| match Regex::new(p) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        warn(format!("canary-by-header-pattern {p:?} ignored: {e}"));
                        None
                    }
                });
                let backend = backends.resolve(&namespace, &path.backend, &mut warn);
                main.canary = Some(Canary { backend, rules: rules.clone(), header_pattern });
            }
        }
    }
}

/// Orders a host's paths by precedence and builds their matchers.
fn build_host(draft: HostDraft, warnings: &mut Vec<Warning>) -> HostRoutes {
    let mut paths = draft.paths;
    paths.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path_type.cmp(&b.path_type)));
    let mut out = HostRoutes { paths: Vec::with_capacity(paths.len()), fallback: draft.fallback };
    for Draft { path, path_type, mut route, canary } in paths {
        let matcher = match path_type {
            PathType::Exact => PathMatcher::Exact(path.clone()),
            _ if draft.regex => match Regex::new(&format!("(?i)^{path}")) {
                Ok(re) => PathMatcher::Regex(re),
                Err(e) => {
                    let (namespace, name) = route.ingress.split_once('/').unwrap_or_default();
                    warnings.push(Warning {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        message: format!("path {path:?} is not a valid regular expression ({e}); ignored"),
                    });
                    continue;
                }
            },
            _ => PathMatcher::Prefix(path.trim_end_matches('/').to_owned()),
        };
        route.canary = canary;
        out.paths.push(PathRoute { matcher, route: Arc::new(route) });
    }
    out
}

/// Resolves Ingress backends to endpoint lists, sharing one [`Backend`] (and so one
/// round-robin position) per Service port.
struct BackendCache<'a> {
    services: &'a ServiceView,
    cache: HashMap<(String, String, String), Arc<Backend>>,
}

impl BackendCache<'_> {
    fn resolve(&mut self, namespace: &str, backend: &IngressBackend, warn: &mut dyn FnMut(String)) -> Arc<Backend> {
        let Some(service) = &backend.service else {
            warn("resource backends are not supported; requests get 503".to_owned());
            return Arc::new(Backend::new(format!("{namespace}/<resource>"), Vec::new()));
        };
        let port = service.port.as_ref();
        let port_text = match (port.and_then(|p| p.number), port.and_then(|p| p.name.as_deref())) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => String::new(),
        };
        let key = (namespace.to_owned(), service.name.clone(), port_text.clone());
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let label = format!("{namespace}/{}:{port_text}", service.name);
        let endpoints = match self.services.service(&ServiceKey::new(namespace, service.name.clone())) {
            None => Vec::new(),
            Some(entry) => {
                let port = entry.service.ports.iter().find(|p| match port.and_then(|p| p.number) {
                    Some(n) => i32::from(p.port) == n,
                    None => Some(p.name.as_str()) == port.and_then(|p| p.name.as_deref()),
                });
                match port {
                    Some(port) => entry.ready_backends(&port.name).map(|(ip, p)| SocketAddr::new(ip, p)).collect(),
                    None => {
                        warn(format!("Service {namespace}/{} has no port {port_text}", service.name));
                        Vec::new()
                    }
                }
            }
        };
        let backend = Arc::new(Backend::new(label, endpoints));
        self.cache.insert(key, backend.clone());
        backend
    }
}

#[cfg(test)]
mod tests;
