//! Removing a cluster (`skiff up`'s own exit and `skiff down` after a crash) and entering
//! one (`skiff run`).

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::layout::Layout;
use crate::netns;
use crate::processes;
use crate::state::ClusterRecord;

/// Network namespaces need CAP_SYS_ADMIN and links CAP_NET_ADMIN: say so plainly instead of
/// failing halfway with EPERM.
pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "{what} needs root: it creates network namespaces, links, routes and nftables rules \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN). Run it with sudo."
        );
    }
    Ok(())
}

/// What exists of a cluster named like `layout`: its namespaces and, when it used the
/// machine's namespace, its bridge.
pub fn leftovers(layout: &Layout) -> Vec<String> {
    let mut found = netns::list_with_prefix(&layout.netns_prefix());
    let sandbox = format!("skiff-{}", layout.name);
    if netns::exists(&sandbox) {
        found.push(sandbox);
    }
    let host_bridge = Layout { isolated: false, ..layout.clone() }.bridge_name();
    if std::path::Path::new("/sys/class/net").join(&host_bridge).exists() {
        found.push(format!("bridge {host_bridge}"));
    }
    found
}

/// Kills every process in the cluster's namespaces, then deletes the namespaces and the
/// bridge. Deleting a namespace removes its links, routes and nftables tables with it.
pub fn remove_leftovers(layout: &Layout) {
    let sandbox = format!("skiff-{}", layout.name);
    let mut namespaces = netns::list_with_prefix(&layout.netns_prefix());
    if netns::exists(&sandbox) {
        namespaces.push(sandbox.clone());
    }
    // Pod supervisors may restart containers while we kill: repeat until none is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = netns::processes_in(&namespaces);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        processes::kill_all(&pids);
        std::thread::sleep(Duration::from_millis(50));
    }
    for ns in namespaces.iter().filter(|ns| **ns != sandbox) {
        netns::delete(ns);
    }
    netns::delete(&sandbox);
    let host_bridge = Layout { isolated: false, ..layout.clone() }.bridge_name();
    if std::path::Path::new("/sys/class/net").join(&host_bridge).exists() {
        if let Err(e) = netns::ip(None, &["link", "delete", &host_bridge]) {
            tracing::warn!(error = %e, "removing the cluster bridge");
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct DownArgs {
    /// Name of the cluster to remove.
    #[arg(long, default_value = "skiff")]
    pub name: String,
}

/// `skiff down`: stops a running `skiff up` (it cleans up after itself), then removes
/// whatever is still there.
pub fn down(args: DownArgs) -> Result<()> {
    require_root("skiff down")?;
    let layout = Layout::new(&args.name, 1, true).map_err(anyhow::Error::msg)?;
    if let Some(record) = ClusterRecord::load(&args.name)? {
        if record.alive() {
            println!("stopping skiff up (pid {})", record.pid);
            let _ = kill(Pid::from_raw(record.pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while record.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let found = leftovers(&layout);
    if found.is_empty() {
        println!("nothing left of cluster {:?}", args.name);
    } else {
        println!("removing {}", found.join(", "));
        remove_leftovers(&layout);
    }
    ClusterRecord::remove(&args.name);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Name of the cluster to run in.
    #[arg(long, default_value = "skiff")]
    pub name: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// `skiff run`: runs a command where the cluster's node network is (the sandbox when
/// isolated) with KUBECONFIG set. Replaces this process, so exit codes and signals pass
/// through unchanged.
pub fn run(args: RunArgs) -> Result<()> {
    let record = ClusterRecord::load(&args.name)?.with_context(|| {
        format!("no cluster named {:?} is running (start one with `skiff up --name {}`)", args.name, args.name)
    })?;
    let (program, rest) = args.command.split_first().context("no command given")?;
    let mut command = match record.layout().sandbox_netns() {
        Some(ns) => {
            require_root("skiff run for an isolated cluster")?;
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", &ns, program]);
            c
        }
        None => std::process::Command::new(program),
    };
    command.args(rest).env("KUBECONFIG", &record.kubeconfig);
    let err = command.exec();
    Err(err).with_context(|| format!("running {program}"))
}
