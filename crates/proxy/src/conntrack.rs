//! UDP conntrack cleanup after a sync, as kube-proxy does it.
//!
//! NAT is decided on a connection's first packet; a UDP "connection" lives as long as its
//! client keeps sending (a DNS client on a fixed source port, forever). So after endpoints
//! change, entries whose reply comes from an endpoint that is gone are deleted, and when a
//! frontend gets its first endpoint, the entries it made while rejecting are deleted too:
//! the next packet is translated afresh. TCP entries are left alone (graceful termination
//! needs them).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use skiff_core::service_view::Protocol;

use crate::model::{ServiceState, Targets};

/// One `conntrack -D` filter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Deletion {
    /// Original destination address; `None` for node ports (any local address).
    pub orig_dst: Option<Ipv4Addr>,
    pub orig_port: u16,
    /// Only entries answered by this endpoint; `None` for all entries of the frontend.
    pub reply_src: Option<Ipv4Addr>,
}

impl Deletion {
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["-D".to_owned(), "-p".to_owned(), "udp".to_owned()];
        if let Some(dst) = self.orig_dst {
            a.extend(["--orig-dst".to_owned(), dst.to_string()]);
        }
        a.extend(["--orig-port-dst".to_owned(), self.orig_port.to_string()]);
        if let Some(src) = self.reply_src {
            a.extend(["--reply-src".to_owned(), src.to_string()]);
        }
        a
    }
}

/// The UDP frontends of a Service with the endpoints each sends to.
fn udp_frontends(state: Option<&ServiceState>) -> Vec<(Option<Ipv4Addr>, u16, &Targets)> {
    let mut out = Vec::new();
    for port in state.map(|s| s.ports.as_slice()).unwrap_or(&[]) {
        if port.name.protocol != Protocol::Udp {
            continue;
        }
        for ip in &port.cluster_ips {
            out.push((Some(*ip), port.port, &port.internal));
        }
        for ip in &port.external_ips {
            out.push((Some(*ip), port.port, &port.external));
        }
        if port.node_port != 0 {
            out.push((None, port.node_port, &port.external));
        }
    }
    out
}

/// Deletions needed when a Service goes from `old` to `new`.
pub fn stale_entries(old: Option<&ServiceState>, new: Option<&ServiceState>) -> Vec<Deletion> {
    let old_frontends = udp_frontends(old);
    let new_frontends = udp_frontends(new);
    let mut out = HashSet::new();
    for (dst, port, old_targets) in &old_frontends {
        let now = new_frontends.iter().find(|(d, p, _)| d == dst && p == port).map(|(_, _, t)| *t);
        let still: HashSet<Ipv4Addr> = now.map(|t| t.backends.iter().map(|b| b.0).collect()).unwrap_or_default();
        for (ip, _) in &old_targets.backends {
            if !still.contains(ip) {
                out.insert(Deletion { orig_dst: *dst, orig_port: *port, reply_src: Some(*ip) });
            }
        }
    }
    for (dst, port, new_targets) in &new_frontends {
        let before = old_frontends.iter().find(|(d, p, _)| d == dst && p == port).map(|(_, _, t)| *t);
        if !new_targets.backends.is_empty() && before.is_none_or(|t| t.backends.is_empty()) {
            out.insert(Deletion { orig_dst: *dst, orig_port: *port, reply_src: None });
        }
    }
    let mut out: Vec<Deletion> = out.into_iter().collect();
    out.sort();
    out
}

/// Runs the deletions with the `conntrack` tool. "0 flow entries have been deleted" exits
/// non-zero, so failures are only logged.
pub fn delete(deletions: &[Deletion]) {
    for d in deletions {
        match std::process::Command::new("conntrack").args(d.args()).output() {
            Ok(out) => tracing::debug!(filter = ?d, status = %out.status, "conntrack cleanup"),
            Err(e) => {
                tracing::warn!(error = %e, "running conntrack failed; stale UDP entries stay");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NoEndpoints, ServicePortName, ServicePortState};
    use skiff_core::service_view::ServiceKey;

    fn state(backends: &[&str], node_port: u16) -> ServiceState {
        let targets = Targets {
            backends: backends.iter().map(|b| (b.parse().unwrap(), 5353)).collect(),
            when_empty: NoEndpoints::Reject,
        };
        ServiceState {
            ports: vec![ServicePortState {
                name: ServicePortName {
                    service: ServiceKey::new("ns", "dns"),
                    port: "dns".into(),
                    protocol: Protocol::Udp,
                },
                cluster_ips: vec!["10.96.0.10".parse().unwrap()],
                port: 53,
                node_port,
                external_ips: vec![],
                internal: targets.clone(),
                external: targets,
                masquerade_external: true,
                affinity_timeout: None,
                firewall: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn removed_endpoints_and_first_endpoints() {
        let vip = Some("10.96.0.10".parse().unwrap());
        let d = stale_entries(Some(&state(&["10.244.1.2", "10.244.1.3"], 0)), Some(&state(&["10.244.1.3"], 0)));
        assert_eq!(d, vec![Deletion { orig_dst: vip, orig_port: 53, reply_src: Some("10.244.1.2".parse().unwrap()) }]);
        let d = stale_entries(Some(&state(&[], 30053)), Some(&state(&["10.244.1.3"], 30053)));
        assert_eq!(d.len(), 2, "the ClusterIP and the node port start afresh");
        assert!(d.iter().all(|d| d.reply_src.is_none()));
        assert_eq!(d[0].args(), ["-D", "-p", "udp", "--orig-port-dst", "30053"]);
        let d = stale_entries(Some(&state(&["10.244.1.2"], 0)), None);
        assert_eq!(d.len(), 1, "a deleted Service's entries go too");
        assert!(stale_entries(Some(&state(&["10.244.1.2"], 0)), Some(&state(&["10.244.1.2"], 0))).is_empty());
    }
}
