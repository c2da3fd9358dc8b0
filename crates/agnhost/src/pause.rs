//! The two pause programs. Both sleep until they are told to stop; they differ in how they exit,
//! which shows in a container's terminated state:
//!
//! - `skiff builtin pause` is `registry.k8s.io/pause` (a pod's sandbox container upstream):
//!   exits 0 on SIGTERM or SIGINT; `-v` prints a version line.
//! - `agnhost pause` prints `Paused`, then exits 1 on SIGINT and 2 on SIGTERM, as upstream.

use std::io::Write;

use crate::net::{Signals, Stop};

/// `registry.k8s.io/pause`. Arguments other than `-v` are ignored, as the real program does.
pub async fn run_pause_image(argv: &[String]) -> anyhow::Result<i32> {
    if argv.iter().any(|a| a == "-v") {
        outln!("pause (built into skiff)");
        return Ok(0);
    }
    let mut signals = Signals::install()?;
    let stop = signals.next().await;
    errln!("Shutting down, got signal: {}", if stop == Stop::Terminate { "Terminated" } else { "Interrupt" });
    Ok(0)
}

/// `agnhost pause`.
pub async fn run_agnhost_pause(argv: &[String]) -> anyhow::Result<i32> {
    if let Some(extra) = argv.iter().find(|a| !a.starts_with('-')) {
        anyhow::bail!("accepts at most 0 arg(s), received 1 ({extra:?})");
    }
    let mut signals = Signals::install()?;
    outln!("Paused");
    let _ = std::io::stdout().flush();
    Ok(match signals.next().await {
        Stop::Interrupt => 1,
        Stop::Terminate => 2,
    })
}
