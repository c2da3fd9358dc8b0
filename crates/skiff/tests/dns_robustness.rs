//! Bad input: a flood of random bytes (and of almost-valid queries) over UDP and TCP
//! leaves `skiff dns` answering correctly.

mod common;
mod dns_support;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::TestServer;
use dns_support::{DnsServer, Proto};

/// xorshift64: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A query for `svc1.testns.svc.cluster.local` A with some bytes overwritten by noise.
fn mangled_query(noise: &mut Noise) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in ["svc1", "testns", "svc", "cluster", "local"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
    for _ in 0..1 + noise.next() % 4 {
        let at = (noise.next() as usize) % q.len();
        q[at] = noise.next() as u8;
    }
    q.truncate(1 + (noise.next() as usize) % q.len() + q.len() / 2);
    q
}

#[test]
fn random_bytes_leave_it_answering() {
    let server = TestServer::start();
    server.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: testns}\n---\napiVersion: v1\nkind: Service\n\
         metadata: {name: svc1, namespace: testns}\nspec: {clusterIP: 10.96.100.1, ports: [{name: http, port: 80}]}\n",
    );
    let dns = DnsServer::start(&server.kubeconfig, server.data_dir(), &[]);
    dns.wait_synced();
    let name = "svc1.testns.svc.cluster.local";
    dns_support::poll("svc1", Duration::from_secs(20), || {
        (dns.dig(Proto::Udp, name, "A", &[]).answers("A") == ["10.96.100.1"]).then_some(())
    });

    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    for i in 0..20_000 {
        let packet = if i % 2 == 0 {
            let len = (noise.next() % 700) as usize;
            noise.bytes(len)
        } else {
            mangled_query(&mut noise)
        };
        let _ = socket.send_to(&packet, dns.addr);
    }
    // TCP: garbage, bogus length prefixes, half messages, and a connection left idle.
    let mut idle = Vec::new();
    for i in 0..50 {
        let Ok(mut stream) = TcpStream::connect(dns.addr) else { continue };
        let payload = match i % 3 {
            0 => {
                let len = 1 + (noise.next() % 2000) as usize;
                noise.bytes(len)
            }
            1 => {
                let q = mangled_query(&mut noise);
                let mut framed = (q.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&q);
                framed
            }
            _ => vec![0xff, 0xff, 1, 2, 3],
        };
        let _ = stream.write_all(&payload);
        idle.push(stream);
    }

    for proto in [Proto::Udp, Proto::Tcp] {
        let d = dns.dig(proto, name, "A", &[]);
        assert_eq!(d.answers("A"), vec!["10.96.100.1"], "{proto:?} after the flood: {}\n{}", d.raw, dns.log());
    }
    let (code, metrics) = dns.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("rcode=\"FORMERR\""), "malformed queries are answered FORMERR: {metrics}");
}
