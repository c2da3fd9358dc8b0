//! The agent's data directory:
//!
//! ```text
//! <data-dir>/ipam/<ip>                      owner pod uid (see ipam)
//! <data-dir>/pods/<uid>/pod.json            PodRecord: namespace/name, IP, netns, start time
//! <data-dir>/pods/<uid>/etc/{resolv.conf,hosts}
//! <data-dir>/pods/<uid>/serviceaccount/{token,ca.crt,namespace}
//! <data-dir>/pods/<uid>/containers/<name>/<n>/{launch.json,pid,log,exit}   (see instance)
//! ```
//!
//! A pod directory exists from the moment the agent accepts the pod until it is gone from
//! the API and torn down; on start the agent re-adopts every pod directory it finds.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipam::write_atomic;

/// What the agent must remember about a pod across restarts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub host_network: bool,
    pub ip: Option<Ipv4Addr>,
    /// Network namespace name (None for hostNetwork pods).
    pub netns: Option<String>,
    pub host_veth: Option<String>,
    /// Set once the network namespace is fully configured.
    pub sandbox_ready: bool,
    pub start_time: String,
    /// The pod finished (Succeeded/Failed): its network namespace is gone and its IP free
    /// again, as kubelet stops a finished pod's sandbox. Its directory (logs) stays until
    /// the pod is deleted.
    #[serde(default)]
    pub network_released: bool,
}

/// `<data-dir>/pods/<uid>`.
#[derive(Clone, Debug)]
pub struct PodDir(pub PathBuf);

impl PodDir {
    pub fn new(data_dir: &Path, uid: &str) -> PodDir {
        PodDir(data_dir.join("pods").join(uid))
    }

    pub fn record_path(&self) -> PathBuf {
        self.0.join("pod.json")
    }

    pub fn etc(&self) -> PathBuf {
        self.0.join("etc")
    }

    pub fn service_account(&self) -> PathBuf {
        self.0.join("serviceaccount")
    }

    pub fn container(&self, name: &str) -> PathBuf {
        self.0.join("containers").join(name)
    }

    pub fn read_record(&self) -> Option<PodRecord> {
        serde_json::from_slice(&fs::read(self.record_path()).ok()?).ok()
    }

    pub fn write_record(&self, record: &PodRecord) -> io::Result<()> {
        fs::create_dir_all(&self.0)?;
        write_atomic(&self.record_path(), &serde_json::to_vec_pretty(record).map_err(io::Error::other)?)
    }
}

/// Every pod directory in the data dir with its record (uid → record).
pub fn existing_pods(data_dir: &Path) -> Vec<(String, Option<PodRecord>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(data_dir.join("pods")).into_iter().flatten().flatten() {
        let Some(uid) = entry.file_name().to_str().map(str::to_owned) else { continue };
        out.push((uid.clone(), PodDir::new(data_dir, &uid).read_record()));
    }
    out
}
