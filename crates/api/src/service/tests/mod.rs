//! Scenario tests for the Service pipeline: validation cases with upstream's exact messages,
//! allocation (bands, requested values, conflicts), and create/update flows across types.

mod allocation_cases;
mod defaults_cases;
mod type_change_cases;
mod validation_cases;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use super::{admit_create, admit_update, Admitted, Allocated, AllocationPlan, ServiceConfig};
use crate::status::ApiError;

/// A Service from its JSON form, as a client would send it.
fn svc(value: Value) -> Service {
    serde_json::from_value(value).expect("test Service JSON must deserialize")
}

fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The cause lines of an error (`field: message`), or the message of a non-field error.
fn causes(err: &ApiError) -> Vec<String> {
    match err {
        ApiError::Invalid(_, errs) => errs.iter().map(|e| e.full_message()).collect(),
        other => vec![other.message()],
    }
}

/// Admits a new Service into an empty default cluster.
fn create(value: Value) -> Result<Admitted, ApiError> {
    admit_create(&svc(value), &Allocated::default(), &ServiceConfig::default(), &mut seeded(1))
}

fn create_in(value: Value, allocated: &Allocated, cfg: &ServiceConfig) -> Result<Admitted, ApiError> {
    admit_create(&svc(value), allocated, cfg, &mut seeded(1))
}

fn update_in(old: &Service, value: Value, allocated: &Allocated) -> Result<Admitted, ApiError> {
    admit_update(old, &svc(value), allocated, &ServiceConfig::default(), &mut seeded(2))
}

/// Applies a committed plan to the cluster's claims, as the API server's transaction would.
fn commit(allocated: &mut Allocated, plan: &AllocationPlan) {
    for claim in &plan.claim_ips {
        assert!(allocated.ips.insert(claim.value), "claimed an IP that was taken: {}", claim.value);
    }
    for claim in &plan.claim_node_ports {
        assert!(allocated.node_ports.insert(claim.value), "claimed a port that was taken: {}", claim.value);
    }
    for ip in &plan.release_ips {
        assert!(allocated.ips.remove(ip), "released an IP that was not claimed: {ip}");
    }
    for port in &plan.release_node_ports {
        assert!(allocated.node_ports.remove(port), "released a port that was not claimed: {port}");
    }
}

fn spec_ports(svc: &Service) -> &[ServicePort] {
    super::spec::ports(super::spec::spec(svc))
}

fn node_ports_of(svc: &Service) -> Vec<i32> {
    spec_ports(svc).iter().map(super::spec::node_port).collect()
}

fn cluster_ip_of(svc: &Service) -> &str {
    super::spec::cluster_ip(super::spec::spec(svc))
}
