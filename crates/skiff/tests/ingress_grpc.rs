//! gRPC through `skiff ingress` (`backend-protocol: GRPC`): a real gRPC server (etcd's v3 API
//! on an h2c port) behind a hand-written EndpointSlice, called with `nghttp` over HTTP/2
//! prior knowledge on the plain port and over TLS (ALPN h2) on the HTTPS port. The gRPC
//! status travels in HTTP/2 trailers, so these checks fail unless trailers pass through.

mod common;
mod ingress_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::{EtcdCluster, TestServer};
use ingress_support::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// Calls gRPC method `method` with an empty request message through `url` (an ingress
/// address) for `authority`; returns nghttp's verbose frame log.
fn grpc_call(url: &str, authority: &str, method: &str) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    // One gRPC message: not compressed, length 0 (an empty protobuf message).
    let request = dir.path().join("request.bin");
    std::fs::write(&request, [0u8; 5]).expect("request file");
    let out = Command::new("timeout")
        .args(["10", "nghttp", "-v", "-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!(":authority: {authority}"), "-d"])
        .arg(&request)
        .arg(format!("{url}{method}"))
        .output()
        .expect("running nghttp");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn grpc_backend_over_h2c_and_tls() {
    let server = TestServer::start();
    let etcd = EtcdCluster::start(1);
    let etcd_addr: SocketAddr = etcd.client_url(0).trim_start_matches("http://").parse().expect("etcd client address");
    let mut items = vec![ingress_class(true)];
    items.extend(service_manifests("etcd", "default", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], etcd_addr.port()));
    items.push(ingress(
        "grpc",
        json!({"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}),
        json!({"rules": [rule(Some("grpc.example"), &[("/", "Prefix", "etcd")])]}),
    ));
    apply_all(&server, items);
    let ing = IngressProcess::start(&server, &[]);
    let plain = format!("http://{}", ing.http);
    let status = "/etcdserverpb.Maintenance/Status";

    // Plain port, HTTP/2 with prior knowledge (h2c) from client to ingress to etcd.
    let reply = eventually("gRPC answer through the ingress", WAIT, || {
        let reply = grpc_call(&plain, "grpc.example", status);
        reply.contains("grpc-status: 0").then_some(reply)
    });
    assert!(reply.contains(":status: 200") && reply.contains("content-type: application/grpc"), "{reply}");
    // StatusResponse carries etcd's version string; it arrived in a DATA frame.
    assert!(reply.contains("recv DATA frame") && reply.contains("3."), "{reply}");

    // A gRPC error is etcd's own status in the trailers, passed through as is.
    let unknown = grpc_call(&plain, "grpc.example", "/etcdserverpb.Maintenance/NoSuchMethod");
    assert!(unknown.contains("grpc-status: 12"), "UNIMPLEMENTED expected: {unknown}");

    // TLS on the HTTPS port, HTTP/2 chosen by ALPN.
    let tls = grpc_call(&format!("https://{}", ing.https), "grpc.example", status);
    assert!(tls.contains(":status: 200") && tls.contains("grpc-status: 0"), "{tls}");

    // Another host has no route: the built-in 404, not a gRPC answer.
    let other = grpc_call(&plain, "other.example", status);
    assert!(other.contains(":status: 404") && !other.contains("grpc-status"), "{other}");
    assert!(!ing.log().contains("panicked"), "{}", ing.log());
}
