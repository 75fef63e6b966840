//! The staging sweep deletes what dead operations left and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use warden_vault::staging::sweep;

/// What a killed process leaves: an unlocked `.lock` file naming its staging directory.
fn stale(registry: &std::path::Path, tag: &str, names: &std::path::Path) {
    std::fs::create_dir_all(registry).unwrap();
    std::fs::write(
        registry.join(format!("{tag}.lock")),
        names.as_os_str().as_encoded_bytes(),
    )
    .unwrap();
}

#[test]
fn sweep_removes_stale_staging_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("staging");
    // A stale evaluation copy with a read-only file in a read-only subdirectory.
    let dir = tmp.path().join(".serve.warden-staging-abc");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/w.bin"), b"plaintext").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("sub/w.bin"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    stale(&reg, "a", &dir);
    // An entry naming something Warden never creates: unregistered, not deleted.
    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("keep"), b"x").unwrap();
    stale(&reg, "b", &precious);
    // A link planted where a staging directory was: the link goes, its target stays.
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let link = tmp.path().join(".x.warden-old-def");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    stale(&reg, "c", &link);
    // A relative path is never trusted.
    stale(&reg, "d", std::path::Path::new("warden-eval-rel"));

    let removed = sweep(&reg).unwrap();
    assert_eq!(removed, std::slice::from_ref(&dir));
    assert!(!dir.exists());
    assert!(precious.join("keep").exists());
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(target.join("keep").exists());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o700, "the sweep changed the link target's mode");
    }
    assert_eq!(std::fs::read_dir(&reg).unwrap().count(), 0);
    // Nothing left: a second sweep is a no-op, and a missing registry is fine.
    assert!(sweep(&reg).unwrap().is_empty());
    assert!(sweep(&tmp.path().join("none")).unwrap().is_empty());
}

#[test]
fn a_locked_entry_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("staging");
    let dir = tmp.path().join("warden-eval-live");
    std::fs::create_dir(&dir).unwrap();
    stale(&reg, "live", &dir);
    // Another open file description holding the lock stands for a live process.
    let f = std::fs::File::open(reg.join("live.lock")).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    assert!(sweep(&reg).unwrap().is_empty());
    assert!(dir.exists());
    drop(f);
    assert_eq!(sweep(&reg).unwrap(), std::slice::from_ref(&dir));
    assert!(!dir.exists());
}
