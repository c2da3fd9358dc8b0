//! Pod IP allocation from the node's podCIDR, persisted in the data directory.
//!
//! Like the CNI `host-local` plugin: one file per address in use (`<dir>/<ip>`, holding the
//! owning pod's uid) and a `last` file with the most recent address handed out. Files are
//! created with `O_EXCL`, so an address is never handed out twice, also across agent
//! restarts; the search continues after `last`, so a freed address is not reused at once
//! (a replaced pod gets a new IP).

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::cidr::Ipv4Cidr;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Cidr),
    #[error("IPAM store: {0}")]
    Io(#[from] io::Error),
}

/// The allocator of one node's pod subnet.
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Cidr,
    /// Serialises allocations in this process; the files serialise across processes.
    lock: Mutex<()>,
}

impl Ipam {
    pub fn open(dir: PathBuf, subnet: Ipv4Cidr) -> io::Result<Ipam> {
        fs::create_dir_all(&dir)?;
        Ok(Ipam { dir, subnet, lock: Mutex::new(()) })
    }

    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// The address held by `owner`, or a new one. Idempotent per owner.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ip) = self.owned_by(owner)? {
            return Ok(ip);
        }
        let all: Vec<Ipv4Addr> = self.subnet.pod_addresses().collect();
        let last = fs::read_to_string(self.dir.join("last")).ok().and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        let start = last.and_then(|l| all.iter().position(|a| *a == l)).map(|i| i + 1).unwrap_or(0);
        for offset in 0..all.len() {
            let ip = all[(start + offset) % all.len()];
            match fs::OpenOptions::new().write(true).create_new(true).open(self.dir.join(ip.to_string())) {
                Ok(mut file) => {
                    file.write_all(owner.as_bytes())?;
                    file.sync_all()?;
                    write_atomic(&self.dir.join("last"), ip.to_string().as_bytes())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IpamError::Exhausted(self.subnet))
    }

    /// Frees every address `owner` holds.
    pub fn release(&self, owner: &str) -> io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (ip, who) in self.entries()? {
            if who == owner {
                fs::remove_file(self.dir.join(ip.to_string()))?;
            }
        }
        Ok(())
    }

    /// Every address in use with its owner.
    pub fn entries(&self) -> io::Result<Vec<(Ipv4Addr, String)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            let owner = fs::read_to_string(entry.path()).unwrap_or_default();
            out.push((ip, owner.trim().to_owned()));
        }
        Ok(out)
    }

    fn owned_by(&self, owner: &str) -> io::Result<Option<Ipv4Addr>> {
        Ok(self.entries()?.into_iter().find(|(ip, who)| who == owner && self.subnet.contains(*ip)).map(|(ip, _)| ip))
    }
}

/// Writes a file so readers see either the old or the new content, never a torn one.
///
/// No fsync: these files describe processes and namespaces, which do not outlive a machine
/// crash either; only the address reservations above are synced, since handing an address
/// out twice is the one mistake a restart must never make. (Syncing every pod file made
/// pod start-up disk-bound.)
pub fn write_atomic(path: &std::path::Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_uniquely_persists_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let subnet: Ipv4Cidr = "10.244.3.0/29".parse().unwrap(); // pods: .2 .. .6
        let ipam = Ipam::open(dir.path().to_path_buf(), subnet).unwrap();
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(ipam.allocate("a").unwrap(), a, "idempotent per owner");
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b);
        // A restarted agent sees the same state.
        let again = Ipam::open(dir.path().to_path_buf(), subnet).unwrap();
        assert_eq!(again.allocate("b").unwrap(), b);
        // A freed address is not the next one handed out.
        again.release("a").unwrap();
        let c = again.allocate("c").unwrap();
        assert_ne!(c, a);
        assert_ne!(c, b);
        for owner in ["d", "e", "f"] {
            again.allocate(owner).unwrap();
        }
        assert!(matches!(again.allocate("g"), Err(IpamError::Exhausted(_))));
        let mut ips: Vec<_> = again.entries().unwrap().into_iter().map(|(ip, _)| ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 5);
    }
}
