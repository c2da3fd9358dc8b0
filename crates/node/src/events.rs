//! core/v1 Events about pods (what `kubectl describe pod` shows), posted as kubelet does:
//! source component `kubelet`, host = this node, involvedObject.fieldPath naming the container.
//! Posting is fire-and-forget; an Event that cannot be written is only logged.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Posts an Event about `pod` (and `container`, when given) in the background.
pub fn record(
    client: &kube::Client,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    kind: EventType,
    reason: &str,
    message: &str,
) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{nanos:x}", pod.metadata.name.clone().unwrap_or_default())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            ..Default::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        type_: Some(if kind == EventType::Normal { "Normal" } else { "Warning" }.into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.to_owned()) }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_owned()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let reason = reason.to_owned();
    tokio::spawn(async move {
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, %reason, "posting an Event failed");
        }
    });
}
