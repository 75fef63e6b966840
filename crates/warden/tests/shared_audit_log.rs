//! The audit log has several writers: `warden serve` keeps it open for its whole life
//! while other commands append to it, and two appending processes interleave. Every
//! entry lands exactly once and the log verifies.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn warden(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.arg("--home").arg(home);
    c
}

/// A home with only an audit signing key (what `keys create` and `serve` need).
fn home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    let out = warden(&home)
        .args(["audit", "keygen", "warden.test/audit"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    home
}

/// Every entry of the home's log as JSON, after a full verification by the library.
fn events(home: &Path) -> Vec<serde_json::Value> {
    let signer = warden_tlog::Signer::from_file(&home.join("keys/audit.key")).unwrap();
    let storage = warden_tlog::PosixStorage::new(home.join("audit"));
    let report = warden_tlog::verify_log(&storage, &signer.verifier(), None).unwrap();
    let mut r = warden_tlog::tiles::LogReader::new(&storage, report.entries);
    (0..report.entries)
        .map(|i| serde_json::from_slice(&r.entry(i).unwrap()).unwrap())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a server certificate for the admin listener (which always needs TLS).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "server");
    let cert = p.signed_by(&key, &issuer).unwrap();
    let (ca, c, k) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca, issuer.pem()).unwrap();
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca, c, k)
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An unauthenticated chat request: refused, and audited by the gateway.
fn refused_request(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
}

fn gateway_requests(events: &[serde_json::Value]) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "gateway_request")
        .map(|(i, _)| i)
        .collect()
}

/// A gateway config (plain HTTP on loopback, admin on mTLS) in `dir`, with `audit` as
/// its `[gateway.audit]` section; returns the config and the public port.
fn serve_config(dir: &Path, audit: &str) -> (PathBuf, u16) {
    let (ca, cert, key) = pki(dir);
    let (port, aport) = (free_port(), free_port());
    std::fs::write(
        dir.join("policies.cedar"),
        r#"@id("users-chat")
permit(principal in Warden::Role::"user", action in [Warden::Action::"chat"], resource);
"#,
    )
    .unwrap();
    std::fs::write(dir.join("alice.totp"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    let cfg = dir.join("warden.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
listen = "127.0.0.1:{port}"
insecure_plaintext = true
policy = "policies.cedar"

[gateway.audit]
{audit}

[gateway.admin]
listen = "127.0.0.1:{aport}"

[gateway.admin.tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[[gateway.admin.admins]]
name = "alice.admin"
totp_secret_file = "alice.totp"

[[gateway.models]]
name = "m"
upstream = "http://127.0.0.1:9"
classification = 1
"#,
            cert = cert.display(),
            key = key.display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    (cfg, port)
}

/// `warden serve --config CFG`, once it listens on `port`; its stderr is collected by
/// the returned thread.
fn start_serve(home: &Path, cfg: &Path, port: u16) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = warden(home)
        .arg("serve")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("warden serve exited early ({st}): {err}");
        }
        assert!(Instant::now() < deadline, "warden serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    (child, logs)
}

/// `warden audit verify --format json` of the home's log.
fn verify_json(home: &Path) -> serde_json::Value {
    let out = warden(home)
        .args(["audit", "verify", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn commands_append_to_the_audit_log_while_serve_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let (cfg, port) = serve_config(dir.path(), "");
    let (child, logs) = start_serve(&home, &cfg, port);
    let serve = Serve(child);
    for _ in 0..5 {
        refused_request(port);
    }
    // Commands that append audit events, while the gateway holds the log open. Before
    // the log had several writers, each waited 30 s for the lock and failed.
    let mut created = Vec::new();
    for name in ["alice", "bob"] {
        let t0 = Instant::now();
        let out = warden(&home)
            .args(["keys", "create", name, "--role", "user"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys create {name} while serving: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
        created.push(name);
        // The gateway appends again on top of the command's event.
        for _ in 0..5 {
            refused_request(port);
        }
    }
    drop(serve);
    let logs = logs.join().unwrap();
    assert!(!logs.contains("audit append failed"), "{logs}");

    // The CLI's own verification, then the entries themselves.
    let out = warden(&home).args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&home);
    let keys: Vec<usize> = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "key_created")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys.len(), 2, "{ev:#?}");
    for (i, name) in keys.iter().zip(&created) {
        assert_eq!(ev[*i]["purpose"], format!("api:{name}"), "{:#?}", ev[*i]);
    }
    let gw = gateway_requests(&ev);
    assert_eq!(gw.len(), 15, "{ev:#?}");
    // Interleaved: gateway records before, between and after the two commands' events.
    assert!(gw[4] < keys[0] && keys[0] < gw[5], "{gw:?} {keys:?}");
    assert!(gw[9] < keys[1] && keys[1] < gw[10], "{gw:?} {keys:?}");
}

/// `warden audit append` on one log from two processes at once.
fn append_process(home: &Path, tag: &str, n: usize) -> Child {
    let mut c = warden(home)
        .args(["audit", "append", "--writers", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let body: String = (0..n)
        .map(|i| format!("{{\"tag\":\"{tag}\",\"i\":{i}}}\n"))
        .collect();
    std::thread::spawn(move || {
        // A few lines at a time, so the two processes' batches interleave.
        // (A killed process closes the pipe: stop feeding it.)
        for chunk in body.as_bytes().chunks(200) {
            if stdin.write_all(chunk).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    c
}

#[test]
fn two_processes_interleave_appends() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let n = 1500;
    let a = append_process(&home, "a", n);
    let b = append_process(&home, "b", n);
    let mut indices = Vec::new();
    for (tag, c) in [("a", a), ("b", b)] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let idx: Vec<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(idx.len(), n, "{tag}");
        indices.extend(idx.into_iter().map(|i| (i, tag)));
    }
    let out = warden(&home).args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let ev = events(&home);
    assert_eq!(ev.len(), 2 * n);
    // Indices unique and 0..2n; each names the entry its process appended.
    let unique: HashSet<u64> = indices.iter().map(|(i, _)| *i).collect();
    assert_eq!(unique.len(), 2 * n);
    assert_eq!(unique, (0..2 * n as u64).collect());
    for (i, tag) in &indices {
        assert_eq!(ev[*i as usize]["tag"], *tag, "entry {i}");
    }
    // Every entry exactly once.
    let entries: HashSet<(String, u64)> = ev
        .iter()
        .map(|e| {
            (
                e["tag"].as_str().unwrap().to_owned(),
                e["i"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 2 * n);
    // And they really interleaved: neither process's entries form one block.
    let first_b = ev.iter().position(|e| e["tag"] == "b").unwrap();
    let last_a = ev.iter().rposition(|e| e["tag"] == "a").unwrap();
    assert!(
        first_b < last_a,
        "no interleaving: b from {first_b}, a until {last_a}"
    );
}

#[test]
fn a_writer_killed_mid_batch_leaves_the_other_appending_to_a_log_that_verifies() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    let n = 1500;
    for round in 0..3 {
        let mut a = append_process(&home, &format!("a{round}"), 100_000);
        let b = append_process(&home, &format!("b{round}"), n);
        // Let `a` get some entries acknowledged, then SIGKILL it wherever it is (often
        // inside a commit, holding the lock, with objects written but no checkpoint).
        let mut acked = Vec::new();
        let mut lines = std::io::BufReader::new(a.stdout.take().unwrap()).lines();
        while acked.len() < 200 + 150 * round {
            acked.push(lines.next().unwrap().unwrap().parse::<u64>().unwrap());
        }
        a.kill().unwrap();
        a.wait().unwrap();
        let out = b.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b_idx: Vec<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(b_idx.len(), n);
        let out = warden(&home).args(["audit", "verify"]).output().unwrap();
        assert!(out.status.success(), "round {round}: {out:?}");
        let ev = events(&home);
        for (i, tag) in acked
            .iter()
            .map(|i| (i, format!("a{round}")))
            .chain(b_idx.iter().map(|i| (i, format!("b{round}"))))
        {
            assert_eq!(ev[*i as usize]["tag"], tag, "round {round}: entry {i}");
        }
        let b_count = ev
            .iter()
            .filter(|e| e["tag"] == format!("b{round}"))
            .count();
        assert_eq!(b_count, n, "round {round}: every entry of b exactly once");
    }
}

#[test]
fn records_journaled_by_a_killed_gateway_are_published_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let home = home(dir.path());
    // Publication far away (the most allowed): the records can only survive the kill
    // through the journal.
    let (cfg, port) = serve_config(dir.path(), "batch_ms = 5\npublish_ms = 10000");
    let (mut child, logs) = start_serve(&home, &cfg, port);
    let before = verify_json(&home)["size"].as_u64().unwrap();
    for _ in 0..12 {
        refused_request(port);
    }
    // Durable within batch_ms, published only in 10 s: `audit verify` says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = verify_json(&home);
        if v["journaled"] == 12 {
            assert_eq!(v["size"].as_u64().unwrap(), before, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "records not journaled: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no shutdown, no publication
    child.wait().unwrap();
    let _ = logs.join();
    assert_eq!(verify_json(&home)["size"].as_u64().unwrap(), before);
    // The next writer (here a command) takes the lock the dead gateway never released,
    // publishes its journaled records, then appends its own event after them.
    let out = warden(&home)
        .args(["keys", "create", "carol", "--role", "user"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v = verify_json(&home);
    assert_eq!(v["journaled"], 0, "{v}");
    let ev = events(&home);
    let gw = gateway_requests(&ev);
    assert_eq!(gw.len(), 12, "{ev:#?}");
    assert_eq!(ev.last().unwrap()["event"], "key_created", "{ev:#?}");
    assert!(gw.iter().all(|i| *i < ev.len() - 1));
}
