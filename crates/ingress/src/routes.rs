//! The compiled route table: what a request is matched against.
//!
//! A [`RouteTable`] is immutable once built (see [`crate::compile`]); the proxy reads the
//! current one through [`crate::snapshot::Snapshot`] and a route update swaps in a whole new
//! table, so a request always sees one consistent version. Lookup is Host first (exact name,
//! then a one-label wildcard, then the host-less rules), then path (the host's matchers in
//! precedence order, first match wins), then the host's default backend, then the global one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use regex::Regex;

use crate::annotations::{BackendProtocol, CanaryRules, Policy};
use crate::metrics::IngressCounters;

/// `namespace/name` of an Ingress.
pub type IngressName = Arc<str>;

/// A Service port's ready endpoints, chosen by round robin, by EWMA latency, or by affinity
/// cookie.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs.
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Per endpoint (same order): latency estimate and requests in flight, for EWMA.
    stats: Vec<EndpointStats>,
}

/// Load of one endpoint as `load-balance: ewma` sees it.
#[derive(Debug, Default)]
struct EndpointStats {
    /// Exponentially weighted response time, microseconds.
    ewma_micros: AtomicU64,
    in_flight: AtomicU64,
}

/// Weight of a new latency sample in the moving average (out of 8).
const EWMA_NEW_SAMPLE_EIGHTHS: u64 = 2;

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddr>) -> Backend {
        let stats = endpoints.iter().map(|_| EndpointStats::default()).collect();
        Backend { name, endpoints, next: AtomicUsize::new(0), stats }
    }

    /// Power of two choices over the EWMA cost (latency × (in-flight + 1)): two endpoints
    /// drawn at random, the cheaper one wins. Endpoints not measured yet cost nothing, so each
    /// is tried early.
    pub fn pick_ewma(&self) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n < 2 {
            return self.pick();
        }
        let a = rand::random_range(0..n);
        let b = (a + 1 + rand::random_range(0..n - 1)) % n;
        let cost = |i: usize| {
            let s = &self.stats[i];
            s.ewma_micros.load(Ordering::Relaxed).saturating_mul(s.in_flight.load(Ordering::Relaxed) + 1)
        };
        Some(self.endpoints[if cost(b) < cost(a) { b } else { a }])
    }

    /// Marks a request to `endpoint` as started (EWMA bookkeeping).
    pub fn start(&self, endpoint: SocketAddr) {
        if let Some(s) = self.stats_of(endpoint) {
            s.in_flight.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the response time of a request to `endpoint` that [`Backend::start`] counted.
    pub fn finish(&self, endpoint: SocketAddr, micros: u64) {
        if let Some(s) = self.stats_of(endpoint) {
            let _ = s.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
            let old = s.ewma_micros.load(Ordering::Relaxed);
            let new = if old == 0 {
                micros
            } else {
                let mixed = (u128::from(old) * u128::from(8 - EWMA_NEW_SAMPLE_EIGHTHS)
                    + u128::from(micros) * u128::from(EWMA_NEW_SAMPLE_EIGHTHS))
                    / 8;
                u64::try_from(mixed).unwrap_or(u64::MAX)
            };
            s.ewma_micros.store(new.max(1), Ordering::Relaxed);
        }
    }

    fn stats_of(&self, endpoint: SocketAddr) -> Option<&EndpointStats> {
        self.endpoints.iter().position(|e| *e == endpoint).map(|i| &self.stats[i])
    }

    /// The next endpoint in round-robin order, `None` when the Service has no ready endpoint.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[n % self.endpoints.len()])
    }

    /// The endpoint after `failed` (for retrying a failed connect elsewhere).
    pub fn after(&self, failed: SocketAddr, attempt: usize) -> Option<SocketAddr> {
        let at = self.endpoints.iter().position(|e| *e == failed)?;
        let next = self.endpoints[(at + attempt) % self.endpoints.len()];
        (next != failed).then_some(next)
    }
}

/// The canary Ingress attached to a route.
#[derive(Debug)]
pub struct Canary {
    pub backend: Arc<Backend>,
    pub rules: CanaryRules,
    pub header_pattern: Option<Regex>,
}

/// How a path matcher compares the request path.
#[derive(Debug)]
pub enum PathMatcher {
    /// Whole path, case-sensitive.
    Exact(String),
    /// Element-wise prefix; stored without a trailing `/` (so `/` is the empty string).
    Prefix(String),
    /// ingress-nginx's regex location: case-insensitive, anchored at the start only.
    Regex(Regex),
}

impl PathMatcher {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Prefix(p) => {
                p.is_empty()
                    || (path.starts_with(p.as_str()) && matches!(path.as_bytes().get(p.len()), None | Some(b'/')))
            }
            PathMatcher::Regex(re) => re.is_match(path),
        }
    }
}

/// Where a matched request goes and how it is handled.
#[derive(Debug)]
pub struct Route {
    pub ingress: IngressName,
    pub counters: Arc<IngressCounters>,
    pub backend: Arc<Backend>,
    pub canary: Option<Canary>,
    pub policy: Arc<Policy>,
    pub protocol: BackendProtocol,
    /// The Ingress lists this route's host under `tls` (ssl-redirect applies).
    pub tls: bool,
    /// The Ingress path (the default affinity cookie path).
    pub path: String,
    /// `rewrite-target`: the path regex and the target with `$n` references.
    pub rewrite: Option<(Regex, String)>,
}

impl Route {
    /// The upstream path for `path`: rewritten when the Ingress has a `rewrite-target`.
    pub fn upstream_path(&self, path: &str) -> Option<String> {
        let (re, target) = self.rewrite.as_ref()?;
        let caps = re.captures(path)?;
        let mut out = String::new();
        caps.expand(target, &mut out);
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        Some(out)
    }
}

/// One path of one host.
#[derive(Debug)]
pub struct PathRoute {
    pub matcher: PathMatcher,
    pub route: Arc<Route>,
}

/// The paths of one host, in precedence order.
#[derive(Debug, Default)]
pub struct HostRoutes {
    pub paths: Vec<PathRoute>,
    /// Default backend of the (oldest) Ingress that defines this host, for unmatched paths.
    pub fallback: Option<Arc<Route>>,
}

impl HostRoutes {
    fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.paths.iter().find(|p| p.matcher.matches(path)).map(|p| &p.route).or(self.fallback.as_ref())
    }
}

/// Every route of every Ingress of our class.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Lowercase exact host names.
    pub exact: HashMap<String, HostRoutes>,
    /// `*.foo.com` stored under `foo.com`.
    pub wildcard: HashMap<String, HostRoutes>,
    /// Rules without a host.
    pub any_host: HostRoutes,
    /// `spec.defaultBackend` of the oldest Ingress that has one: unmatched hosts go here.
    pub default_backend: Option<Arc<Route>>,
}

impl RouteTable {
    /// The route for a request, `None` for the built-in 404. `host` must already be
    /// normalised (see [`normalize_host`]).
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        if let Some(routes) = self.exact.get(host) {
            return routes.find(path);
        }
        if let Some((first, rest)) = host.split_once('.') {
            if !first.is_empty() {
                if let Some(routes) = self.wildcard.get(rest) {
                    return routes.find(path);
                }
            }
        }
        self.any_host.find(path).or(self.default_backend.as_ref())
    }

    /// Number of (host, path) routes, for logs.
    pub fn len(&self) -> usize {
        self.exact.values().chain(self.wildcard.values()).map(|h| h.paths.len()).sum::<usize>()
            + self.any_host.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.default_backend.is_none()
    }
}

/// Lowercases a Host header value and strips its port and a trailing dot
/// (`Foo.Bar.com:8080` → `foo.bar.com`, `[::1]:80` → `[::1]`). Borrows when the name is
/// already lowercase (the usual case), so the lookup allocates nothing.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    let name = without_port.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching_is_element_wise() {
        let m = PathMatcher::Prefix("/aaa/bbb".into());
        assert!(m.matches("/aaa/bbb"));
        assert!(m.matches("/aaa/bbb/"));
        assert!(m.matches("/aaa/bbb/ccc"));
        assert!(!m.matches("/aaa/bbbxyz"));
        assert!(!m.matches("/aaa"));
        assert!(PathMatcher::Prefix(String::new()).matches("/anything"));
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint() {
        let fast: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let slow: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let backend = Backend::new("x".into(), vec![fast, slow]);
        backend.start(fast);
        backend.finish(fast, 100);
        backend.start(slow);
        backend.finish(slow, 50_000);
        // With two endpoints both are always drawn, so the cheaper one always wins.
        assert!((0..20).all(|_| backend.pick_ewma() == Some(fast)));
        backend.start(fast);
        backend.finish(fast, 1_000_000);
        assert_eq!(backend.pick_ewma(), Some(slow), "a slow sample moves traffic away");
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Foo.Bar.com:8080"), "foo.bar.com");
        assert_eq!(normalize_host("foo.bar.com."), "foo.bar.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host(""), "");
    }

    #[test]
    fn round_robin_and_retry_order() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        let backend = Backend::new("x".into(), vec![a, b]);
        let picks: Vec<_> = (0..4).filter_map(|_| backend.pick()).collect();
        assert_eq!(picks, vec![a, b, a, b]);
        assert_eq!(backend.after(a, 1), Some(b));
        assert_eq!(Backend::new("y".into(), vec![a]).after(a, 1), None);
        assert_eq!(Backend::new("z".into(), vec![]).pick(), None);
    }
}
