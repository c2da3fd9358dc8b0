//! The Python `kubernetes` client (pip package `kubernetes`) against `skiff server`: runs
//! tests/python/test_client.py, which exits non-zero on the first failed check.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

#[test]
fn python_client_create_list_watch_patch_delete() {
    let s = TestServer::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&s.kubeconfig)
        .arg("python-client")
        .env_remove("KUBECONFIG")
        .output()
        .expect("running python3 (the CI installs it with the `kubernetes` package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        script.display(),
        out.status,
        s.log()
    );
    assert!(stdout.contains("all python client checks passed"), "{stdout}");
}
