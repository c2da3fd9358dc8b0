//! A Pod's streaming subresources — `log`, `exec`, `attach`, `portforward` — proxied to the node agent
//! that runs the pod, as kube-apiserver proxies them to the kubelet.
//!
//! The request is resolved and validated here first (the pod exists, the container is known
//! or can be defaulted, the pod has a node, the parameters make sense), so that clients get
//! upstream's Status errors; then [`kubelet`] opens an HTTPS connection to the node's kubelet
//! API and [`proxy`] streams the log body or splices the upgraded connection (WebSocket or
//! SPDY) both ways.

mod kubelet;
mod params;
mod proxy;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;
use skiff_api::ApiError;

use super::read::get_object;
use super::Ctx;
use crate::http::Body;

/// The subresources served here.
pub const SUBRESOURCES: &[&str] = &["log", "exec", "attach", "portforward"];

/// Answers `pods/{name}/{log,exec,attach,portforward}`.
pub async fn handle(ctx: &Ctx, method: Method, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let sub = ctx.req.subresource.as_deref().unwrap_or("");
    let allowed = match sub {
        "log" => method == Method::GET,
        _ => method == Method::GET || method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed(format!("{method} is not supported on pods/{sub}")));
    }
    let name = ctx.req.name.clone().unwrap_or_default();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let (pod, _) = get_object(ctx, &name).await?;
    let namespace = ctx.req.namespace.clone().unwrap_or_default();
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_string();
    match sub {
        "log" => {
            let options = params::LogParams::parse(&raw_query, &name)?;
            let container = resolve_container(&pod, &name, options.container.as_deref())?;
            if node_name.is_empty() {
                // Upstream answers an empty log for a pod that has no node yet.
                return Ok(proxy::empty_log());
            }
            let target = kubelet::Target::of_node(ctx, &node_name).await?;
            let path = format!("/containerLogs/{namespace}/{name}/{container}?{}", options.kubelet_query());
            proxy::logs(&ctx.server, &target, &path).await
        }
        "exec" | "attach" => {
            // PodAttachOptions are PodExecOptions without the command.
            let mut options = params::ExecParams::parse(&raw_query)?;
            if sub == "attach" {
                options.command.clear();
            }
            let container = resolve_container(&pod, &name, options.container.as_deref())?;
            let target = node_target(ctx, &name, &node_name).await?;
            let path = format!("/{sub}/{namespace}/{name}/{container}?{}", options.kubelet_query());
            proxy::upgrade(&ctx.server, &target, method, &path, req).await
        }
        _ => {
            let ports = params::port_forward_ports(&raw_query)?;
            let target = node_target(ctx, &name, &node_name).await?;
            let mut path = format!("/portForward/{namespace}/{name}");
            if !ports.is_empty() {
                path.push_str("?port=");
                path.push_str(&ports.join(","));
            }
            proxy::upgrade(&ctx.server, &target, method, &path, req).await
        }
    }
}

async fn node_target(ctx: &Ctx, pod_name: &str, node_name: &str) -> Result<kubelet::Target, ApiError> {
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!("pod {pod_name} does not have a host assigned")));
    }
    kubelet::Target::of_node(ctx, node_name).await
}

/// The annotation kubectl reads to pick a pod's default container.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Picks the container a request is for: the named one (which must exist), else the only
/// container, else the one the default-container annotation names.
pub fn resolve_container(pod: &Value, pod_name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let containers = names(pod, "containers");
    // Upstream lists init containers, then containers, then ephemeral containers.
    let mut all = names(pod, "initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names(pod, "ephemeralContainers"));
    if let Some(name) = requested.filter(|c| !c.is_empty()) {
        if all.iter().any(|c| c == name) {
            return Ok(name.to_string());
        }
        return Err(ApiError::BadRequest(format!("container {name} is not valid for pod {pod_name}")));
    }
    if let [only] = containers.as_slice() {
        return Ok(only.clone());
    }
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|name| containers.iter().any(|c| c == name));
    if let Some(name) = annotated {
        return Ok(name.to_string());
    }
    if containers.is_empty() {
        return Err(ApiError::BadRequest(format!("a container name must be specified for pod {pod_name}")));
    }
    Err(ApiError::BadRequest(format!(
        "a container name must be specified for pod {pod_name}, choose one of: [{}]",
        all.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_resolve_like_upstream() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(resolve_container(&one, "p", None).unwrap(), "a");
        assert_eq!(resolve_container(&one, "p", Some("")).unwrap(), "a");
        let err = resolve_container(&one, "p", Some("zz")).unwrap_err();
        assert_eq!(err.message(), "container zz is not valid for pod p");
        let two = json!({"spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(resolve_container(&two, "p", Some("init")).unwrap(), "init");
        let err = resolve_container(&two, "p", None).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(err.message(), "a container name must be specified for pod p, choose one of: [init a b]");
        let mut annotated = two.clone();
        annotated["metadata"] = json!({"annotations": {DEFAULT_CONTAINER_ANNOTATION: "b"}});
        assert_eq!(resolve_container(&annotated, "p", None).unwrap(), "b");
    }
}
