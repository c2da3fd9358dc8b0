//! What the kernel says about a process: memory from `/proc/<pid>/status`, CPU time from
//! `/proc/<pid>/stat`. Used for the server's memory, and for the CPU split between the
//! server and this benchmark client, which share the machine's cores.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ). The kernel fixes it at 100 in
/// its user-space ABI on the architectures skiff runs on (x86_64, aarch64).
const USER_HZ: u64 = 100;

/// Resident memory of a process, in KiB as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// The highest resident set size so far (VmHWM).
    pub peak_kib: u64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status(&text).with_context(|| format!("no VmRSS/VmHWM in {path}"))
}

fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// User plus system CPU time that `pid` (all its threads) has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("unexpected format of {path}"))
}

fn parse_stat_cpu(text: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may contain spaces; fields after
    // it are space-separated. utime and stime are fields 14 and 15 of the whole line.
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_secs(ticks / USER_HZ) + Duration::from_nanos((ticks % USER_HZ) * (1_000_000_000 / USER_HZ)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak() {
        let status = "Name:\tskiff\nVmPeak:\t  200000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   80000 kB\n";
        assert_eq!(parse_status(status), Some(Memory { rss_kib: 80000, peak_kib: 81234 }));
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces() {
        let stat = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 37 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_millis(2870)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(memory(me).expect("own status").rss_kib > 0);
        cpu_time(me).expect("own stat");
    }
}
