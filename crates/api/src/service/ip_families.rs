//! Filling `ipFamilyPolicy` and `ipFamilies` for the cluster's configuration (upstream
//! `initIPFamilyFields` in `pkg/registry/core/service/storage/alloc.go`).
//!
//! skiff's Service CIDR is IPv4 only, so the cluster is single-stack IPv4: IPv6 requests and
//! `RequireDualStack` are refused, `PreferDualStack` gets IPv4 alone. One upstream special
//! case survives: a headless Service without selector defaults to `RequireDualStack` with
//! both families, because its endpoints are written by hand and may be of either family.

use k8s_openapi::api::core::v1::ServiceSpec;

use super::formats::parse_ip;
use super::spec::{
    cluster_ip, cluster_ips, ip_families, service_type, text, CLUSTER_IP_NONE, IPV4, IPV6, PREFER_DUAL_STACK,
    REQUIRE_DUAL_STACK, SINGLE_STACK, TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
};
use super::validation_ips::{ips_value, policy_value, validate_cluster_ip_fields};
use crate::status::FieldError;

/// The families this cluster allocates from.
const CONFIGURED_FAMILIES: [&str; 1] = [IPV4];

fn family_of(ip: &str) -> &'static str {
    match parse_ip(ip) {
        Some(std::net::IpAddr::V6(_)) => IPV6,
        Some(std::net::IpAddr::V4(_)) => IPV4,
        None => "unknown",
    }
}

fn other_family(family: &str) -> &'static str {
    if family == IPV4 {
        IPV6
    } else {
        IPV4
    }
}

/// Defaults the policy and families of `new`, refusing what this cluster cannot provide.
/// On update, an unspecified policy is inherited from `old`.
pub fn init_ip_family_fields(new: &mut ServiceSpec, old: Option<&ServiceSpec>) -> Result<(), Vec<FieldError>> {
    if service_type(new) == TYPE_EXTERNAL_NAME {
        return Ok(());
    }
    // PreferDualStack Services are never up- or downgraded behind the user's back.
    if old.is_some_and(|old| is_unchanged_prefer_dual_stack(new, old)) {
        return Ok(());
    }

    let headless_selectorless =
        cluster_ip(new) == CLUSTER_IP_NONE && new.selector.as_ref().is_none_or(|s| s.is_empty());
    if new.ip_family_policy.is_none() {
        new.ip_family_policy = match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(inherited) => Some(inherited),
            None if headless_selectorless => Some(REQUIRE_DUAL_STACK.to_string()),
            None => Some(SINGLE_STACK.to_string()),
        };
    }

    let errs = validate_cluster_ip_fields(new);
    if !errs.is_empty() {
        return Err(errs);
    }

    let mut errs = Vec::new();
    let single_stack = text(&new.ip_family_policy) == SINGLE_STACK;
    if let Some(old) = old {
        if single_stack {
            // Switching to SingleStack with unchanged IPs/families is a clear request to drop
            // the secondary; clusterIPs[0] is immutable, so keeping it is safe.
            if cluster_ips(old) == cluster_ips(new) {
                if let Some(ips) = new.cluster_ips.as_mut() {
                    ips.truncate(1);
                }
            }
            if ip_families(old) == ip_families(new) {
                if let Some(families) = new.ip_families.as_mut() {
                    families.truncate(1);
                }
            }
        } else {
            let reduced = |new_len: usize, old_len: usize| new_len != 0 && new_len < old_len;
            if reduced(cluster_ips(new).len(), cluster_ips(old).len()) {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(new),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if reduced(ip_families(new).len(), ip_families(old).len()) {
                errs.push(FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    policy_value(new),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }

    if single_stack {
        if cluster_ips(new).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if ip_families(new).len() == 2 {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }

    // Families not given are inferred from the requested IPs.
    let ips = cluster_ips(new).to_vec();
    for (i, ip) in ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= ip_families(new).len() {
            let family = family_of(ip);
            if CONFIGURED_FAMILIES.contains(&family) {
                new.ip_families.get_or_insert_with(Vec::new).push(family.to_string());
            } else {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ips_value(&ips),
                    format!("{family} is not configured on this cluster"),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }

    if headless_selectorless {
        let families = new.ip_families.get_or_insert_with(Vec::new);
        if families.is_empty() {
            families.push(CONFIGURED_FAMILIES[0].to_string());
        }
        if families.len() < 2 && text(&new.ip_family_policy) != SINGLE_STACK {
            let other = other_family(&families[0]);
            families.push(other.to_string());
        }
        return Ok(());
    }

    if text(&new.ip_family_policy) == REQUIRE_DUAL_STACK {
        errs.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            policy_value(new),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, family) in ip_families(new).iter().enumerate() {
        if !CONFIGURED_FAMILIES.contains(&family.as_str()) {
            errs.push(FieldError::invalid(format!("spec.ipFamilies[{i}]"), family, "not configured on this cluster"));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }

    if ip_families(new).is_empty() {
        new.ip_families = Some(vec![CONFIGURED_FAMILIES[0].to_string()]);
    }
    Ok(())
}

/// Same type (one with a ClusterIP), both PreferDualStack, same IPs and families.
pub fn is_unchanged_prefer_dual_stack(new: &ServiceSpec, old: &ServiceSpec) -> bool {
    new.ip_family_policy.is_some()
        && service_type(old) == service_type(new)
        && matches!(service_type(new), TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
        && text(&new.ip_family_policy) == PREFER_DUAL_STACK
        && old.ip_family_policy.as_deref().is_none_or(|p| p == PREFER_DUAL_STACK)
        && cluster_ips(old) == cluster_ips(new)
        && ip_families(old) == ip_families(new)
}
