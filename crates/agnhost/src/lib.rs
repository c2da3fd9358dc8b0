//! Built-in programs for well-known container images: `skiff builtin <program> [args…]`.
//!
//! Pods in skiff are processes, not images (DESIGN §3). For images whose program skiff has
//! built in, the node agent runs `skiff builtin …` inside the pod's namespaces instead:
//!
//! - `agnhost <subcommand> …`: the Kubernetes e2e test server, answering like upstream's
//!   `registry.k8s.io/e2e-test-images/agnhost`: `netexec`, `serve-hostname`, `pause`,
//!   `connect`, `porter`, `liveness`, `logs-generator`, `port-forward-tester`, `entrypoint-tester`,
//!   `dns-suffix`, `dns-server-list`, `etc-hosts`.
//! - `nginx [--port N] …`: a static web server on port 80 answering like nginx's welcome page.
//! - `httpd [--port N] …`: the same for Apache httpd images ("It works!").
//! - `http-echo -text=T [-listen=:5678]`: `hashicorp/http-echo`, answering T.
//! - `pause`: the `registry.k8s.io/pause` program: sleeps until SIGTERM or SIGINT, exits 0.
//!
//! [`builtin_for_image`] and [`Builtin::argv`] map a container's image and command/args to the
//! argv after `skiff builtin` (see [`image`] for the rules).

/// `print!` that never panics: a pod's program must keep running when whoever reads its output
/// has gone away (e.g. while the node agent restarts), so write errors are ignored.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `println!` that never panics (see `out!`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `out!`).
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod flags;
pub mod http;
pub mod image;
pub mod net;

mod connect;
mod dns_info;
mod http_echo;
mod httpd;
mod liveness;
mod logs_generator;
mod netexec;
mod nginx;
mod pause;
mod port_forward_tester;
mod porter;
mod serve_hostname;
mod static_site;
mod tls;

use std::io::Write;
use std::net::IpAddr;

use anyhow::bail;

pub use image::{builtin_for_image, Builtin};

use crate::net::BindHost;

/// `skiff builtin [--bind-host IP] <program> [args…]`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Listen on this address only, instead of every address (tests use 127.0.0.1).
    #[arg(long)]
    pub bind_host: Option<IpAddr>,
    /// The program (`agnhost`, `nginx`, `httpd`, `http-echo`, `pause`) and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]")]
    pub argv: Vec<String>,
}

/// agnhost subcommands skiff has built in.
const AGNHOST_SUBCOMMANDS: &[&str] = &[
    "connect",
    "dns-server-list",
    "dns-suffix",
    "entrypoint-tester",
    "etc-hosts",
    "liveness",
    "logs-generator",
    "netexec",
    "pause",
    "port-forward-tester",
    "porter",
    "serve-hostname",
];

/// The path the agnhost image runs its program as; see [`Builtin::argv`] for `--argv0`.
const AGNHOST_PATH: &str = "/agnhost";

/// Runs a built-in program to completion and exits the process with its exit code (the
/// programs' exit codes are part of their behaviour, e.g. `connect` or `/exit?code=3`).
/// Returns only with an error (bad arguments, a port in use), which `skiff` reports and exits 1.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let code = run_program(&args.argv, BindHost(args.bind_host)).await?;
    let _ = std::io::stdout().flush();
    // Exit here rather than return: a `/shell` command may still run on a blocking thread,
    // which dropping the runtime would wait for.
    std::process::exit(code)
}

/// Runs the program `argv[0]` with the rest of `argv`; returns its exit code.
pub async fn run_program(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    let Some((program, rest)) = argv.split_first() else { bail!("no program given") };
    match program.as_str() {
        "agnhost" => run_agnhost(rest, bind).await,
        "nginx" => nginx::run(rest, bind).await,
        "httpd" => httpd::run(rest, bind).await,
        "http-echo" => http_echo::run(rest, bind).await,
        "pause" => pause::run_pause_image(rest).await,
        other => bail!("skiff has no built-in program {other:?} (built in: agnhost, nginx, httpd, http-echo, pause)"),
    }
}

async fn run_agnhost(argv: &[String], bind: BindHost) -> anyhow::Result<i32> {
    // Flags before the subcommand: skiff's `--argv0` (the path the container named agnhost by),
    // and klog's logging flags, accepted and ignored as upstream.
    let mut argv0 = AGNHOST_PATH.to_owned();
    let mut rest = argv;
    while let Some((first, tail)) = rest.split_first() {
        if let Some(value) = first.strip_prefix("--argv0=") {
            argv0 = value.to_owned();
        } else if !first.starts_with('-') {
            break;
        }
        rest = tail;
    }
    let Some((subcommand, rest)) = rest.split_first() else {
        out!("{}", agnhost_usage());
        return Ok(0);
    };
    match subcommand.as_str() {
        "netexec" => netexec::run(rest, bind).await,
        "serve-hostname" => serve_hostname::run(rest, bind).await,
        "pause" => pause::run_agnhost_pause(rest).await,
        "connect" => connect::run(rest).await,
        "porter" => porter::run(rest, bind).await,
        "liveness" => liveness::run(rest, bind).await,
        "logs-generator" => logs_generator::run(rest).await,
        "port-forward-tester" => port_forward_tester::run().await,
        "dns-suffix" => dns_info::run(dns_info::Info::Suffixes),
        "dns-server-list" => dns_info::run(dns_info::Info::Servers),
        "etc-hosts" => dns_info::run(dns_info::Info::Hosts),
        "entrypoint-tester" => {
            // Upstream prints its whole os.Args, Go-style: `[/agnhost entrypoint-tester a b]`.
            let all: Vec<&str> =
                [argv0.as_str(), subcommand].into_iter().chain(rest.iter().map(String::as_str)).collect();
            outln!("[{}]", all.join(" "));
            Ok(0)
        }
        "help" => {
            out!("{}", agnhost_usage());
            Ok(0)
        }
        other => bail!(
            "skiff's built-in agnhost does not implement {other:?} (built in: {})",
            AGNHOST_SUBCOMMANDS.join(", ")
        ),
    }
}

fn agnhost_usage() -> String {
    format!(
        "agnhost (built into skiff)\n\nUsage:\n  agnhost [command]\n\nAvailable Commands:\n  {}\n",
        AGNHOST_SUBCOMMANDS.join("\n  ")
    )
}
