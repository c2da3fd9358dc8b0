//! The string formats Service fields must follow, with apimachinery's exact messages
//! (`k8s.io/apimachinery/pkg/util/validation`): DNS labels and subdomains, label keys and
//! values, IANA service (port) names, port numbers, IPs and CIDRs.
//!
//! Each check returns the list of messages upstream would produce (empty when valid); callers
//! wrap each message into a `FieldError` at the right path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
                                 and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                                     characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
                                 with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', \
                               '_' or '.', and must start and end with an alphanumeric character";

pub const DNS_LABEL_MAX: usize = 63;
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// `must be between 1 and 65535, inclusive`.
pub const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
pub const INVALID_IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
pub const INVALID_CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// `must be no more than N characters`.
pub fn max_len_msg(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Upstream's regex explanation, quirks included: `(e.g. 'a',  or 'b', regex used for
/// validation is '...')` (the double space is what upstream prints).
pub fn regex_msg(msg: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{regex}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{regex}')"));
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first) && is_lower_alnum(last) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(value: &str) -> bool {
    value.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(value: &str) -> bool {
    matches_dns1123_label(value) && value.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(value: &str) -> bool {
    let b = value.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A DNS label such as a port name.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS_LABEL_MAX {
        errs.push(max_len_msg(DNS_LABEL_MAX));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_msg(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// A DNS subdomain such as an `externalName`.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS_SUBDOMAIN_MAX));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_msg(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// A DNS-1035 label: what Service names must be (they become DNS names and environment
/// variable prefixes, so they must start with a letter).
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS_LABEL_MAX {
        errs.push(max_len_msg(DNS_LABEL_MAX));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_msg(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Service name check for `metadata.name`, or for `metadata.generateName` when `prefix`:
/// a generated name gets random characters appended, so a trailing dash is allowed there.
pub fn service_name(value: &str, prefix: bool) -> Vec<String> {
    if prefix && value.len() > 1 && value.ends_with('-') {
        let masked = format!("{}a", &value[..value.len() - 1]);
        return dns1035_label(&masked);
    }
    dns1035_label(value)
}

/// A "qualified name" (label key format), used for selector keys, `appProtocol` and
/// `loadBalancerClass`: an optional DNS-subdomain prefix and `/`, then a name.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_msg(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > DNS_LABEL_MAX {
        errs.push(format!("name part {}", max_len_msg(DNS_LABEL_MAX)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_msg(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
        ));
    }
    errs
}

/// A label value (selector values): empty, or the qualified-name format, at most 63 chars.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS_LABEL_MAX {
        errs.push(max_len_msg(DNS_LABEL_MAX));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_msg(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// An IANA_SVC_NAME (RFC 6335), as a named `targetPort`: at most 15 characters of `[-a-z0-9]`
/// with at least one letter, no leading/trailing or double hyphen.
pub fn port_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 15 {
        errs.push(max_len_msg(15));
    }
    if value.is_empty() || !value.bytes().all(|c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !value.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if value.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
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
