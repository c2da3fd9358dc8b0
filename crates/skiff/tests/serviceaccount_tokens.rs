//! The TokenRequest API (`serviceaccounts/{name}/token`) through `kubectl create token`, and
//! the tokens it returns authenticating to the API server.

mod common;

use common::TestServer;

#[test]
fn kubectl_create_token_issues_working_tokens() {
    let s = TestServer::start();
    let token = s.kubectl_ok(&["create", "token", "default", "-n", "default"]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // The token authenticates as the ServiceAccount (kubectl with only the token and the CA).
    let server = s.kubectl_ok(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]);
    let out = std::process::Command::new("kubectl")
        .args(["--server", &server, "--certificate-authority"])
        .arg(s.ca_cert())
        .args(["--token", token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl");
    let whoami = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let out = std::process::Command::new("kubectl")
        .args(["--server", &server, "--certificate-authority"])
        .arg(s.ca_cert())
        .args(["--token", token, "get", "namespaces", "-o", "name"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "token accepted: {} ({whoami})", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));

    // A forged token is refused.
    let mut forged = token.to_string();
    forged.push('x');
    let out = std::process::Command::new("kubectl")
        .args(["--server", &server, "--certificate-authority"])
        .arg(s.ca_cert())
        .args(["--token", &forged, "get", "namespaces"])
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("kubectl");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"), "{}", String::from_utf8_lossy(&out.stderr));

    // Bad requests: too short a duration, a missing account.
    let short = s.kubectl_err(&["create", "token", "default", "--duration=1m"]);
    assert!(short.contains("may not specify a duration less than 10 minutes"), "{short}");
    let missing = s.kubectl_err(&["create", "token", "nope"]);
    assert!(missing.contains("serviceaccounts \"nope\" not found"), "{missing}");
}
