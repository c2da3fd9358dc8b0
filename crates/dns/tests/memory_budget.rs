//! Memory per object: the heap the DNS server keeps per Service and per endpoint (the
//! service view plus the answer table), counted with a counting allocator. The issue's
//! target is 1 KB per Service+endpoint for the whole process; this pins the part that grows
//! with the cluster so it does not creep up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use skiff_dns::{DnsConfig, ZoneFeeder};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn bytes_per_service_and_endpoint() {
    let config = DnsConfig::new("127.0.0.1:0".parse().unwrap());
    let answerer = Arc::new(config.answerer().unwrap());
    let mut feeder = ZoneFeeder::new(answerer.clone());
    feeder.apply_namespace("default");

    let before = live();
    for i in 1..=10_000u32 {
        let ip = format!("10.96.{}.{}", (256 + i) / 256, (256 + i) % 256);
        feeder
            .apply_service(&json!({"metadata": {"namespace": "default", "name": format!("svc-{i}")},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}))
            .unwrap();
    }
    let services = live() - before;

    let before = live();
    for h in 1..=1_000u32 {
        feeder
            .apply_service(&json!({"metadata": {"namespace": "default", "name": format!("hl-{h}")},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}))
            .unwrap();
        let endpoints: Vec<_> = (0..10)
            .map(|e| {
                json!({"addresses": [format!("10.{}.{}.{}", 100 + h / 250, h % 250, e + 1)],
                "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("hl-{h}-{e}")}})
            })
            .collect();
        feeder
            .apply_endpoint_slice(&json!({
                "metadata": {"namespace": "default", "name": format!("hl-{h}-a"),
                             "labels": {"kubernetes.io/service-name": format!("hl-{h}")}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints}))
            .unwrap();
    }
    let headless = live() - before;

    let per_service = services / 10_000;
    let per_headless_object = headless / (1_000 + 10_000);
    println!("ClusterIP Service: {per_service} B; headless Service + 10 endpoints: {} B ({per_headless_object} B per object)", headless / 1_000);
    // Regression budgets just above today's numbers (884 B and 760 B requested; the answer
    // table's arena counts with its whole capacity here, unlike RSS, which counts only
    // touched pages). The target is 1 KB per object for the whole process, measured
    // as RSS by scripts/bench-dns (892 B with the same objects); the rest is the shared
    // ServiceView (~430 B per ClusterIP Service here) and allocator overhead.
    assert!(per_service <= 950, "{per_service} bytes per ClusterIP Service");
    assert!(per_headless_object <= 850, "{per_headless_object} bytes per headless object");
}
