//! The other built-in programs, driven over loopback: agnhost serve-hostname, connect, pause
//! and porter; nginx; the pause image; and the `skiff builtin` command line itself.

mod builtin_support;

use std::io::Read;
use std::process::Command;

use builtin_support::{closed_port, curl, free_ports, hostname, run_to_end, udp_exchange, Program};

#[test]
fn serve_hostname_over_http_tcp_and_udp() {
    let mut http = Program::spawn(&["agnhost", "serve-hostname", "--port=0"]);
    let addr = http.logged_addr("Serving HTTP on ");
    let reply = curl(&format!("http://{addr}/any/path"), &[]);
    assert_eq!((reply.status, reply.body.clone()), (200, hostname()));
    assert_eq!(reply.header("connection"), None);

    let mut closing = Program::spawn(&["agnhost", "serve-hostname", "--port=0", "--close"]);
    let addr = closing.logged_addr("Serving HTTP on ");
    assert_eq!(curl(&format!("http://{addr}/"), &[]).header("connection"), Some("close"));

    let mut raw = Program::spawn(&["agnhost", "serve-hostname", "--port=0", "--http=false", "--tcp"]);
    let addr = raw.logged_addr("Serving TCP on ");
    let mut answer = String::new();
    std::net::TcpStream::connect(addr).expect("connect").read_to_string(&mut answer).expect("read");
    assert_eq!(answer, hostname());

    let mut udp = Program::spawn(&["agnhost", "serve-hostname", "--port", "0", "--http=false", "--udp"]);
    let addr = udp.logged_addr("Serving UDP on ");
    assert_eq!(udp_exchange(addr, b"anything"), hostname());
    udp.signal("INT");
    assert_eq!(udp.wait_exit().code(), Some(0));
}

#[test]
fn serve_hostname_refuses_tcp_together_with_http() {
    let (code, _, stderr) = run_to_end(&["agnhost", "serve-hostname", "--tcp"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Can't serve TCP/UDP mode and HTTP mode at the same time"), "{stderr}");
}

#[test]
fn connect_exit_codes_and_error_words() {
    let mut server = Program::spawn(&["agnhost", "netexec", "--http-port=0", "--udp-port=0"]);
    let udp = server.logged_addr("Started UDP server on ");
    let http = server.logged_addr("Started HTTP server on ");

    let (code, _, stderr) = run_to_end(&["agnhost", "connect", &http.to_string(), "--timeout=5s"]);
    assert_eq!(code, Some(0), "{stderr}");

    let closed = format!("127.0.0.1:{}", closed_port());
    let (code, _, stderr) = run_to_end(&["agnhost", "connect", &closed]);
    assert_eq!((code, stderr.trim()), (Some(1), "REFUSED"));

    let (code, _, stderr) = run_to_end(&["agnhost", "connect", "127.0.0.1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("UNKNOWN: "), "{stderr}");

    let (code, _, stderr) = run_to_end(&["agnhost", "connect", "127.0.0.1:99999"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("DNS: "), "{stderr}");

    let (code, _, stderr) = run_to_end(&["agnhost", "connect", &udp.to_string(), "--protocol=udp", "--timeout=5s"]);
    assert_eq!(code, Some(0), "{stderr}");

    let closed_udp = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("addr")
    };
    let (code, _, stderr) =
        run_to_end(&["agnhost", "connect", &closed_udp.to_string(), "--protocol", "udp", "--timeout", "5s"]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("REFUSED: "), "{stderr}");

    let (code, _, _) = run_to_end(&["agnhost", "connect"]);
    assert_eq!(code, Some(1), "a destination is required");
}

#[test]
fn agnhost_pause_exits_like_upstream() {
    let mut terminated = Program::spawn(&["agnhost", "pause"]);
    terminated.wait_stdout("Paused");
    terminated.signal("TERM");
    assert_eq!(terminated.wait_exit().code(), Some(2));

    let mut interrupted = Program::spawn(&["agnhost", "pause"]);
    interrupted.wait_stdout("Paused");
    interrupted.signal("INT");
    assert_eq!(interrupted.wait_exit().code(), Some(1));
}

#[test]
fn pause_image_exits_0_on_sigterm() {
    let mut pause = Program::spawn(&["pause"]);
    // The handlers are installed before anything else; give the process a moment to start.
    wait_for_signal_handlers(&pause);
    pause.signal("TERM");
    assert_eq!(pause.wait_exit().code(), Some(0));
    assert!(pause.stderr().contains("Shutting down, got signal: Terminated"), "{}", pause.stderr());
}

/// Waits until the process has a SIGTERM handler (SigCgt in /proc/PID/status has bit 15).
fn wait_for_signal_handlers(program: &Program) {
    let deadline = std::time::Instant::now() + builtin_support::WAIT;
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", program.pid())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (15 - 1)) != 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no SIGTERM handler installed: {status}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn porter_serves_each_env_port() {
    let ports = free_ports(3);
    let (plain, json, tls) = (ports[0].to_string(), ports[1].to_string(), ports[2].to_string());
    let mut porter = Program::spawn_with_env(
        &["agnhost", "porter"],
        &[
            (&format!("SERVE_PORT_{plain}"), "foo"),
            (&format!("SERVE_PORT_{json}"), "bar"),
            (&format!("SERVE_TLS_PORT_{tls}"), "secret"),
            ("SERVE_SCTP_PORT_9", "x"),
        ],
    );
    porter.logged_addr(&format!("Serving SERVE_PORT_{plain} on "));
    porter.logged_addr(&format!("Serving SERVE_PORT_{json} on "));
    porter.logged_addr(&format!("Serving SERVE_TLS_PORT_{tls} on "));
    assert_eq!(curl(&format!("http://127.0.0.1:{plain}/anything"), &[]).body, "foo");
    assert_eq!(curl(&format!("http://127.0.0.1:{json}/"), &[]).body, "bar");
    // Without the image's localhost.crt, a self-signed certificate for localhost.
    assert_eq!(curl(&format!("https://127.0.0.1:{tls}/"), &["-k"]).body, "secret");
    assert!(porter.stderr().contains("SERVE_SCTP_PORT_9"), "SCTP ports are reported as not served");

    drop(porter);
    let mut porter =
        Program::spawn_with_env(&["agnhost", "porter", "--json-response"], &[(&format!("SERVE_PORT_{plain}"), "foo")]);
    porter.logged_addr(&format!("Serving SERVE_PORT_{plain} on "));
    let reply = curl(&format!("http://127.0.0.1:{plain}/"), &["-X", "POST"]);
    assert_eq!(reply.json(), serde_json::json!({"Method": "POST", "Body": "foo"}));
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[test]
fn nginx_welcome_page_404_and_405() {
    let mut nginx = Program::spawn(&["nginx", "--port", "0", "-g", "daemon off;"]);
    let addr = nginx.logged_addr("nginx serving on ");
    let page = curl(&format!("http://{addr}/"), &["-A", "test-agent"]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>Welcome to nginx!</title>"), "{page:?}");
    assert_eq!(page.header("server"), Some("nginx"));
    assert_eq!(page.header("content-type"), Some("text/html"));
    assert!(page.header("last-modified").is_some() && page.header("etag").is_some(), "{page:?}");
    assert_eq!(curl(&format!("http://{addr}/index.html"), &[]).body, page.body);

    // With -I curl prints the headers where the body would go: no page may follow them.
    let head = curl(&format!("http://{addr}/"), &["-I"]);
    assert_eq!(head.status, 200);
    assert!(!head.body.contains("<html"), "HEAD got a body: {head:?}");
    assert_eq!(head.header("content-length"), Some(page.body.len().to_string().as_str()));

    let missing = curl(&format!("http://{addr}/no/such/page"), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("<title>404 Not Found</title>"), "{missing:?}");
    assert_eq!(missing.header("server"), Some("nginx"));

    assert_eq!(curl(&format!("http://{addr}/"), &["-X", "POST"]).status, 405);

    nginx.wait_stdout("\"GET / HTTP/1.1\" 200");
    assert!(nginx.stdout().contains("\"test-agent\""), "access log: {}", nginx.stdout());
    nginx.signal("QUIT");
    assert_eq!(nginx.wait_exit().code(), Some(0));
}

#[test]
fn nginx_serves_a_root_directory_without_escaping_it() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("index.html"), "<p>mine</p>").expect("write");
    std::fs::create_dir(root.path().join("sub")).expect("mkdir");
    std::fs::write(root.path().join("sub/data.json"), "{}").expect("write");
    let root_arg = root.path().to_string_lossy().into_owned();
    let mut nginx = Program::spawn(&["nginx", "--port=0", "--root", &root_arg]);
    let addr = nginx.logged_addr("nginx serving on ");

    assert_eq!(curl(&format!("http://{addr}/"), &[]).body, "<p>mine</p>");
    let json = curl(&format!("http://{addr}/sub/data.json"), &[]);
    assert_eq!((json.body.as_str(), json.header("content-type")), ("{}", Some("application/json")));
    assert_eq!(curl(&format!("http://{addr}/sub/none"), &[]).status, 404);
    assert_eq!(curl(&format!("http://{addr}/%2e%2e/%2e%2e/etc/hostname"), &["--path-as-is"]).status, 404);
    assert_eq!(curl(&format!("http://{addr}/../../etc/hostname"), &["--path-as-is"]).status, 404);
}

#[test]
fn builtin_command_line() {
    let help = Command::new(env!("CARGO_BIN_EXE_skiff")).arg("--help").output().expect("skiff --help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("builtin"), "builtin is hidden from --help");

    let (code, _, stderr) = run_to_end(&["no-such-program"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no built-in program \"no-such-program\""), "{stderr}");

    let (code, _, stderr) = run_to_end(&["agnhost", "webhook"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not implement \"webhook\""), "{stderr}");

    let (code, stdout, _) = run_to_end(&["agnhost", "netexec", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--http-port"), "{stdout}");

    let (code, stdout, _) = run_to_end(&["nginx", "-v"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("nginx version: "), "{stdout}");
}

#[test]
fn liveness_is_healthy_at_first() {
    let mut liveness = Program::spawn(&["agnhost", "liveness", "--port=0"]);
    let addr = liveness.logged_addr("liveness serving on ");
    let healthz = curl(&format!("http://{addr}/healthz"), &[]);
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok"));
    assert!(curl(&format!("http://{addr}/started"), &[]).body.ends_with('s'));
    let redirect = curl(&format!("http://{addr}/redirect?loc=%2Fhealthz"), &[]);
    assert_eq!((redirect.status, redirect.header("location")), (302, Some("/healthz")));
    assert_eq!(curl(&format!("http://{addr}/other"), &[]).status, 404);
}

#[test]
fn entrypoint_tester_prints_the_argv_it_was_started_with() {
    let (code, stdout, _) = run_to_end(&["agnhost", "entrypoint-tester", "override", "arguments"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "[/agnhost entrypoint-tester override arguments]\n"));
    let (code, stdout, _) = run_to_end(&["agnhost", "--argv0=/agnhost-2", "entrypoint-tester"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "[/agnhost-2 entrypoint-tester]\n"));
}

#[test]
fn resolver_and_hosts_printers() {
    let (code, stdout, _) = run_to_end(&["agnhost", "etc-hosts"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, format!("{}\n", std::fs::read_to_string("/etc/hosts").expect("hosts")));
    for subcommand in ["dns-suffix", "dns-server-list"] {
        let (code, stdout, stderr) = run_to_end(&["agnhost", subcommand]);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "one comma-separated line: {stdout:?}");
    }
}

#[test]
fn port_forward_tester_checks_data_and_sends_chunks() {
    let port = free_ports(1)[0].to_string();
    let mut tester = Program::spawn_with_env(
        &["agnhost", "port-forward-tester"],
        &[
            ("BIND_ADDRESS", "127.0.0.1"),
            ("BIND_PORT", &port),
            ("EXPECTED_CLIENT_DATA", "abc"),
            ("CHUNKS", "3"),
            ("CHUNK_SIZE", "4"),
            ("CHUNK_INTERVAL", "10"),
        ],
    );
    let addr = tester.logged_addr("port-forward-tester listening on ");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    std::io::Write::write_all(&mut conn, b"abc").expect("send");
    let mut received = String::new();
    conn.read_to_string(&mut received).expect("read");
    assert_eq!(received, "x".repeat(12));
    assert_eq!(tester.wait_exit().code(), Some(0));
    let stdout = tester.stdout();
    for line in ["Accepted client connection", "Received expected client data", "Shutting down connection", "Done"] {
        assert!(stdout.contains(line), "{line:?} missing from {stdout:?}");
    }
}

#[test]
fn httpd_says_it_works() {
    let mut httpd = Program::spawn(&["httpd", "--port=0", "-DFOREGROUND"]);
    let addr = httpd.logged_addr("httpd serving on ");
    let page = curl(&format!("http://{addr}/"), &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h1>It works!</h1>"), "{page:?}");
    assert_eq!(page.header("server"), Some("Apache"));
    let missing = curl(&format!("http://{addr}/missing"), &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("<h1>Not Found</h1>"), "{missing:?}");
    httpd.signal("TERM");
    assert_eq!(httpd.wait_exit().code(), Some(0));
}

#[test]
fn http_echo_answers_its_text() {
    let mut echo = Program::spawn(&["http-echo", "-text=foo", "-listen=:0"]);
    let addr = echo.logged_addr("http-echo serving on ");
    assert_eq!(curl(&format!("http://{addr}/any"), &[]).body, "foo\n");
    let health = curl(&format!("http://{addr}/health"), &[]);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));

    let mut teapot =
        Program::spawn_with_env(&["http-echo", "-listen", ":0", "-status-code=418"], &[("ECHO_TEXT", "bar")]);
    let addr = teapot.logged_addr("http-echo serving on ");
    let reply = curl(&format!("http://{addr}/"), &[]);
    assert_eq!((reply.status, reply.body.as_str()), (418, "bar\n"));

    let (code, _, stderr) = run_to_end(&["http-echo"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Missing -text option!"), "{stderr}");
}

#[test]
fn logs_generator_writes_the_asked_number_of_klog_lines() {
    let (code, _, stderr) = run_to_end(&["agnhost", "logs-generator", "--log-lines-total", "5", "-d", "100ms"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("logs_generator.go:67] ")).collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    for (id, line) in lines.iter().enumerate() {
        assert!(line.starts_with('I'), "{line}");
        assert!(line.contains(&format!("] {id} ")) && line.contains(" /api/v1/namespaces/"), "{line}");
    }
    let (code, _, stderr) = run_to_end(&["agnhost", "logs-generator", "-t", "0", "-d", "1s"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Invalid total number of lines: 0"), "{stderr}");
}
