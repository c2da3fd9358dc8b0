//! Rules tying `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` together
//! (upstream `ValidateServiceClusterIPsRelatedFields`), and how they may change on update
//! (`validateUpgradeDowngradeClusterIPs` / `validateUpgradeDowngradeIPFamilies`).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use super::formats::{parse_ip, INVALID_IP_MSG};
use super::spec::{
    cluster_ip, cluster_ips, ip_families, is_headless, service_type, text, CLUSTER_IP_NONE, IPV4, IPV6,
    PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK, TYPE_EXTERNAL_NAME,
};
use crate::status::{FieldError, RenderedValue};

const SUPPORTED_FAMILIES: [&str; 2] = [IPV4, IPV6];
const SUPPORTED_POLICIES: [&str; 3] = [PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK];

/// `[]string{"a", "b"}`, how upstream prints a list of IPs.
pub fn ips_value(ips: &[String]) -> RenderedValue {
    RenderedValue::from(ips)
}

/// `[]core.IPFamily{"IPv4"}`, how upstream prints `ipFamilies`.
pub fn families_value(families: &[String]) -> RenderedValue {
    let items: Vec<String> = families.iter().map(|f| format!("{f:?}")).collect();
    RenderedValue::raw(format!("[]core.IPFamily{{{}}}", items.join(", ")))
}

/// The `ipFamilyPolicy` pointer as upstream prints it: quoted, or `"null"` when unset.
pub fn policy_value(spec: &ServiceSpec) -> RenderedValue {
    RenderedValue::from(spec.ip_family_policy.as_deref().unwrap_or("null"))
}

fn is_ipv6(ip: &str) -> bool {
    matches!(parse_ip(ip), Some(IpAddr::V6(_)))
}

/// Consistency of the cluster-IP fields; ExternalName is checked elsewhere (all must be unset).
pub fn validate_cluster_ip_fields(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if service_type(spec) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    let ips = cluster_ips(spec);
    let field = "spec.clusterIPs";

    // clusterIP and clusterIPs[0] must agree (the singular field is what old clients use).
    if !cluster_ip(spec).is_empty() {
        match ips.first() {
            None => errs.push(FieldError::required(field, "")),
            Some(first) if first != cluster_ip(spec) => {
                errs.push(FieldError::invalid(field, ips_value(ips), "first value must match `clusterIP`"))
            }
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(field, ips_value(ips), "must be empty when `clusterIP` is not specified"));
    }

    let families = ip_families(spec);
    for (i, family) in families.iter().enumerate() {
        if !SUPPORTED_FAMILIES.contains(&family.as_str()) {
            errs.push(FieldError::not_supported(format!("spec.ipFamilies[{i}]"), family, &SUPPORTED_FAMILIES));
        }
        if families[..i].contains(family) {
            errs.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), family));
        }
    }

    if let Some(policy) = &spec.ip_family_policy {
        if !SUPPORTED_POLICIES.contains(&policy.as_str()) {
            errs.push(FieldError::not_supported("spec.ipFamilyPolicy", policy, &SUPPORTED_POLICIES));
        }
    }

    let mut has_invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == CLUSTER_IP_NONE {
            if ips.len() > 1 {
                has_invalid_ips = true;
                errs.push(FieldError::invalid(field, ips_value(ips), "'None' must be the first and only value"));
            }
            continue;
        }
        if parse_ip(ip).is_none() {
            has_invalid_ips = true;
            errs.push(FieldError::invalid(format!("{field}[{i}]"), ip, INVALID_IP_MSG));
        }
    }

    if ips.len() > 2 {
        errs.push(FieldError::invalid(field, ips_value(ips), "may only hold up to 2 values"));
    }

    // Further checks would only repeat the problem in confusing ways.
    if has_invalid_ips {
        return errs;
    }

    if ips.len() > 1 {
        let v6 = ips.iter().filter(|ip| is_ipv6(ip)).count();
        let dual_stack = v6 > 0 && v6 < ips.len();
        if !dual_stack {
            errs.push(FieldError::invalid(field, ips_value(ips), "may specify no more than one IP for each IP family"));
        }
    }

    if !is_headless(spec) {
        for (i, (ip, family)) in ips.iter().zip(families).enumerate() {
            if family == IPV4 && is_ipv6(ip) {
                errs.push(FieldError::invalid(
                    format!("{field}[{i}]"),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if family == IPV6 && !is_ipv6(ip) {
                errs.push(FieldError::invalid(
                    format!("{field}[{i}]"),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// ClusterIPs are immutable once allocated, except that a secondary IP may be added or
/// removed (dual-stack up/downgrade) and anything goes to, from or within ExternalName and
/// between headless Services.
pub fn validate_cluster_ips_update(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if service_type(new) == TYPE_EXTERNAL_NAME || service_type(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    if is_headless(old) && is_headless(new) {
        return errs;
    }
    let (old_ips, new_ips) = (cluster_ips(old), cluster_ips(new));
    let changed = |errs: &mut Vec<FieldError>, i: usize| {
        errs.push(FieldError::invalid(format!("spec.clusterIPs[{i}]"), ips_value(new_ips), "may not change once set"));
    };
    if old_ips.len() == new_ips.len() {
        for (i, ip) in old_ips.iter().enumerate() {
            if *ip != new_ips[i] {
                changed(&mut errs, i);
            }
        }
    } else if old_ips.len() > new_ips.len() {
        if new_ips.is_empty() {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                ips_value(new_ips),
                "primary clusterIP can not be unset",
            ));
        }
        if let (Some(old_first), Some(new_first)) = (old_ips.first(), new_ips.first()) {
            if old_first != new_first {
                changed(&mut errs, 0);
            }
        }
        if new_ips.len() == 1 && text(&new.ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if let (Some(old_first), Some(new_first)) = (old_ips.first(), new_ips.first()) {
        if old_first != new_first {
            changed(&mut errs, 0);
        }
    }
    errs
}

/// The primary IP family is immutable; a secondary one may be added or removed.
pub fn validate_ip_families_update(old: &ServiceSpec, new: &ServiceSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if service_type(new) == TYPE_EXTERNAL_NAME || service_type(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    // Becoming or staying headless may change families freely.
    if is_headless(old) || is_headless(new) {
        return errs;
    }
    let (old_families, new_families) = (ip_families(old), ip_families(new));
    let path = "spec.ipFamilies[0]";
    if old_families.len() == new_families.len() {
        for (i, family) in old_families.iter().enumerate() {
            if *family != new_families[i] {
                errs.push(FieldError::invalid(path, families_value(new_families), "may not change once set"));
            }
        }
    } else if old_families.len() > new_families.len() {
        // Upstream tests clusterIPs here, and prints clusterIPs as the value below; kept as is.
        if cluster_ips(new).is_empty() {
            errs.push(FieldError::invalid(path, families_value(new_families), "primary ipFamily can not be unset"));
        }
        if let (Some(old_first), Some(new_first)) = (old_families.first(), new_families.first()) {
            if old_first != new_first {
                errs.push(FieldError::invalid(path, ips_value(cluster_ips(new)), "may not change once set"));
            }
        }
        if new_families.len() == 1 && text(&new.ip_family_policy) != SINGLE_STACK {
            errs.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                policy_value(new),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if let (Some(old_first), Some(new_first)) = (old_families.first(), new_families.first()) {
        if old_first != new_first {
            errs.push(FieldError::invalid(path, ips_value(cluster_ips(new)), "may not change once set"));
        }
    }
    errs
}
