//! A container's environment, assembled as kubelet does: `envFrom`, then `env` (literal
//! values with `$(VAR)` expansion, or `valueFrom` a pod field, ConfigMap or Secret key), then
//! the service environment variables of the Services that exist when the container starts.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// What `valueFrom` and `envFrom` may read, fetched by the caller before assembly.
#[derive(Default)]
pub struct Sources {
    /// ConfigMaps of the pod's namespace by name; None = does not exist.
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    pub pod_ip: String,
    pub host_ip: String,
}

/// Names of the ConfigMaps and Secrets a container's environment refers to.
pub fn referenced_objects(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else { continue };
        config_maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// The environment of `container`, or why it cannot be built (kubelet's
/// `CreateContainerConfigError` message).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    service_env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut defined: HashMap<String, usize> = HashMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut out, &mut defined, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(secret) => {
                    for (k, v) in secret_data(&secret) {
                        set(&mut out, &mut defined, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path, sources)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let cm = sources.config_maps.get(&r.name).cloned().flatten();
                    match cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned())) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("couldn't find key {} in ConfigMap {}", r.key, r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let secret = sources.secrets.get(&r.name).cloned().flatten();
                    match secret.map(|s| secret_data(&s)).and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => return Err(format!("couldn't find key {} in Secret {}", r.key, r.name)),
                    }
                } else {
                    return Err(format!("env {}: resourceFieldRef is not supported by skiff", var.name));
                }
            }
            (Some(value), None) => {
                let known: HashMap<&str, &str> =
                    out.iter().chain(service_env.iter()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(value, |name| known.get(name).map(|v| v.to_string()))
            }
            (None, None) => String::new(),
        };
        set(&mut out, &mut defined, var.name.clone(), value);
    }
    for (name, value) in service_env {
        if !defined.contains_key(name) {
            set(&mut out, &mut defined, name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// Sets `name` (a later definition replaces the value but keeps the first position).
fn set(out: &mut Vec<(String, String)>, defined: &mut HashMap<String, usize>, name: String, value: String) {
    match defined.get(&name) {
        Some(&i) => out[i].1 = value,
        None => {
            defined.insert(name.clone(), out.len());
            out.push((name, value));
        }
    }
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The value of a downward-API `fieldRef`.
fn field_value(pod: &Pod, path: &str, sources: &Sources) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_owned())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(&key).cloned()).unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(&key).cloned()).unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path:?}"));
            }
        }
    })
}

/// Kubernetes `$(VAR)` expansion: known references are replaced, `$$` is a literal `$`, and
/// unknown references are left as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The Services whose variables a pod in `namespace` gets: the namespace's Services with a
/// ClusterIP when `enableServiceLinks` (default true), and always `default/kubernetes`.
pub fn service_env(
    namespace: &str,
    services: &[Service],
    kubernetes: Option<&Service>,
    links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    if links {
        for svc in services {
            if svc.metadata.namespace.as_deref() == Some(namespace) {
                chosen.insert(svc.metadata.name.clone().unwrap_or_default(), svc);
            }
        }
    }
    if let Some(k) = kubernetes {
        chosen.insert("kubernetes".to_owned(), k);
    }
    let mut out = Vec::new();
    for (name, svc) in chosen {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { continue };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = name.to_uppercase().replace('-', "_");
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_owned()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in &ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let suffix = port_name.to_uppercase().replace('-', "_");
                out.push((format!("{prefix}_SERVICE_PORT_{suffix}"), port.port.to_string()));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((format!("{prefix}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
        for port in &ports {
            let protocol = proto(port);
            let base = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            out.push((base.clone(), format!("{}://{ip}:{}", protocol.to_lowercase(), port.port)));
            out.push((format!("{base}_PROTO"), protocol.to_lowercase()));
            out.push((format!("{base}_PORT"), port.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}),
        )
        .unwrap()
    }

    fn lookup(env: &[(String, String)], name: &str) -> Option<String> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn service_variables_like_upstream() {
        let redis = svc(
            "shop",
            "redis-main",
            "10.96.5.5",
            json!([{"name": "db", "port": 6379}, {"port": 53, "protocol": "UDP"}]),
        );
        let headless = svc("shop", "headless", "None", json!([{"port": 80}]));
        let other = svc("other", "x", "10.96.9.9", json!([{"port": 80}]));
        let kube = svc("default", "kubernetes", "10.96.0.1", json!([{"name": "https", "port": 443}]));
        let env = service_env("shop", &[redis.clone(), headless, other], Some(&kube), true);
        assert_eq!(lookup(&env, "REDIS_MAIN_SERVICE_HOST").as_deref(), Some("10.96.5.5"));
        assert_eq!(lookup(&env, "REDIS_MAIN_SERVICE_PORT").as_deref(), Some("6379"));
        assert_eq!(lookup(&env, "REDIS_MAIN_SERVICE_PORT_DB").as_deref(), Some("6379"));
        assert_eq!(lookup(&env, "REDIS_MAIN_PORT").as_deref(), Some("tcp://10.96.5.5:6379"));
        assert_eq!(lookup(&env, "REDIS_MAIN_PORT_53_UDP").as_deref(), Some("udp://10.96.5.5:53"));
        assert_eq!(lookup(&env, "REDIS_MAIN_PORT_53_UDP_PROTO").as_deref(), Some("udp"));
        assert_eq!(lookup(&env, "REDIS_MAIN_PORT_6379_TCP_ADDR").as_deref(), Some("10.96.5.5"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST").as_deref(), Some("10.96.0.1"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT_HTTPS").as_deref(), Some("443"));
        assert!(lookup(&env, "HEADLESS_SERVICE_HOST").is_none());
        assert!(lookup(&env, "X_SERVICE_HOST").is_none());
        let no_links = service_env("shop", &[redis], Some(&kube), false);
        assert!(lookup(&no_links, "REDIS_MAIN_SERVICE_HOST").is_none());
        assert!(lookup(&no_links, "KUBERNETES_SERVICE_HOST").is_some());
    }

    #[test]
    fn expansion() {
        let f = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", f), "x-$(B)-$(A)-$");
        assert_eq!(expand("$(A", f), "$(A");
    }

    #[test]
    fn container_environment() {
        let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "URL", "value": "http://$(POD):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "KUBERNETES_SERVICE_HOST", "value": "overridden"}
        ]}]}}))
        .unwrap();
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(referenced_objects(&container), (vec!["cfg".to_string()], vec!["s".to_string()]));
        let mut sources = Sources { pod_ip: "10.244.0.5".into(), host_ip: "172.30.0.11".into(), ..Default::default() };
        sources.config_maps.insert("cfg".into(), None);
        sources
            .secrets
            .insert("s".into(), Some(serde_json::from_value(json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap()));
        let service = vec![
            ("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into()),
            ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ];
        let err = container_env(&pod, &container, &sources, &service).unwrap_err();
        assert!(err.contains("ConfigMap cfg"), "{err}");
        sources
            .config_maps
            .insert("cfg".into(), Some(serde_json::from_value(json!({"data": {"color": "blue"}})).unwrap()));
        let env = container_env(&pod, &container, &sources, &service).unwrap();
        assert_eq!(lookup(&env, "POD").as_deref(), Some("p"));
        assert_eq!(lookup(&env, "IP").as_deref(), Some("10.244.0.5"));
        assert_eq!(lookup(&env, "NODE").as_deref(), Some("node-1"));
        assert_eq!(lookup(&env, "APP").as_deref(), Some("web"));
        assert_eq!(lookup(&env, "COLOR").as_deref(), Some("blue"));
        assert_eq!(lookup(&env, "PASS").as_deref(), Some("hunter2"));
        assert_eq!(lookup(&env, "URL").as_deref(), Some("http://p:443"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST").as_deref(), Some("overridden"));
        assert_eq!(env.iter().filter(|(k, _)| k == "KUBERNETES_SERVICE_HOST").count(), 1);
    }
}
