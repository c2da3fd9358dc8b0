//! `skiff builtin agnhost netexec`, driven over loopback with the real curl and UDP sockets:
//! every endpoint, the UDP commands, /dial between two instances, exit codes and SIGTERM.

mod builtin_support;

use std::net::SocketAddr;
use std::time::Instant;

use builtin_support::{closed_port, curl, hostname, udp_exchange, Program, WAIT};

/// A netexec on loopback with its HTTP and UDP addresses.
struct Netexec {
    program: Program,
    http: SocketAddr,
    udp: SocketAddr,
}

impl Netexec {
    fn start(extra: &[&str]) -> Netexec {
        let mut args = vec!["agnhost", "netexec", "--http-port=0", "--udp-port", "0"];
        args.extend_from_slice(extra);
        let mut program = Program::spawn(&args);
        let udp = program.logged_addr("Started UDP server on ");
        let http = program.logged_addr("Started HTTP server on ");
        Netexec { program, http, udp }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

#[test]
fn http_endpoints_answer_like_agnhost() {
    let server = Netexec::start(&[]);

    let root = curl(&server.url("/"), &[]);
    assert_eq!(root.status, 200);
    assert!(root.body.starts_with("NOW: "), "{root:?}");
    assert_eq!(curl(&server.url("/anything/else"), &[]).body.get(..5), Some("NOW: "));

    assert_eq!(curl(&server.url("/hostname"), &[]).body, hostname());
    assert_eq!(curl(&server.url("/hostName"), &[]).body, hostname());

    let echo = curl(&server.url("/echo?msg=hello%20world"), &[]);
    assert_eq!((echo.status, echo.body.as_str()), (200, "hello world"));
    let coded = curl(&server.url("/echo?msg=gone&code=404"), &[]);
    assert_eq!((coded.status, coded.body.as_str()), (404, "gone"));
    let bad_code = curl(&server.url("/echo?msg=x&code=abc"), &[]);
    assert_eq!(bad_code.status, 200);
    assert!(bad_code.body.contains("argument 'code' must be an integer"), "{bad_code:?}");
    let posted = curl(&server.url("/echo"), &["--data", "msg=posted"]);
    assert_eq!(posted.body, "posted");

    let client = curl(&server.url("/clientip"), &[]).body;
    let client: SocketAddr = client.parse().unwrap_or_else(|_| panic!("clientip {client:?} is not ip:port"));
    assert_eq!(client.ip().to_string(), "127.0.0.1");

    assert_eq!(curl(&server.url("/header?key=X-Test"), &["-H", "X-Test: abc"]).body, "abc");
    assert_eq!(curl(&server.url("/header?key=X-Missing"), &[]).body, "");
    let all = curl(&server.url("/header"), &["-H", "X-Forwarded-For: 10.1.2.3"]).json();
    assert_eq!(all["X-Forwarded-For"], serde_json::json!(["10.1.2.3"]));
    assert!(all["User-Agent"][0].as_str().unwrap_or_default().starts_with("curl/"), "{all}");
    assert!(all.get("Host").is_none(), "Go leaves Host out of the header map: {all}");

    let healthz = curl(&server.url("/healthz"), &[]);
    assert_eq!((healthz.status, healthz.body.as_str()), (200, ""));
    let readyz = curl(&server.url("/readyz"), &[]);
    assert_eq!((readyz.status, readyz.body.as_str()), (200, "ok"));

    let shell = curl(&server.url("/shell?cmd=echo%20hi;%20echo%20err%20%3E%262"), &[]);
    assert_eq!(shell.status, 200);
    assert_eq!(shell.json(), serde_json::json!({"output": "hi\nerr\n"}));
    let failing = curl(&server.url("/shell?shellCommand=exit%203"), &[]);
    assert_eq!(failing.json(), serde_json::json!({"error": "exit status 3"}));

    let redirect = curl(&server.url("/redirect?location=/echo%3Fmsg%3Dmoved&code=307"), &[]);
    assert_eq!(redirect.status, 307);
    assert_eq!(redirect.header("location"), Some("/echo?msg=moved"));
    assert_eq!(curl(&server.url("/redirect?location=/echo%3Fmsg%3Dmoved"), &["-L"]).body, "moved");
    let unclean = curl(&server.url("//hostname"), &[]);
    assert_eq!((unclean.status, unclean.header("location")), (301, Some("/hostname")));

    let upload = curl(&server.url("/upload"), &[]);
    assert_eq!(upload.status, 501, "{upload:?}");
}

#[test]
fn udp_commands_answer_like_agnhost() {
    let server = Netexec::start(&[]);
    assert_eq!(udp_exchange(server.udp, b"hostname"), hostname());
    assert_eq!(udp_exchange(server.udp, b"  HOSTNAME\n"), hostname());
    // Upstream lower-cases the whole datagram before matching, so echo answers in lower case.
    assert_eq!(udp_exchange(server.udp, b"echo Hello UDP"), "hello udp");
    let client: SocketAddr = udp_exchange(server.udp, b"clientip").parse().expect("clientip is ip:port");
    assert_eq!(client.ip().to_string(), "127.0.0.1");

    // An unknown command gets no answer: the next answer on the same socket is the hostname's.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket.send_to(b"no-such-command", server.udp).expect("send");
    socket.send_to(b"hostname", server.udp).expect("send");
    let mut buffer = [0u8; 256];
    let (n, _) = socket.recv_from(&mut buffer).expect("answer");
    assert_eq!(String::from_utf8_lossy(&buffer[..n]), hostname());
}

#[test]
fn dial_reaches_another_netexec_over_http_and_udp() {
    let (a, b) = (Netexec::start(&[]), Netexec::start(&[]));
    let dial = |query: String| curl(&a.url(&format!("/dial?{query}")), &[]);

    let http = dial(format!("request=hostname&protocol=http&host=127.0.0.1&port={}&tries=3", b.http.port()));
    assert_eq!(http.status, 200);
    assert_eq!(http.json(), serde_json::json!({"responses": [hostname(), hostname(), hostname()]}));

    // B sees A's address: each try is a new connection from A.
    let seen = dial(format!("request=clientip&host=127.0.0.1&port={}", b.http.port())).json();
    let seen = seen["responses"][0].as_str().unwrap_or_default().to_owned();
    assert!(seen.starts_with("127.0.0.1:"), "{seen}");

    let echo = dial(format!("request=echo%3Fmsg%3Dvia-a&host=127.0.0.1&port={}", b.http.port()));
    assert_eq!(echo.json(), serde_json::json!({"responses": ["via-a"]}));

    let udp = dial(format!("request=hostname&protocol=udp&host=127.0.0.1&port={}&tries=2", b.udp.port()));
    assert_eq!(udp.json(), serde_json::json!({"responses": [hostname(), hostname()]}));
    let udp_echo = dial(format!("request=echo%20hi&protocol=UDP&host=127.0.0.1&port={}", b.udp.port()));
    assert_eq!(udp_echo.json(), serde_json::json!({"responses": ["hi"]}));

    // Failures are reported in "errors" with status 200; no "responses" when the last try failed.
    let refused = dial(format!("request=hostname&host=127.0.0.1&port={}&tries=2", closed_port()));
    assert_eq!(refused.status, 200);
    let refused = refused.json();
    assert!(refused.get("responses").is_none(), "{refused}");
    let errors = refused["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 2, "{refused}");
    assert!(errors[0].as_str().unwrap_or_default().contains("connection refused"), "{refused}");

    // Bad parameters are 400s.
    assert_eq!(dial(format!("host=127.0.0.1&port={}", b.http.port())).status, 400);
    assert_eq!(dial(format!("request=x&host=127.0.0.1&port={}&tries=many", b.http.port())).status, 400);
    assert_eq!(dial(format!("request=x&protocol=carrier-pigeon&host=127.0.0.1&port={}", b.http.port())).status, 400);
    assert_eq!(dial("request=x&host=127.0.0.1&port=99999".to_owned()).status, 400);
}

#[test]
fn exit_and_shutdown_end_the_process_with_the_asked_code() {
    let mut immediate = Netexec::start(&[]);
    let _ = std::process::Command::new("curl").args(["-s", "--max-time", "5", &immediate.url("/exit?code=3")]).output();
    assert_eq!(immediate.program.wait_exit().code(), Some(3));

    let mut drained = Netexec::start(&[]);
    let reply = curl(&drained.url("/exit?code=5&timeout=2s"), &[]);
    assert_eq!(reply.status, 200, "with a timeout the /exit answer is sent before the drain");
    assert_eq!(drained.program.wait_exit().code(), Some(5));

    let mut bad = Netexec::start(&[]);
    let reply = curl(&bad.url("/exit?code=x"), &[]);
    assert!(reply.body.contains("argument 'code' must be an integer"), "{reply:?}");
    let _ = std::process::Command::new("curl").args(["-s", "--max-time", "5", &bad.url("/shutdown")]).output();
    assert_eq!(bad.program.wait_exit().code(), Some(0));
}

#[test]
fn sigterm_turns_readyz_to_503_during_the_shutdown_delay() {
    let delayed = Netexec::start(&["--delay-shutdown=60"]);
    delayed.program.signal("TERM");
    let deadline = Instant::now() + WAIT;
    loop {
        let readyz = curl(&delayed.url("/readyz"), &[]);
        if readyz.status == 503 {
            assert_eq!(readyz.body, "shutting down");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz still {readyz:?} after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(curl(&delayed.url("/healthz"), &[]).status, 200, "healthy while draining");
    assert_eq!(curl(&delayed.url("/hostname"), &[]).body, hostname(), "still serving while draining");

    let mut plain = Netexec::start(&[]);
    plain.program.signal("TERM");
    assert_eq!(plain.program.wait_exit().code(), Some(0));
}

#[test]
fn without_udp_healthz_is_412_as_upstream() {
    let mut program = Program::spawn(&["agnhost", "netexec", "--http-port=0", "--udp-port=-1"]);
    let http = program.logged_addr("Started HTTP server on ");
    assert_eq!(curl(&format!("http://{http}/healthz"), &[]).status, 412);
    assert_eq!(curl(&format!("http://{http}/readyz"), &[]).status, 412);
    assert_eq!(curl(&format!("http://{http}/hostname"), &[]).body, hostname());
}

#[test]
fn http_override_answers_every_path_as_the_override() {
    let mut program =
        Program::spawn(&["agnhost", "netexec", "--http-port=0", "--udp-port=-1", "--http-override=/echo?msg=fixed"]);
    let http = program.logged_addr("Started HTTP server on ");
    assert_eq!(curl(&format!("http://{http}/hostname"), &[]).body, "fixed");
}

#[test]
fn bad_flags_and_busy_ports_fail_clearly() {
    let (code, _, stderr) = builtin_support::run_to_end(&["agnhost", "netexec", "--http-port=abc"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--http-port"), "{stderr}");

    let (code, _, stderr) = builtin_support::run_to_end(&["agnhost", "netexec", "--no-such-flag"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown flag: --no-such-flag"), "{stderr}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let (code, _, stderr) = builtin_support::run_to_end(&["agnhost", "netexec", "--http-port", &port, "--udp-port=-1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains(&format!("cannot listen on TCP port {port}")), "{stderr}");
}

#[test]
fn netexec_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let openssl = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(openssl.status.success(), "openssl: {}", String::from_utf8_lossy(&openssl.stderr));
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let mut program = Program::spawn(&[
        "agnhost",
        "netexec",
        "--http-port=0",
        "--udp-port=-1",
        "--tls-cert-file",
        &cert,
        "--tls-private-key-file",
        &key,
    ]);
    let https = program.logged_addr("Started HTTPS server on ");
    assert_eq!(curl(&format!("https://{https}/hostname"), &["--cacert", &cert]).body, hostname());

    let (code, _, stderr) = builtin_support::run_to_end(&["agnhost", "netexec", "--tls-cert-file", &cert]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--tls-private-key-file"), "{stderr}");
}
