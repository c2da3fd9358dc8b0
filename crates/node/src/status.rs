//! Pod.status from the containers' snapshots: phase, conditions (PodScheduled,
//! PodReadyToStartContainers, Initialized, ContainersReady, Ready), IPs, start time and the
//! container statuses. Pure, so the phase rules are unit-tested.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::container::ContainerSnapshot;

/// Inputs of [`pod_status`].
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub host_ip: String,
    pub pod_ip: Option<String>,
    pub start_time: String,
    pub sandbox_ready: bool,
    pub init: &'a [ContainerSnapshot],
    /// All init containers have succeeded.
    pub initialized: bool,
    pub main: &'a [ContainerSnapshot],
    pub now: String,
}

/// The phase kubelet would report.
pub fn phase(
    restart_policy: &str,
    init: &[ContainerSnapshot],
    initialized: bool,
    main: &[ContainerSnapshot],
) -> &'static str {
    if !initialized {
        if init.iter().any(|c| matches!(c.finished, Some(code) if code != 0)) {
            return "Failed";
        }
        return "Pending";
    }
    let running = main.iter().filter(|c| c.is_running()).count();
    let finished: Vec<i32> = main.iter().filter_map(|c| c.finished).collect();
    let restarting = main
        .iter()
        .filter(|c| c.finished.is_none() && !c.is_running() && c.last_state.get("terminated").is_some())
        .count();
    if !main.is_empty() && finished.len() == main.len() {
        return if finished.iter().all(|c| *c == 0) { "Succeeded" } else { "Failed" };
    }
    if running > 0 || restarting > 0 {
        return "Running";
    }
    if !finished.is_empty() && restart_policy != "Always" && main.iter().all(|c| c.finished.is_some() || c.is_running())
    {
        return "Running";
    }
    "Pending"
}

/// The full status object to write.
pub fn pod_status(input: &StatusInput<'_>) -> Value {
    let spec = input.pod.spec.as_ref();
    let restart_policy = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let phase = phase(restart_policy, input.init, input.initialized, input.main);
    let containers_ready = input.initialized && !input.main.is_empty() && input.main.iter().all(|c| c.ready);
    let old_conditions: Vec<Value> = input
        .pod
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.conditions).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let gates_ok =
        spec.and_then(|s| s.readiness_gates.as_ref()).into_iter().flatten().all(|gate| {
            old_conditions.iter().any(|c| c["type"] == gate.condition_type.as_str() && c["status"] == "True")
        });
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = old_conditions
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| input.now.clone());
        let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
        }
        c
    };
    let not_ready_reason = if matches!(phase, "Succeeded" | "Failed") { "PodCompleted" } else { "ContainersNotReady" };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", input.sandbox_ready, None),
        condition("Initialized", input.initialized, Some("ContainersNotInitialized")),
        condition("Ready", containers_ready && gates_ok, Some(not_ready_reason)),
        condition("ContainersReady", containers_ready, Some(not_ready_reason)),
        condition("PodScheduled", true, None),
    ];
    // Conditions other writers own (readiness gates, DisruptionTarget …) are kept.
    let ours = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
    conditions.extend(old_conditions.iter().filter(|c| !ours.iter().any(|t| c["type"] == *t)).cloned());
    let statuses = |list: &[ContainerSnapshot]| -> Vec<Value> {
        list.iter()
            .map(|c| {
                let mut s = json!({
                    "name": c.name, "image": c.image, "imageID": "", "restartCount": c.restart_count,
                    "state": c.state, "lastState": c.last_state, "ready": c.ready, "started": c.started,
                });
                if let Some(id) = &c.container_id {
                    s["containerID"] = json!(id);
                }
                s
            })
            .collect()
    };
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "startTime": input.start_time,
        "containerStatuses": statuses(input.main),
        "qosClass": "BestEffort",
        "message": null,
        "reason": null,
    });
    if let Some(ip) = &input.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if !input.init.is_empty() {
        status["initContainerStatuses"] = json!(statuses(input.init));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str) -> ContainerSnapshot {
        let mut c = ContainerSnapshot::waiting(name, "img", "ContainerCreating", None);
        c.state = json!({"running": {"startedAt": "t"}});
        c
    }

    fn finished(name: &str, code: i32) -> ContainerSnapshot {
        let mut c = ContainerSnapshot::waiting(name, "img", "x", None);
        c.state = json!({"terminated": {"exitCode": code}});
        c.finished = Some(code);
        c
    }

    #[test]
    fn phases() {
        let waiting = ContainerSnapshot::waiting("a", "img", "ContainerCreating", None);
        assert_eq!(phase("Always", &[], true, std::slice::from_ref(&waiting)), "Pending");
        assert_eq!(phase("Always", &[], true, &[running("a"), waiting.clone()]), "Running");
        assert_eq!(phase("Never", &[], true, &[finished("a", 0), finished("b", 0)]), "Succeeded");
        assert_eq!(phase("Never", &[], true, &[finished("a", 0), finished("b", 2)]), "Failed");
        assert_eq!(phase("Never", &[], true, &[finished("a", 0), running("b")]), "Running");
        let mut backing_off = waiting.clone();
        backing_off.last_state = json!({"terminated": {"exitCode": 1}});
        assert_eq!(phase("Always", &[], true, &[backing_off]), "Running");
        assert_eq!(phase("Never", &[finished("i", 1)], false, std::slice::from_ref(&waiting)), "Failed");
        assert_eq!(phase("Always", &[running("i")], false, &[waiting]), "Pending");
    }

    #[test]
    fn conditions_keep_transition_times() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .unwrap();
        let mut ready = running("a");
        ready.ready = true;
        let main = [ready];
        let input = StatusInput {
            pod: &pod,
            host_ip: "172.30.0.11".into(),
            pod_ip: Some("10.244.0.2".into()),
            start_time: "s".into(),
            sandbox_ready: true,
            init: &[],
            initialized: true,
            main: &main,
            now: "2026-02-02T00:00:00Z".into(),
        };
        let status = pod_status(&input);
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "10.244.0.2");
        let cond = |t: &str| status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!(cond("Ready")["status"], "True");
        assert_eq!(cond("Ready")["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(cond("ContainersReady")["lastTransitionTime"], "2026-02-02T00:00:00Z");
        assert_eq!(status["containerStatuses"][0]["ready"], true);
    }
}
