//! Release lifecycle paths the CLI end-to-end test does not walk: rollback between
//! versions, export quorum, monitor policies (quarantine, rollback, configuration
//! change), signed imports, and policy validation. Real store, real audit log, real keys.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_store::{DeploymentStatus, SqliteStore};
use warden_tlog::{Log, LogOptions, PosixStorage, Signer};
use warden_vault::admin::AdminKey;
use warden_vault::key::FileProvider;
use warden_vault::policy::OnTamper;
use warden_vault::{Error, ImportRequest, NoProgress, Policy, Vault, VaultParts};

struct T {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    vault: Vault,
    bob: AdminKey,
    carol: AdminKey,
}

/// A tiny, scanner-clean safetensors model whose tensor bytes are `fill`.
fn model(dir: &Path, fill: u8) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[fill; 8]);
    std::fs::write(dir.join("model.safetensors"), &b).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"fill\": {fill}}}")).unwrap();
    dir.to_path_buf()
}

fn setup(policy: Policy) -> T {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let keys = FileProvider::new(&root.join("keys")).unwrap();
    use warden_vault::key::KeyProvider;
    keys.create("default").unwrap();
    let log = Log::open(
        Arc::new(PosixStorage::new(root.join("audit"))),
        Signer::generate("test-log").unwrap(),
        "test-log",
        LogOptions::default(),
    )
    .unwrap();
    std::fs::write(root.join("warden.toml"), "# config v1\n").unwrap();
    let vault = Vault::new(VaultParts {
        root: root.join("vault"),
        admin_keys: root.join("keys/admins"),
        admin_token: None,
        staging: root.join("staging"),
        config_file: Some(root.join("warden.toml")),
        store: Arc::new(SqliteStore::open(&root.join("state.db")).unwrap()),
        keys: Arc::new(keys),
        audit: log.into(),
        policy,
    })
    .unwrap();
    for a in ["alice", "bob", "carol"] {
        vault.add_admin(a, "setup").unwrap();
    }
    let bob = vault.admin_key("bob").unwrap();
    let carol = vault.admin_key("carol").unwrap();
    T {
        _tmp: tmp,
        root,
        vault,
        bob,
        carol,
    }
}

impl T {
    fn import(&self, version: &str, fill: u8) {
        let dir = model(&self.root.join(format!("src-{version}")), fill);
        self.vault
            .import(
                &ImportRequest {
                    dir: &dir,
                    name: "m",
                    version,
                    importer: "alice",
                    verified: None,
                },
                &NoProgress,
            )
            .unwrap();
        let e = self
            .vault
            .evaluate("m", version, "echo '{\"ok\": 1}'", "alice", &NoProgress)
            .unwrap();
        assert!(e.evaluation.passed, "{:?}", e.failures);
    }

    fn approve(&self, version: &str, action: &str) {
        for k in [&self.bob, &self.carol] {
            self.vault.approve("m", version, action, k, None).unwrap();
        }
    }

    fn deploy(&self, version: &str) -> PathBuf {
        self.approve(version, "deploy");
        let dir = self.root.join("serve");
        self.vault
            .deploy("m", version, &dir, "ops", &NoProgress)
            .unwrap();
        dir
    }
}

fn fill_of(dir: &Path) -> u8 {
    let b = std::fs::read(dir.join("model.safetensors")).unwrap();
    *b.last().unwrap()
}

fn writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn rollback_returns_to_the_previous_release() {
    let t = setup(Policy::default());
    t.import("1", 1);
    t.import("2", 2);
    let dir = t.deploy("1");
    assert_eq!(fill_of(&dir), 1);
    t.deploy("2");
    assert_eq!(fill_of(&dir), 2);
    let d = t
        .vault
        .rollback("m", "ops", "bad answers", &NoProgress)
        .unwrap();
    assert_eq!(d.version, "1");
    assert_eq!(fill_of(&dir), 1);
    let ds = t.vault.store().deployments(None).unwrap();
    let statuses: Vec<_> = ds.iter().map(|d| (d.version.as_str(), d.status)).collect();
    assert_eq!(
        statuses,
        [
            ("1", DeploymentStatus::Superseded),
            ("2", DeploymentStatus::RolledBack),
            ("1", DeploymentStatus::Active)
        ]
    );
    // Nothing earlier than 1: a second rollback is refused and changes nothing.
    let err = t
        .vault
        .rollback("m", "ops", "again", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no earlier release of this model was deployed"),
        "{err}"
    );
    assert_eq!(t.vault.store().deployments(None).unwrap(), ds);
}

#[test]
fn export_needs_its_own_quorum() {
    let t = setup(Policy::default());
    t.import("1", 7);
    t.approve("1", "deploy");
    let out = t.root.join("export");
    let err = t
        .vault
        .export("m", "1", &out, "ops", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("export needs approvals from 2"), "{err}");
    assert!(!out.exists());
    t.approve("1", "export");
    t.vault.export("m", "1", &out, "ops", &NoProgress).unwrap();
    assert_eq!(fill_of(&out), 7);
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        b"{\"fill\": 7}"
    );
    // The export approvals were used up.
    let err = t
        .vault
        .export("m", "1", &t.root.join("export2"), "ops", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 valid"), "{err}");
}

#[test]
fn monitor_quarantines_when_told_to() {
    let t = setup(Policy {
        on_tamper: OnTamper::Quarantine,
        ..Policy::default()
    });
    t.import("1", 1);
    let dir = t.deploy("1");
    assert!(t.vault.monitor_once("monitor").unwrap().is_empty());
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let inc = t.vault.monitor_once("monitor").unwrap();
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0].action, "quarantine");
    assert_eq!(inc[0].problems, ["config.json: missing"]);
    assert!(!dir.exists(), "the tampered directory was not moved aside");
    let ds = t.vault.store().deployments(None).unwrap();
    assert_eq!(ds[0].status, DeploymentStatus::Quarantined);
    assert_eq!(t.vault.store().alerts(0).unwrap().len(), 1);
    // Nothing active any more: the next pass is quiet.
    assert!(t.vault.monitor_once("monitor").unwrap().is_empty());
}

#[test]
fn monitor_rolls_back_to_the_previous_release_when_told_to() {
    let t = setup(Policy {
        on_tamper: OnTamper::Rollback,
        ..Policy::default()
    });
    t.import("1", 1);
    t.import("2", 2);
    t.deploy("1");
    let dir = t.deploy("2");
    let f = dir.join("model.safetensors");
    writable(&f);
    std::fs::write(&f, b"not the model").unwrap();
    let inc = t.vault.monitor_once("monitor").unwrap();
    assert_eq!(inc[0].action, "rollback");
    assert_eq!(inc[0].replacement.as_ref().unwrap().version, "1");
    assert_eq!(fill_of(&dir), 1);
    assert!(t.vault.monitor_once("monitor").unwrap().is_empty());
}

#[test]
fn monitor_alerts_on_a_configuration_change_and_extra_files() {
    let t = setup(Policy::default());
    t.import("1", 1);
    let dir = t.deploy("1");
    std::fs::write(t.root.join("warden.toml"), "# config v2\n").unwrap();
    let inc = t.vault.monitor_once("monitor").unwrap();
    assert_eq!(inc[0].action, "alert");
    assert_eq!(
        inc[0].problems,
        ["configuration (warden.toml): changed since deployment"]
    );
    std::fs::write(t.root.join("warden.toml"), "# config v1\n").unwrap();
    // An extra file in the deployment is tampering: restored from the vault.
    std::fs::write(dir.join("payload.py"), "import os").unwrap();
    let inc = t.vault.monitor_once("monitor").unwrap();
    assert_eq!(inc[0].action, "restore");
    assert_eq!(inc[0].problems, ["payload.py: unexpected file"]);
    assert!(!dir.join("payload.py").exists());
}

#[test]
fn signed_imports() {
    let t = setup(Policy {
        require_signature: true,
        ..Policy::default()
    });
    let dir = model(&t.root.join("src"), 3);
    let req = |verified| ImportRequest {
        dir: &dir,
        name: "m",
        version: "1",
        importer: "alice",
        verified,
    };
    let err = t.vault.import(&req(None), &NoProgress).unwrap_err();
    assert!(
        err.to_string()
            .contains("policy requires a verified signature"),
        "{err}"
    );
    assert!(t.vault.releases().unwrap().is_empty());

    // Sign the directory with an ECDSA P-256 key and verify it the way the CLI does.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pk8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    use base64::Engine;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pk8.as_ref())
    );
    let key = warden_sign::SigningKey::from_pem(pem.as_bytes(), Path::new("key.pem")).unwrap();
    let manifest = warden_sign::hash_model(&dir, &warden_sign::HashOptions::default()).unwrap();
    let bundle = warden_sign::sign(&manifest, warden_sign::Signer::Key(&key)).unwrap();
    let verified = warden_sign::verify(
        &dir,
        &bundle,
        warden_sign::Trust::Key(key.public_key()),
        &warden_sign::VerifyOptions::default(),
    )
    .unwrap();

    // Content changed after verification: refused.
    let f = dir.join("config.json");
    let orig = std::fs::read(&f).unwrap();
    std::fs::write(&f, b"{\"fill\": 4}").unwrap();
    let err = t
        .vault
        .import(&req(Some(&verified)), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("content changed after the signature was verified"),
        "{err}"
    );
    std::fs::write(&f, orig).unwrap();

    let out = t.vault.import(&req(Some(&verified)), &NoProgress).unwrap();
    assert_eq!(
        out.manifest.signed_digest.as_deref(),
        Some(verified.digest_hex().as_str())
    );
}

#[test]
fn policy_cannot_weaken_two_person_control() {
    let p = Policy {
        approvals_required: 1,
        ..Policy::default()
    };
    let err = p.validate().unwrap_err().to_string();
    assert!(err.contains("two-person control needs at least 2"), "{err}");
    assert!(matches!(
        Policy {
            segment_size: 4096,
            ..Policy::default()
        }
        .validate(),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn stolen_key_file_of_another_admin_is_refused() {
    let t = setup(Policy::default());
    t.import("1", 1);
    // bob's key presented under carol's name.
    let bob_as_carol = AdminKey::load("carol", &t.root.join("keys/admins/bob.key")).unwrap();
    let err = t
        .vault
        .approve("m", "1", "deploy", &bob_as_carol, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not this administrator's key"), "{err}");
    assert!(t.vault.store().approvals("m", "1").unwrap().is_empty());
}

#[test]
fn refused_deploy_without_evaluation_gate_changes_nothing() {
    let t = setup(Policy {
        require_evaluation: false,
        ..Policy::default()
    });
    let dir = model(&t.root.join("src"), 9);
    t.vault
        .import(
            &ImportRequest {
                dir: &dir,
                name: "m",
                version: "1",
                importer: "alice",
                verified: None,
            },
            &NoProgress,
        )
        .unwrap();
    let err = t
        .vault
        .deploy("m", "1", &t.root.join("serve"), "ops", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 valid"), "{err}");
    let r = t.vault.store().release("m", "1").unwrap().unwrap();
    assert_eq!(r.state, warden_store::ReleaseState::Imported);
    // With the quorum it deploys straight from `imported`.
    t.approve("1", "deploy");
    let serve = t.root.join("serve");
    t.vault
        .deploy("m", "1", &serve, "ops", &NoProgress)
        .unwrap();
    assert_eq!(fill_of(&serve), 9);
    // A symbolic link planted in the deployment is reported and the copy restored.
    std::os::unix::fs::symlink("/etc/passwd", serve.join("tokenizer.json")).unwrap();
    let inc = t.vault.monitor_once("monitor").unwrap();
    assert_eq!(inc[0].action, "restore");
    assert!(
        inc[0].problems[0].contains("symbolic links"),
        "{:?}",
        inc[0].problems
    );
    assert!(std::fs::symlink_metadata(serve.join("tokenizer.json")).is_err());
}

/// Everything a refused call must leave alone.
fn snapshot(t: &T) -> String {
    let s = t.vault.store();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        s.releases(None).unwrap(),
        s.approvals("m", "1").unwrap(),
        s.deployments(None).unwrap(),
        s.evaluations("m", "1").unwrap()
    )
}

#[test]
fn states_run_imported_evaluated_approved_deployed_retired() {
    use warden_store::ReleaseState::*;
    let t = setup(Policy::default());
    let state = || t.vault.store().release("m", "1").unwrap().unwrap().state;
    let dir = model(&t.root.join("src-1"), 5);
    t.vault
        .import(
            &ImportRequest {
                dir: &dir,
                name: "m",
                version: "1",
                importer: "alice",
                verified: None,
            },
            &NoProgress,
        )
        .unwrap();
    assert_eq!(state(), Imported);
    t.vault
        .evaluate("m", "1", "echo '{\"ok\": 1}'", "alice", &NoProgress)
        .unwrap();
    assert_eq!(state(), Evaluated);
    t.vault.approve("m", "1", "deploy", &t.bob, None).unwrap();
    assert_eq!(state(), Evaluated, "one approval is not a quorum");
    // Export approvals never make a release `approved`.
    t.vault.approve("m", "1", "export", &t.bob, None).unwrap();
    t.vault.approve("m", "1", "export", &t.carol, None).unwrap();
    assert_eq!(state(), Evaluated);
    t.vault.approve("m", "1", "deploy", &t.carol, None).unwrap();
    assert_eq!(state(), Approved);
    let st = t.vault.status("m", "1").unwrap();
    assert_eq!(st.deploy_approvals.len(), 2);
    assert_eq!(st.quorum, 2);
    // An approved release is past evaluation.
    let before = snapshot(&t);
    let err = t
        .vault
        .evaluate("m", "1", "echo '{}'", "alice", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot evaluate a release that is approved"),
        "{err}"
    );
    assert_eq!(snapshot(&t), before);

    let serve = t.root.join("serve");
    t.vault
        .deploy("m", "1", &serve, "ops", &NoProgress)
        .unwrap();
    assert_eq!(state(), Deployed);

    // Retire: refused while deployed, by a non-admin key, or without a reason — each
    // changing nothing.
    let before = snapshot(&t);
    let err = t
        .vault
        .retire("m", "1", &t.bob, "end of life", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("it is deployed in"), "{err}");
    assert!(err.contains("--include-deployments"), "{err}");
    let err = t
        .vault
        .retire("m", "1", &t.bob, "  ", true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a retirement needs a reason"), "{err}");
    let bob_as_carol = AdminKey::load("carol", &t.root.join("keys/admins/bob.key")).unwrap();
    let err = t
        .vault
        .retire("m", "1", &bob_as_carol, "end of life", true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not this administrator's key"), "{err}");
    assert_eq!(snapshot(&t), before);
    assert!(serve.exists());

    // A new deploy approval outstanding at retirement is voided.
    t.vault.approve("m", "1", "deploy", &t.bob, None).unwrap();
    let r = t
        .vault
        .retire("m", "1", &t.carol, "superseded by 2\nadmin=mallory", true)
        .unwrap();
    assert_eq!(r.removed, [serve.display().to_string()]);
    assert!(
        !serve.exists(),
        "the deployed copy of a retired release was left"
    );
    assert_eq!(state(), Retired);
    let st = t.vault.status("m", "1").unwrap();
    assert!(st.retirement_verified);
    assert!(st.deploy_approvals.is_empty());
    assert_eq!(st.deployments[0].status, DeploymentStatus::Removed);
    let rec = st.release.retired.unwrap();
    assert_eq!(rec.by, "carol");
    // The signed statement escapes the reason, so it cannot forge another line.
    let stmt = warden_vault::admin::retire_statement(
        "m",
        "1",
        &st.release.manifest_digest,
        &rec.reason,
        "carol",
        rec.at,
    );
    assert!(
        String::from_utf8(stmt)
            .unwrap()
            .contains("reason=superseded by 2\\nadmin=mallory\nadmin=carol\n")
    );

    // Retired is final: no approval, deploy, evaluation or second retirement, and nothing
    // changes; export and shred still work.
    let before = snapshot(&t);
    let err = t
        .vault
        .approve("m", "1", "deploy", &t.bob, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("m@1: refused: retired on "), "{err}");
    assert!(err.contains("by carol (superseded by 2"), "{err}");
    let err = t
        .vault
        .deploy("m", "1", &serve, "ops", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("retired on "), "{err}");
    let err = t
        .vault
        .evaluate("m", "1", "echo '{}'", "alice", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot evaluate a release that is retired"),
        "{err}"
    );
    let err = t
        .vault
        .retire("m", "1", &t.bob, "again", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("retired on "), "{err}");
    assert_eq!(snapshot(&t), before);
    assert!(!serve.exists());
    // The monitor has nothing to restore: the deployment is `removed`, not active.
    assert!(t.vault.monitor_once("monitor").unwrap().is_empty());
    assert!(!serve.exists());
    let out = t.root.join("export");
    t.vault.export("m", "1", &out, "ops", &NoProgress).unwrap();
    assert_eq!(fill_of(&out), 5);
}

#[test]
fn a_retired_release_is_never_a_rollback_target() {
    let t = setup(Policy::default());
    t.import("1", 1);
    t.import("2", 2);
    t.deploy("1");
    let dir = t.deploy("2");
    t.vault
        .retire("m", "1", &t.bob, "known bad", false)
        .unwrap();
    let before = snapshot(&t);
    let err = t
        .vault
        .rollback("m", "ops", "try", &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no earlier release of this model was deployed"),
        "{err}"
    );
    assert_eq!(snapshot(&t), before);
    assert_eq!(fill_of(&dir), 2);
}

#[test]
fn a_targeted_pass_checks_only_the_named_deployments() {
    let t = setup(Policy::default());
    t.import("1", 1);
    t.approve("1", "deploy");
    let a = t.root.join("serve-a");
    t.vault.deploy("m", "1", &a, "ops", &NoProgress).unwrap();
    t.approve("1", "deploy");
    let b = t.root.join("serve-b");
    t.vault.deploy("m", "1", &b, "ops", &NoProgress).unwrap();
    for d in [&a, &b] {
        std::fs::write(d.join("payload.py"), "import os").unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    // An event under serve-a: only serve-a is checked (and restored).
    let inc = t
        .vault
        .monitor_pass("monitor", &mut seen, Some(&[a.join("payload.py")]))
        .unwrap();
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0].deployment.dir, a.display().to_string());
    assert!(!a.join("payload.py").exists());
    assert!(b.join("payload.py").exists());
    // A full pass finds the other one.
    let inc = t.vault.monitor_pass("monitor", &mut seen, None).unwrap();
    assert_eq!(inc.len(), 1);
    assert_eq!(inc[0].deployment.dir, b.display().to_string());
    assert!(!b.join("payload.py").exists());
}
