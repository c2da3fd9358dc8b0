//! `kubectl get pods`: NAME READY STATUS RESTARTS AGE, and IP NODE NOMINATED NODE
//! READINESS GATES with `-o wide`.
//!
//! STATUS is not just the phase: upstream derives it from the containers (the first
//! unfinished init container gives `Init:1/2` or `Init:CrashLoopBackOff`; a waiting or
//! terminated container gives its reason, such as `ContainerCreating` or `Completed`), and
//! deletion shows as `Terminating`. That derivation is reproduced step by step below.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::columns::{Column, AGE, NAME};
use super::format::{age, array, integer, name, since, text, timestamp};
use super::{KindPrinter, RowCondition, TableRow};

pub(super) const POD: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Ready", "The aggregate readiness state of this pod for accepting traffic."),
        Column::string("Status", "The aggregate status of the containers in this pod."),
        Column::string(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        Column::string("IP", "podIP address allocated to the pod.").wide(),
        Column::string("Node", "NodeName indicates in which node this pod is scheduled.").wide(),
        Column::string(
            "Nominated Node",
            "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
        )
        .wide(),
        Column::string(
            "Readiness Gates",
            "If specified, all readiness gates will be evaluated for pod readiness.",
        )
        .wide(),
    ],
    print: print_pod,
};

const POD_SUCCEEDED: RowCondition = RowCondition {
    type_: "Completed",
    status: "True",
    reason: "Succeeded",
    message: "The pod has completed successfully.",
};

const POD_FAILED: RowCondition =
    RowCondition { type_: "Completed", status: "True", reason: "Failed", message: "The pod failed." };

/// The pod's `Initialized` condition is True (init containers are done even if their
/// statuses say otherwise, e.g. after a node restart).
fn initialized(pod: &Value) -> bool {
    array(pod, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == "Initialized")
        .is_some_and(|c| text(c, "/status") == "True")
}

fn has_ready_condition(pod: &Value) -> bool {
    array(pod, "/status/conditions").iter().any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True")
}

/// A sidecar: an init container with `restartPolicy: Always`, which keeps running.
fn is_restartable_init_container(container: Option<&Value>) -> bool {
    container.is_some_and(|c| text(c, "/restartPolicy") == "Always")
}

/// The later of two optional times (None is Go's zero time).
fn later(current: Option<DateTime<Utc>>, candidate: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (current, candidate) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// When the container last terminated before its current run.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    status.pointer("/lastState/terminated").and_then(|t| timestamp(t, "/finishedAt"))
}

/// Restart counts and readiness gathered over the container statuses.
struct ContainerSummary {
    reason: String,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
    ready: usize,
    total: usize,
}

fn print_pod(pod: &Value, now: DateTime<Utc>) -> TableRow {
    let phase = text(pod, "/status/phase");
    let mut row = TableRow::new(Vec::new());
    match phase {
        "Succeeded" => row.conditions = vec![POD_SUCCEEDED],
        "Failed" => row.conditions = vec![POD_FAILED],
        _ => {}
    }
    let summary = summarize_containers(pod);
    let mut reason = summary.reason;

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => format!("{} ({} ago)", summary.restarts, since(Some(last), now)),
        _ => summary.restarts.to_string(),
    };

    let pod_ip = match array(pod, "/status/podIPs").first() {
        Some(first) => text(first, "/ip"),
        None => text(pod, "/status/podIP"),
    };
    let readiness_gates = readiness_gates(pod);
    row.cells = vec![
        json!(name(pod)),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(reason),
        json!(restarts),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ];
    row
}

fn or_none(value: &str) -> &str {
    if value.is_empty() {
        "<none>"
    } else {
        value
    }
}

/// Walks init containers, then (once initialization is over) app containers, the way
/// upstream's `printPod` does, to find the STATUS reason, the ready count and the restarts.
fn summarize_containers(pod: &Value) -> ContainerSummary {
    let mut reason = match text(pod, "/status/reason") {
        "" => text(pod, "/status/phase").to_string(),
        r => r.to_string(),
    };
    if array(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = array(pod, "/spec/initContainers");
    let init_spec = |name: &str| init_specs.iter().find(|c| text(c, "/name") == name);
    let mut total = array(pod, "/spec/containers").len();
    total += init_specs.iter().filter(|c| is_restartable_init_container(Some(c))).count();

    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart = None;
    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart = None;
    let mut initializing = false;

    for (i, status) in array(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts += integer(status, "/restartCount");
        last_restart = later(last_restart, last_termination(status));
        let sidecar = is_restartable_init_container(init_spec(text(status, "/name")));
        if sidecar {
            sidecar_restarts += integer(status, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, last_termination(status));
        }
        let terminated = status.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting = status.pointer("/state/waiting").filter(|w| w.is_object());
        if terminated.is_some_and(|t| integer(t, "/exitCode") == 0) {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match text(terminated, "/reason") {
                "" if integer(terminated, "/signal") != 0 => {
                    format!("Init:Signal:{}", integer(terminated, "/signal"))
                }
                "" => format!("Init:ExitCode:{}", integer(terminated, "/exitCode")),
                r => format!("Init:{r}"),
            }
        } else if let Some(r) = waiting.map(|w| text(w, "/reason")).filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || initialized(pod) {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in array(pod, "/status/containerStatuses").iter().rev() {
            restarts += integer(status, "/restartCount");
            last_restart = later(last_restart, last_termination(status));
            let waiting_reason = status.pointer("/state/waiting").map(|w| text(w, "/reason")).unwrap_or("");
            let terminated = status.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, "/reason") {
                    "" if integer(terminated, "/signal") != 0 => format!("Signal:{}", integer(terminated, "/signal")),
                    "" => format!("ExitCode:{}", integer(terminated, "/exitCode")),
                    r => r.to_string(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if has_ready_condition(pod) { "Running" } else { "NotReady" }.to_string();
        }
    }

    ContainerSummary { reason, restarts, last_restart, ready, total }
}

/// `<none>`, or how many of the pod's readiness gates have a True condition: `1/2`.
fn readiness_gates(pod: &Value) -> String {
    let gates = array(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = array(pod, "/status/conditions");
    let passing = gates
        .iter()
        .filter(|gate| {
            let wanted = text(gate, "/conditionType");
            conditions.iter().find(|c| text(c, "/type") == wanted).is_some_and(|c| text(c, "/status") == "True")
        })
        .count();
    format!("{passing}/{}", gates.len())
}
