//! core/v1 Events for what the controllers do, so `kubectl describe` shows them.
//!
//! kube-runtime's recorder writes `events.k8s.io/v1` Events; kubectl describe reads
//! core/v1, so this small recorder writes those. Repeats of the same (object, reason,
//! message) bump `count` and `lastTimestamp` instead of creating new Events, as client-go's
//! recorder does.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;

/// Normal or Warning, the two event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// (involved object uid, reason, message) → (event namespace, event name, count).
type SeenEvents = HashMap<(String, String, String), (String, String, i32)>;

pub struct Recorder {
    client: kube::Client,
    component: String,
    /// (namespace, event name) of the last event per (object uid, reason, message), with its count.
    seen: Mutex<SeenEvents>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder { client, component: component.to_string(), seen: Mutex::new(HashMap::new()) }
    }

    /// Records an event about `obj`. Failures are logged, never returned: events are advice.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, kind: EventType, reason: &str, message: &str) {
        let reference = object_reference(obj);
        let uid = reference.uid.clone().unwrap_or_default();
        let namespace = reference.namespace.clone().unwrap_or_else(|| "default".into());
        let key = (uid, reason.to_string(), message.to_string());
        let previous = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some((ns, name, count)) = previous {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now()});
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            if api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (ns, name, count + 1));
                }
                return;
            }
        }
        let name = format!(
            "{}.{:x}",
            reference.name.clone().unwrap_or_default(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            involved_object: reference,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(match kind {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            count: Some(1),
            first_timestamp: Some(now()),
            last_timestamp: Some(now()),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(key, (namespace, name, 1));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "recording an event failed"),
        }
    }
}

/// The ObjectReference of any object.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}
