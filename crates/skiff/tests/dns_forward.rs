//! Names outside the cluster zone go to the upstream servers (here a tiny server the test
//! runs on loopback); cluster names never do. ExternalName targets outside the zone and
//! server-side search completion use the same path.

mod common;
mod dns_support;

use std::time::Duration;

use common::TestServer;
use dns_support::{poll, DnsServer, FakeUpstream, Proto};

const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: fwd}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: fwd}
spec: {type: ExternalName, externalName: www.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: fwd}
spec: {clusterIP: 10.96.150.1, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: client, namespace: fwd}
spec: {clusterIP: 10.96.150.2, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: client-a
  namespace: fwd
  labels: {kubernetes.io/service-name: client}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: ["127.0.0.2"]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: fwd, name: client-pod}
"#;

fn start() -> (TestServer, FakeUpstream, DnsServer) {
    let server = TestServer::start();
    server.apply(FIXTURE);
    let upstream = FakeUpstream::start();
    let addr = upstream.addr.to_string();
    let dns = DnsServer::start(&server.kubeconfig, server.data_dir(), &["--upstream", &addr]);
    dns.wait_synced();
    poll("the fixture", Duration::from_secs(20), || {
        (dns.dig(Proto::Udp, "client.fwd.svc.cluster.local", "A", &[]).status == "NOERROR").then_some(())
    });
    (server, upstream, dns)
}

#[test]
fn outside_names_are_forwarded_and_cached() {
    let (_server, upstream, dns) = start();
    for proto in [Proto::Udp, Proto::Tcp] {
        let d = dns.dig(proto, "www.example.org", "A", &[]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert_eq!(d.answers("A"), vec!["192.0.2.53"], "{}", d.raw);
        assert!(!d.has_flag("aa"), "forwarded answers are not authoritative: {}", d.raw);
        let nx = dns.dig(proto, "nx.example.org", "A", &[]);
        assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
    }
    // The second round was served from the cache: the upstream saw each name once.
    let asked = upstream.asked();
    assert_eq!(asked.iter().filter(|n| *n == "www.example.org").count(), 1, "{asked:?}");
    // Case is echoed for forwarded names too.
    let d = dns.dig(Proto::Udp, "WwW.ExAmPlE.OrG", "A", &[]);
    assert!(d.raw.contains(";WwW.ExAmPlE.OrG."), "{}", d.raw);
}

#[test]
fn cluster_names_are_never_forwarded() {
    let (_server, upstream, dns) = start();
    for name in ["nosuch.fwd.svc.cluster.local", "x.cluster.local", "cluster.local"] {
        let d = dns.dig(Proto::Udp, name, "A", &[]);
        assert!(d.status == "NXDOMAIN" || d.is_nodata(), "{}", d.raw);
    }
    let asked = upstream.asked();
    assert!(asked.iter().all(|n| !n.ends_with("cluster.local")), "{asked:?}");
}

#[test]
fn external_name_is_followed_upstream() {
    let (_server, _upstream, dns) = start();
    for proto in [Proto::Udp, Proto::Tcp] {
        // Row 16: the CNAME first, then the target's A from the upstream.
        let d = dns.dig(proto, "ext.fwd.svc.cluster.local", "A", &[]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        let types: Vec<&str> = d.answer.iter().map(|r| r.rtype.as_str()).collect();
        assert_eq!(types, vec!["CNAME", "A"], "{}", d.raw);
        assert_eq!(d.answer[0].data, "www.example.com.");
        assert_eq!(d.answer[1].name, "www.example.com.");
        assert_eq!(d.answer[1].data, "192.0.2.53");
    }
}

#[test]
fn search_path_completion_for_known_pods() {
    let (_server, upstream, dns) = start();
    // 127.0.0.2 is pod fwd/client-pod (a targetRef). With ndots:5 its lookup of "api"
    // arrives first as api.fwd.svc.cluster.local: plainly found.
    let from_pod = ["-b", "127.0.0.2"];
    let d = dns.dig(Proto::Udp, "api.fwd.svc.cluster.local", "A", &from_pod);
    assert_eq!(d.answers("A"), vec!["10.96.150.1"], "{}", d.raw);
    // Its lookup of "api.fwd" arrives as api.fwd.fwd.svc.cluster.local: completed to
    // api.fwd.svc.cluster.local in one round trip.
    let d = dns.dig(Proto::Udp, "api.fwd.fwd.svc.cluster.local", "A", &from_pod);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer[0].rtype, "CNAME", "{}", d.raw);
    assert_eq!(d.answer[0].data, "api.fwd.svc.cluster.local.");
    assert_eq!(d.answers("A"), vec!["10.96.150.1"]);
    // An outside name: completed through the upstream.
    let d = dns.dig(Proto::Udp, "www.example.net.fwd.svc.cluster.local", "A", &from_pod);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answer[0].data, "www.example.net.", "{}", d.raw);
    assert_eq!(d.answers("A"), vec!["192.0.2.53"]);
    assert!(upstream.asked().contains(&"www.example.net".to_owned()));
    // Nothing exists anywhere: the plain NXDOMAIN for the asked name.
    let d = dns.dig(Proto::Udp, "nx.example.net.fwd.svc.cluster.local", "A", &from_pod);
    assert!(d.is_nxdomain_with_soa(), "{}", d.raw);
    // Clients that are not known pods get no completion.
    let d = dns.dig(Proto::Udp, "api.fwd.fwd.svc.cluster.local", "A", &[]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
}
