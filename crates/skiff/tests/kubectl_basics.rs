//! kubectl against `skiff server`: the first things a user does.

mod common;
use common::TestServer;

#[test]
fn bootstrap_objects_are_visible() {
    let s = TestServer::start();
    let ns = s.kubectl_ok(&["get", "namespaces", "-o", "name"]);
    for want in ["namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"] {
        assert!(ns.contains(want), "{ns}");
    }
    let ip = s.kubectl_ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(ip, "10.96.0.1");
    let sa = s.kubectl_ok(&["get", "serviceaccount", "default", "-n", "kube-system", "-o", "name"]);
    assert_eq!(sa.trim(), "serviceaccount/default");
    let eps = s.kubectl_ok(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
    assert_eq!(eps, "127.0.0.1");
}

#[test]
fn anonymous_requests_are_unauthorized() {
    let s = TestServer::start();
    let server = s.kubectl_ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let ca = s.data_dir().join("pki/ca.crt");
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca)
        .arg(format!("{server}/api/v1/namespaces"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let token = std::fs::read_to_string(s.data_dir().join("pki/admin.token")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg("--cacert")
        .arg(&ca)
        .arg(format!("{server}/api/v1/namespaces"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

/// curl's verdict on the server's certificate when reached by `name` (resolved to the
/// server's loopback address): the HTTP code, or 000 when TLS verification failed.
fn https_code_by_name(s: &TestServer, name: &str) -> String {
    let url = s.url();
    let port = url.rsplit(':').next().expect("server URL has a port");
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(s.ca_cert())
        .arg(format!("https://{name}:{port}/version"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_san_adds_names_to_the_serving_certificate() {
    let plain = TestServer::start();
    assert_eq!(https_code_by_name(&plain, "api.skiff.test"), "000", "a name the certificate lacks verified");
    let s = TestServer::start_with(&["--tls-san", "api.skiff.test", "--tls-san", "192.0.2.7"]);
    assert_eq!(https_code_by_name(&s, "api.skiff.test"), "200");
}

#[test]
fn discovery_lists_the_pod_and_service_account_subresources() {
    let s = TestServer::start();
    let doc: serde_json::Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "--raw", "/api/v1"])).expect("APIResourceList JSON");
    let find = |name: &str| doc["resources"].as_array().and_then(|rs| rs.iter().find(|r| r["name"] == name).cloned());
    for (name, kind) in [
        ("pods/attach", "PodAttachOptions"),
        ("pods/exec", "PodExecOptions"),
        ("pods/portforward", "PodPortForwardOptions"),
        ("pods/log", "Pod"),
        ("pods/binding", "Binding"),
        ("pods/status", "Pod"),
    ] {
        let entry = find(name).unwrap_or_else(|| panic!("{name} missing from /api/v1"));
        assert_eq!(entry["kind"], kind, "{entry}");
    }
    let token = find("serviceaccounts/token").expect("serviceaccounts/token");
    assert_eq!(
        (token["group"].as_str(), token["kind"].as_str()),
        (Some("authentication.k8s.io"), Some("TokenRequest"))
    );
    // kubectl still reads the aggregated form with them in it.
    assert!(s.kubectl_ok(&["api-resources", "--api-group="]).contains("pods"));
}
