//! The dns.md §1 checklist fixture, fed through the real [`ZoneFeeder`]: shared by the unit
//! tests, the integration tests and the fuzz target (`fuzz/`), which also uses
//! [`check_packet`] to state what must hold for any input.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::answer::{AnswerConfig, Answerer, Outcome, PodsMode, Transport};
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

/// Answers an arbitrary packet over UDP and TCP and checks what must hold for any input:
/// no panic, responses within the transport's size limit, every response at least a
/// header whose ID echoes the query's.
pub fn check_packet(answerer: &Answerer, packet: &[u8]) {
    let mut buf = Vec::new();
    for (transport, limit) in [(Transport::Udp, usize::from(answerer.config.max_udp)), (Transport::Tcp, 65_535)] {
        if let Outcome::Reply { .. } = answerer.answer(packet, "10.244.0.9".parse().expect("ip"), transport, &mut buf) {
            assert!(buf.len() >= crate::wire::HEADER_LEN, "response shorter than a header");
            assert!(buf.len() <= limit.max(crate::wire::CLASSIC_UDP_LIMIT), "response over the limit");
            assert_eq!(buf[..2], packet[..2], "ID not echoed");
        }
    }
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
