//! TLS at the ingress: certificates by SNI from Secrets (verified with curl --cacert), the
//! default certificate, a live certificate swap, HTTP/2 by ALPN, TLS 1.2 and 1.3, and the
//! HTTPS redirects.

mod common;
mod ingress_support;

use std::process::Command;
use std::time::Duration;

use common::TestServer;
use ingress_support::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// curl over HTTPS to `sni` (resolved to the ingress), verifying with `ca`.
fn https(ing: &IngressProcess, sni: &str, ca: &std::path::Path, extra: &[&str]) -> (u16, String) {
    let port = ing.https.port();
    let resolve = format!("{sni}:{port}:127.0.0.1");
    let url = format!("https://{sni}:{port}/");
    let ca = ca.to_string_lossy().into_owned();
    let mut args = vec!["-s", "--max-time", "10", "--resolve", &resolve, "--cacert", &ca];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// The subject of the certificate served for `sni` (openssl s_client).
fn served_subject(ing: &IngressProcess, sni: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &ing.https.to_string(), "-servername", sni])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.starts_with("subject=")).unwrap_or_default().to_owned()
}

#[test]
fn certificates_by_sni_swap_live_and_redirect() {
    let server = TestServer::start();
    let a = Backend::start("svc-a", 1);
    let b = Backend::start("svc-b", 1);
    let cert_a = make_cert(server.dir.path(), "a", &["a.example"]);
    let cert_b = make_cert(server.dir.path(), "b", &["b.example", "*.wild.example"]);
    let mut items = vec![ingress_class(false), tls_secret("a-tls", &cert_a), tls_secret("b-tls", &cert_b)];
    items.extend(a.manifests("default"));
    items.extend(b.manifests("default"));
    items.push(ingress(
        "tls",
        json!({}),
        json!({"tls": [{"hosts": ["a.example"], "secretName": "a-tls"},
                       {"hosts": ["b.example", "*.wild.example"], "secretName": "b-tls"},
                       {"hosts": ["nosecret.example"]}],
               "rules": [rule(Some("a.example"), &[("/", "Prefix", "svc-a")]),
                         rule(Some("b.example"), &[("/", "Prefix", "svc-b")]),
                         rule(Some("*.wild.example"), &[("/", "Prefix", "svc-b")]),
                         rule(Some("nosecret.example"), &[("/", "Prefix", "svc-a")])]}),
    ));
    items.push(ingress(
        "no-redirect",
        json!({"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
        json!({"tls": [{"hosts": ["plain-ok.example"], "secretName": "a-tls"}],
               "rules": [rule(Some("plain-ok.example"), &[("/", "Prefix", "svc-a")])]}),
    ));
    items.push(ingress(
        "forced",
        json!({"ingress.skiff.io/force-ssl-redirect": "true"}),
        json!({"rules": [rule(Some("forced.example"), &[("/", "Prefix", "svc-a")])]}),
    ));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &[]);
    eventually("routes", WAIT, || (ing.who("plain-ok.example", "/") == "svc-a").then_some(()));
    eventually("certificate for a.example", WAIT, || {
        let (code, body) = https(&ing, "a.example", &cert_a.ca, &[]);
        (backend_name(code, &body) == "svc-a").then_some(())
    });

    // Per-SNI certificates verify against their own CA only.
    let (code, body) = https(&ing, "b.example", &cert_b.ca, &[]);
    assert_eq!(backend_name(code, &body), "svc-b");
    assert_eq!(https(&ing, "b.example", &cert_a.ca, &[]).0, 0, "b.example must not verify with a's CA");
    let (code, body) = https(&ing, "x.wild.example", &cert_b.ca, &[]);
    assert_eq!(backend_name(code, &body), "svc-b", "wildcard TLS host");
    // SNI a.example with Host b.example: a's certificate, routed by Host.
    let (code, body) = https(&ing, "a.example", &cert_a.ca, &["-H", "Host: b.example"]);
    assert_eq!(backend_name(code, &body), "svc-b");
    // Unknown SNI and a tls entry without secretName get the generated default certificate.
    for sni in ["unknown.example", "nosecret.example"] {
        let subject = served_subject(&ing, sni);
        assert!(subject.contains("Kubernetes Ingress Controller Fake Certificate"), "{sni}: {subject}");
    }
    // TLS 1.2 and 1.3 both work; HTTP/2 is negotiated by ALPN.
    for version in [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3", "--tls-max", "1.3"]] {
        let (code, _) = https(&ing, "a.example", &cert_a.ca, &version);
        assert_eq!(code, 200, "{version:?}");
    }
    let port = ing.https.port();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2", "-w", "%{http_version} %{http_code}", "--resolve"])
        .arg(format!("a.example:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(&cert_a.ca)
        .arg(format!("https://a.example:{port}/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");

    // HTTPS redirects: 308 for TLS hosts, none with ssl-redirect off, forced without TLS.
    let (code, _) = ing.get("a.example", "/x?y=1", &[]);
    assert_eq!(code, 308);
    let (_, headers) = ing.get("a.example", "/x?y=1", &["-I"]);
    assert!(headers.contains(&format!("location: https://a.example:{port}/x?y=1")), "{headers}");
    assert_eq!(ing.who("plain-ok.example", "/"), "svc-a");
    assert_eq!(ing.get("forced.example", "/", &[]).0, 308);

    // Live swap: the Secret gets a certificate from another CA; new handshakes use it.
    let cert_a2 = make_cert(server.dir.path(), "a2", &["a.example"]);
    apply_all(&server, vec![tls_secret("a-tls", &cert_a2)]);
    eventually("swapped certificate", WAIT, || (https(&ing, "a.example", &cert_a2.ca, &[]).0 == 200).then_some(()));
    assert_eq!(https(&ing, "a.example", &cert_a.ca, &[]).0, 0, "old certificate still served");
}
