use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use serde_json::json;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static COUNT: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 { LIVE.fetch_add(l.size() as isize, Ordering::Relaxed); COUNT.fetch_add(1, Ordering::Relaxed); System.alloc(l) }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) { LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed); COUNT.fetch_sub(1, Ordering::Relaxed); System.dealloc(p, l) }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 { LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed); System.realloc(p, l, n) }
}
#[global_allocator]
static A: Counting = Counting;

fn objs() -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut svcs = vec![]; let mut slices = vec![];
    for i in 1..=10000u32 {
        svcs.push(json!({"metadata": {"namespace": "default", "name": format!("svc-{i}"), "uid": "x", "resourceVersion": "1"},
            "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1), "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}], "type": "ClusterIP"}}));
    }
    for h in 1..=1000u32 {
        svcs.push(json!({"metadata": {"namespace": "default", "name": format!("hl-{h}")}, "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}));
        let eps: Vec<_> = (0..10).map(|e| json!({"addresses": [format!("10.{}.{}.{}", 100 + h / 250, h % 250, e + 1)], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": format!("hl-{h}-{e}")}})).collect();
        slices.push(json!({"metadata": {"namespace": "default", "name": format!("hl-{h}-a"), "labels": {"kubernetes.io/service-name": format!("hl-{h}")}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": eps}));
    }
    (svcs, slices)
}

fn main() {
    let (svcs, slices) = objs();
    let n = 21000.0;
    let base = (LIVE.load(Ordering::Relaxed), COUNT.load(Ordering::Relaxed));
    let mut view = skiff_core::service_view::ServiceView::default();
    for s in &svcs { view.apply_service(s).unwrap(); }
    for s in &slices { view.apply_endpoint_slice(s).unwrap(); }
    let v = (LIVE.load(Ordering::Relaxed) - base.0, COUNT.load(Ordering::Relaxed) - base.1);
    println!("view only: {} bytes/obj, {} allocs/obj", v.0 as f64 / n, v.1 as f64 / n);
    drop(view);
    let base = (LIVE.load(Ordering::Relaxed), COUNT.load(Ordering::Relaxed));
    let config = skiff_dns::DnsConfig::new("127.0.0.1:0".parse().unwrap());
    let answerer = Arc::new(config.answerer().unwrap());
    let mut feeder = skiff_dns::ZoneFeeder::new(answerer.clone());
    feeder.apply_namespace("default");
    for s in &svcs { feeder.apply_service(s).unwrap(); }
    for s in &slices { feeder.apply_endpoint_slice(s).unwrap(); }
    let t = (LIVE.load(Ordering::Relaxed) - base.0, COUNT.load(Ordering::Relaxed) - base.1);
    println!("feeder total: {} bytes/obj, {} allocs/obj; zone names {}", t.0 as f64 / n, t.1 as f64 / n, answerer.zone.read().unwrap().len());
    println!("zone+feeder extra: {} bytes/obj, {} allocs/obj", (t.0 - v.0) as f64 / n, (t.1 - v.1) as f64 / n);
}
