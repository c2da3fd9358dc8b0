//! Answers follow the watch: new Services resolve, deleted ones stop resolving, endpoint
//! changes show; big headless answers truncate over UDP and complete over TCP; metrics and
//! health endpoints.

mod common;
mod dns_support;

use std::time::Duration;

use common::TestServer;
use dns_support::{poll, DnsServer, Proto};

const WAIT: Duration = Duration::from_secs(20);

fn start() -> (TestServer, DnsServer) {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "dyn"]);
    let dns = DnsServer::start(&server.kubeconfig, server.data_dir(), &[]);
    dns.wait_synced();
    (server, dns)
}

#[test]
fn services_appear_and_disappear_with_the_watch() {
    let (server, dns) = start();
    let name = "late.dyn.svc.cluster.local";
    assert_eq!(dns.dig(Proto::Udp, name, "A", &[]).status, "NXDOMAIN");
    server.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: dyn}\n\
         spec: {clusterIP: 10.96.200.1, ports: [{name: http, port: 80}]}\n",
    );
    poll("the new Service to resolve", WAIT, || {
        let d = dns.dig(Proto::Udp, name, "A", &[]);
        (d.answers("A") == ["10.96.200.1"]).then_some(())
    });
    assert_eq!(dns.dig(Proto::Tcp, "1.200.96.10.in-addr.arpa", "PTR", &[]).answers("PTR"), vec![format!("{name}.")]);

    server.kubectl_ok(&["delete", "service", "late", "-n", "dyn"]);
    poll("the deleted Service to stop resolving", WAIT, || {
        (dns.dig(Proto::Udp, name, "A", &[]).status == "NXDOMAIN").then_some(())
    });
    assert_eq!(dns.dig(Proto::Udp, "1.200.96.10.in-addr.arpa", "PTR", &[]).answers("PTR"), Vec::<String>::new());
    // The namespace itself still exists: NODATA, not NXDOMAIN.
    assert!(dns.dig(Proto::Udp, "dyn.svc.cluster.local", "A", &[]).is_nodata());
}

#[test]
fn endpoint_changes_show_in_headless_answers() {
    let (server, dns) = start();
    let slice = |ready: bool| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-a\n  namespace: dyn\n  \
             labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
             endpoints:\n- addresses: [\"10.244.0.5\"]\n  conditions: {{ready: true}}\n\
             - addresses: [\"10.244.0.6\"]\n  conditions: {{ready: {ready}}}\n"
        )
    };
    server.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: dyn}\n\
         spec: {clusterIP: None, ports: [{name: http, port: 80, targetPort: 8080}]}\n",
    );
    server.apply(&slice(true));
    let name = "web.dyn.svc.cluster.local";
    poll("both endpoints", WAIT, || {
        (dns.dig(Proto::Udp, name, "A", &[]).answers("A") == ["10.244.0.5", "10.244.0.6"]).then_some(())
    });
    // SRV of a headless Service carries the endpoints' (target) port.
    let srv = dns.dig(Proto::Udp, &format!("_http._tcp.{name}"), "SRV", &[]);
    assert!(srv.answers("SRV").iter().all(|s| s.starts_with("0 50 8080 ")), "{}", srv.raw);

    // DNS round robin: the first address changes between answers.
    let firsts: std::collections::HashSet<String> =
        (0..6).map(|_| dns.dig(Proto::Udp, name, "A", &[]).answer[0].data.clone()).collect();
    assert_eq!(firsts.len(), 2, "answers rotate");

    server.apply(&slice(false));
    poll("the not-ready endpoint to leave the answer", WAIT, || {
        (dns.dig(Proto::Udp, name, "A", &[]).answers("A") == ["10.244.0.5"]).then_some(())
    });
    assert_eq!(dns.dig(Proto::Udp, "6.0.244.10.in-addr.arpa", "PTR", &[]).answers("PTR"), Vec::<String>::new());

    server.kubectl_ok(&["delete", "endpointslice", "web-a", "-n", "dyn"]);
    poll("a headless Service without endpoints to be NXDOMAIN", WAIT, || {
        (dns.dig(Proto::Udp, name, "A", &[]).status == "NXDOMAIN").then_some(())
    });
}

#[test]
fn big_headless_answers_truncate_then_complete_over_tcp() {
    let (server, dns) = start();
    let mut manifest = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: dyn}\nspec: {clusterIP: None, ports: [{name: http, port: 80}]}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-a\n  namespace: dyn\n  \
         labels: {kubernetes.io/service-name: big}\naddressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 0..200 {
        manifest.push_str(&format!(
            "- addresses: [\"10.244.{}.{}\"]\n  conditions: {{ready: true}}\n",
            i / 100,
            i % 100 + 1
        ));
    }
    server.apply(&manifest);
    let name = "big.dyn.svc.cluster.local";
    poll("the 200 endpoints over TCP", WAIT, || {
        (dns.dig(Proto::Tcp, name, "A", &[]).answer.len() == 200).then_some(())
    });

    // UDP without EDNS: 512 bytes, TC set, a partial answer.
    let udp = dns.dig(Proto::Udp, name, "A", &["+ignore", "+noedns"]);
    assert!(udp.has_flag("tc"), "{}", udp.raw);
    assert!(!udp.answer.is_empty() && udp.answer.len() < 200, "{}", udp.raw);
    // With EDNS the client's buffer size is honoured: more fits, still truncated.
    let edns = dns.dig(Proto::Udp, name, "A", &["+ignore", "+bufsize=1232"]);
    assert!(edns.has_flag("tc"), "{}", edns.raw);
    assert!(edns.answer.len() > udp.answer.len(), "{} vs {}", edns.answer.len(), udp.answer.len());
    // 200 A records (16 bytes each) fit in 4096 bytes.
    let big = dns.dig(Proto::Udp, name, "A", &["+ignore", "+bufsize=4096"]);
    assert!(!big.has_flag("tc") && big.answer.len() == 200, "{}", big.raw);
    // dig's own TCP fallback on TC gets everything.
    let fallback = dns.dig(Proto::Udp, name, "A", &["+noedns"]);
    assert!(fallback.raw.contains("retrying in TCP mode"), "{}", fallback.raw);
    assert_eq!(fallback.answer.len(), 200);
    // SRV with glue is far bigger than UDP allows: TCP gives all 200 with glue.
    let srv = dns.dig(Proto::Tcp, &format!("_http._tcp.{name}"), "SRV", &[]);
    assert_eq!(srv.answer.len(), 200, "{}", &srv.raw[..srv.raw.len().min(2000)]);
    assert_eq!(srv.additional.iter().filter(|r| r.rtype == "A").count(), 200);
}

#[test]
fn metrics_and_health() {
    let (_server, dns) = start();
    assert_eq!(dns.http_get("/healthz").0, 200);
    assert_eq!(dns.http_get("/readyz").0, 200);
    dns.dig(Proto::Udp, "kubernetes.default.svc.cluster.local", "A", &[]);
    dns.dig(Proto::Tcp, "nosuch.dyn.svc.cluster.local", "AAAA", &[]);
    let (code, body) = dns.http_get("/metrics");
    assert_eq!(code, 200);
    for want in [
        "skiff_dns_requests_total{qtype=\"A\",rcode=\"NOERROR\"}",
        "skiff_dns_requests_total{qtype=\"AAAA\",rcode=\"NXDOMAIN\"} 1",
        "skiff_dns_request_duration_seconds_bucket{le=\"+Inf\"}",
        "skiff_dns_programming_duration_seconds_count",
        "skiff_dns_watch_apply_duration_seconds_count",
        "skiff_dns_synced 1",
    ] {
        assert!(body.contains(want), "missing {want} in:\n{body}");
    }
}
