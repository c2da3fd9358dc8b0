//! Cluster DNS in a real `skiff up --isolated` cluster, asked from inside pods with `dig`
//! (through `kubectl exec`, so the pod's own /etc/resolv.conf, search path and the service
//! proxy's path to kube-dns 10.96.0.10 are all on the way): the dns.md checklist rows that
//! matter in a cluster, answers following endpoint changes, and kube-dns listing only DNS pods
//! whose `/readyz` passes.

mod cluster_support;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_support::{netexec_deployment, Cluster, AGNHOST};

const WAIT: Duration = Duration::from_secs(60);
/// How long a change in the API may take to show in DNS answers (the proxy, the controllers
/// and the DNS watch are all on the way; the DNS itself answers from the watch).
const DNS_WAIT: Duration = Duration::from_secs(20);
const ZONE: &str = "cluster.local";

/// A pod with `spec.hostname` and `spec.subdomain` (how StatefulSet pods get stable names).
fn pet_pod(name: &str, hostname: &str, subdomain: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: pet}}}}
spec:
  hostname: {hostname}
  subdomain: {subdomain}
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080"]
    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// `dig ARGS…` inside `pod` (its resolv.conf names the cluster DNS); stdout.
fn dig(c: &Cluster, pod: &str, args: &[&str]) -> String {
    let mut all = vec!["kubectl", "exec", pod, "--", "dig", "+time=2", "+tries=2"];
    all.extend_from_slice(args);
    c.run_ok(&all)
}

/// `dig +short` lines, sorted (answers of record sets are rotated).
fn short(c: &Cluster, pod: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> =
        dig(c, pod, &all).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    lines.sort();
    lines
}

fn sorted(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v
}

fn cluster_ip(c: &Cluster, namespace: &str, service: &str) -> String {
    c.kubectl(&["get", "svc", "-n", namespace, service, "-o", "jsonpath={.spec.clusterIP}"])
}

/// The `status:` of a full dig answer (NOERROR, NXDOMAIN, …).
fn status(answer: &str) -> &str {
    answer.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("")
}

/// The first record of the AUTHORITY SECTION, whitespace-normalised.
fn authority(answer: &str) -> String {
    answer
        .split(";; AUTHORITY SECTION:")
        .nth(1)
        .and_then(|s| s.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Waits until the client pod gets `want` from `dig +short ARGS` (sorted lines).
fn eventually_short(c: &Cluster, pod: &str, args: &[&str], want: &[String], what: &str) {
    c.eventually(what, DNS_WAIT, || {
        let out = c.run(&[&["kubectl", "exec", pod, "--", "dig", "+time=2", "+tries=1", "+short"][..], args].concat());
        let got = sorted(
            String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned),
        );
        (got == want).then_some(())
    });
}

#[test]
fn service_records_from_a_pod() {
    let c = Cluster::up(2, "nftables");
    c.apply(&netexec_deployment("web", 2));
    c.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: echo, port: 8081, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: hdls}
spec:
  clusterIP: None
  selector: {app: pet}
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: www.example.com}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: other}
spec:
  ports: [{port: 80}]
"#,
    );
    c.apply(&pet_pod("pet-a", "pet-0", "hdls"));
    c.apply(&pet_pod("pet-b", "pet-1", "hdls"));
    let web = c.eventually("2 ready web pods", WAIT, || Some(c.ready_pods("app=web")).filter(|p| p.len() == 2));
    let pets = c.eventually("2 ready pet pods", WAIT, || Some(c.ready_pods("app=pet")).filter(|p| p.len() == 2));
    let client = web[0].0.as_str();
    let web_ip = cluster_ip(&c, "default", "web");
    let other_ip = cluster_ip(&c, "other", "svc");
    let web_fqdn = format!("web.default.svc.{ZONE}");

    // The short name through the pod's search path (the first lookup also waits for the
    // DNS pods to be reachable through the proxy).
    eventually_short(&c, client, &["+search", "web"], std::slice::from_ref(&web_ip), "web by its short name");
    let resolv = c.kubectl(&["exec", client, "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");

    // FQDN over UDP and TCP, `<svc>.<ns>`, `<svc>.<ns>.svc`, a cross-namespace name, and
    // the kubernetes Service as conformance probes it. The client is a known pod (an
    // endpoint of `web`), so the server completes its search path itself: the first query,
    // `<name>.default.svc.<zone>`, is answered with a CNAME to the name the path finds.
    assert_eq!(short(&c, client, &[&web_fqdn, "A"]), std::slice::from_ref(&web_ip));
    assert_eq!(short(&c, client, &["+tcp", &web_fqdn, "A"]), std::slice::from_ref(&web_ip));
    let completed = |ip: &str, fqdn: &str| sorted([ip.to_owned(), format!("{fqdn}.")]);
    assert_eq!(short(&c, client, &["+search", "web.default"]), completed(&web_ip, &web_fqdn));
    assert_eq!(short(&c, client, &["+search", "web.default.svc"]), completed(&web_ip, &web_fqdn));
    assert_eq!(short(&c, client, &["+search", "svc.other"]), completed(&other_ip, &format!("svc.other.svc.{ZONE}")));
    assert_eq!(
        short(&c, client, &["+search", "kubernetes.default"]),
        completed("10.96.0.1", &format!("kubernetes.default.svc.{ZONE}"))
    );
    // Without completion (the name asked as is), the cross-namespace FQDN is just the A.
    assert_eq!(short(&c, client, &[&format!("svc.other.svc.{ZONE}"), "A"]), std::slice::from_ref(&other_ip));
    assert_eq!(short(&c, client, &[&format!("dns-version.{ZONE}"), "TXT"]), ["\"1.1.0\""]);

    // SRV for named ports (TCP and UDP), and the ClusterIP's PTR.
    assert_eq!(short(&c, client, &[&format!("_http._tcp.{web_fqdn}"), "SRV"]), [format!("0 100 80 {web_fqdn}.")]);
    assert_eq!(
        short(&c, client, &["+tcp", &format!("_echo._udp.{web_fqdn}"), "SRV"]),
        [format!("0 100 8081 {web_fqdn}.")]
    );
    assert_eq!(short(&c, client, &["-x", &web_ip]), [format!("{web_fqdn}.")]);

    // Headless: every ready pod IP, the hostname/subdomain names, SRV per endpoint, PTRs.
    let hdls = format!("hdls.default.svc.{ZONE}");
    let pet_ips = sorted(pets.iter().map(|p| p.1.clone()));
    eventually_short(&c, client, &[&hdls, "A"], &pet_ips, "the headless Service's pod IPs");
    assert_eq!(short(&c, client, &["+tcp", &hdls, "A"]), pet_ips);
    for (pod, ip, _) in &pets {
        let hostname = if pod == "pet-a" { "pet-0" } else { "pet-1" };
        let pet_name = format!("{hostname}.{hdls}");
        assert_eq!(short(&c, client, &[&pet_name, "A"]), std::slice::from_ref(ip), "{pet_name}");
        assert_eq!(short(&c, client, &["-x", ip]), [format!("{pet_name}.")], "PTR of {ip}");
    }
    assert_eq!(
        short(&c, client, &[&format!("_http._tcp.{hdls}"), "SRV"]),
        [format!("0 50 8080 pet-0.{hdls}."), format!("0 50 8080 pet-1.{hdls}.")]
    );

    // ExternalName: a CNAME to the external name.
    assert_eq!(short(&c, client, &[&format!("ext.default.svc.{ZONE}"), "CNAME"]), ["www.example.com."]);

    // The legacy pod record conformance still probes: the client's dashed IP.
    let dashed = format!("{}.default.pod.{ZONE}", web[0].1.replace('.', "-"));
    assert_eq!(short(&c, client, &[&dashed, "A"]), [web[0].1.clone()]);

    // Missing names: NXDOMAIN, authoritative, with the zone's SOA (over UDP and TCP); an
    // existing name with another type is NODATA.
    let soa = format!("{ZONE}. 30 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}.");
    for transport in ["+notcp", "+tcp"] {
        let missing = dig(&c, client, &[transport, &format!("nosuch.default.svc.{ZONE}"), "A"]);
        assert_eq!(status(&missing), "NXDOMAIN", "{missing}");
        assert!(missing.contains(" aa"), "authoritative: {missing}");
        assert!(authority(&missing).starts_with(&soa), "{missing}");
    }
    let wrong_ns = dig(&c, client, &[&format!("web.nosuchns.svc.{ZONE}"), "A"]);
    assert_eq!(status(&wrong_ns), "NXDOMAIN", "{wrong_ns}");
    let nodata = dig(&c, client, &[&web_fqdn, "AAAA"]);
    assert_eq!(status(&nodata), "NOERROR", "{nodata}");
    assert!(short(&c, client, &[&web_fqdn, "AAAA"]).is_empty());
    assert!(authority(&nodata).starts_with(&soa), "{nodata}");
}

#[test]
fn answers_follow_the_cluster() {
    let c = Cluster::up(2, "nftables");
    c.apply(&netexec_deployment("client", 1));
    c.apply(&netexec_deployment("pets", 1));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: pets}\nspec:\n  clusterIP: None\n  selector: {app: pets}\n  \
         ports: [{name: http, port: 8080}]\n",
    );
    let client = c.eventually("a ready client pod", WAIT, || c.ready_pods("app=client").into_iter().next()).0;
    let pets = format!("pets.default.svc.{ZONE}");

    // A headless Deployment scaled up and down: the A set is always the ready pods' IPs.
    for replicas in [1usize, 3, 1] {
        c.kubectl(&["scale", "deployment", "pets", &format!("--replicas={replicas}")]);
        let ips = c.eventually(&format!("{replicas} ready pets"), WAIT, || {
            let ready = c.ready_pods("app=pets");
            (ready.len() == replicas).then(|| sorted(ready.into_iter().map(|p| p.1)))
        });
        eventually_short(&c, &client, &[&pets, "A"], &ips, &format!("{replicas} pet IPs in DNS"));
    }

    // A Service created after the pod resolves by its short name; deleted, it is NXDOMAIN.
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec:\n  ports: [{port: 80}]\n");
    let late_ip = cluster_ip(&c, "default", "late");
    eventually_short(&c, &client, &["+search", "late"], &[late_ip], "the late Service by its short name");
    c.kubectl(&["delete", "svc", "late"]);
    let late = format!("late.default.svc.{ZONE}");
    c.eventually("the deleted Service to be NXDOMAIN", DNS_WAIT, || {
        (status(&dig(&c, &client, &[&late, "A"])) == "NXDOMAIN").then_some(())
    });

    // kube-dns lists only DNS pods that pass /readyz: a DNS pod that can never sync its watch
    // (its kubeconfig names a closed loopback port) is Running, healthy, but not ready.
    let kubeconfig = c.dir.path().join("unreachable-kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", \
         insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: \
         {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .expect("writing a kubeconfig");
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: dns-unsynced, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers:
  - name: dns
    image: skiff.io/skiff:latest
    args: ["dns", "--kubeconfig", "{}", "--listen", "0.0.0.0:53", "--metrics-listen", "0.0.0.0:9153"]
    readinessProbe: {{httpGet: {{path: /readyz, port: 9153}}, periodSeconds: 1}}
"#,
        kubeconfig.display()
    ));
    let unsynced_ip = c.eventually("the unsynced DNS pod running", WAIT, || {
        let pod = c.kubectl_json(&["get", "pod", "-n", "kube-system", "dns-unsynced"]);
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_owned();
        (pod["status"]["phase"] == "Running" && !ip.is_empty()).then_some(ip)
    });
    let health = |path: &str| {
        c.run_ok(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{unsynced_ip}:9153{path}")])
    };
    c.eventually("the unsynced DNS pod serving /healthz", WAIT, || (health("/healthz") == "200").then_some(()));
    assert_eq!(health("/readyz"), "503");
    // The EndpointSlice controller saw it (it is listed) and published it as not ready.
    let (ready, not_ready) = c.eventually("kube-dns endpoints with the unsynced pod", WAIT, || {
        let slices = c.kubectl_json(&[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
        ]);
        let mut ready = BTreeSet::new();
        let mut not_ready = BTreeSet::new();
        for ep in slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        {
            let ip = ep["addresses"][0].as_str().unwrap_or_default().to_owned();
            if ep["conditions"]["ready"] == false {
                not_ready.insert(ip);
            } else {
                ready.insert(ip);
            }
        }
        not_ready.contains(&unsynced_ip).then_some((ready, not_ready))
    });
    let dns_pods: BTreeSet<String> = c.kubectl_json(&["get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns"])
        ["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "dns-unsynced")
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(dns_pods.len(), 2, "the two skiff-dns replicas are ready");
    assert_eq!(ready, dns_pods, "kube-dns ready endpoints: exactly the ready DNS pods; not ready: {not_ready:?}");
    let endpoints = c.kubectl_json(&["get", "endpoints", "-n", "kube-system", "kube-dns"]);
    let not_ready_addresses: Vec<&str> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["notReadyAddresses"].as_array().into_iter().flatten())
        .filter_map(|a| a["ip"].as_str())
        .collect();
    assert!(not_ready_addresses.contains(&unsynced_ip.as_str()), "Endpoints: {endpoints}");
    // The proxy sends queries only to ready DNS pods: every lookup succeeds (the unsynced
    // one would answer SERVFAIL), over UDP and TCP.
    for i in 0..6 {
        let transport = if i % 2 == 0 { "+notcp" } else { "+tcp" };
        let answer = dig(&c, &client, &[transport, &pets, "A"]);
        assert_eq!(status(&answer), "NOERROR", "{answer}");
    }
}
