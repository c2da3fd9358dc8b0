//! `skiff up --isolated` end to end, as a user would drive it with kubectl: seed 003's pod
//! networking (pods get IPs, replacements get new ones, pod↔pod across nodes without NAT,
//! ping), Services through the proxy and cluster DNS from inside pods, service environment
//! variables, LoadBalancer addresses from the node network, and cleanup on SIGTERM and after
//! a crash (`skiff down`).

mod cluster_support;

use std::time::Duration;

use cluster_support::{netexec_deployment, Cluster};

const WAIT: Duration = Duration::from_secs(60);

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("CIDR");
    let ip: std::net::Ipv4Addr = ip.parse().expect("pod IP");
    let net: std::net::Ipv4Addr = net.parse().expect("network");
    let len: u32 = len.parse().expect("prefix length");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn seed_pod_networking_services_and_dns() {
    let mut c = Cluster::up(2, "nftables");
    assert!(c.printed.iter().any(|l| l.contains("server")), "progress lines: {:?}", c.printed);
    let ready = c.printed.last().cloned().unwrap_or_default();
    assert!(ready.contains("kubeconfig") && ready.contains("skiff run"), "{ready}");

    let nodes = c.kubectl_json(&["get", "nodes"]);
    let cidrs: Vec<(String, String)> = nodes["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (n["metadata"]["name"].as_str().unwrap().to_string(), n["spec"]["podCIDR"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(cidrs.len(), 2);

    // A Service that exists before the pods: its variables are in their environment.
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: early}\nspec:\n  selector: {app: none}\n  ports: [{name: http, port: 8000}]\n");
    c.apply(&netexec_deployment("web", 4));
    let pods = c.eventually("4 ready web pods", WAIT, || Some(c.ready_pods("app=web")).filter(|p| p.len() == 4));
    for (name, ip, node) in &pods {
        let cidr = &cidrs.iter().find(|(n, _)| n == node).expect("pod on a known node").1;
        assert!(in_cidr(ip, cidr), "{name}: {ip} not in {node}'s {cidr}");
    }
    let on_node = |n: &str| pods.iter().filter(|p| p.2 == n).count();
    assert_eq!((on_node("node-1"), on_node("node-2")), (2, 2), "spread: {pods:?}");

    // Pod to pod across nodes, by IP, without NAT: the server sees the client pod's IP.
    let a = pods.iter().find(|p| p.2 == "node-1").expect("a pod on node-1");
    let b = pods.iter().find(|p| p.2 == "node-2").expect("a pod on node-2");
    let seen =
        c.kubectl(&["exec", &a.0, "--", "curl", "-sS", "--max-time", "5", &format!("http://{}:8080/clientip", b.1)]);
    assert_eq!(seen.rsplit_once(':').map(|(ip, _)| ip), Some(a.1.as_str()), "server saw {seen}");
    // The node network reaches pod IPs too, and pods answer ping.
    c.run_ok(&["ping", "-c", "1", "-W", "5", &b.1]);

    // Service environment variables: for Services that existed when the pod started.
    let env = c.kubectl(&["exec", &a.0, "--", "env"]);
    assert!(env.contains("EARLY_SERVICE_HOST=10.96."), "{env}");
    assert!(env.contains("EARLY_SERVICE_PORT_HTTP=8000"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1"), "{env}");
    c.kubectl(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]);
    let env = c.kubectl(&["exec", &a.0, "--", "env"]);
    assert!(!env.contains("WEB_SERVICE_HOST"), "a Service created after the pod is not in its environment");

    // The Service by name from a pod (cluster DNS + the proxy), reaching every replica.
    let mut hostnames = std::collections::BTreeSet::new();
    c.eventually("the web Service answering by name from every replica", WAIT, || {
        let out = c.run(&["kubectl", "exec", &a.0, "--", "curl", "-sS", "--max-time", "3", "http://web/hostname"]);
        if out.status.success() {
            hostnames.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        (hostnames.len() == 4).then_some(())
    });
    let resolv = c.kubectl(&["exec", &a.0, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("ndots:5"), "{resolv}");

    // Pods are ephemeral: deleted ones are replaced by new pods with new IPs.
    let old: Vec<String> = pods.iter().map(|p| p.1.clone()).collect();
    c.kubectl(&["delete", "pods", "-l", "app=web", "--wait=false"]);
    let fresh = c.eventually("4 replacement pods", WAIT, || {
        let now = c.ready_pods("app=web");
        (now.len() == 4 && now.iter().all(|p| !pods.iter().any(|o| o.0 == p.0))).then_some(now)
    });
    assert!(fresh.iter().any(|p| !old.contains(&p.1)), "replacements got new IPs: {fresh:?} vs {old:?}");

    // LoadBalancer: an address from the node network's pool, reachable from the node network.
    c.kubectl(&[
        "expose",
        "deployment",
        "web",
        "--name=web-lb",
        "--type=LoadBalancer",
        "--port=80",
        "--target-port=8080",
    ]);
    let lb = c.eventually("a LoadBalancer address", WAIT, || {
        let ip = c.kubectl(&["get", "svc", "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
        (!ip.is_empty()).then_some(ip)
    });
    assert!(lb.starts_with("172.30.0.2"), "{lb}");
    c.eventually("the LoadBalancer address answering", WAIT, || {
        let out = c.run(&["curl", "-sS", "--max-time", "3", &format!("http://{lb}/hostname")]);
        out.status.success().then_some(())
    });

    // Ingress: the controller's LoadBalancer address routes by host to the Service's pods,
    // over HTTP and HTTPS (its default certificate), and is written into the Ingress status.
    c.kubectl(&["create", "ingress", "web", "--rule=web.example/*=web:80"]);
    let ingress_ip = c.eventually("the Ingress status address", WAIT, || {
        let ip = c.kubectl(&["get", "ingress", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
        (!ip.is_empty()).then_some(ip)
    });
    let controller_ip = c.kubectl(&[
        "get",
        "svc",
        "-n",
        "skiff-ingress",
        "skiff-ingress",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ]);
    assert_eq!(ingress_ip, controller_ip);
    let via_ingress = c.eventually("the Ingress routing to web", WAIT, || {
        let out = c.run(&[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "-H",
            "Host: web.example",
            &format!("http://{ingress_ip}/hostname"),
        ]);
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && body.starts_with("web-")).then_some(body)
    });
    assert!(fresh.iter().any(|p| p.0 == via_ingress), "{via_ingress} is a web pod");
    let resolve = format!("web.example:443:{ingress_ip}");
    let tls =
        c.run_ok(&["curl", "-sS", "-k", "--max-time", "3", "--resolve", &resolve, "https://web.example/hostname"]);
    assert!(tls.starts_with("web-"), "{tls}");
    let unknown = c.run_ok(&[
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "3",
        "-H",
        "Host: nope.example",
        &format!("http://{ingress_ip}/"),
    ]);
    assert_eq!(unknown, "404");

    // Ctrl-C / SIGTERM removes everything.
    assert!(!c.namespaces().is_empty());
    let status = c.stop();
    assert!(status.success(), "skiff up exit status {status}; printed {:?}", c.printed);
    assert_eq!(c.namespaces(), Vec::<String>::new(), "namespaces left after SIGTERM");
    assert!(c.printed.iter().any(|l| l.contains("removed")), "{:?}", c.printed);
}

#[test]
fn down_removes_what_a_crashed_cluster_left() {
    let mut c = Cluster::up(1, "nftables");
    c.apply(&netexec_deployment("crash", 2));
    c.eventually("2 ready pods", WAIT, || Some(c.ready_pods("app=crash")).filter(|p| p.len() == 2));
    c.crash();
    let left = c.namespaces();
    assert!(left.len() >= 4, "sandbox, node and pod namespaces remain after a crash: {left:?}");
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["down", "--name", &c.name])
        .output()
        .expect("skiff down");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(c.namespaces(), Vec::<String>::new());
    // A second run finds nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["down", "--name", &c.name])
        .output()
        .expect("skiff down");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing left"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn bad_usage_gets_clear_errors() {
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let out = std::process::Command::new(skiff).args(["up", "--name", "Bad_Name"]).output().expect("skiff up");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid cluster name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(skiff)
        .args(["run", "--name", "no-such-cluster-here", "--", "true"])
        .output()
        .expect("skiff run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no cluster named"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
