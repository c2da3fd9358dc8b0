//! From a query packet to a response: the decisions CoreDNS's `kubernetes` plugin makes,
//! against the in-memory [`Zone`].
//!
//! [`Answerer::answer`] is synchronous and does no I/O, so the UDP and TCP servers call it
//! inline. It writes the response into the caller's buffer, or returns an
//! [`UpstreamJob`] when the answer needs the upstream servers (a name outside the cluster
//! zone, an ExternalName whose target lies outside it, a search-path completion ending
//! outside it).
//!
//! The order of checks, for a name in the cluster zone:
//! 1. before the first full sync of the watches: SERVFAIL (never a false NXDOMAIN);
//! 2. the name is in the table: its records of the asked type, a CNAME chain, or NODATA
//!    (SOA in the authority section);
//! 3. a pod name `a-b-c-d.<ns>.pod.<zone>`, per the `pods` mode;
//! 4. search-path completion for a known pod client (see [`Answerer::autopath`]);
//! 5. NXDOMAIN with the SOA.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::name::{is_within_wire, labels_before, parse_dashed_ip, Name};
use crate::records::RecordConfig;
use crate::wire::{
    self, parse_query, rcode, record_tail, rtype, Edns, Owner, ParseError, Query, ResponseBuilder, Section, CLASS_ANY,
    CLASS_IN, MAX_MESSAGE,
};
use crate::zone::{NameEntry, Zone};

/// How `a-b-c-d.<ns>.pod.<zone>` names are answered (CoreDNS's `pods` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PodsMode {
    /// Always NXDOMAIN.
    Disabled,
    /// Echo the address from the name without checking (kube-dns compatible; what the
    /// default Corefile and Kubernetes conformance use).
    #[default]
    Insecure,
    /// Answer only if an endpoint with that address names a pod in that namespace.
    Verified,
}

/// Settings that shape answers.
#[derive(Clone, Debug)]
pub struct AnswerConfig {
    pub records: RecordConfig,
    pub pods: PodsMode,
    /// Complete search paths server-side for clients that are known pods.
    pub autopath: bool,
    /// Whether upstream servers are configured (otherwise outside names get REFUSED).
    pub forwarding: bool,
    /// Largest UDP response sent, and the size advertised in OPT records.
    pub max_udp: u16,
}

/// The transport a query came over, which bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do after [`Answerer::answer`].
#[derive(Debug)]
pub enum Outcome {
    /// The buffer holds a response with this query type (if the question was readable)
    /// and response code.
    Reply { qtype: Option<u16>, rcode: u16 },
    /// The answer needs the upstream servers.
    Upstream(UpstreamJob),
    /// Send nothing.
    Drop,
}

/// The parts of a query an upstream round trip needs, owned.
#[derive(Clone, Debug)]
pub struct ClientQuery {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question section as the client sent it.
    pub question: Vec<u8>,
    pub qtype: u16,
    pub edns: Option<Edns>,
    /// Largest response the client accepts on its transport.
    pub limit: usize,
    pub max_udp: u16,
}

impl ClientQuery {
    fn from_query(query: &Query<'_>, limit: usize, max_udp: u16) -> ClientQuery {
        ClientQuery {
            id: query.id,
            recursion_desired: query.recursion_desired,
            checking_disabled: query.checking_disabled,
            question: query.question().to_vec(),
            qtype: query.qtype,
            edns: query.edns,
            limit,
            max_udp,
        }
    }

    /// A packet equal to the client's query (header, question, OPT) to start a response
    /// from with [`ResponseBuilder`].
    pub fn as_packet(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + self.question.len() + 11);
        p.extend_from_slice(&self.id.to_be_bytes());
        let mut flags = 0u16;
        if self.recursion_desired {
            flags |= 0x0100;
        }
        if self.checking_disabled {
            flags |= 0x0010;
        }
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        p.extend_from_slice(&self.question);
        if let Some(edns) = self.edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&edns.udp_size.to_be_bytes());
            p.extend_from_slice(&[0, edns.version, 0, 0, 0, 0]);
        }
        p
    }
}

/// A response that needs the upstream servers.
#[derive(Clone, Debug)]
pub struct UpstreamJob {
    pub query: ClientQuery,
    pub kind: UpstreamKind,
}

#[derive(Clone, Debug)]
pub enum UpstreamKind {
    /// Relay the question (a name outside the cluster zone).
    Forward,
    /// Resolve `target` upstream and answer with `prefix` (complete answer records, CNAMEs
    /// leading to `target`) followed by the upstream answer. With a `fallback` (a complete
    /// response) that is sent instead unless the upstream has a positive answer.
    Resolve { prefix: Vec<Vec<u8>>, target: Name, fallback: Option<Vec<u8>> },
}

/// Longest CNAME chain followed inside the zone.
const MAX_CHAIN: usize = 8;
/// SOA timers (refresh, retry, expire), as CoreDNS serves them.
const SOA_TIMERS: [u32; 3] = [7200, 1800, 86_400];

/// The shared answering state: settings, the table and whether it is complete.
pub struct Answerer {
    pub config: AnswerConfig,
    pub zone: RwLock<Zone>,
    synced: AtomicBool,
    rotation: AtomicUsize,
    soa_names: Vec<u8>,
    pod_zone: Name,
    reverse_v4: Name,
    reverse_v6: Name,
}

impl Answerer {
    pub fn new(config: AnswerConfig, zone: Zone) -> Answerer {
        let records = &config.records;
        let mut soa_names = records.ns_name().wire().to_vec();
        soa_names.extend_from_slice(records.zone.prepend("hostmaster").unwrap_or_else(|_| records.zone.clone()).wire());
        let pod_zone = records.zone.prepend("pod").unwrap_or_else(|_| records.zone.clone());
        Answerer {
            soa_names,
            pod_zone,
            reverse_v4: Name::from_dotted("in-addr.arpa").unwrap_or_else(|_| Name::root()),
            reverse_v6: Name::from_dotted("ip6.arpa").unwrap_or_else(|_| Name::root()),
            config,
            zone: RwLock::new(zone),
            synced: AtomicBool::new(false),
            rotation: AtomicUsize::new(0),
        }
    }

    /// Marks the table complete (every watch has listed once); until then names in the
    /// zone get SERVFAIL.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Answers one query packet into `buf`.
    pub fn answer(&self, packet: &[u8], client: IpAddr, transport: Transport, buf: &mut Vec<u8>) -> Outcome {
        let query = match parse_query(packet) {
            Ok(query) => query,
            Err(ParseError::Ignore) => return Outcome::Drop,
            Err(ParseError::Reject { id, opcode, recursion_desired, rcode }) => {
                wire::write_reject(buf, id, opcode, recursion_desired, rcode);
                return Outcome::Reply { qtype: None, rcode: u16::from(rcode) };
            }
        };
        let limit = match transport {
            Transport::Udp => query.udp_limit(usize::from(self.config.max_udp)),
            Transport::Tcp => MAX_MESSAGE,
        };
        let qtype = Some(query.qtype);
        let simple = |buf: &mut Vec<u8>, code: u16, authoritative: bool| {
            let mut r = ResponseBuilder::new(buf, &query, limit, self.config.max_udp);
            r.set_rcode(code);
            r.set_authoritative(authoritative);
            r.finish();
            Outcome::Reply { qtype, rcode: code }
        };
        if query.edns.is_some_and(|e| e.version != 0) {
            return simple(buf, rcode::BADVERS, false);
        }
        if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
            return simple(buf, u16::from(rcode::REFUSED), false);
        }
        match query.qtype {
            rtype::AXFR | rtype::IXFR => return simple(buf, u16::from(rcode::REFUSED), false),
            rtype::OPT => return simple(buf, u16::from(rcode::FORMERR), false),
            _ => {}
        }
        let qname = query.qname();
        if is_within_wire(qname, self.config.records.zone.wire()) {
            if !self.is_synced() {
                return simple(buf, u16::from(rcode::SERVFAIL), false);
            }
            return self.answer_in_zone(&query, client, limit, buf);
        }
        if is_within_wire(qname, self.reverse_v4.wire()) || is_within_wire(qname, self.reverse_v6.wire()) {
            if let Some(outcome) = self.answer_reverse(&query, limit, buf) {
                return outcome;
            }
        }
        if self.config.forwarding {
            return Outcome::Upstream(UpstreamJob {
                query: ClientQuery::from_query(&query, limit, self.config.max_udp),
                kind: UpstreamKind::Forward,
            });
        }
        let code = if is_within_wire(qname, self.reverse_v4.wire()) || is_within_wire(qname, self.reverse_v6.wire()) {
            rcode::NXDOMAIN
        } else {
            rcode::REFUSED
        };
        simple(buf, u16::from(code), false)
    }

    /// PTR names from the table; `None` (fall through to forwarding) for unknown names.
    fn answer_reverse(&self, query: &Query<'_>, limit: usize, buf: &mut Vec<u8>) -> Option<Outcome> {
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
        let entry = zone.get(query.qname())?;
        let mut r = ResponseBuilder::new(buf, query, limit, self.config.max_udp);
        r.set_authoritative(true);
        for tail in entry.records(query.qtype) {
            r.push_stored(Section::Answer, Owner::Question, entry.name(), tail);
        }
        let code = r.rcode();
        r.finish();
        Some(Outcome::Reply { qtype: Some(query.qtype), rcode: code })
    }

    fn answer_in_zone(&self, query: &Query<'_>, client: IpAddr, limit: usize, buf: &mut Vec<u8>) -> Outcome {
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
        let qname = query.qname();
        let qtype = Some(query.qtype);
        if let Some(entry) = zone.get(qname) {
            let mut r = ResponseBuilder::new(buf, query, limit, self.config.max_udp);
            r.set_authoritative(true);
            return match self.write_entry(&zone, &mut r, query.qtype, qname, Owner::Question, entry) {
                Some(kind) => Outcome::Upstream(UpstreamJob {
                    query: ClientQuery::from_query(query, limit, self.config.max_udp),
                    kind,
                }),
                None => {
                    let code = r.rcode();
                    r.finish();
                    Outcome::Reply { qtype, rcode: code }
                }
            };
        }
        if let Some(outcome) = self.answer_pod(&zone, query, limit, buf) {
            return outcome;
        }
        if self.config.autopath {
            if let Some(outcome) = self.autopath(&zone, query, client, limit, buf) {
                return outcome;
            }
        }
        self.write_nxdomain(&zone, query, limit, buf);
        Outcome::Reply { qtype, rcode: u16::from(rcode::NXDOMAIN) }
    }

    fn write_nxdomain(&self, zone: &Zone, query: &Query<'_>, limit: usize, buf: &mut Vec<u8>) {
        let mut r = ResponseBuilder::new(buf, query, limit, self.config.max_udp);
        r.set_authoritative(true);
        r.set_rcode(u16::from(rcode::NXDOMAIN));
        self.push_soa(zone, &mut r, Section::Authority);
        r.finish();
    }

    /// Writes the answer from a table entry at `name` (spelled `owner` in the response):
    /// its records of `qtype`, a CNAME chain, or NODATA. Returns an upstream job when a
    /// CNAME chain leaves the zone.
    fn write_entry(
        &self,
        zone: &Zone,
        r: &mut ResponseBuilder<'_>,
        qtype: u16,
        name: &[u8],
        owner: Owner<'_>,
        entry: NameEntry<'_>,
    ) -> Option<UpstreamKind> {
        let apex = self.config.records.zone.wire();
        if qtype != rtype::CNAME && qtype != rtype::ANY {
            if let Some(target) = entry.first_rdata(rtype::CNAME) {
                return self.follow_cname(zone, r, qtype, owner, entry, target);
            }
        }
        if name == apex && (qtype == rtype::SOA || qtype == rtype::ANY) {
            self.push_soa(zone, r, Section::Answer);
        }
        let count = entry.records(qtype).count();
        // DNS round robin: rotate address sets between answers.
        let start = if count > 1 && (qtype == rtype::A || qtype == rtype::AAAA) {
            self.rotation.fetch_add(1, Ordering::Relaxed) % count
        } else {
            0
        };
        for tail in entry.records(qtype).skip(start).chain(entry.records(qtype).take(start)) {
            r.push_stored(Section::Answer, owner, entry.name(), tail);
        }
        if r.count(Section::Answer) == 0 {
            self.push_soa(zone, r, Section::Authority);
            return None;
        }
        if qtype == rtype::SRV || qtype == rtype::ANY {
            push_srv_glue(zone, r, entry);
        }
        if name == apex && (qtype == rtype::NS || qtype == rtype::ANY) {
            let ns_name = self.config.records.ns_name();
            if let Some(ns) = zone.get(ns_name.wire()) {
                for tail in ns.records(rtype::A).chain(ns.records(rtype::AAAA)) {
                    r.push(Section::Additional, Owner::Name(ns_name.wire()), tail);
                }
            }
        }
        None
    }

    /// Writes the CNAME at `owner` and follows the chain inside the zone.
    fn follow_cname(
        &self,
        zone: &Zone,
        r: &mut ResponseBuilder<'_>,
        qtype: u16,
        owner: Owner<'_>,
        entry: NameEntry<'_>,
        first_target: &[u8],
    ) -> Option<UpstreamKind> {
        let apex = self.config.records.zone.wire();
        let mut prefix: Vec<Vec<u8>> = Vec::new();
        let cname_tail = |target: &[u8]| record_tail(rtype::CNAME, self.config.records.ttl, target);
        for tail in entry.records(rtype::CNAME).take(1) {
            r.push(Section::Answer, owner, tail);
            prefix.push(raw_record(owner, tail));
        }
        let mut target = first_target.to_vec();
        for _ in 0..MAX_CHAIN {
            if !is_within_wire(&target, apex) {
                if !self.config.forwarding {
                    return None;
                }
                return Some(UpstreamKind::Resolve {
                    prefix,
                    target: Name::from_wire_unchecked(&target),
                    fallback: None,
                });
            }
            let Some(next) = zone.get(&target) else {
                r.set_rcode(u16::from(rcode::NXDOMAIN));
                self.push_soa(zone, r, Section::Authority);
                return None;
            };
            match next.first_rdata(rtype::CNAME) {
                Some(next_target) => {
                    let tail = cname_tail(next_target);
                    r.push(Section::Answer, Owner::Name(&target), &tail);
                    prefix.push(raw_record(Owner::Name(&target), &tail));
                    target = next_target.to_vec();
                }
                None => {
                    for tail in next.records(qtype) {
                        r.push_stored(Section::Answer, Owner::Name(&target), &target, tail);
                    }
                    return None;
                }
            }
        }
        None
    }

    /// `a-b-c-d.<ns>.pod.<zone>`: `None` if the name is not of that shape.
    fn answer_pod(&self, zone: &Zone, query: &Query<'_>, limit: usize, buf: &mut Vec<u8>) -> Option<Outcome> {
        let qname = query.qname();
        if !is_within_wire(qname, self.pod_zone.wire()) {
            return None;
        }
        let labels = labels_before(qname, self.pod_zone.wire());
        let [ip_label, namespace] = labels.as_slice() else { return None };
        let ip = parse_dashed_ip(ip_label)?;
        let exists = match self.config.pods {
            PodsMode::Disabled => false,
            PodsMode::Insecure => true,
            PodsMode::Verified => zone.pod_namespace(ip).is_some_and(|ns| ns.as_bytes() == *namespace),
        };
        if !exists {
            return None;
        }
        let mut r = ResponseBuilder::new(buf, query, limit, self.config.max_udp);
        r.set_authoritative(true);
        let (t, data) = match ip {
            IpAddr::V4(v4) => (rtype::A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (rtype::AAAA, v6.octets().to_vec()),
        };
        if query.qtype == t || query.qtype == rtype::ANY {
            r.push(Section::Answer, Owner::Question, &record_tail(t, self.config.records.ttl, &data));
        } else {
            self.push_soa(zone, &mut r, Section::Authority);
        }
        r.finish();
        Some(Outcome::Reply { qtype: Some(query.qtype), rcode: u16::from(rcode::NOERROR) })
    }

    /// Server-side search-path completion. A pod in namespace `N` looking up `X` with
    /// `ndots:5` first asks for `X.N.svc.<zone>`. When that name does not exist and the
    /// client's address is a known pod of `N`, try the rest of the pod's search path here
    /// (`X.svc.<zone>`, `X.<zone>`, then `X` itself) and answer with a CNAME from the asked
    /// name to the first one that exists, saving the client its remaining round trips.
    /// Clients are known from EndpointSlice `targetRef`s: pods behind some Service.
    fn autopath(
        &self,
        zone: &Zone,
        query: &Query<'_>,
        client: IpAddr,
        limit: usize,
        buf: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let namespace = zone.pod_namespace(client)?;
        let apex = &self.config.records.zone;
        let first_search = apex.prepend("svc").and_then(|n| n.prepend(namespace)).ok()?;
        let qname = query.qname();
        if qname.len() <= first_search.wire().len() || !is_within_wire(qname, first_search.wire()) {
            return None;
        }
        // X in wire format without its root byte, ready to prepend to a suffix.
        let base = &qname[..qname.len() - first_search.wire().len()];
        let join = |suffix: &[u8]| -> Option<Vec<u8>> {
            let mut wire = Vec::with_capacity(base.len() + suffix.len());
            wire.extend_from_slice(base);
            wire.extend_from_slice(suffix);
            (wire.len() <= crate::name::MAX_NAME_LEN).then_some(wire)
        };
        let svc_zone = apex.prepend("svc").ok()?;
        let mut candidates = vec![join(svc_zone.wire())?, join(apex.wire())?];
        candidates.push(join(&[0])?);
        for candidate in candidates {
            let cname = record_tail(rtype::CNAME, self.config.records.ttl, &candidate);
            if !is_within_wire(&candidate, apex.wire()) {
                if !self.config.forwarding {
                    return None;
                }
                self.write_nxdomain(zone, query, limit, buf);
                return Some(Outcome::Upstream(UpstreamJob {
                    query: ClientQuery::from_query(query, limit, self.config.max_udp),
                    kind: UpstreamKind::Resolve {
                        prefix: vec![raw_record(Owner::Question, &cname)],
                        target: Name::from_wire_unchecked(&candidate),
                        fallback: Some(buf.clone()),
                    },
                }));
            }
            let Some(entry) = zone.get(&candidate) else { continue };
            let mut r = ResponseBuilder::new(buf, query, limit, self.config.max_udp);
            r.push(Section::Answer, Owner::Question, &cname);
            let upstream = self.write_entry(zone, &mut r, query.qtype, &candidate, Owner::Name(&candidate), entry);
            return Some(match upstream {
                Some(kind) => {
                    let UpstreamKind::Resolve { mut prefix, target, .. } = kind else { return None };
                    prefix.insert(0, raw_record(Owner::Question, &cname));
                    Outcome::Upstream(UpstreamJob {
                        query: ClientQuery::from_query(query, limit, self.config.max_udp),
                        kind: UpstreamKind::Resolve { prefix, target, fallback: None },
                    })
                }
                None => {
                    let code = r.rcode();
                    r.finish();
                    Outcome::Reply { qtype: Some(query.qtype), rcode: code }
                }
            });
        }
        None
    }

    /// The zone's SOA record; its minimum (negative-caching TTL) is the record TTL.
    fn push_soa(&self, zone: &Zone, r: &mut ResponseBuilder<'_>, section: Section) {
        let ttl = self.config.records.ttl;
        let mut rdata = Vec::with_capacity(self.soa_names.len() + 20);
        rdata.extend_from_slice(&self.soa_names);
        rdata.extend_from_slice(&zone.serial().to_be_bytes());
        for timer in SOA_TIMERS {
            rdata.extend_from_slice(&timer.to_be_bytes());
        }
        rdata.extend_from_slice(&ttl.to_be_bytes());
        r.push(section, Owner::Name(self.config.records.zone.wire()), &record_tail(rtype::SOA, ttl, &rdata));
    }
}

/// A complete record: owner (pointer or name) and tail.
fn raw_record(owner: Owner<'_>, tail: &[u8]) -> Vec<u8> {
    let mut record = match owner {
        Owner::Question => vec![0xc0, wire::HEADER_LEN as u8],
        Owner::Name(wire) => wire.to_vec(),
    };
    record.extend_from_slice(tail);
    record
}

/// The additional section of an SRV answer: each target's addresses, read from the
/// target's own entry (SRV targets are Service or endpoint names in the table), once per
/// target, until the response is full.
fn push_srv_glue(zone: &Zone, r: &mut ResponseBuilder<'_>, entry: NameEntry<'_>) {
    let mut glued: HashSet<Vec<u8>> = HashSet::new();
    for tail in entry.records(rtype::SRV) {
        // The tail's 10 bytes of type/class/TTL/length, then priority, weight and port.
        let Some(stored) = tail.get(16..) else { continue };
        let target = wire::expand_name(entry.name(), stored);
        let Some(addresses) = zone.get(&target) else { continue };
        if glued.contains(&target) {
            continue;
        }
        for address in addresses.records(rtype::A).chain(addresses.records(rtype::AAAA)) {
            if !r.push(Section::Additional, Owner::Name(&target), address) {
                return;
            }
        }
        glued.insert(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{answerer, ask, ask_from};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{RData, RecordType};

    fn rdatas(m: &hickory_proto::op::Message) -> Vec<String> {
        let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        v.sort();
        v
    }

    fn has_soa(m: &hickory_proto::op::Message) -> bool {
        m.authorities.iter().any(|r| r.record_type() == RecordType::SOA)
    }

    #[test]
    fn cluster_ip_service_and_nodata() {
        let a = answerer();
        let m = ask(&a, "svc1.testns.svc.cluster.local", rtype::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(rdatas(&m), vec!["10.0.0.1"]);
        assert_eq!(m.answers[0].ttl, 30);
        let nodata = ask(&a, "svc1.testns.svc.cluster.local", rtype::AAAA);
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty() && has_soa(&nodata));
        assert_eq!(rdatas(&ask(&a, "svc6.testns.svc.cluster.local", rtype::AAAA)), vec!["1234:abcd::1"]);
        assert_eq!(rdatas(&ask(&a, "svcempty.testns.svc.cluster.local", rtype::A)), vec!["10.0.0.2"]);
    }

    #[test]
    fn srv_and_ptr() {
        let a = answerer();
        let m = ask(&a, "_http._tcp.svc1.testns.svc.cluster.local", rtype::SRV);
        assert_eq!(rdatas(&m), vec!["0 100 80 svc1.testns.svc.cluster.local."]);
        assert!(m.additionals.iter().any(|r| matches!(r.data, RData::A(ip) if ip.0.octets() == [10, 0, 0, 1])));
        let nx = ask(&a, "_nope._tcp.svc1.testns.svc.cluster.local", rtype::SRV);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(rdatas(&ask(&a, "1.0.0.10.in-addr.arpa", rtype::PTR)), vec!["svc1.testns.svc.cluster.local."]);
        assert_eq!(
            rdatas(&ask(&a, "4.0.0.172.in-addr.arpa", rtype::PTR)),
            vec!["my-pet.hdls1.testns.svc.cluster.local."]
        );
        let srv = ask(&a, "_http._tcp.hdls1.testns.svc.cluster.local", rtype::SRV);
        assert_eq!(
            rdatas(&srv),
            vec![
                "0 33 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
                "0 33 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
                "0 33 80 my-pet.hdls1.testns.svc.cluster.local.",
            ]
        );
        assert_eq!(srv.additionals.len(), 3);
    }

    #[test]
    fn headless_services() {
        let a = answerer();
        let m = ask(&a, "hdls1.testns.svc.cluster.local", rtype::A);
        assert_eq!(rdatas(&m), vec!["172.0.0.2", "172.0.0.3", "172.0.0.4"]);
        let firsts: std::collections::HashSet<String> =
            (0..3).map(|_| ask(&a, "hdls1.testns.svc.cluster.local", rtype::A).answers[0].data.to_string()).collect();
        assert_eq!(firsts.len(), 3, "round robin rotates the first record");
        assert_eq!(rdatas(&ask(&a, "my-pet.hdls1.testns.svc.cluster.local", rtype::A)), vec!["172.0.0.4"]);
        for name in ["hdls-none.testns.svc.cluster.local", "bogus.hdls1.testns.svc.cluster.local"] {
            let nx = ask(&a, name, rtype::A);
            assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(has_soa(&nx));
        }
        assert_eq!(rdatas(&ask(&a, "hdls-pnr.testns.svc.cluster.local", rtype::A)), vec!["172.0.0.7"]);
    }

    #[test]
    fn external_names() {
        let a = answerer();
        assert_eq!(rdatas(&ask(&a, "ext.testns.svc.cluster.local", rtype::CNAME)), vec!["www.example.com."]);
        let inside = ask(&a, "ext-in.testns.svc.cluster.local", rtype::A);
        let types: Vec<RecordType> = inside.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, vec![RecordType::CNAME, RecordType::A], "CNAME first, then the target");
        let outside = ask_from(&a, "192.0.2.99", "ext.testns.svc.cluster.local", rtype::A);
        match outside {
            Err(Outcome::Upstream(UpstreamJob {
                kind: UpstreamKind::Resolve { prefix, target, fallback }, ..
            })) => {
                assert_eq!(prefix.len(), 1);
                assert_eq!(target.to_string(), "www.example.com.");
                assert!(fallback.is_none());
            }
            other => panic!("expected an upstream job, got {other:?}"),
        }
        let sub = ask(&a, "x.ext.testns.svc.cluster.local", rtype::CNAME);
        assert_eq!(sub.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn negative_answers_and_empty_non_terminals() {
        let a = answerer();
        for t in [rtype::A, rtype::AAAA, rtype::TXT] {
            assert_eq!(ask(&a, "nosuch.testns.svc.cluster.local", t).metadata.response_code, ResponseCode::NXDomain);
        }
        assert_eq!(ask(&a, "svc1.nosuchns.svc.cluster.local", rtype::A).metadata.response_code, ResponseCode::NXDomain);
        for name in ["svc.cluster.local", "testns.svc.cluster.local", "pod.cluster.local", "cluster.local"] {
            let m = ask(&a, name, rtype::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.answers.is_empty() && has_soa(&m), "{name}");
        }
        for name in ["foo.cluster.local", "foo.svc.cluster.local", "a.b.c.svc1.testns.svc.cluster.local"] {
            assert_eq!(ask(&a, name, rtype::NS).metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
    }

    #[test]
    fn apex_version_and_case() {
        let a = answerer();
        let soa = ask(&a, "cluster.local", rtype::SOA);
        assert_eq!(soa.answers.len(), 1);
        assert!(soa.answers[0].data.to_string().starts_with("ns.dns.cluster.local. hostmaster.cluster.local."));
        assert_eq!(rdatas(&ask(&a, "cluster.local", rtype::NS)), vec!["ns.dns.cluster.local."]);
        let txt = ask(&a, "dns-version.cluster.local", rtype::TXT);
        assert_eq!(rdatas(&txt), vec!["1.1.0"]);
        assert_eq!(txt.answers[0].ttl, 28_800);
        let mixed = ask(&a, "SvC1.TeStNs.SvC.cLuStEr.LoCaL", rtype::A);
        assert_eq!(mixed.answers[0].name.to_string(), "SvC1.TeStNs.SvC.cLuStEr.LoCaL.");
        assert_eq!(mixed.queries[0].name().to_string(), "SvC1.TeStNs.SvC.cLuStEr.LoCaL.");
    }

    #[test]
    fn pods_and_sync() {
        let a = answerer();
        assert_eq!(rdatas(&ask(&a, "10-240-0-1.testns.pod.cluster.local", rtype::A)), vec!["10.240.0.1"]);
        assert_eq!(ask(&a, "blah.testns.pod.cluster.local", rtype::A).metadata.response_code, ResponseCode::NXDomain);
        let fresh = Answerer::new(a.config.clone(), Zone::new(a.config.records.zone.clone(), 1));
        assert_eq!(
            ask(&fresh, "svc1.testns.svc.cluster.local", rtype::A).metadata.response_code,
            ResponseCode::ServFail
        );
    }

    #[test]
    fn autopath_for_known_pods() {
        let a = answerer();
        // 172.0.0.3 is pod p3 in testns (a targetRef); it looks up "svc1.testns" with ndots:5.
        let m = ask_from(&a, "172.0.0.3", "svc1.testns.testns.svc.cluster.local", rtype::A).expect("direct reply");
        let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
        assert_eq!(m.answers[0].data.to_string(), "svc1.testns.svc.cluster.local.");
        // Unknown clients get the plain NXDOMAIN.
        let plain = ask(&a, "svc1.testns.testns.svc.cluster.local", rtype::A);
        assert_eq!(plain.metadata.response_code, ResponseCode::NXDomain);
        // Outside names go upstream, with the NXDOMAIN as fallback.
        match ask_from(&a, "172.0.0.3", "example.com.testns.svc.cluster.local", rtype::A) {
            Err(Outcome::Upstream(UpstreamJob { kind: UpstreamKind::Resolve { target, fallback, .. }, .. })) => {
                assert_eq!(target.to_string(), "example.com.");
                assert!(fallback.is_some());
            }
            other => panic!("expected an upstream job, got {other:?}"),
        }
    }

    #[test]
    fn malformed_and_refused() {
        let a = answerer();
        let mut buf = Vec::new();
        let client = "127.0.0.1".parse().unwrap();
        assert!(matches!(a.answer(b"\x00", client, Transport::Udp, &mut buf), Outcome::Drop));
        let mut bad = crate::fixture::query("svc1.testns.svc.cluster.local", rtype::A);
        bad.truncate(20);
        assert!(matches!(a.answer(&bad, client, Transport::Udp, &mut buf), Outcome::Reply { rcode: 1, .. }));
        let axfr = ask(&a, "cluster.local", rtype::AXFR);
        assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    }
}
