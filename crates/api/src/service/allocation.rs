//! Planning which ClusterIPs and NodePorts a Service claims or releases (upstream
//! `pkg/registry/core/service/storage/alloc.go` with its ip/port allocators).
//!
//! Upstream keeps a bitmap per range and allocates in memory. skiff instead stores one key
//! per claimed value ([`ip_key`], [`node_port_key`]): the API server reads every claim into
//! an [`Allocated`], asks [`plan_allocation`] what to claim and release, and commits the
//! claims (create-if-absent), the releases and the Service in one store transaction. If a
//! claim loses a race (the key appeared meanwhile), it re-reads the claims and plans again
//! from the object as it was before planning: an explicitly requested value then fails with
//! "provided IP/port is already allocated", a dynamic one is picked anew.
//!
//! NodePorts are one pool shared by TCP, UDP and SCTP: a port number held by one Service is
//! taken for every other Service whatever the protocol. Within one Service, ports with the
//! same port number (such as DNS on 53/TCP and 53/UDP) share one NodePort.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use rand::Rng;

use super::bands::{ip_static_band, port_static_band, Bands};
use super::config::ServiceConfig;
use super::formats::parse_ip;
use super::ip_families::{init_ip_family_fields, is_unchanged_prefer_dual_stack};
use super::spec::{
    cluster_ips, health_check_node_port, ip_families, needs_health_check, needs_node_port, node_port, ports,
    service_node_ports, service_type, should_allocate_node_ports, spec, spec_mut, text, CLUSTER_IP_NONE, IPV4,
    TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME,
};
use super::update::reconcile_with_stored;
use super::validation_ips::ips_value;
use crate::status::{ApiError, FieldError, Subject};

/// Store key prefix of claimed ClusterIPs.
pub const IP_KEY_PREFIX: &str = "/registry/ranges/serviceips/";
/// Store key prefix of claimed NodePorts (health-check node ports included).
pub const NODE_PORT_KEY_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Store key recording that `ip` is taken.
pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_KEY_PREFIX}{ip}")
}

/// Store key recording that NodePort `port` is taken.
pub fn node_port_key(port: u16) -> String {
    format!("{NODE_PORT_KEY_PREFIX}{port}")
}

/// Everything already claimed in the cluster, including what the Service being updated holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocated {
    pub ips: BTreeSet<Ipv4Addr>,
    /// Port numbers only: the NodePort pool does not distinguish protocols.
    pub node_ports: BTreeSet<u16>,
}

/// One value to claim. `explicit` values were asked for by the user; the others were chosen
/// at random, so a conflict on them means "plan again", not "reject the request".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<T> {
    pub value: T,
    pub explicit: bool,
}

/// What to change in the claim keys for one create or update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationPlan {
    pub claim_ips: Vec<Claim<Ipv4Addr>>,
    pub release_ips: Vec<Ipv4Addr>,
    pub claim_node_ports: Vec<Claim<u16>>,
    pub release_node_ports: Vec<u16>,
}

impl AllocationPlan {
    pub fn is_empty(&self) -> bool {
        self.claim_ips.is_empty()
            && self.release_ips.is_empty()
            && self.claim_node_ports.is_empty()
            && self.release_node_ports.is_empty()
    }
}

/// Fills in `new`'s ClusterIP(s), node ports and health-check node port, and says which
/// values to claim and release. `old` is the stored object on update, None on create.
///
/// `new` must be defaulted ([`super::default_service`]) and should be prepared
/// ([`super::prepare_create`] / [`super::prepare_update`]); the parts of preparation that
/// allocation depends on (carrying allocated values over, `clusterIP`/`clusterIPs` in step)
/// are repeated here, as upstream does them right before allocating. Validation must come
/// after: upstream allocates first, and validation requires what allocation fills in (such
/// as the health-check node port of a LoadBalancer with `externalTrafficPolicy: Local`). Requested values are honoured or
/// refused with upstream's errors (422 Invalid); a full range is a 500, as upstream.
/// Deterministic for a given input and `rng` state. On error `new` may be partly filled;
/// plan again from a copy taken before the call.
pub fn plan_allocation(
    new: &mut Service,
    old: Option<&Service>,
    allocated: &Allocated,
    cfg: &ServiceConfig,
    rng: &mut impl Rng,
) -> Result<AllocationPlan, ApiError> {
    let subject = super::service_subject(new);
    let mut planner = Planner::new(cfg, allocated, rng);
    let new_spec = spec_mut(new);
    let old_spec = old.map(spec);
    reconcile_with_stored(new_spec, old_spec);
    let result = match old_spec {
        None => planner.plan_create(new_spec),
        Some(old_spec) => planner.plan_update(new_spec, old_spec),
    };
    result.map_err(|failure| failure.into_api_error(subject))?;
    Ok(planner.finish())
}

/// What a Service holds, to release when it is deleted: its IPv4 ClusterIPs and every node
/// port it carries (health-check node port included).
pub fn allocations_of(svc: &Service) -> (Vec<Ipv4Addr>, Vec<u16>) {
    let spec = spec(svc);
    let ips = if service_type(spec) == TYPE_EXTERNAL_NAME
        || cluster_ips(spec).first().is_some_and(|ip| ip == CLUSTER_IP_NONE)
    {
        Vec::new()
    } else {
        let mut ips: Vec<Ipv4Addr> = cluster_ips(spec).iter().filter_map(|ip| as_ipv4(ip)).collect();
        ips.dedup();
        ips
    };
    let mut node_ports: BTreeSet<u16> = service_node_ports(spec).into_iter().filter_map(as_port).collect();
    if needs_health_check(spec) {
        node_ports.extend(as_port(health_check_node_port(spec)));
    }
    (ips, node_ports.into_iter().collect())
}

fn as_ipv4(ip: &str) -> Option<Ipv4Addr> {
    match parse_ip(ip) {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    }
}

fn as_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// Working state of one plan: the cluster's claims plus the ones made so far.
struct Planner<'a, R: Rng> {
    cfg: &'a ServiceConfig,
    rng: &'a mut R,
    ip_bands: Bands,
    port_bands: Bands,
    /// Taken ClusterIPs, as indexes of usable addresses in the CIDR.
    taken_ips: BTreeSet<u32>,
    /// Taken NodePorts, as offsets from the start of the range.
    taken_ports: BTreeSet<u32>,
    plan: AllocationPlan,
    release_ips: BTreeSet<Ipv4Addr>,
    release_ports: BTreeSet<u16>,
}

impl<'a, R: Rng> Planner<'a, R> {
    fn new(cfg: &'a ServiceConfig, allocated: &Allocated, rng: &'a mut R) -> Self {
        let cidr = cfg.cidr;
        let port_count = cfg.node_port_count();
        let first_port = *cfg.node_ports.start();
        Planner {
            cfg,
            rng,
            ip_bands: Bands::new(cidr.usable_count(), ip_static_band(cidr.size())),
            port_bands: Bands::new(port_count, port_static_band(port_count)),
            taken_ips: allocated.ips.iter().filter_map(|ip| cidr.usable_index(*ip)).collect(),
            taken_ports: allocated
                .node_ports
                .iter()
                .filter(|p| cfg.node_ports.contains(p))
                .map(|p| u32::from(*p - first_port))
                .collect(),
            plan: AllocationPlan::default(),
            release_ips: BTreeSet::new(),
            release_ports: BTreeSet::new(),
        }
    }

    fn finish(mut self) -> AllocationPlan {
        self.plan.release_ips = self.release_ips.into_iter().collect();
        self.plan.release_node_ports = self.release_ports.into_iter().collect();
        self.plan
    }

    fn plan_create(&mut self, new: &mut ServiceSpec) -> Result<(), Failure> {
        init_ip_family_fields(new, None).map_err(Failure::Invalid)?;
        self.alloc_cluster_ips(new)?;
        if needs_node_port(new) {
            self.init_node_ports(new)?;
        }
        if needs_health_check(new) {
            self.alloc_health_check_node_port(new)?;
        }
        Ok(())
    }

    fn plan_update(&mut self, new: &mut ServiceSpec, old: &ServiceSpec) -> Result<(), Failure> {
        init_ip_family_fields(new, Some(old)).map_err(Failure::Invalid)?;
        self.update_cluster_ips(new, old)?;

        if needs_node_port(old) && matches!(service_type(new), TYPE_EXTERNAL_NAME | TYPE_CLUSTER_IP) {
            self.release_ports.extend(service_node_ports(old).into_iter().filter_map(as_port));
        }
        if needs_node_port(new) {
            self.update_node_ports(new, old)?;
        }

        match (needs_health_check(old), needs_health_check(new)) {
            (false, true) => self.alloc_health_check_node_port(new)?,
            (true, false) => self.release_ports.extend(as_port(health_check_node_port(old))),
            _ => {}
        }
        Ok(())
    }

    /// Only a type change from ExternalName allocates, only one to ExternalName releases:
    /// ClusterIPs never change otherwise (validation refuses it). Dual-stack up- and
    /// downgrades cannot happen, as this cluster has a single family.
    fn update_cluster_ips(&mut self, new: &mut ServiceSpec, old: &ServiceSpec) -> Result<(), Failure> {
        if is_unchanged_prefer_dual_stack(new, old) {
            return Ok(());
        }
        let (was_external, is_external) =
            (service_type(old) == TYPE_EXTERNAL_NAME, service_type(new) == TYPE_EXTERNAL_NAME);
        if was_external && !is_external {
            return self.alloc_cluster_ips(new);
        }
        if cluster_ips(old).first().is_some_and(|ip| ip == CLUSTER_IP_NONE) {
            return Ok(());
        }
        if !was_external && is_external {
            self.release_ips.extend(cluster_ips(old).iter().filter_map(|ip| as_ipv4(ip)));
        }
        Ok(())
    }

    /// One ClusterIP per IP family: requested ones are claimed, missing ones picked.
    fn alloc_cluster_ips(&mut self, spec: &mut ServiceSpec) -> Result<(), Failure> {
        let headless = cluster_ips(spec).first().is_some_and(|ip| ip == CLUSTER_IP_NONE);
        if service_type(spec) == TYPE_EXTERNAL_NAME || headless {
            return Ok(());
        }
        let families = ip_families(spec).to_vec();
        let mut ips = cluster_ips(spec).to_vec();
        if ips.len() < families.len() {
            ips.resize(families.len(), String::new());
        }
        for (i, family) in families.iter().enumerate() {
            if family != IPV4 {
                // init_ip_family_fields refuses other families first; this is a safety net.
                return Err(Failure::Internal(format!("{family} is not configured on this cluster")));
            }
            let ip = if ips[i].is_empty() {
                self.next_ip()
                    .ok_or_else(|| Failure::Internal("failed to allocate a serviceIP: range is full".into()))?
            } else {
                let requested = ips[i].clone();
                self.claim_ip(&requested)?.map_err(|reason| {
                    Failure::Invalid(vec![FieldError::invalid(
                        "spec.clusterIPs",
                        ips_value(&ips),
                        format!("failed to allocate IP {requested}: {reason}"),
                    )])
                })?
            };
            ips[i] = ip.to_string();
        }
        spec.cluster_ip = ips.first().cloned();
        spec.cluster_ips = Some(ips);
        Ok(())
    }

    /// Create: ports sharing a port number (e.g. 53/TCP and 53/UDP) share one NodePort.
    fn init_node_ports(&mut self, spec: &mut ServiceSpec) -> Result<(), Failure> {
        let allocate_missing = should_allocate_node_ports(spec);
        let requested: Vec<(i32, i32)> = ports(spec).iter().map(|p| (p.port, node_port(p))).collect();
        let mut by_port_number: Vec<(i32, i32)> = Vec::new();
        for (i, port) in spec.ports.iter_mut().flatten().enumerate() {
            let np = node_port(port);
            if np == 0 && !allocate_missing {
                continue;
            }
            let path = format!("spec.ports[{i}].nodePort");
            let shared = by_port_number.iter().find(|(number, _)| *number == port.port).map(|(_, np)| *np);
            match shared {
                None => {
                    // A later port with the same number may name the NodePort to share.
                    let wanted = requested.iter().find(|(number, np)| *number == port.port && *np != 0).map(|r| r.1);
                    let chosen = match wanted {
                        Some(wanted) => {
                            self.claim_port(wanted).map_err(|reason| invalid_node_port(&path, wanted, reason))?;
                            wanted
                        }
                        None => self.next_port().map(i32::from).ok_or_else(node_ports_full)?,
                    };
                    port.node_port = Some(chosen);
                    by_port_number.push((port.port, chosen));
                }
                Some(shared) if np == 0 => port.node_port = Some(shared),
                Some(shared) if np != shared => {
                    self.claim_port(np).map_err(|reason| invalid_node_port(&path, np, reason))?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Update: keep the node ports the old object had, claim new requested ones, pick missing
    /// ones, release those no longer used.
    fn update_node_ports(&mut self, new: &mut ServiceSpec, old: &ServiceSpec) -> Result<(), Failure> {
        let old_ports = service_node_ports(old);
        let allocate_missing = should_allocate_node_ports(new);
        let mut claimed_here: BTreeSet<i32> = BTreeSet::new();
        let mut seen: Vec<(String, i32)> = Vec::new();
        for (i, port) in new.ports.iter_mut().flatten().enumerate() {
            let mut np = node_port(port);
            if np == 0 && !allocate_missing {
                continue;
            }
            if np != 0 {
                if !old_ports.contains(&np) && !claimed_here.contains(&np) {
                    let path = format!("spec.ports[{i}].nodePort");
                    self.claim_port(np).map_err(|reason| invalid_node_port(&path, np, reason))?;
                    claimed_here.insert(np);
                }
            } else {
                np = self.next_port().map(i32::from).ok_or_else(node_ports_full)?;
                port.node_port = Some(np);
            }
            let key = (text(&port.protocol).to_string(), np);
            if seen.contains(&key) {
                return Err(Failure::Internal(format!("duplicate nodePort: {{{} {}}}", key.0, key.1)));
            }
            seen.push(key);
        }
        let new_ports = service_node_ports(new);
        let dropped = old_ports.into_iter().filter(|np| !new_ports.contains(np));
        self.release_ports.extend(dropped.filter_map(as_port));
        Ok(())
    }

    /// Errors here are 500s upstream, with these texts.
    fn alloc_health_check_node_port(&mut self, spec: &mut ServiceSpec) -> Result<(), Failure> {
        let requested = health_check_node_port(spec);
        if requested != 0 {
            return self.claim_port(requested).map(|_| ()).map_err(|reason| {
                Failure::Internal(format!("failed to allocate requested HealthCheck NodePort {requested}: {reason}"))
            });
        }
        let port = self
            .next_port()
            .ok_or_else(|| Failure::Internal("failed to allocate a HealthCheck NodePort 0: range is full".into()))?;
        spec.health_check_node_port = Some(i32::from(port));
        Ok(())
    }

    /// Claims a requested ClusterIP. The outer error is an internal failure (unparseable
    /// after validation), the inner one the reason the IP cannot be had.
    fn claim_ip(&mut self, requested: &str) -> Result<Result<Ipv4Addr, String>, Failure> {
        let Some(ip) = as_ipv4(requested) else {
            return Err(Failure::Internal(format!("failed to parse service IP {requested:?}")));
        };
        let Some(index) = self.cfg.cidr.usable_index(ip) else {
            return Ok(Err(format!(
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                self.cfg.cidr
            )));
        };
        if !self.taken_ips.insert(index) {
            return Ok(Err("provided IP is already allocated".to_string()));
        }
        self.plan.claim_ips.push(Claim { value: ip, explicit: true });
        Ok(Ok(ip))
    }

    fn next_ip(&mut self) -> Option<Ipv4Addr> {
        let index = self.ip_bands.pick(&self.taken_ips, &mut *self.rng)?;
        let ip = self.cfg.cidr.usable(index)?;
        self.taken_ips.insert(index);
        self.plan.claim_ips.push(Claim { value: ip, explicit: false });
        Some(ip)
    }

    /// Claims a requested NodePort, or says why it cannot be had.
    fn claim_port(&mut self, requested: i32) -> Result<u16, String> {
        let port = u16::try_from(requested).ok().filter(|p| self.cfg.node_ports.contains(p)).ok_or_else(|| {
            format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.cfg.node_port_range_text()
            )
        })?;
        if !self.taken_ports.insert(u32::from(port - self.cfg.node_ports.start())) {
            return Err("provided port is already allocated".to_string());
        }
        self.plan.claim_node_ports.push(Claim { value: port, explicit: true });
        Ok(port)
    }

    fn next_port(&mut self) -> Option<u16> {
        let offset = self.port_bands.pick(&self.taken_ports, &mut *self.rng)?;
        let port = u16::try_from(u32::from(*self.cfg.node_ports.start()) + offset).ok()?;
        self.taken_ports.insert(offset);
        self.plan.claim_node_ports.push(Claim { value: port, explicit: false });
        Some(port)
    }
}

fn invalid_node_port(path: &str, port: i32, reason: String) -> Failure {
    Failure::Invalid(vec![FieldError::invalid(path, port, reason)])
}

fn node_ports_full() -> Failure {
    Failure::Internal("failed to allocate a nodePort: range is full".to_string())
}

/// Why planning failed: field errors (422) or, as upstream, an internal error (500) for
/// conditions that are not the request's fault, such as a full range.
#[derive(Debug)]
enum Failure {
    Invalid(Vec<FieldError>),
    Internal(String),
}

impl Failure {
    fn into_api_error(self, subject: Subject) -> ApiError {
        match self {
            Failure::Invalid(errs) => ApiError::Invalid(subject, errs),
            Failure::Internal(message) => ApiError::Internal(message),
        }
    }
}
