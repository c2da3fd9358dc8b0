//! Domain names in lowercase wire format, the key of every lookup.
//!
//! A [`Name`] is the uncompressed wire encoding (`\x04svc1\x06testns\x03svc...\x00`) with
//! ASCII letters lowercased, so matching a query against the table is one hash lookup on
//! bytes; the query's own spelling is echoed by copying its question section instead.

use std::fmt;
use std::net::IpAddr;

/// Longest name in wire format (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// A lowercase, uncompressed, absolute domain name in wire format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

/// Why text could not become a [`Name`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label longer than 63 bytes in {0:?}")]
    LabelTooLong(String),
    #[error("name longer than 255 bytes: {0:?}")]
    TooLong(String),
}

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(Box::new([0]))
    }

    /// Parses dotted text (`svc1.testns.svc.cluster.local`, trailing dot optional),
    /// lowercasing it.
    pub fn from_dotted(text: &str) -> Result<Name, NameError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Name::root());
        }
        let mut wire = Vec::with_capacity(trimmed.len() + 2);
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(text.to_owned()));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong(text.to_owned()));
            }
            wire.push(label.len() as u8);
            wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
        wire.push(0);
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(text.to_owned()));
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// Wraps wire bytes that are known to be a valid, lowercase name (from [`Self::wire`] or a
    /// [`crate::wire`] parse).
    pub(crate) fn from_wire_unchecked(wire: &[u8]) -> Name {
        Name(wire.into())
    }

    /// `label.self`. Fails when the result would be too long.
    pub fn prepend(&self, label: &str) -> Result<Name, NameError> {
        if label.is_empty() {
            return Err(NameError::EmptyLabel(label.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(label.to_owned()));
        }
        if self.0.len() + label.len() + 1 > MAX_NAME_LEN {
            return Err(NameError::TooLong(format!("{label}.{self}")));
        }
        let mut wire = Vec::with_capacity(self.0.len() + label.len() + 1);
        wire.push(label.len() as u8);
        wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        wire.extend_from_slice(&self.0);
        Ok(Name(wire.into_boxed_slice()))
    }

    /// The wire bytes.
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// The name one label up, or `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        parent_wire(&self.0).map(Name::from_wire_unchecked)
    }

    /// Whether `self` is `zone` or lies below it.
    pub fn is_within(&self, zone: &Name) -> bool {
        is_within_wire(&self.0, &zone.0)
    }

    /// The PTR owner name of an address: `4.3.2.1.in-addr.arpa.` or the 32-nibble
    /// `ip6.arpa.` form.
    pub fn reverse(ip: IpAddr) -> Name {
        let mut text = String::with_capacity(72);
        match ip {
            IpAddr::V4(v4) => {
                for octet in v4.octets().iter().rev() {
                    text.push_str(&octet.to_string());
                    text.push('.');
                }
                text.push_str("in-addr.arpa");
            }
            IpAddr::V6(v6) => {
                for byte in v6.octets().iter().rev() {
                    text.push(hex_digit(byte & 0x0f));
                    text.push('.');
                    text.push(hex_digit(byte >> 4));
                    text.push('.');
                }
                text.push_str("ip6.arpa");
            }
        }
        // Reverse names are short and made of valid labels, so this cannot fail.
        Name::from_dotted(&text).unwrap_or_else(|_| Name::root())
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The wire name one label up (`wire` must be a valid name).
pub(crate) fn parent_wire(wire: &[u8]) -> Option<&[u8]> {
    let len = *wire.first()? as usize;
    if len == 0 {
        return None;
    }
    wire.get(len + 1..)
}

/// Whether the valid wire name `name` equals `zone` or ends with it at a label boundary.
pub(crate) fn is_within_wire(name: &[u8], zone: &[u8]) -> bool {
    let mut rest = name;
    loop {
        if rest.len() == zone.len() {
            return rest == zone;
        }
        if rest.len() < zone.len() {
            return false;
        }
        match parent_wire(rest) {
            Some(parent) => rest = parent,
            None => return false,
        }
    }
}

/// The labels of `wire` before the suffix `zone` (which `wire` must lie within), first label
/// first.
pub(crate) fn labels_before<'a>(wire: &'a [u8], zone: &[u8]) -> Vec<&'a [u8]> {
    let mut labels = Vec::new();
    let mut rest = wire;
    while rest.len() > zone.len() {
        let len = rest[0] as usize;
        let Some(label) = rest.get(1..1 + len) else { break };
        labels.push(label);
        rest = &rest[1 + len..];
    }
    labels
}

/// The endpoint label CoreDNS uses for an endpoint without a hostname: the address with
/// dashes (`172-0-0-2`, `fd00--1`).
pub fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// Reads a dashed address label back (`10-240-0-1` → 10.240.0.1, `fd00--1` → fd00::1).
pub fn parse_dashed_ip(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    if let Ok(v4) = text.replace('-', ".").parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    text.replace('-', ":").parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

impl fmt::Display for Name {
    /// Dotted text with a trailing dot, as dig prints names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest: &[u8] = &self.0;
        if rest.first() == Some(&0) {
            return f.write_str(".");
        }
        while let Some((&len, tail)) = rest.split_first() {
            if len == 0 {
                break;
            }
            let Some(label) = tail.get(..len as usize) else { break };
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
            rest = &tail[len as usize..];
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_round_trip_and_case() {
        let n = Name::from_dotted("SvC1.TestNS.svc.cluster.local.").unwrap();
        assert_eq!(n.to_string(), "svc1.testns.svc.cluster.local.");
        assert_eq!(n.wire()[0], 4);
        assert_eq!(Name::from_dotted(".").unwrap(), Name::root());
        assert!(Name::from_dotted("a..b").is_err());
        assert!(Name::from_dotted(&"x".repeat(64)).is_err());
        assert!(Name::from_dotted(&["abcdefgh"; 40].join(".")).is_err());
    }

    #[test]
    fn hierarchy() {
        let zone = Name::from_dotted("cluster.local").unwrap();
        let n = Name::from_dotted("a.svc.cluster.local").unwrap();
        assert!(n.is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(!Name::from_dotted("xcluster.local").unwrap().is_within(&zone));
        assert!(!Name::from_dotted("local").unwrap().is_within(&zone));
        assert_eq!(n.parent().unwrap().to_string(), "svc.cluster.local.");
        assert_eq!(Name::root().parent(), None);
        assert_eq!(labels_before(n.wire(), zone.wire()), vec![&b"a"[..], &b"svc"[..]]);
        assert_eq!(zone.prepend("Svc").unwrap().to_string(), "svc.cluster.local.");
    }

    #[test]
    fn reverse_names() {
        assert_eq!(Name::reverse("10.0.0.1".parse().unwrap()).to_string(), "1.0.0.10.in-addr.arpa.");
        let v6 = Name::reverse("1234:abcd::1".parse().unwrap()).to_string();
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("d.c.b.a.4.3.2.1.ip6.arpa."), "{v6}");
        assert_eq!(v6.split('.').count(), 32 + 3);
    }

    #[test]
    fn dashed_addresses() {
        assert_eq!(dashed_ip("172.0.0.2".parse().unwrap()), "172-0-0-2");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(parse_dashed_ip(b"10-240-0-1"), Some("10.240.0.1".parse().unwrap()));
        assert_eq!(parse_dashed_ip(b"fd00--1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_dashed_ip(b"blah"), None);
        assert_eq!(parse_dashed_ip(b"1-2-3"), None);
    }
}
