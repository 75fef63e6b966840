//! `warden policy check` and `warden policy test` (the binary): validation against the
//! schema with exit codes, and explained decisions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

mod support;

use std::process::Command;
use support::*;

#[test]
fn policy_check_and_test_explain_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.cedar");
    std::fs::write(&good, POLICIES).unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action, resource) when { principal.salary > 5 };",
    )
    .unwrap();
    let run = |args: &[&str]| Command::new(warden_bin()).args(args).output().unwrap();
    let out = run(&["policy", "check", "--policy", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 policies validate"));
    let out = run(&["policy", "check", "--policy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.cedar") && err.contains("salary"), "{err}");

    let req = |action: &str, classification: i64, mfa: bool| {
        let p = dir
            .path()
            .join(format!("req-{action}-{classification}-{mfa}.json"));
        std::fs::write(
            &p,
            serde_json::json!({
                "principal": {"id": "bob", "roles": ["user"], "team": "blue", "clearance": 3},
                "action": action,
                "resource": {"model": "m", "classification": classification, "release": "r1"},
                "context": {"source_ip": "10.0.0.7", "mfa": mfa, "auth": "key"}
            })
            .to_string(),
        )
        .unwrap();
        p
    };
    let out = run(&[
        "policy",
        "test",
        req("chat", 1, false).to_str().unwrap(),
        "--policy",
        good.to_str().unwrap(),
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(
        s.contains("decision: ALLOW") && s.contains("users-generate"),
        "{s}"
    );
    let out = run(&[
        "policy",
        "test",
        req("embeddings", 1, false).to_str().unwrap(),
        "--policy",
        good.to_str().unwrap(),
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(
        s.contains("decision: DENY") && s.contains("default deny"),
        "{s}"
    );
    // The forbid wins over the permit for classification 3 without MFA, and says so.
    let out = run(&[
        "policy",
        "test",
        req("chat", 3, false).to_str().unwrap(),
        "--policy",
        good.to_str().unwrap(),
    ]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("decision: DENY") && s.contains("no-secret-models-without-mfa"),
        "{s}"
    );
    let out = run(&[
        "policy",
        "test",
        req("chat", 3, true).to_str().unwrap(),
        "--policy",
        good.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("decision: ALLOW"));
}

#[test]
fn the_cli_keeps_token_identities_in_their_own_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        Command::new(warden_bin())
            .arg("--home")
            .arg(&home)
            .args(args)
            .output()
            .unwrap()
    };
    // No API key (nor directory identity) in the token namespace.
    let out = run(&["keys", "create", "jwt:carol", "--role", "user"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reserved for OIDC token subjects"), "{err}");
    assert!(out.stdout.is_empty());
    // `policy test` names token principals as the gateway does.
    let good = dir.path().join("good.cedar");
    std::fs::write(&good, POLICIES).unwrap();
    let req = |id: &str, auth: &str| {
        let p = dir.path().join(format!("req-{auth}.json"));
        std::fs::write(
            &p,
            serde_json::json!({
                "principal": {"id": id, "roles": ["user"], "team": "blue", "clearance": 1},
                "action": "chat",
                "resource": {"model": "m", "classification": 1, "release": "r1"},
                "context": {"source_ip": "10.0.0.7", "mfa": false, "auth": auth}
            })
            .to_string(),
        )
        .unwrap();
        p
    };
    let test = |p: std::path::PathBuf| {
        run(&[
            "policy",
            "test",
            p.to_str().unwrap(),
            "--policy",
            good.to_str().unwrap(),
        ])
    };
    let out = test(req("carol", "jwt"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("named jwt:<sub>"), "{err}");
    let out = test(req("jwt:carol", "key"));
    assert_eq!(out.status.code(), Some(2));
    // The gateway writes the prefix in lower case only: JWT:carol is a name it never makes.
    let out = test(req("JWT:carol", "jwt"));
    assert_eq!(out.status.code(), Some(2));
    let out = test(req("jwt:carol", "jwt"));
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("decision: ALLOW"), "{s}");
}
