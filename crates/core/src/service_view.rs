//! The service view: each Service joined with the endpoints of all its EndpointSlices.
//!
//! Every data-plane component needs the same join. The proxy programs
//! (VIP, port, protocol) → endpoints, DNS answers names with ClusterIPs or endpoint
//! addresses, and the ingress controller routes to endpoint addresses directly. This module
//! does that join once, without I/O, so it can be tested with plain JSON.
//!
//! Feed it the objects a watch delivers (as `serde_json::Value`, the wire shape of
//! `v1/Service` and `discovery.k8s.io/v1/EndpointSlice`):
//!
//! ```
//! use skiff_core::service_view::{ServiceKey, ServiceView};
//! use serde_json::json;
//!
//! let mut view = ServiceView::default();
//! view.apply_service(&json!({
//!     "metadata": {"namespace": "default", "name": "web"},
//!     "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
//! })).unwrap();
//! view.apply_endpoint_slice(&json!({
//!     "metadata": {"namespace": "default", "name": "web-abc",
//!                  "labels": {"kubernetes.io/service-name": "web"}},
//!     "addressType": "IPv4",
//!     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
//!     "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}}]
//! })).unwrap();
//! let web = view.service(&ServiceKey::new("default", "web")).unwrap();
//! let backends: Vec<_> = web.ready_backends("http").collect();
//! assert_eq!(backends, vec![("10.244.1.5".parse().unwrap(), 8080)]);
//! ```
//!
//! Each `apply_*`/`delete_*` call returns the keys of the Services whose view changed, so a
//! consumer recomputes only those. EndpointSlices may arrive before their Service; they are
//! kept and joined as soon as the Service appears.
//!
//! Semantics follow the discovery/v1 API: a nil `ready` or `serving` condition means true, a
//! nil `terminating` means false; an address listed in several slices of the same Service is
//! one endpoint whose ports are the union of the slices' ports (slices are split by port
//! set, so this is how per-port target numbers of one pod come together).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;

/// The label an EndpointSlice carries to name the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Namespace and name of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceKey {
        ServiceKey { namespace: namespace.into(), name: name.into() }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why an object could not be read into the view. The view is unchanged when this is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ViewError {
    #[error("object has no metadata.{0}")]
    MissingMetadata(&'static str),
}

/// `spec.type` of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// Transport protocol of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`); anything else is TCP, the API default.
    fn parse(value: Option<&Value>) -> Protocol {
        match value.and_then(Value::as_str) {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    /// Lowercase name, as used in DNS SRV labels (`_tcp`) and nftables.
    pub fn as_lower_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `targetPort` of a Service port: a number, or the name of a container port that each
/// endpoint resolves on its own (reported back in the EndpointSlice ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One entry of `spec.ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name; empty for the single unnamed port a Service may have.
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: TargetPort,
    /// Allocated node port (NodePort and LoadBalancer Services), 0 if none.
    pub node_port: u16,
    pub app_protocol: Option<String>,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn parse(value: Option<&Value>) -> TrafficPolicy {
        match value.and_then(Value::as_str) {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// The parts of a Service that data-plane components act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP` when the list is absent), parsed. Empty for
    /// headless and ExternalName Services.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`: DNS answers with endpoint addresses, the proxy does nothing.
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service (trailing dot removed).
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    /// Endpoints that are not ready are published anyway (DNS and, through the
    /// EndpointSlice controller's `ready: true`, the proxy).
    pub publish_not_ready_addresses: bool,
    /// Whether the Service has a selector (selector-less Services get hand-written slices).
    pub has_selector: bool,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    /// `sessionAffinity: ClientIP` timeout in seconds, `None` without affinity.
    pub session_affinity_timeout: Option<u32>,
    /// `spec.healthCheckNodePort` (LoadBalancer Services with externalTrafficPolicy Local), 0 if none.
    pub health_check_node_port: u16,
    /// `spec.loadBalancerSourceRanges`: CIDRs allowed to reach the LoadBalancer IPs (all when empty).
    pub load_balancer_source_ranges: Vec<String>,
}

/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (three hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

impl Service {
    /// Reads a `v1/Service` object. Unknown or malformed optional fields fall back to the API
    /// defaults rather than failing: the API server has validated the object already.
    pub fn from_json(obj: &Value) -> Result<Service, ViewError> {
        let key = object_key(obj)?;
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let service_type = match str_at(spec, "type") {
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            _ => ServiceType::ClusterIP,
        };
        let cluster_ip = str_at(spec, "clusterIP");
        let headless = service_type != ServiceType::ExternalName && cluster_ip == Some("None");
        let cluster_ips = match spec.get("clusterIPs").and_then(Value::as_array) {
            Some(list) => parse_ips(list),
            None => cluster_ip.and_then(|ip| ip.parse().ok()).into_iter().collect(),
        };
        let external_name = (service_type == ServiceType::ExternalName)
            .then(|| str_at(spec, "externalName"))
            .flatten()
            .map(|n| n.trim_end_matches('.').to_owned())
            .filter(|n| !n.is_empty());
        let ports = spec.get("ports").and_then(Value::as_array).map(|p| p.iter().filter_map(parse_service_port));
        let affinity = (str_at(spec, "sessionAffinity") == Some("ClientIP")).then(|| {
            spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let lb_ips = obj.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).map(|list| {
            list.iter().filter_map(|i| i.get("ip").and_then(Value::as_str)?.parse().ok()).collect::<Vec<IpAddr>>()
        });
        let mut service = Service {
            key,
            service_type,
            cluster_ips: if headless || service_type == ServiceType::ExternalName { Vec::new() } else { cluster_ips },
            headless,
            external_name,
            ports: ports.map(Iterator::collect).unwrap_or_default(),
            publish_not_ready_addresses: spec.get("publishNotReadyAddresses").and_then(Value::as_bool) == Some(true),
            has_selector: spec.get("selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty()),
            external_ips: spec.get("externalIPs").and_then(Value::as_array).map(|l| parse_ips(l)).unwrap_or_default(),
            load_balancer_ips: lb_ips.unwrap_or_default(),
            external_traffic_policy: TrafficPolicy::parse(spec.get("externalTrafficPolicy")),
            internal_traffic_policy: TrafficPolicy::parse(spec.get("internalTrafficPolicy")),
            session_affinity_timeout: affinity,
            health_check_node_port: spec
                .get("healthCheckNodePort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0),
            load_balancer_source_ranges: spec
                .get("loadBalancerSourceRanges")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(|r| Some(r.as_str()?.trim().to_owned())).collect())
                .unwrap_or_default(),
        };
        // Collected vectors start with spare room; views hold thousands of these.
        service.cluster_ips.shrink_to_fit();
        service.ports.shrink_to_fit();
        service.external_ips.shrink_to_fit();
        service.load_balancer_ips.shrink_to_fit();
        Ok(service)
    }
}

fn parse_service_port(port: &Value) -> Option<ServicePort> {
    let number = u16::try_from(port.get("port")?.as_u64()?).ok()?;
    let target_port = match port.get("targetPort") {
        Some(Value::Number(n)) => TargetPort::Number(n.as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(number)),
        Some(Value::String(s)) => match s.parse::<u16>() {
            Ok(n) => TargetPort::Number(n),
            Err(_) => TargetPort::Name(s.clone()),
        },
        _ => TargetPort::Number(number),
    };
    Some(ServicePort {
        name: str_at(port, "name").unwrap_or_default().to_owned(),
        protocol: Protocol::parse(port.get("protocol")),
        port: number,
        target_port,
        node_port: port.get("nodePort").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
        app_protocol: str_at(port, "appProtocol").map(str::to_owned),
    })
}

/// Address family of an EndpointSlice (`addressType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    /// Deprecated FQDN slices: their addresses are names, which this view does not resolve.
    Fqdn,
}

/// A port of an EndpointSlice: the number endpoints listen on for the Service port `name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// The object an endpoint stands for (usually a Pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One endpoint, merged across the slices of its Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    /// `conditions.ready` (nil → true). The EndpointSlice controller already sets it for
    /// not-ready pods of `publishNotReadyAddresses` Services.
    pub ready: bool,
    /// `conditions.serving` (nil → same as ready).
    pub serving: bool,
    /// `conditions.terminating` (nil → false).
    pub terminating: bool,
    /// `hostname` (set for pods whose `spec.subdomain` names a headless Service).
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub target_ref: Option<TargetRef>,
    /// The port numbers this endpoint listens on, per Service port name.
    pub ports: Vec<EndpointPort>,
}

impl Endpoint {
    /// The number this endpoint serves the Service port called `port_name` on.
    pub fn port(&self, port_name: &str) -> Option<u16> {
        self.ports.iter().find(|p| p.name == port_name).map(|p| p.port)
    }
}

/// One EndpointSlice, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// The Service it belongs to (its `kubernetes.io/service-name` label), if any.
    pub service: Option<ServiceKey>,
    pub address_type: AddressType,
    /// Each endpoint with one address (an endpoint listing several addresses is split;
    /// the API allows only one today).
    pub endpoints: Vec<Endpoint>,
}

impl EndpointSlice {
    /// Reads a `discovery.k8s.io/v1/EndpointSlice` object. Addresses that do not parse as IPs
    /// (FQDN slices, bad data) are skipped.
    pub fn from_json(obj: &Value) -> Result<EndpointSlice, ViewError> {
        let meta = obj.get("metadata").ok_or(ViewError::MissingMetadata("metadata"))?;
        let namespace = str_at(meta, "namespace").ok_or(ViewError::MissingMetadata("namespace"))?.to_owned();
        let name = str_at(meta, "name").ok_or(ViewError::MissingMetadata("name"))?.to_owned();
        let service = meta
            .pointer("/labels")
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| ServiceKey::new(namespace.clone(), s));
        let address_type = match str_at(obj, "addressType") {
            Some("IPv6") => AddressType::IPv6,
            Some("FQDN") => AddressType::Fqdn,
            _ => AddressType::IPv4,
        };
        let mut ports: Vec<EndpointPort> = obj
            .get("ports")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        Some(EndpointPort {
                            name: str_at(p, "name").unwrap_or_default().to_owned(),
                            protocol: Protocol::parse(p.get("protocol")),
                            port: u16::try_from(p.get("port")?.as_u64()?).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        ports.sort();
        ports.shrink_to_fit();
        let mut endpoints = Vec::new();
        if address_type != AddressType::Fqdn {
            for ep in obj.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
                parse_endpoint(ep, &namespace, &ports, &mut endpoints);
            }
        }
        endpoints.shrink_to_fit();
        Ok(EndpointSlice { namespace, name, service, address_type, endpoints })
    }
}

fn parse_endpoint(ep: &Value, slice_namespace: &str, ports: &[EndpointPort], out: &mut Vec<Endpoint>) {
    let conditions = ep.get("conditions").unwrap_or(&Value::Null);
    let ready = conditions.get("ready").and_then(Value::as_bool).unwrap_or(true);
    let serving = conditions.get("serving").and_then(Value::as_bool).unwrap_or(ready);
    let terminating = conditions.get("terminating").and_then(Value::as_bool).unwrap_or(false);
    let target_ref = ep.get("targetRef").and_then(|r| {
        Some(TargetRef {
            kind: str_at(r, "kind").unwrap_or("Pod").to_owned(),
            namespace: str_at(r, "namespace").unwrap_or(slice_namespace).to_owned(),
            name: str_at(r, "name")?.to_owned(),
        })
    });
    for address in ep.get("addresses").and_then(Value::as_array).into_iter().flatten() {
        let Some(address) = address.as_str().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        out.push(Endpoint {
            address,
            ready,
            serving,
            terminating,
            hostname: str_at(ep, "hostname").filter(|h| !h.is_empty()).map(str::to_owned),
            node_name: str_at(ep, "nodeName").map(str::to_owned),
            zone: str_at(ep, "zone").map(str::to_owned),
            target_ref: target_ref.clone(),
            ports: ports.to_vec(),
        });
    }
}

/// A Service and its merged endpoints, as [`ServiceView::service`] returns it.
#[derive(Clone, Debug)]
pub struct ServiceEntry<'a> {
    pub service: &'a Service,
    /// Endpoints of all slices, one per address, ordered by address.
    pub endpoints: Vec<Endpoint>,
}

impl ServiceEntry<'_> {
    /// Endpoints clients should be sent to: ready ones, or all of them when the Service
    /// publishes not-ready addresses.
    pub fn published_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        let all = self.service.publish_not_ready_addresses;
        self.endpoints.iter().filter(move |e| all || e.ready)
    }

    /// (address, target port number) of each published endpoint for the Service port
    /// called `port_name`; endpoints that do not serve that port are left out.
    pub fn ready_backends<'s>(&'s self, port_name: &'s str) -> impl Iterator<Item = (IpAddr, u16)> + 's {
        self.published_endpoints().filter_map(move |e| Some((e.address, e.port(port_name)?)))
    }
}

/// Services and EndpointSlices as the watches last reported them, joined on demand.
#[derive(Default, Debug)]
pub struct ServiceView {
    /// Boxed: a Service is ~200 bytes, and a map's spare capacity holds that much per empty
    /// slot when stored inline.
    services: HashMap<ServiceKey, Box<Service>>,
    /// Slices by (namespace, name).
    slices: HashMap<(String, String), EndpointSlice>,
    /// Slice names per Service, including Services that do not exist (yet).
    slices_by_service: HashMap<ServiceKey, BTreeSet<String>>,
}

impl ServiceView {
    /// Adds or replaces a Service. Returns the key of the changed Service.
    pub fn apply_service(&mut self, obj: &Value) -> Result<ServiceKey, ViewError> {
        let service = Service::from_json(obj)?;
        let key = service.key.clone();
        self.services.insert(key.clone(), Box::new(service));
        Ok(key)
    }

    /// Removes a Service; its slices stay until they are deleted themselves. Returns whether
    /// the Service was known.
    pub fn delete_service(&mut self, key: &ServiceKey) -> bool {
        self.services.remove(key).is_some()
    }

    /// Adds or replaces an EndpointSlice. Returns the Services whose endpoints changed: the
    /// slice's Service, and the one it belonged to before if its label changed.
    pub fn apply_endpoint_slice(&mut self, obj: &Value) -> Result<Vec<ServiceKey>, ViewError> {
        let slice = EndpointSlice::from_json(obj)?;
        let id = (slice.namespace.clone(), slice.name.clone());
        let mut changed = self.remove_slice(&id);
        if let Some(service) = &slice.service {
            self.slices_by_service.entry(service.clone()).or_default().insert(slice.name.clone());
            if !changed.contains(service) {
                changed.push(service.clone());
            }
        }
        self.slices.insert(id, slice);
        Ok(changed)
    }

    /// Removes an EndpointSlice. Returns the Service it belonged to, if any.
    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) -> Vec<ServiceKey> {
        self.remove_slice(&(namespace.to_owned(), name.to_owned()))
    }

    fn remove_slice(&mut self, id: &(String, String)) -> Vec<ServiceKey> {
        let Some(old) = self.slices.remove(id) else { return Vec::new() };
        let Some(service) = old.service else { return Vec::new() };
        if let Some(names) = self.slices_by_service.get_mut(&service) {
            names.remove(&id.1);
            if names.is_empty() {
                self.slices_by_service.remove(&service);
            }
        }
        vec![service]
    }

    /// The Service `key` with its endpoints merged across slices, or `None` if the Service
    /// does not exist.
    pub fn service(&self, key: &ServiceKey) -> Option<ServiceEntry<'_>> {
        let service = self.services.get(key)?;
        Some(ServiceEntry { service, endpoints: self.merged_endpoints(key) })
    }

    /// The Service object alone, without joining endpoints.
    pub fn get_service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key).map(|s| &**s)
    }

    /// The EndpointSlice `namespace/name`, as last applied.
    pub fn endpoint_slice(&self, namespace: &str, name: &str) -> Option<&EndpointSlice> {
        self.slices.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Every known Service key.
    pub fn service_keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.services.keys()
    }

    /// Every known EndpointSlice, as (namespace, name).
    pub fn slice_ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.slices.keys().map(|(ns, n)| (ns.as_str(), n.as_str()))
    }

    /// Number of Services known.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Endpoints of every slice labelled for `key`, merged by address.
    fn merged_endpoints(&self, key: &ServiceKey) -> Vec<Endpoint> {
        let Some(names) = self.slices_by_service.get(key) else { return Vec::new() };
        let mut by_address: BTreeMap<IpAddr, Endpoint> = BTreeMap::new();
        for name in names {
            let Some(slice) = self.slices.get(&(key.namespace.clone(), name.clone())) else { continue };
            for ep in &slice.endpoints {
                match by_address.get_mut(&ep.address) {
                    None => {
                        by_address.insert(ep.address, ep.clone());
                    }
                    Some(merged) => merge_endpoint(merged, ep),
                }
            }
        }
        by_address.into_values().collect()
    }
}

/// Folds a second sighting of the same address (from another slice) into `merged`: ports
/// are united; conditions and names from either sighting count (a pod moving between slices
/// is briefly in both, with the same data).
fn merge_endpoint(merged: &mut Endpoint, other: &Endpoint) {
    for port in &other.ports {
        if !merged.ports.contains(port) {
            merged.ports.push(port.clone());
        }
    }
    merged.ports.sort();
    merged.ready |= other.ready;
    merged.serving |= other.serving;
    merged.terminating &= other.terminating;
    if merged.hostname.is_none() {
        merged.hostname.clone_from(&other.hostname);
    }
    if merged.node_name.is_none() {
        merged.node_name.clone_from(&other.node_name);
    }
    if merged.zone.is_none() {
        merged.zone.clone_from(&other.zone);
    }
    if merged.target_ref.is_none() {
        merged.target_ref.clone_from(&other.target_ref);
    }
}

fn object_key(obj: &Value) -> Result<ServiceKey, ViewError> {
    let meta = obj.get("metadata").ok_or(ViewError::MissingMetadata("metadata"))?;
    let namespace = str_at(meta, "namespace").ok_or(ViewError::MissingMetadata("namespace"))?;
    let name = str_at(meta, "name").ok_or(ViewError::MissingMetadata("name"))?;
    Ok(ServiceKey::new(namespace, name))
}

fn str_at<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

fn parse_ips(list: &[Value]) -> Vec<IpAddr> {
    list.iter().filter_map(|ip| ip.as_str()?.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, service: &str, ports: Value, endpoints: Value) -> Value {
        json!({
            "metadata": {"namespace": "ns", "name": name, "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints
        })
    }

    #[test]
    fn parses_service_fields_and_defaults() {
        let s = Service::from_json(&json!({
            "metadata": {"namespace": "ns", "name": "svc"},
            "spec": {
                "type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"],
                "selector": {"app": "x"}, "externalTrafficPolicy": "Local",
                "sessionAffinity": "ClientIP",
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
                    {"port": 70000}
                ]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "172.30.255.1"}, {"hostname": "x"}]}}
        }))
        .unwrap();
        assert_eq!(s.service_type, ServiceType::NodePort);
        assert_eq!(s.cluster_ips, vec!["10.96.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
        assert!(!s.headless && s.has_selector);
        assert_eq!(s.ports.len(), 2, "the out-of-range port is skipped");
        assert_eq!(s.ports[0].target_port, TargetPort::Name("web".into()));
        assert_eq!(s.ports[0].node_port, 30080);
        assert_eq!(s.ports[1].protocol, Protocol::Udp);
        assert_eq!(s.ports[1].target_port, TargetPort::Number(5353));
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.internal_traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(s.session_affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert_eq!(s.health_check_node_port, 0);
        assert!(s.load_balancer_source_ranges.is_empty());
        assert_eq!(s.load_balancer_ips, vec!["172.30.255.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn headless_and_external_name() {
        let h = Service::from_json(&json!({"metadata": {"namespace": "ns", "name": "h"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}))
        .unwrap();
        assert!(h.headless);
        assert!(h.cluster_ips.is_empty());
        let e = Service::from_json(&json!({"metadata": {"namespace": "ns", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "www.example.com."}}))
        .unwrap();
        assert!(!e.headless);
        assert_eq!(e.external_name.as_deref(), Some("www.example.com"));
        assert!(Service::from_json(&json!({"metadata": {"name": "x"}})).is_err());
    }

    #[test]
    fn merges_endpoints_across_slices_by_address() {
        let mut view = ServiceView::default();
        view.apply_service(&json!({"metadata": {"namespace": "ns", "name": "svc"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}}))
            .unwrap();
        let changed = view
            .apply_endpoint_slice(&slice(
                "svc-1",
                "svc",
                json!([{"name": "a", "port": 8001}]),
                json!([{"addresses": ["10.0.0.1"], "conditions": {}, "hostname": "h1", "nodeName": "n1",
                        "targetRef": {"kind": "Pod", "name": "p1"}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "terminating": true}}]),
            ))
            .unwrap();
        assert_eq!(changed, vec![ServiceKey::new("ns", "svc")]);
        view.apply_endpoint_slice(&slice(
            "svc-2",
            "svc",
            json!([{"name": "b", "port": 8002}]),
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}]),
        ))
        .unwrap();
        let entry = view.service(&ServiceKey::new("ns", "svc")).unwrap();
        assert_eq!(entry.endpoints.len(), 2);
        let first = &entry.endpoints[0];
        assert_eq!(first.port("a"), Some(8001));
        assert_eq!(first.port("b"), Some(8002));
        assert!(first.ready && first.serving && !first.terminating);
        assert_eq!(first.hostname.as_deref(), Some("h1"));
        assert_eq!(first.target_ref.as_ref().map(|r| r.namespace.as_str()), Some("ns"));
        let second = &entry.endpoints[1];
        assert!(!second.ready && !second.serving && second.terminating);
        let backends: Vec<_> = entry.ready_backends("b").collect();
        assert_eq!(backends, vec![("10.0.0.1".parse().unwrap(), 8002)]);
    }

    #[test]
    fn slices_before_service_and_relabelled_slices() {
        let mut view = ServiceView::default();
        view.apply_endpoint_slice(&slice("s", "a", json!([]), json!([{"addresses": ["10.0.0.1"]}]))).unwrap();
        assert!(view.service(&ServiceKey::new("ns", "a")).is_none());
        view.apply_service(&json!({"metadata": {"namespace": "ns", "name": "a"}, "spec": {"clusterIP": "None"}}))
            .unwrap();
        assert_eq!(view.service(&ServiceKey::new("ns", "a")).unwrap().endpoints.len(), 1);
        let changed =
            view.apply_endpoint_slice(&slice("s", "b", json!([]), json!([{"addresses": ["10.0.0.1"]}]))).unwrap();
        assert_eq!(changed, vec![ServiceKey::new("ns", "a"), ServiceKey::new("ns", "b")]);
        assert!(view.service(&ServiceKey::new("ns", "a")).unwrap().endpoints.is_empty());
        assert_eq!(view.delete_endpoint_slice("ns", "s"), vec![ServiceKey::new("ns", "b")]);
        assert!(view.delete_endpoint_slice("ns", "s").is_empty());
        assert!(view.delete_service(&ServiceKey::new("ns", "a")));
        assert!(view.is_empty());
    }

    #[test]
    fn publish_not_ready_and_bad_addresses() {
        let mut view = ServiceView::default();
        view.apply_service(&json!({"metadata": {"namespace": "ns", "name": "p"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true}}))
            .unwrap();
        view.apply_endpoint_slice(&slice(
            "p1",
            "p",
            json!([]),
            json!([{"addresses": ["not-an-ip"]}, {"addresses": ["10.0.0.7"], "conditions": {"ready": false}}]),
        ))
        .unwrap();
        let entry = view.service(&ServiceKey::new("ns", "p")).unwrap();
        assert_eq!(entry.published_endpoints().count(), 1);
        let fqdn = json!({"metadata": {"namespace": "ns", "name": "f"}, "addressType": "FQDN",
            "endpoints": [{"addresses": ["example.com"]}]});
        assert!(EndpointSlice::from_json(&fqdn).unwrap().endpoints.is_empty());
    }
}
