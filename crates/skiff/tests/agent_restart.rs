//! Agent restarts: pods keep running while the agent is down, and the restarted agent
//! re-adopts them (same IPs, same processes, no duplicates); a pod deleted while the agent
//! was down is cleaned up when it returns; a new pod never gets an IP already in use.

mod agent_support;

use std::collections::BTreeSet;
use std::time::Duration;

use agent_support::{sh_pod, Cluster};

#[test]
fn agent_restart_keeps_pods() {
    let mut cluster = Cluster::start();
    let names = ["keep-a", "keep-b", "keep-c"];
    // A sleep duration unique to this test run and pod tells its processes apart.
    let base = 10_000_000 + u64::from(std::process::id() % 100_000) * 10;
    let marker = |i: usize| format!("sleep {}", base + i as u64);
    for (i, name) in names.iter().enumerate() {
        cluster.apply(&sh_pod(name, &format!("exec {}", marker(i)), ""));
    }
    let ips: Vec<String> = names.iter().map(|n| cluster.pod_ip(n)).collect();
    let pids: Vec<Vec<u32>> = names
        .iter()
        .enumerate()
        .map(|(i, _)| {
            cluster.eventually("container process", Duration::from_secs(10), || {
                let pids = cluster.processes_with(&marker(i));
                (!pids.is_empty()).then_some(pids)
            })
        })
        .collect();
    let namespaces = cluster.pod_namespaces();
    assert_eq!(namespaces.len(), 3);

    cluster.kill_agent();
    for (i, n) in names.iter().enumerate() {
        assert_eq!(cluster.processes_with(&marker(i)), pids[i], "{n} keeps running without the agent");
    }
    // Deleted while the agent is away (force: nobody would finish a graceful delete).
    cluster.kubectl_ok(&["delete", "pod", "keep-c", "--grace-period=0", "--force"]);

    // Restarted the way `ip netns exec` starts programs (a private mount namespace).
    cluster.start_agent_with_ip_netns_exec();
    cluster.wait_node_ready();
    assert!(
        cluster.agent_log().contains("re-entering the launcher"),
        "the agent did not notice its private mount namespace"
    );
    for (i, n) in names.iter().enumerate().take(2) {
        let pod = cluster.wait_running(n);
        assert_eq!(pod["status"]["podIP"].as_str(), Some(ips[i].as_str()), "{n} keeps its IP");
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{n} was not restarted");
        assert_eq!(cluster.processes_with(&marker(i)), pids[i], "{n}: same process, no duplicate");
    }
    cluster.eventually("the deleted pod's process to be stopped", Duration::from_secs(15), || {
        cluster.processes_with(&marker(2)).is_empty().then_some(())
    });
    cluster.eventually("the deleted pod's namespace to be removed", Duration::from_secs(15), || {
        (cluster.pod_namespaces().len() == 2).then_some(())
    });

    // New pods get addresses nobody holds.
    cluster.apply(&sh_pod("fresh-1", "exec sleep 3600", ""));
    cluster.apply(&sh_pod("fresh-2", "exec sleep 3600", ""));
    let mut all: BTreeSet<String> = ips[..2].iter().cloned().collect();
    for n in ["fresh-1", "fresh-2"] {
        assert!(all.insert(cluster.pod_ip(n)), "{n} got an IP already in use");
    }
    // Still exactly one process per kept pod after everything settled.
    for (i, _) in names.iter().enumerate().take(2) {
        assert_eq!(cluster.processes_with(&marker(i)), pids[i]);
    }
}
