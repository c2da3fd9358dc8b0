//! ingress-nginx annotations through `skiff ingress`, checked with curl: cookie affinity,
//! rewrite-target, redirects, body size, source allow-list, canary, CORS, timeouts, and a
//! warning Event for an unsupported annotation.

mod common;
mod ingress_support;

use std::collections::HashSet;
use std::time::Duration;

use common::TestServer;
use ingress_support::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn ann(pairs: &[(&str, &str)]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> =
        pairs.iter().map(|(k, v)| (format!("{NGINX}{k}"), json!(v))).collect();
    serde_json::Value::Object(map)
}

fn simple(name: &str, annotations: serde_json::Value, host: &str, path: &str, service: &str) -> serde_json::Value {
    ingress(name, annotations, json!({"rules": [rule(Some(host), &[(path, "Prefix", service)])]}))
}

#[test]
fn annotations_end_to_end() {
    let server = TestServer::start();
    let sticky = Backend::start("sticky", 3);
    let main = Backend::start("main", 1);
    let canary = Backend::start("canary", 1);
    let upstream_cert = make_cert(server.dir.path(), "upstream", &["upstream.example"]);
    let tls_upstream = TlsUpstream::start(&upstream_cert);
    let mut items = vec![ingress_class(false)];
    items.extend(service_manifests("tls-upstream", "default", &[tls_upstream.addr.ip()], tls_upstream.addr.port()));
    items.push(simple(
        "https-backend",
        ann(&[("backend-protocol", "HTTPS")]),
        "https-backend.example",
        "/",
        "tls-upstream",
    ));
    for b in [&sticky, &main, &canary] {
        items.extend(b.manifests("default"));
    }
    items.push(simple(
        "affinity",
        ann(&[("affinity", "cookie"), ("session-cookie-max-age", "3600"), ("session-cookie-samesite", "Lax")]),
        "sticky.example",
        "/",
        "sticky",
    ));
    items.push(simple("spread", json!({}), "spread.example", "/", "sticky"));
    items.push(ingress(
        "rewrite",
        ann(&[("rewrite-target", "/$2")]),
        json!({"rules": [rule(Some("rewrite.example"), &[("/something(/|$)(.*)", "ImplementationSpecific", "main")])]}),
    ));
    items.push(simple(
        "perm",
        ann(&[("permanent-redirect", "https://elsewhere.example/new")]),
        "perm.example",
        "/",
        "main",
    ));
    items.push(simple(
        "temp",
        ann(&[("temporal-redirect", "https://elsewhere.example/tmp")]),
        "temp.example",
        "/",
        "main",
    ));
    items.push(simple("small", ann(&[("proxy-body-size", "1k")]), "small.example", "/", "main"));
    items.push(simple(
        "deny",
        ann(&[("whitelist-source-range", "10.0.0.0/8, 192.168.0.0/16")]),
        "deny.example",
        "/",
        "main",
    ));
    items.push(simple("allow", ann(&[("whitelist-source-range", "127.0.0.0/8")]), "allow.example", "/", "main"));
    items.push(simple("cors", ann(&[("enable-cors", "true")]), "cors.example", "/", "main"));
    items.push(simple("slow", ann(&[("proxy-read-timeout", "1")]), "slow.example", "/", "main"));
    items.push(simple(
        "odd",
        ann(&[("auth-url", "http://auth.example/"), ("server-snippet", "return 200;")]),
        "odd.example",
        "/",
        "main",
    ));
    items.push(simple("canary-main", json!({}), "canary.example", "/", "main"));
    items.push(simple(
        "canary-alt",
        ann(&[("canary", "true"), ("canary-by-header", "x-canary"), ("canary-by-cookie", "use-canary")]),
        "canary.example",
        "/",
        "canary",
    ));
    items.push(simple("weighted-main", json!({}), "weighted.example", "/", "main"));
    items.push(simple(
        "weighted-alt",
        ann(&[("canary", "true"), ("canary-weight", "100")]),
        "weighted.example",
        "/",
        "canary",
    ));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &[]);
    eventually("routes", WAIT, || (ing.who("weighted.example", "/") == "canary").then_some(()));

    // Affinity: the first answer sets the cookie; 15 requests with it stay on one endpoint.
    let jar = server.dir.path().join("cookies.txt");
    let jar = jar.to_string_lossy().into_owned();
    let (code, headers) = ing.get("sticky.example", "/", &["-i", "-c", &jar]);
    assert_eq!(code, 200);
    let set_cookie = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("Set-Cookie");
    for part in ["INGRESSCOOKIE=", "Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let first = backend_ip(headers.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("backend ip");
    for _ in 0..15 {
        let (code, body) = ing.get("sticky.example", "/", &["-b", &jar]);
        assert_eq!(code, 200);
        assert_eq!(backend_ip(&body), Some(first), "affinity cookie not honoured");
    }
    let spread: HashSet<_> = (0..15).filter_map(|_| backend_ip(&ing.get("spread.example", "/", &[]).1)).collect();
    assert_eq!(spread.len(), 3, "without affinity requests spread over all endpoints: {spread:?}");

    // rewrite-target with capture groups.
    for (path, want) in
        [("/something", "/"), ("/something/", "/"), ("/something/new", "/new"), ("/SOMETHING/x?q=1", "/x?q=1")]
    {
        let (code, body) = ing.get("rewrite.example", path, &[]);
        assert_eq!(code, 200, "{path}");
        assert!(body.contains(&format!("request GET {want} HTTP/1.1")), "{path} → {body}");
    }

    // Redirect annotations.
    let (code, headers) = ing.get("perm.example", "/", &["-i"]);
    assert_eq!(code, 301);
    assert!(headers.contains("location: https://elsewhere.example/new"), "{headers}");
    assert_eq!(ing.get("temp.example", "/", &[]).0, 302);

    // proxy-body-size: announced and chunked bodies over the limit get 413.
    let big = "x".repeat(2048);
    assert_eq!(ing.get("small.example", "/", &["--data-binary", &big]).0, 413);
    assert_eq!(ing.get("small.example", "/", &["--data-binary", &big, "-H", "Transfer-Encoding: chunked"]).0, 413);
    assert_eq!(ing.get("small.example", "/", &["--data-binary", "small"]).0, 200);

    // whitelist-source-range.
    assert_eq!(ing.get("deny.example", "/", &[]).0, 403);
    assert_eq!(ing.who("allow.example", "/"), "main");

    // Canary: header, then cookie, then weight.
    assert_eq!(ing.who("canary.example", "/"), "main");
    assert_eq!(backend_name_of(&ing, "canary.example", &["-H", "x-canary: always"]), "canary");
    assert_eq!(backend_name_of(&ing, "canary.example", &["-H", "x-canary: never", "-b", "use-canary=always"]), "main");
    assert_eq!(backend_name_of(&ing, "canary.example", &["-b", "use-canary=always"]), "canary");
    assert_eq!(ing.who("weighted.example", "/"), "canary");

    // CORS: preflight answered here, simple requests get the allow-origin header.
    let (code, headers) = ing.get("cors.example", "/", &["-i", "-X", "OPTIONS", "-H", "Origin: https://app.example"]);
    assert_eq!(code, 204, "{headers}");
    assert!(headers.contains("access-control-allow-origin: *"), "{headers}");
    assert!(headers.contains("access-control-allow-methods: GET, PUT, POST, DELETE, PATCH, OPTIONS"), "{headers}");
    let (_, headers) = ing.get("cors.example", "/", &["-i", "-H", "Origin: https://app.example"]);
    assert!(headers.contains("access-control-allow-origin: *"), "{headers}");

    // proxy-read-timeout: an upstream slower than the timeout gets 504.
    assert_eq!(ing.get("slow.example", "/sleep/3000", &[]).0, 504);
    assert_eq!(ing.who("slow.example", "/sleep/10"), "main");

    // backend-protocol HTTPS: TLS to the endpoint (openssl s_server's status page).
    let (code, body) = ing.get("https-backend.example", "/", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("s_server"), "{body}");

    // Unsupported annotations: served anyway, with a warning Event.
    assert_eq!(ing.who("odd.example", "/"), "main");
    eventually("warning Event", WAIT, || {
        let events = server.kubectl_ok(&["get", "events", "-o", "json"]);
        (events.contains("auth-url") && events.contains("snippets are not supported")).then_some(())
    });
}

fn backend_name_of(ing: &IngressProcess, host: &str, extra: &[&str]) -> String {
    let (code, body) = ing.get(host, "/", extra);
    backend_name(code, &body)
}
