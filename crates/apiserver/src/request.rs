//! Turning a URL into "which resource, which object, which verb" (upstream's RequestInfo).

use skiff_api::registry::{self, ResourceDef};
use skiff_api::ApiError;

/// What a request under `/api/v1` or `/apis/<group>/<version>` addresses.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub def: &'static ResourceDef,
    /// The namespace in the URL (None for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
    /// The object name (None for collections).
    pub name: Option<String>,
    /// `status`, `scale`, ... (None for the main resource).
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

/// The paths the API serves.
#[derive(Debug, Clone)]
pub enum Route {
    Version,
    Health(&'static str),
    /// `/api`
    CoreGroup,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion(String, String),
    OpenApiV3Index,
    OpenApiV3(String),
    Resource(ResourceRequest),
    NotFound,
}

fn not_found() -> ApiError {
    ApiError::NotFound(skiff_api::Subject { resource: String::new(), name: String::new(), ..Default::default() })
}

/// Parses a request path (without query).
pub fn route(path: &str) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["healthz"] | ["healthz", ..] => return Ok(Route::Health("healthz")),
        ["livez"] | ["livez", ..] => return Ok(Route::Health("livez")),
        ["readyz"] | ["readyz", ..] => return Ok(Route::Health("readyz")),
        ["api"] => return Ok(Route::CoreGroup),
        ["apis"] => return Ok(Route::Groups),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3Index),
        ["openapi", "v3", rest @ ..] => return Ok(Route::OpenApiV3(rest.join("/"))),
        ["apis", group] => return Ok(Route::Group(group.to_string())),
        ["api", "v1"] => return Ok(Route::GroupVersion(String::new(), "v1".into())),
        ["apis", g, v] => return Ok(Route::GroupVersion(g.to_string(), v.to_string())),
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(Route::NotFound),
    };
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |plural: &str| registry::lookup(group, version, plural).ok_or_else(not_found);
    let req = |def, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourceRequest {
            def,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            watch_path,
        })
    };
    // Namespaces are both a resource (`/api/v1/namespaces/x`) and a scope
    // (`/api/v1/namespaces/x/services`): the segment count tells them apart.
    Ok(match rest {
        ["namespaces", ns, plural, tail @ ..]
            if group.is_empty() && (*plural == "status" || *plural == "finalize") && tail.is_empty() =>
        {
            req(lookup("namespaces")?, None, Some(ns), Some(plural))
        }
        ["namespaces", ns, plural] => req(lookup(plural)?, Some(ns), None, None),
        ["namespaces", ns, plural, name] => req(lookup(plural)?, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => req(lookup(plural)?, Some(ns), Some(name), Some(sub)),
        [plural] => req(lookup(plural)?, None, None, None),
        [plural, name] => req(lookup(plural)?, None, Some(name), None),
        [plural, name, sub] => req(lookup(plural)?, None, Some(name), Some(sub)),
        _ => Route::NotFound,
    })
}

impl ResourceRequest {
    /// Whether the URL shape fits the resource's scope (`/api/v1/namespaces/x/nodes` does not).
    pub fn scope_matches(&self) -> bool {
        if self.def.namespaced {
            true
        } else {
            self.namespace.is_none()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourceRequest {
        match route(path).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn parses_namespaced_and_cluster_paths() {
        let r = res("/api/v1/namespaces/default/services/web");
        assert_eq!(
            (r.def.plural, r.namespace.as_deref(), r.name.as_deref()),
            ("services", Some("default"), Some("web"))
        );
        let r = res("/api/v1/namespaces/default");
        assert_eq!((r.def.plural, r.namespace.as_deref(), r.name.as_deref()), ("namespaces", None, Some("default")));
        let r = res("/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (r.def.plural, r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let r = res("/apis/apps/v1/namespaces/d/deployments/x/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        let r = res("/api/v1/services");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
        assert!(route("/api/v1/namespaces/default/nosuch").is_err());
        assert!(matches!(route("/nothing").unwrap(), Route::NotFound));
    }
}
