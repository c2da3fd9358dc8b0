//! The string formats Service fields must follow, with apimachinery's exact messages
//! (`k8s.io/apimachinery/pkg/util/validation`): DNS labels and subdomains, label keys and
//! values, IANA service (port) names, port numbers, IPs and CIDRs.
//!
//! Each check returns the list of messages upstream would produce (empty when valid); callers
//! wrap each message into a `FieldError` at the right path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// The name formats themselves are shared with every component: skiff_core::names.
pub use skiff_core::names::{
    is_dns1035_label as dns1035_label, is_dns1123_label as dns1123_label, is_dns1123_subdomain as dns1123_subdomain,
    is_qualified_name as qualified_name, is_valid_label_value as label_value, is_valid_port_name as port_name,
};

/// `must be between 1 and 65535, inclusive`.
pub const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
pub const INVALID_IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
pub const INVALID_CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Service name check for `metadata.name`, or for `metadata.generateName` when `prefix`:
/// a generated name gets random characters appended, so a trailing dash is allowed there.
pub fn service_name(value: &str, prefix: bool) -> Vec<String> {
    if prefix && value.len() > 1 && value.ends_with('-') {
        let masked = format!("{}a", &value[..value.len() - 1]);
        return dns1035_label(&masked);
    }
    dns1035_label(value)
}

/// Whether `port` is a usable port number (1-65535).
pub fn is_port_number(port: i64) -> bool {
    (1..=65535).contains(&port)
}

/// Parses an IP the way Go's `netutils.ParseIPSloppy` does: also accepts IPv4 octets with
/// leading zeros (read as decimal).
pub fn parse_ip(value: &str) -> Option<IpAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = value.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (slot, octet) in out.iter_mut().zip(&octets) {
        if octet.is_empty() || octet.len() > 3 || !octet.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = octet.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(out)))
}

/// Parses `addr/len` leniently (host bits may be set), as Go's `ParseCIDRSloppy`.
pub fn parse_cidr(value: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = value.split_once('/')?;
    let ip = parse_ip(addr)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// External IPs and endpoint addresses may not be special-purpose addresses.
pub fn non_special_ip(value: &str, ip: IpAddr) -> Vec<String> {
    let mut errs = Vec::new();
    if ip.is_unspecified() {
        errs.push(format!("may not be unspecified ({value})"));
    }
    if ip.is_loopback() || is_mapped_v4(ip, |v4| v4.is_loopback()) {
        errs.push("may not be in the loopback range (127.0.0.0/8, ::1/128)".to_string());
    }
    if is_link_local_unicast(ip) {
        errs.push("may not be in the link-local range (169.254.0.0/16, fe80::/10)".to_string());
    }
    if is_link_local_multicast(ip) {
        errs.push("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".to_string());
    }
    errs
}

fn is_mapped_v4(ip: IpAddr, test: impl Fn(Ipv4Addr) -> bool) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(test),
        IpAddr::V4(_) => false,
    }
}

fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80 || is_mapped_v4(ip, |v4| v4.is_link_local()),
    }
}

fn is_link_local_multicast(ip: IpAddr) -> bool {
    let v4_test = |v4: Ipv4Addr| v4.octets()[..3] == [224, 0, 0];
    match ip {
        IpAddr::V4(v4) => v4_test(v4),
        IpAddr::V6(v6) => is_v6_link_local_multicast(v6) || is_mapped_v4(ip, v4_test),
    }
}

/// `ff02::/16`-style: multicast with link-local scope (Go checks `ff?2::`).
fn is_v6_link_local_multicast(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    first & 0xff00 == 0xff00 && first & 0x000f == 0x0002
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(dns1123_label("my-port").is_empty());
        assert_eq!(dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            dns1123_label("Http"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
                  and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
                  '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert!(dns1035_label("web").is_empty());
        assert_eq!(dns1035_label("1web").len(), 1);
        assert_eq!(dns1035_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
        assert!(service_name("web-", true).is_empty());
        assert_eq!(service_name("web-", false).len(), 1);
        assert!(dns1123_subdomain("example.com").is_empty());
        assert_eq!(dns1123_subdomain("exa_mple.com").len(), 1);
        assert_eq!(dns1123_subdomain("").len(), 1);
    }

    #[test]
    fn qualified_names_and_label_values() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/app").is_empty());
        assert_eq!(qualified_name("/app"), vec!["prefix part must be non-empty"]);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(qualified_name("app!").len(), 1);
        assert!(qualified_name("app!")[0].starts_with("name part must consist"));
        assert!(label_value("").is_empty());
        assert!(label_value("my_value").is_empty());
        assert_eq!(label_value("-bad").len(), 1);
    }

    #[test]
    fn port_names() {
        assert!(port_name("http").is_empty());
        assert!(port_name("h2c-web").is_empty());
        assert_eq!(port_name("8080"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(
            port_name("-very--long-port-name"),
            vec![
                "must be no more than 15 characters",
                "must not contain consecutive hyphens",
                "must not begin or end with a hyphen"
            ]
        );
        assert_eq!(port_name("HTTP").len(), 2);
    }

    #[test]
    fn ips_and_cidrs() {
        assert_eq!(parse_ip("10.96.0.1"), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(parse_ip("010.096.000.001"), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(parse_ip("10.96.0.256"), None);
        assert_eq!(parse_ip("fd00::1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_cidr("10.0.0.1/8"), Some(("10.0.0.1".parse().unwrap(), 8)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0.0"), None);
        assert_eq!(non_special_ip("127.0.0.1", "127.0.0.1".parse().unwrap()).len(), 1);
        assert_eq!(non_special_ip("0.0.0.0", "0.0.0.0".parse().unwrap()), vec!["may not be unspecified (0.0.0.0)"]);
        assert_eq!(non_special_ip("224.0.0.5", "224.0.0.5".parse().unwrap()).len(), 1);
        assert_eq!(non_special_ip("fe80::1", "fe80::1".parse().unwrap()).len(), 1);
        assert!(non_special_ip("192.0.2.1", "192.0.2.1".parse().unwrap()).is_empty());
    }
}
