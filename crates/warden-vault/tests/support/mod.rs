//! Shared test support: a private SoftHSM2 token per test process.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, and a test cannot set
//! an environment variable in its own process without `unsafe`. So a test that needs a
//! token calls [`softhsm`]: the first time (in the parent) it creates a token directory
//! and configuration, re-runs the same test in a child process with `SOFTHSM2_CONF` set,
//! and reports whether the child passed; in the child it returns the token to use.

#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support"
)]

use std::path::PathBuf;
use std::process::Command;

pub const PIN: &str = "4711-user";
pub const SO_PIN: &str = "0815-so";

/// The SoftHSM2 module, or a failure saying how to install it.
pub fn module() -> PathBuf {
    for p in [
        std::env::var("WARDEN_PKCS11_MODULE").unwrap_or_default(),
        "/usr/lib/softhsm/libsofthsm2.so".into(),
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so".into(),
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so".into(),
    ] {
        if !p.is_empty() && std::path::Path::new(&p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("SoftHSM2 is not installed (libsofthsm2.so not found): run .ci/setup");
}

/// Create a fresh token directory, config and token labelled `label`; returns the config path.
pub fn new_token(dir: &std::path::Path, label: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util not runnable ({e}): run .ci/setup"));
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

/// In the parent: make a token, re-run `test` in a child with `SOFTHSM2_CONF`, assert it
/// passed, return `None`. In the child: return `Some(token label)`.
pub fn softhsm(test: &str) -> Option<String> {
    if std::env::var_os("WARDEN_SOFTHSM_CHILD").is_some() {
        return Some(std::env::var("WARDEN_SOFTHSM_TOKEN").unwrap());
    }
    let _ = module();
    let dir = tempfile::tempdir().unwrap();
    let label = "warden-test";
    let conf = new_token(dir.path(), label);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env("WARDEN_SOFTHSM_CHILD", "1")
        .env("WARDEN_SOFTHSM_TOKEN", label)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run of {test} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    None
}
