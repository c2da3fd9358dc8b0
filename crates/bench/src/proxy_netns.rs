//! Throwaway network namespaces for `skiff bench proxy`: created with `ip netns add`,
//! deleted on drop, entered by one thread at a time with setns(2).
//!
//! The proxy benchmarks never touch the machine's own namespace: every ruleset, address,
//! route and server lives in a namespace named `skbench-<tag>-<pid>`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// A network namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `skbench-<tag>-<pid>` (replacing a leftover of the same name) with `lo` up.
    pub fn new(tag: &str) -> Result<Netns> {
        let name = format!("skbench-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread into the namespace (its sockets and children live there).
    pub fn enter(&self) -> Result<()> {
        enter(&self.name)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        run("ip", &["netns", "exec", &self.name, "sysctl", "-qw", &format!("{key}={value}")])
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread inside this namespace and returns its result; threads `f`
    /// starts (a tokio runtime's workers, say) are born inside the namespace too.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            enter(&name)?;
            f()
        });
        handle.join().map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
    }

    /// Like [`Netns::run_in`], but returns at once; join the handle for `f`'s result.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            enter(&name)?;
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Connects `a` and `b` with a veth pair named `a_if` (in `a`) and `b_if` (in `b`), both
/// up, with the given addresses (`a.b.c.d/len`).
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) -> Result<()> {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name])?;
    a.ip(&["addr", "add", a_addr, "dev", a_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["addr", "add", b_addr, "dev", b_if])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Moves the calling thread into namespace `name`.
fn enter(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns(2) on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
