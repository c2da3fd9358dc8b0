//! Compact views of the Pods and Services that endpoints are built from.
//!
//! The endpoint controllers keep every Pod of the cluster in memory. A full `Pod` object
//! (containers, volumes, status history) is large; a [`PodView`] keeps only what an
//! endpoint needs: labels, IPs, readiness, node, hostname and named container ports. It
//! also makes "did this pod change in a way endpoints care about" a plain comparison.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use skiff_core::labels::Selector;

/// Namespace and name of a namespaced object: the key of every cache and work queue here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }

    /// The key of any namespaced object (empty strings when the metadata lacks them).
    pub fn of<K: Resource>(obj: &K) -> Self {
        let meta = obj.meta();
        ObjectKey::new(meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A container port that has a name, which a Service's `targetPort` may refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: String,
    pub port: i32,
}

/// What the endpoint controllers need to know about a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.nodeName`; empty while the pod is not scheduled.
    pub node_name: String,
    pub hostname: String,
    pub subdomain: String,
    /// `status.podIPs`, or `[status.podIP]` for writers that only set the singular field
    /// (the API server treats those the same way).
    pub ips: Vec<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When the `Ready` condition last changed: the pod's "trigger time" for the
    /// `endpoints.kubernetes.io/last-change-trigger-time` annotation.
    pub ready_transition: Option<Timestamp>,
    /// `metadata.deletionTimestamp` is set: the pod is shutting down.
    pub terminating: bool,
    /// Phase `Succeeded` or `Failed`: every container has stopped for good.
    pub terminal: bool,
    /// Named ports of the containers and of sidecars (init containers that keep running).
    pub named_ports: Vec<NamedPort>,
}

impl PodView {
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<String> = status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|ip| ip.ip.clone()).collect())
            .unwrap_or_default();
        if ips.is_empty() {
            if let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) {
                ips.push(ip);
            }
        }
        let ready_condition =
            status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
        let mut named_ports = Vec::new();
        if let Some(spec) = spec {
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for container in spec.containers.iter().chain(sidecars) {
                named_ports.extend(container_named_ports(container));
            }
        }
        PodView {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            hostname: spec.and_then(|s| s.hostname.clone()).unwrap_or_default(),
            subdomain: spec.and_then(|s| s.subdomain.clone()).unwrap_or_default(),
            ips,
            ready: ready_condition.is_some_and(|c| c.status == "True"),
            ready_transition: ready_condition.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
            terminating: meta.deletion_timestamp.is_some(),
            terminal: phase == "Succeeded" || phase == "Failed",
            named_ports,
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// Whether anything an endpoint is built from changed, labels aside (labels decide
    /// which Services select the pod, and are compared separately). The Ready transition
    /// time alone does not count: it only feeds an annotation.
    pub fn endpoint_fields_differ(&self, other: &PodView) -> bool {
        let PodView {
            namespace: _,
            name: _,
            uid,
            labels: _,
            node_name,
            hostname,
            subdomain,
            ips,
            ready,
            ready_transition: _,
            terminating,
            terminal,
            named_ports,
        } = self;
        *uid != other.uid
            || *node_name != other.node_name
            || *hostname != other.hostname
            || *subdomain != other.subdomain
            || *ips != other.ips
            || *ready != other.ready
            || *terminating != other.terminating
            || *terminal != other.terminal
            || *named_ports != other.named_ports
    }
}

fn container_named_ports(container: &Container) -> impl Iterator<Item = NamedPort> + '_ {
    container.ports.iter().flatten().filter_map(|p| {
        let name = p.name.clone().filter(|n| !n.is_empty())?;
        Some(NamedPort { name, protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port: p.container_port })
    })
}

/// A Service port's `targetPort`: a number, or the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(i32),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortView {
    pub name: String,
    pub protocol: String,
    pub port: i32,
    pub target: TargetPort,
    pub app_protocol: Option<String>,
}

/// What the endpoint controllers need to know about a Service.
#[derive(Clone, Debug)]
pub struct ServiceView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.selector`, `None` when absent or empty. An empty selector is stored as none
    /// upstream (protobuf cannot tell an empty map from a missing one), so it selects no
    /// pods there, and none here.
    pub selector: Option<BTreeMap<String, String>>,
    /// The selector in matching form (`None` exactly when `selector` is).
    pub matcher: Option<Selector>,
    pub external_name: bool,
    pub cluster_ip: String,
    pub ip_families: Vec<String>,
    pub ports: Vec<ServicePortView>,
    pub publish_not_ready_addresses: bool,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    pub created: Option<Timestamp>,
}

impl ServiceView {
    pub fn from_service(service: &Service) -> Self {
        let meta = &service.metadata;
        let spec = service.spec.as_ref();
        let selector = spec.and_then(|s| s.selector.clone()).filter(|s| !s.is_empty());
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| ServicePortView {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: p.port,
                        target: match &p.target_port {
                            Some(IntOrString::Int(n)) => TargetPort::Number(*n),
                            Some(IntOrString::String(name)) => TargetPort::Name(name.clone()),
                            // The API server defaults targetPort to port.
                            None => TargetPort::Number(p.port),
                        },
                        app_protocol: p.app_protocol.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ServiceView {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            matcher: selector.as_ref().map(Selector::from_set),
            selector,
            external_name: spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName"),
            cluster_ip: spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default(),
            ip_families: spec.and_then(|s| s.ip_families.clone()).unwrap_or_default(),
            ports,
            publish_not_ready_addresses: spec.and_then(|s| s.publish_not_ready_addresses).unwrap_or(false),
            deleting: meta.deletion_timestamp.is_some(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// Whether the Service has a cluster IP (false for headless `None` and for no IP).
    pub fn has_cluster_ip(&self) -> bool {
        !self.cluster_ip.is_empty() && self.cluster_ip != "None"
    }

    /// Whether `pod` is one of this Service's pods (same namespace, selector matches).
    pub fn selects(&self, pod: &PodView) -> bool {
        pod.namespace == self.namespace && self.matcher.as_ref().is_some_and(|m| m.matches(&pod.labels))
    }

    /// A stand-in Service object carrying this Service's identity, for events about it.
    pub fn reference_object(&self) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(self.uid.clone()).filter(|u| !u.is_empty()),
                resource_version: Some(self.resource_version.clone()).filter(|v| !v.is_empty()),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_json(extra: serde_json::Value) -> Pod {
        let mut base = serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9000}]}
            ], "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]},
                {"name": "setup", "ports": [{"name": "setup", "containerPort": 1}]}
            ]},
            "status": {"podIP": "10.244.1.5", "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T03:04:05Z"}]}
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).expect("pod")
    }

    #[test]
    fn pod_view_keeps_what_endpoints_need() {
        let view = PodView::from_pod(&pod_json(serde_json::json!({})));
        assert_eq!(view.ips, vec!["10.244.1.5".to_string()]);
        assert!(view.ready && !view.terminating && !view.terminal);
        assert_eq!(view.node_name, "n1");
        assert!(view.ready_transition.is_some());
        let names: Vec<&str> = view.named_ports.iter().map(|p| p.name.as_str()).collect();
        // Unnamed ports and ports of ordinary init containers cannot be targeted by name.
        assert_eq!(names, ["http", "metrics"]);
        assert_eq!(view.named_ports[0].protocol, "TCP");
    }

    #[test]
    fn pod_view_terminal_phases() {
        let done = PodView::from_pod(&pod_json(serde_json::json!({"status": {"phase": "Succeeded"}})));
        assert!(done.terminal && !done.ready && done.ips.is_empty());
    }

    #[test]
    fn endpoint_fields_ignore_labels_and_transition_times() {
        let a = PodView::from_pod(&pod_json(serde_json::json!({})));
        let mut b = a.clone();
        b.labels.insert("extra".into(), "1".into());
        b.ready_transition = None;
        assert!(!a.endpoint_fields_differ(&b));
        b.ready = false;
        assert!(a.endpoint_fields_differ(&b));
    }

    #[test]
    fn empty_selector_selects_nothing() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {"selector": {}, "ports": [{"port": 80}]}
        }))
        .expect("service");
        let view = ServiceView::from_service(&svc);
        assert!(view.selector.is_none());
        assert_eq!(view.ports[0].target, TargetPort::Number(80));
        assert_eq!(view.ports[0].protocol, "TCP");
        let pod = PodView::from_pod(&pod_json(serde_json::json!({})));
        assert!(!view.selects(&pod));
    }
}
