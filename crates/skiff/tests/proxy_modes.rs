//! `skiff proxy` end to end, per mode, in network namespaces the tests create (see
//! proxy_support/mod.rs for the lab): the behaviours of upstream's Service e2e list that a
//! single node can show. Each scenario runs for nftables and iptables, and for userspace
//! where that mode implements the behaviour.

mod proxy_support;

use std::time::Duration;

use proxy_support::{answered, sctp_unsupported, slice, Ep, Lab, CLIENT_IP, NODE_IP, NODE_POD_GW};

macro_rules! per_mode {
    ($scenario:ident: $($mode:ident),+) => {
        mod $scenario {
            $(
                #[test]
                fn $mode() {
                    super::$scenario(stringify!($mode));
                }
            )+
        }
    };
}

per_mode!(cluster_ip: nftables, iptables, userspace);
per_mode!(node_port_and_external: nftables, iptables);
per_mode!(session_affinity: nftables, iptables, userspace);
per_mode!(terminating_fallback: nftables, iptables, userspace);
per_mode!(udp_fixed_source_port: nftables, iptables, userspace);
per_mode!(hairpin: nftables, iptables);
per_mode!(restart_and_cleanup: nftables, iptables);
per_mode!(load_balancer_source_ranges: userspace);
// The userspace relay has TCP and UDP sockets only (no SCTP in tokio).
per_mode!(sctp_cluster_ip: nftables, iptables);

fn ok(lines: &[String]) -> bool {
    !lines.is_empty() && lines.iter().all(|l| l.starts_with("OK "))
}

fn is_ok(line: &str) -> bool {
    line.starts_with("OK ")
}

/// Two backends ("a" on this node, "b" on another), the Service `name` with `ports`, and
/// a slice per backend with the given port list (the alt port differs per backend).
fn two_backends(lab: &mut Lab) {
    lab.add_backend("a", 9090);
    lab.add_backend("b", 9091);
}

fn svc(name: &str, ip: &str, extra_spec: &str, ports: &str) -> String {
    format!(
        "{{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {{\"name\": \"{name}\", \"namespace\": \"default\"}}, \
         \"spec\": {{\"clusterIP\": \"{ip}\", \"ports\": [{ports}]{extra_spec}}}}}"
    )
}

const HTTP_PORT: &str = r#"{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}"#;

/// ClusterIP: several ports, the same port on TCP and UDP, per-endpoint target ports,
/// random choice over endpoints, reject on unused ports and without endpoints, no ping
/// answer, the service-proxy-name label.
fn cluster_ip(mode: &str) {
    let mut lab = Lab::new();
    two_backends(&mut lab);
    let ports = r#"{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                   {"name": "dns", "port": 80, "targetPort": 8080, "protocol": "UDP"},
                   {"name": "alt", "port": 81, "targetPort": "alt", "protocol": "TCP"}"#;
    lab.apply(&svc("web", "10.96.10.1", "", ports));
    let (a, b) = (lab.backend_ip(0).to_owned(), lab.backend_ip(1).to_owned());
    for (name, ip, node, alt) in [("web-a", &a, "node-1", 9090), ("web-b", &b, "node-2", 9091)] {
        lab.apply(&slice(
            name,
            "web",
            &[("http", 8080, "TCP"), ("dns", 8080, "UDP"), ("alt", alt, "TCP")],
            &[Ep::ready(ip, node)],
        ));
    }
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.1", 80, "ClusterIP answers", is_ok);
    let lines = lab.tcp("10.96.10.1", 80, 30);
    assert!(ok(&lines), "{lines:?}");
    assert_eq!(answered(&lines).len(), 2, "random choice reaches both endpoints: {lines:?}");
    let udp = lab.udp("10.96.10.1", 80, 5);
    assert!(ok(&udp), "UDP on the same port: {udp:?}");
    let alt = lab.tcp("10.96.10.1", 81, 20);
    assert!(ok(&alt), "per-endpoint target ports: {alt:?}");
    assert_eq!(answered(&alt).len(), 2);

    // Refused, not timed out (the first attempt can race the ICMP error on a loaded machine).
    lab.wait_tcp("10.96.10.1", 82, "unused port of a ClusterIP refused", |l| l == "REFUSED");
    assert_eq!(lab.client_in(&lab.client.clone(), &["ping", "10.96.10.1"]), ["NOREPLY"]);

    // A Service another proxy owns is left alone; removing the label brings it back.
    lab.kubectl_ok(&["label", "service", "web", "service.kubernetes.io/service-proxy-name=other"]);
    lab.wait_tcp("10.96.10.1", 80, "labelled Service dropped", |l| !is_ok(l));
    lab.kubectl_ok(&["label", "service", "web", "service.kubernetes.io/service-proxy-name-"]);
    lab.wait_tcp("10.96.10.1", 80, "label removed", is_ok);

    lab.kubectl_ok(&["delete", "endpointslice", "web-a", "web-b"]);
    lab.wait_tcp("10.96.10.1", 80, "reject without endpoints", |l| l == "REFUSED");
    lab.wait_udp("10.96.10.1", 80, "UDP rejected without endpoints", |l| l == "REFUSED");
}

/// NodePort on the node's address (masqueraded), external IPs, LoadBalancer IPs,
/// externalTrafficPolicy Local (source kept, drop without local endpoints, health check),
/// type changes.
fn node_port_and_external(mode: &str) {
    let mut lab = Lab::new();
    two_backends(&mut lab);
    let a = lab.backend_ip(0).to_owned();
    let b = lab.backend_ip(1).to_owned();
    let ports = r#"{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}"#;
    lab.apply(&svc("np", "10.96.10.2", r#", "type": "NodePort", "externalIPs": ["203.0.113.7"]"#, ports));
    lab.apply(&slice("np-1", "np", &[("http", 8080, "TCP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    let line = lab.wait_tcp(NODE_IP, 30080, "NodePort answers", is_ok);
    assert_eq!(line, format!("OK a {NODE_POD_GW}"), "Cluster policy masquerades external traffic");
    assert!(ok(&lab.tcp("203.0.113.7", 80, 3)), "external IP");
    assert!(ok(&lab.tcp("10.96.10.2", 80, 3)), "ClusterIP of a NodePort Service");
    let local = lab.client_in(&lab.node.clone(), &["tcp", "127.0.0.1", "30080", "1"]);
    assert_eq!(local, ["REFUSED"], "no NodePort on 127.0.0.1");

    // externalTrafficPolicy Local: the client's address is kept.
    lab.kubectl_ok(&["patch", "service", "np", "-p", r#"{"spec": {"externalTrafficPolicy": "Local"}}"#]);
    lab.wait_tcp(NODE_IP, 30080, "source preserved", |l| l == format!("OK a {CLIENT_IP}"));

    // As a LoadBalancer with its own health check node port and ingress IP.
    lab.kubectl_ok(&[
        "patch",
        "service",
        "np",
        "-p",
        r#"{"spec": {"type": "LoadBalancer", "healthCheckNodePort": 32100}}"#,
    ]);
    lab.kubectl_ok(&[
        "patch",
        "service",
        "np",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.20"}]}}}"#,
    ]);
    lab.wait_tcp("198.51.100.20", 80, "LoadBalancer IP", |l| l == format!("OK a {CLIENT_IP}"));

    // loadBalancerSourceRanges: other sources are dropped at the LoadBalancer IP only.
    let ranges = |r: &str| format!("{{\"spec\": {{\"loadBalancerSourceRanges\": [\"{r}\"]}}}}");
    lab.kubectl_ok(&["patch", "service", "np", "-p", &ranges("10.1.0.0/16")]);
    lab.wait_tcp("198.51.100.20", 80, "source range blocks the client", |l| !is_ok(l));
    assert!(ok(&lab.tcp(NODE_IP, 30080, 1)), "node ports are not guarded by source ranges");
    lab.kubectl_ok(&["patch", "service", "np", "-p", &ranges("172.30.0.0/24")]);
    lab.wait_tcp("198.51.100.20", 80, "source range admits the client", is_ok);
    let health = format!("http://{NODE_IP}:32100/");
    let (status, body) = lab.eventually("health check 200", Duration::from_secs(20), || {
        let r = lab.http(&lab.client.clone(), &health);
        (r.0 == 200).then_some(r)
    });
    assert_eq!(status, 200);
    assert!(body.contains("\"localEndpoints\":1"), "{body}");

    // Only a remote endpoint: Local policy drops external traffic, the health check fails.
    lab.apply(&slice("np-1", "np", &[("http", 8080, "TCP")], &[Ep::ready(&b, "node-2")]));
    lab.eventually("health check 503", Duration::from_secs(20), || {
        (lab.http(&lab.client.clone(), &health).0 == 503).then_some(())
    });
    assert_eq!(lab.tcp(NODE_IP, 30080, 1), ["TIMEOUT"], "dropped, not rejected");
    assert!(ok(&lab.tcp("10.96.10.2", 80, 3)), "ClusterIP traffic still reaches the remote endpoint");

    // Type change to ExternalName: everything goes away.
    lab.kubectl_ok(&[
        "patch",
        "service",
        "np",
        "--type=merge",
        "-p",
        r#"{"spec": {"type": "ExternalName", "externalName": "example.com", "clusterIP": "", "clusterIPs": null,
                     "externalIPs": null, "externalTrafficPolicy": null, "healthCheckNodePort": null,
                     "loadBalancerSourceRanges": null,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}"#,
    ]);
    lab.wait_tcp(NODE_IP, 30080, "NodePort released", |l| l == "REFUSED");
}

/// sessionAffinity ClientIP holds, and can be switched off and on at runtime.
fn session_affinity(mode: &str) {
    let mut lab = Lab::new();
    two_backends(&mut lab);
    let (a, b) = (lab.backend_ip(0).to_owned(), lab.backend_ip(1).to_owned());
    let affinity = r#", "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}"#;
    lab.apply(&svc("aff", "10.96.10.3", affinity, HTTP_PORT));
    lab.apply(&slice("aff-1", "aff", &[("http", 8080, "TCP")], &[Ep::ready(&a, "node-1"), Ep::ready(&b, "node-2")]));
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.3", 80, "Service answers", is_ok);
    let lines = lab.tcp("10.96.10.3", 80, 15);
    assert!(ok(&lines) && answered(&lines).len() == 1, "15 identical answers: {lines:?}");

    lab.kubectl_ok(&["patch", "service", "aff", "-p", r#"{"spec": {"sessionAffinity": "None"}}"#]);
    lab.eventually("affinity off", Duration::from_secs(20), || {
        (answered(&lab.tcp("10.96.10.3", 80, 20)).len() == 2).then_some(())
    });

    lab.kubectl_ok(&["patch", "service", "aff", "-p", &format!("{{\"spec\": {{{}}}}}", &affinity[2..])]);
    lab.eventually("affinity on again", Duration::from_secs(20), || {
        let lines = lab.tcp("10.96.10.3", 80, 15);
        (ok(&lines) && answered(&lines).len() == 1).then_some(())
    });
}

/// Without ready endpoints, serving+terminating ones are used; without those, reject.
fn terminating_fallback(mode: &str) {
    let mut lab = Lab::new();
    two_backends(&mut lab);
    let a = lab.backend_ip(0).to_owned();
    lab.apply(&svc("term", "10.96.10.4", "", HTTP_PORT));
    let terminating = |serving| Ep { ip: &a, node: "node-1", ready: false, serving, terminating: true };
    lab.apply(&slice("term-1", "term", &[("http", 8080, "TCP")], &[terminating(true)]));
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.4", 80, "terminating endpoint serves", is_ok);
    lab.apply(&slice("term-1", "term", &[("http", 8080, "TCP")], &[terminating(false)]));
    lab.wait_tcp("10.96.10.4", 80, "rejected once not serving", |l| l == "REFUSED");
}

/// A UDP client on a fixed source port moves to the new backend when the old endpoint is
/// removed (conntrack cleanup), although the old backend still answers.
fn udp_fixed_source_port(mode: &str) {
    let mut lab = Lab::new();
    two_backends(&mut lab);
    let (a, b) = (lab.backend_ip(0).to_owned(), lab.backend_ip(1).to_owned());
    lab.apply(&svc("dns", "10.96.10.5", "", r#"{"name": "dns", "port": 53, "targetPort": 8080, "protocol": "UDP"}"#));
    lab.apply(&slice("dns-1", "dns", &[("dns", 8080, "UDP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    let client = lab.client.clone();
    let fixed = |lab: &Lab| lab.client_in(&client, &["udp", "10.96.10.5", "53", "1", "40053"]);
    lab.eventually("backend a answers", Duration::from_secs(20), || {
        fixed(&lab).first().filter(|l| l.starts_with("OK a")).cloned()
    });
    lab.apply(&slice("dns-1", "dns", &[("dns", 8080, "UDP")], &[Ep::ready(&b, "node-2")]));
    lab.eventually("same source port reaches b", Duration::from_secs(20), || {
        fixed(&lab).first().filter(|l| l.starts_with("OK b")).cloned()
    });
}

/// A backend reaching itself through its Service (masqueraded, so replies return).
fn hairpin(mode: &str) {
    let mut lab = Lab::new();
    lab.add_backend("a", 9090);
    let a = lab.backend_ip(0).to_owned();
    lab.apply(&svc("hp", "10.96.10.6", "", HTTP_PORT));
    lab.apply(&slice("hp-1", "hp", &[("http", 8080, "TCP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.6", 80, "Service answers", is_ok);
    let ns = lab.backends[0].ns.clone();
    let lines = lab.client_in(&ns, &["tcp", "10.96.10.6", "80", "3"]);
    assert_eq!(lines, vec![format!("OK a {NODE_POD_GW}"); 3], "hairpin traffic is masqueraded");
    // Pod to another pod's Service keeps the pod's address (no masquerade).
    lab.add_backend("b", 9091);
    let b = lab.backend_ip(1).to_owned();
    lab.apply(&svc("hp2", "10.96.10.7", "", HTTP_PORT));
    lab.apply(&slice("hp2-1", "hp2", &[("http", 8080, "TCP")], &[Ep::ready(&b, "node-1")]));
    lab.eventually("pod to ClusterIP keeps its source", Duration::from_secs(20), || {
        let want = format!("OK b {a}");
        lab.client_in(&ns, &["tcp", "10.96.10.7", "80", "1"]).first().filter(|l| **l == want).cloned()
    });
}

/// A restart keeps established connections; /metrics, /healthz, /proxyMode; --cleanup;
/// another mode removes this mode's rules.
fn restart_and_cleanup(mode: &str) {
    let mut lab = Lab::new();
    lab.add_backend("a", 9090);
    let a = lab.backend_ip(0).to_owned();
    lab.apply(&svc("rs", "10.96.10.8", "", HTTP_PORT));
    lab.apply(&slice("rs-1", "rs", &[("http", 8080, "TCP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.8", 80, "Service answers", is_ok);

    assert_eq!(lab.http_in_node("/proxyMode"), (200, mode.to_owned()));
    let (status, health) = lab.http_in_node("/healthz");
    assert_eq!(status, 200);
    assert!(health.contains("\"lastUpdated\": \"") && health.contains(" +0000 UTC"), "{health}");
    let (_, metrics) = lab.http_in_node("/metrics");
    for name in [
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_network_programming_duration_seconds_count",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    // Hold a connection through the Service across a proxy restart.
    let client = lab.client.clone();
    let mut hold = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &client,
            "python3",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy_support/client.py"),
        ])
        .args(["hold", "10.96.10.8", "80", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hold client");
    let mut out = std::io::BufReader::new(hold.stdout.take().expect("stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).expect("hold client output");
    assert_eq!(first.trim(), "CONNECTED");
    lab.start_proxy(mode);
    assert!(ok(&lab.tcp("10.96.10.8", 80, 3)), "new connections after the restart");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("hold client output");
    let _ = hold.wait();
    assert_eq!(rest.trim(), "SURVIVED", "the held connection survives the restart");

    // Another mode takes over and removes this mode's rules.
    let other = if mode == "nftables" { "iptables" } else { "nftables" };
    lab.start_proxy(other);
    lab.wait_tcp("10.96.10.8", 80, "other mode serves", is_ok);
    let ruleset = lab.node_ruleset();
    if mode == "nftables" {
        assert!(!ruleset.contains("table ip skiff-proxy"), "{ruleset}");
    } else {
        assert!(!ruleset.contains("KUBE-SERVICES"), "{ruleset}");
    }

    lab.stop_proxy();
    let node = lab.node.clone();
    let kubeconfig = lab.kubeconfig.to_string_lossy().into_owned();
    let out = lab.exec(
        &node,
        &[env!("CARGO_BIN_EXE_skiff"), "proxy", "--cleanup", "--kubeconfig", &kubeconfig, "--node-name", "node-1"],
    );
    assert!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
    let ruleset = lab.node_ruleset();
    assert!(!ruleset.contains("skiff-proxy") && !ruleset.contains("KUBE-"), "{ruleset}");
}

/// loadBalancerSourceRanges in userspace mode: other sources are dropped at the
/// LoadBalancer IP before the relay; the node port and the ClusterIP are not guarded.
/// (nftables and iptables check the same in `node_port_and_external`.)
fn load_balancer_source_ranges(mode: &str) {
    let mut lab = Lab::new();
    lab.add_backend("a", 9090);
    let a = lab.backend_ip(0).to_owned();
    let ports = r#"{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30081}"#;
    let spec = r#", "type": "LoadBalancer", "loadBalancerSourceRanges": ["10.1.0.0/16"]"#;
    lab.apply(&svc("lb", "10.96.10.9", spec, ports));
    lab.kubectl_ok(&[
        "patch",
        "service",
        "lb",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.21"}]}}}"#,
    ]);
    lab.apply(&slice("lb-1", "lb", &[("http", 8080, "TCP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    lab.wait_tcp("10.96.10.9", 80, "ClusterIP answers", is_ok);
    // The client (172.30.0.2) is outside 10.1.0.0/16: dropped, not refused.
    assert_eq!(lab.tcp("198.51.100.21", 80, 1), ["TIMEOUT"], "{}", lab.node_ruleset());
    assert!(ok(&lab.tcp(NODE_IP, 30081, 1)), "node ports are not guarded by source ranges");
    let ranges = r#"{"spec": {"loadBalancerSourceRanges": ["172.30.0.0/24"]}}"#;
    lab.kubectl_ok(&["patch", "service", "lb", "-p", ranges]);
    lab.wait_tcp("198.51.100.21", 80, "source range admits the client", is_ok);
}

/// An SCTP ClusterIP reaches its endpoint, where the kernel has SCTP; elsewhere the test
/// says why it skips and passes.
fn sctp_cluster_ip(mode: &str) {
    if let Some(reason) = sctp_unsupported() {
        eprintln!("skipping sctp_cluster_ip::{mode}: {reason}");
        return;
    }
    let mut lab = Lab::new();
    lab.add_backend("a", 9090);
    let a = lab.backend_ip(0).to_owned();
    lab.apply(&svc(
        "sc",
        "10.96.10.10",
        "",
        r#"{"name": "assoc", "port": 80, "targetPort": 8080, "protocol": "SCTP"}"#,
    ));
    lab.apply(&slice("sc-1", "sc", &[("assoc", 8080, "SCTP")], &[Ep::ready(&a, "node-1")]));
    lab.start_proxy(mode);
    let client = lab.client.clone();
    lab.eventually("SCTP ClusterIP answers", Duration::from_secs(20), || {
        lab.client_in(&client, &["sctp", "10.96.10.10", "80", "1"])
            .into_iter()
            .next()
            .filter(|l| l.starts_with("OK a "))
    });
    let tcp = lab.tcp("10.96.10.10", 80, 1);
    assert_eq!(tcp, ["REFUSED"], "TCP to the SCTP-only port is rejected as an unused port");
}
