//! The dns.md §1 checklist fixture, fed through the real [`ZoneFeeder`]: shared by the unit
//! tests, the integration tests and the fuzz target (`fuzz/`), which also uses
//! [`check_packet`] to state what must hold for any input, and [`seed_queries`] to start from
//! queries that reach every kind of answer.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::answer::{AnswerConfig, Answerer, Outcome, PodsMode, Transport, UpstreamJob, UpstreamKind};
use crate::feed::ZoneFeeder;
use crate::name::Name;
use crate::records::RecordConfig;
use crate::zone::Zone;

fn service(name: &str, spec: Value) -> Value {
    json!({"metadata": {"namespace": "testns", "name": name}, "spec": spec})
}

fn slice(name: &str, service: &str, endpoints: Value) -> Value {
    json!({
        "metadata": {"namespace": "testns", "name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": endpoints
    })
}

/// The fixture of dns.md §1: svc1, svc6, svcempty, hdls1, hdls-none, hdls-pnr, ext.
pub fn feed_fixture(feeder: &mut ZoneFeeder) {
    feeder.apply_namespace("testns");
    for (name, spec) in [
        ("svc1", json!({"clusterIP": "10.0.0.1", "ports": [{"name": "http", "port": 80}, {"port": 81}]})),
        ("svc6", json!({"clusterIP": "1234:abcd::1", "ports": [{"name": "http", "port": 80}]})),
        ("svcempty", json!({"clusterIP": "10.0.0.2", "ports": [{"name": "http", "port": 80}]})),
        ("hdls1", json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})),
        ("hdls-none", json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80}]})),
        ("hdls-pnr", json!({"clusterIP": "None", "publishNotReadyAddresses": true})),
        ("ext", json!({"type": "ExternalName", "externalName": "www.example.com"})),
        ("ext-in", json!({"type": "ExternalName", "externalName": "svc1.testns.svc.cluster.local"})),
    ] {
        feeder.apply_service(&service(name, spec)).expect("fixture service");
    }
    for (name, svc, endpoints) in [
        (
            "hdls1-a",
            "hdls1",
            json!([
                {"addresses": ["172.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["172.0.0.3"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "namespace": "testns", "name": "p3"}},
                {"addresses": ["172.0.0.4"], "conditions": {"ready": true}, "hostname": "my-pet"},
                {"addresses": ["172.0.0.9"], "conditions": {"ready": false}}
            ]),
        ),
        ("hdls-none-a", "hdls-none", json!([{"addresses": ["172.0.0.8"], "conditions": {"ready": false}}])),
        ("hdls-pnr-a", "hdls-pnr", json!([{"addresses": ["172.0.0.7"], "conditions": {"ready": true}}])),
    ] {
        feeder.apply_endpoint_slice(&slice(name, svc, endpoints)).expect("fixture slice");
    }
}

/// A synced answerer holding the fixture, forwarding enabled, pods insecure.
pub fn answerer() -> Arc<Answerer> {
    let zone = Name::from_dotted("cluster.local").expect("zone");
    let config = AnswerConfig {
        records: RecordConfig { zone: zone.clone(), ttl: 30 },
        pods: PodsMode::Insecure,
        autopath: true,
        forwarding: true,
        max_udp: 4096,
    };
    let answerer = Arc::new(Answerer::new(config, Zone::new(zone, 1)));
    let mut feeder = ZoneFeeder::new(answerer.clone());
    feed_fixture(&mut feeder);
    answerer.set_synced();
    answerer
}

/// A query packet for `name` and `qtype` with EDNS (4096).
pub fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    p.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    p
}

/// A pod of `testns` in the fixture (an endpoint `targetRef` of hdls1).
const KNOWN_POD: [u8; 4] = [172, 0, 0, 3];
/// An address no endpoint names.
const UNKNOWN_CLIENT: [u8; 4] = [10, 244, 0, 9];

/// Answers an arbitrary packet over UDP and TCP and checks what must hold for any input:
/// no panic; every response within the transport's size limit, echoing the query's ID and
/// well-formed (header counts match the records, every name and RDATA inside the message,
/// compression pointers pointing backwards); answers to a readable query echo its question;
/// work handed to the upstream path carries a query that reads back the same. The low bit of
/// the query ID picks the client: a pod the table knows (172.0.0.3 in `testns`, which turns
/// on search-path completion) or an unknown address.
pub fn check_packet(answerer: &Answerer, packet: &[u8]) {
    let mut buf = Vec::new();
    let parsed = crate::wire::parse_query(packet).ok();
    let known_pod = packet.get(1).is_some_and(|id_low| id_low & 1 == 1);
    let client = if known_pod { KNOWN_POD } else { UNKNOWN_CLIENT };
    for (transport, limit) in [(Transport::Udp, usize::from(answerer.config.max_udp)), (Transport::Tcp, 65_535)] {
        match answerer.answer(packet, client.into(), transport, &mut buf) {
            Outcome::Reply { .. } => {
                assert!(buf.len() >= crate::wire::HEADER_LEN, "response shorter than a header");
                assert!(buf.len() <= limit.max(crate::wire::CLASSIC_UDP_LIMIT), "response over the limit");
                assert_eq!(buf[..2], packet[..2], "ID not echoed");
                assert_eq!(buf[2] & 0x80, 0x80, "QR not set");
                if let Err(problem) = check_message(&buf) {
                    panic!("malformed response ({problem}): {buf:02x?}");
                }
                if let Some(query) = &parsed {
                    let question = buf.get(crate::wire::HEADER_LEN..crate::wire::HEADER_LEN + query.question().len());
                    assert_eq!(question, Some(query.question()), "question not echoed");
                }
            }
            Outcome::Upstream(job) => check_upstream_job(&job),
            Outcome::Drop => {}
        }
    }
}

/// The upstream path rebuilds the client's query from the job; it must read back as the
/// same question, and any ready-made response in the job must be well-formed.
fn check_upstream_job(job: &UpstreamJob) {
    let packet = job.query.as_packet();
    let Ok(again) = crate::wire::parse_query(&packet) else { panic!("upstream job query does not parse: {job:?}") };
    assert_eq!(again.question(), job.query.question.as_slice(), "upstream job question changed");
    if let UpstreamKind::Resolve { prefix, fallback, .. } = &job.kind {
        for record in prefix {
            // Prefix records may point at the question (offset 12), as in the final response.
            let mut message = packet.clone();
            message.truncate(crate::wire::HEADER_LEN + job.query.question.len());
            message[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
            message.extend_from_slice(record);
            if let Err(problem) = check_message(&message) {
                panic!("malformed upstream prefix record ({problem}): {record:02x?}");
            }
        }
        if let Some(fallback) = fallback {
            if let Err(problem) = check_message(fallback) {
                panic!("malformed fallback response ({problem}): {fallback:02x?}");
            }
        }
    }
}

/// Walks a whole DNS message: the question and every record the header counts announce
/// must lie exactly within `message`.
pub fn check_message(message: &[u8]) -> Result<(), &'static str> {
    let count = |at: usize| message.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (count(4), count(6), count(8), count(10)) else {
        return Err("short header");
    };
    let mut at = crate::wire::HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(message, at)?;
        at = at.checked_add(4).filter(|end| *end <= message.len()).ok_or("question past the end")?;
    }
    for _ in 0..an + ns + ar {
        at = skip_name(message, at)?;
        let rdlen = count(at + 8).ok_or("record header past the end")?;
        at += 10;
        at = at.checked_add(rdlen).filter(|end| *end <= message.len()).ok_or("RDATA past the end")?;
    }
    if at != message.len() {
        return Err("bytes after the last record");
    }
    Ok(())
}

/// Offset after the name at `at`; pointers must point backwards to names that are
/// themselves well-formed.
fn skip_name(message: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut at = start;
    let mut end = None;
    let mut length = 0usize;
    loop {
        let len = *message.get(at).ok_or("name past the end")?;
        match len {
            0 => return Ok(end.unwrap_or(at + 1)),
            1..=63 => {
                length += usize::from(len) + 1;
                if length > crate::name::MAX_NAME_LEN {
                    return Err("name too long");
                }
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let low = *message.get(at + 1).ok_or("pointer past the end")?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                if target >= at {
                    return Err("pointer not backwards");
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err("reserved label type"),
        }
    }
}

/// Queries for every kind of name in the fixture (services, headless sets, endpoints,
/// SRV, reverse, pod, apex, ExternalName, search-path, outside, missing names) and the
/// types that make a difference, with and without EDNS: the fuzz target's seed corpus and
/// the noise test's starting points.
pub fn seed_queries() -> Vec<Vec<u8>> {
    const NAMES: [&str; 16] = [
        "svc1.testns.svc.cluster.local",
        "SvC6.TeStNs.svc.cluster.local",
        "svcempty.testns.svc.cluster.local",
        "hdls1.testns.svc.cluster.local",
        "my-pet.hdls1.testns.svc.cluster.local",
        "_http._tcp.hdls1.testns.svc.cluster.local",
        "_http._tcp.svc1.testns.svc.cluster.local",
        "hdls-none.testns.svc.cluster.local",
        "ext.testns.svc.cluster.local",
        "ext-in.testns.svc.cluster.local",
        "10-240-0-1.testns.pod.cluster.local",
        "4.0.0.172.in-addr.arpa",
        "cluster.local",
        "dns-version.cluster.local",
        "svc1.testns.testns.svc.cluster.local",
        "www.example.com",
    ];
    const TYPES: [u16; 9] = [
        crate::wire::rtype::A,
        crate::wire::rtype::AAAA,
        crate::wire::rtype::SRV,
        crate::wire::rtype::PTR,
        crate::wire::rtype::CNAME,
        crate::wire::rtype::SOA,
        crate::wire::rtype::NS,
        crate::wire::rtype::TXT,
        crate::wire::rtype::ANY,
    ];
    let mut out = Vec::new();
    for name in NAMES {
        for qtype in TYPES {
            let with_edns = query(name, qtype);
            // The same query without the OPT record (ARCOUNT 0, classic 512-byte limit).
            let mut classic = with_edns[..with_edns.len() - 11].to_vec();
            classic[11] = 0;
            // An odd ID: asked by the known pod (see `check_packet`).
            classic[1] |= 1;
            out.push(with_edns);
            out.push(classic);
        }
    }
    out
}

/// Asks `answerer` from `client`; returns the parsed response, or the outcome when it is
/// not a direct reply.
#[cfg(test)]
pub fn ask_from(
    answerer: &Answerer,
    client: &str,
    name: &str,
    qtype: u16,
) -> Result<hickory_proto::op::Message, Outcome> {
    let mut buf = Vec::new();
    let client = client.parse().expect("client address");
    match answerer.answer(&query(name, qtype), client, Transport::Udp, &mut buf) {
        Outcome::Reply { .. } => Ok(hickory_proto::op::Message::from_vec(&buf).expect("response parses")),
        other => Err(other),
    }
}

#[cfg(test)]
pub fn ask(answerer: &Answerer, name: &str, qtype: u16) -> hickory_proto::op::Message {
    ask_from(answerer, "192.0.2.99", name, qtype).unwrap_or_else(|o| panic!("{name}: not a direct reply: {o:?}"))
}
