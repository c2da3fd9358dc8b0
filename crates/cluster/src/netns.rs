//! Network namespace plumbing through the `ip` tool (iproute2).
//!
//! `skiff up` makes a handful of links and routes, once; the `ip` tool states each step the
//! way a user would type it (the commands are logged at debug level, so a failing setup can
//! be replayed by hand), and its error messages are the ones users know. The per-pod
//! plumbing, where speed matters, is the agent's and does not go through here.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `ip [-n NS] ARGS…`, failing with ip's own message.
pub fn ip(netns: Option<&str>, args: &[&str]) -> Result<()> {
    let mut command = Command::new("ip");
    if let Some(ns) = netns {
        command.args(["-n", ns]);
    }
    command.args(args);
    tracing::debug!(?netns, ?args, "ip");
    let out = command.output().context("running `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        let prefix = netns.map(|ns| format!("-n {ns} ")).unwrap_or_default();
        bail!("`ip {prefix}{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Creates a named namespace with its loopback up.
pub fn add(name: &str) -> Result<()> {
    ip(None, &["netns", "add", name])?;
    ip(Some(name), &["link", "set", "lo", "up"])
}

pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes a named namespace (nothing if it does not exist).
pub fn delete(name: &str) {
    if exists(name) {
        if let Err(e) = ip(None, &["netns", "delete", name]) {
            tracing::warn!(netns = name, error = %e, "removing network namespace");
        }
    }
}

/// Named namespaces whose name starts with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return Vec::new() };
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// Sets a sysctl inside a namespace (`net.ipv4.ip_forward` …) by writing /proc/sys from a
/// process in it.
pub fn sysctl(netns: Option<&str>, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.arg("sh");
            c
        }
        None => Command::new("sh"),
    };
    command.args(["-c", &format!("echo {value} > {path}")]);
    let out = command.output().context("running sh")?;
    if !out.status.success() {
        bail!("setting {key}={value} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The inode identifying a named namespace.
fn netns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(Path::new("/run/netns").join(name)).ok().map(|m| m.ino())
}

/// Processes whose network namespace is one of `names`: what a cluster leaves running (its
/// components, the pods' supervisors and containers).
pub fn processes_in(names: &[String]) -> Vec<i32> {
    let inodes: BTreeSet<u64> = names.iter().filter_map(|n| netns_inode(n)).collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let own = std::process::id() as i32;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| inodes.contains(&m.ino())))
        .collect()
}

/// Moves the calling thread into a named namespace. Threads it starts afterwards inherit it,
/// which is how `skiff up` runs its API client inside an isolated cluster's sandbox.
pub fn enter(name: &str) -> Result<()> {
    let file = std::fs::File::open(Path::new("/run/netns").join(name))
        .with_context(|| format!("opening network namespace {name}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(())
}
