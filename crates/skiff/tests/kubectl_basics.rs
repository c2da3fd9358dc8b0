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
