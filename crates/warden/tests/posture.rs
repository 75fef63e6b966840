//! `warden posture` reads the home and reports weakened settings with a failing exit code.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

#[test]
fn loose_key_file_fails_posture() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let keys = home.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("audit.key");
    std::fs::write(&key, "secret").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let ok = warden()
        .args(["posture", "--format", "json", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    let wp003 = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "WP003")
        .unwrap();
    assert_eq!(wp003["status"], "pass");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bad = warden()
        .args(["posture", "--format", "json", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let wp003 = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "WP003")
        .unwrap();
    assert_eq!(wp003["status"], "fail");
    assert!(wp003["detail"].as_str().unwrap().contains("audit.key"));
}

#[test]
fn world_readable_home_fails_posture() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = warden()
        .args(["posture", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL WP002"), "{text}");
}
