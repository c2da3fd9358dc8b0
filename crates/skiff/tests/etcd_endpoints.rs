//! Service `default/kubernetes` lists every live API server of a cluster on one etcd, as
//! kube-apiserver's lease endpoint reconciler does: each server holds a lease; a server that
//! shuts down (SIGTERM) removes itself at once, a server killed with `kill -9` drops out when
//! its lease expires.
//!
//! The servers run like servers on separate machines: each on its own loopback address
//! (127.0.0.2, .3, …) and all on one port, the address advertised being the one served on.
//!
//! Needs the `etcd` binary (Debian's etcd-server; `SKIFF_ETCD_BIN` overrides) and kubectl.

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::EtcdCluster;

/// Upper bound for anything the tests wait for (hang protection, not a timing assertion).
const WAIT: Duration = Duration::from_secs(30);

/// A `skiff server` serving on `ip:port` and advertising `ip`. Dropping it SIGKILLs it.
struct Server {
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    fn start(etcd: &str, ip: Ipv4Addr, port: u16, lease_ttl_seconds: u64) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &format!("{ip}:{port}"), "--advertise-address", &ip.to_string()])
            .args(["--etcd-endpoints", etcd, "--endpoint-lease-ttl", &lease_ttl_seconds.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting skiff server");
        let mut server = Server { ip, dir, child: Some(child) };
        server.wait_ready();
        server
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env_remove("KUBECONFIG")
            .args(args)
            .output()
            .expect("running kubectl")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("skiff server on {} exited with {status}: {}", self.ip, self.log());
            }
            assert!(Instant::now() < deadline, "server on {} not ready: {}", self.ip, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server on {} ignored SIGTERM: {}", self.ip, self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The addresses of Endpoints `default/kubernetes` and of its EndpointSlice, read with
    /// kubectl through this server (each sorted).
    fn kubernetes_endpoints(&self) -> (Vec<String>, Vec<String>) {
        let read = |args: &[&str]| {
            let out = self.kubectl(args);
            assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            let mut ips: Vec<String> =
                String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            ips.sort();
            ips
        };
        (
            read(&["get", "endpoints", "kubernetes", "-n", "default", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]),
            read(&[
                "get",
                "endpointslices.discovery.k8s.io",
                "kubernetes",
                "-n",
                "default",
                "-o",
                "jsonpath={.endpoints[*].addresses[*]}",
            ]),
        )
    }

    /// Waits until both the Endpoints and the EndpointSlice list exactly `want`.
    fn wait_endpoints(&self, want: &[Ipv4Addr], why: &str) {
        let mut want: Vec<String> = want.iter().map(Ipv4Addr::to_string).collect();
        want.sort();
        let deadline = Instant::now() + WAIT;
        loop {
            let (endpoints, slice) = self.kubernetes_endpoints();
            if endpoints == want && slice == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{why}: endpoints {endpoints:?}, slice {slice:?}, want {want:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn kubernetes_endpoints_follow_the_live_api_servers() {
    let etcd = EtcdCluster::start(1);
    let port = common::ports::free_ports(1)[0];
    let ips: Vec<Ipv4Addr> = (2..=4).map(|last| Ipv4Addr::new(127, 0, 0, last)).collect();
    // A short TTL so the kill -9 case does not take upstream's 15 s.
    let mut servers: Vec<Server> = ips.iter().map(|ip| Server::start(etcd.client_url(0), *ip, port, 2)).collect();

    for server in &servers {
        server.wait_endpoints(&ips, "every server lists all three");
    }
    let service = servers[0].kubectl(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.ports[0].targetPort}"]);
    assert_eq!(String::from_utf8_lossy(&service.stdout), port.to_string(), "targetPort is the shared port");

    // SIGTERM: the server removes its lease and itself before exiting, cleanly.
    let status = servers[1].terminate();
    assert!(status.success(), "SIGTERM must end the server cleanly, got {status}: {}", servers[1].log());
    assert!(servers[1].log().contains("removing this server"), "no shutdown path: {}", servers[1].log());
    servers[0].wait_endpoints(&[ips[0], ips[2]], "the terminated server left");

    // kill -9: nobody removes the lease; it expires and the survivors drop the address.
    servers[2].kill9();
    servers[0].wait_endpoints(&[ips[0]], "the killed server's lease expired");

    // A restarted server comes back into the endpoints.
    servers[1] = Server::start(etcd.client_url(0), ips[1], port, 2);
    servers[0].wait_endpoints(&[ips[0], ips[1]], "the restarted server is back");
}

/// The last server standing keeps its address on SIGTERM (upstream: never publish an empty
/// `kubernetes` Service while it may come back), and a new server replaces stale leases.
#[test]
fn the_last_server_keeps_its_address_and_stale_leases_are_replaced() {
    let etcd = EtcdCluster::start(1);
    let port = common::ports::free_ports(1)[0];
    let first = Ipv4Addr::new(127, 0, 0, 5);
    let second = Ipv4Addr::new(127, 0, 0, 6);
    let mut server = Server::start(etcd.client_url(0), first, port, 1);
    server.wait_endpoints(&[first], "one server");
    let status = server.terminate();
    assert!(status.success(), "SIGTERM must end the server cleanly, got {status}: {}", server.log());

    let replacement = Server::start(etcd.client_url(0), second, port, 1);
    replacement.wait_endpoints(&[second], "the first server's address is gone once a new server reconciles");
}

/// A component given a kubeconfig that names one server learns the others from the
/// `kubernetes` endpoints and moves to them when its server dies.
#[test]
fn components_discover_the_other_servers_and_fail_over_to_them() {
    let etcd = EtcdCluster::start(1);
    let port = common::ports::free_ports(1)[0];
    let (a_ip, b_ip) = (Ipv4Addr::new(127, 0, 0, 7), Ipv4Addr::new(127, 0, 0, 8));
    let mut a = Server::start(etcd.client_url(0), a_ip, port, 2);
    let b = Server::start(etcd.client_url(0), b_ip, port, 2);
    a.wait_endpoints(&[a_ip, b_ip], "both servers listed");

    // The controllers know only A (its own kubeconfig).
    let log_path = a.dir.path().join("controllers.log");
    let controllers = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("controllers")
        .arg("--kubeconfig")
        .arg(a.kubeconfig())
        .args(["--lb-pool", "172.31.253.1-172.31.253.10"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("starting skiff controllers");
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _controllers = Killed(controllers);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; controllers:\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the controllers to discover B", &|| log().contains("API server discovered"));

    let lb_ip = |server: &Server, name: &str| {
        let out = server.kubectl(&["get", "service", name, "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]);
        out.status.success() && !out.stdout.is_empty()
    };
    let create = |server: &Server, name: &str| {
        let out = server.kubectl(&["create", "service", "loadbalancer", name, "--tcp=80:80"]);
        assert!(out.status.success(), "creating {name}: {}", String::from_utf8_lossy(&out.stderr));
    };
    create(&a, "before");
    wait_for("an IP for the Service created through A", &|| lb_ip(&a, "before"));
    a.kill9();
    create(&b, "after");
    wait_for("an IP for the Service created through B after A died", &|| lb_ip(&b, "after"));
    assert!(log().contains("now using this server"), "no failover in the controllers' log:\n{}", log());
}
