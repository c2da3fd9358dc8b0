//! `skiff bench api` runs end to end on a small scale and cleans up after itself. The
//! numbers are not checked (machines are noisy); the benchmark's bookkeeping is.

use std::process::Command;

#[test]
fn bench_api_small_run_completes() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["bench", "api", "--services", "50", "--watchers", "3", "--watch-events", "5", "--cold-starts", "1"])
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .expect("running skiff bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).expect("a JSON result line");
    let v: serde_json::Value = serde_json::from_str(last).expect("valid JSON");
    assert_eq!(v["creates"]["created"], 50, "{v}");
    assert_eq!(v["watch"]["missing"], 0, "{v}");
    let left: Vec<_> = std::fs::read_dir(work.path()).expect("work dir").collect();
    assert!(left.is_empty(), "the benchmark left files behind: {left:?}");
}
