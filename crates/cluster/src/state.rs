//! The record of a running cluster, in /run/skiff/<name>.json: what `skiff run` needs to
//! enter it and what `skiff down` needs to remove it after a crash. /run is cleared on
//! reboot, exactly when the namespaces it describes disappear too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

const STATE_DIR: &str = "/run/skiff";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub nodes: usize,
    pub isolated: bool,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The `skiff up` process.
    pub pid: u32,
}

impl ClusterRecord {
    pub fn layout(&self) -> Layout {
        Layout { name: self.name.clone(), nodes: self.nodes, isolated: self.isolated }
    }

    pub fn path(name: &str) -> PathBuf {
        Path::new(STATE_DIR).join(format!("{name}.json"))
    }

    pub fn load(name: &str) -> Result<Option<ClusterRecord>> {
        let path = Self::path(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        let path = Self::path(&self.name);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(name: &str) {
        let _ = std::fs::remove_file(Self::path(name));
    }

    /// Whether the `skiff up` that wrote this record still runs.
    pub fn alive(&self) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else { return false };
        // A recycled pid belongs to some other program.
        cmdline.split(|b| *b == 0).any(|arg| arg == b"up")
    }
}
