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

#[test]
fn weakened_vault_policy_is_reported() {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        home.path().join("warden.toml"),
        "[vault]\nkey_provider = \"file\"\nrequire_signature = false\nscan_fail_on = \"critical\"\n",
    )
    .unwrap();
    let out = warden()
        .args(["posture", "--format", "json", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    // warnings name deliberate choices; they do not fail the posture
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("WP005"), "warn");
    assert_eq!(status("WP202"), "warn");
    assert_eq!(status("WP203"), "warn");

    // the vault refuses a single approver outright, so posture cannot even read it
    std::fs::write(
        home.path().join("warden.toml"),
        "[vault]\napprovals_required = 1\n",
    )
    .unwrap();
    let one = warden()
        .args(["posture", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&one.stderr).contains("two-person control"));

    std::fs::write(home.path().join("warden.toml"), "[vault]\nbogus = 1\n").unwrap();
    let bad = warden()
        .args(["posture", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("warden.toml"));
}
