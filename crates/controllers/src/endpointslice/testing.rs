//! Builders for the unit tests of the endpoint controllers.

use k8s_openapi::api::core::v1::Service;

use super::model::{NamedPort, PodView, ServiceView};

/// A running pod `name` in `default` on node `n1`, labelled `app=web`, with a container
/// port named `http` (8080).
pub fn pod(name: &str, ip: &str, ready: bool) -> PodView {
    PodView {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: [("app".to_string(), "web".to_string())].into(),
        node_name: "n1".into(),
        hostname: String::new(),
        subdomain: String::new(),
        ips: vec![ip.into()],
        ready,
        ready_transition: None,
        terminating: false,
        terminal: false,
        named_ports: vec![NamedPort { name: "http".into(), protocol: "TCP".into(), port: 8080 }],
    }
}

/// Service `default/web` selecting `app=web` (cluster IP, IPv4, port 80 → 8080), with
/// `spec` fields replaced by those given.
pub fn service(spec: serde_json::Value) -> ServiceView {
    let mut base = serde_json::json!({
        "selector": {"app": "web"}, "clusterIP": "10.96.0.20", "ipFamilies": ["IPv4"],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    });
    if let (Some(base), Some(spec)) = (base.as_object_mut(), spec.as_object()) {
        for (k, v) in spec {
            base.insert(k.clone(), v.clone());
        }
    }
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "blue"}},
        "spec": base
    }))
    .expect("service");
    ServiceView::from_service(&svc)
}
