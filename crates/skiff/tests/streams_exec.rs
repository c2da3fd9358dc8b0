//! `kubectl exec` through the API server to a node's kubelet API (WebSocket
//! v5.channel.k8s.io end to end): output, exit codes, stdin, terminals, container choice and
//! the API server's validation.

mod common;
mod streams_support;

use std::io::Write;
use std::process::{Command, Stdio};

use skiff_streams::TerminalSize;
use streams_support::Cluster;

fn cluster() -> Cluster {
    let c = Cluster::start();
    c.pod("p", &["main"], Some("node-1"), &[]);
    c
}

#[test]
fn exec_runs_commands_and_propagates_exit_codes() {
    let c = cluster();
    assert_eq!(c.server.kubectl_ok(&["exec", "p", "--", "echo", "hi"]), "hi\n");

    let out = c.server.kubectl(&["exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("err\n"), "{stderr}");
    assert!(stderr.contains("command terminated with exit code 3"), "{stderr}");

    // A command that cannot start is reported with kubelet's wording.
    let stderr = c.server.kubectl_err(&["exec", "p", "--", "/no/such/program"]);
    assert!(stderr.contains("error executing command in container"), "{stderr}");
}

#[test]
fn exec_passes_stdin_and_its_end() {
    let c = cluster();
    let data = "data\nmore data\n".repeat(2000);
    let out = c.server.kubectl_stdin(&["exec", "-i", "p", "--", "cat"], &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), data);
    let out = c.server.kubectl_stdin(&["exec", "-i", "p", "--", "wc", "-l"], "a\nb\nc\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
}

#[test]
fn exec_with_a_terminal() {
    let c = cluster();
    // `script` gives kubectl a terminal (sized here), so `-it` puts it in raw mode and sends
    // the terminal's size on the resize channel.
    let kubectl =
        format!("stty cols 123 rows 45; kubectl --kubeconfig {} exec -it p -- tty", c.server.kubeconfig.display());
    let mut child = Command::new("script")
        .args(["-qec", &kubectl, "/dev/null"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("/dev/pts/"), "the command saw no terminal: {stdout:?}");
    let wanted = TerminalSize { width: 123, height: 45 };
    c.server.eventually("the terminal size to reach the runtime", std::time::Duration::from_secs(10), || {
        c.kubelet.runtime.resizes.lock().unwrap().contains(&wanted).then_some(())
    });

    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("kubectl --kubeconfig {} exec -i -t p -- sh", c.server.kubeconfig.display()),
            "/dev/null",
        ])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running script");
    child.stdin.take().unwrap().write_all(b"echo typed-$((40+2))\nexit 7\n").unwrap();
    let out = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("typed-42"), "{stdout:?}");
}

#[test]
fn containers_are_chosen_and_validated_by_the_api_server() {
    let c = cluster();
    c.pod("multi", &["a", "b"], Some("node-1"), &[]);
    c.pod("annotated", &["a", "b"], Some("node-1"), &[("kubectl.kubernetes.io/default-container", "b")]);
    c.pod("unbound", &["main"], None, &[]);

    assert_eq!(c.server.kubectl_ok(&["exec", "multi", "-c", "b", "--", "echo", "in-b"]), "in-b\n");

    let exec = |pod: &str, query: &str| {
        c.server
            .http("GET", &format!("/api/v1/namespaces/default/pods/{pod}/exec?command=true&stdout=true{query}"))
            .send()
    };
    let reply = exec("multi", "");
    assert_eq!(reply.code, 400, "{}", reply.body);
    assert_eq!(reply.json()["message"], "a container name must be specified for pod multi, choose one of: [a b]");
    let reply = exec("multi", "&container=zz");
    assert_eq!(reply.code, 400);
    assert_eq!(reply.json()["message"], "container zz is not valid for pod multi");
    let reply = exec("unbound", "");
    assert_eq!(reply.code, 400);
    assert_eq!(reply.json()["message"], "pod unbound does not have a host assigned");
    let reply = exec("nosuch", "");
    assert_eq!(reply.code, 404);
    assert_eq!(reply.json()["reason"], "NotFound");
    // The annotated pod resolves to its default container; without an upgrade the request
    // then fails for that reason, past validation.
    let reply = exec("annotated", "");
    assert_eq!(reply.code, 400);
    assert_eq!(reply.json()["message"], "Upgrade request required");
    let reply = exec("p", "&stdin=maybe");
    assert_eq!(reply.code, 400);
}

#[test]
fn exec_over_the_spdy_fallback() {
    let c = cluster();
    let spdy = |args: &[&str], stdin: &str| {
        let mut child = c
            .server
            .kubectl_cmd()
            .args(args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().expect("kubectl output")
    };
    let out = spdy(&["exec", "p", "--", "sh", "-c", "echo out; echo err >&2; exit 5"], "");
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    let data = "spdy stdin\n".repeat(5000);
    let out = spdy(&["exec", "-i", "p", "--", "cat"], &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), data);
}
