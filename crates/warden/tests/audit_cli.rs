//! `warden audit` end to end: tampering is caught with a message naming the bad object,
//! and a writer killed with SIGKILL at random moments never loses an acknowledged entry
//! nor leaves a log that fails verification.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    vkey: String,
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = warden()
        .args([
            "--home",
            home.to_str().unwrap(),
            "audit",
            "keygen",
            "warden.test/audit",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    Home {
        _dir: dir,
        home,
        vkey,
    }
}

fn append(h: &Home, log: &Path, lines: &[String]) -> Vec<u64> {
    let mut child = warden()
        .args([
            "--home",
            h.home.to_str().unwrap(),
            "audit",
            "append",
            "--log",
        ])
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body = lines.join("\n") + "\n";
    let t = std::thread::spawn(move || stdin.write_all(body.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    t.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn verify(h: &Home, log: &Path, previous: Option<&Path>) -> Output {
    let mut c = warden();
    c.args(["audit", "verify", "--key", &h.vkey, "--log"])
        .arg(log);
    if let Some(p) = previous {
        c.arg("--previous").arg(p);
    }
    c.output().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn entries(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{\"tag\":\"{tag}\",\"i\":{i}}}"))
        .collect()
}

/// Run verify on a tampered copy and expect exit 1 with all `want` fragments on stderr.
fn expect_tampered(h: &Home, log: &Path, case: &str, tamper: impl FnOnce(&Path), want: &[&str]) {
    let copy = log.parent().unwrap().join(format!("case-{case}"));
    copy_dir(log, &copy);
    tamper(&copy);
    let out = verify(h, &copy, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{case}: {out:?}");
    for w in want {
        assert!(err.contains(w), "{case}: expected {w:?} in {err:?}");
    }
}

fn flip_byte(p: &Path, at: usize) {
    let mut b = std::fs::read(p).unwrap();
    b[at] ^= 0x01;
    std::fs::write(p, b).unwrap();
}

#[test]
fn verify_names_the_first_bad_object() {
    let h = home();
    let log = h.home.join("audit");
    let idx = append(&h, &log, &entries(1000, "t"));
    assert_eq!(idx.len(), 1000);
    let ok = verify(&h, &log, None);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1000 entries"));

    // An entry altered inside a full bundle (byte 5 is inside entry 256's JSON).
    expect_tampered(
        &h,
        &log,
        "entry",
        |d| flip_byte(&d.join("tile/entries/001"), 5),
        &["tile/entries/001", "entry 256 was altered"],
    );
    // An entry altered in the partial bundle at the edge (entries 768..1000).
    expect_tampered(
        &h,
        &log,
        "edge-entry",
        |d| flip_byte(&d.join("tile/entries/003.p/232"), 5),
        &["tile/entries/003.p/232", "entry 768 was altered"],
    );
    // A hash in a full level-0 tile.
    expect_tampered(
        &h,
        &log,
        "tile",
        |d| flip_byte(&d.join("tile/0/002"), 32 * 7 + 3),
        &["tile/0/002", "hash 7", "entry 519", "was altered"],
    );
    // A hash in the level-1 partial tile.
    expect_tampered(
        &h,
        &log,
        "tile-1",
        |d| flip_byte(&d.join("tile/1/000.p/3"), 40),
        &["tile/1/000.p/3", "hash 1", "was altered"],
    );
    // An entry altered together with its level-0 tile: the tile above catches it.
    expect_tampered(
        &h,
        &log,
        "entry-and-tile",
        |d| {
            let bundle = d.join("tile/entries/000");
            let mut b = std::fs::read(&bundle).unwrap();
            b[5] ^= 0x01;
            std::fs::write(&bundle, &b).unwrap();
            // Recompute the leaf hash of entry 0 into tile/0/000.
            let len = u16::from_be_bytes([b[0], b[1]]) as usize;
            let mut leaf = vec![0u8];
            leaf.extend_from_slice(&b[2..2 + len]);
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
            let tile = d.join("tile/0/000");
            let mut t = std::fs::read(&tile).unwrap();
            t[..32].copy_from_slice(hash.as_ref());
            std::fs::write(&tile, t).unwrap();
        },
        &["tile/0/000", "does not hash to hash 0 of tile/1/000.p/3"],
    );
    // A tile removed.
    expect_tampered(
        &h,
        &log,
        "missing",
        |d| std::fs::remove_file(d.join("tile/0/001")).unwrap(),
        &["tile/0/001", "missing"],
    );
    // The checkpoint's body altered (size).
    expect_tampered(
        &h,
        &log,
        "checkpoint",
        |d| {
            let p = d.join("checkpoint");
            let s = std::fs::read_to_string(&p)
                .unwrap()
                .replacen("\n1000\n", "\n999\n", 1);
            std::fs::write(&p, s).unwrap();
        },
        &[
            "checkpoint",
            "signature by warden.test/audit does not verify",
        ],
    );
    // The signature bytes altered.
    expect_tampered(
        &h,
        &log,
        "signature",
        |d| {
            let p = d.join("checkpoint");
            let s = std::fs::read_to_string(&p).unwrap();
            let at = s.rfind(' ').unwrap() + 10;
            let mut b = s.into_bytes();
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
            std::fs::write(&p, b).unwrap();
        },
        &[
            "checkpoint",
            "signature by warden.test/audit does not verify",
        ],
    );
    // The checkpoint replaced by one signed with another key.
    expect_tampered(
        &h,
        &log,
        "foreign-key",
        |d| {
            let p = d.join("checkpoint");
            let s = std::fs::read_to_string(&p).unwrap();
            let (body, _) = s.split_once("\n\n").unwrap();
            let other = warden_tlog::Signer::generate("warden.test/audit").unwrap();
            let note = other.sign(&format!("{body}\n"));
            std::fs::write(&p, note.to_bytes()).unwrap();
        },
        &["checkpoint", "no signature by the trusted key"],
    );

    // Truncation: an older copy verified against a newer checkpoint.
    let old = h.home.join("old-log");
    copy_dir(&log, &old);
    append(&h, &log, &entries(10, "more"));
    let newer_cp = h.home.join("newer.cp");
    std::fs::copy(log.join("checkpoint"), &newer_cp).unwrap();
    let out = verify(&h, &old, Some(&newer_cp));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the log was truncated"),
        "{out:?}"
    );
    // Fork: a log with the same key but different history is not consistent.
    let fork = h.home.join("fork");
    copy_dir(&old, &fork);
    append(&h, &fork, &entries(10, "fork"));
    let out = verify(&h, &fork, Some(&newer_cp));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not consistent with the previous checkpoint"),
        "{out:?}"
    );
    // And the honest extension is consistent.
    let old_cp = h.home.join("old.cp");
    std::fs::copy(old.join("checkpoint"), &old_cp).unwrap();
    let out = verify(&h, &log, Some(&old_cp));
    assert!(out.status.success(), "{out:?}");

    // Receipts: prove, verify; a receipt for the wrong entry fails.
    let out = warden()
        .args(["audit", "prove", "--key", &h.vkey, "--log"])
        .arg(&log)
        .arg("777")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let receipt = h.home.join("r.tlog-proof");
    std::fs::write(&receipt, &out.stdout).unwrap();
    let ok = warden()
        .args(["audit", "verify-receipt", "--key", &h.vkey])
        .arg(&receipt)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let wrong = h.home.join("wrong-entry");
    std::fs::write(&wrong, b"{\"tag\":\"t\",\"i\":778}").unwrap();
    let bad = warden()
        .args(["audit", "verify-receipt", "--key", &h.vkey, "--entry"])
        .arg(&wrong)
        .arg(&receipt)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("proof does not verify"));
}

#[test]
fn show_prints_text_and_json() {
    let h = home();
    let log = h.home.join("audit");
    append(&h, &log, &entries(300, "s"));
    let out = warden()
        .args([
            "--home",
            h.home.to_str().unwrap(),
            "audit",
            "show",
            "--since",
            "298",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 300);
    let e = v["entries"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["index"], 298);
    assert_eq!(e[1]["entry"]["i"], 299);
    let text = warden()
        .args([
            "--home",
            h.home.to_str().unwrap(),
            "audit",
            "show",
            "--since",
            "299",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("299  {\"tag\":\"s\",\"i\":299}"),
        "{text:?}"
    );
}

/// Kill a writer with SIGKILL at random moments, 50 times; after each kill the log as
/// left on disk verifies and is consistent with the previous one, and at the end every
/// acknowledged index holds the entry that was acknowledged (each entry exactly once).
#[test]
fn sigkill_never_loses_an_acknowledged_entry() {
    let h = home();
    let log = h.home.join("audit");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut acked: HashSet<u64> = HashSet::new();
    let mut submitted: HashSet<String> = HashSet::new();
    let prev_cp = h.home.join("prev.cp");
    let mut kills_mid_stream = 0;
    for round in 0..50 {
        let mut child = warden()
            .args([
                "--home",
                h.home.to_str().unwrap(),
                "audit",
                "append",
                "--writers",
                "8",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let lines = entries(4000, &format!("r{round}"));
        // Normalised the way `show --format json` re-serialises them.
        submitted.extend(lines.iter().map(|l| {
            serde_json::to_string(&serde_json::from_str::<serde_json::Value>(l).unwrap()).unwrap()
        }));
        let feeder = std::thread::spawn(move || {
            for l in lines {
                if writeln!(stdin, "{l}").is_err() {
                    return;
                }
            }
            // Keep stdin open so the child is still running when it is killed.
            std::thread::sleep(Duration::from_secs(30));
        });
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(20 + next() % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let got = reader.join().unwrap();
        drop(feeder);
        if !got.is_empty() && got.len() < 4000 {
            kills_mid_stream += 1;
        }
        acked.extend(got);
        // The log as the crash left it verifies, and is consistent with the last one.
        let out = verify(&h, &log, prev_cp.exists().then_some(prev_cp.as_path()));
        assert!(out.status.success(), "round {round}: {out:?}");
        std::fs::copy(log.join("checkpoint"), &prev_cp).unwrap();
    }
    assert!(
        kills_mid_stream >= 10,
        "only {kills_mid_stream} kills landed mid-stream"
    );
    // Every acknowledged index is present and holds one of our entries; no entry twice.
    let out = warden()
        .args([
            "--home",
            h.home.to_str().unwrap(),
            "audit",
            "show",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = v["size"].as_u64().unwrap();
    let mut by_index: HashMap<u64, String> = HashMap::new();
    let mut seen = HashSet::new();
    for e in v["entries"].as_array().unwrap() {
        let s = serde_json::to_string(&e["entry"]).unwrap();
        assert!(submitted.contains(&s), "unknown entry {s}");
        assert!(seen.insert(s.clone()), "entry twice: {s}");
        by_index.insert(e["index"].as_u64().unwrap(), s);
    }
    assert!(!acked.is_empty());
    eprintln!(
        "{} acknowledged entries over 50 SIGKILLs ({kills_mid_stream} mid-stream), final size {size}",
        acked.len()
    );
    for i in &acked {
        assert!(*i < size, "acknowledged index {i} lost (log size {size})");
        assert!(by_index.contains_key(i));
    }
}
