//! `kubectl logs`, `kubectl exec`, `kubectl attach` / `kubectl run -i` and `kubectl
//! port-forward` against pods run by `skiff agent`, through the API server to the agent's
//! kubelet API.

mod agent_support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use agent_support::{sh_pod, Cluster};

#[test]
fn logs_exec_and_port_forward() {
    let cluster = Cluster::start();
    cluster.apply(&sh_pod("talker", "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; exec sleep 3600", ""));
    cluster.wait_running("talker");
    let logs = cluster.eventually("six log lines", Duration::from_secs(20), || {
        let out = cluster.kubectl(&["logs", "talker"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.lines().count() == 6).then_some(text)
    });
    // stdout keeps its order; where the stderr line lands among them is up to scheduling
    // (two pipes, as with any container runtime).
    let stdout: Vec<&str> = logs.lines().filter(|l| *l != "oops").collect();
    assert_eq!(stdout, ["line-1", "line-2", "line-3", "line-4", "line-5"], "{logs}");
    assert!(logs.lines().any(|l| l == "oops"), "{logs}");
    let last_two: Vec<String> = logs.lines().skip(4).map(|l| format!("{l}\n")).collect();
    assert_eq!(cluster.kubectl_ok(&["logs", "talker", "--tail=2"]), last_two.concat());
    let stamped = cluster.kubectl_ok(&["logs", "talker", "-c", "main", "--timestamps", "--tail=1"]);
    let last = logs.lines().last().unwrap_or_default();
    assert!(stamped.ends_with(&format!("Z {last}\n")) && stamped.starts_with("20"), "{stamped}");
    let no_previous = cluster.kubectl(&["logs", "talker", "--previous"]);
    assert!(!no_previous.status.success());

    // exec: in the pod's UTS and mount namespaces, exit codes passed through, stdin forwarded.
    assert_eq!(cluster.kubectl_ok(&["exec", "talker", "--", "hostname"]), "talker\n");
    let resolv = cluster.kubectl_ok(&["exec", "talker", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    let failed = cluster.kubectl(&["exec", "talker", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7));
    let mut cat = cluster.in_node("kubectl");
    cat.arg("--kubeconfig").arg(&cluster.kubeconfig).args(["exec", "-i", "talker", "--", "tr", "a-z", "A-Z"]);
    let mut child =
        cat.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl exec -i");
    child.stdin.take().expect("stdin").write_all(b"shout\n").expect("write");
    let out = child.wait_with_output().expect("exec output");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n", "{}", String::from_utf8_lossy(&out.stderr));

    // exec -it: a terminal inside the pod (script(1) gives kubectl a terminal of its own).
    let kubectl = format!(
        "nsenter --net=/run/netns/{} -- kubectl --kubeconfig {} exec -it talker -- sh -c 'tty; stty size'",
        cluster.node_ns,
        cluster.kubeconfig.display()
    );
    let out = std::process::Command::new("script").args(["-qec", &kubectl, "/dev/null"]).output().expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "no terminal in exec -it: {text}");

    // port-forward to a server that listens on the pod's loopback only.
    let server = "import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('127.0.0.1', 7070)); s.listen(4)\nwhile True:\n    c, a = s.accept(); c.sendall(b'from-the-pod'); c.close()\n";
    let manifest = sh_pod("local", "unused", "").replace(
        r#""command": ["/bin/sh", "-c", "unused"]"#,
        &format!(r#""command": ["/usr/bin/python3", "-c", {}]"#, serde_json::to_string(server).expect("json")),
    );
    cluster.apply(&manifest);
    cluster.wait_running("local");
    let mut forward = cluster.in_node("kubectl");
    forward.arg("--kubeconfig").arg(&cluster.kubeconfig).args(["port-forward", "pod/local", ":7070"]);
    let mut child = forward.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl port-forward");
    let mut stdout = child.stdout.take().expect("stdout");
    // "Forwarding from 127.0.0.1:PORT -> 7070"
    let mut seen = String::new();
    let port: u16 = cluster.eventually("port-forward to listen", Duration::from_secs(20), || {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).ok()?;
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.split("127.0.0.1:").nth(1)?.split_whitespace().next()?.parse().ok()
    });
    let fetch = format!(
        "import socket\nfor i in range(50):\n    try:\n        c = socket.create_connection(('127.0.0.1', {port}), timeout=2); print(c.recv(64).decode()); break\n    except OSError:\n        import time; time.sleep(0.1)\n"
    );
    let got = cluster.in_node("/usr/bin/python3").args(["-c", &fetch]).output().expect("client");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "from-the-pod");
}

#[test]
fn previous_logs_of_a_restarted_container() {
    let cluster = Cluster::start();
    cluster.apply(&sh_pod("flaky", "echo run-$(ls /tmp | wc -l) started; sleep 1; exit 1", ""));
    cluster.eventually("a restart", Duration::from_secs(30), || {
        (cluster.pod("flaky")?["status"]["containerStatuses"][0]["restartCount"].as_u64()? >= 1).then_some(())
    });
    let previous = cluster.eventually("previous logs", Duration::from_secs(20), || {
        let out = cluster.kubectl(&["logs", "flaky", "--previous"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(previous.starts_with("run-") && previous.ends_with(" started\n"), "{previous}");
}

#[test]
fn follow_logs_until_the_container_ends() {
    let cluster = Cluster::start();
    cluster.apply(&sh_pod("counter", "for i in 1 2 3; do echo n$i; sleep 0.3; done", r#", "restartPolicy": "Never""#));
    cluster.eventually("counter started", Duration::from_secs(30), || {
        let phase = cluster.pod("counter")?["status"]["phase"].as_str()?.to_owned();
        (phase == "Running" || phase == "Succeeded").then_some(())
    });
    // Follows while the container runs and ends with it.
    let out = cluster.kubectl(&["logs", "-f", "counter"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The whole log, from the start, then the stream ends with the container.
    assert_eq!(text, "n1\nn2\nn3\n");
}

/// `kubectl` in the node's network namespace with `stdin` piped in; returns (status, stdout, stderr).
fn kubectl_with_stdin(cluster: &Cluster, args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut command = cluster.in_node("kubectl");
    command.arg("--kubeconfig").arg(&cluster.kubeconfig).args(args);
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write");
    let out = child.wait_with_output().expect("kubectl output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn run_interactive_and_attach() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();

    // `kubectl run -i --rm`: the pod's own stdin (stdinOnce) gets the piped input through
    // pods/attach, its output comes back, and the pod is deleted afterwards.
    let run = ["run", "upper", "-i", "--rm", "--restart=Never", "--image=busybox", "--", "tr", "a-z", "A-Z"];
    let (code, stdout, stderr) = kubectl_with_stdin(&cluster, &run, b"attached\n");
    assert_eq!(code, Some(0), "kubectl run -i: {stdout}{stderr}");
    assert!(stdout.contains("ATTACHED"), "output of the attached container: {stdout:?} {stderr}");
    cluster.wait_gone("upper", Duration::from_secs(30));

    // `kubectl run -it`: the container gets a terminal (a pty in its shim); kubectl gets
    // one from script(1). The typed line reaches the container through the terminal.
    let kubectl = format!(
        "nsenter --net=/run/netns/{} -- kubectl --kubeconfig {} run typed -it --rm --restart=Never --image=busybox \
         -- sh -c 'read line; tty; echo got-$line'",
        cluster.node_ns,
        cluster.kubeconfig.display()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-qec", &kubectl, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = script.spawn().expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            // Typed once kubectl is attached (it reads the terminal only then); retyping is harmless.
            for _ in 0..50 {
                if stdin.write_all(b"typed\n").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let out = child.wait_with_output().expect("script output");
        let _ = writer.join();
        out
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/") && text.contains("got-typed"), "kubectl run -it: {text}");
    cluster.wait_gone("typed", Duration::from_secs(30));

    // `kubectl attach` to a running container: its output from now on, stdout and stderr.
    cluster.apply(&sh_pod(
        "ticker",
        "i=0; while true; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; sleep 0.2; done",
        "",
    ));
    cluster.wait_running("ticker");
    let mut attach = cluster.in_node("kubectl");
    attach.arg("--kubeconfig").arg(&cluster.kubeconfig).args(["attach", "ticker"]);
    let mut child = attach.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kubectl attach");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    cluster.eventually("ticks through kubectl attach", Duration::from_secs(20), || {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).ok()?;
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        (seen.matches("tick-").count() >= 3).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    // The attachment left; the container kept running and logging.
    assert_eq!(
        cluster.pod("ticker").and_then(|p| p["status"]["phase"].as_str().map(str::to_owned)).as_deref(),
        Some("Running")
    );

    // A container that is not running cannot be attached to: a clear error, not a hang.
    cluster.apply(&sh_pod("done", "exit 0", r#", "restartPolicy": "Never""#));
    cluster.eventually("pod done to finish", Duration::from_secs(20), || {
        let phase = cluster.pod("done")?["status"]["phase"].as_str()?.to_owned();
        (phase == "Succeeded").then_some(())
    });
    let out = cluster.kubectl(&["attach", "done"]);
    assert!(!out.status.success(), "attach to a finished container succeeded");
}
