//! Behaviour of the SQLite store: schema, persistence, and the lifecycle rules it enforces.

use warden_store::*;

fn release(name: &str, version: &str) -> Release {
    Release {
        name: name.into(),
        version: version.into(),
        state: ReleaseState::Imported,
        manifest_digest: "ab".repeat(32),
        manifest: "{}".into(),
        kek_id: "file:test".into(),
        data_key_id: "dk-1".into(),
        wrapped_key: vec![1, 2, 3],
        importer: "alice".into(),
        total_bytes: 42,
        created_at: 1000,
        shredded_by: None,
        shredded_at: None,
        retired: None,
    }
}

fn admin(name: &str) -> Admin {
    Admin {
        name: name.into(),
        algorithm: "ed25519".into(),
        public_key: vec![7; 32],
        key_ref: format!("keys/{name}.key"),
        created_at: 5,
    }
}

fn approval(adm: &str) -> Approval {
    Approval {
        id: 0,
        name: "m".into(),
        version: "1".into(),
        admin: adm.into(),
        action: "deploy".into(),
        manifest_digest: "ab".repeat(32),
        signature: vec![9; 64],
        created_at: 10,
        expires_at: 1000,
        used_at: None,
    }
}

fn deployment(dir: &str, version: &str) -> Deployment {
    Deployment {
        id: 0,
        name: "m".into(),
        version: version.into(),
        dir: dir.into(),
        status: DeploymentStatus::Active,
        by: "alice".into(),
        at: 20,
        config_digest: "cd".repeat(32),
    }
}

#[test]
fn schema_wal_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), 3);
        s.insert_admin(&admin("bob")).unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.admin("bob").unwrap().unwrap(), admin("bob"));
    // WAL journal is in use: the -wal file exists while a connection is open.
    assert!(dir.path().join("state.db-wal").exists());
}

#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        // Pretend a newer Warden migrated this file.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("schema version 99 is newer"), "{err}");
}

#[test]
fn identities_and_api_keys() {
    let s = SqliteStore::open_in_memory().unwrap();
    let mut attrs = Attributes {
        roles: vec!["analyst".into()],
        team: Some("blue".into()),
        clearance: Some("secret".into()),
        ..Default::default()
    };
    attrs.extra.insert("region".into(), serde_json::json!("eu"));
    let id = Identity {
        id: "alice".into(),
        kind: IdentityKind::User,
        attributes: attrs,
        created_at: 1,
    };
    s.put_identity(&id).unwrap();
    assert_eq!(s.identity("alice").unwrap().unwrap(), id);
    assert!(s.identity("nobody").unwrap().is_none());

    let key = ApiKey {
        key_id: "wk_1".into(),
        identity: "alice".into(),
        secret_hash: vec![0xaa; 32],
        created_at: 2,
        expires_at: Some(100),
        revoked_at: None,
    };
    s.insert_api_key(&key).unwrap();
    let dup = s.insert_api_key(&key).unwrap_err();
    assert!(matches!(dup, Error::Conflict(_)), "{dup}");
    // Foreign keys are on: a key for an unknown identity is refused.
    let mut orphan = key.clone();
    orphan.key_id = "wk_2".into();
    orphan.identity = "ghost".into();
    assert!(matches!(
        s.insert_api_key(&orphan).unwrap_err(),
        Error::Conflict(_)
    ));

    s.revoke_api_key("wk_1", 50).unwrap();
    s.revoke_api_key("wk_1", 60).unwrap();
    assert_eq!(s.api_key("wk_1").unwrap().unwrap().revoked_at, Some(50));
    assert_eq!(s.api_keys(Some("alice")).unwrap().len(), 1);
    assert!(matches!(
        s.revoke_api_key("nope", 1).unwrap_err(),
        Error::NotFound(_)
    ));
}

#[test]
fn blocks_and_lockdown() {
    let s = SqliteStore::open_in_memory().unwrap();
    assert!(s.lockdown().unwrap().is_none());
    let b = NewBlock {
        identity: "mallory".into(),
        reason: "scraping".into(),
        blocked_by: "ops".into(),
        blocked_at: 3,
    };
    s.insert_block(&b).unwrap();
    s.insert_block(&b).unwrap();
    assert_eq!(s.active_blocks().unwrap().len(), 2);
    assert_eq!(s.lift_blocks("mallory", "ops", 9).unwrap(), 2);
    assert!(s.active_blocks().unwrap().is_empty());

    for (active, at) in [(true, 1), (false, 2), (true, 3)] {
        s.set_lockdown(&Lockdown {
            active,
            reason: "drill".into(),
            set_by: "ops".into(),
            set_at: at,
        })
        .unwrap();
    }
    let l = s.lockdown().unwrap().unwrap();
    assert!(l.active);
    assert_eq!(l.set_at, 3);
}

#[test]
fn release_lifecycle_rules() {
    let s = SqliteStore::open_in_memory().unwrap();
    s.insert_release(&release("m", "1")).unwrap();
    assert!(matches!(
        s.insert_release(&release("m", "1")).unwrap_err(),
        Error::Conflict(_)
    ));
    // Compare-and-set: wrong current state is refused and nothing changes.
    let e = s
        .set_release_state("m", "1", &[ReleaseState::Evaluated], ReleaseState::Retired)
        .unwrap_err();
    assert!(
        e.to_string().contains("is imported, expected evaluated"),
        "{e}"
    );
    assert_eq!(
        s.release("m", "1").unwrap().unwrap().state,
        ReleaseState::Imported
    );

    let ev = Evaluation {
        id: 0,
        name: "m".into(),
        version: "1".into(),
        command: "true".into(),
        metrics: r#"{"accuracy":0.9}"#.into(),
        passed: true,
        detail: "ok".into(),
        by: "alice".into(),
        at: 5,
    };
    s.record_evaluation(&ev).unwrap();
    assert_eq!(
        s.release("m", "1").unwrap().unwrap().state,
        ReleaseState::Evaluated
    );
    assert_eq!(s.evaluations("m", "1").unwrap().len(), 1);

    s.mark_shredded("m", "1", "carol", 77).unwrap();
    let r = s.release("m", "1").unwrap().unwrap();
    assert_eq!(r.state, ReleaseState::Shredded);
    assert!(r.wrapped_key.is_empty());
    assert_eq!(r.shredded_by.as_deref(), Some("carol"));
    assert!(s.mark_shredded("m", "1", "carol", 78).is_err());
}

#[test]
fn approvals_are_unique_and_single_use() {
    let s = SqliteStore::open_in_memory().unwrap();
    s.insert_admin(&admin("bob")).unwrap();
    s.insert_admin(&admin("carol")).unwrap();
    s.insert_release(&release("m", "1")).unwrap();
    s.insert_release(&release("m", "2")).unwrap();
    s.set_release_state("m", "1", &[ReleaseState::Imported], ReleaseState::Evaluated)
        .unwrap();

    let a1 = s.insert_approval(&approval("bob")).unwrap();
    let dup = s.insert_approval(&approval("bob")).unwrap_err();
    assert!(
        dup.to_string()
            .contains("already has an unused deploy approval")
    );
    let a2 = s.insert_approval(&approval("carol")).unwrap();
    // Unknown admin: foreign key refuses.
    assert!(s.insert_approval(&approval("eve")).is_err());

    let id = s
        .record_deployment(&deployment("/srv/m", "1"), &[a1, a2])
        .unwrap();
    assert!(
        s.approvals("m", "1")
            .unwrap()
            .iter()
            .all(|a| a.used_at == Some(20))
    );
    assert_eq!(
        s.release("m", "1").unwrap().unwrap().state,
        ReleaseState::Deployed
    );

    // Used approvals cannot be used again, and the failed attempt changes nothing.
    let before = s.deployments(None).unwrap();
    let err = s
        .record_deployment(&deployment("/srv/m", "1"), &[a1])
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    assert_eq!(s.deployments(None).unwrap(), before);

    // A release that is not evaluated cannot be deployed.
    let err = s
        .record_deployment(&deployment("/srv/m", "2"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("not deployable"), "{err}");

    // After use, the same admin may approve again.
    s.insert_approval(&approval("bob")).unwrap();

    // A second deployment to the same dir supersedes the first.
    s.set_release_state("m", "2", &[ReleaseState::Imported], ReleaseState::Evaluated)
        .unwrap();
    s.record_deployment(&deployment("/srv/m", "2"), &[])
        .unwrap();
    let ds = s.deployments(Some("/srv/m")).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds[0].id, id);
    assert_eq!(ds[0].status, DeploymentStatus::Superseded);
    assert_eq!(ds[1].status, DeploymentStatus::Active);
    s.set_deployment_status(ds[1].id, DeploymentStatus::Quarantined)
        .unwrap();
    assert_eq!(
        s.deployments(Some("/srv/m")).unwrap()[1].status,
        DeploymentStatus::Quarantined
    );

    s.consume_approvals(&[], 1).unwrap();
    // delete_release removes an unacknowledged import with its dependents.
    s.delete_release("m", "2").unwrap();
    assert!(s.release("m", "2").unwrap().is_none());
}

#[test]
fn alerts_in_order() {
    let s = SqliteStore::open_in_memory().unwrap();
    for i in 0..3 {
        s.insert_alert(&Alert {
            id: 0,
            at: i,
            severity: "critical".into(),
            source: "monitor".into(),
            subject: "m@1".into(),
            message: format!("n{i}"),
        })
        .unwrap();
    }
    let all = s.alerts(0).unwrap();
    assert_eq!(all.len(), 3);
    let later = s.alerts(all[0].id).unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later[0].message, "n1");
}

#[test]
fn store_is_object_safe_and_shareable() {
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open_in_memory().unwrap());
    let s2 = s.clone();
    std::thread::spawn(move || s2.insert_admin(&admin("zed")).unwrap())
        .join()
        .unwrap();
    assert!(s.admin("zed").unwrap().is_some());
}

#[test]
fn retire_is_one_transaction() {
    let s = SqliteStore::open_in_memory().unwrap();
    s.insert_admin(&admin("bob")).unwrap();
    s.insert_admin(&admin("carol")).unwrap();
    s.insert_release(&release("m", "1")).unwrap();
    s.set_release_state("m", "1", &[ReleaseState::Imported], ReleaseState::Approved)
        .unwrap();
    let a1 = s.insert_approval(&approval("bob")).unwrap();
    let a2 = s.insert_approval(&approval("carol")).unwrap();
    s.record_deployment(&deployment("/srv/m", "1"), &[a1])
        .unwrap();
    let ret = Retirement {
        by: "bob".into(),
        at: 50,
        reason: "superseded".into(),
        signature: vec![1; 64],
    };
    // Deployed: refused unless the deployments go too, and nothing changes.
    let before = (
        s.release("m", "1").unwrap(),
        s.deployments(None).unwrap(),
        s.approvals("m", "1").unwrap(),
    );
    let err = s.retire_release("m", "1", &ret, false).unwrap_err();
    assert!(err.to_string().contains("is deployed in /srv/m"), "{err}");
    assert_eq!(
        (
            s.release("m", "1").unwrap(),
            s.deployments(None).unwrap(),
            s.approvals("m", "1").unwrap()
        ),
        before
    );
    let removed = s.retire_release("m", "1", &ret, true).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].status, DeploymentStatus::Removed);
    let r = s.release("m", "1").unwrap().unwrap();
    assert_eq!(r.state, ReleaseState::Retired);
    assert_eq!(r.retired, Some(ret.clone()));
    assert_eq!(
        s.deployments(None).unwrap()[0].status,
        DeploymentStatus::Removed
    );
    // The unused approval is void, so it can never count for a deploy.
    let carol = s
        .approvals("m", "1")
        .unwrap()
        .into_iter()
        .find(|a| a.id == a2)
        .unwrap();
    assert_eq!(carol.used_at, Some(50));
    // A retired release is not deployable and cannot be retired twice.
    let err = s
        .record_deployment(&deployment("/srv/m2", "1"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("not deployable"), "{err}");
    let err = s.retire_release("m", "1", &ret, true).unwrap_err();
    assert!(err.to_string().contains("already retired"), "{err}");
    // Shredding a retired release keeps the retirement record.
    s.mark_shredded("m", "1", "carol", 60).unwrap();
    assert_eq!(s.release("m", "1").unwrap().unwrap().retired, Some(ret));
}
