//! Interoperability with an independent C2SP implementation: `tlog-scales` (Python,
//! installed by `.ci/setup.d/tlog.sh`). A log written by Warden is read, its checkpoint
//! signature verified and its inclusion proofs checked by tlog-scales; a log written
//! and signed by tlog-scales is verified by `warden audit verify`, and its tlog-proof
//! receipts by `warden audit verify-receipt`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    let p = std::env::var_os("WARDEN_TEST_VENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import tlog_scales.writer, tlog_scales.reader"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{}: python with tlog-scales not found; run .ci/setup",
        p.display()
    );
    p
}

fn warden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warden"))
}

const READ_WARDEN_LOG: &str = r#"
import sys, json
from pathlib import Path
from tlog_scales.reader import TilesReader
from tlog_scales.backend import LocalBackend
from tlog_scales.signing import Vkey
from tlog_scales import tiles
root, vkey = Path(sys.argv[1]), Vkey.from_string(sys.argv[2])
r = TilesReader(LocalBackend(root))
cp = r.get_checkpoint()
cp.verify(vkey)  # raises unless the signature verifies
assert r.calculate_root_hash() == cp.root_hash, "root recomputed from tiles differs"
out = []
for i in range(cp.size):
    e = r.get_entry(i)
    if i % 97 == 0 or i == cp.size - 1:
        r.get_inclusion_proof(i, cp.size).check(tiles.leaf_hash(e), cp.root_hash)
    out.append(e.decode())
if cp.size > 10:
    r.get_consistency_proof(10, cp.size)
print(json.dumps({"size": cp.size, "entries": out}))
"#;

const WRITE_PEER_LOG: &str = r#"
import sys
from pathlib import Path
from tlog_scales.writer import TilesWriter
from tlog_scales.signing import PlainEd25519Signer
root, origin = Path(sys.argv[1]), sys.argv[2]
signer = PlainEd25519Signer(origin, bytes(range(32)))
w = TilesWriter.create(root, origin)
i = 0
for batch in (1, 300, 5, 400):
    for _ in range(batch):
        w.add_leaf(('{"peer":%d}' % i).encode())
        i += 1
    w.commit([signer])
print(signer.vkey.serialize())
"#;

#[test]
fn tlog_scales_reads_a_warden_log() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = warden()
        .args([
            "--home",
            home.to_str().unwrap(),
            "audit",
            "keygen",
            "warden.test/interop",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let lines: Vec<String> = (0..700).map(|i| format!("{{\"w\":{i}}}")).collect();
    let mut child = warden()
        .args([
            "--home",
            home.to_str().unwrap(),
            "audit",
            "append",
            "--writers",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let out = Command::new(&py)
        .args(["-c", READ_WARDEN_LOG])
        .arg(home.join("audit"))
        .arg(&vkey)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tlog-scales rejected the Warden log: {out:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 700);
    let got: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, lines);
    // A wrong key must be rejected by the peer too (the check above is not vacuous).
    let other = warden_tlog::Signer::generate("warden.test/interop").unwrap();
    let bad = Command::new(&py)
        .args(["-c", READ_WARDEN_LOG])
        .arg(home.join("audit"))
        .arg(other.verifier().to_string())
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "peer accepted a checkpoint under the wrong key"
    );
}

#[test]
fn warden_verifies_a_log_written_by_tlog_scales() {
    let py = python();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("peer-log");
    let out = Command::new(&py)
        .args(["-c", WRITE_PEER_LOG])
        .arg(&log)
        .arg("peer.example/log")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let ok = warden()
        .args(["audit", "verify", "--key", &vkey, "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("706 entries"),
        "{ok:?}"
    );
    // Entries read back by Warden are the peer's.
    let show = warden()
        .args([
            "audit", "show", "--format", "json", "--since", "705", "--key", &vkey, "--log",
        ])
        .arg(&log)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["entries"][0]["entry"]["peer"], 705);
    // A tlog-proof made by the peer verifies with Warden (entry given out of band).
    let receipt = dir.path().join("r.tlog-proof");
    let out = Command::new(&py)
        .args(["-m", "tlog_scales.cli", "gen-proof"])
        .arg(&log)
        .arg("300")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&receipt, &out.stdout).unwrap();
    let entry = dir.path().join("entry");
    std::fs::write(&entry, b"{\"peer\":300}").unwrap();
    let ok = warden()
        .args(["audit", "verify-receipt", "--key", &vkey, "--entry"])
        .arg(&entry)
        .arg(&receipt)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    std::fs::write(&entry, b"{\"peer\":301}").unwrap();
    let bad = warden()
        .args(["audit", "verify-receipt", "--key", &vkey, "--entry"])
        .arg(&entry)
        .arg(&receipt)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    // Tampering with the peer's log is caught.
    let t = log.join("tile/entries/001");
    let mut b = std::fs::read(&t).unwrap();
    b[4] ^= 1;
    std::fs::write(&t, b).unwrap();
    let bad = warden()
        .args(["audit", "verify", "--key", &vkey, "--log"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("tile/entries/001"),
        "{bad:?}"
    );
}
