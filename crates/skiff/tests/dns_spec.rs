//! The Kubernetes DNS spec checklist (shared/reference/dns.md §1) with the real `dig`, over
//! UDP and over TCP, against `skiff dns` serving a real `skiff server` that holds
//! hand-written Services and EndpointSlices (no controllers).

mod common;
mod dns_support;

use common::TestServer;
use dns_support::{DnsServer, Proto};

/// The checklist fixture. ClusterIPs are moved into skiff's service CIDR (10.96.0.0/16);
/// `svc6` is replaced by an IPv6 headless Service (the API server is IPv4-only by default).
const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: testns}
---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: testns}
spec:
  clusterIP: 10.96.100.1
  ports: [{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-unnamed, namespace: testns}
spec:
  clusterIP: 10.96.100.3
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: svcempty, namespace: testns}
spec:
  clusterIP: 10.96.100.2
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: hdls1, namespace: testns}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hdls1-a
  namespace: testns
  labels: {kubernetes.io/service-name: hdls1}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: ["172.0.0.2"]
  conditions: {ready: true}
- addresses: ["172.0.0.3"]
  conditions: {ready: true}
- addresses: ["172.0.0.4"]
  hostname: my-pet
  conditions: {ready: true}
- addresses: ["172.0.0.9"]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: hdls-none, namespace: testns}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hdls-none-a
  namespace: testns
  labels: {kubernetes.io/service-name: hdls-none}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: ["172.0.0.8"]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: hdls-pnr, namespace: testns}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hdls-pnr-a
  namespace: testns
  labels: {kubernetes.io/service-name: hdls-pnr}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: ["172.0.0.7"]
  conditions: {ready: true, serving: false}
---
apiVersion: v1
kind: Service
metadata: {name: hdls6, namespace: testns}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hdls6-a
  namespace: testns
  labels: {kubernetes.io/service-name: hdls6}
addressType: IPv6
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: ["1234:abcd::1"]
  conditions: {ready: true}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: testns}
spec:
  type: ExternalName
  externalName: www.example.com
"#;

const Z: &str = "testns.svc.cluster.local";

fn fqdn(name: &str) -> String {
    format!("{name}.{Z}")
}

#[test]
fn checklist_over_udp_and_tcp() {
    let server = TestServer::start();
    server.apply(FIXTURE);
    let dns = DnsServer::start(&server.kubeconfig, server.data_dir(), &[]);
    dns.wait_synced();
    // Slices may be applied after their Services: wait until the last one is visible.
    dns_support::poll("the fixture to be served", std::time::Duration::from_secs(20), || {
        (dns.dig(Proto::Udp, &fqdn("hdls6"), "AAAA", &[]).status == "NOERROR").then_some(())
    });
    for proto in [Proto::Udp, Proto::Tcp] {
        check_rows(&dns, proto);
    }
}

fn check_rows(dns: &DnsServer, proto: Proto) {
    let ask = |name: &str, qtype: &str| dns.dig(proto, name, qtype, &[]);
    let ctx = |row: &str, d: &dns_support::Dig| format!("{proto:?} row {row}:\n{}", d.raw);

    // 1: dns-version TXT.
    let d = ask("dns-version.cluster.local", "TXT");
    assert_eq!(d.answers("TXT"), vec!["\"1.1.0\""], "{}", ctx("1", &d));
    assert_eq!(d.answer[0].ttl, 28_800, "{}", ctx("1", &d));

    // 2: ClusterIP A, authoritative.
    let d = ask(&fqdn("svc1"), "A");
    assert_eq!(d.status, "NOERROR", "{}", ctx("2", &d));
    assert!(d.has_flag("aa"), "{}", ctx("2", &d));
    assert_eq!(d.answers("A"), vec!["10.96.100.1"], "{}", ctx("2", &d));
    assert_eq!(d.answer[0].ttl, 30, "{}", ctx("2", &d));

    // 3: the other address family is NODATA with the SOA.
    let d = ask(&fqdn("svc1"), "AAAA");
    assert!(d.is_nodata(), "{}", ctx("3", &d));
    assert!(d.authority[0].data.starts_with("ns.dns.cluster.local. hostmaster.cluster.local."), "{}", ctx("3", &d));

    // 4: IPv6 addresses give AAAA (here from an IPv6 EndpointSlice); A is NODATA.
    let d = ask(&fqdn("hdls6"), "AAAA");
    assert_eq!(d.answers("AAAA"), vec!["1234:abcd::1"], "{}", ctx("4", &d));
    assert!(ask(&fqdn("hdls6"), "A").is_nodata(), "row 4 A");

    // 5: SRV for a named port, with the address as glue.
    let d = ask(&format!("_http._tcp.{}", fqdn("svc1")), "SRV");
    assert_eq!(d.answers("SRV"), vec![format!("0 100 80 {}.", fqdn("svc1"))], "{}", ctx("5", &d));
    assert!(d.additional.iter().any(|r| r.rtype == "A" && r.data == "10.96.100.1"), "{}", ctx("5", &d));
    let d = ask(&format!("_dns._udp.{}", fqdn("svc1")), "SRV");
    assert_eq!(d.answers("SRV"), vec![format!("0 100 53 {}.", fqdn("svc1"))], "{}", ctx("5 udp", &d));

    // 6: no SRV for unknown or unnamed ports.
    let d = ask(&format!("_nope._tcp.{}", fqdn("svc1")), "SRV");
    assert!(d.is_nxdomain_with_soa(), "{}", ctx("6", &d));
    let d = ask(&format!("_http._udp.{}", fqdn("svc1")), "SRV");
    assert_eq!(d.status, "NXDOMAIN", "{}", ctx("6 proto", &d));
    let d = ask(&fqdn("svc-unnamed"), "SRV");
    assert_eq!(d.answers("SRV"), vec![format!("0 100 8080 {}.", fqdn("svc-unnamed"))], "{}", ctx("6 unnamed", &d));

    // 7: PTR of a ClusterIP.
    let d = ask("1.100.96.10.in-addr.arpa", "PTR");
    assert_eq!(d.answers("PTR"), vec![format!("{}.", fqdn("svc1"))], "{}", ctx("7", &d));

    // 8: headless: every ready endpoint, never the not-ready one.
    let d = ask(&fqdn("hdls1"), "A");
    assert_eq!(d.answers("A"), vec!["172.0.0.2", "172.0.0.3", "172.0.0.4"], "{}", ctx("8", &d));

    // 9: an endpoint's hostname.
    let d = ask(&format!("my-pet.{}", fqdn("hdls1")), "A");
    assert_eq!(d.answers("A"), vec!["172.0.0.4"], "{}", ctx("9", &d));
    let d = ask(&format!("172-0-0-2.{}", fqdn("hdls1")), "A");
    assert_eq!(d.answers("A"), vec!["172.0.0.2"], "{}", ctx("9 dashed", &d));

    // 10: headless SRV: one per ready endpoint, with glue.
    let d = ask(&format!("_http._tcp.{}", fqdn("hdls1")), "SRV");
    let targets: Vec<String> =
        d.answers("SRV").iter().map(|s| s.rsplit(' ').next().unwrap_or_default().to_owned()).collect();
    assert_eq!(
        targets,
        vec![
            format!("172-0-0-2.{}.", fqdn("hdls1")),
            format!("172-0-0-3.{}.", fqdn("hdls1")),
            format!("my-pet.{}.", fqdn("hdls1"))
        ],
        "{}",
        ctx("10", &d)
    );
    assert_eq!(d.additional.iter().filter(|r| r.rtype == "A").count(), 3, "{}", ctx("10", &d));

    // 11: PTR of an endpoint with a hostname.
    let d = ask("4.0.0.172.in-addr.arpa", "PTR");
    assert_eq!(d.answers("PTR"), vec![format!("my-pet.{}.", fqdn("hdls1"))], "{}", ctx("11", &d));

    // 12: headless with only not-ready endpoints: NXDOMAIN.
    let d = ask(&fqdn("hdls-none"), "A");
    assert!(d.is_nxdomain_with_soa(), "{}", ctx("12", &d));

    // 13: publishNotReadyAddresses.
    let d = ask(&fqdn("hdls-pnr"), "A");
    assert_eq!(d.answers("A"), vec!["172.0.0.7"], "{}", ctx("13", &d));

    // 14: a ClusterIP Service without endpoints still answers its IP.
    let d = ask(&fqdn("svcempty"), "A");
    assert_eq!(d.answers("A"), vec!["10.96.100.2"], "{}", ctx("14", &d));

    // 15: ExternalName CNAME (16, the target's A from upstream, is in dns_forward.rs).
    let d = ask(&fqdn("ext"), "CNAME");
    assert_eq!(d.answers("CNAME"), vec!["www.example.com."], "{}", ctx("15", &d));

    // 17: a name below an ExternalName is not aliased.
    let d = ask(&format!("x.{}", fqdn("ext")), "CNAME");
    assert!(d.is_nxdomain_with_soa(), "{}", ctx("17", &d));

    // 18, 19: missing names and namespaces.
    for qtype in ["A", "AAAA", "TXT"] {
        let d = ask(&fqdn("nosuch"), qtype);
        assert!(d.is_nxdomain_with_soa(), "{}", ctx("18", &d));
    }
    let d = ask("svc1.nosuchns.svc.cluster.local", "A");
    assert!(d.is_nxdomain_with_soa(), "{}", ctx("19", &d));

    // 20: empty non-terminals are NODATA.
    for name in ["svc.cluster.local", Z, "pod.cluster.local", "testns.pod.cluster.local"] {
        let d = ask(name, "A");
        assert!(d.is_nodata(), "{}", ctx("20", &d));
    }

    // 21: NS below the apex does not exist.
    for name in ["foo.cluster.local", "foo.svc.cluster.local"] {
        assert_eq!(ask(name, "NS").status, "NXDOMAIN", "row 21 {name}");
    }

    // 22: apex SOA and NS.
    let d = ask("cluster.local", "SOA");
    let soa = d.answers("SOA");
    assert_eq!(soa.len(), 1, "{}", ctx("22", &d));
    let fields: Vec<&str> = soa[0].split(' ').collect();
    assert_eq!(fields[..2], ["ns.dns.cluster.local.", "hostmaster.cluster.local."], "{}", ctx("22", &d));
    assert_eq!(fields[3..], ["7200", "1800", "86400", "30"], "{}", ctx("22", &d));
    let d = ask("cluster.local", "NS");
    assert_eq!(d.answers("NS"), vec!["ns.dns.cluster.local."], "{}", ctx("22 NS", &d));

    // 23: case-insensitive, echoing the query's case.
    let d = ask("SvC1.TeStNs.SvC.cLuStEr.LoCaL", "A");
    assert_eq!(d.answers("A"), vec!["10.96.100.1"], "{}", ctx("23", &d));
    assert_eq!(d.answer[0].name, "SvC1.TeStNs.SvC.cLuStEr.LoCaL.", "{}", ctx("23", &d));

    // 24, 25: unknown endpoint names and too many labels.
    assert!(ask(&format!("bogus.{}", fqdn("hdls1")), "A").is_nxdomain_with_soa(), "row 24");
    assert!(ask(&format!("a.b.c.{}", fqdn("svc1")), "A").is_nxdomain_with_soa(), "row 25");

    // 27: pod records (pods insecure, the default).
    let d = ask("10-240-0-1.testns.pod.cluster.local", "A");
    assert_eq!(d.answers("A"), vec!["10.240.0.1"], "{}", ctx("27", &d));
    assert_eq!(ask("blah.testns.pod.cluster.local", "A").status, "NXDOMAIN", "row 27 bad name");

    // Types with no records at an existing name are NODATA (CoreDNS's fake lookup).
    assert!(ask(&fqdn("svc1"), "TXT").is_nodata(), "TXT at a service");
    assert!(ask(&fqdn("svc1"), "HINFO").is_nodata(), "HINFO at a service");
}

/// Row 26: before the first sync, names in the zone get SERVFAIL, never NXDOMAIN; /readyz
/// says so.
#[test]
fn servfail_until_the_first_sync() {
    let mut server = TestServer::start();
    let kubeconfig = server.data_dir().join("kubeconfig.copy");
    std::fs::copy(&server.kubeconfig, &kubeconfig).expect("copying kubeconfig");
    server.kill9();
    let dns = DnsServer::start(&kubeconfig, server.data_dir(), &[]);
    for proto in [Proto::Udp, Proto::Tcp] {
        let d = dns.dig(proto, &fqdn("svc1"), "A", &[]);
        assert_eq!(d.status, "SERVFAIL", "{proto:?}: {}", d.raw);
    }
    assert_eq!(dns.http_get("/readyz").0, 503);
    assert_eq!(dns.http_get("/healthz").0, 200);
}
