//! The cluster-wide settings Service allocation needs: the Service CIDR (ClusterIPs come from
//! it) and the NodePort range (kube-apiserver's `--service-cluster-ip-range` and
//! `--service-node-port-range`).

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// An IPv4 network such as `10.96.0.0/16`.
///
/// Parsing masks host bits away (`10.96.3.4/16` becomes `10.96.0.0/16`), as Go's
/// `net.ParseCIDR` does for the apiserver flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid CIDR {0:?}: expected an IPv4 network such as 10.96.0.0/16")]
    InvalidCidr(String),
    #[error("service CIDR {0} has no usable addresses (a /30 or larger is needed)")]
    CidrTooSmall(Ipv4Cidr),
    #[error("invalid node port range {start}-{end}: ports must be between 1 and 65535 and the range non-empty")]
    InvalidNodePortRange { start: u16, end: u16 },
    #[error("invalid node port range {0:?}: expected FIRST-LAST (30000-32767), FIRST+COUNT or a single port")]
    UnparsableNodePortRange(String),
}

impl Ipv4Cidr {
    /// A network from an address and prefix length; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, ConfigError> {
        if prefix_len > 32 {
            return Err(ConfigError::InvalidCidr(format!("{addr}/{prefix_len}")));
        }
        let mask = if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) };
        Ok(Ipv4Cidr { network: Ipv4Addr::from(u32::from(addr) & mask), prefix_len })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Number of addresses in the network, including network and broadcast addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let start = u64::from(u32::from(self.network));
        let ip = u64::from(u32::from(ip));
        ip >= start && ip < start + self.size()
    }

    /// How many addresses can be handed out: all but the network and broadcast addresses
    /// (upstream never allocates either, so they can never be released by mistake).
    pub fn usable_count(&self) -> u32 {
        // size <= 2^32, so size - 2 fits in u32 except for /0, which is clamped.
        u32::try_from(self.size().saturating_sub(2)).unwrap_or(u32::MAX)
    }

    /// The `index`-th usable address (index 0 = network + 1), if there is one.
    pub fn usable(&self, index: u32) -> Option<Ipv4Addr> {
        if index >= self.usable_count() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network) + 1 + index))
    }

    /// Inverse of [`Ipv4Cidr::usable`]: the index of a usable address, or None for addresses
    /// outside the network and for its network and broadcast addresses.
    pub fn usable_index(&self, ip: Ipv4Addr) -> Option<u32> {
        if !self.contains(ip) {
            return None;
        }
        let offset = u32::from(ip) - u32::from(self.network);
        let index = offset.checked_sub(1)?;
        (index < self.usable_count()).then_some(index)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ConfigError::InvalidCidr(s.to_string());
        let (addr, len) = s.trim().split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let prefix_len: u8 = len.parse().map_err(|_| invalid())?;
        Ipv4Cidr::new(addr, prefix_len).map_err(|_| invalid())
    }
}

/// Where ClusterIPs and NodePorts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The Service CIDR. skiff's default is `10.96.0.0/16`.
    pub cidr: Ipv4Cidr,
    /// The NodePort range, `30000..=32767` by default (as kube-apiserver).
    pub node_ports: RangeInclusive<u16>,
}

impl ServiceConfig {
    /// Checks that the CIDR has usable addresses and the port range is non-empty and non-zero.
    pub fn new(cidr: Ipv4Cidr, node_ports: RangeInclusive<u16>) -> Result<Self, ConfigError> {
        if cidr.usable_count() == 0 {
            return Err(ConfigError::CidrTooSmall(cidr));
        }
        if node_ports.is_empty() || *node_ports.start() == 0 {
            return Err(ConfigError::InvalidNodePortRange { start: *node_ports.start(), end: *node_ports.end() });
        }
        Ok(ServiceConfig { cidr, node_ports })
    }

    /// From the flag forms: a CIDR (`10.96.0.0/16`) and a port range written `30000-32767`,
    /// `30000+2767` (first port plus extra ports, as kube-apiserver accepts) or `30000`.
    pub fn parse(cidr: &str, node_ports: &str) -> Result<Self, ConfigError> {
        ServiceConfig::new(cidr.parse()?, parse_port_range(node_ports)?)
    }

    /// ClusterIP of the `default/kubernetes` Service: the first usable address (`.1`).
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()).wrapping_add(1))
    }

    /// ClusterIP of `kube-system/kube-dns`: the tenth address (`.10`), as kubeadm does.
    /// Both this and [`ServiceConfig::kubernetes_ip`] fall in the static band, so dynamic
    /// allocation avoids them while they are free (KEP-3070).
    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()).wrapping_add(10))
    }

    /// `30000-32767`, the form upstream prints in "not in the valid range" errors.
    pub fn node_port_range_text(&self) -> String {
        format!("{}-{}", self.node_ports.start(), self.node_ports.end())
    }

    /// Number of ports in the NodePort range.
    pub(crate) fn node_port_count(&self) -> u32 {
        u32::from(*self.node_ports.end()) + 1 - u32::from(*self.node_ports.start())
    }
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let invalid = || ConfigError::UnparsableNodePortRange(text.to_string());
    let number = |s: &str| -> Result<u16, ConfigError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse().map_err(|_| invalid())
    };
    let text = text.trim();
    if let Some((first, last)) = text.split_once('-') {
        Ok(number(first)?..=number(last)?)
    } else if let Some((first, extra)) = text.split_once('+') {
        let first = number(first)?;
        Ok(first..=first.checked_add(number(extra)?).ok_or_else(invalid)?)
    } else {
        let port = number(text)?;
        Ok(port..=port)
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            cidr: Ipv4Cidr { network: Ipv4Addr::new(10, 96, 0, 0), prefix_len: 16 },
            node_ports: 30000..=32767,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks_host_bits() {
        let cidr: Ipv4Cidr = "10.96.3.4/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/16");
        assert_eq!(cidr.size(), 65536);
        assert_eq!(cidr.usable_count(), 65534);
        assert!("10.96.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.96.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.96.0.0/+8".parse::<Ipv4Cidr>().is_err());
        assert!("fd00::/64".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn usable_addresses_skip_network_and_broadcast() {
        let cidr: Ipv4Cidr = "10.96.0.0/24".parse().unwrap();
        assert_eq!(cidr.usable(0), Some(Ipv4Addr::new(10, 96, 0, 1)));
        assert_eq!(cidr.usable(253), Some(Ipv4Addr::new(10, 96, 0, 254)));
        assert_eq!(cidr.usable(254), None);
        assert_eq!(cidr.usable_index(Ipv4Addr::new(10, 96, 0, 0)), None);
        assert_eq!(cidr.usable_index(Ipv4Addr::new(10, 96, 0, 255)), None);
        assert_eq!(cidr.usable_index(Ipv4Addr::new(10, 96, 1, 1)), None);
        assert_eq!(cidr.usable_index(Ipv4Addr::new(10, 96, 0, 10)), Some(9));
    }

    #[test]
    fn well_known_addresses() {
        let cfg = ServiceConfig::default();
        assert_eq!(cfg.kubernetes_ip(), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(cfg.dns_ip(), Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(cfg.node_port_range_text(), "30000-32767");
        assert_eq!(cfg.node_port_count(), 2768);
    }

    #[test]
    fn parses_flag_forms() {
        let cfg = ServiceConfig::parse("10.43.0.0/16", "30000-32767").unwrap();
        assert_eq!((cfg.cidr.to_string(), cfg.node_ports), ("10.43.0.0/16".to_string(), 30000..=32767));
        assert_eq!(ServiceConfig::parse("10.96.0.0/12", "30000+2767").unwrap().node_ports, 30000..=32767);
        assert_eq!(ServiceConfig::parse("10.96.0.0/12", "30080").unwrap().node_ports, 30080..=30080);
        for bad in ["", "30000-", "-1", "x-y", "30000+40000", "70000"] {
            assert!(ServiceConfig::parse("10.96.0.0/16", bad).is_err(), "{bad:?} accepted");
        }
        assert!(ServiceConfig::parse("10.96.0.0/16", "32767-30000").is_err());
        assert!(ServiceConfig::parse("10.96.0.0", "30000-32767").is_err());
    }

    #[test]
    fn rejects_unusable_configs() {
        assert!(ServiceConfig::new("10.0.0.0/31".parse().unwrap(), 30000..=32767).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 30010..=30000;
        assert!(ServiceConfig::new("10.0.0.0/24".parse().unwrap(), empty).is_err());
        assert!(ServiceConfig::new("10.0.0.0/24".parse().unwrap(), 0..=10).is_err());
        assert!(ServiceConfig::new("10.0.0.0/30".parse().unwrap(), 30000..=30000).is_ok());
    }
}
