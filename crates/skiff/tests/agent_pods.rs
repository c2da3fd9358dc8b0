//! `skiff agent` pod behaviour on one node: the pod's resolv.conf, hosts and hostname,
//! environment (downward API, ConfigMap/Secret keys, service variables of Services that
//! existed at start), probes driving readiness, graceful termination, restart back-off,
//! and the clear waiting reason of an image skiff cannot run.

mod agent_support;

use std::time::Duration;

use agent_support::{path_str, sh_pod, Cluster};

fn service(name: &str, port: u16) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "{name}"}},
  "spec": {{"selector": {{"app": "{name}"}}, "ports": [{{"name": "http", "port": {port}, "targetPort": 8080}}]}}}}"#
    )
}

fn env_of(dump: &str, name: &str) -> Option<String> {
    dump.lines().find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[test]
fn pod_files_hostname_and_environment() {
    let cluster = Cluster::start();
    let out = path_str(&cluster.out);
    cluster.apply(&service("before-svc", 8765));
    cluster
        .apply(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"color": "blue"}}"#);
    cluster.apply(
        r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "stringData": {"pw": "hunter2"}}"#,
    );
    let script = format!(
        "cat /etc/resolv.conf > {out}/resolv.tmp; echo END >> {out}/resolv.tmp; mv {out}/resolv.tmp {out}/resolv; \
         cat /etc/hosts > {out}/hosts.tmp; echo END >> {out}/hosts.tmp; mv {out}/hosts.tmp {out}/hosts; \
         (hostname; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; echo END) > {out}/hostname.tmp; mv {out}/hostname.tmp {out}/hostname; \
         (env; echo END) > {out}/env.tmp; mv {out}/env.tmp {out}/env; \
         exec sleep 3600"
    );
    let env = r#", "hostname": "db", "subdomain": "backend",
        "dnsConfig": {"options": [{"name": "edns0"}]}"#;
    let mut manifest = sh_pod("files", &script, env);
    manifest = manifest.replace(
        r#""command":"#,
        r#""env": [
          {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
          {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
          {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
          {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
          {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
          {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
          {"name": "GREETING", "value": "hi-$(MY_POD)"}],
        "workingDir": "/tmp",
        "command":"#,
    );
    cluster.apply(&manifest);
    let pod_ip = cluster.pod_ip("files");
    // Created after the pod started: must not appear in its environment.
    cluster.apply(&service("after-svc", 8766));

    let resolv = cluster.wait_file("resolv");
    assert!(resolv.contains("nameserver 10.96.0.10\n"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5 edns0\n"), "{resolv}");

    let hosts = cluster.wait_file("hosts");
    assert!(hosts.contains("# Kubernetes-managed hosts file."), "{hosts}");
    assert!(hosts.contains(&format!("{pod_ip}\tdb.backend.default.svc.cluster.local\tdb\n")), "{hosts}");

    let hostname = cluster.wait_file("hostname");
    assert_eq!(hostname.lines().collect::<Vec<_>>(), vec!["db", "default"]);

    let env = cluster.wait_file("env");
    assert_eq!(env_of(&env, "MY_POD").as_deref(), Some("files"));
    assert_eq!(env_of(&env, "MY_NS").as_deref(), Some("default"));
    assert_eq!(env_of(&env, "MY_IP").as_deref(), Some(pod_ip.as_str()));
    assert_eq!(env_of(&env, "MY_NODE").as_deref(), Some(agent_support::NODE_NAME));
    assert_eq!(env_of(&env, "COLOR").as_deref(), Some("blue"));
    assert_eq!(env_of(&env, "PW").as_deref(), Some("hunter2"));
    assert_eq!(env_of(&env, "GREETING").as_deref(), Some("hi-files"));
    assert_eq!(env_of(&env, "PWD").as_deref(), Some("/tmp"));
    assert_eq!(env_of(&env, "KUBERNETES_SERVICE_HOST").as_deref(), Some("10.96.0.1"));
    assert_eq!(env_of(&env, "KUBERNETES_SERVICE_PORT").as_deref(), Some("443"));
    let before_ip = cluster.kubectl_ok(&["get", "svc", "before-svc", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(env_of(&env, "BEFORE_SVC_SERVICE_HOST").as_deref(), Some(before_ip.as_str()));
    assert_eq!(env_of(&env, "BEFORE_SVC_SERVICE_PORT").as_deref(), Some("8765"));
    assert_eq!(env_of(&env, "BEFORE_SVC_SERVICE_PORT_HTTP").as_deref(), Some("8765"));
    assert_eq!(env_of(&env, "BEFORE_SVC_PORT").as_deref(), Some(format!("tcp://{before_ip}:8765").as_str()));
    assert_eq!(env_of(&env, "BEFORE_SVC_PORT_8765_TCP_ADDR").as_deref(), Some(before_ip.as_str()));
    assert!(env_of(&env, "AFTER_SVC_SERVICE_HOST").is_none(), "a Service created after the pod started leaked in");
}

#[test]
fn readiness_probe_flips_ready_and_liveness_restarts() {
    let cluster = Cluster::start();
    let flag = cluster.out.join("ready-flag");
    let flag = path_str(&flag);
    let probes = format!(
        r#""readinessProbe": {{"exec": {{"command": ["test", "-f", "{flag}"]}}, "periodSeconds": 1, "failureThreshold": 1}},"#
    );
    let manifest = sh_pod("probed", "exec sleep 3600", "").replace(r#""command":"#, &format!("{probes} \"command\":"));
    cluster.apply(&manifest);
    cluster.wait_running("probed");
    let pod = cluster.wait_ready("probed", false);
    assert_eq!(pod["status"]["containerStatuses"][0]["ready"], false);
    std::fs::write(&flag, "x").expect("flag");
    cluster.wait_ready("probed", true);
    std::fs::remove_file(&flag).expect("unflag");
    cluster.wait_ready("probed", false);

    // A failing liveness probe restarts the container.
    let live = r#""livenessProbe": {"tcpSocket": {"port": 7777}, "periodSeconds": 1, "failureThreshold": 2},"#;
    let manifest = sh_pod("unlive", "exec sleep 3600", "").replace(r#""command":"#, &format!("{live} \"command\":"));
    cluster.apply(&manifest);
    cluster.eventually("a liveness restart", Duration::from_secs(30), || {
        let pod = cluster.pod("unlive")?;
        (pod["status"]["containerStatuses"][0]["restartCount"].as_u64()? >= 1).then_some(())
    });
    let events = cluster.events_for("unlive");
    assert!(events.iter().any(|e| e.starts_with("Unhealthy: Liveness probe failed")), "{events:?}");
}

#[test]
fn termination_honours_sigterm_and_the_grace_period() {
    let cluster = Cluster::start();
    let out = path_str(&cluster.out);
    // Handles SIGTERM: writes a file, then exits after a short cleanup.
    let polite = format!(
        "trap 'echo term > {out}/polite; echo END >> {out}/polite; exit 0' TERM; while true; do sleep 0.1; done"
    );
    cluster.apply(&sh_pod("polite", &polite, ""));
    // Ignores SIGTERM: must be killed once the grace period is over.
    // `$$$$`: Kubernetes turns `$$` into `$` in commands, so the shell sees `$$`.
    let stubborn = format!("trap '' TERM; echo $$$$ > {out}/stubborn.pid; while true; do sleep 0.1; done");
    let stubborn = sh_pod("stubborn", &stubborn, "")
        .replace(r#""terminationGracePeriodSeconds": 2"#, r#""terminationGracePeriodSeconds": 4"#);
    cluster.apply(&stubborn);
    cluster.wait_running("polite");
    cluster.wait_running("stubborn");
    let stubborn_pid: u32 = cluster.eventually("stubborn pid", Duration::from_secs(10), || {
        std::fs::read_to_string(cluster.out.join("stubborn.pid")).ok()?.trim().parse().ok()
    });

    cluster.kubectl_ok(&["delete", "pod", "polite", "stubborn", "--wait=false"]);
    // While the stubborn container waits out its grace period, the pod object stays.
    let pod = cluster.pod("stubborn").expect("stubborn is still terminating");
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(cluster.wait_file("polite").trim(), "term");
    cluster.wait_gone("polite", Duration::from_secs(20));
    cluster.wait_gone("stubborn", Duration::from_secs(20));
    assert!(!std::path::Path::new(&format!("/proc/{stubborn_pid}")).exists(), "the stubborn process was killed");
    cluster.eventually("pod namespaces removed", Duration::from_secs(10), || {
        cluster.pod_namespaces().is_empty().then_some(())
    });
}

#[test]
fn crash_loop_back_off_and_images_without_a_program() {
    let cluster = Cluster::start();
    cluster.apply(&sh_pod("crasher", "echo crashing; exit 3", ""));
    let pod = cluster.eventually("CrashLoopBackOff", Duration::from_secs(30), || {
        let pod = cluster.pod("crasher")?;
        let status = &pod["status"]["containerStatuses"][0];
        (status["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(pod)
    });
    let status = &pod["status"]["containerStatuses"][0];
    assert!(status["restartCount"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(pod["status"]["phase"], "Running");

    // restartPolicy Never: the pod ends Failed with the exit code; OnFailure + success ends Succeeded.
    cluster.apply(&sh_pod("once", "exit 4", r#", "restartPolicy": "Never""#));
    cluster.apply(&sh_pod("done", "exit 0", r#", "restartPolicy": "OnFailure""#));
    for (name, phase) in [("once", "Failed"), ("done", "Succeeded")] {
        cluster.eventually(&format!("{name} {phase}"), Duration::from_secs(30), || {
            (cluster.pod(name)?["status"]["phase"] == phase).then_some(())
        });
    }
    let once = cluster.pod("once").expect("once");
    assert_eq!(once["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 4);
    assert_eq!(once["status"]["containerStatuses"][0]["restartCount"], 0);

    cluster.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis"},
  "spec": {"nodeName": "node-1", "containers": [{"name": "redis", "image": "redis:7"}]}}"#,
    );
    let pod = cluster.eventually("redis waiting with a reason", Duration::from_secs(30), || {
        let pod = cluster.pod("redis")?;
        (pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "NoProgramForImage").then_some(pod)
    });
    let message =
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("redis:7") && message.contains("command"), "{message}");
    assert_eq!(pod["status"]["phase"], "Pending");
    cluster.eventually("a Failed event for redis", Duration::from_secs(10), || {
        cluster.events_for("redis").into_iter().find(|e| e.starts_with("Failed: ") && e.contains("redis:7"))
    });
}

#[test]
fn init_containers_run_to_completion_first() {
    let cluster = Cluster::start();
    let out = path_str(&cluster.out);
    let init = format!(
        r#", "initContainers": [
          {{"name": "first", "image": "busybox", "command": ["/bin/sh", "-c", "echo one > {out}/init-order"]}},
          {{"name": "second", "image": "busybox", "command": ["/bin/sh", "-c", "echo two >> {out}/init-order"]}}]"#
    );
    let main = format!("cat {out}/init-order > {out}/seen.tmp; echo END >> {out}/seen.tmp; mv {out}/seen.tmp {out}/seen; exec sleep 3600");
    cluster.apply(&sh_pod("inited", &main, &init));
    assert_eq!(cluster.wait_file("seen"), "one\ntwo\n");
    let pod = cluster.wait_ready("inited", true);
    let inits = pod["status"]["initContainerStatuses"].as_array().expect("init statuses").clone();
    assert_eq!(inits.len(), 2);
    for status in inits {
        assert_eq!(status["state"]["terminated"]["reason"], "Completed", "{status}");
    }
    let initialized =
        pod["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Initialized").cloned());
    assert_eq!(initialized.map(|c| c["status"].clone()), Some(serde_json::json!("True")));
}

/// IP files of the agent's address allocator (`<agent data dir>/ipam/<ip>` → owner uid).
fn allocated_ips(cluster: &Cluster) -> Vec<String> {
    let dir = cluster.dir.path().join("agent").join("ipam");
    let mut ips: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    ips.sort();
    ips
}

#[test]
fn a_finished_pod_gives_back_its_network_and_keeps_its_logs() {
    let mut cluster = Cluster::start();
    cluster.apply(&sh_pod("oneshot", "echo finished-output", r#", "restartPolicy": "Never""#));
    let pod = cluster.eventually("oneshot Succeeded", Duration::from_secs(30), || {
        let pod = cluster.pod("oneshot")?;
        (pod["status"]["phase"] == "Succeeded").then_some(pod)
    });
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_owned();
    assert!(!ip.is_empty(), "a finished pod keeps its podIP in its status: {}", pod["status"]);
    // As kubelet stops a finished pod's sandbox: the namespace goes and the address is free.
    cluster.eventually("the finished pod's namespace removed", Duration::from_secs(20), || {
        cluster.pod_namespaces().is_empty().then_some(())
    });
    cluster.eventually("the finished pod's IP released", Duration::from_secs(20), || {
        (!allocated_ips(&cluster).contains(&ip)).then_some(())
    });
    assert_eq!(cluster.kubectl_ok(&["logs", "oneshot"]), "finished-output\n");

    // A restarted agent does not set the finished pod up again, and still serves its logs.
    cluster.kill_agent();
    cluster.start_agent();
    cluster.wait_node_ready();
    cluster.eventually("logs of the finished pod after the restart", Duration::from_secs(30), || {
        let out = cluster.kubectl(&["logs", "oneshot"]);
        (String::from_utf8_lossy(&out.stdout) == "finished-output\n").then_some(())
    });
    assert!(cluster.pod_namespaces().is_empty(), "the finished pod got a namespace again");
    assert!(!allocated_ips(&cluster).contains(&ip), "the finished pod took its IP again");

    cluster.kubectl_ok(&["delete", "pod", "oneshot", "--wait=false"]);
    cluster.wait_gone("oneshot", Duration::from_secs(30));
}
