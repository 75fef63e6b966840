//! Scan every file under `tests/corpus/` and snapshot its findings (one snapshot per
//! file, so new corpus files just add snapshots), then hold the corpus to its promise:
//! every file under `malicious/` has at least one finding at or above medium, every
//! file under `benign/` has none and scans completely.
//!
//! The directory decides: `tests/corpus/<malicious|benign>/<area>/<file>`. Files under an
//! area named after an allowlist profile (`sklearn`) are scanned with that profile on,
//! as a user would scan them.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failure should stop the test"
)]

use std::path::{Path, PathBuf};
use warden_scan::{ScanOptions, Severity, allowlist};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // The generator and its index are not corpus samples.
            if name != "make_corpus.py" && name != "INDEX.md" {
                out.push(p);
            }
        }
    }
}

#[test]
fn corpus_snapshots_and_verdicts() {
    let root = corpus_root();
    let mut files = Vec::new();
    collect(&root, &mut files);
    assert!(files.len() > 40, "corpus too small: {} files", files.len());
    let mut problems = Vec::new();
    let mut malicious = 0;
    let mut benign = 0;
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap();
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let (class, area) = (parts[0].as_str(), parts[1].as_str());
        let profiles: Vec<String> = allowlist::PROFILES
            .iter()
            .filter(|(name, _)| *name == area)
            .map(|(name, _)| (*name).to_owned())
            .collect();
        let options = ScanOptions {
            profiles,
            ..ScanOptions::default()
        };
        // Scan by a path relative to the corpus so snapshots do not depend on checkouts.
        let report = {
            let mut f = std::fs::File::open(file).unwrap();
            let len = f.metadata().unwrap().len();
            let name = rel.to_string_lossy().replace('\\', "/");
            warden_scan::scan_reader(&mut f, len, &name, &options)
        };
        let lines: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{} {} {}: {}", f.rule, f.severity, f.location, f.message))
            .chain(
                report
                    .errors
                    .iter()
                    .map(|e| format!("incomplete {}: {}", e.location, e.message)),
            )
            .collect();
        let snap_name = rel
            .to_string_lossy()
            .replace(['/', '\\'], "__")
            .replace('.', "_");
        insta::assert_json_snapshot!(snap_name, lines);

        let worst = report.max_severity();
        match class {
            "malicious" => {
                malicious += 1;
                if worst < Some(Severity::Medium) {
                    problems.push(format!("MISS {}: {lines:?}", rel.display()));
                }
            }
            "benign" => {
                benign += 1;
                if worst >= Some(Severity::Medium) || !report.complete() {
                    problems.push(format!("FALSE POSITIVE {}: {lines:?}", rel.display()));
                }
            }
            other => problems.push(format!(
                "unknown corpus class {other:?} for {}",
                rel.display()
            )),
        }
    }
    assert!(
        malicious > 30 && benign > 10,
        "{malicious} malicious, {benign} benign"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn sklearn_files_need_the_profile() {
    // Without the profile, estimators in joblib files are outside the allowlist.
    let file = corpus_root().join("benign/sklearn/pipeline.joblib");
    let report = warden_scan::scan_paths(&[file], &ScanOptions::default());
    assert!(report.max_severity() >= Some(Severity::Medium));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("sklearn.pipeline.Pipeline"))
    );
}
