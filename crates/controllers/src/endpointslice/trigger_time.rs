//! The `endpoints.kubernetes.io/last-change-trigger-time` annotation: when the earliest
//! change that a write reflects happened (a pod's Ready transition, or the Service's
//! creation). Consumers measure endpoint propagation latency with it. As upstream, the
//! first sync of a Service after the controller starts has no trigger time.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;

use super::model::ObjectKey;

#[derive(Default)]
struct ServiceState {
    pods: HashMap<String, Timestamp>,
    service: Option<Timestamp>,
}

/// What each Service's last sync saw, to find the changes since.
#[derive(Default)]
pub struct TriggerTimes {
    services: HashMap<ObjectKey, ServiceState>,
}

impl TriggerTimes {
    /// The trigger time of a sync of `service` (created at `service_created`) whose pods
    /// have the given (name, Ready transition time) pairs; `None` for the first sync.
    pub fn compute<'a>(
        &mut self,
        service: &ObjectKey,
        service_created: Option<Timestamp>,
        pods: impl IntoIterator<Item = (&'a str, Option<Timestamp>)>,
    ) -> Option<Timestamp> {
        let previous = self.services.remove(service);
        let known = previous.is_some();
        let previous = previous.unwrap_or_default();
        let mut earliest: Option<Timestamp> = None;
        let mut state = ServiceState { pods: HashMap::new(), service: service_created };
        for (name, time) in pods {
            let Some(time) = time else { continue };
            if previous.pods.get(name).is_none_or(|seen| time > *seen) {
                earliest = Some(earliest.map_or(time, |e| e.min(time)));
            }
            state.pods.insert(name.to_string(), time);
        }
        if let Some(created) = service_created {
            if previous.service.is_none_or(|seen| created > seen) {
                earliest = Some(earliest.map_or(created, |e| e.min(created)));
            }
        }
        self.services.insert(service.clone(), state);
        if known {
            earliest
        } else {
            None
        }
    }

    pub fn forget(&mut self, service: &ObjectKey) {
        self.services.remove(service);
    }
}

/// The annotation value: RFC 3339 in UTC with as many fractional digits as needed.
pub fn format_time(time: Timestamp) -> String {
    time.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn reports_the_earliest_change_since_the_last_sync() {
        let mut times = TriggerTimes::default();
        let svc = ObjectKey::new("default", "web");
        let created = Some(t("2024-01-01T00:00:00Z"));
        let first = times.compute(&svc, created, [("a", Some(t("2024-01-01T00:01:00Z")))]);
        assert_eq!(first, None, "the first sync has no trigger time");
        let unchanged = times.compute(&svc, created, [("a", Some(t("2024-01-01T00:01:00Z")))]);
        assert_eq!(unchanged, None);
        let flipped = times.compute(
            &svc,
            created,
            [("a", Some(t("2024-01-01T00:05:00Z"))), ("b", Some(t("2024-01-01T00:04:00.5Z")))],
        );
        assert_eq!(flipped, Some(t("2024-01-01T00:04:00.5Z")));
        assert_eq!(format_time(t("2024-01-01T00:04:00.5Z")), "2024-01-01T00:04:00.5Z");
        times.forget(&svc);
        assert_eq!(times.compute(&svc, created, []), None);
    }
}
