//! `skiff agent` pod networking on one node: pod IPs from the podCIDR, a new IP for a
//! replaced pod, pod↔pod traffic keeping the client's pod IP, the node reaching a pod IP
//! (ICMP echo), and containers of one pod talking over localhost.

mod agent_support;

use std::time::Duration;

use agent_support::{path_str, Cluster, NODE_NAME};

/// A pod running a Python program (the host's python3, as a busybox-style image would).
fn python_pod(name: &str, containers: &[(&str, String)]) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|(c, script)| {
            let script = serde_json::to_string(script).expect("json");
            format!(r#"{{"name": "{c}", "image": "busybox", "command": ["/usr/bin/python3", "-c", {script}]}}"#)
        })
        .collect();
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"nodeName": "{NODE_NAME}", "terminationGracePeriodSeconds": 1, "containers": [{}]}}}}"#,
        containers.join(",")
    )
}

/// Accepts connections on `port`, writes each client's address to `<out>/<file>`.
fn server_script(out: &str, port: u16, file: &str, host: &str) -> String {
    format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{host}', {port})); s.listen(16)\n\
         while True:\n    c, a = s.accept()\n    open('{out}/{file}', 'w').write(a[0] + '\\nEND\\n')\n    c.sendall(b'hello'); c.close()\n"
    )
}

/// Connects to `ip:port` (retrying), writes the answer to `<out>/<file>`, then idles.
fn client_script(out: &str, ip: &str, port: u16, file: &str) -> String {
    format!(
        "import socket, time\n\
         for i in range(300):\n    try:\n        c = socket.create_connection(('{ip}', {port}), timeout=1)\n        d = c.recv(16)\n        \
         open('{out}/{file}', 'w').write(d.decode() + '\\nEND\\n'); break\n    except OSError:\n        time.sleep(0.1)\n\
         time.sleep(3600)\n"
    )
}

/// ICMP echo to `ip` from the node's network namespace; returns whether a reply came.
fn ping_from_node(cluster: &Cluster, ip: &str) -> bool {
    let script = format!(
        "import socket, struct, sys\n\
         def csum(b):\n    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n    s = (s >> 16) + (s & 0xffff); s += s >> 16\n    return ~s & 0xffff\n\
         hdr = struct.pack('!BBHHH', 8, 0, 0, 77, 1) + b'skiffping'\n\
         pkt = struct.pack('!BBHHH', 8, 0, csum(hdr + b'\\0'), 77, 1) + b'skiffping'\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)\n\
         s.sendto(pkt, ('{ip}', 0))\n\
         while True:\n    data, addr = s.recvfrom(1024)\n    if addr[0] == '{ip}' and data[20] == 0:\n        print('reply'); sys.exit(0)\n"
    );
    let out = cluster.in_node("/usr/bin/python3").args(["-c", &script]).output().expect("python ping");
    String::from_utf8_lossy(&out.stdout).contains("reply")
}

#[test]
fn pods_get_ips_talk_by_ip_and_are_pingable() {
    let cluster = Cluster::start();
    let out = path_str(&cluster.out);
    cluster.apply(&python_pod("server", &[("srv", server_script(&out, 8080, "peer", "0.0.0.0"))]));
    let server_ip = cluster.pod_ip("server");
    let node = cluster.get_json(&["get", "node", NODE_NAME]).expect("node");
    assert_eq!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    assert_eq!(node["status"]["addresses"][0]["address"], agent_support::NODE_IP);
    let lease = cluster.get_json(&["get", "lease", "-n", "kube-node-lease", NODE_NAME]).expect("node lease");
    assert_eq!(lease["spec"]["holderIdentity"], NODE_NAME);
    let pod_cidr = node["spec"]["podCIDR"].as_str().expect("podCIDR").to_owned();
    let prefix = pod_cidr.rsplit_once('.').map(|(p, _)| p.to_owned()).expect("cidr prefix");
    assert!(server_ip.starts_with(&format!("{prefix}.")), "pod IP {server_ip} outside podCIDR {pod_cidr}");

    cluster.apply(&python_pod("client", &[("cli", client_script(&out, &server_ip, 8080, "answer"))]));
    let client_ip = cluster.pod_ip("client");
    assert_ne!(client_ip, server_ip);
    assert_eq!(cluster.wait_file("answer").trim(), "hello");
    assert_eq!(cluster.wait_file("peer").trim(), client_ip, "the server sees the client's pod IP (no NAT)");

    assert!(ping_from_node(&cluster, &server_ip), "the node reaches the pod IP");

    assert_eq!(cluster.agent_http("/readyz"), "ok");
    let metrics = cluster.agent_http("/metrics");
    assert!(metrics.contains("skiff_agent_pods 2\n"), "{metrics}");
    assert!(metrics.contains("skiff_agent_sandbox_setup_seconds_count 2\n"), "{metrics}");
    assert!(metrics.contains("skiff_agent_pod_start_seconds_count 2\n"), "{metrics}");

    let pod = cluster.pod("server").expect("server pod");
    assert_eq!(pod["status"]["hostIP"], agent_support::NODE_IP);
    assert_eq!(pod["status"]["podIPs"][0]["ip"], server_ip.as_str());
    let conditions: Vec<String> = pod["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| format!("{}={}", c["type"].as_str().unwrap_or_default(), c["status"].as_str().unwrap_or_default()))
        .collect();
    for want in ["PodScheduled=True", "Initialized=True", "ContainersReady=True", "Ready=True"] {
        assert!(conditions.contains(&want.to_owned()), "{want} missing in {conditions:?}");
    }
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());

    // A replaced pod gets a new IP; the old namespace goes away.
    assert_eq!(cluster.pod_namespaces().len(), 2);
    cluster.kubectl_ok(&["delete", "pod", "server", "--wait=false"]);
    cluster.wait_gone("server", Duration::from_secs(30));
    cluster.eventually("the pod namespace to be removed", Duration::from_secs(10), || {
        (cluster.pod_namespaces().len() == 1).then_some(())
    });
    cluster.apply(&python_pod("server", &[("srv", server_script(&out, 8080, "peer", "0.0.0.0"))]));
    let new_ip = cluster.pod_ip("server");
    assert_ne!(new_ip, server_ip, "a new pod gets a new IP");
}

#[test]
fn containers_of_a_pod_share_localhost() {
    let cluster = Cluster::start();
    let out = path_str(&cluster.out);
    cluster.apply(&python_pod(
        "duo",
        &[
            ("server", server_script(&out, 9090, "local-peer", "127.0.0.1")),
            ("client", client_script(&out, "127.0.0.1", 9090, "local-answer")),
        ],
    ));
    assert_eq!(cluster.wait_file("local-answer").trim(), "hello");
    assert_eq!(cluster.wait_file("local-peer").trim(), "127.0.0.1");
    let pod = cluster.wait_ready("duo", true);
    assert_eq!(pod["status"]["containerStatuses"].as_array().map(Vec::len), Some(2));
}

/// `ip -n <ns> <args>` output.
fn ip_in(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip").args(["-n", ns]).args(args).output().expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn node_routes_pod_routes_and_host_network_pods() {
    let cluster = Cluster::start();
    // Another node whose InternalIP is the underlay peer: the controllers give it a podCIDR
    // and this node routes that podCIDR via its InternalIP.
    cluster.apply(
        r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"},
  "status": {"addresses": [{"type": "InternalIP", "address": "172.31.0.1"}]}}"#,
    );
    let other_cidr = cluster.eventually("node-2 podCIDR", Duration::from_secs(20), || {
        cluster.get_json(&["get", "node", "node-2"])?["spec"]["podCIDR"].as_str().map(str::to_owned)
    });
    // Node status may be reset by create; make sure the InternalIP is there.
    cluster.kubectl_ok(&[
        "patch",
        "node",
        "node-2",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"addresses": [{"type": "InternalIP", "address": "172.31.0.1"}]}}"#,
    ]);
    cluster.eventually("a route to node-2's podCIDR", Duration::from_secs(20), || {
        ip_in(&cluster.node_ns, &["route", "show", &other_cidr]).contains("via 172.31.0.1").then_some(())
    });
    let service_route = ip_in(&cluster.node_ns, &["route", "show", "10.96.0.0/16"]);
    assert!(service_route.contains("src 172.31.0.2"), "service CIDR route: {service_route:?}");
    let forward = cluster.in_node("cat").arg("/proc/sys/net/ipv4/ip_forward").output().expect("cat");
    assert_eq!(String::from_utf8_lossy(&forward.stdout).trim(), "1", "ip_forward on in the node");

    // Deleting node-2 removes its route.
    cluster.kubectl_ok(&["delete", "node", "node-2"]);
    cluster.eventually("the route to node-2 to go", Duration::from_secs(20), || {
        ip_in(&cluster.node_ns, &["route", "show", &other_cidr]).trim().is_empty().then_some(())
    });

    // Inside a pod: the pod subnet, cluster CIDR, service CIDR and node subnet; no default route.
    let out = path_str(&cluster.out);
    cluster.apply(&agent_support::sh_pod("routed", "exec sleep 3600", ""));
    cluster.wait_running("routed");
    let ns = cluster.pod_namespaces().into_iter().next().expect("pod namespace");
    let routes = ip_in(&ns, &["route", "show"]);
    assert!(!routes.contains("default"), "{routes}");
    for want in ["10.244.0.0/16 via 10.244.0.1", "10.96.0.0/16 via 10.244.0.1", "172.31.0.0/24 via 10.244.0.1"] {
        assert!(routes.contains(want), "missing {want:?} in {routes}");
    }
    assert!(ip_in(&ns, &["link", "show", "lo"]).contains("UP"), "lo is up");

    // A hostNetwork pod runs in the node's namespace with the node's IP.
    let script = format!("(cat /proc/net/dev | grep -c skiff0; echo END) > {out}/hostnet; exec sleep 3600");
    cluster.apply(&agent_support::sh_pod("hostnet", &script, r#", "hostNetwork": true"#));
    let pod = cluster.wait_running("hostnet");
    assert_eq!(pod["status"]["podIP"], agent_support::NODE_IP);
    assert_eq!(cluster.wait_file("hostnet").trim(), "1", "sees the node's bridge");
    assert_eq!(cluster.pod_namespaces().len(), 1, "no namespace for a hostNetwork pod");
}
