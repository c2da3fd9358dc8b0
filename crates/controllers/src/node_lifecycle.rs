//! Node lifecycle: notices nodes whose agent stopped heartbeating and takes their pods out
//! of Service endpoints (upstream's node lifecycle controller, without eviction).
//!
//! Every node's agent renews a Lease named like the node in `kube-node-lease`. A node whose
//! Lease (or Ready heartbeat) has not changed for `node_monitor_grace` (40 s, as upstream)
//! gets:
//! - its Ready condition (and existing pressure conditions) set to Unknown, reason
//!   NodeStatusUnknown, "Kubelet stopped posting node status.", and a NodeNotReady event;
//! - the `node.kubernetes.io/unreachable` taints (NoSchedule and NoExecute);
//! - the Ready condition of each of its pods set to False (upstream's MarkPodsNotReady),
//!   which the endpoint controllers turn into not-ready endpoints, so traffic stops.
//!
//! When the Lease is renewed again, what this controller changed is put back: Ready=True
//! (only if it was set Unknown by this controller), taints removed, a NodeReady event. The
//! pods' readiness is the agent's to report again.
//!
//! Staleness is measured on this process's clock, from when a *change* of the heartbeat
//! was observed (as upstream does), so clock skew between nodes and controllers does not
//! matter; after a restart every node gets a full grace period again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

use crate::context::Context;
use crate::events::EventType;

/// Namespace of the node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint key of nodes whose agent stopped heartbeating.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// Reason of the conditions this controller sets Unknown.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// A node that never posted a Ready condition gets this long before it is marked (upstream's
/// node startup grace period).
const STARTUP_GRACE: Duration = Duration::from_secs(60);
/// The node conditions a heartbeat loss makes Unknown, with what the agent reports when
/// healthy (status, reason, message), which is what recovery puts back.
const CONDITIONS: [(&str, &str, &str, &str); 4] = [
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
];

/// Parses a duration like Go's flags (`40s`, `500ms`, `1m30s`, `2h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 40s, 500ms or 1m30s");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let seconds = match &rest[digits..digits + unit_len] {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// How often nodes are checked: a quarter of the grace period, between 100 ms and 5 s
/// (upstream's node monitor period is 5 s).
fn monitor_period(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// The last heartbeat seen for one node and when it was seen.
#[derive(Debug, Clone)]
struct Probe {
    /// Lease renewTime and Ready lastHeartbeatTime, as last observed.
    heartbeat: (Option<String>, Option<String>),
    observed_at: Instant,
    /// The heartbeat changed while this process watched (a sign of life, not a stale value).
    renewed: bool,
}

/// What to do with one node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Healthy,
    /// No heartbeat change within the grace period.
    Lost,
    /// Heartbeating again after this controller marked it.
    Recovered,
}

/// Runs the node lifecycle controller until the process ends.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let leases = cache(Api::<Lease>::namespaced(ctx.client.clone(), NODE_LEASE_NAMESPACE));
    let pods = cache(Api::<Pod>::all(ctx.client.clone()));
    for ready in [nodes.wait_until_ready().await, leases.wait_until_ready().await, pods.wait_until_ready().await] {
        ready?;
    }
    let grace = ctx.config.node_monitor_grace;
    let mut probes: HashMap<String, Probe> = HashMap::new();
    let mut tick = tokio::time::interval(monitor_period(grace));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let current = nodes.state();
        probes.retain(|name, _| current.iter().any(|n| n.name_any() == *name));
        for node in current.iter().filter(|n| n.metadata.deletion_timestamp.is_none()) {
            let lease = leases.get(&reflector::ObjectRef::new(&node.name_any()).within(NODE_LEASE_NAMESPACE));
            let verdict = observe(&mut probes, node, lease.as_deref(), grace, Instant::now());
            if let Err(e) = act(&ctx, node, verdict, &pods).await {
                ctx.metrics.inc("skiff_controller_sync_errors_total", &[("controller", "nodelifecycle")]);
                tracing::debug!(node = %node.name_any(), error = %e, "node lifecycle update failed; retrying next round");
            }
        }
        let labels = [("controller", "nodelifecycle")];
        ctx.metrics.inc("skiff_controller_syncs_total", &labels);
        ctx.metrics.observe("skiff_controller_sync_duration_seconds", &labels, started.elapsed().as_secs_f64());
    }
}

/// A reflector cache of `api`, kept up to date by a background task.
fn cache<K>(api: Api<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    store
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Records the node's current heartbeat and judges it.
fn observe(
    probes: &mut HashMap<String, Probe>,
    node: &Node,
    lease: Option<&Lease>,
    grace: Duration,
    now: Instant,
) -> Verdict {
    let ready = ready_condition(node);
    let heartbeat = (
        lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(|t| t.0.to_string()),
        ready.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0.to_string()),
    );
    let probe = probes.entry(node.name_any()).or_insert_with(|| Probe {
        heartbeat: heartbeat.clone(),
        observed_at: now,
        renewed: false,
    });
    if probe.heartbeat != heartbeat {
        *probe = Probe { heartbeat, observed_at: now, renewed: true };
    }
    let grace = if ready.is_none() { grace.max(STARTUP_GRACE) } else { grace };
    let marked_by_us = ready.is_some_and(|c| c.status == "Unknown" && c.reason.as_deref() == Some(REASON_UNKNOWN));
    if now.duration_since(probe.observed_at) > grace {
        Verdict::Lost
    } else if marked_by_us && probe.renewed {
        Verdict::Recovered
    } else {
        Verdict::Healthy
    }
}

async fn act(ctx: &Context, node: &Node, verdict: Verdict, pods: &Store<Pod>) -> Result<()> {
    match verdict {
        Verdict::Healthy => {
            // Taints from an earlier loss whose recovery write did not get through.
            let ready = ready_condition(node).is_some_and(|c| c.status == "True");
            if ready && has_unreachable_taint(node) {
                set_unreachable_taints(ctx, node, false).await?;
            }
            Ok(())
        }
        Verdict::Lost => {
            if let Some(conditions) = lost_conditions(node, now()) {
                let was_ready = ready_condition(node).is_some_and(|c| c.status == "True");
                write_conditions(ctx, node, &conditions).await?;
                tracing::info!(node = %node.name_any(), "node stopped heartbeating; marked Ready=Unknown");
                if was_ready {
                    let message = format!("Node {} status is now: NodeNotReady", node.name_any());
                    ctx.recorder.publish(node, EventType::Normal, "NodeNotReady", &message).await;
                }
            }
            if !has_unreachable_taint(node) {
                set_unreachable_taints(ctx, node, true).await?;
            }
            mark_pods_not_ready(ctx, &node.name_any(), pods).await
        }
        Verdict::Recovered => {
            if let Some(conditions) = recovered_conditions(node, now()) {
                write_conditions(ctx, node, &conditions).await?;
                tracing::info!(node = %node.name_any(), "node heartbeating again; marked Ready=True");
                let message = format!("Node {} status is now: NodeReady", node.name_any());
                ctx.recorder.publish(node, EventType::Normal, "NodeReady", &message).await;
            }
            if has_unreachable_taint(node) {
                set_unreachable_taints(ctx, node, false).await?;
            }
            Ok(())
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The node's conditions after a heartbeat loss, None if they already say so. The
/// heartbeat times stay: they tell when the agent was last heard of.
fn lost_conditions(node: &Node, now: Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some(REASON_NEVER_UPDATED.into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(now.clone()),
            last_heartbeat_time: None,
        });
        changed = true;
    }
    for c in conditions.iter_mut().filter(|c| CONDITIONS.iter().any(|(t, ..)| *t == c.type_)) {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some(REASON_UNKNOWN.into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(now.clone());
            changed = true;
        }
    }
    changed.then_some(conditions)
}

/// The node's conditions once it heartbeats again: the ones this controller made Unknown
/// get back what a healthy agent reports. None if there are none.
fn recovered_conditions(node: &Node, now: Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone())?;
    let mut changed = false;
    for c in conditions.iter_mut() {
        let ours = c.status == "Unknown" && c.reason.as_deref() == Some(REASON_UNKNOWN);
        let Some((_, status, reason, message)) = CONDITIONS.iter().find(|(t, ..)| *t == c.type_) else { continue };
        if ours {
            c.status = (*status).into();
            c.reason = Some((*reason).into());
            c.message = Some((*message).into());
            c.last_transition_time = Some(now.clone());
            c.last_heartbeat_time = Some(now.clone());
            changed = true;
        }
    }
    changed.then_some(conditions)
}

async fn write_conditions(ctx: &Context, node: &Node, conditions: &[NodeCondition]) -> Result<()> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version},
        "status": {"conditions": conditions}});
    api.patch_status(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn has_unreachable_taint(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE_TAINT))
}

/// Adds (or removes) the unreachable NoSchedule and NoExecute taints.
async fn set_unreachable_taints(ctx: &Context, node: &Node, present: bool) -> Result<()> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != UNREACHABLE_TAINT)
        .collect();
    if present {
        taints.push(Taint { key: UNREACHABLE_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() });
        taints.push(Taint {
            key: UNREACHABLE_TAINT.into(),
            effect: "NoExecute".into(),
            time_added: Some(now()),
            ..Default::default()
        });
    }
    let taints = if taints.is_empty() { serde_json::Value::Null } else { json!(taints) };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
    api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// The pod's conditions with Ready set to False, None if it is not Ready=True.
fn not_ready_conditions(pod: &Pod, now: Time) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref()?.conditions.clone()?;
    let ready = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready.status = "False".into();
    ready.last_transition_time = Some(now);
    Some(conditions)
}

/// Sets Ready=False on every Ready pod bound to `node` (upstream's MarkPodsNotReady).
async fn mark_pods_not_ready(ctx: &Context, node: &str, pods: &Store<Pod>) -> Result<()> {
    let on_node =
        pods.state().into_iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    let mut failures = 0;
    for pod in on_node {
        let Some(conditions) = not_ready_conditions(&pod, now()) else { continue };
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({"metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": {"conditions": conditions}});
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(%namespace, pod = %pod.name_any(), %node, "marked pod not ready: its node is unreachable");
                ctx.recorder.publish(pod.as_ref(), EventType::Warning, "NodeNotReady", "Node is not ready").await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                failures += 1;
                tracing::debug!(pod = %pod.name_any(), error = %e, "marking pod not ready failed");
            }
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} pods on node {node} could not be marked not ready");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<(&str, &str)>) -> Node {
        let conditions: Vec<serde_json::Value> = ready
            .into_iter()
            .map(|(status, reason)| {
                json!({"type": "Ready", "status": status, "reason": reason,
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z"})
            })
            .chain(std::iter::once(json!({"type": "MemoryPressure", "status": "False"})))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"conditions": conditions}})).unwrap()
    }

    fn lease(renew: &str) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"renewTime": renew}})).unwrap()
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "40", "s", "4x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(monitor_period(Duration::from_secs(40)), Duration::from_secs(5));
        assert_eq!(monitor_period(Duration::from_secs(3)), Duration::from_millis(750));
    }

    #[test]
    fn judges_heartbeats_by_observed_changes() {
        let grace = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut probes = HashMap::new();
        let n = node(Some(("True", "KubeletReady")));
        let l = lease("2026-01-01T00:00:00.000000Z");
        assert_eq!(observe(&mut probes, &n, Some(&l), grace, t0), Verdict::Healthy);
        assert_eq!(observe(&mut probes, &n, Some(&l), grace, t0 + Duration::from_secs(2)), Verdict::Healthy);
        assert_eq!(observe(&mut probes, &n, Some(&l), grace, t0 + Duration::from_secs(4)), Verdict::Lost);
        // Marked by us; a stale lease does not bring it back, a renewed one does.
        let marked = node(Some(("Unknown", REASON_UNKNOWN)));
        assert_eq!(observe(&mut probes, &marked, Some(&l), grace, t0 + Duration::from_secs(5)), Verdict::Lost);
        let renewed = lease("2026-01-01T00:00:09.000000Z");
        let t1 = t0 + Duration::from_secs(9);
        assert_eq!(observe(&mut probes, &marked, Some(&renewed), grace, t1), Verdict::Recovered);
        // A node that was never Ready gets the startup grace period.
        let mut fresh = HashMap::new();
        let never = node(None);
        assert_eq!(observe(&mut fresh, &never, None, grace, t0), Verdict::Healthy);
        assert_eq!(observe(&mut fresh, &never, None, grace, t0 + Duration::from_secs(10)), Verdict::Healthy);
        assert_eq!(observe(&mut fresh, &never, None, grace, t0 + Duration::from_secs(61)), Verdict::Lost);
    }

    #[test]
    fn lost_and_recovered_conditions() {
        let t = Time(Timestamp::now());
        let lost = lost_conditions(&node(Some(("True", "KubeletReady"))), t.clone()).unwrap();
        let ready = lost.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("Unknown", Some(REASON_UNKNOWN)));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert!(ready.last_heartbeat_time.is_some());
        assert!(lost.iter().any(|c| c.type_ == "MemoryPressure" && c.status == "Unknown"));
        let mut marked = node(None);
        marked.status.as_mut().unwrap().conditions = Some(lost);
        assert!(lost_conditions(&marked, t.clone()).is_none());
        let back = recovered_conditions(&marked, t.clone()).unwrap();
        assert!(back.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(back.iter().any(|c| c.type_ == "MemoryPressure" && c.status == "False"));
        // Unknown for another reason is not ours to change.
        assert!(recovered_conditions(&node(Some(("Unknown", "SomethingElse"))), t.clone()).is_none());
        let never = lost_conditions(&node(None), t).unwrap();
        assert!(never.iter().any(|c| c.type_ == "Ready" && c.reason.as_deref() == Some(REASON_NEVER_UPDATED)));
    }

    #[test]
    fn only_ready_pods_are_marked() {
        let pod = |status: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "status": {"conditions": [{"type": "Ready", "status": status}, {"type": "PodScheduled", "status": "True"}]}}))
            .unwrap()
        };
        let marked = not_ready_conditions(&pod("True"), Time(Timestamp::now())).unwrap();
        assert!(marked.iter().any(|c| c.type_ == "Ready" && c.status == "False"));
        assert!(marked.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        assert!(not_ready_conditions(&pod("False"), Time(Timestamp::now())).is_none());
    }
}
