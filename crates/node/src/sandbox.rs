//! Entering a pod's sandbox: its network namespace (`/run/netns/<name>`), a private mount
//! namespace with the pod's `/etc/resolv.conf`, `/etc/hosts` and service-account directory
//! bind-mounted in (what `ip netns exec` does for `/etc/netns/<name>`), and a UTS namespace
//! with the pod's hostname. Containers, `kubectl exec` sessions and exec probes all enter
//! through [`PreparedSandbox::enter`]; connections into the pod (probes, port-forward) use
//! [`connect_in_netns`].

use std::ffi::CString;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the pod's service-account files appear inside its containers.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A file or directory of the pod mounted over a path of the host filesystem.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// Everything a process needs to run "inside the pod"; serialised into each container's
/// launch file so the shim and a restarted agent see the same thing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The pod's network namespace; None for hostNetwork pods (they stay in the node's).
    pub netns: Option<PathBuf>,
    /// Hostname in a new UTS namespace; None keeps the node's (hostNetwork pods).
    pub hostname: Option<String>,
    pub binds: Vec<Bind>,
}

/// A [`SandboxSpec`] turned into what the forked child needs: an open namespace file and
/// C strings, all allocated before `fork`, so [`PreparedSandbox::enter`] only makes syscalls.
pub struct PreparedSandbox {
    netns: Option<OwnedFd>,
    hostname: Option<CString>,
    binds: Vec<(CString, CString)>,
    cwd: Option<CString>,
    /// Make stdin the controlling terminal (exec with a tty).
    controlling_tty: bool,
}

impl PreparedSandbox {
    pub fn prepare(spec: &SandboxSpec, cwd: Option<&str>, controlling_tty: bool) -> io::Result<PreparedSandbox> {
        let netns = match &spec.netns {
            Some(path) => Some(OwnedFd::from(std::fs::File::open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("opening network namespace {}: {e}", path.display()))
            })?)),
            None => None,
        };
        let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::other(e.to_string()));
        let mut binds = Vec::new();
        for bind in &spec.binds {
            binds.push((cstr(&bind.source)?, cstr(&bind.target)?));
        }
        let hostname =
            spec.hostname.as_deref().map(CString::new).transpose().map_err(|e| io::Error::other(e.to_string()))?;
        let cwd =
            cwd.filter(|c| !c.is_empty()).map(CString::new).transpose().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(PreparedSandbox { netns, hostname, binds, cwd, controlling_tty })
    }

    /// Moves the calling process into the sandbox and into a new session (so the agent can
    /// signal the container's whole process group).
    ///
    /// # Safety
    /// Meant for `CommandExt::pre_exec`: runs in the child between fork and exec, where only
    /// async-signal-safe calls are allowed; it makes raw syscalls only and allocates nothing.
    pub unsafe fn enter(&self) -> io::Result<()> {
        if let Some(fd) = &self.netns {
            check(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
        }
        let mut flags = libc::CLONE_NEWNS;
        if self.hostname.is_some() {
            flags |= libc::CLONE_NEWUTS;
        }
        check(libc::unshare(flags))?;
        // Private, not slave (as `ip netns exec` does): with slaves, every pod namespace that
        // `ip netns add` mounts under /run/netns would propagate into every container's mount
        // namespace, making pod start-up quadratic. Private also keeps our mounts from leaking
        // back into the node's namespace.
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        // Drop our copies of the node's network-namespace mounts: a private copy would keep
        // a deleted pod's namespace alive for as long as this process runs.
        libc::umount2(c"/run/netns".as_ptr(), libc::MNT_DETACH);
        if self.netns.is_some() {
            // A fresh sysfs shows the pod's interfaces in /sys/class/net (best effort, as ip netns exec).
            let sys = c"/sys";
            if libc::umount2(sys.as_ptr(), libc::MNT_DETACH) == 0 {
                libc::mount(c"sysfs".as_ptr(), sys.as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null());
            }
        }
        for (source, target) in &self.binds {
            check(libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
        }
        if let Some(name) = &self.hostname {
            check(libc::sethostname(name.as_ptr(), name.as_bytes().len()))?;
        }
        check(libc::setsid())?;
        if self.controlling_tty {
            check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
        }
        if let Some(cwd) = &self.cwd {
            check(libc::chdir(cwd.as_ptr()))?;
        }
        Ok(())
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Connects to `addr` from inside the network namespace at `netns` (the node's when None).
///
/// A namespace switch is per thread, so a fresh thread enters the namespace, creates the
/// socket there (a socket stays in the namespace it was created in) and ends.
pub async fn connect_in_netns(netns: Option<PathBuf>, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("netns-connect".into()).spawn(move || {
        let result = (|| {
            if let Some(path) = &netns {
                let ns = std::fs::File::open(path)?;
                // SAFETY: setns on this thread only; the fd is valid for the call.
                check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            }
            TcpStream::connect_timeout(&addr, timeout)
        })();
        let _ = tx.send(result);
    })?;
    rx.await.map_err(|_| io::Error::other("connect thread ended without an answer"))?
}

/// Sends `signal` to the process group led by `pid` (containers are session leaders).
pub fn signal_group(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory is touched.
    pid > 1 && unsafe { libc::kill(-pid, signal) } == 0
}

/// A pseudo-terminal pair for `kubectl exec -t`.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    pub fn open() -> io::Result<Pty> {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        // SAFETY: openpty writes two fds into the given locations; name/termios/winsize are optional.
        check(unsafe {
            libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
        })?;
        // Neither end may leak into the processes we start (they get dup'd copies on 0-2).
        for fd in [master, slave] {
            // SAFETY: F_SETFD on an fd openpty just returned; no memory is involved.
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
        }
        // SAFETY: openpty succeeded, so both are fresh fds we own.
        let (master, slave) = unsafe {
            (
                <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master),
                <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave),
            )
        };
        Ok(Pty { master, slave })
    }
}

/// Sets the terminal size of a pty master.
pub fn resize_pty(master: &impl AsRawFd, width: u16, height: u16) {
    let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which lives for the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}
