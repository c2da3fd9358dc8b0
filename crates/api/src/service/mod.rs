//! Everything kube-apiserver does to a Service besides storing it, as pure functions.
//!
//! A create or update goes through these steps (upstream interleaves 2 and 3 slightly
//! differently, with the same result; validation does come last there too):
//!
//! 1. [`default_service`]: static defaults (`type`, `protocol`, `targetPort`, policies...).
//! 2. [`prepare_create`] / [`prepare_update`]: status handling, `clusterIP`/`clusterIPs` kept
//!    in step, allocated values carried over, fields a type change made meaningless dropped.
//! 3. [`plan_allocation`]: IP families defaulted for the cluster, ClusterIPs, NodePorts and
//!    the health-check node port filled in; returns the claims/releases to commit.
//! 4. [`validate`] / [`validate_update`]: upstream's rules, paths and messages.
//!
//! [`admit_create`] and [`admit_update`] run all four and are what the API server calls;
//! it then commits the [`AllocationPlan`]'s claim keys ([`ip_key`], [`node_port_key`])
//! together with the Service in one transaction. On delete, [`allocations_of`] says which
//! keys to release.
//!
//! Start reading at [`allocation`] for how claims work, [`validation`] for the rules.
//! [`spec`] explains how Go zero values map onto k8s-openapi's `Option`s.

pub mod allocation;
mod bands;
pub mod config;
pub mod defaults;
mod formats;
mod ip_families;
pub mod spec;
pub mod update;
pub mod validation;
mod validation_ips;
mod validation_ports;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::Service;
use rand::Rng;

pub use allocation::{
    allocations_of, ip_key, node_port_key, plan_allocation, Allocated, AllocationPlan, Claim, IP_KEY_PREFIX,
    NODE_PORT_KEY_PREFIX,
};
pub use config::{ConfigError, Ipv4Cidr, ServiceConfig};
pub use defaults::default_service;
pub use update::{prepare_create, prepare_update};
pub use validation::{validate, validate_update};

use crate::status::{ApiError, FieldError, Subject};

/// The `details` of errors about Service `svc`.
pub fn service_subject(svc: &Service) -> Subject {
    Subject {
        group: String::new(),
        resource: "services".to_string(),
        kind: "Service".to_string(),
        name: svc.metadata.name.clone().unwrap_or_default(),
    }
}

/// A Service ready to be stored, and the claims to commit with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub service: Service,
    pub plan: AllocationPlan,
}

/// Defaults, prepares, allocates and validates a Service being created. `requested` is left
/// untouched, so after a lost claim race the caller can simply call this again with fresh
/// [`Allocated`] claims. A name requested through `generateName` must already have been
/// generated (upstream does that before validation too).
pub fn admit_create(
    requested: &Service,
    allocated: &Allocated,
    cfg: &ServiceConfig,
    rng: &mut impl Rng,
) -> Result<Admitted, ApiError> {
    let mut service = requested.clone();
    default_service(&mut service);
    prepare_create(&mut service);
    reject_duplicate_node_ports(&service)?;
    let plan = plan_allocation(&mut service, None, allocated, cfg, rng)?;
    reject_invalid(&service, validate(&service))?;
    Ok(Admitted { service, plan })
}

/// Same for an update of the stored object `old` (whose own claims are in `allocated`).
pub fn admit_update(
    old: &Service,
    requested: &Service,
    allocated: &Allocated,
    cfg: &ServiceConfig,
    rng: &mut impl Rng,
) -> Result<Admitted, ApiError> {
    let mut service = requested.clone();
    default_service(&mut service);
    prepare_update(old, &mut service);
    reject_duplicate_node_ports(&service)?;
    let plan = plan_allocation(&mut service, Some(old), allocated, cfg, rng)?;
    reject_invalid(&service, validate_update(old, &service))?;
    Ok(Admitted { service, plan })
}

/// Upstream validates a Service before allocating, so a nodePort requested twice is a
/// `Duplicate value`, not "already allocated" by the Service's own first port.
fn reject_duplicate_node_ports(svc: &Service) -> Result<(), ApiError> {
    let duplicates = validate(svc)
        .into_iter()
        .filter(|e| e.kind == crate::FieldErrorType::Duplicate && e.field.ends_with(".nodePort"))
        .collect();
    reject_invalid(svc, duplicates)
}

fn reject_invalid(svc: &Service, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(service_subject(svc), errs))
    }
}
