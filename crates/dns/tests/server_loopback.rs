//! The UDP workers and the TCP listener in-process, on loopback, over the fixture table
//! (no API server): many client sockets spread over `SO_REUSEPORT` workers, workers sharing
//! one socket, TCP framing with pipelined queries, UDP truncation.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use skiff_dns::fixture::{answerer, query};
use skiff_dns::{Forwarder, Metrics, Shared};

fn response_code(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn answer_count(reply: &[u8]) -> u16 {
    u16::from_be_bytes([reply[6], reply[7]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_workers_and_tcp_answer() {
    let shared = Shared::new(answerer(), Arc::new(Forwarder::new(Vec::new())), Arc::new(Metrics::new(4)));
    let server = skiff_dns::server::start("127.0.0.1:0".parse().unwrap(), 3, 3, shared).await.expect("start");
    let addr = server.local_addr;
    tokio::task::spawn_blocking(move || {
        // 30 client sockets (different source ports spread over the workers).
        for i in 0..30u16 {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut q = query("svc1.testns.svc.cluster.local", 1);
            q[..2].copy_from_slice(&i.to_be_bytes());
            socket.send_to(&q, addr).unwrap();
            let mut buf = [0u8; 4096];
            let n = socket.recv(&mut buf).expect("UDP answer");
            assert_eq!(&buf[..2], &i.to_be_bytes());
            assert_eq!(response_code(&buf[..n]), 0);
            assert_eq!(answer_count(&buf[..n]), 1);
        }
        // Outside names go to the forwarder; with no upstream to ask, that is SERVFAIL.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        socket.send_to(&query("www.example.com", 1), addr).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(response_code(&buf[..n]), 2);

        // TCP: two pipelined queries on one connection, answered in order.
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut framed = Vec::new();
        for (id, name) in [(7u16, "hdls1.testns.svc.cluster.local"), (8, "nosuch.testns.svc.cluster.local")] {
            let mut q = query(name, 1);
            q[..2].copy_from_slice(&id.to_be_bytes());
            framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
            framed.extend_from_slice(&q);
        }
        stream.write_all(&framed).unwrap();
        for (id, rcode, answers) in [(7u16, 0u8, 3u16), (8, 3, 0)] {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(&reply[..2], &id.to_be_bytes());
            assert_eq!(response_code(&reply), rcode);
            assert_eq!(answer_count(&reply), answers);
        }
    })
    .await
    .unwrap();
    drop(server);
}

/// Workers sharing one socket (the default): a burst from a single client flow, which
/// `SO_REUSEPORT` would hand to one worker, is answered completely, each query once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_one_socket_answer_a_burst() {
    let metrics = Arc::new(Metrics::new(4));
    let shared = Shared::new(answerer(), Arc::new(Forwarder::new(Vec::new())), metrics);
    let server = skiff_dns::server::start("127.0.0.1:0".parse().unwrap(), 3, 1, shared).await.expect("start");
    let addr = server.local_addr;
    tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        const BURST: u16 = 200;
        for id in 0..BURST {
            let mut q = query("svc1.testns.svc.cluster.local", 1);
            q[..2].copy_from_slice(&id.to_be_bytes());
            socket.send_to(&q, addr).unwrap();
        }
        let mut seen = vec![false; usize::from(BURST)];
        let mut buf = [0u8; 4096];
        for _ in 0..BURST {
            let n = socket.recv(&mut buf).expect("every query of the burst is answered");
            assert_eq!(response_code(&buf[..n]), 0);
            let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            assert!(!seen[id], "query {id} answered twice");
            seen[id] = true;
        }
    })
    .await
    .unwrap();
    drop(server);
}
