//! ingress-nginx annotations, read into a [`Policy`] per Ingress.
//!
//! Keys are accepted under `nginx.ingress.kubernetes.io/` (so existing manifests work
//! unchanged) and under skiff's own prefix `ingress.skiff.io/`; the skiff spelling wins when
//! both are present. Values are strings, as in ingress-nginx. A malformed value falls back to
//! the default and is reported; an annotation under either prefix that skiff does not
//! implement (including every `*-snippet`) is reported too, and the reports become warning
//! Events on the Ingress. Nothing here fails: an Ingress always compiles.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The ingress-nginx annotation prefix.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
/// skiff's own prefix for the same annotations.
pub const SKIFF_PREFIX: &str = "ingress.skiff.io/";

/// Annotation names (after the prefix) that skiff implements.
const SUPPORTED: &[&str] = &[
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-secure",
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "force-ssl-redirect",
    "backend-protocol",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "whitelist-source-range",
    "allowlist-source-range",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "load-balance",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "cors-expose-headers",
];

/// ingress-nginx's default `client_max_body_size`.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;
const DEFAULT_CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_CORS_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,\
Content-Type,Range,Authorization";

/// How the proxy talks to the Service's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BackendProtocol {
    #[default]
    Http,
    /// TLS to the endpoint (certificate not verified, as ingress-nginx's `proxy-ssl-verify off`).
    Https,
    /// HTTP/2 cleartext (h2c), as gRPC needs.
    Grpc,
    /// HTTP/2 over TLS.
    Grpcs,
}

/// `affinity: cookie` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    pub cookie_name: String,
    /// Cookie `Path`; `None` means the matched Ingress path.
    pub path: Option<String>,
    pub domain: Option<String>,
    pub max_age: Option<u64>,
    /// Legacy `Expires`, seconds from now.
    pub expires: Option<u64>,
    pub samesite: Option<String>,
    pub secure: bool,
    /// `persistent`: never move a session; `balanced` (default) behaves the same here,
    /// because skiff's cookie names an endpoint and only moves when that endpoint is gone.
    pub persistent: bool,
}

/// `enable-cors` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins; `*` allows any. Entries may start with `*.` for any subdomain.
    pub origins: Vec<String>,
    pub methods: String,
    pub headers: String,
    pub credentials: bool,
    pub max_age: u64,
    pub expose_headers: Option<String>,
}

/// Canary selection rules of a `canary: "true"` Ingress.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CanaryRules {
    pub by_header: Option<String>,
    pub header_value: Option<String>,
    pub header_pattern: Option<String>,
    pub by_cookie: Option<String>,
    pub weight: u32,
    pub weight_total: u32,
}

/// An IP range of `whitelist-source-range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `::/n` or a bare address (a host route).
    pub fn parse(text: &str) -> Option<Cidr> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the range (an IPv4-mapped IPv6 client counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net) as u128, 32, self.prefix) == masked(u32::from(ip) as u128, 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(value: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let shift = u32::from(bits - prefix);
    (value >> shift) << shift
}

/// Everything the annotations of one Ingress ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub affinity: Option<Affinity>,
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    pub backend_protocol: BackendProtocol,
    /// `None`: unlimited (`proxy-body-size: 0`).
    pub body_limit: Option<u64>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// Client ranges allowed; `None` allows everyone.
    pub allow_sources: Option<Vec<Cidr>>,
    /// (status, location) of `permanent-redirect` / `temporal-redirect`.
    pub redirect: Option<(u16, String)>,
    /// `Some` on a canary Ingress.
    pub canary: Option<CanaryRules>,
    pub cors: Option<Cors>,
    /// `load-balance: ewma`: peak-EWMA latency with power-of-two choices instead of round robin.
    pub ewma: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            affinity: None,
            rewrite_target: None,
            use_regex: false,
            ssl_redirect: true,
            force_ssl_redirect: false,
            backend_protocol: BackendProtocol::Http,
            body_limit: Some(DEFAULT_BODY_LIMIT),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            allow_sources: None,
            redirect: None,
            canary: None,
            cors: None,
            ewma: false,
        }
    }
}

/// Reads the annotations of one Ingress. Returns the policy and one message per annotation
/// that was ignored (unknown key or bad value).
pub fn parse(annotations: &BTreeMap<String, String>) -> (Policy, Vec<String>) {
    let mut reader = Reader { values: BTreeMap::new(), problems: Vec::new() };
    for (key, value) in annotations {
        let (name, skiff) = if let Some(n) = key.strip_prefix(SKIFF_PREFIX) {
            (n, true)
        } else if let Some(n) = key.strip_prefix(NGINX_PREFIX) {
            (n, false)
        } else {
            continue;
        };
        if !SUPPORTED.contains(&name) {
            let why = if name.ends_with("-snippet") { "snippets are not supported" } else { "not supported by skiff" };
            reader.problems.push(format!("annotation {key} ignored: {why}"));
            continue;
        }
        if skiff || !reader.values.contains_key(name) {
            reader.values.insert(name, value.trim());
        }
    }
    let policy = reader.policy();
    (policy, reader.problems)
}

struct Reader<'a> {
    values: BTreeMap<&'a str, &'a str>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.values.get(name).copied()
    }

    fn bad(&mut self, name: &str, value: &str, expected: &str) {
        self.problems.push(format!("annotation {name}={value:?} ignored: expected {expected}"));
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.get(name) {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                self.bad(name, v, "\"true\" or \"false\"");
                default
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(name, v, "a whole number");
                None
            }
        }
    }

    fn seconds(&mut self, name: &str, default: u64) -> Duration {
        Duration::from_secs(self.number(name).filter(|n| *n > 0).unwrap_or(default))
    }

    fn policy(&mut self) -> Policy {
        let defaults = Policy::default();
        let affinity = match self.get("affinity") {
            Some("cookie") => Some(self.affinity()),
            Some(other) => {
                self.bad("affinity", other, "\"cookie\"");
                None
            }
            None => None,
        };
        let backend_protocol = match self.get("backend-protocol").map(str::to_ascii_uppercase).as_deref() {
            None | Some("HTTP") => BackendProtocol::Http,
            Some("HTTPS") => BackendProtocol::Https,
            Some("GRPC") => BackendProtocol::Grpc,
            Some("GRPCS") => BackendProtocol::Grpcs,
            Some(_) => {
                let v = self.get("backend-protocol").unwrap_or_default();
                self.bad("backend-protocol", v, "HTTP, HTTPS, GRPC or GRPCS");
                BackendProtocol::Http
            }
        };
        let body_limit = match self.get("proxy-body-size") {
            None => defaults.body_limit,
            Some(v) => match parse_size(v) {
                Some(0) => None,
                Some(n) => Some(n),
                None => {
                    self.bad("proxy-body-size", v, "a size like 8m, 512k or 0");
                    defaults.body_limit
                }
            },
        };
        let allow_sources = self.get("whitelist-source-range").or(self.get("allowlist-source-range")).map(|v| {
            let mut ranges = Vec::new();
            for part in v.split(',').filter(|p| !p.trim().is_empty()) {
                match Cidr::parse(part) {
                    Some(c) => ranges.push(c),
                    None => self.bad("whitelist-source-range", part, "comma-separated CIDRs"),
                }
            }
            ranges
        });
        let redirect = if let Some(to) = self.get("permanent-redirect") {
            let code = self.number("permanent-redirect-code").and_then(|c| u16::try_from(c).ok());
            let code = code.filter(|c| (300..=308).contains(c)).unwrap_or(301);
            Some((code, to.to_owned()))
        } else {
            self.get("temporal-redirect").map(|to| (302, to.to_owned()))
        };
        let ewma = match self.get("load-balance") {
            None | Some("round_robin") => false,
            Some("ewma") => true,
            Some(v) => {
                self.bad("load-balance", v, "round_robin or ewma");
                false
            }
        };
        let canary = self.flag("canary", false).then(|| self.canary());
        let cors = self.flag("enable-cors", false).then(|| self.cors());
        Policy {
            affinity,
            rewrite_target: self.get("rewrite-target").map(str::to_owned),
            use_regex: self.flag("use-regex", false),
            ssl_redirect: self.flag("ssl-redirect", true),
            force_ssl_redirect: self.flag("force-ssl-redirect", false),
            backend_protocol,
            body_limit,
            connect_timeout: self.seconds("proxy-connect-timeout", 5),
            read_timeout: self.seconds("proxy-read-timeout", 60),
            send_timeout: self.seconds("proxy-send-timeout", 60),
            allow_sources,
            redirect,
            canary,
            cors,
            ewma,
        }
    }

    fn affinity(&mut self) -> Affinity {
        let samesite = self.get("session-cookie-samesite").and_then(|v| match v.to_ascii_lowercase().as_str() {
            "none" => Some("None".to_owned()),
            "lax" => Some("Lax".to_owned()),
            "strict" => Some("Strict".to_owned()),
            _ => {
                self.bad("session-cookie-samesite", v, "None, Lax or Strict");
                None
            }
        });
        let persistent = match self.get("affinity-mode") {
            None | Some("balanced") => false,
            Some("persistent") => true,
            Some(v) => {
                self.bad("affinity-mode", v, "balanced or persistent");
                false
            }
        };
        Affinity {
            cookie_name: self
                .get("session-cookie-name")
                .filter(|n| !n.is_empty() && n.bytes().all(is_cookie_name_byte))
                .unwrap_or("INGRESSCOOKIE")
                .to_owned(),
            path: self.get("session-cookie-path").map(str::to_owned),
            domain: self.get("session-cookie-domain").map(str::to_owned),
            max_age: self.number("session-cookie-max-age"),
            expires: self.number("session-cookie-expires"),
            samesite,
            secure: self.flag("session-cookie-secure", false),
            persistent,
        }
    }

    fn canary(&mut self) -> CanaryRules {
        let weight_total = self.number("canary-weight-total").filter(|t| *t > 0).unwrap_or(100);
        CanaryRules {
            by_header: self.get("canary-by-header").map(str::to_owned),
            header_value: self.get("canary-by-header-value").map(str::to_owned),
            header_pattern: self.get("canary-by-header-pattern").map(str::to_owned),
            by_cookie: self.get("canary-by-cookie").map(str::to_owned),
            weight: u32::try_from(self.number("canary-weight").unwrap_or(0).min(weight_total)).unwrap_or(0),
            weight_total: u32::try_from(weight_total).unwrap_or(100),
        }
    }

    fn cors(&mut self) -> Cors {
        Cors {
            origins: self
                .get("cors-allow-origin")
                .unwrap_or("*")
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            methods: self.get("cors-allow-methods").unwrap_or(DEFAULT_CORS_METHODS).to_owned(),
            headers: self.get("cors-allow-headers").unwrap_or(DEFAULT_CORS_HEADERS).to_owned(),
            credentials: self.flag("cors-allow-credentials", true),
            max_age: self.number("cors-max-age").unwrap_or(1_728_000),
            expose_headers: self.get("cors-expose-headers").map(str::to_owned),
        }
    }
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses an nginx size: a number with an optional `k`/`m`/`g` suffix (either case).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        'b' => 1,
        'k' => 1024,
        'm' => 1024 * 1024,
        'g' => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_ingress_nginx() {
        let (p, problems) = parse(&BTreeMap::new());
        assert_eq!(p, Policy::default());
        assert!(problems.is_empty());
        assert_eq!(p.body_limit, Some(1024 * 1024));
        assert!(p.ssl_redirect);
    }

    #[test]
    fn both_prefixes_are_read_and_skiff_wins() {
        let (p, _) = parse(&annotations(&[
            ("nginx.ingress.kubernetes.io/proxy-body-size", "8m"),
            ("ingress.skiff.io/proxy-body-size", "2k"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
        ]));
        assert_eq!(p.body_limit, Some(2048));
        assert!(!p.ssl_redirect);
    }

    #[test]
    fn unsupported_and_malformed_are_reported_not_fatal() {
        let (p, problems) = parse(&annotations(&[
            ("nginx.ingress.kubernetes.io/configuration-snippet", "more_set_headers x"),
            ("nginx.ingress.kubernetes.io/auth-url", "http://x"),
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon"),
            ("other.io/anything", "x"),
        ]));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("auth-url") || problems[1].contains("auth-url"));
        assert!(problems.iter().any(|p| p.contains("snippets are not supported")));
        assert_eq!(p.read_timeout, Duration::from_secs(60));
    }

    #[test]
    fn affinity_cookie_settings() {
        let (p, _) = parse(&annotations(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
            ("nginx.ingress.kubernetes.io/session-cookie-max-age", "172800"),
            ("nginx.ingress.kubernetes.io/session-cookie-samesite", "lax"),
        ]));
        let a = p.affinity.expect("affinity");
        assert_eq!(a.cookie_name, "route");
        assert_eq!(a.max_age, Some(172_800));
        assert_eq!(a.samesite.as_deref(), Some("Lax"));
    }

    #[test]
    fn canary_weight_is_capped_by_total() {
        let (p, _) = parse(&annotations(&[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "500"),
        ]));
        let c = p.canary.expect("canary");
        assert_eq!((c.weight, c.weight_total), (100, 100));
    }

    #[test]
    fn redirects_and_sizes() {
        let (p, _) = parse(&annotations(&[
            ("nginx.ingress.kubernetes.io/permanent-redirect", "https://example.com/x"),
            ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
        ]));
        assert_eq!(p.redirect, Some((308, "https://example.com/x".to_owned())));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("10K"), Some(10 * 1024));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("11.1.2.3".parse().expect("ip")));
        assert!(c.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0").expect("cidr").contains("1.2.3.4".parse().expect("ip")));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("127.0.0.1").expect("cidr").contains("127.0.0.1".parse().expect("ip")));
    }
}
