//! The data planes. Each translates the model ([`crate::model`]) into one kernel mechanism
//! and nothing else; the sync loop ([`crate::sync`]) decides when and what to sync.
//!
//! The trait is shaped after the most demanding backend, nftables with incremental
//! transactions: a sync names the Services whose desired state changed since the last
//! successful sync (or asks for a full rewrite), and the backend writes the difference
//! as one atomic transaction, keeping what it committed in memory so it never has to read
//! the kernel's tables back.

pub mod iptables;
pub mod nftables;
mod relay;
pub mod userspace;

use std::collections::HashMap;

use skiff_core::service_view::ServiceKey;

use crate::model::ServiceState;

/// One sync request.
pub struct Update<'a> {
    /// Rewrite everything (startup, after an error): `changed` is then ignored.
    pub full: bool,
    /// The whole desired state, by Service.
    pub desired: &'a HashMap<ServiceKey, ServiceState>,
    /// Services whose entry in `desired` changed (or disappeared) since the last sync.
    pub changed: &'a [ServiceKey],
}

/// A proxy mode's kernel (or socket) programming.
pub trait Dataplane: Send {
    /// The mode name `/proxyMode` reports.
    fn mode(&self) -> &'static str;

    /// Makes the data plane match `update`. After an error the caller's next call is a
    /// full sync.
    fn sync(&mut self, update: &Update<'_>) -> anyhow::Result<()>;
}

/// Proxy mode, as `--mode` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Nftables,
    Iptables,
    Userspace,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Nftables => "nftables",
            Mode::Iptables => "iptables",
            Mode::Userspace => "userspace",
        }
    }
}

/// Removes every mode's kernel state except `keep`'s (all of them with `None`).
/// Missing state is not an error.
pub fn cleanup_except(keep: Option<Mode>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    if keep != Some(Mode::Nftables) {
        if let Err(e) = nftables::cleanup() {
            errors.push(format!("nftables: {e:#}"));
        }
    }
    if keep != Some(Mode::Iptables) {
        if let Err(e) = iptables::cleanup() {
            errors.push(format!("iptables: {e:#}"));
        }
    }
    if keep != Some(Mode::Userspace) {
        if let Err(e) = userspace::cleanup() {
            errors.push(format!("userspace: {e:#}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("cleanup failed: {}", errors.join("; "))
    }
}

/// Runs `program` with `input` on stdin; fails with its stderr.
pub(crate) fn run_with_stdin(program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Interns Service keys as small numbers, so per-element ownership costs 4 bytes.
#[derive(Default)]
pub(crate) struct KeyIds {
    ids: HashMap<ServiceKey, u32>,
    next: u32,
}

impl KeyIds {
    pub fn id(&mut self, key: &ServiceKey) -> u32 {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        self.next += 1;
        self.ids.insert(key.clone(), self.next);
        self.next
    }

    pub fn forget(&mut self, key: &ServiceKey) {
        self.ids.remove(key);
    }
}
