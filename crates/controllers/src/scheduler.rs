//! A small scheduler: binds every pod without `spec.nodeName` to a Ready node.
//!
//! It does what a local cluster needs from kube-scheduler, not more:
//! - feasible nodes are Ready, schedulable (`spec.unschedulable` unset), match the pod's
//!   `nodeSelector` and required node affinity, and carry no NoSchedule/NoExecute taint the
//!   pod does not tolerate;
//! - among them, the node running the fewest pods wins (ties by name), which spreads a
//!   Deployment's replicas over the nodes;
//! - binding goes through `pods/{name}/binding`, so a pod is bound at most once even with
//!   two schedulers; a pod no node fits gets PodScheduled=False/Unschedulable and a
//!   FailedScheduling event, and is retried when nodes change.
//!
//! Pods naming another `spec.schedulerName` are left to that scheduler.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;

use crate::context::Context;
use crate::events::EventType;

/// The scheduler name pods get by default; this scheduler serves it.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// How often unschedulable pods are tried again even without a node change (a node's pods
/// may have finished, for instance).
const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(5);

/// What the scheduler keeps of a pod waiting for a node.
#[derive(Clone)]
struct Pending {
    pod: Arc<Pod>,
    /// The last reason recorded as an event, so the same failure is reported once.
    reported: Option<String>,
}

/// Scheduling state: the nodes, who runs where, and the pods waiting.
#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Arc<Node>>,
    /// Node of every bound, non-terminal pod, by `namespace/name`.
    bound: HashMap<String, String>,
    /// Pods waiting for a node, by creation order then key.
    pending: BTreeMap<(String, String), Pending>,
}

enum Change {
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    Tick,
}

pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let pod_events = watcher::watcher(pods, watcher::Config::default()).default_backoff().map(|e| match e {
        Ok(e) => Some(Change::Pod(Box::new(e))),
        Err(e) => {
            tracing::debug!(error = %e, "scheduler pod watch");
            None
        }
    });
    let node_events = watcher::watcher(nodes, watcher::Config::default()).default_backoff().map(|e| match e {
        Ok(e) => Some(Change::Node(Box::new(e))),
        Err(e) => {
            tracing::debug!(error = %e, "scheduler node watch");
            None
        }
    });
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(RETRY_UNSCHEDULABLE))
        .map(|_| Some(Change::Tick));
    let changes = futures::stream::select(futures::stream::select(pod_events, node_events), ticks)
        .filter_map(futures::future::ready);
    let mut changes = std::pin::pin!(changes);
    let mut state = State::default();
    // Relists (`Init … InitApply … InitDone`) rebuild what they cover, so objects deleted
    // while the watch was down do not linger.
    let mut relisting_pods: Option<HashSet<String>> = None;
    let mut relisting_nodes: Option<BTreeMap<String, Arc<Node>>> = None;
    while let Some(change) = changes.next().await {
        match change {
            Change::Pod(event) => match *event {
                Event::Init => relisting_pods = Some(HashSet::new()),
                Event::InitApply(pod) => {
                    if let Some(seen) = relisting_pods.as_mut() {
                        seen.insert(pod_key(&pod));
                    }
                    state.apply_pod(pod);
                }
                Event::InitDone => {
                    if let Some(seen) = relisting_pods.take() {
                        state.retain_pods(&seen);
                    }
                }
                Event::Apply(pod) => state.apply_pod(pod),
                Event::Delete(pod) => state.delete_pod(&pod),
            },
            Change::Node(event) => match *event {
                Event::Init => relisting_nodes = Some(BTreeMap::new()),
                Event::InitApply(node) => {
                    if let Some(nodes) = relisting_nodes.as_mut() {
                        nodes.insert(node.name_any(), Arc::new(node));
                    }
                }
                Event::InitDone => {
                    if let Some(nodes) = relisting_nodes.take() {
                        state.nodes = nodes;
                    }
                }
                Event::Apply(node) => {
                    state.nodes.insert(node.name_any(), Arc::new(node));
                }
                Event::Delete(node) => {
                    state.nodes.remove(&node.name_any());
                }
            },
            Change::Tick => {}
        }
        if !state.pending.is_empty() && relisting_nodes.is_none() {
            schedule_pending(&ctx, &mut state).await;
        }
    }
    Ok(())
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn pending_key(pod: &Pod) -> (String, String) {
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    (created, pod_key(pod))
}

/// The node a pod occupies: bound and neither finished nor deleted.
fn running_node(pod: &Pod) -> Option<String> {
    let node = pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    (!matches!(phase, "Succeeded" | "Failed")).then_some(node)
}

/// Whether this scheduler should place the pod.
fn wants_node(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let unbound = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = spec.scheduler_name.as_deref().is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER);
    unbound && ours && pod.metadata.deletion_timestamp.is_none()
}

impl State {
    fn apply_pod(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        match running_node(&pod) {
            Some(node) => {
                self.bound.insert(key.clone(), node);
            }
            None => {
                self.bound.remove(&key);
            }
        }
        let pending_key = pending_key(&pod);
        if wants_node(&pod) {
            let reported = self.pending.get(&pending_key).and_then(|p| p.reported.clone());
            self.pending.insert(pending_key, Pending { pod: Arc::new(pod), reported });
        } else {
            self.pending.retain(|(_, k), _| *k != key);
        }
    }

    /// Forgets every pod not in `seen` (the keys a relist delivered).
    fn retain_pods(&mut self, seen: &HashSet<String>) {
        self.bound.retain(|key, _| seen.contains(key));
        self.pending.retain(|(_, key), _| seen.contains(key));
    }

    fn delete_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        self.bound.remove(&key);
        self.pending.retain(|(_, k), _| *k != key);
    }

    fn pods_on(&self) -> HashMap<&str, usize> {
        let mut counts = HashMap::new();
        for node in self.bound.values() {
            *counts.entry(node.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// Tries to bind every pending pod, oldest first.
async fn schedule_pending(ctx: &Context, state: &mut State) {
    let keys: Vec<(String, String)> = state.pending.keys().cloned().collect();
    for key in keys {
        let Some(pending) = state.pending.get(&key).cloned() else { continue };
        let pod = pending.pod.clone();
        match pick_node(&pod, &state.nodes, &state.pods_on()) {
            Ok(node) => match bind(ctx, &pod, &node).await {
                Ok(()) => {
                    state.pending.remove(&key);
                    state.bound.insert(pod_key(&pod), node);
                }
                Err(e) => tracing::debug!(pod = %key.1, error = %e, "binding failed; retrying"),
            },
            Err(reason) => {
                if pending.reported.as_deref() != Some(reason.as_str()) {
                    report_unschedulable(ctx, &pod, &reason).await;
                    if let Some(p) = state.pending.get_mut(&key) {
                        p.reported = Some(reason);
                    }
                }
            }
        }
    }
}

async fn bind(ctx: &Context, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod.name_any(), "namespace": pod.namespace()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let (name, params) = (pod.name_any(), PostParams::default());
    let created = api.create_subresource::<_, serde_json::Value>("binding", &name, &params, &binding);
    match created.await {
        Ok(_) => {
            tracing::debug!(pod = %pod_key(pod), node, "bound");
            let message = format!("Successfully assigned {} to {node}", pod_key(pod));
            ctx.recorder.publish(pod, EventType::Normal, "Scheduled", &message).await;
            Ok(())
        }
        // Already bound by someone else, or deleted: the watch will tell.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn report_unschedulable(ctx: &Context, pod: &Pod, reason: &str) {
    ctx.recorder.publish(pod, EventType::Warning, "FailedScheduling", reason).await;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let condition = json!({
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason,
        "lastProbeTime": null, "lastTransitionTime": skiff_now(),
    });
    let patch = json!({"status": {"conditions": [condition]}});
    if let Err(e) = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
        tracing::debug!(pod = %pod_key(pod), error = %e, "recording Unschedulable");
    }
}

fn skiff_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The node the pod should run on, or the FailedScheduling message saying why none fits
/// (in kube-scheduler's "0/N nodes are available: …" form).
fn pick_node(pod: &Pod, nodes: &BTreeMap<String, Arc<Node>>, pods_on: &HashMap<&str, usize>) -> Result<String, String> {
    let mut rejections: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut best: Option<(usize, &str)> = None;
    for (name, node) in nodes {
        if let Err(why) = fits(pod, node) {
            *rejections.entry(why).or_insert(0) += 1;
            continue;
        }
        let load = pods_on.get(name.as_str()).copied().unwrap_or(0);
        if best.is_none_or(|(l, _)| load < l) {
            best = Some((load, name));
        }
    }
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => {
            let reasons: Vec<String> = rejections.iter().map(|(why, n)| format!("{n} {why}")).collect();
            let detail =
                if reasons.is_empty() { "no nodes available to schedule pods".into() } else { reasons.join(", ") };
            Err(format!("0/{} nodes are available: {detail}.", nodes.len()))
        }
    }
}

/// Why `node` cannot run `pod`, in kube-scheduler's wording.
fn fits(pod: &Pod, node: &Node) -> Result<(), &'static str> {
    let spec = pod.spec.as_ref();
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return Err("node(s) were unschedulable");
    }
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return Err("node(s) were not ready");
    }
    let labels = node.labels();
    if let Some(selector) = spec.and_then(|s| s.node_selector.as_ref()) {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return Err("node(s) didn't match Pod's node affinity/selector");
        }
    }
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(required) = required {
        // Terms are ORed; an empty term list matches nothing, as upstream.
        if !required.node_selector_terms.iter().any(|term| term_matches(term, node)) {
            return Err("node(s) didn't match Pod's node affinity/selector");
        }
    }
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
    let taints: &[Taint] = node_spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let blocking = taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute");
    for taint in blocking {
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Err("node(s) had untolerated taint");
        }
    }
    Ok(())
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        // Exists with an empty key tolerates everything.
        "Exists" => effect_ok && (key.is_empty() || key == taint.key),
        _ => {
            effect_ok
                && key == taint.key
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// A node selector term: every expression and field requirement must hold (an empty term
/// matches nothing).
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.labels();
    let name = node.name_any();
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name.as_str())))
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or(&[]);
    let number = |v: &str| v.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut obj = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        merge(&mut obj, extra);
        Arc::new(serde_json::from_value(obj).unwrap())
    }

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn nodes(list: Vec<Arc<Node>>) -> BTreeMap<String, Arc<Node>> {
        list.into_iter().map(|n| (n.name_any(), n)).collect()
    }

    #[test]
    fn spreads_to_the_least_loaded_ready_node() {
        let all = nodes(vec![
            node("a", json!({})),
            node("b", json!({})),
            node("c", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        ]);
        let p = pod(json!({"containers": []}));
        let mut load = HashMap::new();
        assert_eq!(pick_node(&p, &all, &load).unwrap(), "a");
        load.insert("a", 1);
        assert_eq!(pick_node(&p, &all, &load).unwrap(), "b");
        load.insert("b", 1);
        assert_eq!(pick_node(&p, &all, &load).unwrap(), "a");
    }

    #[test]
    fn honours_node_selector_affinity_and_taints() {
        let all = nodes(vec![
            node("a", json!({"metadata": {"labels": {"disk": "ssd"}}})),
            node("b", json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})),
        ]);
        let load = HashMap::new();
        let selected = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(pick_node(&selected, &all, &load).unwrap(), "a");
        let affinity = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]}),
        );
        assert_eq!(pick_node(&affinity, &all, &load).unwrap(), "b");
        let untolerated = pod(json!({"containers": [], "nodeSelector": {"kubernetes.io/hostname": "b"}}));
        let err = pick_node(&untolerated, &all, &load).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint."
        );
        let nothing = pick_node(&untolerated, &BTreeMap::new(), &load).unwrap_err();
        assert_eq!(nothing, "0/0 nodes are available: no nodes available to schedule pods.");
    }

    #[test]
    fn expressions_follow_upstream_operators() {
        let req = |op: &str, values: &[&str]| NodeSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        assert!(requirement_matches(&req("In", &["a", "b"]), Some("b")));
        assert!(!requirement_matches(&req("In", &["a"]), None));
        assert!(requirement_matches(&req("NotIn", &["a"]), None));
        assert!(requirement_matches(&req("Gt", &["3"]), Some("4")));
        assert!(!requirement_matches(&req("Lt", &["3"]), Some("x")));
        assert!(requirement_matches(&req("DoesNotExist", &[]), None));
    }

    #[test]
    fn only_unbound_default_scheduler_pods_are_taken() {
        assert!(wants_node(&pod(json!({"containers": []}))));
        assert!(!wants_node(&pod(json!({"containers": [], "nodeName": "a"}))));
        assert!(!wants_node(&pod(json!({"containers": [], "schedulerName": "other"}))));
    }
}
