//! `warden scan` end to end: exit codes, the three report formats, and failing closed.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failure should stop the test"
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../warden-scan/tests/corpus")
        .join(rel)
}

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn malicious_file_exits_1_and_names_the_call() {
    let f = corpus("malicious/pickle/os_system_reduce.pkl");
    let out = warden(&["scan", path(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("WS102"), "{text}");
    assert!(text.contains("calls os.system"), "{text}");
    assert!(text.contains("FAIL"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colours must be off outside a terminal"
    );
}

#[test]
fn benign_file_exits_0() {
    let f = corpus("benign/torch/state_dict.pt");
    let out = warden(&["scan", path(&f)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
}

#[test]
fn fail_on_threshold_is_respected() {
    // The only finding here is low (object array needing allow_pickle).
    let f = corpus("benign/numpy/object_array_clean.npy");
    assert_eq!(warden(&["scan", path(&f)]).status.code(), Some(0));
    assert_eq!(
        warden(&["scan", "--fail-on", "low", path(&f)])
            .status
            .code(),
        Some(1)
    );
    let bad = warden(&["scan", "--fail-on", "severe", path(&f)]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn profile_turns_on_sklearn() {
    let f = corpus("benign/sklearn/pipeline.joblib");
    assert_eq!(warden(&["scan", path(&f)]).status.code(), Some(1));
    assert_eq!(
        warden(&["scan", "--profile", "sklearn", path(&f)])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        warden(&["scan", "--profile", "nonsense", path(&f)])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn json_report_is_one_document() {
    let f = corpus("malicious/torch/bad_crc.pt");
    let out = warden(&["scan", "--format", "json", path(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "fail");
    assert_eq!(v["complete"], true);
    let findings = v["findings"].as_array().unwrap();
    let crit = findings
        .iter()
        .find(|f| f["severity"] == "critical")
        .unwrap();
    assert_eq!(crit["rule"], "WS102");
    assert_eq!(crit["location"]["members"][0], "archive/data.pkl");
    assert!(crit["location"]["offset"].as_u64().is_some());
    assert!(findings.iter().any(|f| f["rule"] == "WS208"));
}

#[test]
fn sarif_has_rules_results_and_locations() {
    let f = corpus("malicious/torch/reduce_in_data_pkl.pt");
    let out = warden(&["scan", "--format", "sarif", path(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .all(|r| r["id"].is_string() && r["shortDescription"]["text"].is_string())
    );
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        let loc = &r["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
        assert!(
            uri.ends_with("reduce_in_data_pkl.pt#archive/data.pkl"),
            "{uri}"
        );
        assert!(loc["region"]["byteOffset"].as_u64().is_some());
    }
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
}

#[test]
fn unreadable_and_unknown_inputs_fail_closed() {
    let out = warden(&["scan", "/definitely/not/here.pt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: /definitely/not/here.pt: "), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("weights.bin");
    std::fs::write(&blob, [0u8, 1, 2, 3, 0xff, 0xfe, 0, 0, 9, 9, 9]).unwrap();
    let out = warden(&["scan", path(&blob)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unrecognised binary content"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("INCOMPLETE"), "{text}");
}

#[test]
fn directories_are_walked_and_symlinks_out_of_tree_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(
        corpus("malicious/pickle/pip_main.pkl"),
        sub.join("pytorch_model.bin"),
    )
    .unwrap();
    std::fs::write(sub.join("config.json"), "{\"model_type\": \"x\"}").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("secret"), sub.join("link")).unwrap();
    let out = warden(&["scan", "--format", "json", path(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"WS102"), "{rules:?}");
    #[cfg(unix)]
    assert!(rules.contains(&"WS903"), "{rules:?}");
}
